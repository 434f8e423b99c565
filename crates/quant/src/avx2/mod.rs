//! Hand-written AVX2 kernels for the paths LLVM cannot vectorize from the scalar code: the
//! no-imatrix Q4_0, Q4_1, Q5_0 and Q5_1 rows (one block at a time, eight elements per register).
//!
//! Bit-exactness rests on three facts. Every float operation is the same IEEE binary32 operation
//! the scalar code performs on each element (multiply, then add: never fused). `cvttps2dq` is the
//! very instruction behind C's float→int casts on x86-64, "integer indefinite" results included.
//! And the reductions (absmax, min, max) are exact whatever their order; where the scalar loop's
//! "first element wins" rule could pick a different zero (+0.0 or -0.0) or a different
//! equal-magnitude element, the first matching element is looked up explicitly.
//!
//! The kernels, by family. Each kernel is called from one place, the dispatch in the portable
//! module it speeds up: `is_x86_feature_detected!` there picks the AVX-512 form where one exists
//! (`crate::avx512`), else this one, else the portable code.
//!
//! - [`legacy`]: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 without an imatrix (`crate::legacy`);
//! - [`search`]: the eight-lane scale searches (`crate::search`);
//! - [`iq4`]: IQ4's block scales, eight blocks at a time (`crate::iq4`);
//! - [`ternary`]: TQ1_0 and TQ2_0 (`crate::ternary`);
//! - [`kquants`]: the k-quants' final requantization (`crate::kquants`);
//! - [`common`]: the register helpers they share.

mod common;
mod iq4;
mod kquants;
mod legacy;
mod search;
mod ternary;

pub(crate) use iq4::iq4_block_scales;
pub(crate) use kquants::requantize_groups;
pub(crate) use legacy::{
    quantize_q4_0, quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_q8_0,
};
pub(crate) use search::{make_q3_lanes, make_qkx_lanes, make_qx_lanes};
pub(crate) use ternary::{quantize_tq1_0, quantize_tq2_0};

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
