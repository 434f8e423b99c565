//! Hand-written AVX2 kernels for the paths LLVM cannot vectorize from the scalar code: the
//! no-imatrix Q4_0, Q4_1, Q5_0 and Q5_1 rows (one block at a time, eight elements per register).
//!
//! Bit-exactness rests on three facts. Every float operation is the same IEEE binary32 operation
//! the scalar code performs on each element (multiply, then add: never fused). `cvttps2dq` is the
//! very instruction behind C's float→int casts on x86-64, "integer indefinite" results included.
//! And the reductions (absmax, min, max) are exact whatever their order; where the scalar loop's
//! "first element wins" rule could pick a different zero (+0.0 or -0.0) or a different
//! equal-magnitude element, the first matching element is looked up explicitly.

use std::arch::x86_64::*;

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

/// The largest lane of a register without NaN (any order gives the same value up to the sign of
/// zero, which the callers resolve themselves).
#[inline]
#[target_feature(enable = "avx2")]
fn horizontal_max(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    _mm_cvtss_f32(m)
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

/// C's `(int8_t)(float)`: truncate to int32 (`i32::MIN` for NaN and out of range), keep the low
/// byte, sign-extended back to 32 bits.
#[inline]
#[target_feature(enable = "avx2")]
fn to_i8_lanes(v: __m256) -> __m256i {
    let t = _mm256_cvttps_epi32(v);
    _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(t))
}

/// Four registers of sign-extended bytes (elements 0–7, 8–15, 16–23, 24–31) as 32 bytes in
/// element order. Every value fits in an `i8`, so the saturating packs are exact.
#[inline]
#[target_feature(enable = "avx2")]
fn pack_bytes(l: [__m256i; 4]) -> __m256i {
    let words01 = _mm256_packs_epi32(l[0], l[1]);
    let words23 = _mm256_packs_epi32(l[2], l[3]);
    let bytes = _mm256_packs_epi16(words01, words23);
    // Each 128-bit half now holds 4-byte groups from the four registers in turn; restore order.
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
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

// ---- the eight-lane scale searches ------------------------------------------------------------

use crate::search::LANES;

/// A transposed row of the lane searches (`x[i][lane]`) as one register.
#[inline]
#[target_feature(enable = "avx2")]
fn row(r: &[f32; LANES]) -> __m256 {
    // SAFETY: `r` holds exactly the eight floats read.
    unsafe { _mm256_loadu_ps(r.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn lanes(v: __m256) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    // SAFETY: `out` has room for the eight floats stored.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// `nearest_int(v).clamp(lo, hi)` per lane, as a float (exact: the values are small integers).
#[inline]
#[target_feature(enable = "avx2")]
fn nearest_clamped(v: __m256, lo: __m256i, hi: __m256i) -> __m256 {
    let biased = _mm256_add_ps(v, _mm256_set1_ps(12_582_912.0));
    let bits = _mm256_and_si256(_mm256_castps_si256(biased), _mm256_set1_epi32(0x007f_ffff));
    let n = _mm256_sub_epi32(bits, _mm256_set1_epi32(0x0040_0000));
    _mm256_cvtepi32_ps(_mm256_min_epi32(_mm256_max_epi32(n, lo), hi))
}

/// `if (mask) a = b` per lane.
#[inline]
#[target_feature(enable = "avx2")]
fn select(mask: __m256, if_false: __m256, if_true: __m256) -> __m256 {
    _mm256_blendv_ps(if_false, if_true, mask)
}

/// Levels of a lane search, from the scale (and offset) the lane finally kept, as bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn store_levels(level: __m256, bias: i32, out: &mut [u8; LANES]) {
    let l = _mm256_add_epi32(_mm256_cvttps_epi32(level), _mm256_set1_epi32(bias));
    let mut words = [0i32; LANES];
    // SAFETY: `words` has room for the eight ints stored.
    unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), l) };
    for (o, w) in out.iter_mut().zip(words) {
        *o = w as u8;
    }
}

