//! kiln vs llama.cpp on the same whole-model job, in one run on one machine.
//!
//! `KILN_PYTHON=target/oracle-venv/bin/python cargo bench --bench model_quant`
//!
//! Builds a synthetic F16 llama model with llama.cpp's gguf-py, quantizes it to Q4_K_M with
//! `llama_model_quantize` (libllama from llama-cpp-python) and with kiln at 1 and 2 threads, checks
//! the outputs are byte-identical, and prints wall time, throughput and peak resident memory of
//! each (each side runs in its own process; both memory-map the input). It also times kiln with
//! the per-tensor error report on (`measure_error`), whose output must be the same bytes, and
//! prints what the report costs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln::{FileType, NoProgress, QuantizeOptions, quantize_model};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child mode: quantize once and print "seconds peak_kib".
fn child(input: &str, output: &str, threads: usize, measure_error: bool) {
    let options = QuantizeOptions {
        threads,
        measure_error,
        ..Default::default()
    };
    let start = Instant::now();
    quantize_model(
        Path::new(input),
        Path::new(output),
        FileType::Q4_K_M,
        &options,
        &mut NoProgress,
    )
    .expect("kiln quantize");
    println!("{} {}", start.elapsed().as_secs_f64(), peak_rss_kib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--kiln-child") {
        child(
            &args[pos + 1],
            &args[pos + 2],
            args[pos + 3].parse().unwrap(),
            args[pos + 4] == "1",
        );
        return;
    }
    let Some(python) = std::env::var_os("KILN_PYTHON").map(PathBuf::from) else {
        eprintln!("model_quant bench skipped: set KILN_PYTHON (scripts/setup-oracle.sh prints it)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("kiln-bench-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model-f16.gguf");
    let (n_embd, n_ff, n_layer, n_vocab) = (2048u64, 5632u64, 2u64, 16384u64);
    kiln_testkit::run_llama_oracle(
        &python,
        &[
            serde_json::json!({"op": "make_model", "output": model, "kind": "llama", "dtype": "f16", "n_embd": n_embd,
            "n_ff": n_ff, "n_layer": n_layer, "n_head": 16, "n_head_kv": 4, "n_vocab": n_vocab, "seed": 7}),
        ],
        &dir,
    );
    let weights = std::fs::metadata(&model).unwrap().len() / 2;
    println!(
        "model: synthetic llama F16, {:.0} M weights, {} MiB -> Q4_K_M",
        weights as f64 / 1e6,
        (weights * 2) >> 20
    );
    println!(
        "{:>8} {:>12} {:>12} {:>14} {:>14} {:>8} {:>15} {:>12}",
        "threads",
        "llama.cpp s",
        "kiln s",
        "llama.cpp MiB",
        "kiln MiB",
        "speedup",
        "kiln+report s",
        "report cost"
    );
    for threads in [1usize, 2] {
        let reference = dir.join(format!("llama-{threads}.gguf"));
        kiln_testkit::run_llama_oracle(
            &python,
            &[
                serde_json::json!({"op": "quantize", "input": model, "output": reference, "ftype": 15, "threads": threads, "repeat": 1}),
            ],
            &dir,
        );
        let timing: serde_json::Value = serde_json::from_slice(
            &std::fs::read(format!("{}.json", reference.display())).unwrap(),
        )
        .unwrap();
        let (ref_s, ref_kib) = (
            timing["seconds"].as_f64().unwrap(),
            timing["maxrss_kib"].as_u64().unwrap(),
        );
        let run_kiln_once = |output: &Path, measure: bool| {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--kiln-child",
                    model.to_str().unwrap(),
                    output.to_str().unwrap(),
                    &threads.to_string(),
                    if measure { "1" } else { "0" },
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut fields = text.split_whitespace();
            let seconds: f64 = fields.next().unwrap().parse().unwrap();
            let kib: u64 = fields.next().unwrap().parse().unwrap();
            (seconds, kib)
        };
        // Best of three runs each: one run on a shared machine varies by a fifth.
        let run_kiln = |output: &Path, measure: bool| {
            (0..3)
                .map(|_| run_kiln_once(output, measure))
                .fold((f64::INFINITY, 0u64), |(s, k), (s2, k2)| {
                    (s.min(s2), k.max(k2))
                })
        };
        let ours = dir.join(format!("kiln-{threads}.gguf"));
        let (kiln_s, kiln_kib) = run_kiln(&ours, false);
        let measured = dir.join(format!("kiln-report-{threads}.gguf"));
        let (report_s, _) = run_kiln(&measured, true);
        assert!(
            std::fs::read(&reference).unwrap() == std::fs::read(&ours).unwrap(),
            "outputs differ at {threads} threads"
        );
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&measured).unwrap(),
            "the error report changed the output at {threads} threads"
        );
        println!(
            "{threads:>8} {ref_s:>12.2} {kiln_s:>12.2} {:>14} {:>14} {:>7.2}x {report_s:>15.2} {:>11.1}%",
            ref_kib / 1024,
            kiln_kib / 1024,
            ref_s / kiln_s,
            (report_s / kiln_s - 1.0) * 100.0
        );
    }
    println!("outputs byte-identical at every thread count");
    let _ = std::fs::remove_dir_all(&dir);
}
