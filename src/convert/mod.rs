//! Hugging Face model folders (safetensors weights, `config.json`, tokenizer files) → an F16
//! GGUF, as Ollama's converter writes it for `/api/create` with safetensors `files`.
//!
//! The output carries the same metadata (keys, types and values), the same tensors (names,
//! types, shapes and bytes) in the same order as Ollama's `convert.ConvertModel`. Architectures:
//! BERT (`BertModel`: Ollama's own fixture for `sentence-transformers/all-MiniLM-L6-v2` is
//! checked key by key and tensor by tensor in the tests), Llama (`LlamaForCausalLM` with a BPE
//! `tokenizer.json` or a SentencePiece `tokenizer.model`), Qwen2 (`Qwen2ForCausalLM`), Gemma 1,
//! 2 and 3 (`GemmaForCausalLM`, `Gemma2ForCausalLM`, `Gemma3ForCausalLM`,
//! `Gemma3ForConditionalGeneration` with its vision tower), Phi-3 (`Phi3ForCausalLM`), OLMo 3
//! (`Olmo3ForCausalLM`), Ministral 3 (`Ministral3ForCausalLM`), Command-R
//! (`CohereForCausalLM`) and GPT-OSS (`GptOssForCausalLM`, experts kept in MXFP4): tensors, vocabulary
//! and merges checked against llama.cpp's own converter, and llama.cpp's logits of the result
//! against those of llama.cpp's conversion; the keys Ollama writes checked against its Go source
//! in unit tests. The others Ollama converts are refused with [`ConvertError::NotYet`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // SAFETY: nothing modifies the folder's files while they are converted.
//! let folder = unsafe { kiln::convert::ModelFolder::map_dir("all-MiniLM-L6-v2")? };
//! let conversion = kiln::convert::Conversion::plan(&folder)?;
//! let file = std::fs::File::create("all-minilm-f16.gguf")?;
//! conversion.write(std::io::BufWriter::new(file))?;
//! # Ok(())
//! # }
//! ```

mod bert;
mod command_r;
mod fp8;
mod gemma;
mod gpt_oss;
mod llama;
mod mistral;
mod olmo;
mod phi3;
mod qwen2;
pub mod safetensors;
mod sentencepiece;
mod tokenizer;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use kiln_gguf::{GgmlType, GgufFile, TensorSpec, Value, WriteError, Writer};
use serde_json::value::RawValue;

pub use safetensors::{Dtype, Safetensors, SafetensorsError, TensorView};
use tokenizer::Tokenizer;

/// JSON files larger than this are refused (the largest real `tokenizer.json` files are tens of
/// megabytes).
pub const MAX_JSON_BYTES: u64 = 256 << 20;

/// Why a model folder could not be converted. `Display` uses Ollama's messages where Ollama has
/// one.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file the architecture needs is not in the folder.
    #[error("open {0}: file does not exist")]
    MissingFile(String),
    /// A JSON file that does not parse, or a field of the wrong type.
    #[error("parse {file}: {message}")]
    Json {
        /// The file.
        file: String,
        /// What was wrong.
        message: String,
    },
    /// A JSON file over [`ConvertLimits::max_json_bytes`].
    #[error("{file} is {len} bytes, over the {limit}-byte limit for JSON files")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        len: u64,
        /// The limit it is over.
        limit: u64,
    },
    /// `config.json` names no architecture.
    #[error("unknown architecture")]
    UnknownArchitecture,
    /// An architecture Ollama does not convert either.
    #[error("unsupported architecture {0:?}")]
    UnsupportedArchitecture(String),
    /// A configuration Ollama's converter crashes on (it panics); kiln says what is wrong.
    #[error("config.json: {0}")]
    InvalidConfig(String),
    /// An FP8 checkpoint whose weights, scales or block size do not fit together (Ollama's
    /// messages).
    #[error("{0}")]
    Fp8(String),
    /// Something Ollama converts and kiln does not yet.
    #[error("kiln cannot convert {0} yet; convert it to GGUF with llama.cpp and upload that")]
    NotYet(String),
    /// An architecture Ollama converts and kiln does not yet (the message lists those it does).
    #[error(
        "kiln cannot convert {0} models yet (it converts {list}); convert it to GGUF with llama.cpp and upload that",
        list = supported_list()
    )]
    ArchitectureNotYet(String),
    /// A tokenizer whose files contradict each other (Ollama's messages).
    #[error("{0}")]
    Tokenizer(String),
    /// Neither `tokenizer.model` nor `tokenizer.json`.
    #[error("unknown tokenizer format")]
    UnknownTokenizer,
    /// No `*.safetensors` file.
    #[error("unknown tensor format")]
    UnknownTensorFormat,
    /// `tokenizer.json` merges that are neither strings nor pairs.
    #[error("could not parse tokenizer merges. expected []string or [][]string: {0}")]
    Merges(String),
    /// A `chat_template` that is neither a string nor a list of named templates.
    #[error("invalid chat_template: {0}")]
    ChatTemplate(String),
    /// A weights file that is not valid safetensors.
    #[error("{file}: {source}")]
    Safetensors {
        /// The file.
        file: String,
        /// What was wrong.
        source: Box<SafetensorsError>,
    },
    /// Two tensors that map to one GGUF name.
    #[error("duplicate tensor name '{0}' was found for this model")]
    DuplicateTensor(String),
    /// MXFP4 expert weights (`NAME.blocks` with `NAME.scales`) that do not fit together.
    #[error("MXFP4 tensor {name}: {message}")]
    Mxfp4 {
        /// The tensor (GGUF name, without `.blocks`/`.scales`).
        name: String,
        /// What was wrong.
        message: String,
    },
    /// A tensor whose element type is not F32, F16 or BF16.
    #[error("unknown data type: {dtype} (tensor {name:?})")]
    UnsupportedDtype {
        /// The GGUF tensor name.
        name: String,
        /// Its safetensors dtype.
        dtype: Dtype,
    },
    /// The GGUF could not be laid out or written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// An attention weight whose rows do not split evenly into its heads' rotary halves.
    #[error("cannot regroup {name:?}: {rows} rows do not split into {heads} heads of two halves")]
    Permute {
        /// The GGUF tensor name.
        name: String,
        /// Its rows.
        rows: u64,
        /// The head count.
        heads: u64,
    },
    /// A fused tensor to split into interleaved halves that is not 2-D with an even number of
    /// columns.
    #[error("cannot split {name:?} of shape {shape:?} into interleaved halves")]
    Split {
        /// The GGUF tensor name.
        name: String,
        /// Its shape, outermost first.
        shape: Vec<u64>,
    },
    /// The progress callback asked to stop.
    #[error("conversion cancelled")]
    Cancelled,
    /// `config.json` asks kiln to generate more items than [`MAX_GENERATED_ITEMS`] (a hostile
    /// or broken count would otherwise exhaust memory).
    #[error("config.json asks for {count} {what}, over kiln's limit of {limit}")]
    TooMany {
        /// What would be generated.
        what: &'static str,
        /// How many the configuration implies.
        count: u64,
        /// The limit it is over ([`ConvertLimits::max_generated_items`]).
        limit: u64,
    },
}

/// Bounds on what a model folder can make the converter read or generate, in the spirit of
/// [`kiln_gguf::Limits`]: the defaults are far above any real model and far below what would
/// exhaust memory; an embedder converting untrusted uploads can lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertLimits {
    /// The largest JSON file (config, tokenizer, …) read, in bytes.
    pub max_json_bytes: u64,
    /// The most items a count from `config.json` may make kiln generate (vocabulary padding,
    /// rope factors, per-layer flags).
    pub max_generated_items: u64,
}

impl Default for ConvertLimits {
    fn default() -> ConvertLimits {
        ConvertLimits {
            max_json_bytes: MAX_JSON_BYTES,
            max_generated_items: MAX_GENERATED_ITEMS,
        }
    }
}

/// The default of [`ConvertLimits::max_generated_items`]: far above any real model (the largest
/// vocabularies are near 2^18), far below what would exhaust memory.
pub const MAX_GENERATED_ITEMS: u64 = 1 << 22;

/// The files of a model folder, by path relative to the folder (`/`-separated), each mapped
/// read-only.
pub struct ModelFolder {
    files: BTreeMap<String, Source>,
    limits: ConvertLimits,
}

enum Source {
    File(GgufFile),
    Bytes(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::File(bytes) => bytes.bytes(),
            Source::Bytes(b) => b,
        }
    }
}