/// [`crate::search::make_qkx_lanes`] in AVX2 registers, one group per lane, every lane running the
/// scalar operations in the scalar order. Two changes that do not alter a bit: a step's levels are
/// kept as floats for its error pass, and the levels of the step a lane keeps are recomputed once
/// at the end from that step's scale and offset instead of being copied at every improvement.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
pub(crate) fn make_qkx_lanes(
    nmax: i32,
    n: usize,
    x: &[[f32; LANES]; 32],
    w: &[[f32; LANES]; 32],
    levels: &mut [[u8; LANES]; 32],
    the_min: &mut [f32; LANES],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    degenerate_if_below: bool,
) -> [f32; LANES] {
    let n = n.min(32);
    let zero = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let (lo, hi) = (_mm256_setzero_si256(), _mm256_set1_epi32(nmax));
    let err = |d: __m256| {
        if use_mad {
            _mm256_andnot_ps(sign, d)
        } else {
            _mm256_mul_ps(d, d)
        }
    };
    let mut xr = [zero; 32];
    let mut wr = [zero; 32];
    for i in 0..n {
        xr[i] = row(&x[i]);
        wr[i] = row(&w[i]);
    }
    let mut min = xr[0];
    let mut max = xr[0];
    let mut sum_w = wr[0];
    let mut sum_x = _mm256_mul_ps(sum_w, xr[0]);
    for i in 1..n {
        let v = xr[i];
        min = select(_mm256_cmp_ps::<_CMP_LT_OQ>(v, min), min, v);
        max = select(_mm256_cmp_ps::<_CMP_GT_OQ>(v, max), max, v);
        sum_w = _mm256_add_ps(sum_w, wr[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wr[i], v));
    }
    min = select(_mm256_cmp_ps::<_CMP_GT_OQ>(min, zero), min, zero);
    let degenerate = if degenerate_if_below {
        _mm256_cmp_ps::<_CMP_LE_OQ>(max, min)
    } else {
        _mm256_cmp_ps::<_CMP_EQ_OQ>(max, min)
    };
    let nmax_f = _mm256_set1_ps(nmax as f32);
    let mut iscale = _mm256_div_ps(nmax_f, _mm256_sub_ps(max, min));
    let mut scale = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
    let min_at_start = min;
    let (mut kept_iscale, mut kept_min) = (iscale, min);
    let mut best = zero;
    for i in 0..n {
        let l = nearest_clamped(_mm256_mul_ps(iscale, _mm256_sub_ps(xr[i], min)), lo, hi);
        let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, l), min), xr[i]);
        best = _mm256_add_ps(best, _mm256_mul_ps(wr[i], err(diff)));
    }
    if nstep >= 1 {
        let mut aux = [zero; 32];
        for step in 0..=nstep {
            let num = rmin + rdelta * step as f32 + nmax as f32;
            iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
            let (mut sum_l, mut sum_l2, mut sum_xl) = (zero, zero, zero);
            for i in 0..n {
                let l = nearest_clamped(_mm256_mul_ps(iscale, _mm256_sub_ps(xr[i], min)), lo, hi);
                aux[i] = l;
                let wl = _mm256_mul_ps(wr[i], l);
                sum_l = _mm256_add_ps(sum_l, wl);
                sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
                sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xr[i]));
            }
            let det = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
            let mut this_scale = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)),
                det,
            );
            let mut this_min = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)),
                det,
            );
            let positive_min = _mm256_cmp_ps::<_CMP_GT_OQ>(this_min, zero);
            this_min = select(positive_min, this_min, zero);
            this_scale = select(positive_min, this_scale, _mm256_div_ps(sum_xl, sum_l2));
            let mut cur = zero;
            for i in 0..n {
                let diff = _mm256_sub_ps(
                    _mm256_add_ps(_mm256_mul_ps(this_scale, aux[i]), this_min),
                    xr[i],
                );
                cur = _mm256_add_ps(cur, _mm256_mul_ps(wr[i], err(diff)));
            }
            let take = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(det, zero),
                _mm256_cmp_ps::<_CMP_LT_OQ>(cur, best),
            );
            kept_iscale = select(take, kept_iscale, iscale);
            kept_min = select(take, kept_min, min);
            best = select(take, best, cur);
            scale = select(take, scale, this_scale);
            min = select(take, min, this_min);
        }
    }
    for i in 0..n {
        let l = nearest_clamped(
            _mm256_mul_ps(kept_iscale, _mm256_sub_ps(xr[i], kept_min)),
            lo,
            hi,
        );
        store_levels(select(degenerate, l, zero), 0, &mut levels[i]);
    }
    scale = select(degenerate, scale, zero);
    min = select(degenerate, min, min_at_start);
    *the_min = lanes(_mm256_xor_ps(min, sign));
    lanes(scale)
}

