//! The request and response bodies of Ollama's model-management endpoints.
//!
//! Field order, names and omission rules follow `api/types.go` in ollama/ollama (commit
//! `fb30760996871fa9460115c753afd2c60d4ab0f7`). Go's `omitempty` drops `""`, `0`, `false`, nil or
//! empty maps and slices, and nil interfaces, but never a struct (`ModelDetails`, `time.Time`); a nil
//! slice without `omitempty` is `null`, which is why such fields are `Option<Vec<_>>` here.
//!
//! Requests decode with Go's rules (see [`crate::decode`]); responses decode leniently (missing fields
//! default, unknown fields are ignored) so kiln can also read a real Ollama server's answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::json::{Wire, sealed::Sealed};
use kiln_go::time::Timestamp;

/// A JSON object whose values are Go `any`: numbers were decoded as `float64` (see [`crate::decode`]),
/// keys come out sorted like Go's map encoding.
pub type AnyMap = BTreeMap<String, Value>;

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_none_or_empty<K, V>(v: &Option<BTreeMap<K, V>>) -> bool {
    v.as_ref().is_none_or(BTreeMap::is_empty)
}

/// Deserializes `null` as the type's default, as Go leaves a nil slice/map/zero string on `null`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

macro_rules! wire {
    ($($t:ty),* $(,)?) => {$(
        impl Sealed for $t {}
        impl Wire for $t {}
    )*};
}

wire!(
    CreateRequest,
    ProgressResponse,
    ShowRequest,
    ShowResponse,
    ModelDetails,
    Tensor,
    ListResponse,
    ListModelResponse,
    CopyRequest,
    DeleteRequest,
    PullRequest,
    PushRequest,
    ProcessResponse,
    ProcessModelResponse,
    VersionResponse,
    ErrorResponse,
    Message,
);

/// `POST /api/create`: build a model from another model (`from`) or uploaded blobs (`files`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CreateRequest {
    /// Name of the model to create; see [`CreateRequest::model_name`] for the deprecated `name`.
    pub model: String,
    /// `None` means stream (the default); `Some(false)` asks for one final object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Target quantization (`q4_K_M`, …), case-insensitive; see [`CreateRequest::quantize_type`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub quantize: String,
    /// Quantization for the draft model.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub draft_quantize: String,
    /// Source model name; wins over `files`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Upstream Ollama host for a remote model.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_host: String,
    /// File name → `sha256:<hex>` blob digest. `Some(empty)` differs from `None` in Ollama
    /// (`unknown type` vs `neither 'from' or 'files' was specified`).
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub files: Option<BTreeMap<String, String>>,
    /// Draft model files, like `files`.
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub draft_files: Option<BTreeMap<String, String>>,
    /// LoRA adapter files, like `files`.
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub adapters: Option<BTreeMap<String, String>>,
    /// Prompt template.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// One license text or several; see [`CreateRequest::licenses`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<License>,
    /// System prompt.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system: String,
    /// Runtime parameters (`num_ctx`, `stop`, …) stored in the params layer.
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub parameters: Option<AnyMap>,
    /// Seed conversation stored in the messages layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
    /// Renderer name recorded in the config blob.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub renderer: String,
    /// Parser name recorded in the config blob.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parser: String,
    /// Minimum Ollama version the model needs.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub requires: String,
    /// Undocumented overrides of config fields (`model_family`, `context_length`, …).
    #[serde(skip_serializing_if = "is_none_or_empty")]
    pub info: Option<AnyMap>,
    /// Deprecated spelling of `model`; Go always emits it.
    pub name: String,
    /// Deprecated spelling of `quantize`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub quantization: String,
}

impl CreateRequest {
    /// The model to create: `model`, or the deprecated `name` when `model` is empty (Go's `cmp.Or`).
    pub fn model_name(&self) -> &str {
        or(&self.model, &self.name)
    }

    /// The requested quantization as sent: `quantize`, or the deprecated `quantization`. Ollama
    /// upper-cases it before use.
    pub fn quantize_type(&self) -> &str {
        or(&self.quantize, &self.quantization)
    }

    /// Whether the response is an NDJSON stream (everything but an explicit `"stream": false`).
    pub fn is_streaming(&self) -> bool {
        self.stream != Some(false)
    }