impl ModelFolder {
    /// Maps every file under `dir` (recursively).
    ///
    /// # Safety
    /// As [`GgufFile::map`]: the files must not be modified or truncated while the folder is
    /// alive.
    pub unsafe fn map_dir(dir: impl AsRef<Path>) -> Result<ModelFolder, ConvertError> {
        let mut files = BTreeMap::new();
        let mut pending = vec![(dir.as_ref().to_path_buf(), String::new())];
        while let Some((path, prefix)) = pending.pop() {
            let io = |source| ConvertError::Io {
                path: path.clone(),
                source,
            };
            for entry in std::fs::read_dir(&path).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = format!("{prefix}{name}");
                if entry.file_type().map_err(io)?.is_dir() {
                    pending.push((entry.path(), format!("{rel}/")));
                } else {
                    files.insert(rel, entry.path());
                }
            }
        }
        // SAFETY: forwarded to the caller.
        unsafe { ModelFolder::map_files(files) }
    }

    /// Maps the given files, named by their path in the model folder (Ollama's `files` map,
    /// resolved to blob paths).
    ///
    /// # Safety
    /// As [`GgufFile::map`]: the files must not be modified or truncated while the folder is
    /// alive (content-addressed blobs meet this).
    pub unsafe fn map_files(files: BTreeMap<String, PathBuf>) -> Result<ModelFolder, ConvertError> {
        let mut mapped = BTreeMap::new();
        for (name, path) in files {
            // SAFETY: forwarded to the caller.
            let bytes = unsafe { GgufFile::map(&path) }.map_err(|source| ConvertError::Io {
                path: path.clone(),
                source,
            })?;
            mapped.insert(name, Source::File(bytes));
        }
        Ok(ModelFolder {
            files: mapped,
            limits: ConvertLimits::default(),
        })
    }

    /// The folder with these limits for its conversion (the default is
    /// [`ConvertLimits::default`]).
    pub fn with_limits(mut self, limits: ConvertLimits) -> ModelFolder {
        self.limits = limits;
        self
    }

    /// A folder whose files are already in memory, by relative path (for embedders that hold
    /// them, tests and fuzzing).
    pub fn from_bytes(files: BTreeMap<String, Vec<u8>>) -> ModelFolder {
        ModelFolder {
            files: files
                .into_iter()
                .map(|(k, v)| (k, Source::Bytes(v)))
                .collect(),
            limits: ConvertLimits::default(),
        }
    }

    /// Gives back the memory of a mapped file's pages inside `bytes` (read again from the file
    /// if they are needed later), as a streaming reader does once it is past them.
    fn release(&self, bytes: &[u8]) {
        for source in self.files.values() {
            if let Source::File(file) = source {
                file.release(bytes);
            }
        }
    }

    /// Whether the folder has this file.
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// A JSON file's bytes, `None` when absent.
    fn read(&self, name: &str) -> Result<Option<&[u8]>, ConvertError> {
        let Some(source) = self.files.get(name) else {
            return Ok(None);
        };
        let bytes = source.bytes();
        let limit = self.limits.max_json_bytes;
        if bytes.len() as u64 > limit {
            return Err(ConvertError::TooLarge {
                file: name.to_owned(),
                len: bytes.len() as u64,
                limit,
            });
        }
        Ok(Some(bytes))
    }

    /// A binary file's bytes (any size: tensor and tokenizer model files), `None` when absent.
    fn read_binary(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Source::bytes)
    }

    fn require(&self, name: &str) -> Result<&[u8], ConvertError> {
        self.read(name)?
            .ok_or_else(|| ConvertError::MissingFile(name.to_owned()))
    }

    /// Top-level files ending in `suffix`, in name order (Go's `fs.Glob("*<suffix>")`).
    fn top_level(&self, suffix: &str) -> impl Iterator<Item = (&str, &[u8])> {
        self.files
            .iter()
            .filter(move |(k, _)| !k.contains('/') && k.ends_with(suffix))
            .map(|(k, s)| (k.as_str(), s.bytes()))
    }
}

impl std::fmt::Debug for ModelFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.files.keys()).finish()
    }
}

/// Parses a JSON file of the folder, naming it in the error.
fn parse_json<'de, T: serde::Deserialize<'de>>(
    file: &str,
    bytes: &'de [u8],
) -> Result<T, ConvertError> {
    serde_json::from_slice(bytes).map_err(|e| ConvertError::Json {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

/// `config.json`, with Go's `encoding/json` rules for the fields the converters read: a number
/// field must be a literal of its Go type, a missing or null field reads as zero.
pub(crate) struct Config {
    fields: BTreeMap<String, Box<RawValue>>,
    /// Bounds every count read from the config is checked against before it is generated.
    max_generated: u64,
}

impl Config {
    fn parse(bytes: &[u8], limits: &ConvertLimits) -> Result<Config, ConvertError> {
        let bytes = replace_non_finite(bytes);
        let fields = serde_json::from_slice(&bytes).map_err(|e| ConvertError::Json {
            file: "config.json".into(),
            message: e.to_string(),
        })?;
        Ok(Config {
            fields,
            max_generated: limits.max_generated_items,
        })
    }

    /// `count` (implied by this config) as a length, or [`ConvertError::TooMany`] over the
    /// folder's [`ConvertLimits::max_generated_items`].
    pub(crate) fn generated(&self, what: &'static str, count: u64) -> Result<usize, ConvertError> {
        if count > self.max_generated {
            return Err(ConvertError::TooMany {
                what,
                count,
                limit: self.max_generated,
            });
        }
        Ok(count as usize)
    }

    fn bad(key: &str, raw: &str, ty: &str) -> ConvertError {
        ConvertError::Json {
            file: "config.json".into(),
            message: format!("cannot unmarshal {raw} into field {key} of type {ty}"),
        }
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(|r| r.get().trim())
            .filter(|r| *r != "null")
    }

    /// A `uint32` field (0 when absent).
    pub fn u32(&self, key: &str) -> Result<u32, ConvertError> {
        match self.raw(key) {
            None => Ok(0),
            Some(raw) => raw.parse().map_err(|_| Self::bad(key, raw, "uint32")),
        }
    }

    /// A `float32` field (0 when absent), rounded once from its decimal text as Go does.
    pub fn f32(&self, key: &str) -> Result<f32, ConvertError> {
        match self.raw(key) {
            None => Ok(0.0),
            Some(raw)
                if raw.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
            {
                raw.parse().map_err(|_| Self::bad(key, raw, "float32"))
            }
            Some(raw) => Err(Self::bad(key, raw, "float32")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ConvertError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str::<Vec<Option<String>>>(raw)
                .map(|v| v.into_iter().map(Option::unwrap_or_default).collect())
                .map_err(|_| Self::bad(key, raw, "[]string")),
        }
    }

    /// The first of these fields that is set (Go's `cmp.Or`); every one must be well-typed, as
    /// Go decodes them all.
    fn first_set<T: Copy + Default + PartialEq>(
        &self,
        keys: &[&str],
        read: fn(&Config, &str) -> Result<T, ConvertError>,
    ) -> Result<T, ConvertError> {
        let mut first = T::default();
        for key in keys {
            let v = read(self, key)?;
            if first == T::default() {
                first = v;
            }
        }
        Ok(first)
    }

    /// [`first_set`](Self::first_set) for `uint32` fields.
    pub fn first_u32(&self, keys: &[&str]) -> Result<u32, ConvertError> {
        self.first_set(keys, Config::u32)
    }

    /// [`first_set`](Self::first_set) for `float32` fields.
    pub fn first_f32(&self, keys: &[&str]) -> Result<f32, ConvertError> {
        self.first_set(keys, Config::f32)
    }

    /// A `string` field ("" when absent).
    pub fn string(&self, key: &str) -> Result<String, ConvertError> {
        match self.raw(key) {
            None => Ok(String::new()),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "string")),
        }
    }

    /// An `int` field (0 when absent).
    pub fn i32(&self, key: &str) -> Result<i32, ConvertError> {
        match self.raw(key) {
            None => Ok(0),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "int")),
        }
    }

    /// The object's keys, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// A `bool` field (false when absent).
    pub fn bool(&self, key: &str) -> Result<bool, ConvertError> {
        match self.raw(key) {
            None => Ok(false),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "bool")),
        }
    }

    /// Whether the field is present and not null.
    pub fn contains(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// A `[]float32` field (empty when absent), each element rounded once from its text as Go
    /// does (a null element reads as zero).
    pub fn f32s(&self, key: &str) -> Result<Vec<f32>, ConvertError> {
        let Some(raw) = self.raw(key) else {
            return Ok(Vec::new());
        };
        let bad = || Self::bad(key, raw, "[]float32");
        let items: Vec<Option<Box<RawValue>>> = serde_json::from_str(raw).map_err(|_| bad())?;
        items
            .iter()
            .map(|item| match item.as_deref().map(|r| r.get().trim()) {
                None => Ok(0.0),
                Some(text)
                    if text
                        .starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
                {
                    text.parse().map_err(|_| bad())
                }
                Some(_) => Err(bad()),
            })
            .collect()
    }

    /// An `[]int32` field (empty when absent).
    pub fn i32s(&self, key: &str) -> Result<Vec<i32>, ConvertError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "[]int32")),
        }
    }

    /// A nested object (empty when absent or null).
    pub fn object(&self, key: &str) -> Result<Config, ConvertError> {
        match self.raw(key) {
            None => Ok(Config {
                fields: BTreeMap::new(),
                max_generated: self.max_generated,
            }),
            Some(raw) => Ok(Config {
                fields: serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "struct"))?,
                max_generated: self.max_generated,
            }),
        }
    }

    /// `vocab_size`, or `text_config.vocab_size` (Go's `cmp.Or`).
    fn vocab_size(&self) -> Result<u32, ConvertError> {
        let own = self.u32("vocab_size")?;
        if own != 0 {
            return Ok(own);
        }
        self.object("text_config")?.u32("vocab_size")
    }
}

