//! kiln-quant: ggml's quantization kernels, byte-identical to ggml's reference build for x86-64.
//!
//! Pure functions over slices: no I/O, no file format. Every type follows exactly the path
//! `ggml_quantize_chunk` takes for it, with and without an importance matrix.

mod common;
mod kquants;
mod search;

pub use common::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};

use thiserror::Error;

/// The tensor element types kiln can quantize to and dequantize from.
///
/// The discriminants are ggml's `enum ggml_type` ids, which is what a GGUF tensor info stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum QuantType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    IQ4NL = 20,
    IQ4XS = 23,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
}

impl QuantType {
    /// Every supported type, in ggml id order.
    pub const ALL: [QuantType; 19] = [
        QuantType::F32,
        QuantType::F16,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q8_0,
        QuantType::Q8_1,
        QuantType::Q2K,
        QuantType::Q3K,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
        QuantType::Q8K,
        QuantType::IQ4NL,
        QuantType::IQ4XS,
        QuantType::BF16,
        QuantType::TQ1_0,
        QuantType::TQ2_0,
    ];

    /// The ggml type id (`enum ggml_type`).
    pub const fn ggml_id(self) -> u32 {
        self as u32
    }

    /// The type with this ggml id, if kiln supports it.
    pub fn from_ggml_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// ggml's type name (`ggml_type_name`): "f32", "q4_0", "q4_K", "iq4_nl", …
    pub const fn name(self) -> &'static str {
        match self {
            QuantType::F32 => "f32",
            QuantType::F16 => "f16",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
            QuantType::Q5_0 => "q5_0",
            QuantType::Q5_1 => "q5_1",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q8_1 => "q8_1",
            QuantType::Q2K => "q2_K",
            QuantType::Q3K => "q3_K",
            QuantType::Q4K => "q4_K",
            QuantType::Q5K => "q5_K",
            QuantType::Q6K => "q6_K",
            QuantType::Q8K => "q8_K",
            QuantType::IQ4NL => "iq4_nl",
            QuantType::IQ4XS => "iq4_xs",
            QuantType::BF16 => "bf16",
            QuantType::TQ1_0 => "tq1_0",
            QuantType::TQ2_0 => "tq2_0",
        }
    }

    /// Elements per block.
    pub const fn block_size(self) -> usize {
        match self {
            QuantType::F32 | QuantType::F16 | QuantType::BF16 => 1,
            QuantType::Q4_0
            | QuantType::Q4_1
            | QuantType::Q5_0
            | QuantType::Q5_1
            | QuantType::Q8_0
            | QuantType::Q8_1
            | QuantType::IQ4NL => 32,
            QuantType::Q2K
            | QuantType::Q3K
            | QuantType::Q4K
            | QuantType::Q5K
            | QuantType::Q6K
            | QuantType::Q8K
            | QuantType::IQ4XS
            | QuantType::TQ1_0
            | QuantType::TQ2_0 => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantType::F32 => 4,
            QuantType::F16 | QuantType::BF16 => 2,
            QuantType::Q4_0 | QuantType::IQ4NL => 18,
            QuantType::Q4_1 => 20,
            QuantType::Q5_0 => 22,
            QuantType::Q5_1 => 24,
            QuantType::Q8_0 => 34,
            QuantType::Q8_1 => 36,
            QuantType::Q2K => 84,
            QuantType::Q3K => 110,
            QuantType::Q4K => 144,
            QuantType::Q5K => 176,
            QuantType::Q6K => 210,
            QuantType::Q8K => 292,
            QuantType::IQ4XS => 136,
            QuantType::TQ1_0 => 54,
            QuantType::TQ2_0 => 66,
        }
    }
}

/// What was wrong with a quantize or dequantize call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantError {
    /// A row length that is zero or not a whole number of blocks.
    #[error("row length {n_per_row} is not a positive multiple of {ty:?}'s block size {block_size}")]
    RowNotMultipleOfBlock {
        /// The target type.
        ty: QuantType,
        /// The row length given.
        n_per_row: usize,
        /// The type's block size.
        block_size: usize,
    },
    /// The source is not a whole number of rows.
    #[error("source has {len} values, not a multiple of the row length {n_per_row}")]
    SourceNotWholeRows {
        /// Number of source values.
        len: usize,
        /// The row length given.
        n_per_row: usize,
    },
    /// The destination buffer does not have the exact size the data needs.
    #[error("destination holds {actual} elements but {expected} are needed")]
    DestinationLength {
        /// Elements (bytes or floats) needed.
        expected: usize,
        /// Elements provided.
        actual: usize,
    },
    /// Quantized input that is not a whole number of blocks.
    #[error("{len} bytes of {ty:?} data are not a whole number of {block_bytes}-byte blocks")]
    PartialBlock {
        /// The source type.
        ty: QuantType,
        /// Bytes given.
        len: usize,
        /// The type's block size in bytes.
        block_bytes: usize,
    },
    /// An importance matrix whose length is not the row length.
    #[error("importance matrix has {len} values but rows have {n_per_row}")]
    ImatrixLength {
        /// Values given.
        len: usize,
        /// The row length.
        n_per_row: usize,
    },
    /// A size computation that does not fit in `usize`.
    #[error("size of {rows} rows of {n_per_row} {ty:?} elements overflows")]
    Overflow {
        /// The type.
        ty: QuantType,
        /// Number of rows.
        rows: usize,
        /// Row length.
        n_per_row: usize,
    },
}
