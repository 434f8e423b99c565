//! The ternary types TQ1_0 (1.69 bits per weight) and TQ2_0 (2.06), which store -1/0/+1 times a
//! per-block scale. The imatrix is ignored, as in ggml.

use crate::common::{c_max, f16_bits_to_f32 as h2f, f32_to_f16_bits as f16};

/// `lroundf(v) + 1` truncated to int as x86-64 glibc computes it: values outside `long` (and NaN)
/// give `LONG_MIN`, whose low 32 bits are 0.
fn trit(v: f32) -> u8 {
    let rounded = if v.is_nan() || v.abs() >= 9.223_372e18 {
        0
    } else {
        v.round() as i64 as i32
    };
    rounded.wrapping_add(1) as u8
}

fn scale(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    for &v in x {
        amax = c_max(amax, v.abs());
    }
    (amax, if amax != 0.0 { 1.0 / amax } else { 0.0 })
}

/// Packs five trits into a byte as a base-3 fraction of 256 (rounded up).
fn pack5(trits: impl Iterator<Item = u8>) -> u8 {
    let q = trits.fold(0u8, |q, t| q.wrapping_mul(3).wrapping_add(t));
    (u16::from(q) * 256).div_ceil(243) as u8
}

pub(crate) fn quantize_tq1_0(src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { crate::avx2::quantize_tq1_0(src, dst) };
        return;
    }
    quantize_tq1_0_scalar(src, dst);
}

/// TQ1_0, the portable form of the AVX2 kernel (which also uses it for non-finite blocks).
pub(crate) fn quantize_tq1_0_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(256).zip(dst.chunks_exact_mut(54)) {
        let (d, id) = scale(x);
        for m in 0..32 {
            y[m] = pack5((0..5).map(|n| trit(x[m + 32 * n] * id)));
        }
        for m in 0..16 {
            y[32 + m] = pack5((0..5).map(|n| trit(x[160 + m + 16 * n] * id)));
        }
        tq1_0_tail(x, id, d, y);
    }
}

/// The last four trit bytes of a TQ1_0 block (elements 240..256, four trits and a zero trit
/// each) and its scale `d`.
pub(crate) fn tq1_0_tail(x: &[f32], id: f32, d: f32, y: &mut [u8]) {
    for j in 0..4 {
        let q = (0..4).fold(0u8, |q, m| {
            q.wrapping_mul(3)
                .wrapping_add(trit(x[240 + j + 4 * m] * id))
        });
        let q = q.wrapping_mul(3);
        y[48 + j] = (u16::from(q) * 256).div_ceil(243) as u8;
    }
    y[52..54].copy_from_slice(&f16(d).to_le_bytes());
}

pub(crate) fn quantize_tq2_0(src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { crate::avx2::quantize_tq2_0(src, dst) };
        return;
    }
    quantize_tq2_0_scalar(src, dst);
}

/// TQ2_0, the portable form of the AVX2 kernel (which also uses it for non-finite blocks).
pub(crate) fn quantize_tq2_0_scalar(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(256).zip(dst.chunks_exact_mut(66)) {
        let (d, id) = scale(x);
        for half in 0..2 {
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    q = q.wrapping_add((trit(x[128 * half + m + 32 * n] * id) & 3) << (2 * n));
                }
                y[32 * half + m] = q;
            }
        }
        y[64..66].copy_from_slice(&f16(d).to_le_bytes());
    }
}

fn unpack_trit(byte: u8, n: usize) -> f32 {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let q = byte.wrapping_mul(POW3[n]);
    let xi = ((u16::from(q) * 3) >> 8) as i16;
    f32::from(xi - 1)
}

pub(crate) fn dequantize_tq1_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(54).zip(dst.chunks_exact_mut(256)) {
        let d = h2f(u16::from_le_bytes([x[52], x[53]]));
        let mut out = y.iter_mut();
        let mut emit = |v: f32| {
            if let Some(slot) = out.next() {
                *slot = v * d;
            }
        };
        for n in 0..5 {
            for m in 0..32 {
                emit(unpack_trit(x[m], n));
            }
        }
        for n in 0..5 {
            for m in 0..16 {
                emit(unpack_trit(x[32 + m], n));
            }
        }
        for n in 0..4 {
            for j in 0..4 {
                emit(unpack_trit(x[48 + j], n));
            }
        }
    }
}

pub(crate) fn dequantize_tq2_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(66).zip(dst.chunks_exact_mut(256)) {
        let d = h2f(u16::from_le_bytes([x[64], x[65]]));
        let mut k = 0;
        for half in 0..2 {
            for l in 0..4 {
                for m in 0..32 {
                    let q = ((x[32 * half + m] >> (2 * l)) & 3) as i8;
                    y[k] = f32::from(q - 1) * d;
                    k += 1;
                }
            }
        }
    }
}
