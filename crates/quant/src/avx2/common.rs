//! Register helpers shared by the AVX2 kernel families: the block kernels' reductions and byte
//! packing, and the lane searches' loads, stores, rounding and selection.

use std::arch::x86_64::*;

use crate::search::LANES;

/// The largest lane of a register without NaN (any order gives the same value up to the sign of
/// zero, which the callers resolve themselves).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn horizontal_max(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    _mm_cvtss_f32(m)
}

/// C's `(int8_t)(float)`: truncate to int32 (`i32::MIN` for NaN and out of range), keep the low
/// byte, sign-extended back to 32 bits.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn to_i8_lanes(v: __m256) -> __m256i {
    let t = _mm256_cvttps_epi32(v);
    _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(t))
}

/// Four registers of sign-extended bytes (elements 0–7, 8–15, 16–23, 24–31) as 32 bytes in
/// element order. Every value fits in an `i8`, so the saturating packs are exact.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn pack_bytes(l: [__m256i; 4]) -> __m256i {
    let words01 = _mm256_packs_epi32(l[0], l[1]);
    let words23 = _mm256_packs_epi32(l[2], l[3]);
    let bytes = _mm256_packs_epi16(words01, words23);
    // Each 128-bit half now holds 4-byte groups from the four registers in turn; restore order.
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// A transposed row of the lane searches (`x[i][lane]`) as one register.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn row(r: &[f32; LANES]) -> __m256 {
    // SAFETY: `r` holds exactly the eight floats read.
    unsafe { _mm256_loadu_ps(r.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn lanes(v: __m256) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    // SAFETY: `out` has room for the eight floats stored.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// `nearest_int(v).clamp(lo, hi)` per lane, as a float (exact: the values are small integers).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn nearest_clamped(v: __m256, lo: __m256i, hi: __m256i) -> __m256 {
    let biased = _mm256_add_ps(v, _mm256_set1_ps(12_582_912.0));
    let bits = _mm256_and_si256(_mm256_castps_si256(biased), _mm256_set1_epi32(0x007f_ffff));
    let n = _mm256_sub_epi32(bits, _mm256_set1_epi32(0x0040_0000));
    _mm256_cvtepi32_ps(_mm256_min_epi32(_mm256_max_epi32(n, lo), hi))
}

/// `if (mask) a = b` per lane.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn select(mask: __m256, if_false: __m256, if_true: __m256) -> __m256 {
    _mm256_blendv_ps(if_false, if_true, mask)
}

/// Levels of a lane search, from the scale (and offset) the lane finally kept, as bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn store_levels(level: __m256, bias: i32, out: &mut [u8; LANES]) {
    let l = _mm256_add_epi32(_mm256_cvttps_epi32(level), _mm256_set1_epi32(bias));
    let mut words = [0i32; LANES];
    // SAFETY: `words` has room for the eight ints stored.
    unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), l) };
    for (o, w) in out.iter_mut().zip(words) {
        *o = w as u8;
    }
}
