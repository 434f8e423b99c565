#![doc = include_str!("../README.md")]

pub mod base64;
pub mod json;
pub mod strings;
pub mod time;
