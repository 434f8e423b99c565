//! AVX-512 forms of the searches that stay latency-bound in AVX2: sixteen groups per register.
//!
//! The same rules as the AVX2 kernels (`avx2/`): every lane runs the scalar operations in the
//! scalar order (no fused multiply-add; `avx512f` brings none unless asked for), so the bytes do
//! not change.

use std::arch::x86_64::*;

use crate::search::{GROUP_MAX_EPS, LANES};

/// Two sets of eight lanes (`x[2h][i]`, `x[2h + 1][i]`) as one 16-lane register.
#[inline]
#[target_feature(enable = "avx512f")]
fn join(low: &[f32; LANES], high: &[f32; LANES]) -> __m512 {
    let mut both = [0.0f32; 2 * LANES];
    both[..LANES].copy_from_slice(low);
    both[LANES..].copy_from_slice(high);
    // SAFETY: `both` holds the sixteen floats read.
    unsafe { _mm512_loadu_ps(both.as_ptr()) }
}

/// `nearest_int(v).clamp(lo, hi)` per lane, as a float (exact: the values are small integers).
#[inline]
#[target_feature(enable = "avx512f")]
fn nearest_clamped(v: __m512, lo: __m512i, hi: __m512i) -> __m512 {
    let biased = _mm512_add_ps(v, _mm512_set1_ps(12_582_912.0));
    let bits = _mm512_and_si512(_mm512_castps_si512(biased), _mm512_set1_epi32(0x007f_ffff));
    let n = _mm512_sub_epi32(bits, _mm512_set1_epi32(0x0040_0000));
    _mm512_cvtepi32_ps(_mm512_min_epi32(_mm512_max_epi32(n, lo), hi))
}

/// Groups of at most this many elements (Q3_K's 16).
pub(crate) const ROWS: usize = 16;
/// At most this many 16-lane registers per call (`G` up to 8 eight-lane sets).
pub(crate) const MAX_SETS: usize = 4;

