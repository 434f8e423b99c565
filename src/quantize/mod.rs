//! Whole-model quantization: GGUF in, quantized GGUF out, byte-identical to llama.cpp's
//! `llama_model_quantize` (what `ollama create --quantize` runs).
//!
//! [`quantize_gguf`] streams: tensors are converted one chunk of rows at a time and written as
//! they are produced, so memory stays at a few chunk buffers whatever the model size.
//! [`quantize_model`] adds files: the input is memory-mapped and the output written to a
//! temporary file, fsynced and renamed, so the output path never holds a partial file.

mod error;
mod file;
mod ftype;
mod imatrix;
mod layout;
mod options;
mod policy;
mod report;
mod source;
mod stream;
pub mod target;
mod validate;

pub use crate::progress::NoProgress;
pub use error::QuantizeError;
pub(crate) use file::map_parts;
pub use file::{quantize_conversion, quantize_gguf, quantize_model, quantize_parts};
pub use ftype::{FileType, UnknownFileType};
pub use imatrix::{Imatrix, ImatrixError};
pub use layout::{
    OUTPUT_ALIGNMENT, QUANTIZATION_VERSION, TensorPlan, is_embedded_tensor, output_size, plan,
};
pub use options::{QuantizeEvent, QuantizeOptions, QuantizeSink};
pub use report::{ModelSummary, QuantizeReport, TensorError, TensorReport};
pub use source::{
    SourceModel, SplitError, parse_split_file_name, split_file_name, split_part_paths,
    split_position,
};
pub(crate) use stream::TensorData;

// The names the submodules share, at their paths from before the split (`super::ErrorSums`, …).
use report::ErrorSums;
use stream::{Parsed, data_len, imatrix_for, kernel_type};

/// Deterministic small F16 values for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn f16_for_tests(i: usize) -> [u8; 2] {
    kiln_quant::f32_to_f16_bits(((i * 37 % 101) as f32 - 50.0) * 0.001).to_le_bytes()
}