/// Ollama's `sanitizeNonFiniteJSON`: bare `NaN`, `Infinity` and `-Infinity` tokens outside strings
/// become `0`, so configs that Python's json wrote still parse.
fn replace_non_finite(input: &[u8]) -> Vec<u8> {
    let before = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b':' | b',' | b'[');
    let after = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}');
    let mut out = Vec::with_capacity(input.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    'outer: while i < input.len() {
        let c = input[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else {
            for token in [&b"-Infinity"[..], b"Infinity", b"NaN"] {
                let end = i + token.len();
                if input.get(i..end) == Some(token)
                    && (i == 0 || before(input[i - 1]))
                    && input.get(end).is_none_or(|&b| after(b))
                {
                    out.push(b'0');
                    i = end;
                    continue 'outer;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// GGUF storage Ollama picks for a converted tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    F16,
    BF16,
}

impl Kind {
    fn ggml(self) -> GgmlType {
        match self {
            Kind::F32 => GgmlType::F32,
            Kind::F16 => GgmlType::F16,
            Kind::BF16 => GgmlType::BF16,
        }
    }

    /// Bytes per value.
    fn ggml_size(self) -> usize {
        match self {
            Kind::F32 => 4,
            Kind::F16 | Kind::BF16 => 2,
        }
    }

    /// Ollama's `tensorBase.Kind` and `safetensor.Kind`: biases, norms and other 1-D tensors
    /// (and a few named ones) stay F32, other tensors are F16, or BF16 when they were BF16.
    fn for_tensor(name: &str, dims: usize, dtype: Dtype) -> Kind {
        const F32_SUFFIXES: [&str; 6] = [
            ".ffn_gate_inp.weight",
            ".bias",
            ".shortconv.conv.weight",
            ".ssm_conv1d.weight",
            "rel_pos_h",
            "rel_pos_w",
        ];
        const F32_PREFIXES: [&str; 3] = ["a.feature_extractor.", "a.conv1d.", "a.subsampling."];
        const F32_NAMES: [&str; 7] = [
            "token_types.weight",
            "v.positional_embedding_vlm",
            "v.position_embd.weight",
            "v.tile_position_embd.weight",
            "v.pre_tile_position_embd.weight",
            "v.post_tile_position_embd.weight",
            "s.position_embd",
        ];
        let always_f32 = F32_SUFFIXES.iter().any(|s| name.ends_with(s))
            || F32_PREFIXES.iter().any(|p| name.starts_with(p))
            || name.contains(".conv_dw.")
            || F32_NAMES.contains(&name);
        if always_f32 || dims <= 1 {
            return Kind::F32;
        }
        if dtype == Dtype::F8E4M3 {
            return Kind::BF16;
        }
        let keeps_bf16 = !["v.", "s.", "mm."].iter().any(|p| name.starts_with(p))
            && !name.contains("ffn_gate_inp_shexp.weight");
        if dtype == Dtype::BF16 && keeps_bf16 {
            Kind::BF16
        } else {
            Kind::F16
        }
    }
}

/// A tensor of the output: its GGUF name and storage, and where its values come from.
pub(crate) struct Planned<'f> {
    pub name: String,
    kind: Kind,
    dtype: Dtype,
    /// Source shape, outermost first.
    shape: Vec<u64>,
    data: Cow<'f, [u8]>,
    /// Rows regrouped per attention head (`Some(heads)`): llama.cpp's rotary layout for the
    /// interleaved halves Hugging Face stores.
    pub permute_heads: Option<u64>,
    /// One added to every value, in float32 (Gemma's norm weights are stored as `weight - 1`).
    pub add_one: bool,
    /// An FP8 weight's block scales (its values are `decode(byte) × scale`).
    fp8: Option<fp8::Scales>,
    /// MXFP4 expert weights, regrouped into ggml blocks as they are written (`data` is empty).
    mxfp4: Option<gpt_oss::Mxfp4Source<'f>>,
}

impl<'f> Planned<'f> {
    fn from_view(name: String, view: TensorView<'f>) -> Planned<'f> {
        Planned {
            kind: Kind::for_tensor(&name, view.shape.len(), view.dtype),
            name,
            dtype: view.dtype,
            shape: view.shape,
            data: Cow::Borrowed(view.data),
            permute_heads: None,
            add_one: false,
            fp8: None,
            mxfp4: None,
        }
    }

    /// An FP8 weight with its scales (stored BF16 unless its name makes it F32).
    fn from_fp8(name: String, view: TensorView<'f>, scales: fp8::Scales) -> Planned<'f> {
        let mut planned = Planned::from_view(name, view);
        planned.fp8 = Some(scales);
        planned
    }

    /// MXFP4 expert weights, written as ggml's MXFP4 blocks.
    fn from_mxfp4(name: String, source: gpt_oss::Mxfp4Source<'f>) -> Planned<'f> {
        Planned {
            name,
            // Not a value conversion: `spec`, `write` and `convert_range` take the MXFP4 path.
            kind: Kind::F16,
            dtype: Dtype::U8,
            shape: source.shape(),
            data: Cow::Borrowed(&[]),
            permute_heads: None,
            add_one: false,
            fp8: None,
            mxfp4: Some(source),
        }
    }

    /// Every other column (`first`, `first + 2`, …) of a 2-D tensor, as a new tensor `name`
    /// (its storage decided by the new name). Used for interleaved fused biases, which are small:
    /// the selected values are copied.
    fn every_other_column(&self, name: String, first: u64) -> Result<Planned<'f>, ConvertError> {
        let &[rows, cols] = &self.shape[..] else {
            return Err(ConvertError::Split {
                name: self.name.clone(),
                shape: self.shape.clone(),
            });
        };
        if !cols.is_multiple_of(2) || self.fp8.is_some() || self.mxfp4.is_some() {
            return Err(ConvertError::Split {
                name: self.name.clone(),
                shape: self.shape.clone(),
            });
        }
        let width = self.dtype.size() as usize;
        let row_bytes = cols as usize * width;
        let data: Vec<u8> = self
            .data
            .chunks_exact(row_bytes.max(1))
            .take(rows as usize)
            .flat_map(|row| {
                row.chunks_exact(width)
                    .skip(first as usize)
                    .step_by(2)
                    .flatten()
                    .copied()
            })
            .collect();
        Ok(Planned {
            kind: Kind::for_tensor(&name, 2, self.dtype),
            name,
            dtype: self.dtype,
            shape: vec![rows, cols / 2],
            data: Cow::Owned(data),
            permute_heads: None,
            add_one: self.add_one,
            fp8: None,
            mxfp4: None,
        })
    }

    /// A computed F32 vector (e.g. rope frequency factors).
    pub fn f32_vector(name: &str, values: &[f32]) -> Planned<'static> {
        Planned {
            name: name.to_owned(),
            kind: Kind::F32,
            dtype: Dtype::F32,
            shape: vec![values.len() as u64],
            data: Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            permute_heads: None,
            add_one: false,
            fp8: None,
            mxfp4: None,
        }
    }

    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.shape.len()
    }

    /// Keeps only the first `rows` rows (outermost dimension) when there are more.
    pub fn truncate_rows(&mut self, rows: u64) {
        let Some(&have) = self.shape.first() else {
            return;
        };
        if have > rows {
            let row_bytes = self.data.len() as u64 / have;
            self.data = match std::mem::take(&mut self.data) {
                Cow::Borrowed(d) => Cow::Borrowed(&d[..(rows * row_bytes) as usize]),
                Cow::Owned(mut d) => {
                    d.truncate((rows * row_bytes) as usize);
                    Cow::Owned(d)
                }
            };
            self.shape[0] = rows;
        }
    }

    fn spec(&self) -> TensorSpec<'_> {
        TensorSpec::new(
            self.name.as_str(),
            if self.mxfp4.is_some() {
                GgmlType::MXFP4
            } else {
                self.kind.ggml()
            },
            self.shape.iter().rev().copied().collect::<Vec<_>>(),
        )
    }

    /// The source bytes in output order: whole, or row by row when heads are regrouped.
    fn pieces(&self) -> Result<Vec<&[u8]>, ConvertError> {
        let Some(heads) = self.permute_heads else {
            return Ok(vec![&self.data[..]]);
        };
        let rows = self.shape[0];
        // No bytes, no rows to regroup (however many the shape claims).
        if rows == 0 || self.data.is_empty() {
            return Ok(Vec::new());
        }
        if heads == 0 || !rows.is_multiple_of(heads * 2) {
            return Err(ConvertError::Permute {
                name: self.name.clone(),
                rows,
                heads,
            });
        }
        let row_bytes = self.data.len() / rows as usize;
        let half = rows / heads / 2;
        let mut pieces = Vec::with_capacity(rows as usize);
        for head in 0..heads {
            for i in 0..half {
                for j in 0..2 {
                    let row = (head * 2 * half + j * half + i) as usize;
                    pieces.push(&self.data[row * row_bytes..(row + 1) * row_bytes]);
                }
            }
        }
        Ok(pieces)
    }

    /// Whether the stored bytes are the output bytes (no conversion of values).
    fn stored_as_is(&self) -> bool {
        !self.add_one
            && matches!(
                (self.dtype, self.kind),
                (Dtype::F32, Kind::F32) | (Dtype::F16, Kind::F16) | (Dtype::BF16, Kind::BF16)
            )
    }

    /// Streams the converted bytes to `writer`, a bounded chunk at a time, calling `written`
    /// with the tensor's bytes written so far after each chunk (an error stops the write).
    fn write<W: Write>(
        &self,
        writer: &mut Writer<W>,
        written: &mut dyn FnMut(u64) -> Result<(), ConvertError>,
    ) -> Result<(), ConvertError> {
        let same = self.stored_as_is();
        let width = self.dtype.size() as usize;
        let mut out = Vec::with_capacity(CHUNK * 4);
        let mut done = 0u64;
        if let Some(source) = &self.mxfp4 {
            let blocks = source.block_count();
            let step = (CHUNK as u64 / 16).max(1);
            for first in (0..blocks).step_by(step as usize) {
                out.clear();
                source.write_blocks(first..(first + step).min(blocks), &mut out);
                writer.write_tensor_data(&out)?;
                done += out.len() as u64;
                written(done)?;
            }
            return Ok(());
        }
        for piece in self.pieces()? {
            if same {
                for chunk in piece.chunks(1 << 20) {
                    writer.write_tensor_data(chunk)?;
                    done += chunk.len() as u64;
                    written(done)?;
                }
                continue;
            }
            for chunk in piece.chunks(CHUNK * width) {
                out.clear();
                self.convert_values(chunk, &mut out);
                writer.write_tensor_data(&out)?;
                done += out.len() as u64;
                written(done)?;
            }
        }
        Ok(())
    }

    /// Bytes `range` of the converted tensor (in its output type) into `out`, converting only
    /// the values the range covers.
    fn convert_range(
        &self,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        out.clear();
        if let Some(source) = &self.mxfp4 {
            const BLOCK: usize = 17;
            let (first, last) = (range.start / BLOCK, range.end.div_ceil(BLOCK));
            source.write_blocks(first as u64..last as u64, out);
            out.drain(..range.start - first * BLOCK);
            out.truncate(range.len());
            return Ok(());
        }
        let (from, to) = (self.dtype.size() as usize, self.kind.ggml_size());
        // Whole output values covering the range, trimmed to it afterwards.
        let (first, last) = (range.start / to, range.end.div_ceil(to));
        let mut at = 0usize;
        for piece in self.pieces()? {
            let values = piece.len() / from;
            let (lo, hi) = (first.max(at), last.min(at + values));
            if lo < hi {
                let src = &piece[(lo - at) * from..(hi - at) * from];
                if self.stored_as_is() {
                    out.extend_from_slice(src);
                } else {
                    self.convert_values(src, out);
                }
            }
            at += values;
            if at >= last {
                break;
            }
        }
        let skip = range.start - first * to;
        out.drain(..skip.min(out.len()));
        out.truncate(range.len());
        Ok(())
    }

    /// Appends the output values of stored values `chunk` to `out`.
    fn convert_values(&self, chunk: &[u8], out: &mut Vec<u8>) {
        let width = self.dtype.size() as usize;
        // Where the chunk starts among the stored values (every chunk is a slice of `data`):
        // an FP8 value's scale depends on its row and column.
        let first = (chunk.as_ptr() as usize - self.data.as_ptr() as usize) / width;
        for (i, bytes) in chunk.chunks_exact(width).enumerate() {
            let value = match (&self.fp8, self.dtype) {
                (Some(scales), _) => scales.value((first + i) as u64, bytes[0]),
                (None, dtype) => match dtype {
                    Dtype::F32 => f32::from_le_bytes(bytes.try_into().expect("4 bytes")),
                    Dtype::F16 => {
                        kiln_quant::f16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
                    }
                    _ => kiln_quant::bf16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])),
                },
            };
            // Only when asked: adding zero would turn -0.0 into +0.0.
            let value = if self.add_one { value + 1.0 } else { value };
            match self.kind {
                Kind::F32 => out.extend_from_slice(&value.to_le_bytes()),
                Kind::F16 => {
                    out.extend_from_slice(&kiln_quant::f32_to_f16_bits(value).to_le_bytes())
                }
                // Go's bfloat16 encoder truncates (exact for BF16 sources; only 1-D
                // tensors, stored as F32, are shifted).
                Kind::BF16 => out.extend_from_slice(&value.to_le_bytes()[2..]),
            }
        }
    }
}

