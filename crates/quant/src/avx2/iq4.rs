//! IQ4's block scales for eight blocks at once, one per lane (the portable form and the dispatch
//! are in `crate::iq4`).

use std::arch::x86_64::*;

use super::common::{lanes, row, select};
use crate::search::LANES;

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
