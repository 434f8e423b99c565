//! Scalar primitives shared by every kernel, each reproducing one ggml/C operation exactly.
//!
//! ggml's reference build for x86-64 evaluates plain IEEE binary32 arithmetic with no fused
//! multiply-add, so these helpers never use `mul_add` and never reorder operations.

/// ggml's `nearest_int`: round half to even through the 1.5·2^23 magic constant.
///
/// Outside ±2^22 the result wraps exactly as ggml's does; NaN and ±Inf give ggml's values too.
#[inline(always)]
pub(crate) fn nearest_int(value: f32) -> i32 {
    let biased = value + 12_582_912.0_f32;
    (biased.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// A C float→int32 conversion as x86-64 `cvttss2si` performs it: truncation toward zero, and the
/// "integer indefinite" value `i32::MIN` for NaN and out-of-range inputs (Rust's `as` saturates
/// instead, which would change bytes for non-finite blocks).
#[inline(always)]
pub(crate) fn x86_cvtt_i32(value: f32) -> i32 {
    if value.is_nan() || !(-2_147_483_648.0_f32..2_147_483_648.0_f32).contains(&value) {
        i32::MIN
    } else {
        value as i32
    }
}

/// C's `(int8_t)(float)` on x86-64 (convert to int32, keep the low byte).
#[inline(always)]
pub(crate) fn x86_cast_i8(value: f32) -> i8 {
    x86_cvtt_i32(value) as i8
}

/// C's `(uint8_t)(float)` on x86-64 (convert to int32, keep the low byte).
#[inline(always)]
pub(crate) fn x86_cast_u8(value: f32) -> u8 {
    x86_cvtt_i32(value) as u8
}

/// ggml's `MAX(a, b)` macro on floats: `a > b ? a : b`, NaN-sensitive in exactly ggml's way.
#[inline(always)]
pub(crate) fn c_max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// ggml's software f32→f16 conversion (`ggml_compute_fp32_to_fp16`).
///
/// Round-to-nearest-even for every non-NaN input; every NaN becomes `sign | 0x7E00` (the payload
/// is dropped, unlike `half::f16::from_f32`).
#[inline(always)]
pub fn f32_to_f16_bits(value: f32) -> u16 {
    let to_inf = f32::from_bits(0x7780_0000); // 2^112
    let to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (value.abs() * to_inf) * to_zero;
    let w = value.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa = bits & 0x0000_0FFF;
    let magnitude = if shl1_w > 0xFF00_0000 {
        0x7E00
    } else {
        exp_bits + mantissa
    };
    ((sign >> 16) | magnitude) as u16
}

/// ggml's f16→f32 conversion: exact; a signalling NaN comes back quiet, as on x86.
#[inline(always)]
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exponent = u32::from((bits >> 10) & 0x1F);
    let mantissa = u32::from(bits & 0x03FF);
    match (exponent, mantissa) {
        (0, 0) => f32::from_bits(sign),
        (0, m) => {
            // Subnormal: m · 2^-24 is exact in binary32.
            let magnitude = m as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(sign | magnitude.to_bits())
        }
        (0x1F, 0) => f32::from_bits(sign | 0x7F80_0000),
        (0x1F, m) => f32::from_bits(sign | 0x7FC0_0000 | (m << 13)),
        (e, m) => f32::from_bits(sign | ((e + 112) << 23) | (m << 13)),
    }
}

/// ggml's f32→bf16 conversion (`ggml_compute_fp32_to_bf16`): round-to-nearest-even, NaN truncated
/// with the quiet bit forced, no flush of subnormals.
#[inline(always)]
pub fn f32_to_bf16_bits(value: f32) -> u16 {
    let u = value.to_bits();
    if (u & 0x7FFF_FFFF) > 0x7F80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7FFF + ((u >> 16) & 1)) >> 16) as u16
}

/// bf16→f32: the bf16 bits are the top half of the f32.
#[inline(always)]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
    }

    #[test]
    fn f16_conversion_matches_ieee_rne_for_non_nan() {
        // `half` implements IEEE round-to-nearest-even; ggml agrees with it on every non-NaN input.
        let mut state = 0x1234_5678_u32;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = f32::from_bits(state);
            if v.is_nan() {
                assert_eq!(f32_to_f16_bits(v) & 0x7FFF, 0x7E00);
                continue;
            }
            assert_eq!(
                f32_to_f16_bits(v),
                half::f16::from_f32(v).to_bits(),
                "{v:e}"
            );
        }
    }

    #[test]
    fn f16_to_f32_is_exact_for_every_non_nan() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_nan() {
                assert!(f16_bits_to_f32(bits).is_nan());
            } else {
                assert_eq!(
                    f16_bits_to_f32(bits).to_bits(),
                    h.to_f32().to_bits(),
                    "{bits:#x}"
                );
            }
        }
    }

    #[test]
    fn bf16_matches_half_including_nan() {
        for v in [
            0.0f32,
            -0.0,
            1.0,
            1.003_906_3,
            f32::INFINITY,
            f32::NAN,
            -f32::NAN,
            1e-40,
            3.4e38,
        ] {
            assert_eq!(
                f32_to_bf16_bits(v),
                half::bf16::from_f32(v).to_bits(),
                "{v:e}"
            );
        }
    }
}