    /// The license texts to store, one layer each, as Ollama derives them: none for an absent or
    /// empty string, one for a string, each element of a list (`null` elements become `""`).
    ///
    /// Ollama accepts any JSON here at decode time and fails only while creating (after progress has
    /// streamed), with Go's unmarshal message, which the error reproduces.
    pub fn licenses(&self) -> Result<Vec<String>, LicenseError> {
        match &self.license {
            None => Ok(Vec::new()),
            Some(License::Text(t)) if t.is_empty() => Ok(Vec::new()),
            Some(License::Text(t)) => Ok(vec![t.clone()]),
            Some(License::List(list)) => Ok(list.clone()),
            Some(License::Other(v)) => Err(LicenseError::new(v)),
        }
    }
}

/// Go's `cmp.Or` of two strings.
fn or<'a>(a: &'a str, b: &'a str) -> &'a str {
    kiln_go::cmp::or(&[a, b])
}

/// The `license` field: Go's `any`, used as a string or a list of strings.
#[derive(Clone, Debug, PartialEq)]
pub enum License {
    /// `"license": "MIT"`.
    Text(String),
    /// `"license": ["MIT", "…"]`; `null` elements are `""`, as Go decodes them into `[]string`.
    List(Vec<String>),
    /// Any other JSON, which Ollama accepts in the request and rejects while creating.
    Other(Value),
}

impl Serialize for License {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            License::Text(t) => s.serialize_str(t),
            License::List(l) => l.serialize(s),
            License::Other(v) => v.serialize(s),
        }
    }
}

/// Why `license` is neither a string nor a list of strings; Display is Go's error text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("json: cannot unmarshal {kind} into Go value of type {go_type}")]
pub struct LicenseError {
    kind: &'static str,
    go_type: &'static str,
}

impl LicenseError {
    fn new(v: &Value) -> Self {
        let kind_of = |v: &Value| match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        match v {
            Value::Array(items) => {
                let bad = items
                    .iter()
                    .find(|i| !matches!(i, Value::String(_) | Value::Null));
                LicenseError {
                    kind: bad.map_or("array", kind_of),
                    go_type: "string",
                }
            }
            other => LicenseError {
                kind: kind_of(other),
                go_type: "[]string",
            },
        }
    }
}

/// One line of create/pull progress; also the single body of a `stream:false` create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressResponse {
    /// Human-readable step, e.g. `writing manifest`, `success`.
    #[serde(deserialize_with = "null_default")]
    pub status: String,
    /// Digest the step refers to (may be a placeholder such as 19 zeros).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub digest: String,
    /// Total units of work (bytes); omitted when 0.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "null_default")]
    pub total: i64,
    /// Units done so far; omitted when 0.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "null_default")]
    pub completed: i64,
}

impl ProgressResponse {
    /// A status-only progress line such as `writing manifest`.
    pub fn status(status: impl Into<String>) -> Self {
        ProgressResponse {
            status: status.into(),
            ..Self::default()
        }
    }
}

/// `POST /api/show`. Go emits every field, `options` as `null` when unset.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShowRequest {
    /// Model to show; see [`ShowRequest::model_name`].
    pub model: String,
    /// Overrides the system prompt reported back.
    pub system: String,
    /// Deprecated and ignored by Ollama.
    pub template: String,
    /// Return full arrays in `model_info` and the tensor list.
    pub verbose: bool,
    /// Options merged into the reported parameters.
    pub options: Option<AnyMap>,
    /// Deprecated spelling of `model`.
    pub name: String,
}

impl ShowRequest {
    /// `model`, or the deprecated `name` when `model` is empty.
    pub fn model_name(&self) -> &str {
        or(&self.model, &self.name)
    }
}

