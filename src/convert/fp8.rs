//! FP8 checkpoints (`F8_E4M3` weights with block scales), as Ollama's safetensors reader takes
//! them (convert/reader_safetensors.go): each FP8 weight has a scale companion tensor
//! (`…_scale_inv` and the like) with one factor per block of `weight_block_size` (from
//! `config.json`'s quantization or compression config); the weight is decoded to float32,
//! multiplied by its block's factor and stored as BF16. The scale tensors themselves are not
//! written. Error texts are Ollama's.

use std::collections::{BTreeMap, BTreeSet};

use kiln_go::strings::equal_fold_ascii;

use super::safetensors::{Dtype, TensorView};
use super::{Config, ConvertError};

/// Rows × columns of weights that share one scale factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockSize {
    rows: u64,
    cols: u64,
}

impl BlockSize {
    fn new(rows: i64, cols: i64) -> Result<BlockSize, ConvertError> {
        if rows <= 0 || cols <= 0 {
            return Err(ConvertError::Fp8(format!(
                "invalid fp8 block size {rows}x{cols}"
            )));
        }
        Ok(BlockSize {
            rows: rows as u64,
            cols: cols as u64,
        })
    }
}

/// The block size `config.json` declares for FP8 weights: `quant_method: fp8` with
/// `weight_block_size`, or compressed-tensors `config_groups` of 8-bit floats with a
/// `block_structure`, at the top level or in `text_config`. `None` when there is none; an error
/// when two disagree.
pub(crate) fn block_size(config: &Config) -> Result<Option<BlockSize>, ConvertError> {
    let bad = |e: ConvertError| ConvertError::Fp8(format!("parse config.json fp8 metadata: {e}"));
    let text = config.object("text_config").map_err(bad)?;
    let mut blocks = Vec::new();
    for (owner, key) in [
        (config, "quantization"),
        (config, "quantization_config"),
        (config, "compression_config"),
        (&text, "quantization"),
        (&text, "quantization_config"),
        (&text, "compression_config"),
    ] {
        let q = owner.object(key).map_err(bad)?;
        let method = q.string("quant_method").map_err(bad)?;
        let format = q.string("format").map_err(bad)?;
        let sizes = q.i32s("weight_block_size").map_err(bad)?;
        if equal_fold_ascii(&method, "fp8") && sizes.len() == 2 {
            blocks.push(BlockSize::new(sizes[0].into(), sizes[1].into())?);
        }
        if !equal_fold_ascii(&method, "compressed-tensors")
            && !equal_fold_ascii(&format, "float-quantized")
        {
            continue;
        }
        let groups = q.object("config_groups").map_err(bad)?;
        for name in groups.keys() {
            let group = groups.object(name).map_err(bad)?;
            let weights = group.object("weights").map_err(bad)?;
            let structure = weights.i32s("block_structure").map_err(bad)?;
            if !equal_fold_ascii(&group.string("format").map_err(bad)?, "float-quantized")
                || weights.i32("num_bits").map_err(bad)? != 8
                || !equal_fold_ascii(&weights.string("type").map_err(bad)?, "float")
                || structure.len() != 2
            {
                continue;
            }
            blocks.push(BlockSize::new(structure[0].into(), structure[1].into())?);
        }
    }
    let Some(&first) = blocks.first() else {
        return Ok(None);
    };
    if let Some(other) = blocks.iter().find(|b| **b != first) {
        return Err(ConvertError::Fp8(format!(
            "multiple fp8 block sizes in config.json: {}x{} and {}x{}",
            first.rows, first.cols, other.rows, other.cols
        )));
    }
    Ok(Some(first))
}

