//! How to quantize ([`QuantizeOptions`]) and how progress is heard and a run cancelled
//! ([`QuantizeSink`], [`QuantizeEvent`]).

use std::collections::HashMap;

use kiln_gguf::{GgmlType, Value};

use super::TensorReport;

/// How to quantize, beyond the file type (llama-quantize's options).
#[derive(Debug, Clone, Default)]
pub struct QuantizeOptions {
    /// Worker threads (0 = all available cores). The output does not depend on it.
    pub threads: usize,
    /// Allow already-quantized inputs (they are dequantized first, losing precision twice).
    pub allow_requantize: bool,
    /// Keep `output.weight` in its source type.
    pub leave_output_tensor: bool,
    /// Give every quantizable tensor the file type's default type (no per-tensor rules).
    pub pure: bool,
    /// Type for `output.weight`.
    pub output_tensor_type: Option<GgmlType>,
    /// Type for `token_embd.weight`.
    pub token_embedding_type: Option<GgmlType>,
    /// `(regex, type)` overrides; the first pattern found in a tensor's name wins.
    pub tensor_types: Vec<(String, GgmlType)>,
    /// Importance matrix: tensor name → per-column weights (`ne[0]` values per expert).
    pub imatrix: Option<HashMap<String, Vec<f32>>>,
    /// Apply Ollama's per-architecture overrides for Q4_K_S/Q4_K_M, as `/api/create` does.
    pub ollama_overrides: bool,
    /// Keep embedded tensors (vision towers, projectors, audio encoders: the names
    /// [`is_embedded_tensor`] picks) as they are, as Ollama's create does: the other tensors are
    /// quantized as llama.cpp quantizes the model without them, and the file is written as
    /// Ollama rewrites it: the input's metadata with the new `general.file_type` (no
    /// `general.quantization_version` added), keys sorted, tensors in Ollama's order. Without an
    /// embedded tensor in the model, this changes nothing.
    ///
    /// [`is_embedded_tensor`]: super::is_embedded_tensor
    pub keep_embedded_tensors: bool,
    /// Metadata set after `general.file_type` (llama-quantize's `--override-kv`; an existing key
    /// is removed from its old place first).
    pub extra_metadata: Vec<(String, Value<'static>)>,
    /// Measure what quantization cost: each converted tensor is dequantized again and compared
    /// with its source values ([`TensorReport::error`]). The output bytes do not change.
    pub measure_error: bool,
}

/// One step of progress.
#[derive(Debug, Clone)]
pub enum QuantizeEvent<'a> {
    /// A tensor is about to be converted.
    Tensor {
        /// Its position in the output (0-based).
        index: usize,
        /// Number of tensors.
        count: usize,
        /// Its name.
        name: &'a str,
        /// Its source type.
        from: GgmlType,
        /// The type chosen for it.
        to: GgmlType,
    },
    /// A tensor has been written (with its error when [`QuantizeOptions::measure_error`] is set).
    TensorDone {
        /// Its position in the output (0-based).
        index: usize,
        /// What happened to it.
        report: &'a TensorReport,
    },
    /// Input bytes consumed so far, out of the total tensor bytes of the input.
    Bytes {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
}

/// A quantization's [`Sink`](crate::progress::Sink): anything that takes its events (closures
/// `FnMut(&QuantizeEvent<'_>) -> ControlFlow<()>`, [`NoProgress`](crate::progress::NoProgress));
/// returning `ControlFlow::Break` cancels the quantization between chunks.
pub trait QuantizeSink: for<'a> crate::progress::Sink<QuantizeEvent<'a>> {}

impl<T: ?Sized + for<'a> crate::progress::Sink<QuantizeEvent<'a>>> QuantizeSink for T {}