/// Body of a successful `POST /api/show`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShowResponse {
    /// License texts joined with `\n`.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub license: String,
    /// Generated Modelfile text.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub modelfile: String,
    /// Parameters, one `%-30s %#v` line each.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub parameters: String,
    /// Prompt template.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub template: String,
    /// System prompt.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub system: String,
    /// Renderer name.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub renderer: String,
    /// Parser name.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub parser: String,
    /// Always emitted (a struct).
    #[serde(deserialize_with = "null_default")]
    pub details: ModelDetails,
    /// Seed messages (role and content only in Ollama's show).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub messages: Vec<Message>,
    /// Upstream model name of a remote model.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub remote_model: String,
    /// Upstream host of a remote model.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub remote_host: String,
    /// GGUF metadata (minus `general.name` and `tokenizer.chat_template`); always an object, `{}` at
    /// least. Use [`crate::f32_value`] for GGUF float32 values.
    #[serde(deserialize_with = "null_default")]
    pub model_info: AnyMap,
    /// Projector GGUF metadata, when the model has one.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub projector_info: AnyMap,
    /// Tensor list.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub tensors: Vec<Tensor>,
    /// `completion`, `vision`, `tools`, …
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub capabilities: Vec<String>,
    /// Manifest file mtime; always emitted.
    pub modified_at: Timestamp,
    /// Minimum Ollama version.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub requires: String,
}

/// Summary of a model's config blob, shared by show, tags and ps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelDetails {
    /// Parent model (`""` in practice).
    #[serde(deserialize_with = "null_default")]
    pub parent_model: String,
    /// `gguf` or `safetensors`.
    #[serde(deserialize_with = "null_default")]
    pub format: String,
    /// Architecture family.
    #[serde(deserialize_with = "null_default")]
    pub family: String,
    /// Families; `None` is Go's nil slice and encodes as `null` (tags always sends `null` for none).
    pub families: Option<Vec<String>>,
    /// e.g. `8.0B`.
    #[serde(deserialize_with = "null_default")]
    pub parameter_size: String,
    /// e.g. `Q4_K_M`.
    #[serde(deserialize_with = "null_default")]
    pub quantization_level: String,
    /// Context length; omitted when 0.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "null_default")]
    pub context_length: i64,
    /// Embedding length; omitted when 0.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "null_default")]
    pub embedding_length: i64,
}

/// One tensor in a verbose show.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tensor {
    /// Tensor name.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// ggml type name, e.g. `Q4_K`.
    #[serde(rename = "type", deserialize_with = "null_default")]
    pub tensor_type: String,
    /// Dimensions, innermost first.
    #[serde(deserialize_with = "null_default")]
    pub shape: Vec<u64>,
}

/// `GET /api/tags`. `models` is `[]`, never `null`, when there are none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListResponse {
    /// Local models, newest `modified_at` first.
    #[serde(deserialize_with = "null_default")]
    pub models: Vec<ListModelResponse>,
}

/// One local model in [`ListResponse`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListModelResponse {
    /// Shortest display name, e.g. `llama3:latest`.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// Same as `name`.
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    /// Upstream model of a remote model.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub remote_model: String,
    /// Upstream host of a remote model.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub remote_host: String,
    /// Manifest mtime.
    pub modified_at: Timestamp,
    /// Sum of layer sizes plus the config size.
    #[serde(deserialize_with = "null_default")]
    pub size: i64,
    /// Hex sha256 of the manifest file bytes, without `sha256:`.
    #[serde(deserialize_with = "null_default")]
    pub digest: String,
    /// Always emitted.
    #[serde(deserialize_with = "null_default")]
    pub details: ModelDetails,
    /// Capabilities; omitted when empty.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub capabilities: Vec<String>,
}

/// `POST /api/copy`. Success is an empty 200.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CopyRequest {
    /// Existing model.
    pub source: String,
    /// New name.
    pub destination: String,
}

/// `DELETE /api/delete`. Success is an empty 200.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeleteRequest {
    /// Model to delete; see [`DeleteRequest::model_name`].
    pub model: String,
    /// Deprecated spelling of `model`.
    pub name: String,
}

impl DeleteRequest {
    /// `model`, or the deprecated `name` when `model` is empty.
    pub fn model_name(&self) -> &str {
        or(&self.model, &self.name)
    }
}

/// `POST /api/pull`: fetch a model from its registry. Streams [`ProgressResponse`] lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    /// Model to pull; see [`PullRequest::model_name`].
    pub model: String,
    /// Allow plain HTTP to the registry (Ollama marks it deprecated but still honours it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Deprecated and ignored by Ollama; kiln ignores it too (credentials come from the
    /// environment or a docker-style config file, never from a request).
    pub username: String,
    /// Deprecated and ignored, like `username`.
    pub password: String,
    /// `None` means stream (the default); `Some(false)` asks for one final object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Deprecated spelling of `model`.
    pub name: String,
}

