//! The k-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (and the intermediate Q8_K) on 256-element
//! super-blocks, following ggml's `_ref` algorithms without an importance matrix and its `_impl`
//! algorithms with one.

use crate::common::{f16_bits_to_f32 as h2f, f32_to_f16_bits as f16, nearest_int};
use crate::search::{
    GROUP_MAX_EPS, LANES, QkxSearch, make_q3_lanes, make_qkx_lane_sets, make_qp_quants,
    make_qx_lane_sets, make_qx_lanes,
};

const QK_K: usize = 256;

fn put_f16(dst: &mut [u8], at: usize, v: f32) {
    dst[at..at + 2].copy_from_slice(&f16(v).to_le_bytes());
}

fn get_f16(src: &[u8], at: usize) -> f32 {
    h2f(u16::from_le_bytes([src[at], src[at + 1]]))
}

/// Whether the sixteen-lane searches run (they take an even number of eight-lane sets per call).
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The imatrix slice of super-block `i`'s columns (the same imatrix for every row).
fn block_weights(imatrix: Option<&[f32]>, n_per_row: usize, i: usize) -> Option<&[f32]> {
    let col = (i % (n_per_row / QK_K)) * QK_K;
    imatrix.map(|q| &q[col..col + QK_K])
}

/// Calls `many(index of the first block, blocks, their bytes)` on runs of `B` consecutive
/// super-blocks of `bytes` bytes each, then `one` on each block left over.
fn in_batches<const B: usize>(
    src: &[f32],
    dst: &mut [u8],
    bytes: usize,
    mut many: impl FnMut(usize, &[f32], &mut [u8]),
    mut one: impl FnMut(usize, &[f32], &mut [u8]),
) {
    let mut xs = src.chunks_exact(B * QK_K);
    let mut ys = dst.chunks_exact_mut(B * bytes);
    let mut i = 0;
    for (x, y) in (&mut xs).zip(&mut ys) {
        many(i, x, y);
        i += B;
    }
    let (x, y) = (xs.remainder(), ys.into_remainder());
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.chunks_exact_mut(bytes)) {
        one(i, xb, yb);
        i += 1;
    }
}

/// The final pass of every k-quant, once the block's scales are stored: for each group `j` of
/// `group` elements whose scale `d[j]` is non-zero, `levels = nearest_int((x + offset[j]) / d[j])
/// .clamp(lo, hi) - lo` (no addition without offsets). Groups with a zero scale keep the levels
/// their search chose, as in ggml.
fn requantize_groups(
    x: &[f32],
    group: usize,
    d: &[f32],
    offset: Option<&[f32]>,
    (lo, hi): (i32, i32),
    levels: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { crate::avx2::requantize_groups(x, group, d, offset, (lo, hi), levels) };
        return;
    }
    for (j, &dj) in d.iter().enumerate() {
        if dj == 0.0 {
            continue;
        }
        let range = group * j..group * (j + 1);
        for (l, &v) in levels[range.clone()].iter_mut().zip(&x[range]) {
            let v = offset.map_or(v, |m| v + m[j]);
            *l = (nearest_int(v / dj).clamp(lo, hi) - lo) as u8;
        }
    }
}

/// [`sum_squares`] of each of `B` consecutive super-blocks, the `B` sequential sums interleaved
/// (each is a chain of dependent additions).
fn sums_of_squares<const B: usize>(x: &[f32]) -> [f32; B] {
    let mut s = [0.0f32; B];
    for i in 0..QK_K {
        for b in 0..B {
            let v = x[b * QK_K + i];
            s[b] += v * v;
        }
    }
    s
}

fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// Packs 2-bit levels of 256 elements into 64 bytes (Q2_K and Q3_K's low bits).
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for half in 0..2 {
        let j = half * 128;
        for l in 0..32 {
            qs[half * 32 + l] = levels[j + l]
                | (levels[j + l + 32] << 2)
                | (levels[j + l + 64] << 4)
                | (levels[j + l + 96] << 6);
        }
    }
}

// ---- Q2_K: scales[16] qs[64] d dmin ------------------------------------------------------------

