//! The main job with nothing to download and no Python: builds a small synthetic F16 llama model,
//! starts kiln's Ollama-compatible server in-process on a temporary models directory, uploads the
//! model as a blob over HTTP, creates a model from it, creates a Q4_K_M model `from` that (exactly
//! the request `ollama create --quantize q4_K_M` sends), then lists and shows it.
//!
//! `cargo run --release --example demo [-- TYPE]` (default TYPE: q4_K_M)

#[allow(dead_code, unused_imports)]
use std::process::ExitCode;

use kiln::FileType;
use kiln_gguf::{Array, GgmlType, TensorSpec, Value, ValueType, Writer};

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
        // A ChatML Jinja template, as Hugging Face models carry it: kiln (like Ollama) recognises
        // it and stores Ollama's Go template and stop words with the model.
        (
            "tokenizer.chat_template",
            Value::string(
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + \
                 message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt \
                 %}{{ '<|im_start|>assistant\n' }}{% endif %}",
            ),
        ),
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

/// A minimal blocking HTTP/1.1 exchange (the demo needs no HTTP client crate).
fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = String::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            body.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
    } else {
        body.push_str(rest);
    }
    Ok((status, body))
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let quantize = std::env::args().nth(1).unwrap_or_else(|| "q4_K_M".into());
    let ftype: FileType = quantize.parse()?;
    let dir = std::env::temp_dir().join(format!("kiln-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("demo-f16.gguf");
    println!(
        "1. writing a synthetic F16 llama model ({})",
        input.display()
    );
    write_model(&input)?;

    let store = kiln_store::Store::open(dir.join("models"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let app = std::sync::Arc::new(kiln_server::Server::new(kiln::create::Engine::new(
        store.clone(),
    )));
    rt.spawn(async move { axum::serve(listener, kiln_server::router(app)).await });
    println!(
        "2. kiln's Ollama-compatible server on http://{addr}, models in {}",
        store.root().display()
    );

    let bytes = std::fs::read(&input)?;
    let digest = kiln_store::Digest::of(&bytes);
    let (code, _) = http(addr, "POST", &format!("/api/blobs/{digest}"), &bytes)?;
    println!(
        "3. POST /api/blobs/{digest} ({} bytes) -> {code}",
        bytes.len()
    );

    let body = format!(r#"{{"model":"demo:f16","files":{{"demo-f16.gguf":"{digest}"}}}}"#);
    let (code, reply) = http(addr, "POST", "/api/create", body.as_bytes())?;
    println!("4. POST /api/create {body} -> {code}, streamed:");
    print_statuses(&reply);

    let body = format!(
        r#"{{"model":"demo:{}","from":"demo:f16","quantize":"{quantize}"}}"#,
        quantize.to_ascii_lowercase()
    );
    let start = std::time::Instant::now();
    let (code, reply) = http(addr, "POST", "/api/create", body.as_bytes())?;
    println!(
        "5. POST /api/create {body} -> {code}, streamed in {:.2} s:",
        start.elapsed().as_secs_f64()
    );
    print_statuses(&reply);

    let (_, tags) = http(addr, "GET", "/api/tags", b"")?;
    println!("6. GET /api/tags -> {tags}");
    let (_, show) = http(
        addr,
        "POST",
        "/api/show",
        format!(r#"{{"model":"demo:{}"}}"#, quantize.to_ascii_lowercase()).as_bytes(),
    )?;
    let details = show
        .split("\"details\":")
        .nth(1)
        .and_then(|s| s.split('}').next())
        .unwrap_or("");
    println!("7. POST /api/show -> details {details}}}");

    let name = kiln_store::ModelName::parse(&format!("demo:{}", quantize.to_ascii_lowercase()))?;
    let manifest = store.manifest(&name)?;
    println!(
        "8. on disk (Ollama's layout; `OLLAMA_MODELS={} ollama list` shows these models):",
        store.root().display()
    );
    for layer in &manifest.manifest.layers {
        println!(
            "   {} {} ({} bytes)",
            layer.media_type, layer.digest, layer.size
        );
    }
    let _ = ftype;
    rt.shutdown_background();
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

/// Prints a create's NDJSON stream, one line per distinct status.
fn print_statuses(reply: &str) {
    let mut last = String::new();
    for line in reply.lines() {
        let status = line
            .split("\"status\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or(line)
            .to_owned();
        if status != last {
            println!("   {line}");
            last = status;
        }
    }
}