/// [`crate::search::make_qx_lanes`] in AVX2 registers, one group per lane, every lane running the
/// scalar operations in the scalar order.
#[target_feature(enable = "avx2")]
pub(crate) fn make_qx_lanes(
    nmax: i32,
    n: usize,
    x: &[[f32; LANES]; 32],
    w: &[[f32; LANES]; 32],
    levels: &mut [[u8; LANES]; 32],
) -> [f32; LANES] {
    let n = n.min(32);
    let zero = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let (lo, hi) = (_mm256_set1_epi32(-nmax), _mm256_set1_epi32(nmax - 1));
    let mut xr = [zero; 32];
    let mut wr = [zero; 32];
    for i in 0..n {
        xr[i] = row(&x[i]);
        wr[i] = row(&w[i]);
    }
    let (mut max, mut amax) = (zero, zero);
    for &v in xr.iter().take(n) {
        let ax = _mm256_andnot_ps(sign, v);
        let bigger = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
        amax = select(bigger, amax, ax);
        max = select(bigger, max, v);
    }
    let sums = |iscale: __m256| {
        let (mut sumlx, mut suml2) = (zero, zero);
        for i in 0..n {
            let l = nearest_clamped(_mm256_mul_ps(iscale, xr[i]), lo, hi);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wr[i], xr[i]), l));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wr[i], l), l));
        }
        (sumlx, suml2)
    };
    let mut iscale = _mm256_div_ps(_mm256_set1_ps(-(nmax as f32)), max);
    let mut chosen = iscale;
    let (sumlx, suml2) = sums(iscale);
    let mut scale = select(
        _mm256_cmp_ps::<_CMP_NEQ_UQ>(suml2, zero),
        zero,
        _mm256_div_ps(sumlx, suml2),
    );
    let mut best = _mm256_mul_ps(scale, sumlx);
    for step in -9..=9 {
        if step == 0 {
            continue;
        }
        let num = nmax as f32 + 0.1f32 * step as f32;
        iscale = _mm256_div_ps(_mm256_set1_ps(-num), max);
        let (sumlx, suml2) = sums(iscale);
        let better = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(suml2, zero),
            _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2)),
        );
        chosen = select(better, chosen, iscale);
        scale = select(better, scale, _mm256_div_ps(sumlx, suml2));
        best = select(better, best, _mm256_mul_ps(scale, sumlx));
    }
    let all_zero = _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(crate::search::GROUP_MAX_EPS));
    for i in 0..n {
        let l = nearest_clamped(_mm256_mul_ps(chosen, xr[i]), lo, hi);
        // The level bias is added after the zero-group selection: a zero group stores 0, not nmax.
        let biased = _mm256_add_ps(l, _mm256_set1_ps(nmax as f32));
        store_levels(select(all_zero, biased, zero), 0, &mut levels[i]);
    }
    lanes(select(all_zero, scale, zero))
}

