//! Manifests and config blobs, with the exact bytes Ollama's Go server writes for them.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// `mediaType` of a manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `mediaType` of the config blob layer.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// The GGUF model layer.
pub const MEDIA_TYPE_MODEL: &str = "application/vnd.ollama.image.model";
/// A LoRA adapter layer.
pub const MEDIA_TYPE_ADAPTER: &str = "application/vnd.ollama.image.adapter";
/// A multimodal projector layer.
pub const MEDIA_TYPE_PROJECTOR: &str = "application/vnd.ollama.image.projector";
/// The prompt template layer.
pub const MEDIA_TYPE_TEMPLATE: &str = "application/vnd.ollama.image.template";
/// The template layer's legacy name, which Ollama still reads as a template (server/images.go
/// `GetModel`, server/model_list_cache.go `readModelListLayers`) but no longer writes.
pub const MEDIA_TYPE_PROMPT: &str = "application/vnd.ollama.image.prompt";
/// One safetensors tensor blob of a safetensors ("experimental", MLX) model, its tensor named by
/// the layer's `name` (Ollama's `manifest.MediaTypeImageTensor`).
pub const MEDIA_TYPE_TENSOR: &str = "application/vnd.ollama.image.tensor";
/// A JSON file of a safetensors model (`config.json`, tokenizer files), named by the layer's
/// `name` (Ollama's x/create `mediaTypeImageJSON`).
pub const MEDIA_TYPE_JSON: &str = "application/vnd.ollama.image.json";
/// The system prompt layer.
pub const MEDIA_TYPE_SYSTEM: &str = "application/vnd.ollama.image.system";
/// A license layer.
pub const MEDIA_TYPE_LICENSE: &str = "application/vnd.ollama.image.license";
/// The parameters layer (JSON).
pub const MEDIA_TYPE_PARAMS: &str = "application/vnd.ollama.image.params";
/// The messages layer (JSON).
pub const MEDIA_TYPE_MESSAGES: &str = "application/vnd.ollama.image.messages";

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// One layer of a manifest (Ollama's `manifest.Layer`, fields in its order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Layer {
    /// What the blob holds.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>` of the blob.
    #[serde(default)]
    pub digest: String,
    /// Blob size in bytes.
    #[serde(default)]
    pub size: i64,
    /// Where the layer came from (a model name or an uploaded file name).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub from: String,
    /// Tensor name, for tensor layers.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub name: String,
}

impl Layer {
    /// A layer for a blob.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Layer {
        Layer {
            media_type: media_type.into(),
            digest: digest.to_string(),
            size: size as i64,
            ..Layer::default()
        }
    }

    /// The layer's digest, parsed.
    pub fn digest(&self) -> Result<Digest, crate::InvalidDigest> {
        Digest::parse(&self.digest)
    }
}

/// A model manifest (Ollama's `manifest.Manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: i64,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The config blob.
    #[serde(default)]
    pub config: Layer,
    /// The model's layers.
    #[serde(default)]
    pub layers: Vec<Layer>,
}

impl Manifest {
    /// A schema-2 manifest.
    pub fn new(config: Layer, layers: Vec<Layer>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            config,
            layers,
        }
    }

    /// The bytes Ollama writes for this manifest (`json.NewEncoder(f).Encode(m)`: Go field order,
    /// HTML escaping, trailing newline), so the digest of a manifest agrees with Ollama's.
    pub fn to_bytes(&self) -> Vec<u8> {
        kiln_go::json::try_to_go_json_line(self).expect("a manifest always serializes")
    }

    /// Total size: every layer plus the config (what `/api/tags` reports).
    pub fn size(&self) -> i64 {
        self.layers.iter().map(|l| l.size).sum::<i64>() + self.config.size
    }

    /// The layers with this media type.
    pub fn layers_of<'a>(&'a self, media_type: &'a str) -> impl Iterator<Item = &'a Layer> + 'a {
        self.layers
            .iter()
            .filter(move |l| l.media_type == media_type)
    }

    /// Every digest the manifest references (config included).
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        self.layers
            .iter()
            .chain(std::iter::once(&self.config))
            .map(|l| l.digest.as_str())
            .filter(|d| !d.is_empty())
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The config blob (Ollama's `model.ConfigV2`, fields in its order and with its omission rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ModelConfig {
    /// "gguf" or "safetensors".
    #[serde(default)]
    pub model_format: String,
    /// The architecture family (e.g. "llama").
    #[serde(default)]
    pub model_family: String,
    /// Families (`null` when unset, as Go writes a nil slice).
    #[serde(default)]
    pub model_families: Option<Vec<String>>,
    /// Parameter size ("8.0B").
    #[serde(default)]
    pub model_type: String,
    /// Quantization level ("Q4_K_M").
    #[serde(default)]
    pub file_type: String,
    /// Chat renderer.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub renderer: String,
    /// Output parser.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub parser: String,
    /// Minimum Ollama version.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub requires: String,
    /// Remote host, for remote models.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub remote_host: String,
    /// Remote model, for remote models.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub remote_model: String,
    /// Capabilities, for remote models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Context length, for remote models.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_length: i64,
    /// Embedding length, for remote models.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embedding_length: i64,
    /// Base model name.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub base_name: String,
    /// Draft model description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<serde_json::Value>,
    /// Required by the OCI spec ("amd64").
    #[serde(default)]
    pub architecture: String,
    /// Required by the OCI spec ("linux").
    #[serde(default)]
    pub os: String,
}

impl ModelConfig {
    /// A config with Ollama's defaults (`os: linux`, `architecture: amd64`).
    pub fn new() -> ModelConfig {
        ModelConfig {
            os: "linux".into(),
            architecture: "amd64".into(),
            ..ModelConfig::default()
        }
    }

    /// The bytes Ollama writes (`json.NewEncoder(&b).Encode(config)`).
    pub fn to_bytes(&self) -> Vec<u8> {
        kiln_go::json::try_to_go_json_line(self).expect("a config always serializes")
    }
}
