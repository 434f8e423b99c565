//! IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks): 4-bit indices into a
//! non-linear table, always through ggml's `quantize_row_iq4_nl_impl` with 7 scale retries (the
//! path `ggml_quantize_chunk` takes with and without an importance matrix).

use crate::common::{f16_bits_to_f32 as h2f, f32_to_f16_bits as f16, nearest_int};
use crate::search::GROUP_MAX_EPS;

/// ggml's `kvalues_iq4nl`.
pub(crate) const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];
const NTRY: i32 = 7;

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

/// Quantizes one super-block of `x.len()` (32 or 256) elements. Returns the f16 super-scale and,
/// for IQ4_XS, the packed 6-bit sub-scales (`scales_h`, `scales_l`); writes the packed indices.
fn quantize_superblock(
    x: &[f32],
    qw: Option<&[f32]>,
    q4: &mut [u8],
    scales_l: &mut [u8],
) -> (u16, u16) {
    let sbs = x.len();
    let nblocks = sbs / 32;
    let mut sigma2 = 0.0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / sbs as f32;
    q4.fill(0);
    let mut levels = [0u8; 256];
    let mut scales = [0.0f32; 8];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    let v0 = f32::from(KVALUES[0]);
    for ib in 0..nblocks {
        let xb = &x[32 * ib..32 * ib + 32];
        let mut weight = [0.0f32; 32];
        for j in 0..32 {
            weight[j] = match qw {
                Some(q) => q[32 * ib + j] * (sigma2 + xb[j] * xb[j]).sqrt(),
                None => xb[j] * xb[j],
            };
        }
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut d = -max / v0;
        let mut id = 1.0 / d;
        let sums = |id: f32, levels: Option<&mut [u8]>| {
            let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
            let mut levels = levels;
            for j in 0..32 {
                let l = best_index(id * xb[j]);
                if let Some(out) = levels.as_deref_mut() {
                    out[j] = l as u8;
                }
                let q = f32::from(KVALUES[l]);
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            (sumqx, sumq2)
        };
        let (sumqx, sumq2) = sums(id, Some(&mut levels[32 * ib..32 * ib + 32]));
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -NTRY..=NTRY {
            id = (itry + i32::from(KVALUES[0])) as f32 / max;
            let (sumqx, sumq2) = sums(id, None);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
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
    for (i, (x, y)) in src
        .chunks_exact(32)
        .zip(dst.chunks_exact_mut(18))
        .enumerate()
    {
        let qw = imatrix_slice(imatrix, n_per_row, 32, i);
        let (dh, _) = quantize_superblock(x, qw, &mut y[2..18], &mut []);
        y[..2].copy_from_slice(&dh.to_le_bytes());
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
        let (head, q4) = y.split_at_mut(8);
        let (dh, scales_h) = quantize_superblock(x, qw, q4, &mut head[4..8]);
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
