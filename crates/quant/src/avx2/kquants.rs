//! The k-quants' final requantization, eight elements per step (the portable form and the
//! dispatch are in `crate::kquants`).

use std::arch::x86_64::*;

use super::common::{nearest_clamped, store_levels};

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
