#![doc = include_str!("../README.md")]

pub use kiln_go::base64;
pub mod decode;
pub mod json;
pub mod ndjson;
pub mod openai;
mod types;

pub use decode::{DecodeError, Request, TypeError, decode_request};
pub use json::{Wire, f32_value, to_go_json, to_ndjson_line, try_to_go_json, try_to_go_json_line};
pub use kiln_go::time::{Timestamp, TimestampError};
pub use ndjson::{NdjsonDecoder, NdjsonError};
pub use types::{
    AnyMap, CopyRequest, CreateRequest, DeleteRequest, ErrorResponse, ImageData, License,
    LicenseError, ListModelResponse, ListResponse, Message, ModelDetails, ProcessModelResponse,
    ProcessResponse, ProgressResponse, PullRequest, PushRequest, ShowRequest, ShowResponse, Tensor,
    ToolCall, ToolCallArguments, ToolCallFunction, VersionResponse,
};

/// `Content-Type` values Ollama sends (server/routes.go at fb30760), so a server need not guess.
pub mod content_type {
    /// Every `c.JSON` reply (show, tags, ps, version, errors before streaming): gin's default.
    pub const JSON: &str = "application/json; charset=utf-8";
    /// A `stream:false` create result or an error that ends a stream before any line was written
    /// (`waitForStream`/`streamResponse` set the header themselves).
    pub const JSON_PLAIN: &str = "application/json";
    /// A progress stream.
    pub const NDJSON: &str = "application/x-ndjson";
}