impl PullRequest {
    /// `model`, or the deprecated `name` when `model` is empty (Ollama's `cmp.Or`).
    pub fn model_name(&self) -> &str {
        or(&self.model, &self.name)
    }

    /// Whether the response is an NDJSON stream (everything but an explicit `"stream": false`).
    pub fn is_streaming(&self) -> bool {
        self.stream != Some(false)
    }
}

/// `POST /api/push`: send a model to its registry. Same fields as [`PullRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PushRequest {
    /// Model to push; see [`PushRequest::model_name`].
    pub model: String,
    /// Allow plain HTTP to the registry.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Deprecated and ignored, as in Ollama.
    pub username: String,
    /// Deprecated and ignored, as in Ollama.
    pub password: String,
    /// `None` means stream (the default); `Some(false)` asks for one final object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Deprecated spelling of `model`.
    pub name: String,
}

impl PushRequest {
    /// `model`, or the deprecated `name` when `model` is empty.
    pub fn model_name(&self) -> &str {
        or(&self.model, &self.name)
    }

    /// Whether the response is an NDJSON stream (everything but an explicit `"stream": false`).
    pub fn is_streaming(&self) -> bool {
        self.stream != Some(false)
    }
}

/// `GET /api/ps`: loaded models. kiln runs no models, so a server answers with an empty list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessResponse {
    /// Loaded models, longest remaining keep-alive first.
    #[serde(deserialize_with = "null_default")]
    pub models: Vec<ProcessModelResponse>,
}

/// One loaded model in [`ProcessResponse`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessModelResponse {
    /// Display name.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// Same as `name`.
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    /// Memory size in bytes.
    #[serde(deserialize_with = "null_default")]
    pub size: i64,
    /// Manifest digest.
    #[serde(deserialize_with = "null_default")]
    pub digest: String,
    /// Always emitted.
    #[serde(deserialize_with = "null_default")]
    pub details: ModelDetails,
    /// When the model will be unloaded.
    pub expires_at: Timestamp,
    /// Bytes resident in VRAM.
    #[serde(deserialize_with = "null_default")]
    pub size_vram: i64,
    /// Context length in use; always emitted.
    #[serde(deserialize_with = "null_default")]
    pub context_length: i64,
}

/// `GET`/`HEAD /api/version`: `{"version":"…"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionResponse {
    /// Server version string (Ollama's default build says `0.0.0`).
    #[serde(deserialize_with = "null_default")]
    pub version: String,
}

/// The `{"error":"…"}` body of every failed request and of a mid-stream failure line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorResponse {
    /// Message shown to the user (the Python client raises `ResponseError` with it).
    #[serde(deserialize_with = "null_default")]
    pub error: String,
}

impl ErrorResponse {
    /// An error body with this message.
    pub fn new(error: impl Into<String>) -> Self {
        ErrorResponse {
            error: error.into(),
        }
    }
}

/// One chat message, as stored in a model's messages layer and echoed by show.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`; lower-cased on decode, like Ollama.
    pub role: String,
    /// Message text.
    pub content: String,
    /// Reasoning text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub thinking: String,
    /// Raw image bytes; base64 on the wire.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageData>,
    /// Tool invocations by the assistant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Name of the tool that produced this message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tool_name: String,
    /// Id of the tool call this message answers.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tool_call_id: String,
}

/// Image bytes, encoded as padded standard base64 like Go's `[]byte`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageData(pub Vec<u8>);

impl Serialize for ImageData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&kiln_go::base64::encode(&self.0))
    }
}

/// A tool invocation inside a [`Message`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ToolCall {
    /// Call id; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// What is called.
    pub function: ToolCallFunction,
}

/// The function part of a [`ToolCall`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ToolCallFunction {
    /// Position among parallel calls; always emitted.
    pub index: i64,
    /// Function name.
    pub name: String,
    /// Arguments, in the order they were given.
    pub arguments: ToolCallArguments,
}

/// Tool-call arguments: an object whose top-level key order is kept (Ollama uses an ordered map);
/// nested objects are ordinary sorted maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCallArguments(pub Vec<(String, Value)>);

impl ToolCallArguments {
    /// Sets `key`, keeping its original position if it already exists (ordered-map semantics).
    pub fn insert(&mut self, key: String, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
}

impl Serialize for ToolCallArguments {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
