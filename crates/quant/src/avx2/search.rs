//! The eight-lane scale searches in AVX2 registers, one group per lane (the portable forms and the
//! dispatch are in `crate::search`).

use std::arch::x86_64::*;

use super::common::{lanes, nearest_clamped, row, select, store_levels};
use crate::search::LANES;

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
