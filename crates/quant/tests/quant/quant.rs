//! kiln-quant's integration tests: byte-for-byte comparison with the real ggml (differential, fresh
//! inputs every run), plus properties that need no oracle.

use kiln_quant::{QuantError, QuantType, dequantize, quantize, quantize_parallel, row_size};
use kiln_testkit::{TempDir, oracle_python, run_oracle_batch};

// ---------------------------------------------------------------------------------------------
// Deterministic inputs.

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

const N_PER_ROW: usize = 512;
const ROWS: usize = 24;

/// Named datasets of `ROWS × N_PER_ROW` values, each with an importance matrix.
fn signed_zero(rng: &mut Rng) -> f32 {
    if rng.next_u64().is_multiple_of(2) {
        0.0
    } else {
        -0.0
    }
}

fn datasets(seed: u64) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let mut rng = Rng(seed);
    let n = ROWS * N_PER_ROW;
    let mut out = Vec::new();
    let gauss: Vec<f32> = (0..n).map(|_| rng.normal() * 0.02).collect();
    let heavy: Vec<f32> = (0..n)
        .map(|_| rng.normal() / rng.uniform().max(0.01).sqrt())
        .collect();
    let mut special = Vec::with_capacity(n);
    for block in 0..n / 32 {
        for j in 0..32 {
            // Blocks 5, 7 and 11 mix +0.0 and -0.0, whose order decides the sign of a zero
            // minimum or maximum (stored in Q4_1/Q5_1 blocks).
            let v = match block % 13 {
                0 => 0.0,
                1 => 0.75,
                2 => rng.normal() * 1e-30,
                3 => {
                    f32::from_bits(1 + (rng.next_u64() % 0x007F_FFFF) as u32)
                        * if j % 2 == 0 { 1.0 } else { -1.0 }
                }
                4 => rng.normal() * 1e30,
                5 => {
                    if j == 5 {
                        3.0
                    } else {
                        signed_zero(&mut rng)
                    }
                }
                6 => (j as f32 - 16.0) * 0.5,
                7 => signed_zero(&mut rng),
                8 => rng.normal() * 1e-18,
                9 => {
                    if j % 8 == 0 {
                        -2.5
                    } else {
                        2.5
                    }
                }
                10 => rng.normal() * 1e4,
                11 => {
                    if j % 4 == 0 {
                        -rng.normal().abs()
                    } else {
                        signed_zero(&mut rng)
                    }
                }
                _ => rng.normal(),
            };
            special.push(v);
        }
    }
    // One whole 256-element super-block of tiny subnormals (a maximum whose inverse overflows).
    let tail = special.len() - 256;
    for (i, v) in special[tail..].iter_mut().enumerate() {
        *v = f32::from_bits(1 + (rng.next_u64() % 0x0003_FFFF) as u32) * [1.0, -1.0][i % 2];
    }
    let mut nonfinite: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    for v in nonfinite.iter_mut() {
        if rng.next_u64().is_multiple_of(97) {
            *v = match rng.next_u64() % 3 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                _ => f32::NEG_INFINITY,
            };
        }
    }
    for (name, data) in [
        ("gauss", gauss),
        ("heavy", heavy),
        ("special", special),
        ("nonfinite", nonfinite),
    ] {
        let mut imatrix: Vec<f32> = (0..N_PER_ROW).map(|_| rng.uniform() * 4.0 + 0.01).collect();
        if name == "special" {
            imatrix[7] = 0.0;
        }
        out.push((name.to_owned(), data, imatrix));
    }
    out
}

const QUANTIZED: [QuantType; 17] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
    QuantType::IQ4NL,
    QuantType::IQ4XS,
    QuantType::TQ1_0,
    QuantType::MXFP4,
];

