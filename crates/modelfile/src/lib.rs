#![doc = include_str!("../README.md")]

mod params;
mod parse;
mod request;
mod sniff;

pub use params::{
    DEPRECATED_PARAMETERS, PARAMETERS, ParameterError, ParameterKind, parameter_kind,
    parameter_value,
};
pub use parse::{Command, Modelfile, ParseError, decode, parse, parse_bytes, quote};
pub use request::{
    Homes, ModelfileRequest, RequestError, Resolved, SystemHomes, digest_file, digest_files,
    expand_path, files_for_model, is_semver, upload_names,
};
pub use sniff::content_type;