const CHUNK: usize = 1 << 16;

/// Bytes between two progress reports inside one tensor while a conversion is written.
pub const PROGRESS_STEP: u64 = 16 << 20;

/// The order Ollama's GGUF writer (`ggml.WriteGGUF`) puts tensors in: by layer number (tensors
/// outside `blk.N.` last), then by name.
pub(crate) fn ollama_tensor_order(a: &str, b: &str) -> std::cmp::Ordering {
    let block = |name: &str| block_of(name).unwrap_or(i64::MAX);
    block(a).cmp(&block(b)).then_with(|| a.cmp(b))
}

/// Ollama's `ggml.Tensor.block`: the layer number of a `blk.N.` name, `None` sorts last.
fn block_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start_matches([' ', '\t']);
    let digits_end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '+' || c == '-'))))
        .map_or(rest.len(), |(i, _)| i);
    let (number, tail) = rest.split_at(digits_end);
    if !tail.starts_with('.') {
        return None;
    }
    number.parse().ok()
}

/// A planned conversion: the metadata and tensors of the output, ready to be written.
pub struct Conversion<'f> {
    folder: &'f ModelFolder,
    architecture: String,
    metadata: Vec<(String, Value<'static>)>,
    tensors: Vec<Planned<'f>>,
}

impl<'f> Conversion<'f> {
    /// Reads the folder's configuration, tokenizer and safetensors headers and decides every
    /// output tensor; no tensor data is read yet.
    pub fn plan(folder: &'f ModelFolder) -> Result<Conversion<'f>, ConvertError> {
        let config = Config::parse(folder.require("config.json")?, &folder.limits)?;
        let architectures = config.strings("architectures")?;
        let Some(architecture) = architectures.first() else {
            return Err(ConvertError::UnknownArchitecture);
        };
        let arch: &dyn Architecture = match CONVERTERS.iter().find(|(n, _)| n == architecture) {
            Some((_, arch)) => *arch,
            None if OLLAMA_ARCHITECTURES.contains(&architecture.as_str()) => {
                return Err(ConvertError::ArchitectureNotYet(architecture.clone()));
            }
            None => return Err(ConvertError::UnsupportedArchitecture(architecture.clone())),
        };
        let params = arch.parameters(&config, folder)?;
        let mut tokenizer = tokenizer::parse(folder, arch.special_kinds())?;
        let vocab_size = config.vocab_size()? as usize;
        let have = tokenizer.vocab.tokens.len();
        if vocab_size > have {
            config.generated("vocabulary entries", vocab_size as u64)?;
            for i in 0..vocab_size - have {
                tokenizer.vocab.tokens.push(format!("[PAD{i}]"));
                tokenizer.vocab.scores.push(-1.0);
                tokenizer.vocab.types.push(tokenizer::TOKEN_USER_DEFINED);
            }
        }

        let fp8_block = fp8::block_size(&config)?;
        let names = arch.replacements_for_config(&config)?;
        let mut sources = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (file, bytes) in folder.top_level(".safetensors") {
            let parsed = Safetensors::parse(bytes).map_err(|source| ConvertError::Safetensors {
                file: file.to_owned(),
                source: Box::new(source),
            })?;
            // FP8 weights take their scales from the same file; the scales are not tensors.
            let (scales, consumed) = fp8::scale_companions(&parsed.tensors)?;
            for (i, tensor) in parsed.tensors.iter().enumerate() {
                if consumed.contains(&i) {
                    continue;
                }
                let name = kiln_go::strings::Replacer::new(names).replace(&tensor.name);
                if !seen.insert(name.clone()) {
                    return Err(ConvertError::DuplicateTensor(name));
                }
                let fp8 = if tensor.dtype == Dtype::F8E4M3 {
                    let Some(block) = fp8_block else {
                        return Err(ConvertError::Fp8(format!(
                            "missing fp8 block size metadata for tensor {:?}",
                            tensor.name
                        )));
                    };
                    let Some(&scale) = scales.get(&i) else {
                        return Err(ConvertError::Fp8(format!(
                            "missing fp8 scale companion for tensor {:?}",
                            tensor.name
                        )));
                    };
                    Some(fp8::Scales::new(
                        &name,
                        tensor,
                        &parsed.tensors[scale],
                        block,
                    )?)
                } else {
                    None
                };
                sources.push((name, tensor.clone(), fp8));
            }
        }
        if sources.is_empty() && folder.top_level(".safetensors").next().is_none() {
            return Err(ConvertError::UnknownTensorFormat);
        }
        let mut tensors = Vec::new();
        let mut packed = Vec::new();
        for (name, source, fp8) in sources {
            if arch.skip_tensor(&name) {
                continue;
            }
            if let Some(scales) = fp8 {
                tensors.push(Planned::from_fp8(name, source, scales));
                continue;
            }
            if !matches!(source.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                packed.push((name, source));
                continue;
            }
            tensors.push(Planned::from_view(name, source));
        }
        arch.adopt_packed(packed, &mut tensors)?;
        arch.adjust_tensors(&config, tokenizer.vocab.tokens.len(), &mut tensors)?;
        tensors.sort_by(|a, b| ollama_tensor_order(&a.name, &b.name));

        let mut kv = base_metadata(&tokenizer);
        let name = arch.gguf_name();
        kv.insert("general.architecture".into(), Value::string(name));
        for (key, value) in &params {
            kv.insert(format!("{name}.{key}"), value.clone());
        }
        arch.extra_metadata(&mut tokenizer, &mut kv);
        // Ollama records which tensors came from FP8 (`sourceTensorKV`): a create without a
        // quantize type then makes them Q8_0 rather than keep the BF16 it decoded them to.
        let mut from_fp8: Vec<String> = tensors
            .iter()
            .filter(|t| t.fp8.is_some())
            .map(|t| t.name.clone())
            .collect();
        from_fp8.sort_unstable();
        if !from_fp8.is_empty() {
            kv.insert(
                format!("{name}.source_quantization"),
                Value::string("hf_fp8"),
            );
            kv.insert(format!("{name}.source_fp8_tensors"), strings(&from_fp8));
        }
        Ok(Conversion {
            folder,
            architecture: architecture.clone(),
            metadata: kv.into_iter().collect(),
            tensors,
        })
    }

    /// The Hugging Face architecture (`config.json`'s first `architectures` entry).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The metadata that will be written, in file order.
    pub fn metadata(&self) -> &[(String, Value<'static>)] {
        &self.metadata
    }

    /// The output tensors' names, in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    fn specs(&self) -> Vec<TensorSpec<'_>> {
        self.tensors.iter().map(Planned::spec).collect()
    }

    /// The header of the GGUF [`write`](Self::write) produces (everything before the tensor
    /// data), which [`kiln_gguf::Gguf::parse_header`] reads: the model as a quantizer sees it
    /// before any value is converted.
    pub fn header(&self) -> Result<Vec<u8>, ConvertError> {
        Ok(kiln_gguf::Layout::header(&self.metadata, &self.specs())?.0)
    }

    /// Exact size of the GGUF [`write`](Self::write) produces.
    pub fn output_len(&self) -> Result<u64, ConvertError> {
        Ok(kiln_gguf::Layout::compute(&self.metadata, &self.specs())?.file_len)
    }

    /// Writes the GGUF, converting tensor data chunk by chunk.
    pub fn write<W: Write>(&self, out: W) -> Result<W, ConvertError> {
        self.write_with_progress(out, &mut |_, _| ControlFlow::Continue(()))
    }

    /// [`write`](Self::write), calling `progress(bytes written, total bytes)` after the header,
    /// after each tensor, and within a large tensor every [`PROGRESS_STEP`] bytes (so a
    /// cancellation never waits for a whole tensor); `ControlFlow::Break` stops with
    /// [`ConvertError::Cancelled`].
    pub fn write_with_progress<W: Write>(
        &self,
        out: W,
        progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    ) -> Result<W, ConvertError> {
        let specs = self.specs();
        let mut writer = Writer::new(out, &self.metadata, &specs)?;
        let layout = writer.layout().clone();
        let mut report = |done: u64| match progress(done, layout.file_len) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(ConvertError::Cancelled),
        };
        report(layout.data_offset)?;
        for (i, tensor) in self.tensors.iter().enumerate() {
            let start = layout.data_offset + layout.offsets[i];
            let mut reported = 0u64;
            tensor.write(&mut writer, &mut |done| {
                if done - reported < PROGRESS_STEP || done == layout.sizes[i] {
                    return Ok(());
                }
                reported = done;
                report(start + done)
            })?;
            let end = start + layout.sizes[i];
            report(end.next_multiple_of(layout.alignment).min(layout.file_len))?;
        }
        Ok(writer.finish()?)
    }
}