/// Q2_K for `B` consecutive super-blocks (`G = 2B` lane sets: each block's sixteen sub-blocks as
/// two sets of eight), all searched in one call. With AVX-512, four blocks fill the four
/// interleaved sixteen-lane registers: the search's steps depend on each other, so one block's
/// register alone waits on its own sums (one register per block measured slower than eight lanes).
fn q2_blocks<const B: usize, const G: usize>(x: &[f32], y: &mut [u8], qw: [Option<&[f32]>; B]) {
    let (mut xt, mut wt) = ([[[0.0f32; LANES]; 32]; G], [[[0.0f32; LANES]; 32]; G]);
    let mut sw = [[0.0f32; 16]; B];
    let sigma2 = if qw[0].is_some() {
        sums_of_squares::<B>(x).map(|s| s / QK_K as f32)
    } else {
        [0.0; B]
    };
    for b in 0..B {
        let xb = &x[b * QK_K..(b + 1) * QK_K];
        let sigma2 = sigma2[b];
        for j in 0..16 {
            let (set, k) = (2 * b + j / LANES, j % LANES);
            for l in 0..16 {
                let v = xb[16 * j + l];
                let w = qw[b].map_or(v.abs(), |q| q[16 * j + l] * (sigma2 + v * v).sqrt());
                xt[set][l][k] = v;
                wt[set][l][k] = w;
                sw[b][j] += w;
            }
        }
    }
    let search = if qw[0].is_some() {
        QkxSearch {
            nmax: 3,
            rmin: -0.9,
            rdelta: 0.05,
            nstep: 36,
            use_mad: false,
            degenerate_if_below: true,
        }
    } else {
        QkxSearch {
            nmax: 3,
            rmin: -0.5,
            rdelta: 0.1,
            nstep: 15,
            use_mad: true,
            degenerate_if_below: false,
        }
    };
    let mut lt = [[[0u8; LANES]; 32]; G];
    let mut m = [[0.0f32; LANES]; G];
    let sc = make_qkx_lane_sets::<G>(&search, 16, &xt, &wt, &mut lt, &mut m);
    for b in 0..B {
        let (xb, yb) = (&x[b * QK_K..(b + 1) * QK_K], &mut y[b * 84..(b + 1) * 84]);
        let mut levels = [0u8; QK_K];
        let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
        for j in 0..16 {
            let (set, k) = (2 * b + j / LANES, j % LANES);
            scales[j] = sc[set][k];
            mins[j] = m[set][k];
            for l in 0..16 {
                levels[16 * j + l] = lt[set][l][k];
            }
        }
        if qw[b].is_some() {
            q2_header_imatrix(yb, &scales, &mins, &sw[b]);
        } else {
            q2_header(yb, &scales, &mins);
        }
        let (dm, mm) = (get_f16(yb, 80), get_f16(yb, 82));
        let d: [f32; 16] = std::array::from_fn(|j| dm * f32::from(yb[j] & 0xF));
        let m: [f32; 16] = std::array::from_fn(|j| mm * f32::from(yb[j] >> 4));
        requantize_groups(xb, 16, &d, Some(&m), (0, 3), &mut levels);
        pack_2bit(&levels, &mut yb[16..80]);
    }
}

