//! The 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.

use crate::common::{
    c_max, f16_bits_to_f32 as h2f, f32_to_f16_bits as f16, x86_cast_i8, x86_cast_u8,
};
use crate::search::{LANES, make_qkx_lanes, make_qkx_quants, make_qx_lanes, make_qx_quants};

const QK: usize = 32;

fn put_f16(dst: &mut [u8], at: usize, v: f32) {
    dst[at..at + 2].copy_from_slice(&f16(v).to_le_bytes());
}

fn get_f16(src: &[u8], at: usize) -> f32 {
    h2f(u16::from_le_bytes([src[at], src[at + 1]]))
}

/// The largest-magnitude value of a block (first on ties, `amax < |v|`).
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Packs 5-bit levels: low nibbles into `qs` (16 bytes), the fifth bits into the LE u32 `qh`.
fn pack5(levels: &[u8; 32], block: &mut [u8], qh_at: usize, qs_at: usize) {
    let mut qh = 0u32;
    for j in 0..16 {
        let (a, b) = (levels[j], levels[j + 16]);
        block[qs_at + j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= u32::from((a & 0x10) >> 4) << j;
        qh |= u32::from((b & 0x10) >> 4) << (j + 16);
    }
    block[qh_at..qh_at + 4].copy_from_slice(&qh.to_le_bytes());
}

/// Per-element weights of the imatrix paths: `qw * sqrt(sigma2 + x²)`, with `sigma2` over the row.
fn row_sigma2(row: &[f32]) -> f32 {
    let mut sum_x2 = 0.0f32;
    for &v in row {
        sum_x2 += v * v;
    }
    sum_x2 / row.len() as f32
}

fn block_weights(qw: &[f32], x: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0.0f32; QK];
    for j in 0..QK {
        w[j] = qw[j] * (sigma2 + x[j] * x[j]).sqrt();
    }
    w
}

/// The scale search of the imatrix paths.
#[derive(Clone, Copy)]
enum Search {
    /// `make_qx_quants` (Q4_0, Q5_0): symmetric levels around `nmax`.
    Qx(i32),
    /// `make_qkx3_quants` (Q4_1, Q5_1): levels `0..=nmax` with a minimum.
    Qkx(i32),
}

/// Runs the search on every block of a row, eight blocks side by side where possible (identical
/// per-block operations), calling `emit(block, scale, the_min, levels)` in block order.
fn search_row(
    row: &[f32],
    qw: &[f32],
    search: Search,
    mut emit: impl FnMut(usize, f32, f32, &[u8; QK]),
) {
    let sigma2 = row_sigma2(row);
    let blocks = row.len() / QK;
    let mut ib = 0;
    while ib + LANES <= blocks {
        let (mut xt, mut wt) = ([[0.0f32; LANES]; 32], [[0.0f32; LANES]; 32]);
        for k in 0..LANES {
            let x = &row[QK * (ib + k)..QK * (ib + k + 1)];
            let w = block_weights(&qw[QK * (ib + k)..], x, sigma2);
            for j in 0..QK {
                xt[j][k] = x[j];
                wt[j][k] = w[j];
            }
        }
        let mut lt = [[0u8; LANES]; 32];
        let mut mins = [0.0f32; LANES];
        let scales = match search {
            Search::Qx(nmax) => make_qx_lanes(nmax, QK, &xt, &wt, &mut lt),
            Search::Qkx(nmax) => make_qkx_lanes(
                nmax, QK, &xt, &wt, &mut lt, &mut mins, -0.9, 0.05, 36, false, true,
            ),
        };
        for k in 0..LANES {
            let mut l = [0u8; QK];
            for j in 0..QK {
                l[j] = lt[j][k];
            }
            emit(ib + k, scales[k], mins[k], &l);
        }
        ib += LANES;
    }
    for b in ib..blocks {
        let x = &row[QK * b..QK * (b + 1)];
        let w = block_weights(&qw[QK * b..], x, sigma2);
        let mut l = [0u8; QK];
        let mut the_min = 0.0f32;
        let d = match search {
            Search::Qx(nmax) => make_qx_quants(nmax, x, &mut l, Some(&w)),
            Search::Qkx(nmax) => make_qkx_quants(
                nmax,
                x,
                &w,
                &mut l,
                &mut the_min,
                -0.9,
                0.05,
                36,
                false,
                true,
            ),
        };
        emit(b, d, the_min, &l);
    }
}

