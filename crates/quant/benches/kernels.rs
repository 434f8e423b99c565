//! Throughput of every kernel (quantize, with an importance matrix where the type uses one, and
//! dequantize), in weights per second on one core: `cargo bench -p kiln-quant [-- q4_K]`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_quant::{QuantType, dequantize, quantize, row_size};

const N_PER_ROW: usize = 4096;
const ROWS: usize = 16;

fn gaussian(n: usize) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos() * 0.02
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let src = gaussian(N_PER_ROW * ROWS);
    let imatrix: Vec<f32> = gaussian(N_PER_ROW)
        .iter()
        .map(|v| v.abs() * 50.0 + 0.1)
        .collect();
    // The types whose quantization reads an importance matrix.
    let uses_imatrix = |ty: QuantType| {
        !matches!(
            ty,
            QuantType::F32
                | QuantType::F16
                | QuantType::BF16
                | QuantType::Q8_0
                | QuantType::Q8_1
                | QuantType::Q8K
                | QuantType::TQ1_0
                | QuantType::TQ2_0
                | QuantType::MXFP4
        )
    };
    let mut group = c.benchmark_group("kernels");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(300));
    group.measurement_time(std::time::Duration::from_secs(2));
    group.throughput(Throughput::Elements(src.len() as u64));
    for ty in QuantType::ALL {
        let mut dst = vec![0u8; row_size(ty, N_PER_ROW).unwrap() * ROWS];
        group.bench_function(BenchmarkId::new("quantize", ty.name()), |b| {
            b.iter(|| quantize(ty, &src, N_PER_ROW, None, &mut dst).unwrap())
        });
        if uses_imatrix(ty) {
            group.bench_function(BenchmarkId::new("quantize_imatrix", ty.name()), |b| {
                b.iter(|| quantize(ty, &src, N_PER_ROW, Some(&imatrix), &mut dst).unwrap())
            });
        }
        let mut back = vec![0f32; src.len()];
        group.bench_function(BenchmarkId::new("dequantize", ty.name()), |b| {
            b.iter(|| dequantize(ty, &dst, &mut back).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
