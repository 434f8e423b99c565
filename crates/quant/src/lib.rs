//! kiln-quant: ggml's quantization kernels, byte-identical to ggml's reference build for x86-64.
//!
//! Pure functions over slices: no I/O, no file format. Every type follows exactly the path
//! `ggml_quantize_chunk` takes for it, with and without an importance matrix.

// Kernels index several arrays in lockstep exactly as ggml does; iterator rewrites obscure that.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod blocks;
mod common;
mod iq4;
mod kquants;
mod legacy;
mod mxfp4;
mod search;
mod ternary;

pub use blocks::*;

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
    MXFP4 = 39,
}

impl QuantType {
    /// Every supported type, in ggml id order.
    pub const ALL: [QuantType; 20] = [
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
        QuantType::MXFP4,
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
            QuantType::MXFP4 => "mxfp4",
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
            | QuantType::IQ4NL
            | QuantType::MXFP4 => 32,
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
            QuantType::MXFP4 => 17,
        }
    }
}

/// What was wrong with a quantize or dequantize call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantError {
    /// A row length that is zero or not a whole number of blocks.
    #[error(
        "row length {n_per_row} is not a positive multiple of {ty:?}'s block size {block_size}"
    )]
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

fn checked_rows(ty: QuantType, len: usize, n_per_row: usize) -> Result<usize, QuantError> {
    let block_size = ty.block_size();
    if n_per_row == 0 || !n_per_row.is_multiple_of(block_size) {
        return Err(QuantError::RowNotMultipleOfBlock {
            ty,
            n_per_row,
            block_size,
        });
    }
    if !len.is_multiple_of(n_per_row) {
        return Err(QuantError::SourceNotWholeRows { len, n_per_row });
    }
    Ok(len / n_per_row)
}

/// Checks a quantize call's lengths; returns the row size and the total output size.
fn check_arguments(
    ty: QuantType,
    src_len: usize,
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst_len: usize,
) -> Result<(usize, usize), QuantError> {
    let rows = checked_rows(ty, src_len, n_per_row)?;
    let row_bytes = row_size(ty, n_per_row)?;
    let expected = row_bytes.checked_mul(rows).ok_or(QuantError::Overflow {
        ty,
        rows,
        n_per_row,
    })?;
    if dst_len != expected {
        return Err(QuantError::DestinationLength {
            expected,
            actual: dst_len,
        });
    }
    if let Some(im) = imatrix
        && im.len() != n_per_row
    {
        return Err(QuantError::ImatrixLength {
            len: im.len(),
            n_per_row,
        });
    }
    Ok((row_bytes, expected))
}

/// Bytes of one row of `n_per_row` elements of type `ty`.
pub fn row_size(ty: QuantType, n_per_row: usize) -> Result<usize, QuantError> {
    let block_size = ty.block_size();
    if !n_per_row.is_multiple_of(block_size) {
        return Err(QuantError::RowNotMultipleOfBlock {
            ty,
            n_per_row,
            block_size,
        });
    }
    (n_per_row / block_size)
        .checked_mul(ty.block_bytes())
        .ok_or(QuantError::Overflow {
            ty,
            rows: 1,
            n_per_row,
        })
}

