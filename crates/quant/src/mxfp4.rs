//! MXFP4 (32-element blocks): 4-bit E2M1 floats sharing one E8M0 (power-of-two) exponent, the
//! format GPT-OSS ships its expert weights in.
//!
//! ggml stores the E2M1 values doubled, as small integers, and halves the block scale to match,
//! so a weight is `KVALUES[q] · 2^(e − 128)`. Quantization reads no importance matrix
//! (`quantize_mxfp4` ignores it), and every block is independent.

use crate::common::x86_cast_u8;

/// ggml's `kvalues_mxfp4`: the sixteen E2M1 codes, doubled. Code 8 (E2M1 −0) decodes to +0.
pub(crate) const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The shared exponent's value, halved (ggml's `ggml_e8m0_to_fp32_half`): `2^(e − 128)`, built
/// from the bits directly (subnormal for `e` of 0 and 1; `e` = 255 gives 2^127, not NaN).
#[inline(always)]
pub(crate) fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits(u32::from(e - 1) << 23)
    }
}

/// The block's shared exponent, as ggml derives it from the largest magnitude: the biased
/// exponent of `amax` minus 2 (so the largest code, 6 = 12/2, covers it), 0 for a block of zeros.
/// NaNs never become the maximum; out-of-range exponents wrap as the C cast does on x86-64
/// (an infinite maximum gives 0, a maximum below 2^-125 wraps to a large exponent).
///
/// The logarithm is the C library's `log2f`, as in ggml: just below a power of two it may round
/// up to the integer, which moves the exponent, so an exact exponent extraction would differ.
#[inline(always)]
fn shared_exponent(block: &[f32]) -> u8 {
    let mut amax = 0.0f32;
    for &v in block {
        if amax < v.abs() {
            amax = v.abs();
        }
    }
    if amax > 0.0 {
        x86_cast_u8(amax.log2().floor() - 2.0 + 127.0)
    } else {
        0
    }
}

/// The code whose scaled value is nearest to `x`, the lowest such code on ties; a NaN `x` (every
/// distance NaN) gives code 0.
#[inline(always)]
fn best_code(x: f32, d: f32) -> u8 {
    let mut best = 0u8;
    let mut best_err = (f32::from(KVALUES[0]) * d - x).abs();
    for (code, &k) in KVALUES.iter().enumerate().skip(1) {
        let err = (f32::from(k) * d - x).abs();
        if err < best_err {
            best = code as u8;
            best_err = err;
        }
    }
    best
}

/// Quantizes whole blocks of `src` into 17-byte MXFP4 blocks (`e`, then 16 bytes of codes: low
/// nibble element `j`, high nibble element `j + 16`).
pub(crate) fn quantize_mxfp4(src: &[f32], dst: &mut [u8]) {
    for (block, out) in src.chunks_exact(32).zip(dst.chunks_exact_mut(17)) {
        let e = shared_exponent(block);
        let d = e8m0_half(e);
        out[0] = e;
        for j in 0..16 {
            out[1 + j] = best_code(block[j], d) | (best_code(block[j + 16], d) << 4);
        }
    }
}

/// Dequantizes whole MXFP4 blocks (ggml's `dequantize_row_mxfp4`).
pub(crate) fn dequantize_mxfp4(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(17).zip(dst.chunks_exact_mut(32)) {
        let d = e8m0_half(block[0]);
        for j in 0..16 {
            let q = block[1 + j];
            out[j] = f32::from(KVALUES[usize::from(q & 0x0F)]) * d;
            out[j + 16] = f32::from(KVALUES[usize::from(q >> 4)]) * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e8m0_half_is_two_to_the_e_minus_128() {
        for e in 0..=255u8 {
            let exact = 2f64.powi(i32::from(e) - 128) as f32;
            assert_eq!(e8m0_half(e).to_bits(), exact.to_bits(), "e = {e}");
        }
    }

    #[test]
    fn representable_blocks_round_trip_exactly() {
        // Blocks whose values are all E2M1 codes times the scale their maximum implies.
        for e in [1u8, 2, 60, 120, 127, 128, 140, 200, 252] {
            let d = e8m0_half(e);
            for shift in 0..16 {
                let mut block = [0f32; 32];
                for (j, v) in block.iter_mut().enumerate() {
                    *v = f32::from(KVALUES[(j + shift) % 16]) * d;
                }
                // Make sure the maximum magnitude (12·d) is present so the exponent is e.
                block[31] = -12.0 * d;
                let mut q = [0u8; 17];
                quantize_mxfp4(&block, &mut q);
                assert_eq!(q[0], e, "e = {e}");
                let mut back = [0f32; 32];
                dequantize_mxfp4(&q, &mut back);
                for j in 0..32 {
                    // −0 is not a code: ggml stores it as +0.
                    assert_eq!(back[j], block[j], "e = {e} shift {shift} element {j}");
                }
            }
        }
    }

    #[test]
    fn every_block_byte_pattern_decodes_without_panicking() {
        let mut out = [0f32; 32];
        for e in 0..=255u8 {
            let mut block = [e; 17];
            block[1..]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i as u8) * 17);
            dequantize_mxfp4(&block, &mut out);
            assert!(out.iter().all(|v| !v.is_nan()));
        }
    }

    #[test]
    fn special_blocks_follow_ggml() {
        let mut q = [0u8; 17];
        quantize_mxfp4(&[0.0; 32], &mut q);
        assert_eq!(q, [0u8; 17]);
        let mut block = [f32::NAN; 32];
        quantize_mxfp4(&block, &mut q);
        assert_eq!(q, [0u8; 17]);
        // An infinite maximum: the exponent cast wraps to 0 as on x86-64.
        block = [1.0; 32];
        block[3] = f32::INFINITY;
        quantize_mxfp4(&block, &mut q);
        assert_eq!(q[0], 0);
        // The smallest subnormal: floor(log2) = -149, so e wraps to (-24) mod 256.
        block = [0.0; 32];
        block[0] = f32::from_bits(1);
        quantize_mxfp4(&block, &mut q);
        assert_eq!(q[0], 232);
    }
}
