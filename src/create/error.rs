//! Why a create fails, and the HTTP status Ollama answers each failure with.

use kiln_registry::RegistryError;
use kiln_store::StoreError;

use crate::convert::ConvertError;
use crate::quantize::{QuantizeError, UnknownFileType};
use crate::template;

/// Why a create failed: `Display` is Ollama's message, [`HttpStatus::status`](super::HttpStatus::status) its HTTP code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A `files` key that is not a clean relative path.
    #[error("file path must be relative")]
    FilePath,
    /// An empty or malformed digest.
    #[error("invalid digest format")]
    InvalidDigest,
    /// `draft_quantize` without draft files.
    #[error("--draft-quantize requires a DRAFT model")]
    DraftQuantizeWithoutDraft,
    /// The model (or `from`) name is not valid.
    #[error("invalid model name")]
    InvalidModelName,
    /// Neither `from` nor `files`.
    #[error("neither 'from' or 'files' was specified")]
    NeitherFromNorFiles,
    /// No file could be recognised.
    #[error("unknown type")]
    UnknownType,
    /// A file announced as GGUF that is not.
    #[error("supplied file was not in GGUF format")]
    NotGguf,
    /// More than one adapter.
    #[error("only one adapter is currently supported")]
    OnlyOneAdapter,
    /// The source model was not in the store and pulling it failed (Ollama's pull errors).
    #[error(transparent)]
    Pull(#[from] RegistryError),
    /// An uploaded blob that is not in the store.
    #[error("open {0}: no such file or directory")]
    MissingBlob(String),
    /// A quantization type kiln does not support.
    #[error(transparent)]
    UnsupportedQuantization(#[from] UnknownFileType),
    /// Quantizing a model that is already quantized.
    #[error("quantization is only supported for F16, BF16 and F32 models")]
    AlreadyQuantized,
    /// A license of the wrong JSON type.
    #[error("{0}")]
    License(String),
    /// Safetensors inputs kiln does not convert yet (adapters, drafts).
    #[error("kiln cannot convert {0} yet; upload a GGUF file")]
    Unsupported(String),
    /// The model file could not be parsed.
    #[error("{0}")]
    Gguf(#[from] kiln_gguf::GgufError),
    /// Quantization failed.
    #[error("{0}")]
    Quantize(#[from] QuantizeError),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A `draft_files` problem (Ollama answers all of them with 400).
    #[error("{0}")]
    Draft(Box<CreateError>),
    /// `draft_quantize` on a draft model that is already quantized.
    #[error("draft quantization requires an unquantized draft model, got {0}")]
    DraftAlreadyQuantized(String),
    /// Shards of a split GGUF that do not fit together (Ollama's messages).
    #[error("{0}")]
    Split(String),
    /// A `remote_host` that is not a URL.
    #[error("bad remote")]
    BadRemote,
    /// Draft files for a remote model.
    #[error("DRAFT cannot be used with remote models")]
    RemoteDraft,
    /// A bad `info` field.
    #[error("{0}")]
    Info(String),
    /// The models directory cannot hold the new model (checked before quantizing, from the
    /// output's exact size).
    #[error(
        "not enough disk space in {dir}: the new model needs {needed} bytes, {available} are available"
    )]
    NoSpace {
        /// The blobs directory.
        dir: String,
        /// Size of the file that would be written.
        needed: u64,
        /// Free bytes there.
        available: u64,
    },
    /// A `template` Go's parser rejects (checked before any quantization starts).
    #[error("template error: {0}")]
    BadTemplate(#[from] template::TemplateError),
    /// A safetensors model folder that could not be converted.
    #[error("{0}")]
    Convert(#[from] ConvertError),
    /// The client went away.
    #[error("create cancelled")]
    Cancelled,
}