/// `crate::search::make_q3_lanes` for an even number `G` (at most `2 * MAX_SETS`) of eight-lane
/// sets of at most [`ROWS`] elements, two sets per register; see `crate::avx2::make_q3_lanes` for
/// why running every lane until no lane changes gives the scalar result.
#[target_feature(enable = "avx512f")]
pub(crate) fn make_q3_lanes<const G: usize>(
    nmax: i32,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
) -> [[f32; LANES]; G] {
    let n = n.min(ROWS);
    let sets = (G / 2).min(MAX_SETS);
    let zero = _mm512_setzero_ps();
    let (lo, hi) = (_mm512_set1_epi32(-nmax), _mm512_set1_epi32(nmax - 1));
    // Filled in place, as in `make_qx_lanes`.
    let (mut xr, mut wx) = ([[zero; ROWS]; MAX_SETS], [[zero; ROWS]; MAX_SETS]);
    for h in 0..sets {
        for i in 0..n {
            xr[h][i] = join(&x[2 * h][i], &x[2 * h + 1][i]);
            wx[h][i] = _mm512_mul_ps(_mm512_mul_ps(xr[h][i], xr[h][i]), xr[h][i]);
        }
    }
    let mut amax = [zero; MAX_SETS];
    let mut iscale = [zero; MAX_SETS];
    for h in 0..sets {
        let mut max = zero;
        for &v in xr[h].iter().take(n) {
            let ax = _mm512_abs_ps(v);
            let bigger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax[h]);
            amax[h] = _mm512_mask_blend_ps(bigger, amax[h], ax);
            max = _mm512_mask_blend_ps(bigger, max, v);
        }
        iscale[h] = _mm512_div_ps(_mm512_set1_ps(-(nmax as f32)), max);
    }
    let mut l = [[zero; ROWS]; MAX_SETS];
    for h in 0..sets {
        for i in 0..n {
            l[h][i] = nearest_clamped(_mm512_mul_ps(iscale[h], xr[h][i]), lo, hi);
        }
    }
    let (mut sumlx, mut suml2) = ([zero; MAX_SETS], [zero; MAX_SETS]);
    for h in 0..sets {
        for i in 0..n {
            let v = xr[h][i];
            let w = _mm512_mul_ps(v, v);
            sumlx[h] = _mm512_add_ps(sumlx[h], _mm512_mul_ps(wx[h][i], l[h][i]));
            suml2[h] = _mm512_add_ps(suml2[h], _mm512_mul_ps(_mm512_mul_ps(w, l[h][i]), l[h][i]));
        }
    }
    for _ in 0..5 {
        let mut changed: __mmask16 = 0;
        for i in 0..n {
            for h in 0..sets {
                let v = xr[h][i];
                let w = _mm512_mul_ps(v, v);
                let li = l[h][i];
                let slx_without = _mm512_sub_ps(sumlx[h], _mm512_mul_ps(wx[h][i], li));
                let sl2_without = _mm512_sub_ps(suml2[h], _mm512_mul_ps(_mm512_mul_ps(w, li), li));
                let new_l = nearest_clamped(
                    _mm512_div_ps(_mm512_mul_ps(v, sl2_without), slx_without),
                    lo,
                    hi,
                );
                let slx = _mm512_add_ps(slx_without, _mm512_mul_ps(wx[h][i], new_l));
                let sl2 = _mm512_add_ps(sl2_without, _mm512_mul_ps(_mm512_mul_ps(w, new_l), new_l));
                let better = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
                    _mm512_mul_ps(_mm512_mul_ps(slx, slx), suml2[h]),
                    _mm512_mul_ps(_mm512_mul_ps(sumlx[h], sumlx[h]), sl2),
                );
                let accept = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(slx_without, zero)
                    & _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(new_l, li)
                    & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(sl2, zero)
                    & better;
                l[h][i] = _mm512_mask_blend_ps(accept, li, new_l);
                sumlx[h] = _mm512_mask_blend_ps(accept, sumlx[h], slx);
                suml2[h] = _mm512_mask_blend_ps(accept, suml2[h], sl2);
                changed |= accept;
            }
        }
        if changed == 0 {
            break;
        }
    }
    let bias = _mm512_set1_ps(nmax as f32);
    let eps = _mm512_set1_ps(GROUP_MAX_EPS);
    let mut scales = [[0.0f32; LANES]; G];
    for h in 0..sets {
        let all_zero = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax[h], eps);
        for i in 0..n {
            let biased = _mm512_add_ps(l[h][i], bias);
            let level = _mm512_cvttps_epi32(_mm512_mask_blend_ps(all_zero, biased, zero));
            let mut words = [0i32; 2 * LANES];
            // SAFETY: `words` has room for the sixteen ints stored.
            unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), level) };
            for k in 0..LANES {
                levels[2 * h][i][k] = words[k] as u8;
                levels[2 * h + 1][i][k] = words[LANES + k] as u8;
            }
        }
        let scale = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(suml2[h], zero),
            zero,
            _mm512_div_ps(sumlx[h], suml2[h]),
        );
        let scale = _mm512_mask_blend_ps(all_zero, scale, zero);
        let mut out = [0.0f32; 2 * LANES];
        // SAFETY: `out` has room for the sixteen floats stored.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), scale) };
        scales[2 * h].copy_from_slice(&out[..LANES]);
        scales[2 * h + 1].copy_from_slice(&out[LANES..]);
    }
    scales
}

// ---- make_qkx and make_qx, sixteen groups per register ----------------------------------------

use crate::search::QkxSearch;

/// Largest magnitude for which `nearest_int` and round-to-nearest-even agree with room to spare
/// (`nearest_int` is exact below 2^22; its bias then keeps the sum inside one binade).
const ROUND_EXACT_BELOW: f32 = 2_097_152.0;

/// `nearest_int(v).clamp(lo, hi)` for lanes known to satisfy `|v| <= 2^21`: there it equals
/// round-half-even, which one instruction does. `-0.0` results are harmless: `lo` is `+0.0` for
/// the asymmetric searches (`maxps` returns its second operand on equal zeros) and the symmetric
/// ones only add them to sums that cannot be `-0.0`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_clamped(v: __m512, lo: __m512, hi: __m512) -> __m512 {
    let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    _mm512_min_ps(_mm512_max_ps(r, lo), hi)
}

/// The sixteen bytes of a register of small non-negative integer floats, as two eight-lane rows.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_level_pair(level: __m512, low: &mut [u8; LANES], high: &mut [u8; LANES]) {
    let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(level));
    let mut out = [0u8; 2 * LANES];
    // SAFETY: `out` has room for the sixteen bytes stored.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
    low.copy_from_slice(&out[..LANES]);
    high.copy_from_slice(&out[LANES..]);
}