/// What distinguishes Q4_0, Q4_1, Q5_0 and Q5_1: block size, the no-imatrix kernels, the imatrix
/// search and how a block is written from its scale, minimum and levels.
struct LegacyType {
    bytes: usize,
    plain: fn(&[f32], &mut [u8]),
    #[cfg(target_arch = "x86_64")]
    plain_avx2: unsafe fn(&[f32], &mut [u8]),
    search: Search,
    write: fn(&mut [u8], f32, f32, &[u8; QK]),
}

impl LegacyType {
    fn quantize(&self, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>, dst: &mut [u8]) {
        let Some(qw) = imatrix else {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { (self.plain_avx2)(src, dst) };
                return;
            }
            (self.plain)(src, dst);
            return;
        };
        let row_bytes = n_per_row / QK * self.bytes;
        for (row, out) in src
            .chunks_exact(n_per_row)
            .zip(dst.chunks_exact_mut(row_bytes))
        {
            search_row(row, qw, self.search, |ib, d, the_min, l| {
                (self.write)(
                    &mut out[self.bytes * ib..self.bytes * (ib + 1)],
                    d,
                    the_min,
                    l,
                );
            });
        }
    }
}

/// Q4_0 without an imatrix, the portable form of the AVX2 kernel.
pub(crate) fn quantize_q4_0_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        for j in 0..16 {
            let a = i32::from(x86_cast_i8(x[j] * id + 8.5)).min(15) as u8;
            let b = i32::from(x86_cast_i8(x[j + 16] * id + 8.5)).min(15) as u8;
            y[2 + j] = a | (b << 4);
        }
    }
}

pub(crate) fn quantize_q4_0(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    let ty = LegacyType {
        bytes: 18,
        plain: quantize_q4_0_scalar,
        #[cfg(target_arch = "x86_64")]
        plain_avx2: crate::avx2::quantize_q4_0,
        search: Search::Qx(8),
        write: |y, d, _, l| {
            put_f16(y, 0, d);
            for j in 0..16 {
                y[2 + j] = l[j] | (l[j + 16] << 4);
            }
        },
    };
    ty.quantize(src, n_per_row, imatrix, dst);
}

/// Q4_1 without an imatrix, the portable form of the AVX2 kernel.
pub(crate) fn quantize_q4_1_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(20)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        put_f16(y, 2, min);
        for j in 0..16 {
            let a = i32::from(x86_cast_i8((x[j] - min) * id + 0.5)).min(15) as u8;
            let b = i32::from(x86_cast_i8((x[j + 16] - min) * id + 0.5)).min(15) as u8;
            y[4 + j] = a | (b << 4);
        }
    }
}

pub(crate) fn quantize_q4_1(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    let ty = LegacyType {
        bytes: 20,
        plain: quantize_q4_1_scalar,
        #[cfg(target_arch = "x86_64")]
        plain_avx2: crate::avx2::quantize_q4_1,
        search: Search::Qkx(15),
        write: |y, d, the_min, l| {
            put_f16(y, 0, d);
            put_f16(y, 2, -the_min);
            for j in 0..16 {
                y[4 + j] = l[j] | (l[j + 16] << 4);
            }
        },
    };
    ty.quantize(src, n_per_row, imatrix, dst);
}

/// Q5_0 without an imatrix, the portable form of the AVX2 kernel.
pub(crate) fn quantize_q5_0_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(22)) {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        let mut l = [0u8; QK];
        for j in 0..QK {
            l[j] = i32::from(x86_cast_i8(x[j] * id + 16.5)).min(31) as u8;
        }
        pack5(&l, y, 2, 6);
    }
}

pub(crate) fn quantize_q5_0(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    let ty = LegacyType {
        bytes: 22,
        plain: quantize_q5_0_scalar,
        #[cfg(target_arch = "x86_64")]
        plain_avx2: crate::avx2::quantize_q5_0,
        search: Search::Qx(16),
        write: |y, d, _, l| {
            put_f16(y, 0, d);
            pack5(l, y, 2, 6);
        },
    };
    ty.quantize(src, n_per_row, imatrix, dst);
}