/// Architecture parameters by key (without the architecture prefix).
pub(crate) type Parameters = BTreeMap<&'static str, Value<'static>>;

/// The size keys most of Ollama's converters take from the same Hugging Face fields.
pub(crate) const SIZE_FIELDS: [(&str, &str); 5] = [
    ("block_count", "num_hidden_layers"),
    ("context_length", "max_position_embeddings"),
    ("embedding_length", "hidden_size"),
    ("feed_forward_length", "intermediate_size"),
    ("attention.head_count", "num_attention_heads"),
];

/// Writes each `(key, field)` as Ollama does for a struct field of that type: unconditionally,
/// zero when the config leaves the field out.
fn insert_fields<T>(
    p: &mut Parameters,
    fields: &[(&'static str, &str)],
    read: impl Fn(&str) -> Result<T, ConvertError>,
    value: fn(T) -> Value<'static>,
) -> Result<(), ConvertError> {
    for &(key, field) in fields {
        p.insert(key, value(read(field)?));
    }
    Ok(())
}

/// [`insert_fields`] for `uint32` fields.
pub(crate) fn insert_u32s(
    p: &mut Parameters,
    c: &Config,
    fields: &[(&'static str, &str)],
) -> Result<(), ConvertError> {
    insert_fields(p, fields, |f| c.u32(f), Value::U32)
}

/// [`insert_fields`] for `float32` fields.
pub(crate) fn insert_f32s(
    p: &mut Parameters,
    c: &Config,
    fields: &[(&'static str, &str)],
) -> Result<(), ConvertError> {
    insert_fields(p, fields, |f| c.f32(f), Value::F32)
}

/// Query and key-value head counts for regrouping rotary rows (no `num_key_value_heads` means
/// one key-value head per query head).
pub(crate) fn rotary_head_counts(c: &Config) -> Result<(u64, u64), ConvertError> {
    let heads = u64::from(c.u32("num_attention_heads")?);
    let kv_heads = match c.u32("num_key_value_heads")? {
        0 => heads,
        n => u64::from(n),
    };
    Ok((heads, kv_heads))
}

/// The keys Ollama's BERT and Llama converters read alike, field for field: block count, and
/// context, embedding and feed-forward lengths and layer-norm epsilon when set.
fn shared_parameters(c: &Config) -> Result<Parameters, ConvertError> {
    let mut p = Parameters::new();
    p.insert(
        "block_count",
        Value::U32(c.first_u32(&["n_layers", "num_hidden_layers", "n_layer"])?),
    );
    for (key, names) in [
        ("context_length", &["max_position_embeddings", "n_ctx"][..]),
        ("embedding_length", &["hidden_size", "n_embd"]),
        ("feed_forward_length", &["intermediate_size", "n_inner"]),
    ] {
        let v = c.first_u32(names)?;
        if v > 0 {
            p.insert(key, Value::U32(v));
        }
    }
    let eps = c.first_f32(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])?;
    if eps > 0.0 {
        p.insert("attention.layer_norm_epsilon", Value::F32(eps));
    }
    Ok(p)
}

/// Metadata keys sorted as Ollama writes them.
pub(crate) type Metadata = BTreeMap<String, Value<'static>>;

/// What differs between architectures.
pub(crate) trait Architecture {
    /// Architecture parameters, from `config.json` and any other file the architecture reads.
    fn parameters(&self, config: &Config, folder: &ModelFolder)
    -> Result<Parameters, ConvertError>;
    /// Special tokens looked up in `tokenizer_config.json`, in key order.
    fn special_kinds(&self) -> &'static [&'static str] {
        &["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
    }
    /// Hugging Face → GGUF tensor-name replacements, in priority order.
    fn replacements(&self) -> &'static [(&'static str, &'static str)];
    /// The replacements for this config (for architectures with more than one naming layout).
    fn replacements_for_config(
        &self,
        _config: &Config,
    ) -> Result<&'static [(&'static str, &'static str)], ConvertError> {
        Ok(self.replacements())
    }
    /// Takes over the tensors whose dtype is not a float (packed quantized blocks and their
    /// scales), by GGUF name in source order; by default the first is refused.
    fn adopt_packed<'f>(
        &self,
        packed: Vec<(String, TensorView<'f>)>,
        _tensors: &mut Vec<Planned<'f>>,
    ) -> Result<(), ConvertError> {
        match packed.into_iter().next() {
            Some((name, view)) => Err(ConvertError::UnsupportedDtype {
                name,
                dtype: view.dtype,
            }),
            None => Ok(()),
        }
    }
    /// Tensors the GGUF leaves out (by GGUF name).
    fn skip_tensor(&self, _name: &str) -> bool {
        false
    }
    /// Regroups or adds tensors once all are known.
    fn adjust_tensors(
        &self,
        _config: &Config,
        _vocab_len: usize,
        _tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        Ok(())
    }
    /// The GGUF `general.architecture`, which prefixes the parameter keys.
    fn gguf_name(&self) -> &'static str;
    /// Keys beyond the prefixed parameters (and adjustments to the tokenizer's), written over
    /// the rest.
    fn extra_metadata(&self, _tokenizer: &mut Tokenizer, _kv: &mut Metadata) {}
}

/// A GGUF array of strings.
fn strings(v: &[String]) -> Value<'static> {
    Value::Array(kiln_gguf::Array::new(
        kiln_gguf::ValueType::String,
        v.iter().map(|s| Value::string(s.clone())).collect(),
    ))
}

/// Keys every converted model has (Ollama's `ModelParameters.KV`).
fn base_metadata(t: &Tokenizer) -> Metadata {
    let mut kv = Metadata::new();
    kv.insert("general.file_type".into(), Value::U32(1));
    kv.insert("general.quantization_version".into(), Value::U32(2));
    kv.insert("tokenizer.ggml.pre".into(), Value::string(t.pre.clone()));
    kv.insert(
        "tokenizer.ggml.model".into(),
        Value::string(t.vocab.model.clone()),
    );
    kv.insert("tokenizer.ggml.tokens".into(), strings(&t.vocab.tokens));
    kv.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array(kiln_gguf::Array::new(
            kiln_gguf::ValueType::F32,
            t.vocab.scores.iter().map(|&s| Value::F32(s)).collect(),
        )),
    );
    kv.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(kiln_gguf::Array::new(
            kiln_gguf::ValueType::I32,
            t.vocab.types.iter().map(|&s| Value::I32(s)).collect(),
        )),
    );
    if !t.merges.is_empty() {
        kv.insert("tokenizer.ggml.merges".into(), strings(&t.merges));
    }
    if !t.template.is_empty() {
        kv.insert(
            "tokenizer.chat_template".into(),
            Value::string(t.template.clone()),
        );
    }
    for s in &t.special {
        if let Some(add) = s.add_token {
            kv.insert(
                format!("tokenizer.ggml.add_{}_token", s.key()),
                Value::Bool(add),
            );
        }
        kv.insert(
            format!("tokenizer.ggml.{}_token_id", s.key()),
            Value::U32(s.id as u32),
        );
        if !s.ids.is_empty() {
            kv.insert(
                format!("tokenizer.ggml.{}_token_ids", s.key()),
                Value::Array(kiln_gguf::Array::new(
                    kiln_gguf::ValueType::I32,
                    s.ids.iter().map(|&i| Value::I32(i)).collect(),
                )),
            );
        }
    }
    kv
}

/// The architectures kiln converts (`config.json`'s first `architectures` entry), each with its
/// converter.
static CONVERTERS: [(&str, &(dyn Architecture + Sync)); 12] = [
    ("BertModel", &bert::Bert),
    ("LlamaForCausalLM", &llama::Llama),
    ("Qwen2ForCausalLM", &qwen2::Qwen2),
    ("GemmaForCausalLM", &gemma::Gemma::One),
    ("Gemma2ForCausalLM", &gemma::Gemma::Two),
    ("Gemma3ForCausalLM", &gemma::Gemma::Three),
    ("Gemma3ForConditionalGeneration", &gemma::Gemma::ThreeVision),
    ("Phi3ForCausalLM", &phi3::Phi3),
    ("Olmo3ForCausalLM", &olmo::Olmo3),
    ("Ministral3ForCausalLM", &mistral::Ministral3),
    ("CohereForCausalLM", &command_r::CommandR),
    ("GptOssForCausalLM", &gpt_oss::GptOss),
];

/// The Hugging Face architectures kiln converts, in the order its documentation lists them.
pub fn supported_architectures() -> impl Iterator<Item = &'static str> {
    CONVERTERS.iter().map(|(name, _)| *name)
}

