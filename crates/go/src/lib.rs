#![doc = include_str!("../README.md")]

pub mod base64;
pub mod builtin;
pub mod cmp;
pub mod filepath;
pub mod fmt;
pub mod format;
pub mod json;
pub mod net;
pub mod path;
pub mod semver;
pub mod strconv;
pub mod strings;
pub mod time;
pub mod unicode;
pub mod url;
