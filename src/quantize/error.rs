//! [`QuantizeError`]: why a model could not be quantized.

use kiln_gguf::{GgmlType, GgufError, WriteError};

use super::SplitError;

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The input is not a valid GGUF file.
    #[error("input is not a valid GGUF file: {0}")]
    Gguf(#[from] GgufError),
    /// Writing the output failed.
    #[error("writing the quantized model failed: {0}")]
    Write(#[from] WriteError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A quantized input without `allow_requantize`.
    #[error("tensor {name} is already quantized ({ty}); requantizing needs allow_requantize")]
    RequantizeNotAllowed {
        /// Tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A type kiln has no kernel for (as source or as target).
    #[error("tensor {name}: type {ty} is not supported")]
    UnsupportedType {
        /// Tensor name.
        name: String,
        /// The type.
        ty: GgmlType,
    },
    /// A row length that fits no block size llama.cpp can fall back to.
    #[error("tensor {name}: row length {ne0} does not fit {ty} and has no fallback type")]
    NoFallback {
        /// Tensor name.
        name: String,
        /// Row length.
        ne0: u64,
        /// The type that did not fit.
        ty: GgmlType,
    },
    /// An MoE tensor whose layer number cannot be read from its name.
    #[error("tensor {name}: cannot read the layer number from the name of an expert tensor")]
    NoLayer {
        /// Tensor name.
        name: String,
    },
    /// An invalid `--tensor-type` pattern.
    #[error("invalid tensor type pattern {pattern:?}: {message}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// The regex error.
        message: String,
    },
    /// An importance matrix with the wrong size or a non-finite value.
    #[error("importance matrix for {name}: {problem}")]
    BadImatrix {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// Quantized data with a non-finite scale or value (the source holds NaN/Inf or overflows);
    /// llama-quantize refuses these too ("quantized data validation failed").
    #[error(
        "tensor {name}: quantized data validation failed ({ty} block or element {unit} is not finite)"
    )]
    InvalidData {
        /// Tensor name.
        name: String,
        /// The output type.
        ty: GgmlType,
        /// Index of the first bad block (or element, for float types) in the chunk.
        unit: usize,
    },
    /// A kernel refused its input (a bug: sizes are checked before).
    #[error("tensor {name}: {source}")]
    Kernel {
        /// Tensor name.
        name: String,
        /// The kernel's error.
        #[source]
        source: kiln_quant::QuantError,
    },
    /// The parts of a split model do not fit together.
    #[error("{0}")]
    Split(#[from] SplitError),
    /// The sink asked to stop.
    #[error("quantization cancelled")]
    Cancelled,
    /// A size target below what the smallest candidate types reach.
    #[error(
        "the size target is too small: the smallest mix is {smallest_file} bytes ({smallest_bpw:.2} bits per weight)"
    )]
    BudgetTooSmall {
        /// The file the smallest candidates make.
        smallest_file: u64,
        /// Its tensor bits per weight.
        smallest_bpw: f64,
    },
    /// A model converted as it is quantized ([`quantize_conversion`]) failed to convert.
    ///
    /// [`quantize_conversion`]: super::quantize_conversion
    #[error("{0}")]
    Convert(Box<crate::convert::ConvertError>),
}

impl From<crate::convert::ConvertError> for QuantizeError {
    fn from(e: crate::convert::ConvertError) -> Self {
        QuantizeError::Convert(Box::new(e))
    }
}
