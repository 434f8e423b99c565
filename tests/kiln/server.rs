//! The reference server driven by the official Ollama Python client: upload a GGUF, create from
//! files, create a quantized model `from` it (the documented request), show, list, copy, delete,
//! version — checking the status lines, the HTTP codes, the store on disk and the quantized bytes.

#[allow(dead_code, unused_imports)]
use std::path::Path;
use std::sync::Arc;

use kiln::create::Engine;
use kiln::{FileType, NoProgress, QuantizeOptions, quantize_gguf};
use kiln_gguf::{GgmlType, Gguf, Limits, TensorSpec, Value, Writer};
use kiln_store::{MEDIA_TYPE_MODEL, ModelName, Store};
use kiln_testkit::{TempDir, oracle_python};
use serde_json::json;

/// A small F16 llama-shaped model (no general.file_type key: Ollama's COPY validation adds one).
fn synthetic_f16(path: &Path) {
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(1)),
        ("llama.block_count", Value::U32(2)),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(256)),
        ("llama.feed_forward_length", Value::U32(512)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
    ];
    let mut specs = vec![
        TensorSpec::new("token_embd.weight", GgmlType::F16, vec![256, 128]),
        TensorSpec::new("output_norm.weight", GgmlType::F32, vec![256]),
        TensorSpec::new("output.weight", GgmlType::F16, vec![256, 128]),
    ];
    for l in 0..2 {
        for (n, dims) in [
            ("attn_q", vec![256, 256]),
            ("attn_k", vec![256, 128]),
            ("attn_v", vec![256, 128]),
            ("attn_output", vec![256, 256]),
            ("ffn_gate", vec![256, 512]),
            ("ffn_up", vec![256, 512]),
            ("ffn_down", vec![512, 256]),
        ] {
            specs.push(TensorSpec::new(
                format!("blk.{l}.{n}.weight"),
                GgmlType::F16,
                dims,
            ));
        }
        specs.push(TensorSpec::new(
            format!("blk.{l}.attn_norm.weight"),
            GgmlType::F32,
            vec![256],
        ));
    }
    let mut w = Writer::new(std::fs::File::create(path).unwrap(), &md, &specs).unwrap();
    let mut state = 7u32;
    for s in &specs {
        let n: u64 = s.dims.iter().product();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let v = ((state >> 8) as f32 / 16_777_216.0 - 0.5) * 0.2;
                if s.ggml_type == GgmlType::F32 {
                    (1.0 + v).to_le_bytes().to_vec()
                } else {
                    kiln_quant::f32_to_f16_bits(v).to_le_bytes().to_vec()
                }
            })
            .collect();
        w.write_tensor_data(&bytes).unwrap();
    }
    w.finish().unwrap();
}

fn model_blob(store: &Store, name: &str) -> Vec<u8> {
    let m = store.manifest(&ModelName::parse(name).unwrap()).unwrap();
    let d = m
        .manifest
        .layers_of(MEDIA_TYPE_MODEL)
        .next()
        .unwrap()
        .digest()
        .unwrap();
    std::fs::read(store.blob_path(&d)).unwrap()
}