/// A register as its two eight-lane halves.
#[inline]
#[target_feature(enable = "avx512f")]
fn split(v: __m512, low: &mut [f32; LANES], high: &mut [f32; LANES]) {
    let mut out = [0.0f32; 2 * LANES];
    // SAFETY: `out` has room for the sixteen floats stored.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    low.copy_from_slice(&out[..LANES]);
    high.copy_from_slice(&out[LANES..]);
}

/// `-v` per lane (the sign bit flipped, as the scalar negation does).
#[inline]
#[target_feature(enable = "avx512f")]
fn negate(v: __m512) -> __m512 {
    let sign = _mm512_set1_epi32(i32::MIN);
    _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), sign))
}

/// Every lane of `v` not in `ignore` has `|v| <= 2^21` (false for NaN).
#[inline]
#[target_feature(enable = "avx512f")]
fn small(v: __m512, ignore: __mmask16) -> bool {
    let ok = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_abs_ps(v), _mm512_set1_ps(ROUND_EXACT_BELOW));
    ok | ignore == 0xFFFF
}

/// `crate::search::make_qkx_lanes` for an even number `G` (at most `2 * MAX_SETS`) of eight-lane
/// sets of at most 32 elements, two sets per register, the registers interleaved (each step's
/// offset depends on the previous step's choice, so one register alone waits on its own sums).
///
/// Each lane runs the scalar operations in the scalar order. Where a step's rounding inputs are
/// provably small (checked per step from the group's extremes, `v = iscale·(x − min)` being
/// monotonic in `x`), `nearest_int` becomes a single rounding instruction; otherwise the exact
/// bit trick runs.
#[target_feature(enable = "avx512f")]
pub(crate) fn make_qkx_lanes<const G: usize>(
    search: &QkxSearch,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    w: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
    the_min: &mut [[f32; LANES]; G],
) -> [[f32; LANES]; G] {
    let n = n.min(32);
    let sets = (G / 2).min(MAX_SETS);
    let nmax = search.nmax;
    let zero = _mm512_setzero_ps();
    let (lo, hi) = (_mm512_setzero_si512(), _mm512_set1_epi32(nmax));
    let (lo_f, hi_f) = (zero, _mm512_set1_ps(nmax as f32));
    let use_mad = search.use_mad;
    let err = |d: __m512| {
        if use_mad {
            _mm512_abs_ps(d)
        } else {
            _mm512_mul_ps(d, d)
        }
    };
    // Filled in place, as in `make_qx_lanes`.
    let (mut xr, mut wr) = ([[zero; 32]; MAX_SETS], [[zero; 32]; MAX_SETS]);
    for h in 0..sets {
        for i in 0..n {
            xr[h][i] = join(&x[2 * h][i], &x[2 * h + 1][i]);
            wr[h][i] = join(&w[2 * h][i], &w[2 * h + 1][i]);
        }
    }
    let mut min = [zero; MAX_SETS];
    let mut max = [zero; MAX_SETS];
    let mut lowest = [zero; MAX_SETS];
    let mut sum_w = [zero; MAX_SETS];
    let mut sum_x = [zero; MAX_SETS];
    let mut degenerate = [0 as __mmask16; MAX_SETS];
    let mut finite = [true; MAX_SETS];
    let mut iscale = [zero; MAX_SETS];
    let mut scale = [zero; MAX_SETS];
    let mut best = [zero; MAX_SETS];
    let inf = _mm512_set1_ps(f32::INFINITY);
    for h in 0..sets {
        let (mut mn, mut mx) = (xr[h][0], xr[h][0]);
        let mut sw = wr[h][0];
        let mut sx = _mm512_mul_ps(sw, xr[h][0]);
        let mut all_finite: __mmask16 = 0xFFFF;
        for i in 0..n {
            let v = xr[h][i];
            all_finite &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(v), inf);
            if i == 0 {
                continue;
            }
            mn = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, mn), mn, v);
            mx = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, mx), mx, v);
            sw = _mm512_add_ps(sw, wr[h][i]);
            sx = _mm512_add_ps(sx, _mm512_mul_ps(wr[h][i], v));
        }
        lowest[h] = mn;
        mn = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(mn, zero), mn, zero);
        degenerate[h] = if search.degenerate_if_below {
            _mm512_cmp_ps_mask::<_CMP_LE_OQ>(mx, mn)
        } else {
            _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(mx, mn)
        };
        finite[h] = all_finite == 0xFFFF;
        iscale[h] = _mm512_div_ps(_mm512_set1_ps(nmax as f32), _mm512_sub_ps(mx, mn));
        scale[h] = _mm512_div_ps(_mm512_set1_ps(1.0), iscale[h]);
        (min[h], max[h], sum_w[h], sum_x[h]) = (mn, mx, sw, sx);
    }
    let min_at_start = min;
    let (mut kept_iscale, mut kept_min) = (iscale, min);
    for i in 0..n {
        for h in 0..sets {
            let l = nearest_clamped(
                _mm512_mul_ps(iscale[h], _mm512_sub_ps(xr[h][i], min[h])),
                lo,
                hi,
            );
            let diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale[h], l), min[h]), xr[h][i]);
            best[h] = _mm512_add_ps(best[h], _mm512_mul_ps(wr[h][i], err(diff)));
        }
    }
    if search.nstep >= 1 {
        let mut aux = [[zero; 32]; MAX_SETS];
        for step in 0..=search.nstep {
            let num = _mm512_set1_ps(search.rmin + search.rdelta * step as f32 + nmax as f32);
            let mut fast = true;
            for h in 0..sets {
                iscale[h] = _mm512_div_ps(num, _mm512_sub_ps(max[h], min[h]));
                let at_low = _mm512_mul_ps(iscale[h], _mm512_sub_ps(lowest[h], min[h]));
                let at_high = _mm512_mul_ps(iscale[h], _mm512_sub_ps(max[h], min[h]));
                fast &= finite[h] && small(at_low, degenerate[h]) && small(at_high, degenerate[h]);
            }
            let (mut sum_l, mut sum_l2, mut sum_xl) =
                ([zero; MAX_SETS], [zero; MAX_SETS], [zero; MAX_SETS]);
            for i in 0..n {
                for h in 0..sets {
                    let v = _mm512_mul_ps(iscale[h], _mm512_sub_ps(xr[h][i], min[h]));
                    let l = if fast {
                        round_clamped(v, lo_f, hi_f)
                    } else {
                        nearest_clamped(v, lo, hi)
                    };
                    aux[h][i] = l;
                    let wl = _mm512_mul_ps(wr[h][i], l);
                    sum_l[h] = _mm512_add_ps(sum_l[h], wl);
                    sum_l2[h] = _mm512_add_ps(sum_l2[h], _mm512_mul_ps(wl, l));
                    sum_xl[h] = _mm512_add_ps(sum_xl[h], _mm512_mul_ps(wl, xr[h][i]));
                }
            }
            let mut this_scale = [zero; MAX_SETS];
            let mut this_min = [zero; MAX_SETS];
            let mut positive_det = [0 as __mmask16; MAX_SETS];
            for h in 0..sets {
                let det = _mm512_sub_ps(
                    _mm512_mul_ps(sum_w[h], sum_l2[h]),
                    _mm512_mul_ps(sum_l[h], sum_l[h]),
                );
                positive_det[h] = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(det, zero);
                let s = _mm512_div_ps(
                    _mm512_sub_ps(
                        _mm512_mul_ps(sum_w[h], sum_xl[h]),
                        _mm512_mul_ps(sum_x[h], sum_l[h]),
                    ),
                    det,
                );
                let m = _mm512_div_ps(
                    _mm512_sub_ps(
                        _mm512_mul_ps(sum_l2[h], sum_x[h]),
                        _mm512_mul_ps(sum_l[h], sum_xl[h]),
                    ),
                    det,
                );
                let positive_min = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero);
                this_min[h] = _mm512_mask_blend_ps(positive_min, m, zero);
                this_scale[h] =
                    _mm512_mask_blend_ps(positive_min, s, _mm512_div_ps(sum_xl[h], sum_l2[h]));
            }
            let mut cur = [zero; MAX_SETS];
            for i in 0..n {
                for h in 0..sets {
                    let diff = _mm512_sub_ps(
                        _mm512_add_ps(_mm512_mul_ps(this_scale[h], aux[h][i]), this_min[h]),
                        xr[h][i],
                    );
                    cur[h] = _mm512_add_ps(cur[h], _mm512_mul_ps(wr[h][i], err(diff)));
                }
            }
            for h in 0..sets {
                let take = positive_det[h] & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(cur[h], best[h]);
                kept_iscale[h] = _mm512_mask_blend_ps(take, kept_iscale[h], iscale[h]);
                kept_min[h] = _mm512_mask_blend_ps(take, kept_min[h], min[h]);
                best[h] = _mm512_mask_blend_ps(take, best[h], cur[h]);
                scale[h] = _mm512_mask_blend_ps(take, scale[h], this_scale[h]);
                min[h] = _mm512_mask_blend_ps(take, min[h], this_min[h]);
            }
        }
    }
    let mut scales = [[0.0f32; LANES]; G];
    for h in 0..sets {
        for i in 0..n {
            let l = nearest_clamped(
                _mm512_mul_ps(kept_iscale[h], _mm512_sub_ps(xr[h][i], kept_min[h])),
                lo,
                hi,
            );
            let l = _mm512_mask_blend_ps(degenerate[h], l, zero);
            let (low, high) = levels.split_at_mut(2 * h + 1);
            store_level_pair(l, &mut low[2 * h][i], &mut high[0][i]);
        }
        let s = _mm512_mask_blend_ps(degenerate[h], scale[h], zero);
        let m = _mm512_mask_blend_ps(degenerate[h], min[h], min_at_start[h]);
        let (low, high) = scales.split_at_mut(2 * h + 1);
        split(s, &mut low[2 * h], &mut high[0]);
        let (low, high) = the_min.split_at_mut(2 * h + 1);
        split(negate(m), &mut low[2 * h], &mut high[0]);
    }
    scales
}