/// Q2_K's scale bytes, `d` and `dmin` without an importance matrix.
fn q2_header(y: &mut [u8], scales: &[f32; 16], mins: &[f32; 16]) {
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for j in 0..16 {
            y[j] = nearest_int(iscale * scales[j]) as u8;
        }
        put_f16(y, 80, max_scale / 15.0);
    } else {
        y[..16].fill(0);
        put_f16(y, 80, 0.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for j in 0..16 {
            y[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        put_f16(y, 82, max_min / 15.0);
    } else {
        put_f16(y, 82, 0.0);
    }
}

/// Q2_K's scale bytes, `d` and `dmin` with an importance matrix (`sw`: the sub-blocks' weight sums).
fn q2_header_imatrix(y: &mut [u8], scales: &[f32; 16], mins: &[f32; 16], sw: &[f32; 16]) {
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let dm = make_qp_quants(15, scales, &mut ls, sw);
    let mm = make_qp_quants(15, mins, &mut lm, sw);
    put_f16(y, 80, dm);
    put_f16(y, 82, mm);
    for j in 0..16 {
        y[j] = ls[j] | (lm[j] << 4);
    }
}

pub(crate) fn quantize_q2_k(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    let one = |i: usize, x: &[f32], y: &mut [u8]| {
        q2_blocks::<1, 2>(x, y, [block_weights(imatrix, n_per_row, i)]);
    };
    if wide() {
        let many = |i: usize, x: &[f32], y: &mut [u8]| {
            let qw = std::array::from_fn(|b| block_weights(imatrix, n_per_row, i + b));
            q2_blocks::<4, 8>(x, y, qw);
        };
        in_batches::<4>(src, dst, 84, many, one);
    } else {
        in_batches::<1>(src, dst, 84, one, one);
    }
}

#[inline(always)]
pub(crate) fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(84).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (get_f16(x, 80), get_f16(x, 82));
        let mut out = 0;
        let mut is = 0;
        for half in 0..2 {
            let q = &x[16 + 32 * half..16 + 32 * half + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let sc = x[is];
                    is += 1;
                    let dl = d * f32::from(sc & 0xF);
                    let ml = min * f32::from(sc >> 4);
                    for l in 0..16 {
                        y[out] = dl * f32::from((q[l + 16 * part] >> shift) & 3) - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

// ---- Q3_K: hmask[32] qs[64] scales[12] d --------------------------------------------------------

fn q3_scale(scales: &[u8], j: usize) -> i32 {
    let low = if j < 8 {
        scales[j] & 0xF
    } else {
        scales[j - 8] >> 4
    };
    i32::from(low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32
}

fn q3_pack_scale(scales: &mut [u8], j: usize, l: u8) {
    if j < 8 {
        scales[j] = l & 0xF;
    } else {
        scales[j - 8] |= (l & 0xF) << 4;
    }
    scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
}

/// Q3_K's search without an importance matrix for `G / 2` super-blocks at once (`G` interleaved
/// sets of eight 16-element groups): writes each block's scales and levels.
fn q3_search_plain<const G: usize>(
    xs: &[&[f32]],
    scales: &mut [[f32; 16]],
    levels: &mut [[u8; QK_K]],
) {
    let mut xt = [[[0.0f32; LANES]; 32]; G];
    for (b, x) in xs.iter().enumerate() {
        #[cfg(target_arch = "x86_64")]
        if wide() {
            let xp = (&mut xt[2 * b..2 * b + 2]).try_into().unwrap();
            // SAFETY: the CPU supports AVX-512F (`wide` checked just above).
            unsafe { crate::avx512::transpose_groups16(x, None, xp, None) };
            continue;
        }
        for j in 0..16 {
            for l in 0..16 {
                xt[2 * b + j / LANES][l][j % LANES] = x[16 * j + l];
            }
        }
    }
    let mut lt = [[[0u8; LANES]; 32]; G];
    let sc = make_q3_lanes(4, 16, &xt, &mut lt);
    for b in 0..xs.len() {
        for j in 0..16 {
            let set = 2 * b + j / LANES;
            scales[b][j] = sc[set][j % LANES];
            for l in 0..16 {
                levels[b][16 * j + l] = lt[set][l][j % LANES];
            }
        }
    }
}

/// Q3_K's super-block scale without an importance matrix: the 6-bit sub-block scales and `d`.
fn q3_scales_plain(y: &mut [u8], scales: &[f32; 16]) {
    let (mut amax, mut max_scale) = (0.0f32, 0.0f32);
    for j in 0..16 {
        let s = scales[j].abs();
        if s > amax {
            amax = s;
            max_scale = scales[j];
        }
    }
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            let l = nearest_int(iscale * scales[j]) as i8;
            let l = (l.clamp(-32, 31) + 32) as u8;
            q3_pack_scale(&mut y[96..108], j, l);
        }
        put_f16(y, 108, 1.0 / iscale);
    } else {
        put_f16(y, 108, 0.0);
    }
}

/// Q3_K with an importance matrix for `B` (at most [`LANES`]) consecutive super-blocks (`G = 2B`
/// lane sets): the sub-block searches of all `B` in one call, then the `B` super-block scale
/// searches side by side (one lane per block), then each block's requantization.
fn q3_imatrix_blocks<const B: usize, const G: usize>(x: &[f32], y: &mut [u8], qw: [&[f32]; B]) {
    let sigma2 = sums_of_squares::<B>(x).map(|s| 2.0 * s / QK_K as f32);
    let mut sw = [[0.0f32; 16]; B];
    let (mut xt, mut wt) = ([[[0.0f32; LANES]; 32]; G], [[[0.0f32; LANES]; 32]; G]);
    for b in 0..B {
        let xb = &x[b * QK_K..(b + 1) * QK_K];
        for j in 0..16 {
            let (set, k) = (2 * b + j / LANES, j % LANES);
            let mut sumw = 0.0f32;
            for l in 0..16 {
                let v = xb[16 * j + l];
                let w = qw[b][16 * j + l] * (sigma2[b] + v * v).sqrt();
                sumw += w;
                xt[set][l][k] = v;
                wt[set][l][k] = w;
            }
            sw[b][j] = sumw;
        }
    }
    let mut lt = [[[0u8; LANES]; 32]; G];
    let sc = make_qx_lane_sets::<G>(4, 16, &xt, &wt, &mut lt);
    // The super-block scales: row j holds sub-block j's scale of every block (unused lanes zero).
    let (mut st, mut swt) = ([[0.0f32; LANES]; 32], [[0.0f32; LANES]; 32]);
    for b in 0..B {
        for j in 0..16 {
            st[j][b] = sc[2 * b + j / LANES][j % LANES];
            swt[j][b] = sw[b][j];
        }
    }
    let mut ls = [[0u8; LANES]; 32];
    let d_block = make_qx_lanes(32, 16, &st, &swt, &mut ls);
    for b in 0..B {
        let (xb, yb) = (&x[b * QK_K..(b + 1) * QK_K], &mut y[b * 110..(b + 1) * 110]);
        let mut levels = [0u8; QK_K];
        for j in 0..16 {
            let (set, k) = (2 * b + j / LANES, j % LANES);
            for l in 0..16 {
                levels[16 * j + l] = lt[set][l][k];
            }
        }
        yb[96..108].fill(0);
        for j in 0..16 {
            q3_pack_scale(&mut yb[96..108], j, ls[j][b]);
        }
        put_f16(yb, 108, d_block[b]);
        q3_finish(xb, yb, &mut levels);
    }
}

/// Requantizes a Q3_K super-block with its stored scales and packs the levels.
fn q3_finish(x: &[f32], y: &mut [u8], levels: &mut [u8; QK_K]) {
    let d_all = get_f16(y, 108);
    let d: [f32; 16] = std::array::from_fn(|j| d_all * q3_scale(&y[96..108], j) as f32);
    requantize_groups(x, 16, &d, None, (-4, 3), levels);
    // Levels are 0..=7: bit 2 goes to the high-bit mask (element 32k+m at bit k of byte m),
    // the low two bits stay.
    y[..32].fill(0);
    for k in 0..8 {
        for m in 0..32 {
            let level = levels[32 * k + m];
            y[m] |= ((level >> 2) & 1) << k;
            levels[32 * k + m] = level & 3;
        }
    }
    pack_2bit(levels, &mut y[32..96]);
}

pub(crate) fn quantize_q3_k(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    if let Some(imatrix) = imatrix {
        let one = |i: usize, x: &[f32], y: &mut [u8]| {
            let qw = block_weights(Some(imatrix), n_per_row, i).unwrap_or_default();
            q3_imatrix_blocks::<1, 2>(x, y, [qw]);
        };
        // Four super-blocks per call: with AVX-512, the four sixteen-lane registers the
        // sub-block search interleaves.
        let many = |i: usize, x: &[f32], y: &mut [u8]| {
            let qw = std::array::from_fn(|b| {
                block_weights(Some(imatrix), n_per_row, i + b).unwrap_or_default()
            });
            q3_imatrix_blocks::<4, 8>(x, y, qw);
        };
        in_batches::<4>(src, dst, 110, many, one);
        return;
    }
    // Several super-blocks at a time: the search is a chain of dependent steps per group, so
    // interleaving independent groups keeps the core busy. Measured best: four super-blocks with
    // AVX-512 (four registers of sixteen groups), two with AVX2 (four registers of eight; eight
    // were slower).
    if wide() {
        q3_plain_batches::<4, 8>(src, dst);
    } else {
        q3_plain_batches::<2, 4>(src, dst);
    }
}

/// Q3_K without an importance matrix, `B` super-blocks at a time (`G = 2B` lane sets).
fn q3_plain_batches<const B: usize, const G: usize>(src: &[f32], dst: &mut [u8]) {
    let mut xs = src.chunks_exact(B * QK_K);
    let mut ys = dst.chunks_exact_mut(B * 110);
    for (x, y) in (&mut xs).zip(&mut ys) {
        q3_plain_blocks::<B, G>(x, y);
    }
    let (x, y) = (xs.remainder(), ys.into_remainder());
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.chunks_exact_mut(110)) {
        q3_plain_blocks::<1, 2>(xb, yb);
    }
}

/// Q3_K without an importance matrix for `B` consecutive super-blocks (`G = 2B` lane sets).
fn q3_plain_blocks<const B: usize, const G: usize>(x: &[f32], y: &mut [u8]) {
    let (mut scales, mut levels) = ([[0.0f32; 16]; B], [[0u8; QK_K]; B]);
    let xs: [&[f32]; B] = std::array::from_fn(|b| &x[b * QK_K..(b + 1) * QK_K]);
    q3_search_plain::<G>(&xs, &mut scales, &mut levels);
    for (b, (xb, yb)) in x
        .chunks_exact(QK_K)
        .zip(y.chunks_exact_mut(110))
        .enumerate()
    {
        yb[96..108].fill(0);
        q3_scales_plain(yb, &scales[b]);
        q3_finish(xb, yb, &mut levels[b]);
    }
}

#[inline(always)]
pub(crate) fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(110).zip(dst.chunks_exact_mut(QK_K)) {
        let d_all = get_f16(x, 108);
        let (hmask, scales) = (&x[..32], &x[96..108]);
        let mut out = 0;
        let mut is = 0;
        let mut m = 1u8;
        for half in 0..2 {
            let q = &x[32 + 32 * half..64 + 32 * half];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let dl = d_all * q3_scale(scales, is) as f32;
                    is += 1;
                    for l in 0..16 {
                        let k = l + 16 * part;
                        let low = ((q[k] >> shift) & 3) as i8;
                        let high = if hmask[k] & m != 0 { 0 } else { 4 };
                        y[out] = dl * f32::from(low - high);
                        out += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

// ---- Q4_K / Q5_K: d dmin scales[12] (qh[32]) qs[128] ------------------------------------------

fn pack_scale_min_k4(scales: &mut [u8], j: usize, ls: u8, lm: u8) {
    if j < 4 {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
        scales[j - 4] |= (ls >> 4) << 6;
        scales[j] |= (lm >> 4) << 6;
    }
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The shared body of Q4_K and Q5_K: chooses levels (0..=nmax) and writes d, dmin and scales.
/// Q4_K and Q5_K's scale and offset bytes (`d`, `dmin`, `scales[12]`) from the sub-block searches,
/// `sw` holding the sub-blocks' weight sums when an importance matrix is given.
fn k4_scales(y: &mut [u8], scales: &[f32; 8], mins: &[f32; 8], sw: Option<&[f32; 8]>, nmax: i32) {
    match sw {
        None => {
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..8 {
                if scales[j] > max_scale {
                    max_scale = scales[j];
                }
                if mins[j] > max_min {
                    max_min = mins[j];
                }
            }
            let inv_scale = if max_scale > 0.0 {
                63.0 / max_scale
            } else {
                0.0
            };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            for j in 0..8 {
                let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
                pack_scale_min_k4(&mut y[4..16], j, ls, lm);
            }
            put_f16(y, 0, max_scale / 63.0);
            put_f16(y, 2, max_min / 63.0);
        }
        Some(sw) => {
            let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
            let d_block = make_qp_quants(63, scales, &mut ls, sw);
            let m_block = make_qp_quants(63, mins, &mut lm, sw);
            for j in 0..8 {
                let (s, m) = if nmax == 31 {
                    (ls[j].min(63), lm[j].min(63))
                } else {
                    (ls[j], lm[j])
                };
                pack_scale_min_k4(&mut y[4..16], j, s, m);
            }
            put_f16(y, 0, d_block);
            put_f16(y, 2, m_block);
        }
    }
}

/// Q4_K or Q5_K (`nmax` 15 or 31) for `B` consecutive super-blocks: one lane set of eight
/// sub-blocks per super-block, all `B` searched together; `pack` writes a block's levels.
fn k4_blocks<const B: usize>(
    x: &[f32],
    y: &mut [u8],
    qw: [Option<&[f32]>; B],
    nmax: i32,
    bytes: usize,
    pack: fn(&[u8; QK_K], &mut [u8]),
) {
    let (mut xt, mut wt) = ([[[0.0f32; LANES]; 32]; B], [[[0.0f32; LANES]; 32]; B]);
    let mut sw = [[0.0f32; 8]; B];
    for b in 0..B {
        let xb = &x[b * QK_K..(b + 1) * QK_K];
        match qw[b] {
            None => {
                for j in 0..8 {
                    let xs = &xb[32 * j..32 * j + 32];
                    let av_x = (sum_squares(xs) / 32.0).sqrt();
                    for l in 0..32 {
                        xt[b][l][j] = xs[l];
                        wt[b][l][j] = av_x + xs[l].abs();
                    }
                }
            }
            Some(qw) => {
                let sigma2 = 2.0 * sum_squares(xb) / QK_K as f32;
                for j in 0..8 {
                    let xs = &xb[32 * j..32 * j + 32];
                    let mut sumw = 0.0f32;
                    for l in 0..32 {
                        let w = qw[32 * j + l] * (sigma2 + xs[l] * xs[l]).sqrt();
                        sumw += w;
                        xt[b][l][j] = xs[l];
                        wt[b][l][j] = w;
                    }
                    sw[b][j] = sumw;
                }
            }
        }
    }
    let search = if qw[0].is_some() {
        QkxSearch {
            nmax,
            rmin: -0.9,
            rdelta: 0.05,
            nstep: 36,
            use_mad: false,
            degenerate_if_below: true,
        }
    } else {
        QkxSearch {
            nmax,
            rmin: if nmax == 15 { -1.0 } else { -0.5 },
            rdelta: 0.1,
            nstep: if nmax == 15 { 20 } else { 15 },
            use_mad: false,
            degenerate_if_below: false,
        }
    };
    let mut lt = [[[0u8; LANES]; 32]; B];
    let mut mins = [[0.0f32; LANES]; B];
    let scales = make_qkx_lane_sets::<B>(&search, 32, &xt, &wt, &mut lt, &mut mins);
    for b in 0..B {
        let (xb, yb) = (
            &x[b * QK_K..(b + 1) * QK_K],
            &mut y[b * bytes..(b + 1) * bytes],
        );
        let mut levels = [0u8; QK_K];
        for j in 0..8 {
            for l in 0..32 {
                levels[32 * j + l] = lt[b][l][j];
            }
        }
        k4_scales(yb, &scales[b], &mins[b], qw[b].map(|_| &sw[b]), nmax);
        let (d_all, m_all) = (get_f16(yb, 0), get_f16(yb, 2));
        let (mut d, mut dm) = ([0.0f32; 8], [0.0f32; 8]);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &yb[4..16]);
            d[j] = d_all * f32::from(sc);
            dm[j] = m_all * f32::from(m);
        }
        requantize_groups(xb, 32, &d, Some(&dm), (0, nmax), &mut levels);
        pack(&levels, yb);
    }
}

/// Q4_K or Q5_K over a whole tensor: super-blocks in batches of four where the sixteen-lane
/// searches run (two registers of two blocks each; measured faster than one or eight), one by one
/// otherwise.
fn quantize_k4(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
    (nmax, bytes): (i32, usize),
    pack: fn(&[u8; QK_K], &mut [u8]),
) {
    let one = |i: usize, x: &[f32], y: &mut [u8]| {
        k4_blocks::<1>(
            x,
            y,
            [block_weights(imatrix, n_per_row, i)],
            nmax,
            bytes,
            pack,
        );
    };
    if wide() {
        let many = |i: usize, x: &[f32], y: &mut [u8]| {
            let qw = std::array::from_fn(|b| block_weights(imatrix, n_per_row, i + b));
            k4_blocks::<4>(x, y, qw, nmax, bytes, pack);
        };
        in_batches::<4>(src, dst, bytes, many, one);
    } else {
        in_batches::<1>(src, dst, bytes, one, one);
    }
}

fn pack_q4_k(levels: &[u8; QK_K], y: &mut [u8]) {
    for n in 0..4 {
        for l in 0..32 {
            y[16 + 32 * n + l] = levels[64 * n + l] | (levels[64 * n + l + 32] << 4);
        }
    }
}

/// Q5_K's levels: the low nibbles in `qs`, the fifth bits in `qh` (no branches: the levels are
/// random, so a branch per level mispredicted half the time).
fn pack_q5_k(levels: &[u8; QK_K], y: &mut [u8]) {
    for j in 0..32 {
        let mut high = 0u8;
        for n in 0..4 {
            let (l1, l2) = (levels[64 * n + j], levels[64 * n + j + 32]);
            high |= ((l1 >> 4) & 1) << (2 * n);
            high |= ((l2 >> 4) & 1) << (2 * n + 1);
            y[48 + 32 * n + j] = (l1 & 0xF) | ((l2 & 0xF) << 4);
        }
        y[16 + j] = high;
    }
}

pub(crate) fn quantize_q4_k(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    quantize_k4(src, n_per_row, imatrix, dst, (15, 144), pack_q4_k);
}

pub(crate) fn quantize_q5_k(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    quantize_k4(src, n_per_row, imatrix, dst, (31, 176), pack_q5_k);
}

#[inline(always)]
pub(crate) fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (get_f16(x, 0), get_f16(x, 2));
        for n in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * n, &x[4..16]);
            let (sc2, m2) = scale_min_k4(2 * n + 1, &x[4..16]);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let q = &x[16 + 32 * n..48 + 32 * n];
            for l in 0..32 {
                y[64 * n + l] = d1 * f32::from(q[l] & 0xF) - m1;
                y[64 * n + 32 + l] = d2 * f32::from(q[l] >> 4) - m2;
            }
        }
    }
}

#[inline(always)]
pub(crate) fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (get_f16(x, 0), get_f16(x, 2));
        let qh = &x[16..48];
        let (mut u1, mut u2) = (1u8, 2u8);
        for n in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * n, &x[4..16]);
            let (sc2, m2) = scale_min_k4(2 * n + 1, &x[4..16]);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let ql = &x[48 + 32 * n..80 + 32 * n];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[64 * n + l] = d1 * f32::from((ql[l] & 0xF) + h1) - m1;
                y[64 * n + 32 + l] = d2 * f32::from((ql[l] >> 4) + h2) - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

