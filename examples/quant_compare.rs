//! kiln's kernels against the real ggml on the same data, in one run, single-threaded.
//!
//! `KILN_PYTHON=target/oracle-venv/bin/python cargo run --release --example quant_compare [TYPE…]`
//!
//! With type names (`q4_0 q3_K …`) only those types are measured.
//!
//! For every type, with and without an importance matrix: ggml's `ggml_quantize_chunk` (timed inside
//! the oracle process, best of 3) and kiln's `quantize` (best of 3), the bytes checked identical, and
//! the throughput ratio printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kiln_quant::{QuantType, quantize, row_size};

const N_PER_ROW: usize = 4096;
const ROWS: usize = 128;

fn main() -> ExitCode {
    let Some(python) = std::env::var_os("KILN_PYTHON").map(PathBuf::from) else {
        eprintln!("set KILN_PYTHON (scripts/setup-oracle.sh prints it)");
        return ExitCode::from(2);
    };
    let dir = std::env::temp_dir().join(format!("kiln-quant-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    let data: Vec<f32> = (0..N_PER_ROW * ROWS).map(|_| next()).collect();
    let imatrix: Vec<f32> = (0..N_PER_ROW).map(|_| next().abs() * 20.0 + 0.01).collect();
    let input = dir.join("x.f32");
    let im_path = dir.join("im.f32");
    std::fs::write(
        &input,
        data.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(
        &im_path,
        imatrix
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let types = [
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
        QuantType::TQ2_0,
        QuantType::F16,
        QuantType::BF16,
    ];
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let types: Vec<QuantType> = types
        .into_iter()
        .filter(|ty| wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(ty.name())))
        .collect();
    if types.is_empty() {
        eprintln!("no known type among {wanted:?}");
        return ExitCode::from(2);
    }
    let mut jobs = Vec::new();
    for &ty in &types {
        for with_im in [false, true] {
            jobs.push(serde_json::json!({
                "op": "time_quantize", "type": ty.ggml_id(), "n_per_row": N_PER_ROW, "input": input,
                "imatrix": with_im.then_some(&im_path), "output": dir.join(format!("{}-{with_im}", ty.name())), "repeat": 3,
            }));
        }
    }
    let jobs_path = dir.join("jobs.json");
    std::fs::write(&jobs_path, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/ggml_oracle.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg("batch")
        .arg(&jobs_path)
        .status()
        .unwrap();
    if !status.success() {
        eprintln!("oracle failed");
        return ExitCode::FAILURE;
    }
    let weights = (N_PER_ROW * ROWS) as f64;
    println!(
        "{:<8} {:>8} {:>14} {:>14} {:>7}",
        "type", "imatrix", "ggml Mw/s", "kiln Mw/s", "ratio"
    );
    let mut all_identical = true;
    for &ty in &types {
        for with_im in [false, true] {
            let out = dir.join(format!("{}-{with_im}", ty.name()));
            let expected = std::fs::read(&out).unwrap();
            let timing: serde_json::Value =
                serde_json::from_slice(&std::fs::read(format!("{}.json", out.display())).unwrap())
                    .unwrap();
            let ggml_s = timing["seconds"].as_f64().unwrap();
            let mut dst = vec![0u8; row_size(ty, N_PER_ROW).unwrap() * ROWS];
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                quantize(
                    ty,
                    &data,
                    N_PER_ROW,
                    with_im.then_some(&imatrix[..]),
                    &mut dst,
                )
                .unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            all_identical &= dst == expected;
            let mark = if dst == expected {
                ""
            } else {
                "  BYTES DIFFER"
            };
            println!(
                "{:<8} {:>8} {:>14.1} {:>14.1} {:>6.2}x{mark}",
                ty.name(),
                if with_im { "yes" } else { "no" },
                weights / ggml_s / 1e6,
                weights / best / 1e6,
                ggml_s / best
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if all_identical {
        println!("all outputs byte-identical to ggml");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
