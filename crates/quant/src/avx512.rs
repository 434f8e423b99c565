//! AVX-512 forms of the searches that stay latency-bound in AVX2: sixteen groups per register.
//!
//! The same rules as `avx2.rs`: every lane runs the scalar operations in the scalar order (no
//! fused multiply-add; `avx512f` brings none unless asked for), so the bytes do not change.

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
    // Built in place (no zero-filled scratch: clearing it cost more than the setup itself).
    let xr: [[__m512; ROWS]; MAX_SETS] = std::array::from_fn(|h| {
        std::array::from_fn(|i| {
            if h < sets && i < n {
                join(&x[2 * h][i], &x[2 * h + 1][i])
            } else {
                zero
            }
        })
    });
    let wx: [[__m512; ROWS]; MAX_SETS] = std::array::from_fn(|h| {
        std::array::from_fn(|i| _mm512_mul_ps(_mm512_mul_ps(xr[h][i], xr[h][i]), xr[h][i]))
    });
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
    let mut l: [[__m512; ROWS]; MAX_SETS] = std::array::from_fn(|h| {
        std::array::from_fn(|i| nearest_clamped(_mm512_mul_ps(iscale[h], xr[h][i]), lo, hi))
    });
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
