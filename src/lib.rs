//! kiln: the create engine that composes kiln-gguf, kiln-quant, kiln-store and kiln-api.
//!
//! - [`quantize`]: whole-model quantization, GGUF in and GGUF out, byte-identical to llama.cpp's
//!   `llama_model_quantize`.
//! - [`convert`]: Hugging Face safetensors folders to GGUF, as Ollama's converter writes them.
//! - [`create`]: Ollama's `/api/create` flow on top of a models directory.
//! - [`template`]: Ollama's built-in chat templates and its Go template syntax check.
//! - [`progress`]: the one [`progress::Sink`] trait every job reports through, and the one
//!   [`Cancel`] token a create and its conversion and quantization check.

mod cancel;
pub mod convert;
pub mod create;
pub mod progress;
pub mod quantize;
pub mod template;

pub use cancel::Cancel;
pub use quantize::{
    FileType, Imatrix, ImatrixError, ModelSummary, NoProgress, QuantizeError, QuantizeEvent,
    QuantizeOptions, QuantizeReport, QuantizeSink, SourceModel, SplitError, TensorError,
    TensorReport, output_size, plan, quantize_conversion, quantize_gguf, quantize_model,
    quantize_parts,
};