/// [`crate::search::make_q3_lanes`] in AVX2 registers for `G` sets of eight groups: the
/// symmetric start, then the coordinate descent rounds, each lane making exactly the scalar
/// decisions in the scalar order. The descent is one long dependency chain per lane (every step
/// reads the sums the previous one wrote), so the `G` sets are interleaved to keep the divider
/// busy. A lane whose round changed nothing would change nothing in later rounds either (its state
/// is the same), so the lanes simply run until no lane changes, at most five rounds, as the scalar
/// loop does.
#[target_feature(enable = "avx2")]
pub(crate) fn make_q3_lanes<const G: usize>(
    nmax: i32,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
) -> [[f32; LANES]; G] {
    let n = n.min(32);
    let zero = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let (lo, hi) = (_mm256_set1_epi32(-nmax), _mm256_set1_epi32(nmax - 1));
    let mut xr = [[zero; 32]; G];
    let mut wx = [[zero; 32]; G];
    let mut l = [[zero; 32]; G];
    let (mut amax, mut sumlx, mut suml2) = ([zero; G], [zero; G], [zero; G]);
    for g in 0..G {
        for i in 0..n {
            xr[g][i] = row(&x[g][i]);
        }
        let mut max = zero;
        for &v in xr[g].iter().take(n) {
            let ax = _mm256_andnot_ps(sign, v);
            let bigger = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax[g]);
            amax[g] = select(bigger, amax[g], ax);
            max = select(bigger, max, v);
        }
        let iscale = _mm256_div_ps(_mm256_set1_ps(-(nmax as f32)), max);
        for i in 0..n {
            let v = xr[g][i];
            l[g][i] = nearest_clamped(_mm256_mul_ps(iscale, v), lo, hi);
            let w = _mm256_mul_ps(v, v);
            wx[g][i] = _mm256_mul_ps(w, v);
            sumlx[g] = _mm256_add_ps(sumlx[g], _mm256_mul_ps(wx[g][i], l[g][i]));
            suml2[g] = _mm256_add_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(w, l[g][i]), l[g][i]));
        }
    }
    for _ in 0..5 {
        let mut changed = _mm256_setzero_ps();
        for i in 0..n {
            for g in 0..G {
                let v = xr[g][i];
                let w = _mm256_mul_ps(v, v);
                let li = l[g][i];
                let slx_without = _mm256_sub_ps(sumlx[g], _mm256_mul_ps(wx[g][i], li));
                let sl2_without = _mm256_sub_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(w, li), li));
                let new_l = nearest_clamped(
                    _mm256_div_ps(_mm256_mul_ps(v, sl2_without), slx_without),
                    lo,
                    hi,
                );
                let slx = _mm256_add_ps(slx_without, _mm256_mul_ps(wx[g][i], new_l));
                let sl2 = _mm256_add_ps(sl2_without, _mm256_mul_ps(_mm256_mul_ps(w, new_l), new_l));
                let better = _mm256_cmp_ps::<_CMP_GT_OQ>(
                    _mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2[g]),
                    _mm256_mul_ps(_mm256_mul_ps(sumlx[g], sumlx[g]), sl2),
                );
                let accept = _mm256_and_ps(
                    _mm256_and_ps(
                        _mm256_cmp_ps::<_CMP_GT_OQ>(slx_without, zero),
                        _mm256_cmp_ps::<_CMP_NEQ_OQ>(new_l, li),
                    ),
                    _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(sl2, zero), better),
                );
                l[g][i] = select(accept, li, new_l);
                sumlx[g] = select(accept, sumlx[g], slx);
                suml2[g] = select(accept, suml2[g], sl2);
                changed = _mm256_or_ps(changed, accept);
            }
        }
        if _mm256_movemask_ps(changed) == 0 {
            break;
        }
    }
    let bias = _mm256_set1_ps(nmax as f32);
    let eps = _mm256_set1_ps(crate::search::GROUP_MAX_EPS);
    let mut scales = [[0.0f32; LANES]; G];
    for g in 0..G {
        let all_zero = _mm256_cmp_ps::<_CMP_LT_OQ>(amax[g], eps);
        for i in 0..n {
            let biased = _mm256_add_ps(l[g][i], bias);
            store_levels(select(all_zero, biased, zero), 0, &mut levels[g][i]);
        }
        let scale = select(
            _mm256_cmp_ps::<_CMP_GT_OQ>(suml2[g], zero),
            zero,
            _mm256_div_ps(sumlx[g], suml2[g]),
        );
        scales[g] = lanes(select(all_zero, scale, zero));
    }
    scales
}

