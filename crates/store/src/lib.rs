#![doc = include_str!("../README.md")]

mod digest;
mod manifest;
mod name;
mod store;

pub use digest::{Digest, InvalidDigest};
pub use manifest::{
    CONFIG_MEDIA_TYPE, Layer, MANIFEST_MEDIA_TYPE, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_JSON,
    MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_PROMPT, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE,
    MEDIA_TYPE_TENSOR, Manifest, ModelConfig,
};
pub use name::{DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, InvalidName, ModelName};
pub use store::{
    BlobWriter, BrokenModel, Deleted, Garbage, GarbageKind, ImportMethod, ImportMode, Imported,
    PartialDownload, Store, StoreError, StoreGuard, StoredBlob, StoredManifest, VerifyReport,
    write_atomically,
};
