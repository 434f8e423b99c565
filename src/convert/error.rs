//! [`ConvertError`]: why a model folder could not be converted.

use std::path::PathBuf;

use kiln_gguf::WriteError;

use super::arch::supported_list;
use super::safetensors::{Dtype, SafetensorsError};

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
    /// A JSON file over
    /// [`ConvertLimits::max_json_bytes`](super::ConvertLimits::max_json_bytes).
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
    /// A linear-attention weight whose shape is not the one its value heads (from `config.json`)
    /// imply, so they cannot be reordered.
    #[error("cannot reorder the value heads of {name:?} of shape {shape:?}: expected {expected}")]
    HeadLayout {
        /// The GGUF tensor name.
        name: String,
        /// Its shape, outermost first.
        shape: Vec<u64>,
        /// The layout the configuration implies.
        expected: String,
    },
    /// Expert weights that cannot be stacked into one tensor or split into gate and up as
    /// Ollama stores them.
    #[error("cannot store the expert weights {name:?}: {reason}")]
    Experts {
        /// The GGUF tensor name.
        name: String,
        /// What does not fit.
        reason: String,
    },
    /// A tensor to store in another shape that does not hold the same number of values.
    #[error("cannot store {name:?} of shape {shape:?} as shape {to:?}")]
    Reshape {
        /// The GGUF tensor name.
        name: String,
        /// Its shape, outermost first.
        shape: Vec<u64>,
        /// The shape asked for.
        to: Vec<u64>,
    },
    /// The progress callback asked to stop.
    #[error("conversion cancelled")]
    Cancelled,
    /// `config.json` asks kiln to generate more items than
    /// [`MAX_GENERATED_ITEMS`](super::MAX_GENERATED_ITEMS) (a hostile or broken count would
    /// otherwise exhaust memory).
    #[error("config.json asks for {count} {what}, over kiln's limit of {limit}")]
    TooMany {
        /// What would be generated.
        what: &'static str,
        /// How many the configuration implies.
        count: u64,
        /// The limit it is over
        /// ([`ConvertLimits::max_generated_items`](super::ConvertLimits::max_generated_items)).
        limit: u64,
    },
}