/// Quantizes whole rows of `src` (each `n_per_row` long) into `dst`, which must have exactly
/// `rows * row_size(ty, n_per_row)` bytes. Returns the bytes written.
///
/// The output is byte-identical to ggml's `ggml_quantize_chunk` for the same type, rows and
/// importance matrix (one weight per column, shared by every row; ignored by F32/F16/BF16, Q8_0,
/// Q8_1, Q8_K, TQ1_0, TQ2_0 and MXFP4, as in ggml).
pub fn quantize(
    ty: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<usize, QuantError> {
    let (_, expected) = check_arguments(ty, src.len(), n_per_row, imatrix, dst.len())?;
    quantize_unchecked(ty, src, n_per_row, imatrix, dst);
    Ok(expected)
}

/// Runs the kernels through a copy of the dispatch compiled for AVX2 when the CPU has it: the
/// conversions written in the dispatch and the kernels marked `#[inline(always)]` (Q8_0, Q8_1,
/// TQ1_0, TQ2_0) then use 256-bit registers. AVX2 brings no fused multiply-add and every operation
/// keeps its IEEE single-precision result, so the bytes are the same either way.
fn quantize_unchecked(
    ty: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2(
            ty: QuantType,
            src: &[f32],
            n_per_row: usize,
            imatrix: Option<&[f32]>,
            dst: &mut [u8],
        ) {
            run_kernel(ty, src, n_per_row, imatrix, dst);
        }
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { avx2(ty, src, n_per_row, imatrix, dst) };
        return;
    }
    run_kernel(ty, src, n_per_row, imatrix, dst);
}

#[inline(always)]
fn run_kernel(
    ty: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    match ty {
        QuantType::F32 => {
            for (v, out) in src.iter().zip(dst.chunks_exact_mut(4)) {
                out.copy_from_slice(&v.to_le_bytes());
            }
        }
        QuantType::F16 => {
            for (v, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
                out.copy_from_slice(&f32_to_f16_bits(*v).to_le_bytes());
            }
        }
        QuantType::BF16 => {
            for (v, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
                out.copy_from_slice(&f32_to_bf16_bits(*v).to_le_bytes());
            }
        }
        QuantType::Q4_0 => legacy::quantize_q4_0(src, n_per_row, imatrix, dst),
        QuantType::Q4_1 => legacy::quantize_q4_1(src, n_per_row, imatrix, dst),
        QuantType::Q5_0 => legacy::quantize_q5_0(src, n_per_row, imatrix, dst),
        QuantType::Q5_1 => legacy::quantize_q5_1(src, n_per_row, imatrix, dst),
        QuantType::Q8_0 => legacy::quantize_q8_0(src, dst),
        QuantType::Q8_1 => legacy::quantize_q8_1(src, dst),
        QuantType::Q2K => kquants::quantize_q2_k(src, n_per_row, imatrix, dst),
        QuantType::Q3K => kquants::quantize_q3_k(src, n_per_row, imatrix, dst),
        QuantType::Q4K => kquants::quantize_q4_k(src, n_per_row, imatrix, dst),
        QuantType::Q5K => kquants::quantize_q5_k(src, n_per_row, imatrix, dst),
        QuantType::Q6K => kquants::quantize_q6_k(src, n_per_row, imatrix, dst),
        QuantType::Q8K => kquants::quantize_q8_k(src, dst),
        QuantType::IQ4NL => iq4::quantize_iq4_nl(src, n_per_row, imatrix, dst),
        QuantType::IQ4XS => iq4::quantize_iq4_xs(src, n_per_row, imatrix, dst),
        QuantType::TQ1_0 => ternary::quantize_tq1_0(src, dst),
        QuantType::TQ2_0 => ternary::quantize_tq2_0(src, dst),
        QuantType::MXFP4 => mxfp4::quantize_mxfp4(src, dst),
    }
}

/// [`quantize`] spread over `threads` threads by whole rows. The output is identical for any
/// thread count: every row is quantized independently.
pub fn quantize_parallel(
    ty: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
    threads: usize,
) -> Result<usize, QuantError> {
    let rows = checked_rows(ty, src.len(), n_per_row)?;
    let threads = threads.clamp(1, rows.max(1));
    if threads == 1 {
        return quantize(ty, src, n_per_row, imatrix, dst);
    }
    let (row_bytes, expected) = check_arguments(ty, src.len(), n_per_row, imatrix, dst.len())?;
    let rows_per_thread = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (s, d) in src
            .chunks(rows_per_thread * n_per_row)
            .zip(dst.chunks_mut(rows_per_thread * row_bytes))
        {
            scope.spawn(move || quantize_unchecked(ty, s, n_per_row, imatrix, d));
        }
    });
    Ok(expected)
}

