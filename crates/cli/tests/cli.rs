//! The `kiln` command as a user runs it: the built binary on a temporary models directory.

use std::path::Path;
use std::process::{Command, Output};

use kiln_gguf::{GgmlType, TensorSpec, Value, Writer};
use kiln_store::{ModelName, Store};
use kiln_testkit::TempDir;

fn kiln(models: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--models")
        .arg(models)
        .args(args)
        .env_remove("OLLAMA_HOST")
        .output()
        .expect("run kiln")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// kiln's server over `store` on an ephemeral loopback port: the runtime (keep it) and `host:port`.
fn start_server(store: &Store) -> (tokio::runtime::Runtime, String) {
    let server = std::sync::Arc::new(kiln_server::Server::new(
        kiln::create::Engine::new(store.clone()).with_threads(1),
    ));
    kiln_testkit::serve(kiln_server::router(server))
}

/// A small F16 llama GGUF.
fn small_gguf() -> Vec<u8> {
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(1)),
        ("llama.context_length", Value::U32(2048)),
        ("llama.embedding_length", Value::U32(256)),
    ];
    let specs = [
        TensorSpec::new("token_embd.weight", GgmlType::F16, vec![256, 8]),
        TensorSpec::new("blk.0.attn_q.weight", GgmlType::F16, vec![256, 256]),
    ];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    for s in &specs {
        let n = s.n_bytes().unwrap() as usize / 2;
        let data: Vec<u8> = (0..n)
            .flat_map(|i| {
                kiln_quant::f32_to_f16_bits(((i * 37 % 101) as f32 - 50.0) * 0.01).to_le_bytes()
            })
            .collect();
        w.write_tensor_data(&data).unwrap();
    }
    w.finish().unwrap()
}

