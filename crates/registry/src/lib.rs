#![doc = include_str!("../README.md")]

mod auth;
mod client;
mod download;
mod error;
mod pull;
mod push;
mod remote;

pub use auth::{Challenge, Credentials, OllamaKey};
pub use client::{Client, ClientOptions};
pub use download::BlobTransfer;
pub use error::RegistryError;
pub use pull::{
    MAX_IDLE_PARTIALS, MAX_MANIFEST_BYTES, PullOptions, PullSummary, fetch_blob, fetch_manifest,
    pull,
};
pub use push::{PushOptions, PushSummary, push};
pub use remote::Remote;