// ---- IQ4 ---------------------------------------------------------------------------------------

/// The IQ4 table value nearest to each lane (ties to the upper value, NaN to the last), as
/// `crate::iq4`'s `best_index` chooses it: `upper` counts the table values not above `x` (at least
/// 1, at most 15, which also settles both ends), then the nearer neighbour wins.
#[inline]
#[target_feature(enable = "avx2")]
fn iq4_nearest_value(x: __m256, table: &[__m256; 2], values: &[__m256; 16]) -> __m256 {
    let mut upper = _mm256_set1_epi32(1);
    for v in &values[1..15] {
        let not_above = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(*v, x));
        upper = _mm256_sub_epi32(upper, not_above);
    }
    let lookup = |index: __m256i| {
        let low = _mm256_permutevar8x32_ps(table[0], index);
        let high = _mm256_permutevar8x32_ps(table[1], index);
        let in_high = _mm256_castsi256_ps(_mm256_cmpgt_epi32(index, _mm256_set1_epi32(7)));
        select(in_high, low, high)
    };
    let below = lookup(_mm256_sub_epi32(upper, _mm256_set1_epi32(1)));
    let above = lookup(upper);
    let nearer_below =
        _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_sub_ps(x, below), _mm256_sub_ps(above, x));
    let q = select(nearer_below, above, below);
    select(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x), q, values[15])
}

/// [`crate::iq4::block_scale`] for eight blocks, one per lane, every lane running the scalar
/// operations in the scalar order.
#[target_feature(enable = "avx2")]
pub(crate) fn iq4_block_scales(x: &[[f32; LANES]; 32], w: &[[f32; LANES]; 32]) -> [f32; LANES] {
    let kvalues = crate::iq4::KVALUES.map(f32::from);
    let values = kvalues.map(|v| _mm256_set1_ps(v));
    // SAFETY: `kvalues` holds 16 floats; each load reads 8 of them.
    let table = unsafe {
        [
            _mm256_loadu_ps(kvalues.as_ptr()),
            _mm256_loadu_ps(kvalues.as_ptr().add(8)),
        ]
    };
    let zero = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let mut xr = [zero; 32];
    let mut wr = [zero; 32];
    for j in 0..32 {
        xr[j] = row(&x[j]);
        wr[j] = row(&w[j]);
    }
    let (mut max, mut amax) = (zero, zero);
    for &v in &xr {
        let ax = _mm256_andnot_ps(sign, v);
        let bigger = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
        amax = select(bigger, amax, ax);
        max = select(bigger, max, v);
    }
    let sums = |id: __m256| {
        let (mut sumqx, mut sumq2) = (zero, zero);
        for j in 0..32 {
            let q = iq4_nearest_value(_mm256_mul_ps(id, xr[j]), &table, &values);
            let wq = _mm256_mul_ps(wr[j], q);
            sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xr[j]));
            sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
        }
        (sumqx, sumq2)
    };
    let d = _mm256_div_ps(_mm256_xor_ps(max, sign), values[0]);
    let (sumqx, sumq2) = sums(_mm256_div_ps(_mm256_set1_ps(1.0), d));
    let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(sumq2, zero);
    let mut d = select(positive, zero, _mm256_div_ps(sumqx, sumq2));
    let mut best = _mm256_mul_ps(d, sumqx);
    for itry in -NTRY_IQ4..=NTRY_IQ4 {
        let numerator = (itry + i32::from(crate::iq4::KVALUES[0])) as f32;
        let id = _mm256_div_ps(_mm256_set1_ps(numerator), max);
        let (sumqx, sumq2) = sums(id);
        let better = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(sumq2, zero),
            _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2)),
        );
        d = select(better, d, _mm256_div_ps(sumqx, sumq2));
        best = select(better, best, _mm256_mul_ps(d, sumqx));
    }
    let all_zero = _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(crate::search::GROUP_MAX_EPS));
    lanes(select(all_zero, d, zero))
}