/// Q5_1 without an imatrix, the portable form of the AVX2 kernel.
pub(crate) fn quantize_q5_1_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(24)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        put_f16(y, 2, min);
        let mut l = [0u8; QK];
        for j in 0..QK {
            l[j] = x86_cast_u8((x[j] - min) * id + 0.5);
        }
        pack5(&l, y, 4, 8);
    }
}

pub(crate) fn quantize_q5_1(
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) {
    let ty = LegacyType {
        bytes: 24,
        plain: quantize_q5_1_scalar,
        #[cfg(target_arch = "x86_64")]
        plain_avx2: crate::avx2::quantize_q5_1,
        search: Search::Qkx(31),
        write: |y, d, the_min, l| {
            put_f16(y, 0, d);
            put_f16(y, 2, -the_min);
            pack5(l, y, 4, 8);
        },
    };
    ty.quantize(src, n_per_row, imatrix, dst);
}

/// Q8_0 (the imatrix is ignored, as in ggml).
pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { crate::avx2::quantize_q8_0(src, dst) };
        return;
    }
    quantize_q8_0_scalar(src, dst);
}

/// Q8_0, the portable form of the AVX2 kernel (which also uses it for blocks holding NaN).
pub(crate) fn quantize_q8_0_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        let mut amax = 0.0f32;
        for &v in x {
            amax = c_max(amax, v.abs());
        }
        let d = amax / 127.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        for j in 0..QK {
            y[2 + j] = x86_cast_i8((x[j] * id).round()) as u8;
        }
    }
}

/// Q8_1: Q8_0 plus `s = d * Σq`.
#[inline(always)]
pub(crate) fn quantize_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        let mut amax = 0.0f32;
        for &v in x {
            amax = c_max(amax, v.abs());
        }
        let d = amax / 127.0;
        let id = inverse(d);
        let mut sum = 0i32;
        for j in 0..16 {
            let a = x86_cast_i8((x[j] * id).round());
            let b = x86_cast_i8((x[j + 16] * id).round());
            y[4 + j] = a as u8;
            y[4 + j + 16] = b as u8;
            sum += i32::from(a) + i32::from(b);
        }
        put_f16(y, 0, d);
        put_f16(y, 2, sum as f32 * d);
    }
}

#[inline(always)]
pub(crate) fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(x, 0);
        for j in 0..16 {
            y[j] = (i32::from(x[2 + j] & 0x0F) - 8) as f32 * d;
            y[j + 16] = (i32::from(x[2 + j] >> 4) - 8) as f32 * d;
        }
    }
}

#[inline(always)]
pub(crate) fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (get_f16(x, 0), get_f16(x, 2));
        for j in 0..16 {
            y[j] = f32::from(x[4 + j] & 0x0F) * d + m;
            y[j + 16] = f32::from(x[4 + j] >> 4) * d + m;
        }
    }
}

fn dequantize_5bit(
    x: &[u8],
    qh_at: usize,
    qs_at: usize,
    y: &mut [f32],
    value: impl Fn(i32) -> f32,
) {
    let qh = u32::from_le_bytes([x[qh_at], x[qh_at + 1], x[qh_at + 2], x[qh_at + 3]]);
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = value(i32::from((x[qs_at + j] & 0x0F) | h0));
        y[j + 16] = value(i32::from((x[qs_at + j] >> 4) | h1));
    }
}

#[inline(always)]
pub(crate) fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(x, 0);
        dequantize_5bit(x, 2, 6, y, |q| (q - 16) as f32 * d);
    }
}

#[inline(always)]
pub(crate) fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (get_f16(x, 0), get_f16(x, 2));
        dequantize_5bit(x, 4, 8, y, |q| q as f32 * d + m);
    }
}

#[inline(always)]
pub(crate) fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(x, 0);
        for j in 0..QK {
            y[j] = f32::from(x[2 + j] as i8) * d;
        }
    }
}

#[inline(always)]
pub(crate) fn dequantize_q8_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(36).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(x, 0);
        for j in 0..QK {
            y[j] = f32::from(x[4 + j] as i8) * d;
        }
    }
}
