//! IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks): 4-bit indices into a
//! non-linear table, always through ggml's `quantize_row_iq4_nl_impl` with 7 scale retries (the
//! path `ggml_quantize_chunk` takes with and without an importance matrix).

use crate::common::{f16_bits_to_f32 as h2f, f32_to_f16_bits as f16, nearest_int};
use crate::search::{GROUP_MAX_EPS, LANES};

/// ggml's `kvalues_iq4nl`.
pub(crate) const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];
pub(crate) const NTRY: i32 = 7;

/// Index of the table value nearest to `x`; ties go to the upper index, NaN gives 15 (ggml's
/// `best_index_int8`). Written without the binary search's branches: the upper neighbour's index
/// is the count of table values not above `x`, and the same two differences decide.
#[inline(always)]
fn best_index(x: f32) -> usize {
    const V: [f32; 16] = {
        let mut t = [0.0f32; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = KVALUES[i] as f32;
            i += 1;
        }
        t
    };
    if x <= V[0] {
        return 0;
    }
    if x >= V[15] || x.is_nan() {
        return 15;
    }
    let mut upper = 0usize;
    for v in V {
        upper += usize::from(v <= x);
    }
    // 1 <= upper <= 15 here, as V[0] < x < V[15].
    if x - V[upper - 1] < V[upper] - x {
        upper - 1
    } else {
        upper
    }
}

/// The per-element weights of one 32-element block: `qw * sqrt(sigma2 + x²)` with an importance
/// matrix, `x²` without.
fn block_weights(xb: &[f32], qw: Option<&[f32]>, sigma2: f32) -> [f32; 32] {
    let mut weight = [0.0f32; 32];
    for j in 0..32 {
        weight[j] = match qw {
            Some(q) => q[j] * (sigma2 + xb[j] * xb[j]).sqrt(),
            None => xb[j] * xb[j],
        };
    }
    weight
}

/// `2/n · Σx²` over a super-block.
fn super_block_sigma2(x: &[f32]) -> f32 {
    let mut sigma2 = 0.0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 * (2.0 / x.len() as f32)
}

