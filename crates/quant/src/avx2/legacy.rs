//! Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 without an imatrix, one 32-element block at a time (the
//! portable forms and the dispatch are in `crate::legacy`).

use std::arch::x86_64::*;

use super::common::{horizontal_max, pack_bytes, to_i8_lanes};
use crate::common::f32_to_f16_bits;

const QK: usize = 32;

/// The 32 floats of a block as four registers.
#[inline]
#[target_feature(enable = "avx2")]
fn load_block(x: &[f32; QK]) -> [__m256; 4] {
    let p = x.as_ptr();
    // SAFETY: `x` holds 32 floats; each load reads 8 of them, unaligned loads are allowed.
    unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn horizontal_min(v: __m256) -> f32 {
    let m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_min_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    _mm_cvtss_f32(m)
}

/// Bit `i` set where lane `i` of the block's registers compares equal to `target`.
#[inline]
#[target_feature(enable = "avx2")]
fn equal_mask(v: &[__m256; 4], target: f32) -> u32 {
    let t = _mm256_set1_ps(target);
    let mut mask = 0u32;
    for (i, r) in v.iter().enumerate() {
        let eq = _mm256_cmp_ps::<_CMP_EQ_OQ>(*r, t);
        mask |= (_mm256_movemask_ps(eq) as u32) << (8 * i);
    }
    mask
}

/// The element of largest magnitude, the first one on ties, `+0.0` when every magnitude is zero
/// or NaN: the scalar `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` loop.
#[inline]
#[target_feature(enable = "avx2")]
fn signed_absmax(x: &[f32; QK], v: &[__m256; 4]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let abs = v.map(|r| _mm256_andnot_ps(sign, r));
    // `maxps` returns its second operand when the first is NaN, so NaN magnitudes are skipped.
    let mut acc = _mm256_setzero_ps();
    for a in abs {
        acc = _mm256_max_ps(a, acc);
    }
    let amax = horizontal_max(acc);
    if amax == 0.0 {
        return 0.0;
    }
    let first = equal_mask(&abs, amax).trailing_zeros() as usize;
    x.get(first).copied().unwrap_or(0.0)
}

/// The scalar `min = FLT_MAX; max = -FLT_MAX; if (v < min) min = v; if (v > max) max = v;` loop:
/// NaN is skipped and, among equal values (only ±0.0 can differ), the first one is kept.
#[inline]
#[target_feature(enable = "avx2")]
fn min_max(x: &[f32; QK], v: &[__m256; 4]) -> (f32, f32) {
    let (mut lo, mut hi) = (_mm256_set1_ps(f32::MAX), _mm256_set1_ps(-f32::MAX));
    for r in v {
        lo = _mm256_min_ps(*r, lo);
        hi = _mm256_max_ps(*r, hi);
    }
    let first_equal = |value: f32| {
        if value != 0.0 {
            return value;
        }
        let first = equal_mask(v, value).trailing_zeros() as usize;
        x.get(first).copied().unwrap_or(value)
    };
    (
        first_equal(horizontal_min(lo)),
        first_equal(horizontal_max(hi)),
    )
}

/// `lo | ((hi & 0x0F) << 4)` for the first 16 levels (`lo`) and the last 16 (`hi`): the nibble
/// layout of every legacy type (a level's high bits, if any, are kept as the C code keeps them).
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(levels: __m256i, mask_low: bool) -> [u8; 16] {
    let low_nibble = _mm_set1_epi8(0x0F);
    let mut lo = _mm256_castsi256_si128(levels);
    if mask_low {
        lo = _mm_and_si128(lo, low_nibble);
    }
    let hi = _mm_and_si128(_mm256_extracti128_si256::<1>(levels), low_nibble);
    let packed = _mm_or_si128(lo, _mm_slli_epi16::<4>(hi));
    let mut out = [0u8; 16];
    // SAFETY: `out` has room for the 16 bytes stored.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), packed) };
    out
}

/// The fifth bit of each of the 32 levels, level `j` at bit `j`.
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bits(levels: __m256i) -> u32 {
    // Shifting 16-bit lanes left by 3 moves each byte's bit 4 to its bit 7 (what crosses into the
    // neighbouring byte lands in bits 0–2, which the mask ignores).
    _mm256_movemask_epi8(_mm256_slli_epi16::<3>(levels)) as u32
}

/// The levels `clamp_hi.min((int8_t)((x - offset) * id + bias))` (or without the `min` when
/// `clamp_hi` is `None`), as 32 bytes in element order.
#[inline]
#[target_feature(enable = "avx2")]
fn levels(
    v: &[__m256; 4],
    offset: Option<f32>,
    id: f32,
    bias: f32,
    clamp_hi: Option<i32>,
) -> __m256i {
    let (id, bias) = (_mm256_set1_ps(id), _mm256_set1_ps(bias));
    let l = v.map(|r| {
        let r = match offset {
            Some(m) => _mm256_sub_ps(r, _mm256_set1_ps(m)),
            None => r,
        };
        let q = to_i8_lanes(_mm256_add_ps(_mm256_mul_ps(r, id), bias));
        match clamp_hi {
            Some(c) => _mm256_min_epi32(q, _mm256_set1_epi32(c)),
            None => q,
        }
    });
    pack_bytes(l)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

fn blocks<'a, const BYTES: usize>(
    src: &'a [f32],
    dst: &'a mut [u8],
) -> impl Iterator<Item = (&'a [f32; QK], &'a mut [u8; BYTES])> {
    src.chunks_exact(QK)
        .zip(dst.chunks_exact_mut(BYTES))
        .map(|(x, y)| {
            (
                x.try_into().expect("32-float chunk"),
                y.try_into().expect("block-sized chunk"),
            )
        })
}

/// Q4_0 without an imatrix (`quantize_row_q4_0_ref`).
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in blocks::<18>(src, dst) {
        let v = load_block(x);
        let d = signed_absmax(x, &v) / -8.0;
        y[0..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        let l = levels(&v, None, inverse(d), 8.5, Some(15));
        y[2..18].copy_from_slice(&nibbles(l, false));
    }
}

/// Q4_1 without an imatrix (`quantize_row_q4_1_ref`).
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in blocks::<20>(src, dst) {
        let v = load_block(x);
        let (min, max) = min_max(x, &v);
        let d = (max - min) / 15.0;
        y[0..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        y[2..4].copy_from_slice(&f32_to_f16_bits(min).to_le_bytes());
        let l = levels(&v, Some(min), inverse(d), 0.5, Some(15));
        y[4..20].copy_from_slice(&nibbles(l, false));
    }
}

/// Q5_0 without an imatrix (`quantize_row_q5_0_ref`).
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in blocks::<22>(src, dst) {
        let v = load_block(x);
        let d = signed_absmax(x, &v) / -16.0;
        y[0..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        let l = levels(&v, None, inverse(d), 16.5, Some(31));
        y[2..6].copy_from_slice(&fifth_bits(l).to_le_bytes());
        y[6..22].copy_from_slice(&nibbles(l, true));
    }
}

/// Q5_1 without an imatrix (`quantize_row_q5_1_ref`).
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in blocks::<24>(src, dst) {
        let v = load_block(x);
        let (min, max) = min_max(x, &v);
        let d = (max - min) / 31.0;
        y[0..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        y[2..4].copy_from_slice(&f32_to_f16_bits(min).to_le_bytes());
        let l = levels(&v, Some(min), inverse(d), 0.5, None);
        y[4..8].copy_from_slice(&fifth_bits(l).to_le_bytes());
        y[8..24].copy_from_slice(&nibbles(l, true));
    }
}

/// Q8_0 (`quantize_row_q8_0_ref`). Blocks holding NaN (whose scalar maximum depends on the order
/// of comparisons) go through the scalar kernel.
#[target_feature(enable = "avx2")]
pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    for (x, y) in blocks::<34>(src, dst) {
        let v = load_block(x);
        let abs = v.map(|r| _mm256_andnot_ps(sign, r));
        let mut amax = _mm256_setzero_ps();
        let mut nan = _mm256_setzero_ps();
        for a in abs {
            amax = _mm256_max_ps(amax, a);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a));
        }
        if _mm256_movemask_ps(nan) != 0 {
            crate::legacy::quantize_q8_0_scalar(x, y);
            continue;
        }
        let d = horizontal_max(amax) / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        y[0..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        // `roundf`: truncate, then step away from zero when the dropped part is at least one half
        // (exact: the difference of a float and its truncation is a float).
        let q = v.map(|r| {
            let t = _mm256_mul_ps(r, id);
            let whole = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
            let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(t, whole));
            let step = _mm256_or_ps(_mm256_and_ps(t, sign), one);
            let away = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), step);
            to_i8_lanes(_mm256_add_ps(whole, away))
        });
        // SAFETY: bytes 2..34 of the 34-byte block are stored.
        unsafe { _mm256_storeu_si256(y.as_mut_ptr().add(2).cast(), pack_bytes(q)) };
    }
}