/// Dequantizes whole blocks of `src` into `dst`, which must hold exactly the number of elements
/// the blocks encode. Identical to ggml's `to_float` for the type.
pub fn dequantize(ty: QuantType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let block_bytes = ty.block_bytes();
    if !src.len().is_multiple_of(block_bytes) {
        return Err(QuantError::PartialBlock {
            ty,
            len: src.len(),
            block_bytes,
        });
    }
    let expected = src.len() / block_bytes * ty.block_size();
    if dst.len() != expected {
        return Err(QuantError::DestinationLength {
            expected,
            actual: dst.len(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { dequantize_avx2(ty, src, dst) };
        return Ok(());
    }
    dequantize_blocks(ty, src, dst);
    Ok(())
}

/// [`dequantize_blocks`] compiled for AVX2: the same operations in the same order (Rust never
/// fuses or reassociates float arithmetic), so the same values, eight lanes a step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequantize_avx2(ty: QuantType, src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(ty, src, dst);
}

/// The per-type decoders, for whole blocks (lengths checked by [`dequantize`]).
#[inline(always)]
fn dequantize_blocks(ty: QuantType, src: &[u8], dst: &mut [f32]) {
    match ty {
        QuantType::F32 => {
            for (b, out) in src.chunks_exact(4).zip(dst.iter_mut()) {
                *out = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        QuantType::F16 => {
            for (b, out) in src.chunks_exact(2).zip(dst.iter_mut()) {
                *out = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        QuantType::BF16 => {
            for (b, out) in src.chunks_exact(2).zip(dst.iter_mut()) {
                *out = bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        QuantType::Q4_0 => legacy::dequantize_q4_0(src, dst),
        QuantType::Q4_1 => legacy::dequantize_q4_1(src, dst),
        QuantType::Q5_0 => legacy::dequantize_q5_0(src, dst),
        QuantType::Q5_1 => legacy::dequantize_q5_1(src, dst),
        QuantType::Q8_0 => legacy::dequantize_q8_0(src, dst),
        QuantType::Q8_1 => legacy::dequantize_q8_1(src, dst),
        QuantType::Q2K => kquants::dequantize_q2_k(src, dst),
        QuantType::Q3K => kquants::dequantize_q3_k(src, dst),
        QuantType::Q4K => kquants::dequantize_q4_k(src, dst),
        QuantType::Q5K => kquants::dequantize_q5_k(src, dst),
        QuantType::Q6K => kquants::dequantize_q6_k(src, dst),
        QuantType::Q8K => kquants::dequantize_q8_k(src, dst),
        QuantType::IQ4NL => iq4::dequantize_iq4_nl(src, dst),
        QuantType::IQ4XS => iq4::dequantize_iq4_xs(src, dst),
        QuantType::TQ1_0 => ternary::dequantize_tq1_0(src, dst),
        QuantType::TQ2_0 => ternary::dequantize_tq2_0(src, dst),
        QuantType::MXFP4 => mxfp4::dequantize_mxfp4(src, dst),
    }
}

#[cfg(test)]
mod dispatch_tests {
    use super::*;

    /// The AVX2-compiled decoders and the portable ones give the same bits for every type, on
    /// arbitrary block bytes (scales of every magnitude, NaN and infinity included).
    #[test]
    fn every_dequantize_path_gives_the_same_bits() {
        for ty in QuantType::ALL {
            let blocks = 64;
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(ty.ggml_id());
            let src: Vec<u8> = (0..blocks * ty.block_bytes())
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let n = blocks * ty.block_size();
            let (mut dispatched, mut portable) = (vec![0f32; n], vec![0f32; n]);
            dequantize(ty, &src, &mut dispatched).unwrap();
            dequantize_blocks(ty, &src, &mut portable);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dispatched), bits(&portable), "{}", ty.name());
        }
    }
}