// ---- Q6_K: ql[128] qh[64] scales[16] d ----------------------------------------------------------

/// Q6_K for `B` consecutive super-blocks (`G = 2B` lane sets: each block's sixteen sub-blocks as
/// two sets of eight), all searched in one call: with AVX-512, four blocks fill the four
/// sixteen-lane registers the search interleaves.
fn q6_blocks<const B: usize, const G: usize>(x: &[f32], y: &mut [u8], qw: [Option<&[f32]>; B]) {
    let (mut xt, mut wt) = ([[[0.0f32; LANES]; 32]; G], [[[0.0f32; LANES]; 32]; G]);
    for b in 0..B {
        let xb = &x[b * QK_K..(b + 1) * QK_K];
        #[cfg(target_arch = "x86_64")]
        if wide() {
            let xp = (&mut xt[2 * b..2 * b + 2]).try_into().unwrap();
            let wp = (&mut wt[2 * b..2 * b + 2]).try_into().unwrap();
            // SAFETY: the CPU supports AVX-512F (`wide` checked just above).
            unsafe { crate::avx512::transpose_groups16(xb, qw[b], xp, Some(wp)) };
            continue;
        }
        for ib in 0..16 {
            let (set, k) = (2 * b + ib / LANES, ib % LANES);
            for l in 0..16 {
                let v = xb[16 * ib + l];
                xt[set][l][k] = v;
                wt[set][l][k] = qw[b].map_or(v * v, |q| q[16 * ib + l]);
            }
        }
    }
    let mut lt = [[[0u8; LANES]; 32]; G];
    let s16 = make_qx_lane_sets::<G>(32, 16, &xt, &wt, &mut lt);
    for b in 0..B {
        let (xb, yb) = (&x[b * QK_K..(b + 1) * QK_K], &mut y[b * 210..(b + 1) * 210]);
        let scales = std::array::from_fn(|ib| s16[2 * b + ib / LANES][ib % LANES]);
        let search_levels = |ib: usize, group: &mut [u8]| {
            let (set, k) = (2 * b + ib / LANES, ib % LANES);
            for (l, level) in group.iter_mut().enumerate() {
                *level = lt[set][l][k];
            }
        };
        q6_finish(xb, yb, &scales, search_levels);
    }
}