fn statuses(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in v.as_array().unwrap() {
        let s = line["status"].as_str().unwrap_or("").to_owned();
        // Collapse repeated progress lines into one.
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

#[test]
fn the_official_python_client_drives_kiln_like_ollama() {
    let Some(python) = oracle_python() else {
        return;
    };
    let tmp = TempDir::new("server");
    let dir = tmp.path();
    let gguf_path = dir.join("model.gguf");
    synthetic_f16(&gguf_path);
    let store = Store::open(dir.join("models")).unwrap();

    let (rt, addr) = start_server(&store, 2);
    let host = format!("http://{addr}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/ollama_client.py");
    let minilm = kiln_testkit::minilm_folder().unwrap();
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&host)
        .arg(&gguf_path)
        .arg(&minilm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Upload: the client computes the digest and uploads; the blob is stored under it.
    let uploaded = r["blob_digest"].as_str().unwrap();
    assert_eq!(
        uploaded,
        kiln_store::Digest::of(&std::fs::read(&gguf_path).unwrap()).to_string()
    );

    // Create from files: parse, validate (llama-quantize COPY), new layer, manifest.
    let files = statuses(&r["create_files"]);
    assert_eq!(files[0], "parsing GGUF");
    assert_eq!(files[1], "validating GGUF model");
    assert_eq!(files[2], "verifying conversion");
    assert!(
        files[3].starts_with("creating new layer sha256:"),
        "{files:?}"
    );
    assert_eq!(&files[files.len() - 2..], ["writing manifest", "success"]);
    let stored_f16 = model_blob(&store, "llama3.1:8b-instruct-fp16");
    let source = std::fs::read(&gguf_path).unwrap();
    let mut expected = Vec::new();
    let parsed = Gguf::parse(&source, &Limits::default()).unwrap();
    quantize_gguf(
        &parsed,
        &mut expected,
        FileType::Copy,
        &QuantizeOptions::default(),
        &mut NoProgress,
    )
    .unwrap();
    assert!(
        stored_f16 == expected,
        "the stored model is llama-quantize's COPY of the upload"
    );

    // Create quantized from it: Ollama's documented status sequence.
    let q = statuses(&r["create_quantized"]);
    assert_eq!(q[0], "quantizing F16 model to Q4_K_M", "{q:?}");
    let progress = r["create_quantized"][0].clone();
    assert_eq!(progress["digest"], "0000000000000000000");
    assert_eq!(progress["total"].as_u64().unwrap(), stored_f16.len() as u64);
    assert_eq!(q[1], "verifying conversion");
    assert!(q[2].starts_with("creating new layer sha256:"), "{q:?}");
    assert_eq!(&q[q.len() - 2..], ["writing manifest", "success"]);
    // The quantized blob is exactly kiln's (= llama.cpp's) Q4_K_M of the stored F16 model.
    let stored_q = model_blob(&store, "llama3.1:quantized");
    let f16 = Gguf::parse(&stored_f16, &Limits::default()).unwrap();
    let mut expected_q = Vec::new();
    let options = QuantizeOptions {
        ollama_overrides: true,
        allow_requantize: true,
        ..Default::default()
    };
    quantize_gguf(
        &f16,
        &mut expected_q,
        FileType::Q4_K_M,
        &options,
        &mut NoProgress,
    )
    .unwrap();
    assert!(stored_q == expected_q);

    assert_eq!(r["create_nostream"], json!({"status": "success"}));
    assert_eq!(r["bad_quantize"]["status"], 500);
    assert!(
        r["bad_quantize"]["error"]
            .as_str()
            .unwrap()
            .starts_with("unsupported quantization type Q9_X - supported types are F32, F16")
    );
    assert_eq!(
        r["requantize"],
        json!({"status": 500, "error": "quantization is only supported for F16, BF16 and F32 models"})
    );
    assert_eq!(
        r["bad_template"],
        json!({"status": 400, "error": "template error: template: :1: unclosed action"})
    );

    let listed: Vec<&str> = r["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let quantized = r["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "llama3.1:quantized")
        .unwrap();
    assert_eq!(quantized["quantization_level"], "Q4_K_M");
    assert_eq!(quantized["family"], "llama");
    let manifest = store
        .manifest(&ModelName::parse("llama3.1:quantized").unwrap())
        .unwrap();
    assert_eq!(quantized["digest"], manifest.digest.hex());
    assert_eq!(
        quantized["size"].as_i64().unwrap(),
        manifest.manifest.size()
    );

    assert_eq!(r["show"]["modelfile_has_system"], true);
    assert_eq!(r["show"]["quantization_level"], "Q4_K_M");
    assert_eq!(r["show"]["arch"], "llama");
    // No pooling type: a completion model, as the client reads it.
    assert!(
        r["show"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("completion")),
        "{}",
        r["show"]
    );
    assert!(
        r["show"]["parameters"]
            .as_str()
            .unwrap()
            .contains("temperature")
    );
    assert!(
        r["after_copy"]
            .as_array()
            .unwrap()
            .contains(&json!("kiln/copy:v1"))
    );
    assert_eq!(
        r["after_delete"],
        json!(["llama3.1:8b-instruct-fp16", "llama3.1:quantized"])
    );
    assert_eq!(
        r["delete_missing"],
        json!({"status": 404, "error": "model 'does-not-exist' not found"})
    );
    assert_eq!(r["ps"], json!([]));
    assert_eq!(
        r["version"],
        json!({"status": 200, "body": "{\"version\":\"0.33.0\"}", "content_type": "application/json; charset=utf-8"})
    );

    // The documented curl request streams NDJSON; the same content gives the same blob.
    assert_eq!(r["documented"]["status"], 200);
    assert_eq!(r["documented"]["content_type"], "application/x-ndjson");
    let doc = statuses(&r["documented"]["lines"]);
    assert_eq!(doc[0], "quantizing F16 model to Q4_K_M");
    assert!(
        doc.iter()
            .any(|s| s.starts_with("using existing layer sha256:")),
        "identical quantized blob is reused: {doc:?}"
    );
    assert_eq!(doc.last().unwrap(), "success");

    assert_eq!(r["head_missing_blob"], 404);
    assert!(
        r["bad_digest_upload"]["error"]
            .as_str()
            .unwrap()
            .starts_with("digest mismatch, expected")
    );
    assert_eq!(r["chat"], 501);

    // A Hugging Face folder uploaded file by file, converted and quantized in one create.
    let st = statuses(&r["create_safetensors"]);
    assert_eq!(st[0], "converting model", "{st:?}");
    assert_eq!(st[1], "quantizing F16 model to Q8_0", "{st:?}");
    assert_eq!(&st[st.len() - 2..], ["writing manifest", "success"]);
    assert_eq!(
        r["show_safetensors"],
        // Ollama's converter writes bert.pooling_type, which makes a model an embedding model
        // (and not a completion one) in Ollama's Model.Capabilities.
        json!({"arch": "bert", "quantization_level": "Q8_0", "family": "bert",
               "capabilities": ["embedding"]})
    );

    // Everything the store holds is consistent and nothing is left over.
    let report = store.verify().unwrap();
    assert!(
        report.corrupt_blobs.is_empty()
            && report.missing_blobs.is_empty()
            && report.bad_manifests.is_empty(),
        "{report:?}"
    );
    rt.shutdown_background();
}

/// Starts the reference server on an ephemeral port over `store`; returns the runtime (keep it
/// alive) and `host:port`.
fn start_server(store: &Store, threads: usize) -> (tokio::runtime::Runtime, String) {
    start_engine(Engine::new(store.clone()).with_threads(threads))
}

/// Starts the reference server over `engine`; as [`start_server`].
fn start_engine(engine: Engine) -> (tokio::runtime::Runtime, String) {
    let app = Arc::new(kiln_server::Server::new(engine));
    kiln_testkit::serve(kiln_server::router(app))
}

/// One HTTP/1.1 request over a plain socket (`Connection: close`); returns the status and body
/// (de-chunked). No client library: the test sees exactly what goes over the wire.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, rest.to_owned());
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        body.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    (status, body)
}

/// A bigger F16 model (`n` tensors of 512×512), so a quantization lasts long enough to be cut off.
fn many_tensor_model(n: usize) -> Vec<u8> {
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(1)),
    ];
    let specs: Vec<TensorSpec<'_>> = (0..n)
        .map(|i| {
            TensorSpec::new(
                format!("blk.{i}.ffn_up.weight"),
                GgmlType::F16,
                vec![512, 512],
            )
        })
        .collect();
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    for (i, _) in specs.iter().enumerate() {
        let data: Vec<u8> = (0..512 * 512)
            .flat_map(|j| {
                let v = (((i * 7919 + j * 104_729) % 2001) as f32 - 1000.0) * 1e-4;
                kiln_quant::f32_to_f16_bits(v).to_le_bytes()
            })
            .collect();
        w.write_tensor_data(&data).unwrap();
    }
    w.finish().unwrap()
}

