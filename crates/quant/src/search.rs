//! The scale searches of ggml's quantizers, in ggml's exact operation order.
//!
//! Each returns the chosen scale and writes the unsigned level of every element into `levels`.
//! Sums are sequential binary32 accumulations in index order; products are evaluated left to
//! right exactly as the C expressions are (`w*x*l` is `(w*x)*l`).

use crate::common::{c_max, nearest_int};

/// Below this magnitude a group counts as all-zero (ggml's `GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// The largest-magnitude element (first one on ties) and its magnitude.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric levels in `-nmax..nmax` with a weighted least-squares scale search over 19 candidate
/// scales (`make_qx_quants` with `rmse_type == 1`, the only form ggml's quantizers use).
/// `weights` defaults to `x²`.
pub(crate) fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    levels: &mut [u8],
    weights: Option<&[f32]>,
) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels[..x.len()].fill(0);
        return 0.0;
    }
    let weight = |i: usize| weights.map_or(x[i] * x[i], |w| w[i]);
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for (i, &v) in x.iter().enumerate() {
            let l = level(iscale, v) as f32;
            let w = weight(i);
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (i, &v) in x.iter().enumerate() {
        levels[i] = (level(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in -9..=9 {
        if step == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1f32 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &v) in x.iter().enumerate() {
                levels[i] = (level(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's search: symmetric levels, then up to five rounds of coordinate descent on `x²`-weighted
/// error (`make_q3_quants` with `do_rmse`). At most 32 elements.
pub(crate) fn make_q3_quants(nmax: i32, x: &[f32], levels: &mut [u8]) -> f32 {
    let n = x.len();
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l_signed = [0i32; 32];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_signed[i] = l;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l_signed[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l_signed[i] {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_signed[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for i in 0..n {
        levels[i] = (l_signed[i] + nmax) as u8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// [`make_q3_quants`] for `G` sets of [`LANES`] independent groups at once, transposed
/// (`x[set][i][lane]`).
pub(crate) fn make_q3_lanes<const G: usize>(
    nmax: i32,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
) -> [[f32; LANES]; G] {
    #[cfg(target_arch = "x86_64")]
    if G.is_multiple_of(2)
        && G <= 2 * crate::avx512::MAX_SETS
        && n <= crate::avx512::ROWS
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { crate::avx512::make_q3_lanes(nmax, n, x, levels) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { crate::avx2::make_q3_lanes(nmax, n, x, levels) };
    }
    make_q3_lanes_portable(nmax, n, x, levels)
}

/// The portable form of [`make_q3_lanes`]: the scalar search on each group in turn.
fn make_q3_lanes_portable<const G: usize>(
    nmax: i32,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
) -> [[f32; LANES]; G] {
    let mut scales = [[0.0f32; LANES]; G];
    for g in 0..G {
        for k in 0..LANES {
            let (mut group, mut l) = ([0.0f32; 32], [0u8; 32]);
            for i in 0..n {
                group[i] = x[g][i][k];
            }
            scales[g][k] = make_q3_quants(nmax, &group[..n], &mut l);
            for i in 0..n {
                levels[g][i][k] = l[i];
            }
        }
    }
    scales
}

/// Asymmetric levels in `0..=nmax` with a scale and a minimum (`make_qkx2_quants`, and with
/// `degenerate_if_below` the `max <= min` test of `make_qkx3_quants`). Returns the scale; the
/// (non-negative) offset goes to `the_min`. At most 32 elements.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    the_min: &mut f32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    degenerate_if_below: bool,
) -> f32 {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    let degenerate = if degenerate_if_below {
        max <= min
    } else {
        max == min
    };
    if degenerate {
        levels[..n].fill(0);
        *the_min = -min;
        return 0.0;
    }
    let error = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * error(diff);
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    let mut aux = [0u8; 32];
    for step in 0..=nstep {
        iscale = (rmin + rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * error(diff);
            }
            if cur_error < best_error {
                levels[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// Non-negative levels in `0..=nmax` for a set of non-negative values, used to quantize the
/// sub-block scales of the k-quants when an importance matrix is given (`make_qp_quants`).
/// At most 32 elements.
pub(crate) fn make_qp_quants(nmax: i32, x: &[f32], levels: &mut [u8], weights: &[f32]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    for &v in x {
        max = c_max(max, v);
    }
    if max < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..n {
        levels[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * levels[i] as f32;
        best_mse += weights[i] * diff * diff;
    }
    for step in -4..=4 {
        if step == 0 {
            continue;
        }
        let iscale_step = (0.1f32 * step as f32 + nmax as f32) / max;
        let scale_step = 1.0 / iscale_step;
        let mut mse = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale_step * x[i]).min(nmax);
            let diff = x[i] - scale_step * l as f32;
            mse += weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_step;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        levels[i] = l as u8;
        let w = weights[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let w = weights[i];
            let li = levels[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(levels[i]) {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Number of independent groups searched side by side by the `*_lanes` functions.
pub(crate) const LANES: usize = 8;

/// [`make_qkx_quants`] for [`LANES`] independent groups at once, transposed (`x[i][lane]`).
///
/// Every lane performs exactly the scalar function's operations in the same order (the sums run
/// over `i` within each lane), so the results are bit-identical; only the loop nesting changes,
/// which breaks the serial dependency chains and lets LLVM use one SIMD lane per group.
#[allow(clippy::too_many_arguments)]
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe {
            crate::avx2::make_qkx_lanes(
                nmax,
                n,
                x,
                w,
                levels,
                the_min,
                rmin,
                rdelta,
                nstep,
                use_mad,
                degenerate_if_below,
            )
        };
    }
    make_qkx_lanes_portable(
        nmax,
        n,
        x,
        w,
        levels,
        the_min,
        rmin,
        rdelta,
        nstep,
        use_mad,
        degenerate_if_below,
    )
}

/// The parameters of an asymmetric search ([`make_qkx_quants`]), as its callers fix them.
#[derive(Clone, Copy)]
pub(crate) struct QkxSearch {
    /// Largest level.
    pub(crate) nmax: i32,
    /// Offset of the first candidate scale's numerator from `nmax`.
    pub(crate) rmin: f32,
    /// Step between candidate numerators.
    pub(crate) rdelta: f32,
    /// Number of steps after the first candidate (none when below 1).
    pub(crate) nstep: i32,
    /// Absolute instead of squared error.
    pub(crate) use_mad: bool,
    /// `make_qkx3_quants`' `max <= min` degenerate test instead of `max == min`.
    pub(crate) degenerate_if_below: bool,
}

/// [`make_qkx_lanes`] for `G` sets of [`LANES`] groups (`x[set][i][lane]`): sixteen lanes per
/// register, several registers interleaved, where the CPU has AVX-512 and `G` is even (measured
/// faster than the eight-lane form); otherwise set by set.
pub(crate) fn make_qkx_lane_sets<const G: usize>(
    search: &QkxSearch,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    w: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
    the_min: &mut [[f32; LANES]; G],
) -> [[f32; LANES]; G] {
    #[cfg(target_arch = "x86_64")]
    if G.is_multiple_of(2)
        && G <= 2 * crate::avx512::MAX_SETS
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { crate::avx512::make_qkx_lanes(search, n, x, w, levels, the_min) };
    }
    let mut scales = [[0.0f32; LANES]; G];
    for g in 0..G {
        scales[g] = make_qkx_lanes(
            search.nmax,
            n,
            &x[g],
            &w[g],
            &mut levels[g],
            &mut the_min[g],
            search.rmin,
            search.rdelta,
            search.nstep,
            search.use_mad,
            search.degenerate_if_below,
        );
    }
    scales
}

/// The portable form of [`make_qkx_lanes`] (plain arrays that LLVM vectorizes as it can).
#[allow(clippy::too_many_arguments)]
fn make_qkx_lanes_portable(
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
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w[0];
    let mut sum_x = [0.0f32; LANES];
    for k in 0..LANES {
        sum_x[k] = sum_w[k] * x[0][k];
    }
    for i in 1..n {
        for k in 0..LANES {
            let v = x[i][k];
            if v < min[k] {
                min[k] = v;
            }
            if v > max[k] {
                max[k] = v;
            }
            sum_w[k] += w[i][k];
            sum_x[k] += w[i][k] * v;
        }
    }
    let mut degenerate = [false; LANES];
    let mut iscale = [0.0f32; LANES];
    let mut scale = [0.0f32; LANES];
    let mut best = [0.0f32; LANES];
    for k in 0..LANES {
        if min[k] > 0.0 {
            min[k] = 0.0;
        }
        degenerate[k] = if degenerate_if_below {
            max[k] <= min[k]
        } else {
            max[k] == min[k]
        };
        iscale[k] = nmax as f32 / (max[k] - min[k]);
        scale[k] = 1.0 / iscale[k];
    }
    let min_at_start = min;
    for i in 0..n {
        for k in 0..LANES {
            let l = nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax);
            levels[i][k] = l as u8;
            let diff = scale[k] * l as f32 + min[k] - x[i][k];
            best[k] += w[i][k] * err(diff);
        }
    }
    if nstep >= 1 {
        let mut aux = [[0u8; LANES]; 32];
        for step in 0..=nstep {
            let num = rmin + rdelta * step as f32 + nmax as f32;
            let (mut sum_l, mut sum_l2, mut sum_xl) =
                ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
            for k in 0..LANES {
                iscale[k] = num / (max[k] - min[k]);
            }
            for i in 0..n {
                for k in 0..LANES {
                    let l = nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax);
                    aux[i][k] = l as u8;
                    let (wl, lf) = (w[i][k], l as f32);
                    sum_l[k] += wl * lf;
                    sum_l2[k] += wl * lf * lf;
                    sum_xl[k] += wl * lf * x[i][k];
                }
            }
            let mut this_scale = [0.0f32; LANES];
            let mut this_min = [0.0f32; LANES];
            let mut det = [0.0f32; LANES];
            for k in 0..LANES {
                det[k] = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
                this_scale[k] = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / det[k];
                this_min[k] = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / det[k];
                if this_min[k] > 0.0 {
                    this_min[k] = 0.0;
                    this_scale[k] = sum_xl[k] / sum_l2[k];
                }
            }
            let mut cur = [0.0f32; LANES];
            for i in 0..n {
                for k in 0..LANES {
                    let diff = this_scale[k] * aux[i][k] as f32 + this_min[k] - x[i][k];
                    cur[k] += w[i][k] * err(diff);
                }
            }
            let mut take = [false; LANES];
            for k in 0..LANES {
                take[k] = det[k] > 0.0 && cur[k] < best[k];
                if take[k] {
                    best[k] = cur[k];
                    scale[k] = this_scale[k];
                    min[k] = this_min[k];
                }
            }
            for i in 0..n {
                for k in 0..LANES {
                    if take[k] {
                        levels[i][k] = aux[i][k];
                    }
                }
            }
        }
    }
    for k in 0..LANES {
        if degenerate[k] {
            for row in levels.iter_mut().take(n) {
                row[k] = 0;
            }
            scale[k] = 0.0;
            min[k] = min_at_start[k];
        }
        the_min[k] = -min[k];
    }
    scale
}

/// [`make_qx_quants`] (`rmse_type == 1`) for [`LANES`] independent groups at once, transposed,
/// with the weights given explicitly (`x²` when the caller has no importance matrix).
///
/// Bit-identical per lane: the scalar function's levels depend only on the scale it finally keeps,
/// so the lanes remember that scale and derive the levels once at the end.
pub(crate) fn make_qx_lanes(
    nmax: i32,
    n: usize,
    x: &[[f32; LANES]; 32],
    w: &[[f32; LANES]; 32],
    levels: &mut [[u8; LANES]; 32],
) -> [f32; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { crate::avx2::make_qx_lanes(nmax, n, x, w, levels) };
    }
    make_qx_lanes_portable(nmax, n, x, w, levels)
}

/// [`make_qx_lanes`] for `G` sets of [`LANES`] groups of at most 16 elements: sixteen lanes per
/// register where the CPU has AVX-512 and `G` is even (measured faster); otherwise set by set.
pub(crate) fn make_qx_lane_sets<const G: usize>(
    nmax: i32,
    n: usize,
    x: &[[[f32; LANES]; 32]; G],
    w: &[[[f32; LANES]; 32]; G],
    levels: &mut [[[u8; LANES]; 32]; G],
) -> [[f32; LANES]; G] {
    #[cfg(target_arch = "x86_64")]
    if G.is_multiple_of(2)
        && G <= 2 * crate::avx512::MAX_SETS
        && n <= crate::avx512::ROWS
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { crate::avx512::make_qx_lanes(nmax, n, x, w, levels) };
    }
    let mut scales = [[0.0f32; LANES]; G];
    for g in 0..G {
        scales[g] = make_qx_lanes(nmax, n, &x[g], &w[g], &mut levels[g]);
    }
    scales
}

/// The portable form of [`make_qx_lanes`].
fn make_qx_lanes_portable(
    nmax: i32,
    n: usize,
    x: &[[f32; LANES]; 32],
    w: &[[f32; LANES]; 32],
    levels: &mut [[u8; LANES]; 32],
) -> [f32; LANES] {
    let (mut max, mut amax) = ([0.0f32; LANES], [0.0f32; LANES]);
    for row in x.iter().take(n) {
        for k in 0..LANES {
            let ax = row[k].abs();
            if ax > amax[k] {
                amax[k] = ax;
                max[k] = row[k];
            }
        }
    }
    let sums = |iscale: &[f32; LANES]| {
        let (mut sumlx, mut suml2) = ([0.0f32; LANES], [0.0f32; LANES]);
        for i in 0..n {
            for k in 0..LANES {
                let l = nearest_int(iscale[k] * x[i][k]).clamp(-nmax, nmax - 1) as f32;
                sumlx[k] += w[i][k] * x[i][k] * l;
                suml2[k] += w[i][k] * l * l;
            }
        }
        (sumlx, suml2)
    };
    let mut iscale = [0.0f32; LANES];
    for k in 0..LANES {
        iscale[k] = -(nmax as f32) / max[k];
    }
    let mut chosen = iscale;
    let (sumlx, suml2) = sums(&iscale);
    let (mut scale, mut best) = ([0.0f32; LANES], [0.0f32; LANES]);
    for k in 0..LANES {
        scale[k] = if suml2[k] != 0.0 {
            sumlx[k] / suml2[k]
        } else {
            0.0
        };
        best[k] = scale[k] * sumlx[k];
    }
    for step in -9..=9 {
        if step == 0 {
            continue;
        }
        let num = nmax as f32 + 0.1f32 * step as f32;
        for k in 0..LANES {
            iscale[k] = -num / max[k];
        }
        let (sumlx, suml2) = sums(&iscale);
        for k in 0..LANES {
            if suml2[k] > 0.0 && sumlx[k] * sumlx[k] > best[k] * suml2[k] {
                chosen[k] = iscale[k];
                scale[k] = sumlx[k] / suml2[k];
                best[k] = scale[k] * sumlx[k];
            }
        }
    }
    for i in 0..n {
        for k in 0..LANES {
            levels[i][k] = if amax[k] < GROUP_MAX_EPS {
                0
            } else {
                (nearest_int(chosen[k] * x[i][k]).clamp(-nmax, nmax - 1) + nmax) as u8
            };
        }
    }
    for k in 0..LANES {
        if amax[k] < GROUP_MAX_EPS {
            scale[k] = 0.0;
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups that exercise every branch: normal, all-zero, constant, tiny, huge, ties, NaN/Inf.
    fn groups(seed: u64, n: usize) -> Vec<Vec<f32>> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut out = Vec::new();
        for kind in 0..24 {
            out.push(
                (0..n)
                    .map(|i| match kind % 8 {
                        0 => 0.0,
                        1 => 0.25,
                        2 => next() * 1e-30,
                        3 => next() * 1e30,
                        4 => (i as f32 - 8.0) * 0.5,
                        5 if i == 3 => f32::NAN,
                        6 if i == 5 => f32::INFINITY,
                        _ => next(),
                    })
                    .collect(),
            );
        }
        out
    }

    fn transpose(gs: &[Vec<f32>], n: usize) -> [[f32; LANES]; 32] {
        let mut t = [[0.0f32; LANES]; 32];
        for (k, g) in gs.iter().enumerate() {
            for i in 0..n {
                t[i][k] = g[i];
            }
        }
        t
    }

    #[test]
    fn paired_q3_lane_sets_equal_the_scalar_search() {
        // Even set counts take the AVX-512 path where the CPU has it (odd ones AVX2, tested below).
        for n in [16usize, 32] {
            let all = groups(0x5EED + n as u64, n);
            let xt = [
                transpose(&all[..LANES], n),
                transpose(&all[LANES..2 * LANES], n),
            ];
            type Form = fn(
                i32,
                usize,
                &[[[f32; LANES]; 32]; 2],
                &mut [[[u8; LANES]; 32]; 2],
            ) -> [[f32; LANES]; 2];
            let mut forms: Vec<Form> = vec![make_q3_lanes::<2>, make_q3_lanes_portable::<2>];
            // The AVX2 form too, which this dispatch skips on an AVX-512 CPU.
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                forms.push(|nmax, n, x, levels| {
                    // SAFETY: the CPU supports AVX2 (checked above).
                    unsafe { crate::avx2::make_q3_lanes(nmax, n, x, levels) }
                });
            }
            for form in forms {
                let mut lt = [[[0u8; LANES]; 32]; 2];
                let sc = form(4, n, &xt, &mut lt);
                for (idx, g) in all[..2 * LANES].iter().enumerate() {
                    let (set, k) = (idx / LANES, idx % LANES);
                    let mut l = [0u8; 32];
                    let s1 = make_q3_quants(4, g, &mut l);
                    assert_eq!(s1.to_bits(), sc[set][k].to_bits(), "q3 set {set} lane {k}");
                    assert!((0..n).all(|i| l[i] == lt[set][i][k]), "q3 levels {set}/{k}");
                }
            }
        }
    }

    /// Eight sets of eight groups from `groups`, padded by repeating, transposed.
    fn sets(all: &[Vec<f32>], n: usize) -> [[[f32; LANES]; 32]; 8] {
        std::array::from_fn(|s| {
            let gs: Vec<Vec<f32>> = (0..LANES)
                .map(|k| all[(s * LANES + k) % all.len()].clone())
                .collect();
            transpose(&gs, n)
        })
    }

    /// More adversarial groups for the sixteen-lane forms: rounding ties at every level, equal
    /// extremes of opposite sign, negative-only and positive-only groups, a single non-zero value,
    /// values just below the all-zero threshold, and mixtures of huge and tiny magnitudes.
    fn wide_groups(seed: u64, n: usize) -> Vec<Vec<f32>> {
        let mut out = groups(seed, n);
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for kind in 0..40 {
            out.push(
                (0..n)
                    .map(|i| match kind % 10 {
                        0 => (i as f32 - 7.5) * 0.25,
                        1 => [1.0, -1.0][i % 2],
                        2 => -(next().abs() + 0.01),
                        3 => next().abs() + 1.0,
                        4 if i == 5 => 3.0,
                        4 => 0.0,
                        5 => next() * 1.9e-15,
                        6 => [3e30, 1e-30, -2e30, 0.5][i % 4] * (1.0 + next()),
                        7 => ((i * 7) % 16) as f32 / 2.0 - 4.0,
                        8 => [-0.0, 0.0, 2.0, -2.0][i % 4],
                        _ => next() * 40.0,
                    })
                    .collect(),
            );
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_lane_searches_equal_the_scalar_searches_bit_for_bit() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for n in [16usize, 32] {
            for seed in [7u64, 0xDEAD_BEEF, 0x1234_5678_9ABC] {
                let mixed = wide_groups(seed + n as u64, n);
                // Without NaN/±Inf the one-instruction rounding runs (a single such group sends
                // the whole call to the exact rounding).
                let finite: Vec<Vec<f32>> = mixed
                    .iter()
                    .filter(|g| g.iter().all(|v| v.is_finite()))
                    .cloned()
                    .collect();
                for chunk in mixed.chunks(8 * LANES).chain(finite.chunks(8 * LANES)) {
                    let xt = sets(chunk, n);
                    let groups_of =
                        |s: usize, k: usize| chunk[(s * LANES + k) % chunk.len()].clone();
                    let weights =
                        |g: &[f32]| -> Vec<f32> { g.iter().map(|v| v.abs() + 0.3).collect() };
                    let wt: [[[f32; LANES]; 32]; 8] = std::array::from_fn(|s| {
                        let ws: Vec<Vec<f32>> =
                            (0..LANES).map(|k| weights(&groups_of(s, k))).collect();
                        transpose(&ws, n)
                    });
                    for search in [
                        QkxSearch {
                            nmax: 3,
                            rmin: -0.5,
                            rdelta: 0.1,
                            nstep: 15,
                            use_mad: true,
                            degenerate_if_below: false,
                        },
                        QkxSearch {
                            nmax: 15,
                            rmin: -1.0,
                            rdelta: 0.1,
                            nstep: 20,
                            use_mad: false,
                            degenerate_if_below: false,
                        },
                        QkxSearch {
                            nmax: 31,
                            rmin: -0.9,
                            rdelta: 0.05,
                            nstep: 36,
                            use_mad: false,
                            degenerate_if_below: true,
                        },
                    ] {
                        let (mut lt, mut mt) = ([[[0u8; LANES]; 32]; 8], [[0.0f32; LANES]; 8]);
                        // SAFETY: the CPU supports AVX-512F (checked above).
                        let sc = unsafe {
                            crate::avx512::make_qkx_lanes::<8>(
                                &search, n, &xt, &wt, &mut lt, &mut mt,
                            )
                        };
                        for s in 0..8 {
                            for k in 0..LANES {
                                let g = groups_of(s, k);
                                let (mut l, mut m) = ([0u8; 32], 0.0f32);
                                let s1 = make_qkx_quants(
                                    search.nmax,
                                    &g,
                                    &weights(&g),
                                    &mut l,
                                    &mut m,
                                    search.rmin,
                                    search.rdelta,
                                    search.nstep,
                                    search.use_mad,
                                    search.degenerate_if_below,
                                );
                                assert_eq!(
                                    (s1.to_bits(), m.to_bits()),
                                    (sc[s][k].to_bits(), mt[s][k].to_bits()),
                                    "qkx nmax {} set {s} lane {k}: {g:?}",
                                    search.nmax
                                );
                                assert!((0..n).all(|i| l[i] == lt[s][i][k]), "qkx levels {s}/{k}");
                            }
                        }
                    }
                    if n == 16 {
                        for nmax in [4, 32] {
                            let mut lt = [[[0u8; LANES]; 32]; 8];
                            // SAFETY: the CPU supports AVX-512F (checked above).
                            let sc = unsafe {
                                crate::avx512::make_qx_lanes::<8>(nmax, n, &xt, &wt, &mut lt)
                            };
                            for s in 0..8 {
                                for k in 0..LANES {
                                    let g = groups_of(s, k);
                                    let mut l = [0u8; 32];
                                    let s1 = make_qx_quants(nmax, &g, &mut l, Some(&weights(&g)));
                                    assert_eq!(
                                        s1.to_bits(),
                                        sc[s][k].to_bits(),
                                        "qx {nmax} {s}/{k}: {g:?}"
                                    );
                                    assert!(
                                        (0..n).all(|i| l[i] == lt[s][i][k]),
                                        "qx levels {s}/{k}"
                                    );
                                }
                            }
                        }
                    }
                    // The dispatching forms with two sets (one register) and with odd counts.
                    let x2 = [xt[0], xt[1]];
                    let w2 = [wt[0], wt[1]];
                    let search = QkxSearch {
                        nmax: 15,
                        rmin: -1.0,
                        rdelta: 0.1,
                        nstep: 20,
                        use_mad: false,
                        degenerate_if_below: false,
                    };
                    let (mut l2, mut m2) = ([[[0u8; LANES]; 32]; 2], [[0.0f32; LANES]; 2]);
                    let s2 = make_qkx_lane_sets::<2>(&search, n, &x2, &w2, &mut l2, &mut m2);
                    let (mut l1, mut m1) = ([[[0u8; LANES]; 32]; 1], [[0.0f32; LANES]; 1]);
                    for s in 0..2 {
                        let s1 = make_qkx_lane_sets::<1>(
                            &search,
                            n,
                            &[x2[s]],
                            &[w2[s]],
                            &mut l1,
                            &mut m1,
                        );
                        assert_eq!(s1[0].map(f32::to_bits), s2[s].map(f32::to_bits));
                        assert_eq!(m1[0].map(f32::to_bits), m2[s].map(f32::to_bits));
                        assert_eq!(l1[0], l2[s]);
                    }
                    if n == 16 {
                        let mut lq2 = [[[0u8; LANES]; 32]; 2];
                        let q2 = make_qx_lane_sets::<2>(32, n, &x2, &w2, &mut lq2);
                        for s in 0..2 {
                            let mut lq1 = [[[0u8; LANES]; 32]; 1];
                            let q1 = make_qx_lane_sets::<1>(32, n, &[x2[s]], &[w2[s]], &mut lq1);
                            assert_eq!(q1[0].map(f32::to_bits), q2[s].map(f32::to_bits));
                            assert_eq!(lq1[0], lq2[s]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lane_searches_equal_the_scalar_searches_bit_for_bit() {
        for n in [16usize, 32] {
            let all = groups(0x1234_5678 + n as u64, n);
            for gs in all.chunks(LANES) {
                let xt = transpose(gs, n);
                let ws: Vec<Vec<f32>> = gs
                    .iter()
                    .map(|g| g.iter().map(|v| v.abs() + 0.3).collect())
                    .collect();
                let wt = transpose(&ws, n);
                let (mut lt, mut mt) = ([[0u8; LANES]; 32], [0.0f32; LANES]);
                for (nmax, use_mad, below) in
                    [(3, true, false), (15, false, false), (31, false, true)]
                {
                    for form in [make_qkx_lanes, make_qkx_lanes_portable] {
                        let sc = form(
                            nmax, n, &xt, &wt, &mut lt, &mut mt, -0.5, 0.1, 15, use_mad, below,
                        );
                        for (k, g) in gs.iter().enumerate() {
                            let (mut l, mut m) = ([0u8; 32], 0.0f32);
                            let s1 = make_qkx_quants(
                                nmax, g, &ws[k], &mut l, &mut m, -0.5, 0.1, 15, use_mad, below,
                            );
                            assert_eq!(
                                (s1.to_bits(), m.to_bits()),
                                (sc[k].to_bits(), mt[k].to_bits()),
                                "qkx lane {k}"
                            );
                            assert!((0..n).all(|i| l[i] == lt[i][k]), "qkx levels lane {k}");
                        }
                    }
                }
                for form in [make_q3_lanes::<1>, make_q3_lanes_portable::<1>] {
                    let mut l3 = [lt];
                    let [sc] = form(4, n, &[xt], &mut l3);
                    for (k, g) in gs.iter().enumerate() {
                        let mut l = [0u8; 32];
                        let s1 = make_q3_quants(4, g, &mut l);
                        assert_eq!(s1.to_bits(), sc[k].to_bits(), "q3 lane {k}");
                        assert!((0..n).all(|i| l[i] == l3[0][i][k]), "q3 levels lane {k}");
                    }
                }
                for form in [make_qx_lanes, make_qx_lanes_portable] {
                    let sc = form(32, n, &xt, &wt, &mut lt);
                    for (k, g) in gs.iter().enumerate() {
                        let mut l = [0u8; 32];
                        let s1 = make_qx_quants(32, g, &mut l, Some(&ws[k]));
                        assert_eq!(s1.to_bits(), sc[k].to_bits(), "qx lane {k}");
                        assert!((0..n).all(|i| l[i] == lt[i][k]), "qx levels lane {k}");
                    }
                }
            }
        }
    }
}
