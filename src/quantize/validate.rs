//! llama.cpp's check of freshly quantized data (`ggml_validate_row_data`): a non-finite scale or
//! value means the source held NaN/Inf or overflowed, and llama-quantize refuses to write it.

use kiln_gguf::GgmlType;

fn f16_finite(bits: u16) -> bool {
    bits & 0x7C00 != 0x7C00
}

fn bf16_finite(bits: u16) -> bool {
    bits & 0x7F80 != 0x7F80
}

/// Byte offsets of the f16 scale fields inside one block of `ty`, and the block size in bytes.
fn f16_fields(ty: GgmlType) -> Option<(&'static [usize], usize)> {
    Some(match ty {
        GgmlType::Q4_0 | GgmlType::IQ4_NL => (&[0], 18),
        GgmlType::Q4_1 => (&[0, 2], 20),
        GgmlType::Q5_0 => (&[0], 22),
        GgmlType::Q5_1 => (&[0, 2], 24),
        GgmlType::Q8_0 => (&[0], 34),
        GgmlType::Q8_1 => (&[0, 2], 36),
        GgmlType::Q2_K => (&[80, 82], 84),
        GgmlType::Q3_K => (&[108], 110),
        GgmlType::Q4_K => (&[0, 2], 144),
        GgmlType::Q5_K => (&[0, 2], 176),
        GgmlType::Q6_K => (&[208], 210),
        GgmlType::IQ4_XS => (&[0], 136),
        GgmlType::TQ1_0 => (&[52], 54),
        GgmlType::TQ2_0 => (&[64], 66),
        _ => return None,
    })
}

/// The index of the first element or block whose value or scale is not finite.
pub(crate) fn first_invalid(ty: GgmlType, data: &[u8]) -> Option<usize> {
    let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    match ty {
        GgmlType::F32 => data
            .chunks_exact(4)
            .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        GgmlType::F16 => data.chunks_exact(2).position(|b| !f16_finite(half(b))),
        GgmlType::BF16 => data.chunks_exact(2).position(|b| !bf16_finite(half(b))),
        GgmlType::Q8_K => data
            .chunks_exact(292)
            .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        _ => {
            let (fields, size) = f16_fields(ty)?;
            data.chunks_exact(size)
                .position(|block| fields.iter().any(|&at| !f16_finite(half(&block[at..]))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_non_finite_scales_and_values() {
        let mut q4k = vec![0u8; 144 * 3];
        assert_eq!(first_invalid(GgmlType::Q4_K, &q4k), None);
        q4k[144 + 2..144 + 4].copy_from_slice(&0x7C00u16.to_le_bytes()); // dmin = +inf in block 1
        assert_eq!(first_invalid(GgmlType::Q4_K, &q4k), Some(1));
        let f16 = [0x00, 0x3C, 0x01, 0x7E]; // 1.0, NaN
        assert_eq!(first_invalid(GgmlType::F16, &f16), Some(1));
        let mut q6k = vec![0u8; 210];
        q6k[208..210].copy_from_slice(&0xFC00u16.to_le_bytes());
        assert_eq!(first_invalid(GgmlType::Q6_K, &q6k), Some(0));
    }
}