fn supported_list() -> String {
    supported_architectures().collect::<Vec<_>>().join(", ")
}

/// `config.json` architectures Ollama's converter handles (kiln refuses the ones it does not
/// convert yet with [`ConvertError::ArchitectureNotYet`] rather than calling them unsupported).
const OLLAMA_ARCHITECTURES: [&str; 39] = [
    "BertModel",
    "LlamaForCausalLM",
    "MllamaForConditionalGeneration",
    "Llama4ForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "Ministral3ForCausalLM",
    "MixtralForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "Gemma3ForConditionalGeneration",
    "Gemma3TextModel",
    "Gemma3nForConditionalGeneration",
    "Gemma4ForCausalLM",
    "Gemma4ForConditionalGeneration",
    "Phi3ForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration",
    "Olmo3ForCausalLM",
    "NomicBertModel",
    "NomicBertMoEModel",
    "CohereForCausalLM",
    "GptOssForCausalLM",
    "DeepseekOCRForCausalLM",
    "DeepseekV3ForCausalLM",
    "Glm4MoeLiteForCausalLM",
    "LagunaForCausalLM",
    "GlmOcrForConditionalGeneration",
    "Lfm2ForCausalLM",
    "Lfm2MoeForCausalLM",
    "Lfm2VlForConditionalGeneration",
    "Qwen3NextForCausalLM",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "NemotronHForCausalLM",
    "NemotronH_Nano_VL_V2",
    "NemotronH_Nano_Omni_Reasoning_V3",
];

/// A model folder for unit tests: `config`, a four-token `tokenizer.json`, and these tensors.
/// A safetensors file of these tensors (name, dtype, shape, bytes), for tests elsewhere.
#[cfg(test)]
pub(crate) fn safetensors_for_tests(tensors: &[(&str, &str, &[u64], &[u8])]) -> Vec<u8> {
    safetensors::encode(tensors)
}