fn blob_files(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.root().join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Uploads a 96-tensor F16 model and creates `base` from it; returns the blob listing after.
fn create_base(addr: &str, store: &Store) -> Vec<String> {
    let model = many_tensor_model(96);
    let digest = kiln_store::Digest::of(&model).to_string();
    let (status, _) = http(addr, "POST", &format!("/api/blobs/{digest}"), &model);
    assert_eq!(status, 201);
    let create = json!({"model": "base", "files": {"m.gguf": digest}, "stream": false});
    let (status, body) = http(addr, "POST", "/api/create", create.to_string().as_bytes());
    assert_eq!((status, body.trim()), (200, r#"{"status":"success"}"#));
    blob_files(store)
}

/// Starts a streaming Q4_K_M create of `cut` from `base` and reads until its first progress line;
/// returns the open connection and what was read.
fn start_quantize_stream(addr: &str) -> (std::net::TcpStream, Vec<u8>) {
    use std::io::{Read, Write};
    let body = json!({"model": "cut", "from": "base", "quantize": "q4_K_M"}).to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/create HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("quantizing F16 model to Q4_K_M") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed before any progress");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    (s, seen)
}

/// The store still holds only `base` (a cancelled create left no model).
fn assert_only_base(store: &Store) {
    let names: Vec<String> = store
        .names()
        .unwrap()
        .iter()
        .map(|n| n.display_shortest())
        .collect();
    assert_eq!(names, ["base:latest"], "the cancelled model must not exist");
}

/// A client that disconnects mid-create cancels it: no model, no new blob, no temp file. Many
/// clients at once all get their models, identical where their requests are.
#[test]
fn disconnects_cancel_and_concurrent_clients_all_succeed() {
    let tmp = TempDir::new("server-http");
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    let (_rt, addr) = start_server(&store, 1);

    let blobs_before = create_base(&addr, &store);

    // Disconnect right after the first progress line of a quantization.
    drop(start_quantize_stream(&addr));
    // The engine notices at its next progress line; wait for its cleanup.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let clean = blob_files(&store) == blobs_before;
        if clean || std::time::Instant::now() > deadline {
            assert!(clean, "blobs left behind: {:?}", blob_files(&store));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, tags) = http(&addr, "GET", "/api/tags", b"");
    assert_eq!(status, 200);
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["models"].as_array().unwrap().len(), 1);
    assert_only_base(&store);

    // Eight clients at once: four quantize the same way, four list/show meanwhile.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    let body = json!({"model": format!("q{i}"), "from": "base", "quantize": "q8_0", "stream": false});
                    http(&addr, "POST", "/api/create", body.to_string().as_bytes())
                } else {
                    let body = json!({"model": "base"});
                    http(&addr, "POST", "/api/show", body.to_string().as_bytes())
                }
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "client {i}: {body}");
    }
    let digests: Vec<Vec<u8>> = (0..8)
        .step_by(2)
        .map(|i| model_blob(&store, &format!("q{i}")))
        .collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    let report = store.verify().unwrap();
    assert!(
        report.corrupt_blobs.is_empty()
            && report.missing_blobs.is_empty()
            && report.bad_manifests.is_empty(),
        "{report:?}"
    );
}

