//! What can go wrong talking to a registry. Texts that Ollama streams to clients are Ollama's.

use std::path::PathBuf;

use kiln_store::{Digest, StoreError};

/// A pull or push failure; every variant says what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry has no such manifest or blob (Go's `os.ErrNotExist` text, which Ollama
    /// streams as e.g. `pull model manifest: file does not exist`).
    #[error("file does not exist")]
    NotFound {
        /// The URL that answered 404.
        url: String,
    },
    /// The manifest could not be fetched; wraps the cause with Ollama's prefix.
    #[error("pull model manifest: {0}")]
    PullManifest(Box<RegistryError>),
    /// The registry answered with an error status (Ollama's `<code>: <body>`).
    #[error("{status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The response body (at most 64 KiB of it).
        body: String,
        /// The URL.
        url: String,
    },
    /// Authentication failed twice in a row (Ollama's text).
    #[error("unauthorized: access denied")]
    Unauthorized {
        /// The URL.
        url: String,
    },
    /// A token server refused or answered nonsense.
    #[error("{0}")]
    Token(String),
    /// The token realm is on another host and a signed (ed25519) challenge would have been sent
    /// to it; Ollama refuses this too.
    #[error("realm host {realm:?} does not match original host {host:?}")]
    RealmHost {
        /// Host of the realm.
        realm: String,
        /// Host of the registry.
        host: String,
    },
    /// A connection or protocol failure.
    #[error("{url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A transfer that broke off mid-body; retried from where it stopped.
    #[error("{url}: {source}")]
    Transfer {
        /// The URL.
        url: String,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// A URL that could not be built or parsed.
    #[error("invalid URL {0:?}")]
    BadUrl(String),
    /// The manifest is not a manifest.
    #[error("{0}")]
    BadManifest(String),
    /// A manifest, token or error body larger than kiln reads.
    #[error("{what} from {url} is larger than {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Where from.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A layer without a digest (Ollama's `<namespace/model>: digest is empty`).
    #[error("{repository}: digest is empty")]
    EmptyDigest {
        /// `namespace/model`.
        repository: String,
    },
    /// A layer whose digest is malformed (Ollama's text).
    #[error("invalid digest format")]
    InvalidDigest(String),
    /// A downloaded blob that does not hash to its digest; it was removed (Ollama's text).
    #[error("digest mismatch, file must be downloaded again: want {want}, got {got}")]
    DigestMismatch {
        /// The digest the manifest names.
        want: Digest,
        /// What arrived.
        got: Digest,
    },
    /// The registry sent a different number of bytes than the manifest and headers announced.
    #[error("{digest}: registry sent {got} bytes where {want} were expected")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Announced size.
        want: u64,
        /// Bytes seen.
        got: u64,
    },
    /// A ranged request answered without the range (a registry or proxy that ignores `Range`).
    #[error("{url}: asked for bytes {start}-, got status {status} without that range")]
    RangeIgnored {
        /// The URL.
        url: String,
        /// First byte asked for.
        start: u64,
        /// The status received.
        status: u16,
    },
    /// Every retry of a transfer failed (Ollama's prefix, then the last cause).
    #[error("max retries exceeded: {0}")]
    MaxRetries(Box<RegistryError>),
    /// A model made of safetensors tensor layers, which Ollama pulls only with MLX (its text).
    #[error("this model requires MLX support, but the MLX runtime is not available")]
    TensorModel,
    /// A file in the models directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The store refused an operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller cancelled (the client went away); finished parts of downloads are kept.
    #[error("cancelled")]
    Cancelled,
}

impl RegistryError {
    /// The HTTP status a server should answer with when this error ends a request before any
    /// progress line was sent. Ollama streams pull/push errors without a status, so they become
    /// 500, except the request errors it checks first.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::Store(StoreError::InvalidName(_)) => 400,
            RegistryError::Cancelled => 499,
            _ => 500,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.into();
        move |source| RegistryError::Io { path, source }
    }

    /// Whether a download that ended with this error leaves a partial file worth resuming:
    /// interrupted transfers and cancellations do; a missing or refused blob does not.
    pub(crate) fn keeps_partial(&self) -> bool {
        matches!(
            self,
            RegistryError::MaxRetries(_) | RegistryError::Cancelled
        ) || self.is_transient()
    }

    /// Whether retrying the same request may help (transport failures and 5xx answers).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { .. }
            | RegistryError::Transfer { .. }
            | RegistryError::SizeMismatch { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