fn all_types() -> Vec<QuantType> {
    let mut v = QUANTIZED.to_vec();
    v.extend([QuantType::TQ2_0, QuantType::Q8_1, QuantType::Q8K]);
    v
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn first_difference(ty: QuantType, expected: &[u8], actual: &[u8]) -> Option<String> {
    let bb = ty.block_bytes();
    let blocks_per_row = N_PER_ROW / ty.block_size();
    expected
        .chunks(bb)
        .zip(actual.chunks(bb))
        .enumerate()
        .find(|(_, (e, a))| e != a)
        .map(|(i, (e, a))| {
            format!(
                "row {} block {}:\n  ggml {}\n  kiln {}",
                i / blocks_per_row,
                i % blocks_per_row,
                e.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                a.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        })
}

fn seed() -> u64 {
    std::env::var("KILN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Every type, every dataset, with and without an importance matrix, against ggml_quantize_chunk;
/// and dequantization of ggml's own bytes against its to_float. Fresh inputs each run (the seed is
/// printed; rerun with KILN_TEST_SEED=<seed> to reproduce), plus a fixed seed.
#[test]
fn quantize_and_dequantize_match_ggml_byte_for_byte() {
    let Some(python) = oracle_python() else {
        return;
    };
    let tmp = TempDir::new("quant-diff");
    let dir = tmp.path();
    let random_seed = seed();
    eprintln!("differential test seeds: 42 and {random_seed} (KILN_TEST_SEED reproduces)");
    let mut failures = Vec::new();
    let mut compared = 0usize;
    for seed in [42, random_seed] {
        let sets = datasets(seed);
        let mut jobs = Vec::new();
        let mut cases = Vec::new();
        for (name, data, imatrix) in &sets {
            let input = dir.join(format!("{seed}-{name}.f32"));
            std::fs::write(&input, f32_bytes(data)).unwrap();
            let im_path = dir.join(format!("{seed}-{name}.imatrix"));
            std::fs::write(&im_path, f32_bytes(imatrix)).unwrap();
            for ty in all_types() {
                for with_imatrix in [false, true] {
                    let out = dir.join(format!("{seed}-{name}-{}-{with_imatrix}.q", ty.name()));
                    jobs.push(serde_json::json!({
                        "op": "quantize", "type": ty.ggml_id(), "n_per_row": N_PER_ROW,
                        "input": input, "imatrix": if with_imatrix { Some(&im_path) } else { None },
                        "output": out,
                    }));
                    let deq = dir.join(format!("{seed}-{name}-{}-{with_imatrix}.deq", ty.name()));
                    if !matches!(ty, QuantType::Q8_1 | QuantType::Q8K) {
                        jobs.push(serde_json::json!({
                            "op": "dequantize", "type": ty.ggml_id(), "n": data.len(), "input": out, "output": deq,
                        }));
                    }
                    cases.push((name.clone(), data, imatrix, ty, with_imatrix, out, deq));
                }
            }
        }
        run_oracle_batch(
            &python,
            "ggml_oracle.py",
            &serde_json::Value::Array(jobs),
            &dir.join("jobs.json"),
        );
        for (name, data, imatrix, ty, with_imatrix, out, deq) in cases {
            let expected = std::fs::read(&out).unwrap();
            let mut actual = vec![0u8; expected.len()];
            quantize(
                ty,
                data,
                N_PER_ROW,
                with_imatrix.then_some(&imatrix[..]),
                &mut actual,
            )
            .unwrap();
            compared += 1;
            if let Some(diff) = first_difference(ty, &expected, &actual) {
                failures.push(format!(
                    "quantize {} seed {seed} {name} imatrix={with_imatrix}: {diff}",
                    ty.name()
                ));
            }
            // ggml-base has no to_float for the activation-only types Q8_1 and Q8_K.
            if matches!(ty, QuantType::Q8_1 | QuantType::Q8K) {
                continue;
            }
            let expected: Vec<u32> = std::fs::read(&deq)
                .unwrap()
                .chunks(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let mut values = vec![0f32; data.len()];
            dequantize(ty, &std::fs::read(&out).unwrap(), &mut values).unwrap();
            if let Some(i) = values
                .iter()
                .zip(&expected)
                .position(|(a, e)| a.to_bits() != *e)
            {
                failures.push(format!(
                    "dequantize {} seed {seed} {name} imatrix={with_imatrix}: element {i}: ggml {:e} kiln {:e}",
                    ty.name(),
                    f32::from_bits(expected[i]),
                    values[i]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} cases differ from ggml:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{compared} quantize cases and their dequantizations identical to ggml");
}

// ---------------------------------------------------------------------------------------------
// Properties that need no oracle.

#[test]
fn thread_count_and_chunking_do_not_change_the_output() {
    let (_, data, imatrix) = datasets(7).swap_remove(1);
    for ty in all_types() {
        let size = row_size(ty, N_PER_ROW).unwrap() * ROWS;
        let mut one = vec![0u8; size];
        quantize(ty, &data, N_PER_ROW, Some(&imatrix), &mut one).unwrap();
        for threads in [2, 3, 8] {
            let mut many = vec![0u8; size];
            quantize_parallel(ty, &data, N_PER_ROW, Some(&imatrix), &mut many, threads).unwrap();
            assert!(one == many, "{ty:?} with {threads} threads");
        }
        let mut by_row = vec![0u8; size];
        let rs = size / ROWS;
        for r in 0..ROWS {
            quantize(
                ty,
                &data[r * N_PER_ROW..(r + 1) * N_PER_ROW],
                N_PER_ROW,
                Some(&imatrix),
                &mut by_row[r * rs..(r + 1) * rs],
            )
            .unwrap();
        }
        assert!(one == by_row, "{ty:?} row by row");
    }
}

#[test]
fn round_trip_error_is_within_each_types_bound() {
    // Relative RMS error bounds for gaussian weights, loose enough for every block yet tight
    // enough to catch a wrong layout or scale (which gives errors near or above 1).
    let bound = |ty: QuantType| match ty {
        QuantType::F32 => 0.0,
        QuantType::F16 => 1e-3,
        QuantType::BF16 => 8e-3,
        QuantType::Q8_0 | QuantType::Q8_1 | QuantType::Q8K => 0.02,
        QuantType::Q6K => 0.04,
        QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q5K => 0.08,
        QuantType::Q4_0
        | QuantType::Q4_1
        | QuantType::Q4K
        | QuantType::IQ4NL
        | QuantType::IQ4XS => 0.16,
        QuantType::Q3K => 0.3,
        QuantType::Q2K => 0.55,
        QuantType::MXFP4 => 0.3,
        QuantType::TQ1_0 | QuantType::TQ2_0 => 1.0,
    };
    let (_, data, _) = datasets(3).swap_remove(0);
    let rms =
        |v: &[f32]| (v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    for ty in all_types() {
        let mut q = vec![0u8; row_size(ty, N_PER_ROW).unwrap() * ROWS];
        quantize(ty, &data, N_PER_ROW, None, &mut q).unwrap();
        let mut back = vec![0f32; data.len()];
        dequantize(ty, &q, &mut back).unwrap();
        let err: Vec<f32> = data.iter().zip(&back).map(|(a, b)| a - b).collect();
        let rel = rms(&err) / rms(&data);
        assert!(
            rel <= bound(ty),
            "{ty:?}: relative RMS error {rel:.4} over {}",
            bound(ty)
        );
        if ty != QuantType::TQ1_0 && ty != QuantType::TQ2_0 {
            assert!(rel < 1.0);
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let src = vec![0.5f32; 256];
    let mut dst = vec![0u8; 144];
    assert_eq!(quantize(QuantType::Q4K, &src, 256, None, &mut dst), Ok(144));
    assert!(matches!(
        quantize(QuantType::Q4K, &src, 128, None, &mut dst),
        Err(QuantError::RowNotMultipleOfBlock {
            block_size: 256,
            ..
        })
    ));
    assert!(matches!(
        quantize(QuantType::Q4K, &src, 0, None, &mut dst),
        Err(QuantError::RowNotMultipleOfBlock { .. })
    ));
    assert!(matches!(
        quantize(QuantType::Q8_0, &src[..100], 32, None, &mut dst),
        Err(QuantError::SourceNotWholeRows {
            len: 100,
            n_per_row: 32
        })
    ));
    assert!(matches!(
        quantize(QuantType::Q4K, &src, 256, None, &mut dst[..143]),
        Err(QuantError::DestinationLength {
            expected: 144,
            actual: 143
        })
    ));
    assert!(matches!(
        quantize(QuantType::Q4K, &src, 256, Some(&[1.0; 3]), &mut dst),
        Err(QuantError::ImatrixLength {
            len: 3,
            n_per_row: 256
        })
    ));
    let mut out = vec![0f32; 256];
    assert!(matches!(
        dequantize(QuantType::Q4K, &dst[..100], &mut out),
        Err(QuantError::PartialBlock { .. })
    ));
    assert!(matches!(
        dequantize(QuantType::Q4K, &dst, &mut out[..10]),
        Err(QuantError::DestinationLength { .. })
    ));
    assert_eq!(row_size(QuantType::Q6K, 4096), Ok(16 * 210));
    assert!(row_size(QuantType::Q6K, 100).is_err());
    for ty in QuantType::ALL {
        assert_eq!(QuantType::from_ggml_id(ty.ggml_id()), Some(ty));
    }
}

/// MXFP4's own boundaries against ggml: a block maximum at and just below every power of two
/// (where `floor(log2f(amax))` changes, including the subnormal range and maxima small enough
/// for the exponent to wrap), values exactly between two codes and one ulp either side, signed
/// maxima, NaN/Inf mixed in; and dequantization of arbitrary bytes (every exponent 0..=255, every
/// code) against ggml's `to_float`.
#[test]
fn mxfp4_exponent_boundaries_ties_and_arbitrary_bytes_match_ggml() {
    let Some(python) = oracle_python() else {
        return;
    };
    let ty = QuantType::MXFP4;
    let tmp = TempDir::new("quant-mxfp4");
    let dir = tmp.path();
    let seed = seed();
    eprintln!("MXFP4 boundary test seed: {seed} (KILN_TEST_SEED reproduces)");
    let mut rng = Rng(seed);
    // Twice the E2M1 magnitudes: the midpoints between neighbouring codes are their means.
    let levels = [0.0f32, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0];
    let mut data = Vec::new();
    let push_block = |amax: f32, rng: &mut Rng, data: &mut Vec<f32>| {
        let mut block = [0f32; 32];
        // The implied half-scale if floor(log2 amax) is exact; ties are relative to it.
        let d = amax / 12.0;
        for (j, v) in block.iter_mut().enumerate() {
            let i = (rng.next_u64() % 7) as usize;
            let mid = (levels[i] + levels[i + 1]) * 0.5 * d;
            let x = match j % 4 {
                0 => mid,
                1 => f32::from_bits(mid.to_bits().saturating_add(1)),
                2 => f32::from_bits(mid.to_bits().saturating_sub(1)),
                _ => rng.normal() * amax * 0.3,
            };
            *v = if rng.next_u64().is_multiple_of(2) {
                x
            } else {
                -x
            };
            if !v.is_finite() || v.abs() > amax {
                *v = 0.0;
            }
        }
        block[(rng.next_u64() % 32) as usize] = if rng.next_u64().is_multiple_of(2) {
            amax
        } else {
            -amax
        };
        data.extend_from_slice(&block);
    };
    // Every binade of positive floats, from the smallest subnormal to the largest finite.
    for bits_exp in 0..=254u32 {
        let p = if bits_exp == 0 {
            f32::from_bits(1)
        } else {
            f32::from_bits(bits_exp << 23)
        };
        let below = f32::from_bits(p.to_bits() - u32::from(p.to_bits() > 1));
        for amax in [p, below, f32::from_bits(p.to_bits() + 1)] {
            if amax.is_finite() && amax > 0.0 {
                push_block(amax, &mut rng, &mut data);
            }
        }
        // A few floats just below the power of two, where log2f may round up to the integer.
        for k in [2u32, 3, 5, 9, 17, 33] {
            if p.to_bits() > k {
                push_block(f32::from_bits(p.to_bits() - k), &mut rng, &mut data);
            }
        }
    }
    // Non-finite values: a NaN among finite values, all NaN, ±Inf as the maximum.
    for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut block: Vec<f32> = (0..32).map(|_| rng.normal()).collect();
        block[(rng.next_u64() % 32) as usize] = special;
        data.extend_from_slice(&block);
        data.extend(std::iter::repeat_n(special, 32));
    }
    data.extend(std::iter::repeat_n(-0.0f32, 32));
    let n_per_row = 32 * 8;
    while !data.len().is_multiple_of(n_per_row) {
        data.push(0.0);
    }
    // Arbitrary bytes: every exponent with random codes, plus every code once per exponent.
    let mut raw = Vec::new();
    for e in 0..=255u8 {
        raw.push(e);
        raw.extend((0..16).map(|_| rng.next_u64() as u8));
        raw.push(e);
        raw.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    }
    let input = dir.join("input.f32");
    std::fs::write(&input, f32_bytes(&data)).unwrap();
    let raw_path = dir.join("raw.q");
    std::fs::write(&raw_path, &raw).unwrap();
    let (q_path, deq_path, raw_deq) = (dir.join("out.q"), dir.join("out.deq"), dir.join("raw.deq"));
    let jobs = serde_json::json!([
        {"op": "quantize", "type": ty.ggml_id(), "n_per_row": n_per_row, "input": input, "imatrix": null, "output": q_path},
        {"op": "dequantize", "type": ty.ggml_id(), "n": data.len(), "input": q_path, "output": deq_path},
        {"op": "dequantize", "type": ty.ggml_id(), "n": raw.len() / 17 * 32, "input": raw_path, "output": raw_deq},
    ]);
    run_oracle_batch(&python, "ggml_oracle.py", &jobs, &dir.join("jobs.json"));
    let expected = std::fs::read(&q_path).unwrap();
    let mut actual = vec![0u8; expected.len()];
    quantize(ty, &data, n_per_row, None, &mut actual).unwrap();
    let blocks = data.len() / 32;
    if let Some(b) = (0..blocks).find(|&b| expected[b * 17..][..17] != actual[b * 17..][..17]) {
        panic!(
            "block {b} (values {:?}): ggml {:02x?} kiln {:02x?}",
            &data[b * 32..][..32],
            &expected[b * 17..][..17],
            &actual[b * 17..][..17]
        );
    }
    for (q, deq) in [(&expected, &deq_path), (&raw, &raw_deq)] {
        let want: Vec<u32> = std::fs::read(deq)
            .unwrap()
            .chunks(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut got = vec![0f32; q.len() / 17 * 32];
        dequantize(ty, q, &mut got).unwrap();
        assert_eq!(want.len(), got.len());
        if let Some(i) = got.iter().zip(&want).position(|(a, e)| a.to_bits() != *e) {
            panic!(
                "dequantize element {i}: ggml {:e} kiln {:e}",
                f32::from_bits(want[i]),
                got[i]
            );
        }
    }
    eprintln!(
        "{blocks} MXFP4 boundary blocks and {} arbitrary blocks identical to ggml",
        raw.len() / 17
    );
}