/// Q6_K's scales, requantization and packing once the sub-block searches are done;
/// `search_levels(j, levels)` writes the levels the search chose for sub-block `j`, needed only
/// where its scale comes out zero.
fn q6_finish(
    x: &[f32],
    y: &mut [u8],
    scales: &[f32; 16],
    search_levels: impl Fn(usize, &mut [u8]),
) {
    let mut levels = [0u8; QK_K];
    let levels = &mut levels;
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for &scale in scales {
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        y.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(y, 208, 1.0 / iscale);
    for ib in 0..16 {
        y[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let d_all = get_f16(y, 208);
    let d: [f32; 16] = std::array::from_fn(|j| d_all * f32::from(y[192 + j] as i8));
    for (j, &dj) in d.iter().enumerate() {
        if dj == 0.0 {
            search_levels(j, &mut levels[16 * j..16 * j + 16]);
        }
    }
    requantize_groups(x, 16, &d, None, (-32, 31), levels);
    for half in 0..2 {
        let j = 128 * half;
        let (ql, qh) = (64 * half, 128 + 32 * half);
        for l in 0..32 {
            let q1 = levels[j + l] & 0xF;
            let q2 = levels[j + l + 32] & 0xF;
            let q3 = levels[j + l + 64] & 0xF;
            let q4 = levels[j + l + 96] & 0xF;
            y[ql + l] = q1 | (q3 << 4);
            y[ql + l + 32] = q2 | (q4 << 4);
            y[qh + l] = (levels[j + l] >> 4)
                | ((levels[j + l + 32] >> 4) << 2)
                | ((levels[j + l + 64] >> 4) << 4)
                | ((levels[j + l + 96] >> 4) << 6);
        }
    }
}

pub(crate) fn quantize_q6_k(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    // One block per call is one sixteen-lane register where the CPU has AVX-512 (two halves).
    let one = |i: usize, x: &[f32], y: &mut [u8]| {
        q6_blocks::<1, 2>(x, y, [block_weights(imatrix, n_per_row, i)]);
    };
    if wide() {
        let many = |i: usize, x: &[f32], y: &mut [u8]| {
            let qw = std::array::from_fn(|b| block_weights(imatrix, n_per_row, i + b));
            q6_blocks::<4, 8>(x, y, qw);
        };
        in_batches::<4>(src, dst, 210, many, one);
    } else {
        in_batches::<1>(src, dst, 210, one, one);
    }
}

#[inline(always)]
pub(crate) fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(QK_K)) {
        let d = get_f16(x, 208);
        for half in 0..2 {
            let (ql, qh, sc) = (&x[64 * half..], &x[128 + 32 * half..], &x[192 + 8 * half..]);
            let out = &mut y[128 * half..];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                out[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
                out[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
                out[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
                out[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
            }
        }
    }
}

// ---- Q8_K: d:f32 qs[256] bsums[16]:i16 ----------------------------------------------------------

pub(crate) fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(292)) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            y.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            y[4 + j] = nearest_int(iscale * x[j]).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let mut sum = 0i32;
            for ii in 0..16 {
                sum += i32::from(y[4 + 16 * j + ii] as i8);
            }
            y[260 + 2 * j..262 + 2 * j].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        y[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

#[inline(always)]
pub(crate) fn dequantize_q8_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(292).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        for j in 0..QK_K {
            y[j] = d * f32::from(x[4 + j] as i8);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batched_types_give_the_same_blocks_in_batches_and_one_by_one() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        // Seven blocks (batches of four leave three), two blocks per row for the imatrix.
        let n = 7 * super::QK_K;
        let mut x: Vec<f32> = (0..n).map(|_| next()).collect();
        x[300..340].fill(0.0);
        x[1000..1032].fill(0.25);
        let imatrix: Vec<f32> = (0..2 * super::QK_K).map(|_| next().abs() + 0.01).collect();
        type Quantize = fn(&[f32], usize, Option<&[f32]>, &mut [u8]);
        let kinds: [(Quantize, usize); 5] = [
            (super::quantize_q2_k, 84),
            (super::quantize_q3_k, 110),
            (super::quantize_q4_k, 144),
            (super::quantize_q5_k, 176),
            (super::quantize_q6_k, 210),
        ];
        for (quantize, bytes) in kinds {
            for im in [None, Some(&imatrix[..])] {
                let per_row = if im.is_some() { 2 * super::QK_K } else { n };
                let xs = if im.is_some() {
                    &x[..6 * super::QK_K]
                } else {
                    &x[..]
                };
                let mut together = vec![0u8; xs.len() / super::QK_K * bytes];
                quantize(xs, per_row, im, &mut together);
                for (b, (xb, yb)) in xs
                    .chunks(super::QK_K)
                    .zip(together.chunks(bytes))
                    .enumerate()
                {
                    let mut alone = vec![0u8; bytes];
                    let col = (b % 2) * super::QK_K;
                    let qw = im.map(|q| &q[col..col + super::QK_K]);
                    quantize(xb, super::QK_K, qw, &mut alone);
                    assert_eq!(alone, yb, "block {b}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_transposition_equals_the_scalar_one() {
        use super::{LANES, QK_K};
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let x: Vec<f32> = (0..QK_K).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let q: Vec<f32> = (0..QK_K).map(|i| (i as f32 * 0.11).cos() + 1.5).collect();
        for qw in [None, Some(&q[..])] {
            let (mut xt, mut wt) = ([[[0.0f32; LANES]; 32]; 2], [[[0.0f32; LANES]; 32]; 2]);
            // SAFETY: the CPU supports AVX-512F (checked above).
            unsafe { crate::avx512::transpose_groups16(&x, qw, &mut xt, Some(&mut wt)) };
            for j in 0..16 {
                for l in 0..16 {
                    let v = x[16 * j + l];
                    let w = qw.map_or(v * v, |q| q[16 * j + l]);
                    assert_eq!(xt[j / LANES][l][j % LANES].to_bits(), v.to_bits());
                    assert_eq!(wt[j / LANES][l][j % LANES].to_bits(), w.to_bits());
                }
            }
        }
    }

    #[test]
    fn q3_k_gives_the_same_blocks_in_batches_and_one_by_one() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let x: Vec<f32> = (0..5 * super::QK_K)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let mut together = vec![0u8; 5 * 110];
        super::quantize_q3_k(&x, 5 * super::QK_K, None, &mut together);
        for (xb, yb) in x.chunks(super::QK_K).zip(together.chunks(110)) {
            let mut alone = vec![0u8; 110];
            super::quantize_q3_k(xb, super::QK_K, None, &mut alone);
            assert_eq!(alone, yb);
        }
    }
}
