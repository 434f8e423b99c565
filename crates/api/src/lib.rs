#![doc = include_str!("../README.md")]

mod base64;
pub mod decode;
pub mod json;
pub mod ndjson;
mod scan;
mod time;
mod types;

pub use decode::{DecodeError, Request, TypeError, decode_request};
pub use json::{Wire, f32_value, to_go_json, to_ndjson_line, try_to_go_json, try_to_go_json_line};
pub use ndjson::{NdjsonDecoder, NdjsonError};
pub use time::{Timestamp, TimestampError};
pub use types::{
    AnyMap, CopyRequest, CreateRequest, DeleteRequest, ErrorResponse, ImageData, License,
    LicenseError, ListModelResponse, ListResponse, Message, ModelDetails, ProcessModelResponse,
    ProcessResponse, ProgressResponse, ShowRequest, ShowResponse, Tensor, ToolCall,
    ToolCallArguments, ToolCallFunction, VersionResponse,
};