#[cfg(test)]
pub(crate) fn test_folder(config: &str, tensors: &[(&str, &str, &[u64], &[u8])]) -> ModelFolder {
    ModelFolder::from_bytes(BTreeMap::from([
        ("config.json".to_owned(), config.as_bytes().to_vec()),
        (
            "tokenizer.json".to_owned(),
            br#"{"model": {"vocab": {"a": 0, "b": 1, "c": 2, "d": 3}}}"#.to_vec(),
        ),
        ("model.safetensors".to_owned(), safetensors::encode(tensors)),
    ]))
}

/// Tensor `index` of the output, produced on demand a range at a time (the one-pass quantizer's
/// input, [`crate::quantize::quantize_conversion`]).
impl crate::quantize::TensorData for Conversion<'_> {
    fn read<'s>(
        &'s self,
        index: usize,
        range: std::ops::Range<usize>,
        buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], crate::quantize::QuantizeError> {
        self.tensors[index].convert_range(range, buf)?;
        Ok(buf)
    }

    fn release(&self, index: usize) {
        let tensor = &self.tensors[index];
        if let Cow::Borrowed(data) = &tensor.data {
            self.folder.release(data);
        }
        if let Some(source) = &tensor.mxfp4 {
            for data in source.sources() {
                self.folder.release(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_numbers_as_gos_sscanf_reads_them() {
        assert_eq!(block_of("blk.0.attn_q.weight"), Some(0));
        assert_eq!(block_of("blk.12.ffn_up.bias"), Some(12));
        assert_eq!(block_of("blk.x.y"), None);
        assert_eq!(block_of("blk.3"), None);
        assert_eq!(block_of("token_embd.weight"), None);
    }

    #[test]
    fn storage_kinds_follow_ollamas_rules() {
        for (name, dims, dtype, kind) in [
            ("blk.0.attn_q.weight", 2, Dtype::F32, Kind::F16),
            ("blk.0.attn_q.weight", 2, Dtype::BF16, Kind::BF16),
            ("blk.0.attn_q.bias", 2, Dtype::BF16, Kind::F32),
            ("output_norm.weight", 1, Dtype::F16, Kind::F32),
            ("token_types.weight", 2, Dtype::F32, Kind::F32),
            ("v.blk.0.attn_q.weight", 2, Dtype::BF16, Kind::F16),
        ] {
            assert_eq!(Kind::for_tensor(name, dims, dtype), kind, "{name} {dtype}");
        }
    }

    #[test]
    fn head_regrouping_interleaves_each_heads_halves() {
        let rows: Vec<f32> = (0..6).map(|r| r as f32).collect();
        let mut t = Planned::f32_vector("blk.0.attn_q.weight", &rows);
        t.shape = vec![6, 1];
        t.permute_heads = Some(1);
        let values: Vec<f32> = t
            .pieces()
            .unwrap()
            .iter()
            .map(|p| f32::from_le_bytes((*p).try_into().unwrap()))
            .collect();
        assert_eq!(values, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        t.permute_heads = Some(4);
        assert!(matches!(
            t.pieces(),
            Err(ConvertError::Permute {
                rows: 6,
                heads: 4,
                ..
            })
        ));
        t.permute_heads = Some(0);
        assert!(t.pieces().is_err());
        let mut empty = Planned::f32_vector("blk.0.attn_k.weight", &[]);
        empty.permute_heads = Some(2);
        assert!(empty.pieces().unwrap().is_empty());
    }

    /// The converted bytes of tensor `t` as `write` streams them (the two-step path).
    fn written(t: &Planned<'_>) -> Vec<u8> {
        let spec = t.spec();
        let no_metadata: [(&str, Value<'_>); 0] = [];
        let mut w = Writer::new(Vec::new(), &no_metadata, std::slice::from_ref(&spec)).unwrap();
        let start = w.layout().data_offset as usize;
        let len = w.layout().sizes[0] as usize;
        t.write(&mut w, &mut |_| Ok(())).unwrap();
        w.finish().unwrap()[start..start + len].to_vec()
    }

    proptest::proptest! {
        /// Any byte range the one-pass quantizer asks for is that range of what the two-step
        /// conversion writes: regrouped heads, Gemma's `+ 1`, every source and output type.
        #[test]
        fn converted_ranges_are_slices_of_the_written_tensor(
            heads in 1u64..4,
            half in 1u64..4,
            cols in 1u64..24,
            types in proptest::sample::select(vec![
                (Dtype::F32, Kind::F32), (Dtype::F32, Kind::F16), (Dtype::F16, Kind::F16),
                (Dtype::F16, Kind::F32), (Dtype::BF16, Kind::BF16), (Dtype::BF16, Kind::F16),
                (Dtype::BF16, Kind::F32),
            ]),
            permute in proptest::bool::ANY,
            add_one in proptest::bool::ANY,
            seed in proptest::num::u64::ANY,
            cuts in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0), 1..6),
        ) {
            let (dtype, kind) = types;
            let rows = heads * half * 2;
            let n = (rows * cols) as usize;
            let data: Vec<u8> = (0..n * dtype.size() as usize)
                .map(|i| (seed.wrapping_mul(i as u64 + 1).wrapping_add(i as u64 * 131) >> 7) as u8)
                .collect();
            let t = Planned {
                name: "blk.0.attn_q.weight".into(),
                kind,
                dtype,
                shape: vec![rows, cols],
                data: Cow::Owned(data),
                permute_heads: permute.then_some(heads),
                add_one,
                fp8: None,
                mxfp4: None,
            };
            let whole = written(&t);
            let mut buf = Vec::new();
            t.convert_range(0..whole.len(), &mut buf).unwrap();
            proptest::prop_assert_eq!(&buf, &whole);
            for (a, b) in cuts {
                let (a, b) = ((a * whole.len() as f64) as usize, (b * whole.len() as f64) as usize);
                let range = a.min(b)..a.max(b);
                t.convert_range(range.clone(), &mut buf).unwrap();
                proptest::prop_assert_eq!(&buf[..], &whole[range]);
            }
        }
    }

    #[test]
    fn non_finite_tokens_outside_strings_become_zero() {
        let input = br#"{"a": NaN, "b": [-Infinity,Infinity], "c": "NaN", "d": NaNx}"#;
        assert_eq!(
            String::from_utf8(replace_non_finite(input)).unwrap(),
            r#"{"a": 0, "b": [0,0], "c": "NaN", "d": NaNx}"#
        );
    }

    #[test]
    fn config_fields_follow_gos_types() {
        let c = Config::parse(
            br#"{"a": 384, "b": 1e-12, "c": -1, "d": 1.5, "e": null, "f": "x",
                                   "text_config": {"vocab_size": 7}}"#,
            &ConvertLimits::default(),
        )
        .unwrap();
        assert_eq!(c.u32("a").unwrap(), 384);
        assert_eq!(c.f32("b").unwrap(), 1e-12);
        assert_eq!(c.u32("e").unwrap(), 0);
        assert_eq!(c.u32("missing").unwrap(), 0);
        assert!(c.u32("c").is_err() && c.u32("d").is_err() && c.f32("f").is_err());
        assert_eq!(c.vocab_size().unwrap(), 7);
    }

    /// An FP8 checkpoint as Ollama reads one: each weight times its block's factor (from its
    /// `_scale_inv` companion and config.json's `weight_block_size`), stored BF16 (truncated, as
    /// Go's encoder does), with the scales left out and the FP8 tensors named in the metadata;
    /// and Ollama's refusals when the pieces do not fit.
    #[test]
    fn fp8_weights_decode_with_their_block_scales() {
        let config = |extra: &str| {
            format!(
                r#"{{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 8,
                    "num_attention_heads": 2{extra}}}"#
            )
        };
        let with_blocks = config(
            r#", "quantization_config": {"quant_method": "fp8", "weight_block_size": [2, 4]}"#,
        );
        // A 3 × 6 weight in 2 × 4 blocks: 2 × 2 factors; every byte value somewhere.
        let weight: Vec<u8> = (0..18u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(5))
            .collect();
        let factors = [0.5f32, -2.0, 0.125, 3.0];
        let factor_bytes: Vec<u8> = factors.iter().flat_map(|f| f.to_le_bytes()).collect();
        let norm = [0u8; 32];
        let tensors: [(&str, &str, &[u64], &[u8]); 3] = [
            (
                "model.layers.0.mlp.down_proj.weight",
                "F8_E4M3",
                &[3, 6],
                &weight,
            ),
            (
                "model.layers.0.mlp.down_proj.weight_scale_inv",
                "F32",
                &[2, 2],
                &factor_bytes,
            ),
            ("model.norm.weight", "F32", &[8], &norm),
        ];
        let folder = test_folder(&with_blocks, &tensors);
        let out = Conversion::plan(&folder)
            .unwrap()
            .write(Vec::new())
            .unwrap();
        let g = kiln_gguf::Gguf::parse(&out, &kiln_gguf::Limits::default()).unwrap();
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["blk.0.ffn_down.weight", "output_norm.weight"]);
        let t = g.tensor("blk.0.ffn_down.weight").unwrap();
        assert_eq!(t.ggml_type(), GgmlType::BF16);
        for (i, pair) in t.data().chunks_exact(2).enumerate() {
            let (row, col) = (i / 6, i % 6);
            let byte = weight[i];
            let e = i32::from((byte >> 3) & 15);
            let m = f64::from(byte & 7);
            let sign = if byte & 0x80 != 0 { -1.0 } else { 1.0 };
            let decoded = if e == 0 {
                sign * m / 8.0 * 2f64.powi(-6)
            } else {
                sign * (1.0 + m / 8.0) * 2f64.powi(e - 7)
            } as f32;
            let want = decoded * factors[(row / 2) * 2 + col / 4];
            let want_bits = (want.to_bits() >> 16) as u16;
            assert_eq!(
                u16::from_le_bytes([pair[0], pair[1]]),
                want_bits,
                "element {i}"
            );
        }
        let md = g.metadata();
        assert_eq!(
            md.get_str("mistral3.source_quantization").unwrap(),
            "hf_fp8"
        );
        let listed: Vec<String> = md
            .get_array("mistral3.source_fp8_tensors")
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, ["blk.0.ffn_down.weight"]);

        let refusal = |config: &str, tensors: &[(&str, &str, &[u64], &[u8])]| match Conversion::plan(
            &test_folder(config, tensors),
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            refusal(&config(""), &tensors),
            "missing fp8 block size metadata for tensor \"model.layers.0.mlp.down_proj.weight\""
        );
        assert_eq!(
            refusal(&with_blocks, &[tensors[0], tensors[2]]),
            "missing fp8 scale companion for tensor \"model.layers.0.mlp.down_proj.weight\""
        );
        let wrong = [
            tensors[0],
            (
                "model.layers.0.mlp.down_proj.weight_scale_inv",
                "F32",
                &[1, 4],
                &factor_bytes,
            ),
            tensors[2],
        ];
        assert_eq!(
            refusal(&with_blocks, &wrong),
            "unexpected fp8 scale shape [1 4] for tensor \"blk.0.ffn_down.weight\" shape [3 6]; want [2 2]"
        );
        let two = [
            tensors[0],
            tensors[1],
            (
                "model.layers.0.mlp.down_proj.weight.scale",
                "F32",
                &[2, 2],
                &factor_bytes,
            ),
            tensors[2],
        ];
        assert!(
            refusal(&with_blocks, &two).starts_with("multiple fp8 scale companions for tensor")
        );
        let disagree = config(
            r#", "quantization_config": {"quant_method": "fp8", "weight_block_size": [2, 4]},
                "text_config": {"quantization": {"quant_method": "FP8", "weight_block_size": [128, 128]}}"#,
        );
        assert_eq!(
            refusal(&disagree, &tensors),
            "multiple fp8 block sizes in config.json: 2x4 and 128x128"
        );
    }

    /// A cancellation asked for inside a large tensor stops its write there, not at its end.
    #[test]
    fn progress_and_cancellation_reach_inside_a_large_tensor() {
        let rows = 4096u64;
        let data = vec![0u8; (rows * 4096 * 2) as usize];
        let folder = test_folder(
            r#"{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 4096,
                "num_attention_heads": 32}"#,
            &[("model.embed_tokens.weight", "F16", &[rows, 4096], &data)],
        );
        let conversion = Conversion::plan(&folder).unwrap();
        let total = conversion.output_len().unwrap();
        let mut seen = Vec::new();
        let result = conversion.write_with_progress(std::io::sink(), &mut |done, _| {
            seen.push(done);
            // The header, then the first report inside the 32 MiB tensor: stop there.
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(matches!(result, Err(ConvertError::Cancelled)));
        assert_eq!(seen.len(), 2);
        assert!(
            seen[1] > seen[0] && seen[1] < total - data.len() as u64 / 4,
            "{seen:?} of {total}"
        );
    }

    #[test]
    fn lowered_limits_refuse_what_the_defaults_accept() {
        let config = r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 64}"#;
        let folder = || test_folder(config, &[("x.weight", "F32", &[1], &[0; 4])]);
        assert!(Conversion::plan(&folder()).is_ok());
        let small_json = folder().with_limits(ConvertLimits {
            max_json_bytes: 32,
            ..ConvertLimits::default()
        });
        match Conversion::plan(&small_json) {
            Err(ConvertError::TooLarge { file, limit, .. }) => {
                assert_eq!((file.as_str(), limit), ("config.json", 32));
            }
            other => panic!("{:?}", other.err()),
        }
        // A 64-entry vocabulary (padded from the four-token tokenizer), over a limit of 63.
        let few = folder().with_limits(ConvertLimits {
            max_generated_items: 63,
            ..ConvertLimits::default()
        });
        let err = Conversion::plan(&few).err().unwrap();
        assert!(
            matches!(
                err,
                ConvertError::TooMany {
                    what: "vocabulary entries",
                    count: 64,
                    limit: 63
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "config.json asks for 64 vocabulary entries, over kiln's limit of 63"
        );
    }

    #[test]
    fn counts_from_config_cannot_exhaust_memory() {
        let folder = |config: &str| test_folder(config, &[("x.weight", "F32", &[1], &[0; 4])]);
        let too_many = |config: &str| match Conversion::plan(&folder(config)) {
            Err(ConvertError::TooMany { what, count, .. }) => (what, count),
            other => panic!("{:?}", other.err()),
        };
        assert_eq!(
            too_many(r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 4294967295}"#),
            ("vocabulary entries", 4294967295)
        );
        assert_eq!(
            too_many(
                r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4294967295,
                    "num_attention_heads": 1, "rope_theta": 10000,
                    "rope_scaling": {"rope_type": "llama3"}}"#
            ),
            ("rope frequency factors", 2147483648)
        );
        assert_eq!(
            too_many(
                r#"{"architectures": ["Gemma3ForCausalLM"], "num_hidden_layers": 4294967295,
                    "sliding_window_pattern": 6}"#
            ),
            ("sliding-window layer flags", 4294967295)
        );
        // At the limit itself, padding goes ahead.
        let limit = MAX_GENERATED_ITEMS;
        let at_limit = folder(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], "vocab_size": {limit}}}"#
        ));
        assert!(Conversion::plan(&at_limit).is_ok());
    }

    #[test]
    fn regrouping_an_empty_tensor_reads_nothing_whatever_its_shape() {
        let mut t = Planned::f32_vector("blk.0.attn_q.weight", &[]);
        t.shape = vec![1 << 40, 0];
        t.permute_heads = Some(2);
        assert!(t.pieces().unwrap().is_empty());
    }

    #[test]
    fn architectures_ollama_has_and_kiln_lacks_are_not_yet() {
        let folder = |arch: &str| {
            ModelFolder::from_bytes(BTreeMap::from([(
                "config.json".to_owned(),
                format!(r#"{{"architectures": ["{arch}"]}}"#).into_bytes(),
            )]))
        };
        let err = |arch: &str| Conversion::plan(&folder(arch)).err().unwrap().to_string();
        let mixtral = err("MixtralForCausalLM");
        assert!(
            mixtral.starts_with("kiln cannot convert MixtralForCausalLM models yet (it converts BertModel, LlamaForCausalLM, ")
                && mixtral.ends_with(", GptOssForCausalLM); convert it to GGUF with llama.cpp and upload that"),
            "{mixtral}"
        );
        // Every architecture kiln converts is one Ollama converts, and none is listed twice.
        let supported: Vec<&str> = supported_architectures().collect();
        for name in &supported {
            assert!(OLLAMA_ARCHITECTURES.contains(name), "{name}");
        }
        let unique: std::collections::BTreeSet<&&str> = supported.iter().collect();
        assert_eq!(unique.len(), supported.len());
        assert_eq!(
            err("Frobnicator"),
            "unsupported architecture \"Frobnicator\""
        );
        let empty =
            ModelFolder::from_bytes(BTreeMap::from([("config.json".to_owned(), b"{}".to_vec())]));
        assert_eq!(
            Conversion::plan(&empty).err().unwrap().to_string(),
            "unknown architecture"
        );
        let none = ModelFolder::from_bytes(BTreeMap::new());
        assert_eq!(
            Conversion::plan(&none).err().unwrap().to_string(),
            "open config.json: file does not exist"
        );
    }
}
