//! The main job with nothing to download: builds a small synthetic F16 llama model, quantizes it
//! to Q4_K_M with kiln (as `ollama create --quantize q4_K_M` would through llama-quantize), and
//! prints what happened to each tensor.
//!
//! `cargo run --release --example demo [-- TYPE]` (default TYPE: Q4_K_M)

use std::ops::ControlFlow;
use std::process::ExitCode;

use kiln::{FileType, QuantizeEvent, QuantizeOptions, quantize_model};
use kiln_gguf::{Array, GgmlType, Gguf, Limits, TensorSpec, Value, ValueType, Writer};

const N_EMBD: u64 = 512;
const N_FF: u64 = 1408;
const N_LAYER: u64 = 4;
const N_HEAD: u64 = 8;
const N_HEAD_KV: u64 = 2;
const N_VOCAB: u64 = 1024;

/// Writes a llama-shaped F16 model with pseudo-random weights.
fn write_model(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let head_dim = N_EMBD / N_HEAD;
    let u32v = |v: u64| Value::U32(v as u32);
    let metadata: Vec<(&str, Value<'static>)> = vec![
        ("general.architecture", Value::string("llama")),
        ("general.name", Value::string("kiln demo")),
        ("llama.context_length", u32v(2048)),
        ("llama.embedding_length", u32v(N_EMBD)),
        ("llama.block_count", u32v(N_LAYER)),
        ("llama.feed_forward_length", u32v(N_FF)),
        ("llama.attention.head_count", u32v(N_HEAD)),
        ("llama.attention.head_count_kv", u32v(N_HEAD_KV)),
        ("llama.rope.dimension_count", u32v(head_dim)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("general.file_type", Value::U32(1)),
        ("tokenizer.ggml.model", Value::string("llama")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(Array::new(
                ValueType::String,
                (0..N_VOCAB)
                    .map(|i| Value::string(format!("<t{i}>")))
                    .collect(),
            )),
        ),
    ];
    let mut tensors = vec![
        TensorSpec::new("token_embd.weight", GgmlType::F16, vec![N_EMBD, N_VOCAB]),
        TensorSpec::new("output_norm.weight", GgmlType::F32, vec![N_EMBD]),
        TensorSpec::new("output.weight", GgmlType::F16, vec![N_EMBD, N_VOCAB]),
    ];
    for l in 0..N_LAYER {
        let t =
            |name: &str, ty, dims: Vec<u64>| TensorSpec::new(format!("blk.{l}.{name}"), ty, dims);
        tensors.extend([
            t("attn_norm.weight", GgmlType::F32, vec![N_EMBD]),
            t("attn_q.weight", GgmlType::F16, vec![N_EMBD, N_EMBD]),
            t(
                "attn_k.weight",
                GgmlType::F16,
                vec![N_EMBD, N_HEAD_KV * head_dim],
            ),
            t(
                "attn_v.weight",
                GgmlType::F16,
                vec![N_EMBD, N_HEAD_KV * head_dim],
            ),
            t("attn_output.weight", GgmlType::F16, vec![N_EMBD, N_EMBD]),
            t("ffn_norm.weight", GgmlType::F32, vec![N_EMBD]),
            t("ffn_gate.weight", GgmlType::F16, vec![N_EMBD, N_FF]),
            t("ffn_up.weight", GgmlType::F16, vec![N_EMBD, N_FF]),
            t("ffn_down.weight", GgmlType::F16, vec![N_FF, N_EMBD]),
        ]);
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = Writer::new(file, &metadata, &tensors)?;
    let mut state = 0x9E37_79B9_u32;
    for spec in &tensors {
        let n: u64 = spec.dims.iter().product();
        let mut bytes = Vec::with_capacity(spec.n_bytes()? as usize);
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1;
            if spec.ggml_type == GgmlType::F32 {
                bytes.extend_from_slice(&(1.0 + v).to_le_bytes());
            } else {
                bytes.extend_from_slice(&kiln_quant::f32_to_f16_bits(v).to_le_bytes());
            }
        }
        writer.write_tensor_data(&bytes)?;
    }
    writer.finish()?;
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let ftype: FileType = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("Q4_K_M")
        .parse()?;
    let dir = std::env::temp_dir().join(format!("kiln-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("demo-f16.gguf");
    let output = dir.join(format!("demo-{}.gguf", ftype.name().to_ascii_lowercase()));
    println!(
        "1. writing a synthetic F16 llama model: {}",
        input.display()
    );
    write_model(&input)?;
    println!("2. quantizing to {} ({})", ftype, ftype.description());
    let start = std::time::Instant::now();
    let report = quantize_model(
        &input,
        &output,
        ftype,
        &QuantizeOptions::default(),
        &mut |_: &QuantizeEvent<'_>| ControlFlow::Continue(()),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    println!("3. tensors (llama.cpp's choice for each, byte-identical to llama-quantize):");
    for t in report
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("blk.0.") || !t.name.starts_with("blk."))
    {
        println!(
            "   {:<28} {:>5} -> {:<5} {:>9} -> {:>9} bytes",
            t.name,
            t.from.to_string(),
            t.to.to_string(),
            t.bytes_in,
            t.bytes_out
        );
    }
    let input_len = std::fs::metadata(&input)?.len();
    println!(
        "4. {} bytes -> {} bytes ({:.1}%) in {seconds:.2} s: {}",
        input_len,
        report.file_len,
        100.0 * report.file_len as f64 / input_len as f64,
        output.display()
    );
    let bytes = std::fs::read(&output)?;
    let gguf = Gguf::parse(&bytes, &Limits::default())?;
    println!(
        "5. re-read: general.file_type = {:?}, {} tensors",
        gguf.metadata().file_type()?,
        gguf.tensors().len()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
