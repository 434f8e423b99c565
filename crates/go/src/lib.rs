#![doc = include_str!("../README.md")]

pub mod base64;
pub mod filepath;
pub mod json;
pub mod path;
pub mod semver;
pub mod strconv;
pub mod strings;
pub mod time;