/// The scale ggml's search settles on for one 32-element block (0 for an all-zero block): the
/// symmetric start, then `2·NTRY` retries, keeping the best weighted fit.
pub(crate) fn block_scale(xb: &[f32], weight: &[f32; 32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in xb {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let sums = |id: f32| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for j in 0..32 {
            let q = f32::from(KVALUES[best_index(id * xb[j])]);
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let d = -max / f32::from(KVALUES[0]);
    let (sumqx, sumq2) = sums(1.0 / d);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let id = (itry + i32::from(KVALUES[0])) as f32 / max;
        let (sumqx, sumq2) = sums(id);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// [`block_scale`] for eight blocks at once, transposed (`x[j][block]`).
fn block_scales(x: &[[f32; LANES]; 32], w: &[[f32; LANES]; 32]) -> [f32; LANES] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { crate::avx2::iq4_block_scales(x, w) };
    }
    block_scales_portable(x, w)
}

/// The portable form of [`block_scales`]: [`block_scale`] on each block in turn.
fn block_scales_portable(x: &[[f32; LANES]; 32], w: &[[f32; LANES]; 32]) -> [f32; LANES] {
    let mut scales = [0.0f32; LANES];
    for k in 0..LANES {
        let (mut xb, mut wb) = ([0.0f32; 32], [0.0f32; 32]);
        for j in 0..32 {
            xb[j] = x[j][k];
            wb[j] = w[j][k];
        }
        scales[k] = block_scale(&xb, &wb);
    }
    scales
}

/// Writes the indices of a super-block of `x.len()` (32 or 256) elements from its block scales.
/// Returns the f16 super-scale and, for IQ4_XS, the packed 6-bit sub-scales (`scales_h`,
/// `scales_l`).
fn finish_superblock(x: &[f32], scales: &[f32], q4: &mut [u8], scales_l: &mut [u8]) -> (u16, u16) {
    let nblocks = x.len() / 32;
    let mut levels = [0u8; 256];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for &d in &scales[..nblocks] {
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let (dh, scales_h) = if nblocks > 1 {
        let mut scales_h = 0u16;
        scales_l.fill(0);
        let d = -max_scale / 32.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..nblocks {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let xb = &x[32 * ib..32 * ib + 32];
            for j in 0..32 {
                levels[32 * ib + j] = best_index(idl * xb[j]) as u8;
            }
            let l = (l + 32) as u16;
            if ib % 2 == 0 {
                scales_l[ib / 2] = (l & 0xF) as u8;
            } else {
                scales_l[ib / 2] |= ((l & 0xF) << 4) as u8;
            }
            scales_h |= (l >> 4) << (2 * (ib % 8));
        }
        (f16(d), scales_h)
    } else {
        let id = if scales[0] != 0.0 {
            1.0 / scales[0]
        } else {
            0.0
        };
        for j in 0..32 {
            levels[j] = best_index(id * x[j]) as u8;
        }
        (f16(scales[0]), 0)
    };
    for i in 0..nblocks {
        for j in 0..16 {
            q4[16 * i + j] = levels[32 * i + j] | (levels[32 * i + 16 + j] << 4);
        }
    }
    (dh, scales_h)
}

fn imatrix_slice(
    imatrix: Option<&[f32]>,
    n_per_row: usize,
    block: usize,
    index: usize,
) -> Option<&[f32]> {
    let col = (index % (n_per_row / block)) * block;
    imatrix.map(|q| &q[col..col + block])
}

pub(crate) fn quantize_iq4_nl(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    // Eight blocks side by side (the last group padded with all-zero blocks, whose scale is 0).
    for (g, (xs, ys)) in src
        .chunks(32 * LANES)
        .zip(dst.chunks_mut(18 * LANES))
        .enumerate()
    {
        let (mut xt, mut wt) = ([[0.0f32; LANES]; 32], [[0.0f32; LANES]; 32]);
        for (k, xb) in xs.chunks_exact(32).enumerate() {
            let qw = imatrix_slice(imatrix, n_per_row, 32, g * LANES + k);
            let w = block_weights(xb, qw, super_block_sigma2(xb));
            for j in 0..32 {
                xt[j][k] = xb[j];
                wt[j][k] = w[j];
            }
        }
        let scales = block_scales(&xt, &wt);
        for (k, (xb, y)) in xs.chunks_exact(32).zip(ys.chunks_exact_mut(18)).enumerate() {
            let (dh, _) = finish_superblock(xb, &scales[k..k + 1], &mut y[2..18], &mut []);
            y[..2].copy_from_slice(&dh.to_le_bytes());
        }
    }
}

pub(crate) fn quantize_iq4_xs(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    for (i, (x, y)) in src
        .chunks_exact(256)
        .zip(dst.chunks_exact_mut(136))
        .enumerate()
    {
        let qw = imatrix_slice(imatrix, n_per_row, 256, i);
        let sigma2 = super_block_sigma2(x);
        let (mut xt, mut wt) = ([[0.0f32; LANES]; 32], [[0.0f32; LANES]; 32]);
        for (k, xb) in x.chunks_exact(32).enumerate() {
            let w = block_weights(xb, qw.map(|q| &q[32 * k..32 * k + 32]), sigma2);
            for j in 0..32 {
                xt[j][k] = xb[j];
                wt[j][k] = w[j];
            }
        }
        let scales = block_scales(&xt, &wt);
        let (head, q4) = y.split_at_mut(8);
        let (dh, scales_h) = finish_superblock(x, &scales, q4, &mut head[4..8]);
        head[..2].copy_from_slice(&dh.to_le_bytes());
        head[2..4].copy_from_slice(&scales_h.to_le_bytes());
    }
}

pub(crate) fn dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
        let d = h2f(u16::from_le_bytes([x[0], x[1]]));
        for j in 0..16 {
            y[j] = d * f32::from(KVALUES[usize::from(x[2 + j] & 0xF)]);
            y[j + 16] = d * f32::from(KVALUES[usize::from(x[2 + j] >> 4)]);
        }
    }
}

pub(crate) fn dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(136).zip(dst.chunks_exact_mut(256)) {
        let d = h2f(u16::from_le_bytes([x[0], x[1]]));
        let scales_h = u16::from_le_bytes([x[2], x[3]]);
        for ib in 0..8 {
            let ls = i32::from((x[4 + ib / 2] >> (4 * (ib % 2))) & 0xF)
                | (i32::from((scales_h >> (2 * ib)) & 3) << 4);
            let dl = d * (ls - 32) as f32;
            let qs = &x[8 + 16 * ib..24 + 16 * ib];
            for j in 0..16 {
                y[32 * ib + j] = dl * f32::from(KVALUES[usize::from(qs[j] & 0xF)]);
                y[32 * ib + j + 16] = dl * f32::from(KVALUES[usize::from(qs[j] >> 4)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_scales_equal_the_scalar_search_bit_for_bit() {
        let mut s = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..64 {
            let (mut xt, mut wt) = ([[0.0f32; LANES]; 32], [[0.0f32; LANES]; 32]);
            for k in 0..LANES {
                let kind = (round * LANES + k) % 9;
                for j in 0..32 {
                    let r = next();
                    let normal = ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0;
                    xt[j][k] = match (kind, r % 11) {
                        (0, _) => 0.0,
                        (1, _) => 0.5,
                        (2, _) => normal * 1e-20,
                        (3, _) => normal * 1e30,
                        (4, 0) => f32::NAN,
                        (5, 0) => f32::INFINITY,
                        (6, _) => [1.0, -1.0, 0.25][(r >> 5) as usize % 3],
                        _ => normal,
                    };
                    wt[j][k] = if kind == 7 {
                        0.0
                    } else {
                        ((r >> 20) & 0xFFFF) as f32 / 65536.0 + 0.01
                    };
                }
            }
            let fast = block_scales(&xt, &wt);
            let portable = block_scales_portable(&xt, &wt);
            for k in 0..LANES {
                assert_eq!(
                    fast[k].to_bits(),
                    portable[k].to_bits(),
                    "round {round} lane {k}"
                );
            }
        }
    }
}
