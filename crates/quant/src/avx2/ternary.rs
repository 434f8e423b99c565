//! TQ1_0 and TQ2_0, one 256-element super-block at a time (the portable forms and the dispatch
//! are in `crate::ternary`).

use std::arch::x86_64::*;

use super::common::{horizontal_max, pack_bytes};
use crate::common::f32_to_f16_bits;

/// Trits (`lround(v * id) + 1`) of eight lanes as floats. Exact for blocks of finite values:
/// `id` is `1/amax`, so `|v * id|` stays below 1.5 and `lround` is a comparison with ±0.5.
#[inline]
#[target_feature(enable = "avx2")]
fn trits(v: __m256, id: __m256) -> __m256 {
    let t = _mm256_mul_ps(v, id);
    let one = _mm256_set1_ps(1.0);
    let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(t, _mm256_set1_ps(0.5)), one);
    let down = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(t, _mm256_set1_ps(-0.5)), one);
    _mm256_sub_ps(_mm256_add_ps(one, up), down)
}

/// `ceil(q * 256 / 243)` for base-3 numbers `q` (at most 242) held as floats: every step is exact,
/// and the quotient of at most 62194 by 243 is never within float error of the next integer.
#[inline]
#[target_feature(enable = "avx2")]
fn trit_byte(q: __m256) -> __m256i {
    let numerator = _mm256_add_ps(
        _mm256_mul_ps(q, _mm256_set1_ps(256.0)),
        _mm256_set1_ps(242.0),
    );
    let byte = _mm256_cvttps_epi32(_mm256_div_ps(numerator, _mm256_set1_ps(243.0)));
    // Sign-extend the low byte so that `pack_bytes`' signed saturation keeps it.
    _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(byte))
}

/// TQ1_0 (`quantize_row_tq1_0_ref`). Blocks holding NaN or ±Inf (whose scalar maximum depends
/// on the order of comparisons) or only subnormals go through the scalar kernel.
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_tq1_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(256).zip(dst.chunks_exact_mut(54)) {
        let Some((v, amax, inverse)) = finite_superblock(x) else {
            crate::ternary::quantize_tq1_0_scalar(x, y);
            continue;
        };
        let id = _mm256_set1_ps(inverse);
        let three = _mm256_set1_ps(3.0);
        // Bytes 0..32: five trits each, elements m + 32n (n = 0..5).
        let mut q = [_mm256_setzero_ps(); 4];
        for n in 0..5 {
            for (r, acc) in q.iter_mut().enumerate() {
                *acc = _mm256_add_ps(_mm256_mul_ps(*acc, three), trits(v[4 * n + r], id));
            }
        }
        let bytes = pack_bytes(q.map(|r| trit_byte(r)));
        // SAFETY: `y` has 54 bytes; 32 are stored at its start.
        unsafe { _mm256_storeu_si256(y.as_mut_ptr().cast(), bytes) };
        // Bytes 32..48: five trits each, elements 160 + m + 16n (n = 0..5).
        let mut q = [_mm256_setzero_ps(); 2];
        for n in 0..5 {
            for (r, acc) in q.iter_mut().enumerate() {
                *acc = _mm256_add_ps(_mm256_mul_ps(*acc, three), trits(v[20 + 2 * n + r], id));
            }
        }
        let zero = _mm256_setzero_si256();
        let bytes = pack_bytes([trit_byte(q[0]), trit_byte(q[1]), zero, zero]);
        // SAFETY: bytes 32..48 of the 54-byte block are stored.
        unsafe { _mm_storeu_si128(y.as_mut_ptr().add(32).cast(), _mm256_castsi256_si128(bytes)) };
        // Bytes 48..52 (four trits and a zero trit each) and the scale: scalar, as in the kernel.
        crate::ternary::tq1_0_tail(x, inverse, amax, y);
    }
}

/// TQ2_0 (`quantize_row_tq2_0_ref`): four trits per byte, two bits each. Blocks the TQ1_0 kernel
/// leaves to scalar code go to the scalar kernel here too.
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_tq2_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(256).zip(dst.chunks_exact_mut(66)) {
        let Some((v, amax, inverse)) = finite_superblock(x) else {
            crate::ternary::quantize_tq2_0_scalar(x, y);
            continue;
        };
        let id = _mm256_set1_ps(inverse);
        for half in 0..2 {
            let mut q = [_mm256_setzero_ps(); 4];
            for n in 0..4 {
                let weight = _mm256_set1_ps((1 << (2 * n)) as f32);
                for (r, acc) in q.iter_mut().enumerate() {
                    let t = trits(v[16 * half + 4 * n + r], id);
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(t, weight));
                }
            }
            let bytes = pack_bytes(q.map(|r| {
                let b = _mm256_cvttps_epi32(r);
                _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(b))
            }));
            // SAFETY: bytes 32·half..32·half+32 of the 66-byte block are stored.
            unsafe { _mm256_storeu_si256(y.as_mut_ptr().add(32 * half).cast(), bytes) };
        }
        y[64..66].copy_from_slice(&f32_to_f16_bits(amax).to_le_bytes());
    }
}

/// The 256 values of a ternary super-block in registers, with their maximum magnitude and its
/// inverse, when the vector kernels reproduce the scalar ones exactly: no NaN or ±Inf (the scalar
/// maximum then depends on the order of comparisons) and a finite inverse (a tiny subnormal
/// maximum overflows it, making the products ±Inf or NaN).
#[inline]
#[target_feature(enable = "avx2")]
fn finite_superblock(x: &[f32]) -> Option<([__m256; 32], f32, f32)> {
    let sign = _mm256_set1_ps(-0.0);
    let inf = _mm256_set1_ps(f32::INFINITY);
    let mut v = [_mm256_setzero_ps(); 32];
    let mut amax = _mm256_setzero_ps();
    let mut not_finite = _mm256_setzero_ps();
    for (r, chunk) in v.iter_mut().zip(x.chunks_exact(8)) {
        // SAFETY: `chunk` holds the eight floats read.
        *r = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        let a = _mm256_andnot_ps(sign, *r);
        not_finite = _mm256_or_ps(not_finite, _mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf));
        amax = _mm256_max_ps(amax, a);
    }
    let amax = horizontal_max(amax);
    let inverse = if amax != 0.0 { 1.0 / amax } else { 0.0 };
    (_mm256_movemask_ps(not_finite) == 0 && inverse.is_finite()).then_some((v, amax, inverse))
}