/// `crate::search::make_qx_lanes` for an even number `G` (at most `2 * MAX_SETS`) of eight-lane
/// sets of at most [`ROWS`] elements, two sets per register. The nineteen candidate scales are
/// independent, so this is throughput-bound: sixteen lanes per instruction, `w·x` computed once
/// (the scalar code's `(w·x)·l` rounds it identically every time), and, when every element is
/// finite, `nearest_int` as one rounding instruction (then `|iscale·x| <= nmax + 1` in every lane
/// whose result is kept).
#[target_feature(enable = "avx512f")]
pub(crate) fn make_qx_lanes<const G: usize>(
    nmax: i32,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    w: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
) -> [[f32; LANES]; G] {
    let n = n.min(ROWS);
    let sets = (G / 2).min(MAX_SETS);
    let zero = _mm512_setzero_ps();
    let inf = _mm512_set1_ps(f32::INFINITY);
    let (lo, hi) = (_mm512_set1_epi32(-nmax), _mm512_set1_epi32(nmax - 1));
    let (lo_f, hi_f) = (
        _mm512_set1_ps(-nmax as f32),
        _mm512_set1_ps((nmax - 1) as f32),
    );
    // Filled in place: built with `array::from_fn`, these went through memory copies that cost
    // more than the clearing.
    let (mut xr, mut wr, mut wx) = (
        [[zero; ROWS]; MAX_SETS],
        [[zero; ROWS]; MAX_SETS],
        [[zero; ROWS]; MAX_SETS],
    );
    for h in 0..sets {
        for i in 0..n {
            xr[h][i] = join(&x[2 * h][i], &x[2 * h + 1][i]);
            wr[h][i] = join(&w[2 * h][i], &w[2 * h + 1][i]);
            wx[h][i] = _mm512_mul_ps(wr[h][i], xr[h][i]);
        }
    }
    let mut max = [zero; MAX_SETS];
    let mut amax = [zero; MAX_SETS];
    let mut fast = true;
    for h in 0..sets {
        let mut finite: __mmask16 = 0xFFFF;
        for &v in xr[h].iter().take(n) {
            let ax = _mm512_abs_ps(v);
            finite &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, inf);
            let bigger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax[h]);
            amax[h] = _mm512_mask_blend_ps(bigger, amax[h], ax);
            max[h] = _mm512_mask_blend_ps(bigger, max[h], v);
        }
        fast &= finite == 0xFFFF;
    }
    // The first candidate (`-nmax / max`, the numerator of step 0), then steps -9..=9 without 0,
    // in one loop: the sums were a closure LLVM did not inline, its results passing through memory.
    let mut iscale = [zero; MAX_SETS];
    let mut chosen = iscale;
    let (mut scale, mut best) = ([zero; MAX_SETS], [zero; MAX_SETS]);
    for step in std::iter::once(0).chain((-9..=9).filter(|&s| s != 0)) {
        let num = _mm512_set1_ps(-(nmax as f32 + 0.1f32 * step as f32));
        for h in 0..sets {
            iscale[h] = _mm512_div_ps(num, max[h]);
        }
        let (mut sumlx, mut suml2) = ([zero; MAX_SETS], [zero; MAX_SETS]);
        for i in 0..n {
            for h in 0..sets {
                let v = _mm512_mul_ps(iscale[h], xr[h][i]);
                let l = if fast {
                    round_clamped(v, lo_f, hi_f)
                } else {
                    nearest_clamped(v, lo, hi)
                };
                sumlx[h] = _mm512_add_ps(sumlx[h], _mm512_mul_ps(wx[h][i], l));
                suml2[h] = _mm512_add_ps(suml2[h], _mm512_mul_ps(_mm512_mul_ps(wr[h][i], l), l));
            }
        }
        for h in 0..sets {
            if step == 0 {
                chosen[h] = iscale[h];
                let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(suml2[h], zero);
                scale[h] = _mm512_mask_blend_ps(nonzero, zero, _mm512_div_ps(sumlx[h], suml2[h]));
                best[h] = _mm512_mul_ps(scale[h], sumlx[h]);
                continue;
            }
            let better = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(suml2[h], zero)
                & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
                    _mm512_mul_ps(sumlx[h], sumlx[h]),
                    _mm512_mul_ps(best[h], suml2[h]),
                );
            chosen[h] = _mm512_mask_blend_ps(better, chosen[h], iscale[h]);
            scale[h] = _mm512_mask_blend_ps(better, scale[h], _mm512_div_ps(sumlx[h], suml2[h]));
            best[h] = _mm512_mask_blend_ps(better, best[h], _mm512_mul_ps(scale[h], sumlx[h]));
        }
    }
    let eps = _mm512_set1_ps(GROUP_MAX_EPS);
    let bias = _mm512_set1_ps(nmax as f32);
    let mut scales = [[0.0f32; LANES]; G];
    for h in 0..sets {
        let all_zero = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax[h], eps);
        for i in 0..n {
            let l = nearest_clamped(_mm512_mul_ps(chosen[h], xr[h][i]), lo, hi);
            // The bias is added before the zero-group selection: a zero group stores 0, not nmax.
            let l = _mm512_mask_blend_ps(all_zero, _mm512_add_ps(l, bias), zero);
            let (low, high) = levels.split_at_mut(2 * h + 1);
            store_level_pair(l, &mut low[2 * h][i], &mut high[0][i]);
        }
        let s = _mm512_mask_blend_ps(all_zero, scale[h], zero);
        let (low, high) = scales.split_at_mut(2 * h + 1);
        split(s, &mut low[2 * h], &mut high[0]);
    }
    scales
}