/// For one safetensors file: each FP8 weight's scale companion (by index in `tensors`), and the
/// set of tensors consumed as scales (not written).
pub(crate) fn scale_companions(
    tensors: &[TensorView<'_>],
) -> Result<(BTreeMap<usize, usize>, BTreeSet<usize>), ConvertError> {
    let by_name: BTreeMap<&str, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut scales = BTreeMap::new();
    let mut consumed = BTreeSet::new();
    for (i, t) in tensors.iter().enumerate() {
        if t.dtype != Dtype::F8E4M3 {
            continue;
        }
        let mut candidates: Vec<String> = ["_scale", "_scale_inv", ".scale", ".scale_inv"]
            .iter()
            .map(|s| format!("{}{s}", t.name))
            .collect();
        if let Some(base) = t.name.strip_suffix(".weight") {
            for s in [".weight_scale", ".weight_scale_inv"] {
                let c = format!("{base}{s}");
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
        }
        let mut found: Option<(&str, usize)> = None;
        for c in &candidates {
            if let Some(&j) = by_name.get(c.as_str()) {
                if let Some((first, _)) = found {
                    return Err(ConvertError::Fp8(format!(
                        "multiple fp8 scale companions for tensor {:?}: {first:?} and {c:?}",
                        t.name
                    )));
                }
                found = Some((c, j));
            }
        }
        let Some((name, j)) = found else {
            continue;
        };
        if !consumed.insert(j) {
            return Err(ConvertError::Fp8(format!(
                "fp8 scale companion {name:?} is used by multiple tensors"
            )));
        }
        scales.insert(i, j);
    }
    Ok((scales, consumed))
}

/// What it takes to decode one FP8 weight: its scale factors and their layout.
#[derive(Debug, Clone)]
pub(crate) struct Scales {
    factors: Vec<f32>,
    factor_cols: u64,
    block: BlockSize,
    cols: u64,
}

impl Scales {
    /// Checks an FP8 weight (`name` is its GGUF name, as Ollama's messages give it) against its
    /// scale tensor and the block size, and reads the factors.
    pub(crate) fn new(
        name: &str,
        weight: &TensorView<'_>,
        scale: &TensorView<'_>,
        block: BlockSize,
    ) -> Result<Scales, ConvertError> {
        let dims = |shape: &[u64]| {
            let parts: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("[{}]", parts.join(" "))
        };
        let &[rows, cols] = &weight.shape[..] else {
            return Err(ConvertError::Fp8(format!(
                "expected 2D fp8 tensor {name:?}, got shape {}",
                dims(&weight.shape)
            )));
        };
        let &[factor_rows, factor_cols] = &scale.shape[..] else {
            return Err(ConvertError::Fp8(format!(
                "expected 2D fp8 scale tensor {:?}, got shape {}",
                scale.name,
                dims(&scale.shape)
            )));
        };
        let (want_rows, want_cols) = (rows.div_ceil(block.rows), cols.div_ceil(block.cols));
        if (factor_rows, factor_cols) != (want_rows, want_cols) {
            return Err(ConvertError::Fp8(format!(
                "unexpected fp8 scale shape {} for tensor {name:?} shape {}; want [{want_rows} {want_cols}]",
                dims(&scale.shape),
                dims(&weight.shape)
            )));
        }
        let factors: Vec<f32> = match scale.dtype {
            Dtype::F32 => scale
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => scale
                .data
                .chunks_exact(2)
                .map(|b| kiln_quant::f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => scale
                .data
                .chunks_exact(2)
                .map(|b| kiln_quant::bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            other => {
                return Err(ConvertError::Fp8(format!(
                    "unsupported fp8 scale dtype {:?} for tensor {name:?}",
                    other.name()
                )));
            }
        };
        Ok(Scales {
            factors,
            factor_cols,
            block,
            cols,
        })
    }

    /// The value of source element `index` (row-major) whose FP8 byte is `byte`.
    pub(crate) fn value(&self, index: u64, byte: u8) -> f32 {
        let (row, col) = (index / self.cols, index % self.cols);
        let factor = self.factors
            [((row / self.block.rows) * self.factor_cols + col / self.block.cols) as usize];
        decode_e4m3(byte) * factor
    }
}

/// An OCP FP8 E4M3 ("FN": no infinities) byte as a float: sign, four exponent bits (bias 7),
/// three mantissa bits; exponent 0 is subnormal; `S.1111.111` is NaN.
pub(crate) fn decode_e4m3(byte: u8) -> f32 {
    let negative = byte & 0x80 != 0;
    let exponent = (byte >> 3) & 0x0f;
    let mantissa = byte & 0x07;
    if exponent == 0x0f && mantissa == 0x07 {
        return f32::NAN;
    }
    // Every E4M3 value is exact in float32: rebuild its bits (bias 127 instead of 7).
    let magnitude = if exponent == 0 {
        // mantissa / 8 × 2^-6 = mantissa × 2^-9
        f32::from(mantissa) * f32::from_bits(0x3b00_0000)
    } else {
        f32::from_bits((u32::from(exponent) + 120) << 23 | u32::from(mantissa) << 20)
    };
    if negative { -magnitude } else { magnitude }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte against the definition, computed another way (in f64, as Go's `math.Ldexp`).
    #[test]
    fn every_e4m3_byte_decodes_as_the_format_defines_it() {
        for byte in 0..=255u8 {
            let sign = if byte & 0x80 != 0 { -1.0f64 } else { 1.0 };
            let e = i32::from((byte >> 3) & 0x0f);
            let m = f64::from(byte & 0x07);
            let got = decode_e4m3(byte);
            if e == 15 && m == 7.0 {
                assert!(got.is_nan(), "{byte:#04x}");
                continue;
            }
            let want = if e == 0 {
                sign * (m / 8.0) * 2f64.powi(-6)
            } else {
                sign * (1.0 + m / 8.0) * 2f64.powi(e - 7)
            } as f32;
            assert_eq!(got.to_bits(), want.to_bits(), "{byte:#04x}");
        }
        assert_eq!(decode_e4m3(0x7e), 448.0);
        assert_eq!(decode_e4m3(0x80).to_bits(), (-0.0f32).to_bits());
    }
}