/// [`small_gguf`] stored as model `base` through the engine (as an upload would be).
fn store_base(dir: &Path) -> Store {
    let bytes = small_gguf();
    let store = Store::open(dir).unwrap();
    let digest = store.write_blob(&bytes[..], None).unwrap().digest;
    let request: kiln_api::CreateRequest = serde_json::from_value(serde_json::json!({
        "model": "base", "files": {"model.gguf": digest.to_string()}
    }))
    .unwrap();
    kiln::create::Engine::new(store.clone())
        .create(request, &mut |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    store
}

#[test]
fn create_list_show_copy_remove_as_ollama_prints_them() {
    let tmp = TempDir::new("cli-models");
    let store = store_base(&tmp.0);

    let created = kiln(
        &tmp.0,
        &["create", "small:q8", "--from", "base", "-q", "q8_0"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let log = stderr(&created);
    assert!(log.contains("quantizing F16 model to Q8_0"), "{log}");
    assert!(log.contains("created small:q8"), "{log}");
    let name = ModelName::parse("small:q8").unwrap();
    assert!(store.manifest(&name).is_ok());

    let list = kiln(&tmp.0, &["list"]);
    assert!(list.status.success());
    let text = stdout(&list);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("    ID    ") && header.ends_with("MODIFIED"),
        "{text}"
    );
    let row = text.lines().find(|l| l.starts_with("small:q8")).unwrap();
    assert!(
        row.contains("Less than a second ago") || row.contains("seconds ago"),
        "{row}"
    );
    // `ls PREFIX` keeps only matching names.
    let filtered = stdout(&kiln(&tmp.0, &["ls", "SMALL"]));
    assert!(
        filtered.contains("small:q8") && !filtered.contains("base:latest"),
        "{filtered}"
    );

    let show = kiln(&tmp.0, &["show", "small:q8"]);
    let text = stdout(&show);
    assert!(text.starts_with("  Model\n"), "{text}");
    for row in [
        &["architecture", "llama"][..],
        &["context", "length", "2048"],
        &["quantization", "Q8_0"],
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("    ") && l.split_whitespace().eq(row.iter().copied())),
            "{row:?} in\n{text}"
        );
    }
    let modelfile = stdout(&kiln(&tmp.0, &["show", "small:q8", "--modelfile"]));
    assert!(modelfile.contains("\nFROM "), "{modelfile}");
    let json = kiln(&tmp.0, &["--json", "show", "small:q8"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["details"]["quantization_level"], "Q8_0");

    let cp = kiln(&tmp.0, &["cp", "small:q8", "other"]);
    assert_eq!(stdout(&cp), "copied 'small:q8' to 'other'\n");
    let rm = kiln(&tmp.0, &["rm", "other"]);
    assert_eq!(stdout(&rm), "deleted 'other'\n");
    // A copy shares every blob but its manifest: removing it frees nothing.
    assert_eq!(stderr(&rm), "freed 0 B\n");
    let blobs_before = std::fs::read_dir(tmp.0.join("blobs")).unwrap().count();
    let rm = kiln(&tmp.0, &["rm", "small:q8"]);
    let freed: u64 = std::fs::read_dir(tmp.0.join("blobs")).unwrap().count() as u64;
    assert!(freed < blobs_before as u64);
    assert!(
        stderr(&rm).starts_with("freed ") && !stderr(&rm).contains("freed 0 B"),
        "{}",
        stderr(&rm)
    );
    assert!(store.manifest(&ModelName::parse("other").unwrap()).is_err());

    // A missing model: Ollama's message, exit 1.
    let missing = kiln(&tmp.0, &["show", "nothing"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).starts_with("Error: "),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn json_progress_is_the_api_stream() {
    let tmp = TempDir::new("cli-json");
    store_base(&tmp.0);
    let out = kiln(
        &tmp.0,
        &["--json", "create", "b:q4", "--from", "base", "-q", "q4_K_M"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.first().unwrap()["status"],
        "quantizing F16 model to Q4_K_M"
    );
    assert_eq!(lines.last().unwrap()["status"], "success");
    assert!(lines.iter().any(|l| l["status"] == "writing manifest"));
}

#[test]
fn store_health_exit_codes_tell_healthy_from_broken_from_usage() {
    let tmp = TempDir::new("cli-health");
    let store = store_base(&tmp.0);
    let ok = kiln(&tmp.0, &["verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("healthy"));

    // One flipped byte in the model blob.
    let manifest = store
        .manifest(&ModelName::parse("base").unwrap())
        .unwrap()
        .manifest;
    let digest = manifest.layers[0].digest().unwrap();
    let path = store.blob_path(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let bad = kiln(&tmp.0, &["verify"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains(&format!("corrupt blob: {digest}")),
        "{}",
        stdout(&bad)
    );
    let json = kiln(&tmp.0, &["--json", "verify"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["corrupt_blobs"][0], digest.to_string());

    let dry = kiln(&tmp.0, &["gc", "--dry-run", "--grace", "0"]);
    assert!(dry.status.success());
    // The upload itself: its validated rewrite is the model layer.
    let listing = stdout(&dry);
    let summary = listing.lines().last().unwrap().to_owned();
    assert!(
        listing.contains("unreferenced blob")
            && summary.starts_with("would remove 1 files, freeing "),
        "{listing}"
    );
    let removed = stdout(&kiln(&tmp.0, &["gc", "--grace", "0"]));
    assert_eq!(
        removed.trim_end(),
        summary
            .replacen("would remove", "removed", 1)
            .replacen(", freeing", ", freed", 1)
    );

    let usage = kiln(&tmp.0, &["gc", "--grace", "soon"]);
    assert_eq!(usage.status.code(), Some(2));
    let unknown = kiln(&tmp.0, &["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2));
    let help = kiln(&tmp.0, &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("create"));
}

/// The same commands through a running server (`--host`), as the ollama command uses one: the
/// server's answers, and its errors, reach the user the same way.
#[test]
fn commands_through_a_server_with_host() {
    let tmp = TempDir::new("cli-remote");
    let store = store_base(&tmp.0);
    let (rt, addr) = start_server(&store);
    // The models directory given is empty: everything must come from the server.
    let elsewhere = TempDir::new("cli-remote-empty");
    let remote = |args: &[&str]| {
        let mut all = vec!["--host", addr.as_str()];
        all.extend_from_slice(args);
        kiln(&elsewhere.0, &all)
    };

    let created = remote(&["create", "r:q8", "--from", "base", "-q", "q8_0"]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stderr(&created).contains("quantizing F16 model to Q8_0"));
    assert!(store.manifest(&ModelName::parse("r:q8").unwrap()).is_ok());
    let list = stdout(&remote(&["list"]));
    assert!(list.lines().any(|l| l.starts_with("r:q8")), "{list}");
    let show = stdout(&remote(&["show", "r:q8", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["details"]["quantization_level"], "Q8_0");
    assert_eq!(
        stdout(&remote(&["cp", "r:q8", "r2"])),
        "copied 'r:q8' to 'r2'\n"
    );
    assert_eq!(stdout(&remote(&["rm", "r2"])), "deleted 'r2'\n");
    assert!(store.manifest(&ModelName::parse("r2").unwrap()).is_err());

    // The server's error text, from its JSON body or its error line.
    let missing = remote(&["show", "nothing"]);
    assert_eq!(missing.status.code(), Some(1));
    let local = kiln(&tmp.0, &["show", "nothing"]);
    assert_eq!(stderr(&missing), stderr(&local));
    assert!(
        stderr(&missing).starts_with("Error: model 'nothing"),
        "{}",
        stderr(&missing)
    );
    let bad = remote(&["create", "x", "--from", "base", "-q", "q9_9"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("Error: "), "{}", stderr(&bad));
    // Store health stays local.
    let verify = remote(&["verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stderr(&verify).contains("drop --host"));
    // Nothing reached the directory that was named.
    assert!(!elsewhere.0.join("manifests").exists());
    rt.shutdown_background();
}

#[test]
fn inspect_prints_a_gguf_and_names_what_is_wrong_with_a_bad_one() {
    let tmp = TempDir::new("cli-inspect");
    let store = store_base(&tmp.0);
    let manifest = store
        .manifest(&ModelName::parse("base").unwrap())
        .unwrap()
        .manifest;
    let blob = store.blob_path(&manifest.layers[0].digest().unwrap());
    let out = kiln(&tmp.0, &["inspect", blob.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("general.architecture") && text.contains("blk.0.attn_q.weight"),
        "{text}"
    );
    let json = kiln(&tmp.0, &["inspect", "--json", blob.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["tensors"].as_array().unwrap().len(), 2);
    let bad = tmp.0.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00").unwrap();
    let out = kiln(&tmp.0, &["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.gguf"), "{}", stderr(&out));
}

/// A one-layer Llama safetensors folder, as the converter tests build one.
fn llama_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 2,
        "intermediate_size": 4, "max_position_embeddings": 128, "num_attention_heads": 1,
        "num_hidden_layers": 1, "num_key_value_heads": 1, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"model": {"vocab": {"a": 0, "b": 1}}}"#,
    )
    .unwrap();
    let header = br#"{"model.layers.0.input_layernorm.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&1.5f32.to_le_bytes());
    st.extend_from_slice(&(-0.25f32).to_le_bytes());
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
}

fn model_digest(store: &Store, name: &str) -> String {
    let manifest = store
        .manifest(&ModelName::parse(name).unwrap())
        .unwrap()
        .manifest;
    manifest
        .layers
        .iter()
        .find(|l| l.media_type == kiln_store::MEDIA_TYPE_MODEL)
        .unwrap()
        .digest
        .clone()
}

/// The same model made through the library API from the same files uploaded as blobs: the
/// reference the Modelfile path must match.
fn create_through_api(store: &Store, name: &str, files: &[(&str, &Path)], quantize: &str) {
    let mut map = serde_json::Map::new();
    for (upload, path) in files {
        let bytes = std::fs::read(path).unwrap();
        let digest = store.write_blob(&bytes[..], None).unwrap().digest;
        map.insert((*upload).into(), digest.to_string().into());
    }
    let request: kiln_api::CreateRequest = serde_json::from_value(serde_json::json!({
        "model": name, "files": map, "quantize": quantize,
    }))
    .unwrap();
    kiln::create::Engine::new(store.clone())
        .create(request, &mut |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
}

/// Every blob file is referenced by some manifest: a create left no inputs behind.
fn no_stray_blobs(store: &Store) {
    let mut referenced = std::collections::BTreeSet::new();
    for m in store.list().unwrap() {
        referenced.insert(m.manifest.config.digest.replace(':', "-"));
        for l in &m.manifest.layers {
            referenced.insert(l.digest.replace(':', "-"));
        }
    }
    for entry in std::fs::read_dir(store.root().join("blobs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(referenced.contains(&name), "stray blob {name}");
    }
}

#[test]
fn create_from_a_modelfile_with_a_safetensors_folder_and_a_gguf() {
    let tmp = TempDir::new("cli-modelfile");
    let work = tmp.0.with_extension("work");
    let _ = std::fs::remove_dir_all(&work);
    llama_folder(&work.join("weights"));
    std::fs::write(work.join("small.gguf"), small_gguf()).unwrap();
    std::fs::write(
        work.join("Modelfile"),
        "# from Hugging Face weights\nfrom ./weights\nPARAMETER temperature 0.5\nPARAMETER stop <|end|>\nPARAMETER stop \"</s>\"\nSYSTEM \"\"\"You are\nterse.\"\"\"\nMESSAGE user hi there\nLICENSE MIT\n",
    )
    .unwrap();
    let models = tmp.0.join("models");
    // Run from elsewhere: paths are relative to the Modelfile, not the working directory.
    let created = kiln(
        &models,
        &[
            "create",
            "st:q8",
            "-f",
            work.join("Modelfile").to_str().unwrap(),
            "-q",
            "q8_0",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let log = stderr(&created);
    assert!(log.contains("importing model.safetensors"), "{log}");
    assert!(log.contains("created st:q8"), "{log}");

    let store = Store::open(&models).unwrap();
    no_stray_blobs(&store);
    let show = kiln(&models, &["--json", "show", "st:q8"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["system"], "You are\nterse.");
    assert_eq!(v["license"], "MIT");
    assert_eq!(v["messages"][0]["content"], "hi there");
    let params = &v["parameters"];
    assert!(
        params
            .as_str()
            .unwrap()
            .contains("temperature                    0.5"),
        "{params}"
    );
    let shown = kiln_modelfile::parse(v["modelfile"].as_str().unwrap()).unwrap();
    let stops: Vec<&str> = shown
        .commands
        .iter()
        .filter(|c| c.name == "stop")
        .map(|c| c.args.as_str())
        .collect();
    assert_eq!(stops, ["<|end|>", "</s>"]);

    // The same bytes as the API makes of the same uploads.
    let weights = work.join("weights");
    create_through_api(
        &store,
        "api:q8",
        &[
            ("model.safetensors", &weights.join("model.safetensors")),
            ("config.json", &weights.join("config.json")),
            ("tokenizer.json", &weights.join("tokenizer.json")),
        ],
        "q8_0",
    );
    assert_eq!(
        model_digest(&store, "st:q8"),
        model_digest(&store, "api:q8")
    );

    // FROM a GGUF file, without a Modelfile: --from takes a path too.
    let gguf = work.join("small.gguf");
    let created = kiln(&models, &["create", "g", "--from", gguf.to_str().unwrap()]);
    assert!(created.status.success(), "{}", stderr(&created));
    create_through_api(&store, "g-api", &[("small.gguf", &gguf)], "");
    assert_eq!(model_digest(&store, "g"), model_digest(&store, "g-api"));

    // A bad Modelfile: Ollama's message with its line, and nothing created.
    std::fs::write(
        work.join("Bad"),
        "FROM ./small.gguf\nPARAMETER temperature 0.5\nQUANTIZE q4\n",
    )
    .unwrap();
    let bad = kiln(
        &models,
        &["create", "bad", "-f", work.join("Bad").to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("(line 3): command must be one of \"from\""),
        "{}",
        stderr(&bad)
    );
    std::fs::write(
        work.join("Unknown"),
        "FROM ./small.gguf\nPARAMETER tempreature 0.5\n",
    )
    .unwrap();
    let bad = kiln(
        &models,
        &[
            "create",
            "bad",
            "-f",
            work.join("Unknown").to_str().unwrap(),
        ],
    );
    assert_eq!(stderr(&bad), "Error: unknown parameter 'tempreature'\n");
    let missing = kiln(
        &models,
        &["create", "bad", "-f", work.join("Nope").to_str().unwrap()],
    );
    assert!(stderr(&missing).contains("specified Modelfile wasn't found"));
    assert!(store.manifest(&ModelName::parse("bad").unwrap()).is_err());
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn create_from_a_modelfile_through_a_server_uploads_the_files() {
    let tmp = TempDir::new("cli-modelfile-remote");
    let work = tmp.0.with_extension("work");
    let _ = std::fs::remove_dir_all(&work);
    llama_folder(&work);
    std::fs::write(work.join("Modelfile"), "FROM .\nSYSTEM hello\n").unwrap();
    let store = Store::open(tmp.0.join("server")).unwrap();
    let (rt, addr) = start_server(&store);
    let created = kiln(
        &tmp.0.join("unused"),
        &[
            "--host",
            &addr,
            "create",
            "r",
            "-f",
            work.join("Modelfile").to_str().unwrap(),
            "-q",
            "q8_0",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    // Every file of the folder uploaded once, each reported.
    assert_eq!(
        stderr(&created).matches("copying file sha256:").count(),
        3,
        "{}",
        stderr(&created)
    );
    create_through_api(
        &store,
        "api",
        &[
            ("model.safetensors", &work.join("model.safetensors")),
            ("config.json", &work.join("config.json")),
            ("tokenizer.json", &work.join("tokenizer.json")),
        ],
        "q8_0",
    );
    assert_eq!(model_digest(&store, "r"), model_digest(&store, "api"));
    rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn quantize_reports_each_tensors_error() {
    let tmp = TempDir::new("cli-quantize");
    std::fs::create_dir_all(&tmp.0).unwrap();
    let input = tmp.0.join("in.gguf");
    std::fs::write(&input, small_gguf()).unwrap();
    let out = tmp.0.join("out.gguf");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .output()
            .unwrap()
    };
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let table = run(&["quantize", "--report", "--threads", "1", i, o, "q8_0"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("TENSOR") && header.contains("RMSE") && header.ends_with("SNR dB"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("blk.0.attn_q.weight") && l.contains("f16 -> q8_0")),
        "{text}"
    );
    assert!(text.contains("worst tensor SNR"), "{text}");
    // The same bytes as the library makes (and as llama.cpp: tests/kiln/model_quant.rs).
    let mut expected = Vec::new();
    let bytes = std::fs::read(&input).unwrap();
    let gguf = kiln_gguf::Gguf::parse(&bytes, &kiln_gguf::Limits::default()).unwrap();
    kiln::quantize_gguf(
        &gguf,
        &mut expected,
        kiln::FileType::Q8_0,
        &kiln::QuantizeOptions::default(),
        &mut kiln::NoProgress,
    )
    .unwrap();
    assert!(std::fs::read(&out).unwrap() == expected);

    let json = run(&["quantize", "--report", "--json", i, o, "Q4_K_M"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["file_type"], "Q4_K_M");
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 2);
    for t in tensors {
        let e = &t["error"];
        assert!(e["rmse"].as_f64().unwrap() > 0.0, "{t}");
        assert!(e["snr_db"].as_f64().unwrap() > 10.0, "{t}");
        assert!(e["max_abs_error"].as_f64().unwrap() >= e["rmse"].as_f64().unwrap());
    }
    assert!(v["summary"]["bits_per_weight"].as_f64().unwrap() > 4.0);

    let bad = run(&["quantize", i, o, "q9_9"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).starts_with("Error: "), "{}", stderr(&bad));
    let usage = run(&["quantize", i]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn quantize_to_a_size_target_prints_a_reproducible_mix() {
    let tmp = TempDir::new("cli-target");
    std::fs::create_dir_all(&tmp.0).unwrap();
    let input = tmp.0.join("in.gguf");
    std::fs::write(&input, small_gguf()).unwrap();
    let (i, o) = (
        input.to_str().unwrap().to_owned(),
        tmp.0.join("mix.gguf").to_str().unwrap().to_owned(),
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .output()
            .unwrap()
    };
    let json = run(&[
        "--json",
        "quantize",
        "--target-bpw",
        "5.5",
        &i,
        &o,
        "Q4_K_M",
    ]);
    assert!(json.status.success(), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let mix = &v["mix"];
    assert_eq!(mix["base"], "Q4_K_M");
    let written = std::fs::read(&o).unwrap();
    assert_eq!(written.len() as u64, mix["file_len"].as_u64().unwrap());
    assert!(v["summary"]["bits_per_weight"].as_f64().unwrap() <= 5.5);
    // The printed llama-quantize arguments are kiln quantize's too: the same bytes again.
    let args: Vec<String> = mix["llama_quantize_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let again = tmp.0.join("again.gguf");
    let mut argv = vec!["quantize".to_owned()];
    argv.extend(args[..args.len() - 1].iter().cloned());
    argv.extend([
        i.clone(),
        again.to_str().unwrap().to_owned(),
        args[args.len() - 1].clone(),
    ]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let rerun = run(&argv);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(std::fs::read(&again).unwrap() == written);

    let text = run(&["quantize", "--target-size", "1kB", &i, &o, "Q4_K_M"]);
    assert_eq!(text.status.code(), Some(1));
    assert!(
        stderr(&text).contains("the size target is too small"),
        "{}",
        stderr(&text)
    );
    let human = run(&["quantize", "--target-size", "90KiB", &i, &o, "Q4_K_M"]);
    assert!(human.status.success(), "{}", stderr(&human));
    let out = stdout(&human);
    assert!(out.contains("nearest fixed type:"), "{out}");
    assert!(
        out.contains("same bytes with llama.cpp: llama-quantize --tensor-type"),
        "{out}"
    );
    assert!(std::fs::metadata(&o).unwrap().len() <= 90 * 1024);
}

/// The documented Modelfile example (docs/modelfile.mdx, `ollama show --modelfile llama3.2`: a
/// Llama 3 template and four stop words) created from a GGUF and shown again. The documentation's
/// own output predates Ollama's current header and quoting (fb30760's routes.go:1521-1531 and
/// parser.Format), so the header is checked against routes.go and the body by parsing it back:
/// the same template and stop words, FROM the stored blob.
#[test]
fn the_documented_modelfile_round_trips_through_create_and_show() {
    let tmp = TempDir::new("cli-docs-modelfile");
    let gguf = tmp.0.join("llama3.2.gguf");
    std::fs::write(&gguf, small_gguf()).unwrap();
    let template = "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>";
    let stops = [
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|reserved_special_token",
    ];
    let mut modelfile = format!("FROM {}\nTEMPLATE \"\"\"{template}\"\"\"\n", gguf.display());
    for stop in stops {
        modelfile.push_str(&format!("PARAMETER stop \"{stop}\"\n"));
    }
    let path = tmp.0.join("Modelfile");
    std::fs::write(&path, &modelfile).unwrap();
    let models = tmp.0.join("models");
    let created = kiln(
        &models,
        &["create", "llama3.2", "-f", path.to_str().unwrap()],
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let store = Store::open(&models).unwrap();
    let manifest = store
        .manifest(&ModelName::parse("llama3.2").unwrap())
        .unwrap()
        .manifest;
    let model = manifest
        .layers
        .iter()
        .find(|l| l.media_type == kiln_store::MEDIA_TYPE_MODEL)
        .unwrap();
    let blob = store.blob_path(&model.digest().unwrap());

    let shown = kiln(&models, &["show", "llama3.2", "--modelfile"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    let header = "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM llama3.2:latest\n\n";
    assert!(text.starts_with(header), "{text}");
    let parsed = kiln_modelfile::parse(&text).unwrap();
    let mut expected = vec![
        kiln_modelfile::Command::new("model", blob.display().to_string()),
        kiln_modelfile::Command::new("template", template),
    ];
    expected.extend(
        stops
            .iter()
            .map(|s| kiln_modelfile::Command::new("stop", *s)),
    );
    assert_eq!(parsed.commands, expected);

    // The documentation's basic example on top of it: the mario blueprint.
    let mario = "FROM llama3.2
# sets the temperature to 1 [higher is more creative, lower is more coherent]
PARAMETER temperature 1
# sets the context window size to 4096, this controls how many tokens the LLM can use as context to generate the next token
PARAMETER num_ctx 4096

# sets a custom system message to specify the behavior of the chat assistant
SYSTEM You are Mario from super mario bros, acting as an assistant.
";
    let path = tmp.0.join("Mario.Modelfile");
    std::fs::write(&path, mario).unwrap();
    let created = kiln(&models, &["create", "mario", "-f", path.to_str().unwrap()]);
    assert!(created.status.success(), "{}", stderr(&created));
    let shown = stdout(&kiln(&models, &["show", "mario", "--modelfile"]));
    let mut commands = kiln_modelfile::parse(&shown).unwrap().commands;
    commands.sort_by(|a, b| (&a.name, &a.args).cmp(&(&b.name, &b.args)));
    // The base's layers and stop words are inherited; the new parameters and system are added.
    let mut want = expected.clone();
    want.push(kiln_modelfile::Command::new("temperature", "1"));
    want.push(kiln_modelfile::Command::new("num_ctx", "4096"));
    want.push(kiln_modelfile::Command::new(
        "system",
        "You are Mario from super mario bros, acting as an assistant.",
    ));
    want.sort_by(|a, b| (&a.name, &a.args).cmp(&(&b.name, &b.args)));
    assert_eq!(commands, want, "{shown}");
}

/// An F16 GGUF of `rows` rows of 8192 weights: big enough that quantizing it to Q2_K on one
/// thread takes a noticeable while, so an interrupt lands in the middle.
#[cfg(unix)]
fn big_gguf(path: &Path, rows: u64) {
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(1)),
    ];
    let specs = [TensorSpec::new(
        "blk.0.ffn_down.weight",
        GgmlType::F16,
        vec![8192, rows],
    )];
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = Writer::new(file, &md, &specs).unwrap();
    let row: Vec<u8> = (0..8192u32)
        .flat_map(|i| {
            kiln_quant::f32_to_f16_bits(((i * 37 % 101) as f32 - 50.0) * 0.01).to_le_bytes()
        })
        .collect();
    let data: Vec<u8> = (0..rows).flat_map(|_| row.iter().copied()).collect();
    w.write_tensor_data(&data).unwrap();
    w.finish().unwrap();
}

/// Starts `kiln ARGS` on one thread, waits until `ready` (asked with the stdout so far) says
/// the work has begun, sends it SIGINT, and returns its exit code, stdout and stderr.
#[cfg(unix)]
fn interrupt_when(args: &[&str], ready: impl Fn(&str) -> bool) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_THREADS", "1")
        .env_remove("OLLAMA_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready(&seen.lock().unwrap()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "kiln ended before it began: {}",
            seen.lock().unwrap()
        );
        assert!(std::time::Instant::now() < deadline, "kiln never began");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let code = child.wait().unwrap().code();
    reader.join().unwrap();
    let out = seen.lock().unwrap().clone();
    (code, out, err)
}

/// Ctrl-C during a create stops it within a chunk, exits 130 and leaves the store as it was: no
/// manifest, no blob (the imported input included), no temporary file; during `kiln quantize`
/// it leaves no output file.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_create_and_leaves_nothing_behind() {
    let tmp = TempDir::new("cli-ctrl-c");
    let models = tmp.0.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let input = tmp.0.join("big.gguf");
    big_gguf(&input, 8192);
    let m = models.to_str().unwrap();
    let i = input.to_str().unwrap();
    let args = [
        "--models", m, "--json", "create", "big", "--from", i, "-q", "q2_K",
    ];
    let (code, out, err) =
        interrupt_when(&args, |out| out.contains("quantizing F16 model to Q2_K"));
    assert_eq!(code, Some(130), "stdout {out}\nstderr {err}");
    assert!(!out.contains("\"success\""), "{out}");
    assert!(err.contains("interrupted"), "{err}");
    let store = Store::open(&models).unwrap();
    assert!(store.list().unwrap().is_empty());
    no_stray_blobs(&store);
    let mut leftovers = Vec::new();
    let mut dirs = vec![models.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                leftovers.push(path);
            }
        }
    }
    assert!(
        leftovers
            .iter()
            .all(|p| !p.starts_with(models.join("blobs"))),
        "{leftovers:?}"
    );
    assert!(
        leftovers
            .iter()
            .all(|p| !p.to_string_lossy().contains(".kiln-tmp-")),
        "{leftovers:?}"
    );

    let output = tmp.0.join("out.gguf");
    let o = output.to_str().unwrap();
    // Begun once the temporary output file is there, beside the input.
    let started = || std::fs::read_dir(&tmp.0).unwrap().count() > 2;
    let (code, out, err) = interrupt_when(&["quantize", "--json", i, o, "q2_K"], |_| started());
    assert_eq!(code, Some(130), "stdout {out}\nstderr {err}");
    assert!(!output.exists());
    let names: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A local create that replaces a model removes the old model's blobs (under the store's exclusive
/// lock) while the command still held its own create guard: it must finish, not wait for itself.
#[test]
fn recreating_a_model_from_a_file_replaces_it() {
    let tmp = TempDir::new("cli-recreate");
    let models = tmp.0.join("models");
    let input = tmp.0.join("small.gguf");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(&input, small_gguf()).unwrap();
    let i = input.to_str().unwrap();
    let first = kiln(&models, &["create", "m", "--from", i, "-q", "q8_0"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let store = Store::open(&models).unwrap();
    let old = model_digest(&store, "m");
    let second = kiln(&models, &["create", "m", "--from", i, "-q", "q4_K_M"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_ne!(model_digest(&store, "m"), old);
    no_stray_blobs(&store);
}

/// A Qwen3-VL folder: one text tensor and a two-tensor vision tower, F32.
fn qwen3vl_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"architectures": ["Qwen3VLForConditionalGeneration"],
        "text_config": {"hidden_size": 2, "num_hidden_layers": 1, "num_attention_heads": 1,
            "num_key_value_heads": 1, "head_dim": 2, "rms_norm_eps": 1e-6, "rope_theta": 1e6},
        "vision_config": {"depth": 1, "hidden_size": 2, "num_heads": 1}});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("preprocessor_config.json"),
        r#"{"patch_size": 16}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"model": {"vocab": {"a": 0, "b": 1}}}"#,
    )
    .unwrap();
    let names = [
        "model.language_model.norm.weight",
        "model.visual.merger.norm.weight",
        "model.visual.blocks.0.norm1.weight",
    ];
    let mut header = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        header.insert(
            (*name).into(),
            serde_json::json!({"dtype": "F32", "shape": [2], "data_offsets": [i * 8, i * 8 + 8]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    for i in 0..names.len() * 2 {
        st.extend_from_slice(&(i as f32).to_le_bytes());
    }
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
}

/// `kiln quantize` of a folder with a vision tower: the model without the tower, a note saying
/// where it went, and with `--mmproj FILE` the projector GGUF the library plans (the one a create
/// stores); `--mmproj` without a tower is an error that writes nothing.
#[test]
fn quantize_writes_a_folders_projector_with_mmproj() {
    let tmp = TempDir::new("cli-mmproj");
    let folder = tmp.0.join("qwen3vl");
    qwen3vl_folder(&folder);
    let (out, mmproj) = (tmp.0.join("out.gguf"), tmp.0.join("mmproj.gguf"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .output()
            .unwrap()
    };
    let (f, o, m) = (
        folder.to_str().unwrap(),
        out.to_str().unwrap(),
        mmproj.to_str().unwrap(),
    );
    let plain = run(&["quantize", f, o, "q8_0"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert!(stderr(&plain).contains("--mmproj"), "{}", stderr(&plain));
    assert!(!mmproj.exists());
    let bytes = std::fs::read(&out).unwrap();
    let model = kiln_gguf::Gguf::parse(&bytes, &kiln_gguf::Limits::default()).unwrap();
    let names: Vec<&str> = model.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["output_norm.weight"]);

    let with = run(&["quantize", "--mmproj", m, f, o, "q8_0"]);
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(!stderr(&with).contains("note:"), "{}", stderr(&with));
    // SAFETY: the folder was written by this test and is not modified.
    let mapped = unsafe { kiln::convert::ModelFolder::map_dir(&folder) }.unwrap();
    let plan = kiln::convert::Conversion::plan(&mapped).unwrap();
    let expected = plan.projector().unwrap().write(Vec::new()).unwrap();
    assert!(std::fs::read(&mmproj).unwrap() == expected);
    let p = kiln_gguf::Gguf::parse(&expected, &kiln_gguf::Limits::default()).unwrap();
    let names: Vec<&str> = p.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["v.blk.0.ln1.weight", "v.post_ln.weight"]);

    let other = tmp.0.join("llama");
    llama_folder(&other);
    let other_mm = tmp.0.join("none.gguf");
    let refused = run(&[
        "quantize",
        "--mmproj",
        other_mm.to_str().unwrap(),
        other.to_str().unwrap(),
        o,
        "q8_0",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("no vision tower"),
        "{}",
        stderr(&refused)
    );
    assert!(!other_mm.exists());
}