/// The `serve` example binary (cargo builds examples before running integration tests).
fn serve_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join("serve");
    assert!(path.is_file(), "{} not built", path.display());
    path
}

/// Ctrl-C (SIGINT) while a client is streaming a quantization: the server cancels the create,
/// removes what it wrote, answers the client with an error line and exits 0, promptly.
#[cfg(unix)]
#[test]
fn ctrl_c_cancels_running_creates_and_leaves_no_partial_files() {
    use std::io::Read;
    let tmp = TempDir::new("server-sigint");
    let dir = tmp.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(serve_binary())
        .env("OLLAMA_HOST", &addr)
        .env("OLLAMA_MODELS", dir)
        .env("KILN_THREADS", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let store = Store::open(dir).unwrap();
    let blobs_before = create_base(&addr, &store);
    let (mut s, mut seen) = start_quantize_stream(&addr);
    let started = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    s.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains(r#"{"error":"create cancelled"}"#), "{text}");
    assert!(!text.contains("success"), "{text}");
    assert_eq!(blob_files(&store), blobs_before, "blobs or temp files left");
    assert_only_base(&store);
    eprintln!("shut down {took:?} after SIGINT");
}

/// The body of a plain GET to the registry (what `curl` would see).
fn registry_get(addr: &str, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    raw[split..].to_vec()
}

/// `pulling 1a2b3c…` → `pulling <digest>`: progress lines of one kind, for comparing sequences.
fn status_kinds(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in statuses(v) {
        let kind = match s.split_once(' ') {
            Some((verb, rest))
                if rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                format!("{verb} <digest>")
            }
            _ => s,
        };
        if out.last() != Some(&kind) {
            out.push(kind);
        }
    }
    out
}

#[test]
fn the_python_client_pushes_and_pulls_through_a_real_registry() {
    let Some(python) = oracle_python() else {
        return;
    };
    let Some(registry) = kiln_testkit::registry::Registry::start_or_skip(None) else {
        return;
    };
    let dir = TempDir::new("server-transfer");
    let gguf_path = dir.0.join("model.gguf");
    synthetic_f16(&gguf_path);
    let source = Store::open(dir.0.join("source")).unwrap();
    let dest = Store::open(dir.0.join("dest")).unwrap();
    let derived = Store::open(dir.0.join("derived")).unwrap();
    let (_rt_a, a) = start_server(&source, 2);
    let (_rt_b, b) = start_server(&dest, 2);
    // The implicit pull of a create's `from` has no insecure flag: the registry is listed.
    let options = kiln_registry::ClientOptions {
        insecure_hosts: vec![registry.addr.clone()],
        ..Default::default()
    };
    let (_rt_c, c) = start_engine(
        Engine::new(derived.clone())
            .with_threads(2)
            .with_registry_options(options),
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/ollama_transfer.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args([
            format!("http://{a}"),
            format!("http://{b}"),
            format!("http://{c}"),
            registry.addr.clone(),
        ])
        .arg(&gguf_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name = ModelName::parse(r["name"].as_str().unwrap()).unwrap();

    // Ollama's push lines (server/images.go PushModel): every layer, then the manifest.
    assert_eq!(
        status_kinds(&r["push"]),
        [
            "retrieving manifest",
            "pushing <digest>",
            "pushing manifest",
            "success"
        ],
        "{}",
        r["push"]
    );
    assert_eq!(r["push_again"], json!({"status": "success"}));
    // Ollama's pull lines (PullModel): manifest, each layer, verification, manifest written.
    assert_eq!(
        status_kinds(&r["pull"]),
        [
            "pulling manifest",
            "pulling <digest>",
            "verifying sha256 digest",
            "writing manifest",
            "success"
        ],
        "{}",
        r["pull"]
    );
    assert_eq!(r["pull_again"], json!({"status": "success"}));
    assert_eq!(r["list"], json!([name.display_shortest()]));

    // The pulled model is the pushed one: the manifest as the registry holds it (Ollama pushes
    // `json.Marshal(manifest)`, the stored file without its final newline, so the digests differ
    // by that byte, as they do between two Ollamas), and every blob byte for byte.
    let pushed = source.manifest(&name).unwrap();
    let pulled = dest.manifest(&name).unwrap();
    assert_eq!(pulled.manifest, pushed.manifest);
    let served = registry_get(&registry.addr, "/v2/kiln/tiny/manifests/f16");
    assert_eq!(pulled.digest, kiln_store::Digest::of(&served));
    let file = std::fs::read(
        source
            .root()
            .join("manifests")
            .join(name.host())
            .join(name.namespace())
            .join(name.model())
            .join(name.tag()),
    )
    .unwrap();
    assert_eq!(file.strip_suffix(b"\n").unwrap(), served.as_slice());
    for digest in pushed.manifest.digests() {
        let d = kiln_store::Digest::parse(digest).unwrap();
        assert_eq!(
            std::fs::read(dest.blob_path(&d)).unwrap(),
            std::fs::read(source.blob_path(&d)).unwrap()
        );
    }

    // Ollama's errors: a missing tag is streamed after `pulling manifest`, so the stream answers
    // 200 and the client raises on the error line; without streaming it is a 500.
    assert_eq!(
        r["pull_missing_tag"]["error"],
        "pull model manifest: file does not exist"
    );
    assert_eq!(
        r["pull_missing_nostream"],
        json!({"status": 500, "error": "pull model manifest: file does not exist"})
    );
    assert_eq!(
        r["pull_bad_name"],
        json!({"status": 400, "error": "invalid model name"})
    );
    assert_eq!(
        r["push_no_model"],
        json!({"status": 400, "body": {"error": "model is required"}})
    );
    assert!(
        r["push_missing_local"]["error"].is_string(),
        "{}",
        r["push_missing_local"]
    );
    assert_eq!(blob_files(&dest), {
        let mut v: Vec<String> = pushed
            .manifest
            .digests()
            .map(|d| d.replace(':', "-"))
            .collect();
        v.sort();
        v
    });

    // A create whose `from` is not local pulls it first (Ollama's parseFromModel), then
    // quantizes what it pulled.
    let kinds = status_kinds(&r["create_from_registry"]);
    assert_eq!(kinds[0], "pulling manifest", "{kinds:?}");
    let pulled_at = kinds.iter().position(|k| k == "success").unwrap();
    assert_eq!(kinds[pulled_at - 1], "writing manifest");
    assert_eq!(
        kinds[pulled_at + 1],
        "quantizing F16 model to Q8_0",
        "{kinds:?}"
    );
    assert_eq!(&kinds[kinds.len() - 2..], ["writing manifest", "success"]);
    assert_eq!(
        r["from_list"],
        json!([name.display_shortest(), "kiln/derived:q8"])
    );
    let f16 = std::fs::read(
        derived.blob_path(
            &derived
                .manifest(&name)
                .unwrap()
                .manifest
                .layers_of(MEDIA_TYPE_MODEL)
                .next()
                .unwrap()
                .digest()
                .unwrap(),
        ),
    )
    .unwrap();
    let mut expected = Vec::new();
    let options = QuantizeOptions {
        ollama_overrides: true,
        ..Default::default()
    };
    quantize_gguf(
        &Gguf::parse(&f16, &Limits::default()).unwrap(),
        &mut expected,
        FileType::Q8_0,
        &options,
        &mut NoProgress,
    )
    .unwrap();
    assert!(model_blob(&derived, "kiln/derived:q8") == expected);
}

/// `KILN_JS_CLIENT` (the directory `scripts/setup-js.sh` installs the npm `ollama` client into);
/// required like the other references when `KILN_REQUIRE_ORACLE` is set.
fn js_client() -> Option<std::path::PathBuf> {
    match std::env::var_os("KILN_JS_CLIENT") {
        Some(p) => Some(p.into()),
        None if std::env::var_os("KILN_REQUIRE_ORACLE").is_some() => {
            panic!("KILN_REQUIRE_ORACLE is set but KILN_JS_CLIENT is not: run scripts/test.sh")
        }
        None => {
            eprintln!("skipped: the JS client is not set up (scripts/setup-js.sh)");
            None
        }
    }
}

#[test]
fn the_js_client_pushes_and_pulls_through_a_real_registry() {
    let Some(client_dir) = js_client() else {
        return;
    };
    let Some(registry) = kiln_testkit::registry::Registry::start_or_skip(None) else {
        return;
    };
    let dir = TempDir::new("server-js");
    let source = Store::open(dir.0.join("source")).unwrap();
    let dest = Store::open(dir.0.join("dest")).unwrap();
    let gguf_path = dir.0.join("model.gguf");
    synthetic_f16(&gguf_path);
    let blob = source
        .write_blob(std::fs::File::open(&gguf_path).unwrap(), None)
        .unwrap();
    let name = format!("{}/kiln/js:f16", registry.addr);
    Engine::new(source.clone())
        .with_threads(2)
        .create(
            kiln_api::CreateRequest {
                model: name.clone(),
                files: Some(std::collections::BTreeMap::from([(
                    "model.gguf".to_owned(),
                    blob.digest.to_string(),
                )])),
                ..Default::default()
            },
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
    let (_rt_a, a) = start_server(&source, 2);
    let (_rt_b, b) = start_server(&dest, 2);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/ollama_transfer.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(&client_dir)
        .args([format!("http://{a}"), format!("http://{b}"), name.clone()])
        .output()
        .expect("node is needed for the JS client test (scripts/setup-js.sh)");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status_kinds(&r["push"]),
        [
            "retrieving manifest",
            "pushing <digest>",
            "pushing manifest",
            "success"
        ],
        "{}",
        r["push"]
    );
    assert_eq!(r["push_again"], json!({"status": "success"}));
    assert_eq!(
        status_kinds(&r["pull"]),
        [
            "pulling manifest",
            "pulling <digest>",
            "verifying sha256 digest",
            "writing manifest",
            "success"
        ],
        "{}",
        r["pull"]
    );
    assert_eq!(r["pull_again"], json!({"status": "success"}));
    let name = ModelName::parse(&name).unwrap();
    assert_eq!(r["list"], json!([name.display_shortest()]));
    let pushed = source.manifest(&name).unwrap().manifest;
    assert_eq!(dest.manifest(&name).unwrap().manifest, pushed);
    for digest in pushed.digests() {
        let d = kiln_store::Digest::parse(digest).unwrap();
        assert_eq!(
            std::fs::read(dest.blob_path(&d)).unwrap(),
            std::fs::read(source.blob_path(&d)).unwrap()
        );
    }
    // The error line of a stream (the client throws it without an HTTP status: the stream had
    // begun with 200), and Ollama's statuses where it answers before streaming.
    assert_eq!(
        r["pull_missing_tag"],
        json!({"status": null, "error": "pull model manifest: file does not exist"})
    );
    assert_eq!(
        r["pull_missing_nostream"],
        json!({"status": 500, "error": "pull model manifest: file does not exist"})
    );
    assert_eq!(
        r["pull_bad_name"],
        json!({"status": 400, "error": "invalid model name"})
    );
}

#[test]
fn repair_drops_corrupt_blobs_and_fetches_them_again_from_the_registry() {
    let Some(registry) = kiln_testkit::registry::Registry::start_or_skip(None) else {
        return;
    };
    let dir = TempDir::new("repair");
    let store = Store::open(dir.0.join("models")).unwrap();
    let engine = Engine::new(store.clone())
        .with_threads(2)
        .with_registry_options(kiln_registry::ClientOptions {
            retries: 2,
            backoff: std::time::Duration::from_millis(10),
            ..Default::default()
        });
    let gguf_path = dir.0.join("model.gguf");
    synthetic_f16(&gguf_path);
    let upload = store
        .write_blob(std::fs::File::open(&gguf_path).unwrap(), None)
        .unwrap();
    let create = |name: &str, system: &str| {
        engine
            .create(
                kiln_api::CreateRequest {
                    model: name.into(),
                    files: Some(std::collections::BTreeMap::from([(
                        "model.gguf".to_owned(),
                        upload.digest.to_string(),
                    )])),
                    system: system.into(),
                    ..Default::default()
                },
                &mut |_| std::ops::ControlFlow::Continue(()),
            )
            .unwrap();
    };
    // One model the registry has, one that exists only here (its registry refuses connections).
    let shared = format!("{}/kiln/shared:v1", registry.addr);
    let local = "127.0.0.1:1/kiln/local:v1";
    create(&shared, "shared");
    create(local, "local only");
    let pushed = kiln_api::PushRequest {
        model: shared.clone(),
        insecure: true,
        ..Default::default()
    };
    engine
        .push(&engine.prepare_push(&pushed).unwrap(), &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();

    // Damage: the shared model blob flips a byte; the local model loses its system blob.
    let shared_name = ModelName::parse(&shared).unwrap();
    let local_name = ModelName::parse(local).unwrap();
    let model_digest = store
        .manifest(&shared_name)
        .unwrap()
        .manifest
        .layers_of(MEDIA_TYPE_MODEL)
        .next()
        .unwrap()
        .digest()
        .unwrap();
    let good = std::fs::read(store.blob_path(&model_digest)).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    std::fs::write(store.blob_path(&model_digest), &bad).unwrap();
    let system_digest = store
        .manifest(&local_name)
        .unwrap()
        .manifest
        .layers_of(kiln_store::MEDIA_TYPE_SYSTEM)
        .next()
        .unwrap()
        .digest()
        .unwrap();
    std::fs::remove_file(store.blob_path(&system_digest)).unwrap();
    assert_eq!(store.verify().unwrap().corrupt_blobs, [model_digest]);

    let repair = engine.repair(true).unwrap();
    assert_eq!(repair.removed_corrupt, [model_digest]);
    // The model blob is shared by both models: fetched once from the registry that has it, it
    // makes both whole again for that layer.
    assert!(
        repair
            .refetched
            .iter()
            .any(|(n, d)| *n == shared_name && *d == model_digest),
        "{repair:?}"
    );
    assert_eq!(std::fs::read(store.blob_path(&model_digest)).unwrap(), good);
    // The local model's system prompt exists nowhere else: reported, and its manifest kept.
    assert_eq!(repair.broken.len(), 1, "{repair:?}");
    let (name, missing, reason) = &repair.broken[0];
    assert_eq!(
        (name, missing.as_slice()),
        (&local_name, &[system_digest][..])
    );
    assert!(!reason.is_empty());
    assert!(store.manifest(&local_name).is_ok());
    let report = store.verify().unwrap();
    assert!(report.corrupt_blobs.is_empty(), "{report:?}");
    assert_eq!(
        report.missing_blobs,
        [(local_name.display_shortest(), system_digest.to_string())]
    );
}

/// `GET /v1/models` and `/v1/models/{model}` as Ollama's OpenAI middleware answers them
/// (middleware/openai_test.go's TestListMiddleware and TestRetrieveMiddleware shapes): `data` null
/// for an empty store, `owned_by` the name's namespace, `created` the manifest's Unix time, and
/// errors in OpenAI's shape with the type by status.
#[test]
fn openai_model_endpoints_answer_as_ollamas_middleware() {
    let tmp = TempDir::new("openai-models");
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    let (rt, addr) = start_server(&store, 1);
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    let (status, body) = http(&addr, "GET", "/v1/models", b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body), json!({"object": "list", "data": null}));
    assert!(body.ends_with('\n'));

    create_base(&addr, &store);
    let (_, copied) = http(
        &addr,
        "POST",
        "/api/copy",
        br#"{"source": "base", "destination": "team/other:v1"}"#,
    );
    assert!(copied.is_empty(), "{copied}");
    let created = |name: &str| {
        let n = kiln_store::ModelName::parse(name).unwrap();
        let modified = store.manifest(&n).unwrap().modified;
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (status, body) = http(&addr, "GET", "/v1/models", b"");
    assert_eq!(status, 200);
    let mut data = json(&body)["data"].as_array().unwrap().clone();
    data.sort_by_key(|m| m["id"].as_str().unwrap().to_owned());
    assert_eq!(
        data,
        [
            json!({"id": "base:latest", "object": "model", "created": created("base"), "owned_by": "library"}),
            json!({"id": "team/other:v1", "object": "model", "created": created("team/other:v1"), "owned_by": "team"}),
        ]
    );

    let (status, body) = http(&addr, "GET", "/v1/models/base", b"");
    assert_eq!(status, 200);
    assert_eq!(
        json(&body),
        json!({"id": "base", "object": "model", "created": created("base"), "owned_by": "library"})
    );
    let (status, body) = http(&addr, "GET", "/v1/models/missing", b"");
    assert_eq!(status, 404);
    assert_eq!(
        json(&body),
        json!({"error": {"code": null, "message": "model 'missing:latest' not found", "param": null, "type": "not_found_error"}})
    );
    rt.shutdown_background();
}