const NTRY_IQ4: i32 = crate::iq4::NTRY;

// ---- TQ1_0 -------------------------------------------------------------------------------------

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

// ---- k-quant requantization --------------------------------------------------------------------

/// `crate::kquants::requantize_groups`: groups of `group` elements (a multiple of 8), eight
/// elements per step.
#[target_feature(enable = "avx2")]
pub(crate) fn requantize_groups(
    x: &[f32],
    group: usize,
    d: &[f32],
    offset: Option<&[f32]>,
    (lo, hi): (i32, i32),
    levels: &mut [u8],
) {
    let (lo_v, hi_v) = (_mm256_set1_epi32(lo), _mm256_set1_epi32(hi));
    for (j, &dj) in d.iter().enumerate() {
        if dj == 0.0 {
            continue;
        }
        let scale = _mm256_set1_ps(dj);
        let range = group * j..group * (j + 1);
        for (chunk, out) in x[range.clone()]
            .chunks_exact(8)
            .zip(levels[range].chunks_exact_mut(8))
        {
            // SAFETY: `chunk` holds the eight floats read.
            let mut v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
            if let Some(m) = offset {
                v = _mm256_add_ps(v, _mm256_set1_ps(m[j]));
            }
            let level = nearest_clamped(_mm256_div_ps(v, scale), lo_v, hi_v);
            let mut l = [0u8; 8];
            store_levels(level, -lo, &mut l);
            out.copy_from_slice(&l);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::legacy;

    /// Blocks aimed at every branch: signed zeros in every order, ties of equal magnitude and
    /// opposite sign, NaN, ±Inf, values whose truncation overflows, tiny and huge scales, and
    /// rounding ties.
    fn adversarial_blocks(seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut out = Vec::new();
        for block in 0..4096 {
            for j in 0..32 {
                let r = next();
                let normal = ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0;
                let v = match (block % 10, r % 7) {
                    (0, _) => [0.0, -0.0][(r >> 3) as usize % 2],
                    (1, 0..=2) => [0.0, -0.0][(r >> 3) as usize % 2],
                    (1, _) => normal.abs(),
                    (2, 0..=2) => [0.0, -0.0][(r >> 3) as usize % 2],
                    (2, _) => -normal.abs(),
                    (3, _) => [2.5, -2.5, 1.0][(r >> 3) as usize % 3],
                    (4, 0) => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][(r >> 3) as usize % 3],
                    (5, _) => normal * 1e-38,
                    (6, _) => normal * 3e38,
                    (7, 0) => f32::NAN,
                    (7, _) => [0.0, -0.0][(r >> 3) as usize % 2],
                    // Q8_0 ties: the maximum 127 makes the scale 1, so halves stay halves.
                    (8, _) if j == 0 => 127.0,
                    (8, _) => ((r >> 3) % 200) as f32 * 0.5 - 50.0,
                    _ => normal,
                };
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn avx2_kernels_equal_the_scalar_kernels() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        type Kernel = fn(&[f32], &mut [u8]);
        type Avx2Kernel = unsafe fn(&[f32], &mut [u8]);
        let pairs: [(&str, usize, Kernel, Avx2Kernel); 5] = [
            (
                "q8_0",
                34,
                legacy::quantize_q8_0_scalar,
                super::quantize_q8_0,
            ),
            (
                "q4_0",
                18,
                legacy::quantize_q4_0_scalar,
                super::quantize_q4_0,
            ),
            (
                "q4_1",
                20,
                legacy::quantize_q4_1_scalar,
                super::quantize_q4_1,
            ),
            (
                "q5_0",
                22,
                legacy::quantize_q5_0_scalar,
                super::quantize_q5_0,
            ),
            (
                "q5_1",
                24,
                legacy::quantize_q5_1_scalar,
                super::quantize_q5_1,
            ),
        ];
        for seed in [1u64, 0x9E37_79B9_7F4A_7C15] {
            let x = adversarial_blocks(seed);
            // TQ1_0's 256-element blocks: each made of one kind, plus an all-subnormal one.
            let mut whole: Vec<f32> = x.chunks(32).flat_map(|b| b.repeat(8)).collect();
            whole.extend(
                (0..256).map(|i| f32::from_bits(1 + i * 977) * [1.0, -1.0][i as usize % 2]),
            );
            whole.extend((0..256).map(|i| (i as f32 - 128.0) / 128.0));
            for (offset, d, lo, hi) in [
                (None, 0.37f32, -4, 3),
                (None, -0.05, -32, 31),
                (Some(0.8f32), 0.11, 0, 15),
                (Some(-1e-3), 3e-7, 0, 31),
            ] {
                // Every third group has a zero scale and must keep its levels.
                let groups = x.len() / 16;
                let ds: Vec<f32> = (0..groups)
                    .map(|j| {
                        if j % 3 == 1 {
                            0.0
                        } else {
                            d * (1.0 + j as f32 * 1e-3)
                        }
                    })
                    .collect();
                let ms: Vec<f32> = (0..groups)
                    .map(|j| offset.unwrap_or(0.0) * j as f32)
                    .collect();
                let offsets = offset.map(|_| &ms[..]);
                let mut got = vec![7u8; x.len()];
                // SAFETY: the CPU supports AVX2 (checked above).
                unsafe { super::requantize_groups(&x, 16, &ds, offsets, (lo, hi), &mut got) };
                for (i, (&v, &g)) in x.iter().zip(&got).enumerate() {
                    let j = i / 16;
                    let want = if ds[j] == 0.0 {
                        7
                    } else {
                        let v = offsets.map_or(v, |m| v + m[j]);
                        (crate::common::nearest_int(v / ds[j]).clamp(lo, hi) - lo) as u8
                    };
                    assert_eq!(want, g, "requantize element {i} ({v:e} / {:e})", ds[j]);
                }
            }
            let ternary: [(&str, usize, Kernel, Avx2Kernel); 2] = [
                (
                    "tq1_0",
                    54,
                    crate::ternary::quantize_tq1_0_scalar,
                    super::quantize_tq1_0,
                ),
                (
                    "tq2_0",
                    66,
                    crate::ternary::quantize_tq2_0_scalar,
                    super::quantize_tq2_0,
                ),
            ];
            for (name, bytes, scalar, simd) in ternary {
                let mut want = vec![0u8; whole.len() / 256 * bytes];
                let mut got = want.clone();
                scalar(&whole, &mut want);
                // SAFETY: the CPU supports AVX2 (checked above).
                unsafe { simd(&whole, &mut got) };
                for (b, (w, g)) in want.chunks(bytes).zip(got.chunks(bytes)).enumerate() {
                    assert_eq!(w, g, "{name} block {b}");
                }
            }
            for (name, bytes, scalar, simd) in pairs {
                let mut want = vec![0u8; x.len() / 32 * bytes];
                let mut got = want.clone();
                scalar(&x, &mut want);
                // SAFETY: the CPU supports AVX2 (checked above).
                unsafe { simd(&x, &mut got) };
                for (b, (w, g)) in want.chunks(bytes).zip(got.chunks(bytes)).enumerate() {
                    assert_eq!(w, g, "{name} block {b}: {:?}", &x[32 * b..32 * b + 32]);
                }
            }
        }
    }
}