/// A super-block's sixteen groups of sixteen elements (`x[16 j + l]`) transposed for the lane
/// searches: group `j` in lane `j % 8` of set `j / 8` (`xt[j / 8][l][j % 8]`), and the weights
/// the same way into `wt` if given, from `qw` or, without it, `x²` (the scalar code's `x * x`,
/// one product per element).
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose_groups16(
    x: &[f32],
    qw: Option<&[f32]>,
    xt: &mut [[[f32; LANES]; 32]; 2],
    mut wt: Option<&mut [[[f32; LANES]; 32]; 2]>,
) {
    assert!(x.len() >= 256 && qw.is_none_or(|q| q.len() >= 256));
    let columns = _mm512_setr_epi32(
        0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
    );
    let store = |v: __m512, low: &mut [f32; LANES], high: &mut [f32; LANES]| {
        let upper = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        // SAFETY: each row holds the eight floats stored.
        unsafe {
            _mm256_storeu_ps(low.as_mut_ptr(), _mm512_castps512_ps256(v));
            _mm256_storeu_ps(high.as_mut_ptr(), upper);
        }
    };
    let (xlow, xhigh) = xt.split_at_mut(1);
    for l in 0..16 {
        let at = _mm512_add_epi32(columns, _mm512_set1_epi32(l as i32));
        // SAFETY: the offsets reach at most element 255 of `x` (and of `qw`), asserted above.
        let v = unsafe { _mm512_i32gather_ps::<4>(at, x.as_ptr()) };
        store(v, &mut xlow[0][l], &mut xhigh[0][l]);
        let Some(wt) = wt.as_deref_mut() else {
            continue;
        };
        let w = match qw {
            // SAFETY: as above.
            Some(q) => unsafe { _mm512_i32gather_ps::<4>(at, q.as_ptr()) },
            None => _mm512_mul_ps(v, v),
        };
        let (wlow, whigh) = wt.split_at_mut(1);
        store(w, &mut wlow[0][l], &mut whigh[0][l]);
    }
}
