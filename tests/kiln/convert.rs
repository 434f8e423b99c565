//! kiln's safetensors converter against Ollama's: Ollama's own fixture for
//! sentence-transformers/all-MiniLM-L6-v2 (`convert/testdata/all-MiniLM-L6-v2.json`, vendored in
//! `testdata/ollama-convert/`) lists every metadata value its converter writes — arrays as the
//! SHA-256 of their Go JSON — and the SHA-256 of every tensor's bytes. The model folder is the
//! real one, as packaged on PyPI (installed by `scripts/setup-oracle.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln::convert::{Conversion, ModelFolder};
use kiln_gguf::{Gguf, Limits, Value};
use kiln_testkit::TempDir;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Go's `fmt.Sprintf("%v", f)` for a float32: the shortest decimal, in exponent form when the
/// exponent is below -4 or at least 21 digits... of precision 6 (Go's %g rule for shortest).
fn go_percent_v_f32(f: f32) -> String {
    let e = format!("{f:e}"); // shortest digits, e.g. "1e-12", "1.5e3"
    let (mantissa, exp) = e.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    if exp < -4 || exp >= 6.max(mantissa.replace(['.', '-'], "").len() as i32) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// How Ollama's fixture generator prints a metadata value: scalars with `%v`, arrays as the
/// SHA-256 of `json.Marshal`.
fn ollama_form(value: &Value<'_>) -> String {
    match value {
        Value::U32(v) => v.to_string(),
        Value::I32(v) => v.to_string(),
        Value::F32(v) => go_percent_v_f32(*v),
        Value::Bool(v) => v.to_string(),
        Value::String(s) => s.to_string(),
        Value::Array(a) => {
            // Float arrays stay f32 so Go's float32 formatting applies.
            let json = if let Some(Value::F32(_)) = a.iter().next() {
                let floats: Vec<f32> = a
                    .iter()
                    .map(|v| match v {
                        Value::F32(f) => f,
                        other => panic!("mixed array item {other:?}"),
                    })
                    .collect();
                kiln_api::try_to_go_json(&floats).unwrap()
            } else {
                let items: Vec<serde_json::Value> = a
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => serde_json::Value::String(s.to_string()),
                        Value::I32(v) => v.into(),
                        Value::U32(v) => v.into(),
                        other => panic!("unexpected array item {other:?}"),
                    })
                    .collect();
                kiln_api::try_to_go_json(&items).unwrap()
            };
            hex(&Sha256::digest(json))
        }
        other => panic!("unexpected value {other:?}"),
    }
}

#[test]
fn go_float_formatting() {
    assert_eq!(go_percent_v_f32(1e-12), "1e-12");
    assert_eq!(go_percent_v_f32(0.5), "0.5");
    assert_eq!(go_percent_v_f32(1e6), "1e+06");
    assert_eq!(go_percent_v_f32(123456.0), "123456");
}

#[test]
fn all_minilm_matches_ollamas_fixture() {
    let Some(dir) = kiln_testkit::minilm_folder() else {
        return;
    };
    // SAFETY: the installed package's files are not modified during the test.
    let folder = unsafe { ModelFolder::map_dir(&dir) }.unwrap();
    let conversion = Conversion::plan(&folder).unwrap();
    assert_eq!(conversion.architecture(), "BertModel");
    let out = conversion.write(Vec::new()).unwrap();
    assert_eq!(out.len() as u64, conversion.output_len().unwrap());

    let gguf = Gguf::parse(&out, &Limits::default()).unwrap();
    let mut actual = BTreeMap::new();
    for (key, value) in gguf.metadata().iter() {
        actual.insert(key.to_string(), ollama_form(value));
    }
    for tensor in gguf.tensors() {
        actual.insert(
            tensor.name().to_string(),
            hex(&Sha256::digest(tensor.data())),
        );
    }

    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ollama-convert/all-MiniLM-L6-v2.json");
    let expected: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    assert!(expected.len() > 100, "the fixture lists every tensor");
    let mismatches: Vec<String> = expected
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: Ollama {v}, kiln {:?}", actual.get(k)))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Ollama's file layout: keys sorted, tensors by layer then name, every tensor F32 or F16.
    let keys: Vec<String> = gguf.metadata().iter().map(|(k, _)| k.to_string()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let names: Vec<&str> = gguf.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names.first(), Some(&"blk.0.attn_k.bias"));
    assert_eq!(names.last(), Some(&"token_types.weight"));
    assert_eq!(names.len(), 101, "pooler and position_ids are left out");
}

/// `POST /api/create` with the folder's files as uploaded blobs, as `ollama create` sends a
/// safetensors directory: converted, then validated or quantized by the same llama.cpp-identical
/// path as an uploaded GGUF. The final model layer must equal what llama.cpp's
/// `llama_model_quantize` makes of the converted file (Ollama runs exactly that on its own
/// converter's output). The conversion runs inside the quantization, so the F16 GGUF is never
/// stored: the store's disk high-water mark is the uploads plus the output, not more.
#[test]
fn create_from_safetensors_files_converts_then_quantizes_like_ollama() {
    let Some(dir) = kiln_testkit::minilm_folder() else {
        return;
    };
    let python = kiln_testkit::oracle_python().unwrap();
    let tmp = TempDir::new("convert-create");
    let work = tmp.path();

    // SAFETY: the installed package's files are not modified during the test.
    let folder = unsafe { ModelFolder::map_dir(&dir) }.unwrap();
    let converted = work.join("converted.gguf");
    std::fs::write(
        &converted,
        Conversion::plan(&folder)
            .unwrap()
            .write(Vec::new())
            .unwrap(),
    )
    .unwrap();
    let jobs = [
        serde_json::json!({"op": "quantize", "input": converted, "output": work.join("llama-q8_0.gguf"), "ftype": 7}),
        serde_json::json!({"op": "quantize", "input": converted, "output": work.join("llama-copy.gguf"), "ftype": 0, "only_copy": true}),
    ];
    kiln_testkit::run_llama_oracle(&python, &jobs, work);

    let store = kiln_store::Store::open(work.join("models")).unwrap();
    let engine = kiln::create::Engine::new(store.clone()).with_threads(2);
    let files = upload_folder(&store, &dir);
    let uploads: Vec<String> = files.values().cloned().collect();
    let blobs_dir = work.join("models/blobs");
    // Every byte under blobs/, temporary files included.
    let disk_use = || -> u64 {
        std::fs::read_dir(&blobs_dir)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let converted_len = std::fs::metadata(&converted).unwrap().len();

    for (tag, quantize, expected) in [
        ("minilm:q8_0", "q8_0", "llama-q8_0.gguf"),
        ("minilm:f16", "", "llama-copy.gguf"),
        // The conversion's own type: kept as converted, written once with byte progress.
        ("minilm:asis", "f16", "converted.gguf"),
    ] {
        let before = disk_use();
        let mut peak = before;
        let request: kiln_api::CreateRequest = serde_json::from_value(serde_json::json!({
            "model": tag, "files": files, "quantize": quantize,
        }))
        .unwrap();
        let mut statuses = Vec::new();
        let mut progress = Vec::new();
        engine
            .create(request, &mut |p| {
                peak = peak.max(disk_use());
                if p.status == "converting model" && p.total > 0 {
                    progress.push((p.completed, p.total));
                }
                if statuses.last() != Some(&p.status) {
                    statuses.push(p.status);
                }
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(statuses[0], "converting model", "{statuses:?}");
        assert_eq!(statuses.last().map(String::as_str), Some("success"));
        let next = match quantize {
            "q8_0" => "quantizing F16 model to Q8_0",
            "" => "validating GGUF model",
            _ => "using existing layer",
        };
        assert!(
            statuses[1].starts_with(next),
            "{tag}: {next} should follow converting model: {statuses:?}"
        );
        if quantize == "f16" {
            // Byte progress through the whole converted file, ending complete.
            let (done, total) = *progress.last().unwrap();
            assert_eq!((done, total), (converted_len as i64, converted_len as i64));
            assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0));
        } else {
            // One pass: nothing is written before the quantizer's output, so there is no
            // conversion progress to report (Ollama sends none either).
            assert!(progress.is_empty(), "{tag}: {progress:?}");
        }

        let name = kiln_store::ModelName::parse(tag).unwrap();
        let manifest = store.manifest(&name).unwrap().manifest;
        let model = manifest
            .layers
            .iter()
            .find(|l| l.media_type == "application/vnd.ollama.image.model")
            .unwrap();
        let blob = std::fs::read(store.blob_path(&model.digest().unwrap())).unwrap();
        let oracle = std::fs::read(work.join(expected)).unwrap();
        assert!(
            blob == oracle,
            "{tag}: the model layer differs from llama.cpp's output"
        );
        // Disk high-water mark, sampled at every progress line (the quantizer's at each
        // tensor): what was stored before, plus at most the model, its config and the
        // small layers. An F16 intermediate (larger than the output) would break it.
        let grown = peak - before;
        assert!(
            grown <= blob.len() as u64 + 64 * 1024,
            "{tag}: the store grew by {grown} bytes for a {} byte model",
            blob.len()
        );
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.blob_path(&manifest.config.digest().unwrap())).unwrap(),
        )
        .unwrap();
        assert_eq!(config["model_family"], "bert");
    }
    // Only the uploads, the two models and their configs are stored: no converted F16 left over.
    let mut referenced: Vec<String> = uploads;
    for tag in ["minilm:q8_0", "minilm:f16", "minilm:asis"] {
        let manifest = store
            .manifest(&kiln_store::ModelName::parse(tag).unwrap())
            .unwrap()
            .manifest;
        referenced.extend(manifest.digests().map(str::to_owned));
    }
    referenced.sort();
    referenced.dedup();
    let mut stored: Vec<String> = std::fs::read_dir(work.join("models/blobs"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .replacen('-', ":", 1)
        })
        .collect();
    stored.sort();
    assert_eq!(stored, referenced);
}

/// Stores every file under `dir` as a blob, as a client uploads a folder: Ollama's `files` map
/// (path relative to the folder, `/`-separated → digest).
fn upload_folder(store: &kiln_store::Store, dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in walk(dir) {
        let rel = entry
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(&entry).unwrap();
        let digest = store.write_blob(&bytes[..], None).unwrap().digest;
        files.insert(rel, digest.to_string());
    }
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// kiln's Llama conversion against llama.cpp's own converter (`convert_hf_to_gguf.py`, golden
/// vectors from `scripts/oracle/gen_convert_golden.py`) on the synthetic Llama of
/// `scripts/oracle/hf_llama.py`, from F32 and from BF16 weights with a byte-level BPE
/// `tokenizer.json`, and from F32 weights with a SentencePiece `tokenizer.model`: every tensor's
/// type, shape and bytes (rotary row regrouping of q/k included), the vocabulary (with scores for
/// SentencePiece) and merges; rope frequency factors to float32 precision; and llama.cpp's logits
/// of kiln's file against those of its own. The same for a Qwen2 (q/k/v biases) from BF16, and
/// for Gemma, Gemma 2 and Gemma 3 text models from F32 (norm weights shifted by one, tied
/// embeddings, Gemma 3's embedding rows past the vocabulary dropped), and for a Phi-3 (fused qkv
/// and gate_up, longrope factors), an OLMo 3 (post-norms, sliding-window layers, yarn) and a
/// Ministral 3 (q/k regrouping with a head size that is not hidden / heads, yarn
/// rope_parameters with Llama 4 temperature scaling) and a Command-R (one layer norm per layer,
/// tied embeddings) from BF16. Each conversion, quantized to Q4_K_M by kiln, equals
/// llama.cpp's Q4_K_M of it. A Gemma3ForConditionalGeneration converts its text model exactly as
/// llama.cpp does and its SigLIP tower and projector as Ollama's converter names and stores them.
/// A GPT-OSS (BF16, experts in OpenAI's MXFP4 blocks and scales) converts to llama.cpp's bytes
/// exactly: experts regrouped into ggml's MXFP4 blocks, gate and up split by row, the fused
/// bias by column; kiln, like llama.cpp, refuses to quantize its MXFP4 experts again. A Qwen 3.5
/// text model (`Qwen3_5ForConditionalGeneration`, from F32: a gated delta-net layer and a
/// full-attention layer) converts to llama.cpp's bytes: value heads of the linear-attention
/// weights reordered by row and by column, `-exp(A_log)`, norms shifted by one, the convolution
/// squeezed to 2-D; with a multi-token-prediction layer too, which becomes block 2; and a
/// Qwen 3.5 mixture of experts (`Qwen3_5MoeForConditionalGeneration`), one layer's experts
/// stacked from one tensor per expert, the other's fused gate/up split, the shared expert's
/// gate stored F16 as Ollama stores it (llama.cpp's values, rounded).
#[test]
fn causal_lms_match_llama_cpps_converter() {
    let Some(python) = kiln_testkit::oracle_python() else {
        return;
    };
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/convert-golden/llama.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let tmp = TempDir::new("convert-llama");
    let work = tmp.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/hf_llama.py");
    let tokens = golden["tokens_for_logits"].clone();
    let mut jobs = Vec::new();
    let mut quantized = Vec::new();
    let mut copied = Vec::new();
    let cases: [(&str, &[&str]); 18] = [
        ("f32", &["f32"]),
        ("bf16", &["bf16"]),
        ("spm", &["f32", "spm"]),
        ("qwen2", &["bf16", "qwen2"]),
        ("gemma", &["f32", "gemma"]),
        ("gemma2", &["f32", "gemma2"]),
        ("gemma3", &["f32", "gemma3"]),
        ("phi3", &["bf16", "phi3"]),
        ("gemma3v", &["f32", "gemma3v"]),
        ("olmo3", &["bf16", "olmo3"]),
        ("ministral3", &["bf16", "ministral3"]),
        ("cohere", &["bf16", "cohere"]),
        ("gptoss", &["bf16", "gptoss"]),
        ("qwen35", &["f32", "qwen35"]),
        ("qwen35mtp", &["f32", "qwen35mtp"]),
        ("qwen35moe", &["f32", "qwen35moe"]),
        ("qwen35v", &["f32", "qwen35v"]),
        ("qwen3vl", &["f32", "qwen3vl"]),
    ];
    for (dtype, make_args) in cases {
        let folder = work.join(dtype);
        let status = std::process::Command::new(&python)
            .arg(&script)
            .args(["make"])
            .arg(&folder)
            .args(make_args)
            .status()
            .unwrap();
        assert!(status.success());
        // SAFETY: the folder was just written and is not modified while it is read.
        let mapped = unsafe { ModelFolder::map_dir(&folder) }.unwrap();
        let conversion = Conversion::plan(&mapped).unwrap();
        let out = conversion.write(Vec::new()).unwrap();
        let path = work.join(format!("kiln-{dtype}.gguf"));
        std::fs::write(&path, &out).unwrap();
        let gguf = Gguf::parse(&out, &Limits::default()).unwrap();
        // GPT-OSS keeps its experts in MXFP4: llama.cpp refuses to quantize that again without
        // --allow-requantize (and Ollama refuses any quantize of it), and so does kiln.
        let mxfp4 = dtype == "gptoss";
        if mxfp4 {
            let err = kiln::quantize_conversion(
                &conversion,
                &mut Vec::new(),
                kiln::FileType::Q4_K_M,
                &kiln::QuantizeOptions::default(),
                &mut kiln::NoProgress,
            )
            .unwrap_err();
            assert!(
                matches!(err, kiln::QuantizeError::RequantizeNotAllowed { .. }),
                "{err}"
            );
        }
        // One pass (converted while quantized, nothing written in between) gives the two-step
        // bytes for every kind of target: k-quants with their fallbacks, legacy, float, COPY.
        for ftype in [
            kiln::FileType::Q4_K_M,
            kiln::FileType::Q3_K_S,
            kiln::FileType::Q8_0,
            kiln::FileType::Q4_0,
            kiln::FileType::BF16,
            kiln::FileType::Copy,
        ]
        .into_iter()
        .filter(|&f| !mxfp4 || f == kiln::FileType::Copy)
        {
            let options = kiln::QuantizeOptions {
                threads: 2,
                ..Default::default()
            };
            let mut two_step = Vec::new();
            kiln::quantize_gguf(&gguf, &mut two_step, ftype, &options, &mut kiln::NoProgress)
                .unwrap();
            let mut one_pass = Vec::new();
            kiln::quantize_conversion(
                &conversion,
                &mut one_pass,
                ftype,
                &options,
                &mut kiln::NoProgress,
            )
            .unwrap();
            assert!(
                one_pass == two_step,
                "{dtype} {ftype:?}: one pass differs from convert-then-quantize"
            );
        }

        let expected = &golden[dtype];
        let tensors = expected["tensors"].as_object().unwrap();
        // A vision model's tower and projector, from numpy (llama.cpp writes them elsewhere).
        let empty = serde_json::Map::new();
        let vision = expected["vision"].as_object().unwrap_or(&empty);
        assert_eq!(
            gguf.tensors().len(),
            tensors.len() + vision.len(),
            "{dtype}: tensor count"
        );
        for t in gguf.tensors() {
            let want = tensors
                .get(t.name())
                .or_else(|| vision.get(t.name()))
                .unwrap_or_else(|| panic!("{dtype}: unexpected tensor {}", t.name()));
            // Where Ollama stores a tensor otherwise than llama.cpp (a shared-expert gate, F16
            // as every 2-D weight): llama.cpp's values in Ollama's type.
            let want = want.get("ollama").unwrap_or(want);
            assert_eq!(
                t.ggml_type().name().unwrap().to_ascii_uppercase(),
                want["type"].as_str().unwrap(),
                "{dtype} {}",
                t.name()
            );
            assert_eq!(
                t.dims(),
                want["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect::<Vec<_>>(),
                "{dtype} {}",
                t.name()
            );
            if t.name() == "rope_freqs.weight" {
                for (got, want) in t
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .zip(want["values"].as_array().unwrap())
                {
                    let want = want.as_f64().unwrap() as f32;
                    assert!(
                        (got - want).abs() <= want.abs() * 1e-6,
                        "rope factor {got} vs {want}"
                    );
                }
            } else {
                assert_eq!(
                    hex(&Sha256::digest(t.data())),
                    want["sha256"].as_str().unwrap(),
                    "{dtype} {} bytes",
                    t.name()
                );
            }
        }
        for key in [
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
        ] {
            let ours = gguf.metadata().get(key).and_then(Value::as_array);
            let Some(want) = expected[key].as_str() else {
                // llama.cpp writes no scores for BPE vocabularies (Ollama scores them by id);
                // neither writes merges for SentencePiece.
                if key == "tokenizer.ggml.merges" {
                    assert!(ours.is_none(), "{dtype}: unexpected merges");
                }
                continue;
            };
            let items: Vec<String> = ours
                .unwrap_or_else(|| panic!("{dtype}: {key} missing"))
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.to_string(),
                    Value::I32(n) => n.to_string(),
                    Value::F32(f) => format!("{:?}", f64::from(f)),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                hex(&Sha256::digest(items.join("\n"))),
                want,
                "{dtype} {key}"
            );
        }
        match (conversion.projector(), expected.get("projector")) {
            (Some(projector), Some(want)) => projector_matches(dtype, projector, want, &gguf),
            (None, None) => {}
            (got, _) => panic!("{dtype}: projector {}", got.is_some()),
        }
        if let Some(want) = expected.get("text_metadata") {
            // The architecture's keys exactly as Ollama's converter writes them.
            let arch = format!("{}.", gguf.metadata().architecture().unwrap());
            let entries: Vec<(&str, &Value<'_>)> = gguf
                .metadata()
                .iter()
                .filter(|(k, _)| k.starts_with(&arch))
                .collect();
            metadata_matches(dtype, "model", &entries, want);
        }
        if expected["logits"].is_null() {
            // llama.cpp cannot load a text model with its vision tower embedded; Ollama keeps
            // the tower out of llama-quantize and copies it back.
            vision_tower_kept_as_ollama_keeps_it(&python, &folder, &out, &work.join(dtype));
            continue;
        }
        jobs.push(serde_json::json!({"op": "logits", "model": path,
            "output": work.join(format!("logits-{dtype}.f32")), "tokens": tokens}));
        if mxfp4 {
            // Ollama's validation of a conversion it does not quantize: llama.cpp's COPY.
            jobs.push(serde_json::json!({"op": "quantize", "input": path,
                "output": work.join(format!("llama-copy-{dtype}.gguf")), "ftype": 0,
                "only_copy": true}));
            // llama.cpp's MXFP4_MOE (experts kept, the rest Q8_0), its F16 of the experts
            // (requantizing allowed), and MXFP4_MOE of that F16 (experts quantized to MXFP4).
            let llama = |what: &str| work.join(format!("llama-{what}-{dtype}.gguf"));
            jobs.push(serde_json::json!({"op": "quantize", "input": path,
                "output": llama("mxfp4moe"), "ftype": 38, "threads": 2}));
            jobs.push(serde_json::json!({"op": "quantize", "input": path,
                "output": llama("f16"), "ftype": 1, "threads": 2, "allow_requantize": true}));
            jobs.push(serde_json::json!({"op": "quantize", "input": llama("f16"),
                "output": llama("f16-mxfp4moe"), "ftype": 38, "threads": 2}));
            copied.push((dtype, out.clone()));
            continue;
        }
        // What Ollama does next with its conversion: llama.cpp's Q4_K_M of it (15), which
        // kiln's quantizer must equal byte for byte (fused qkv, tied embeddings and all).
        jobs.push(serde_json::json!({"op": "quantize", "input": path,
            "output": work.join(format!("llama-q4_k_m-{dtype}.gguf")), "ftype": 15, "threads": 2}));
        let mut ours = Vec::new();
        kiln::quantize_conversion(
            &conversion,
            &mut ours,
            kiln::FileType::Q4_K_M,
            &kiln::QuantizeOptions::default(),
            &mut kiln::NoProgress,
        )
        .unwrap();
        quantized.push((dtype, ours));
    }
    kiln_testkit::run_llama_oracle(&python, &jobs, work);
    let llama_q4 = std::fs::read(work.join("llama-q4_k_m-qwen35v.gguf")).unwrap();
    projector_created_as_ollama_creates_it(&work.join("qwen35v"), &llama_q4, work);
    for (dtype, ours) in &quantized {
        let theirs = std::fs::read(work.join(format!("llama-q4_k_m-{dtype}.gguf"))).unwrap();
        assert!(
            *ours == theirs,
            "{dtype}: kiln's one-pass Q4_K_M of the folder differs from llama.cpp's of the conversion"
        );
    }
    // kiln's quantization of a GGUF held in memory.
    let quantized_gguf = |bytes: &[u8], ftype, options: &kiln::QuantizeOptions| {
        let mut out = Vec::new();
        let gguf = Gguf::parse(bytes, &Limits::default()).unwrap();
        kiln::quantize_gguf(&gguf, &mut out, ftype, options, &mut kiln::NoProgress).unwrap();
        out
    };
    for (dtype, converted) in &copied {
        let ours = quantized_gguf(
            converted,
            kiln::FileType::Copy,
            &kiln::QuantizeOptions::default(),
        );
        let theirs = std::fs::read(work.join(format!("llama-copy-{dtype}.gguf"))).unwrap();
        assert!(
            ours == theirs,
            "{dtype}: kiln's COPY differs from llama.cpp's"
        );
        let llama =
            |what: &str| std::fs::read(work.join(format!("llama-{what}-{dtype}.gguf"))).unwrap();
        let options = kiln::QuantizeOptions {
            threads: 2,
            ..Default::default()
        };
        let (conversion_folder, mut one_pass) = (work.join(dtype), Vec::new());
        // SAFETY: the folder was written by this test and is not modified.
        let mapped = unsafe { ModelFolder::map_dir(&conversion_folder) }.unwrap();
        kiln::quantize_conversion(
            &Conversion::plan(&mapped).unwrap(),
            &mut one_pass,
            kiln::FileType::MXFP4_MOE,
            &options,
            &mut kiln::NoProgress,
        )
        .unwrap();
        assert!(
            one_pass == llama("mxfp4moe"),
            "{dtype}: MXFP4_MOE differs from llama.cpp's"
        );
        let requantize = kiln::QuantizeOptions {
            allow_requantize: true,
            ..options.clone()
        };
        let f16 = quantized_gguf(converted, kiln::FileType::F16, &requantize);
        assert!(
            f16 == llama("f16"),
            "{dtype}: F16 of the MXFP4 experts differs from llama.cpp's"
        );
        let moe = quantized_gguf(&f16, kiln::FileType::MXFP4_MOE, &options);
        assert!(
            moe == llama("f16-mxfp4moe"),
            "{dtype}: MXFP4_MOE of F16 experts differs from llama.cpp's"
        );
        mxfp4_model_created_as_ollama_creates_it(&work.join(dtype), &theirs, work);
    }
    for (dtype, _) in cases {
        if golden[dtype]["logits"].is_null() {
            continue;
        }
        let got: Vec<f32> = std::fs::read(work.join(format!("logits-{dtype}.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = golden[dtype]["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{dtype}: logits differ by up to {worst}");
    }
}

/// A conversion's projector GGUF against the golden one (tensors from llama.cpp's `--mmproj`
/// conversion where Ollama agrees with it, numpy otherwise; every key as Ollama's `ProjectorKV`
/// writes it), and the model GGUF without the keys Ollama's `TextKV` drops.
fn projector_matches(
    dtype: &str,
    projector: &Conversion<'_>,
    want: &serde_json::Value,
    model: &Gguf<'_>,
) {
    let bytes = projector.write(Vec::new()).unwrap();
    assert_eq!(bytes.len() as u64, projector.output_len().unwrap());
    let p = Gguf::parse(&bytes, &Limits::default()).unwrap();
    let tensors = want["tensors"].as_object().unwrap();
    let names: Vec<&str> = p.tensors().iter().map(|t| t.name()).collect();
    let mut sorted: Vec<&str> = tensors.keys().map(String::as_str).collect();
    // Ollama's order: `blk.N.` tensors first by layer (none here: the tower's are `v.blk.N.`),
    // then by name.
    sorted.sort_unstable();
    assert_eq!(names, sorted, "{dtype}: projector tensors");
    for t in p.tensors() {
        let w = &tensors[t.name()];
        assert_eq!(
            t.ggml_type().name().unwrap().to_ascii_uppercase(),
            w["type"].as_str().unwrap(),
            "{dtype} {}",
            t.name()
        );
        let dims: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims(), dims, "{dtype} {}", t.name());
        assert_eq!(
            hex(&Sha256::digest(t.data())),
            w["sha256"].as_str().unwrap(),
            "{dtype} {} bytes",
            t.name()
        );
    }
    let entries: Vec<(&str, &Value<'_>)> = p.metadata().iter().collect();
    metadata_matches(dtype, "projector", &entries, &want["metadata"]);
    let arch = model.metadata().architecture().unwrap();
    for key in want["text_keys_removed"].as_array().unwrap() {
        let key = format!("{arch}.{}", key.as_str().unwrap());
        assert!(
            model.metadata().get(&key).is_none(),
            "{dtype}: {key} is in the model"
        );
    }
}

/// Metadata `entries` equal the golden `want` ({key: {type, value, item_type}}, gguf-py's type
/// names): the same keys in the same (sorted) order, each of the same type and value (floats
/// as their float32 values).
fn metadata_matches(
    dtype: &str,
    what: &str,
    entries: &[(&str, &Value<'_>)],
    want: &serde_json::Value,
) {
    let want = want.as_object().unwrap();
    let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
    let want_keys: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(keys, want_keys, "{dtype}: {what} keys, sorted");
    let name = |t: kiln_gguf::ValueType| match t {
        kiln_gguf::ValueType::U32 => "UINT32",
        kiln_gguf::ValueType::I32 => "INT32",
        kiln_gguf::ValueType::F32 => "FLOAT32",
        kiln_gguf::ValueType::Bool => "BOOL",
        kiln_gguf::ValueType::String => "STRING",
        kiln_gguf::ValueType::Array => "ARRAY",
        other => panic!("{other:?}"),
    };
    for (k, v) in entries {
        let w = &want[*k];
        let scalar = |v: &Value<'_>| -> serde_json::Value {
            match v {
                Value::U32(n) => (*n).into(),
                Value::I32(n) => (*n).into(),
                Value::F32(f) => f64::from(*f).into(),
                Value::Bool(b) => (*b).into(),
                Value::String(s) => s.to_string().into(),
                other => panic!("{k}: {other:?}"),
            }
        };
        let value = match v {
            Value::Array(a) => {
                assert_eq!(
                    name(a.element_type()),
                    w["item_type"].as_str().unwrap(),
                    "{dtype} {k}"
                );
                a.iter().map(|v| scalar(&v)).collect()
            }
            v => scalar(v),
        };
        assert_eq!(
            name(v.value_type()),
            w["type"].as_str().unwrap(),
            "{dtype} {k}"
        );
        assert_eq!(value, w["value"], "{dtype} {k}");
    }
}

/// `/api/create` with a Qwen 3.5 folder that has a vision tower, quantized Q4_K_M: a model
/// layer that is llama.cpp's Q4_K_M of the text conversion, then the projector layer (Ollama's
/// order), stored as converted (never quantized) and reported as a layer of its own; the
/// config's families are the model's only.
fn projector_created_as_ollama_creates_it(dir: &Path, llama_q4: &[u8], work: &Path) {
    let work = work.join("qwen35v-create");
    std::fs::create_dir_all(&work).unwrap();
    let store = kiln_store::Store::open(work.join("models")).unwrap();
    let engine = kiln::create::Engine::new(store.clone()).with_threads(2);
    let files = upload_folder(&store, dir);
    // SAFETY: the folder was written by this test and is not modified.
    let mapped = unsafe { ModelFolder::map_dir(dir) }.unwrap();
    let conversion = Conversion::plan(&mapped).unwrap();
    let projector = conversion.projector().unwrap().write(Vec::new()).unwrap();
    let projector_digest = format!("sha256:{}", hex(&Sha256::digest(&projector)));
    for (tag, layer_status) in [
        ("q35v:a", "creating new layer"),
        ("q35v:b", "using existing layer"),
    ] {
        let request: kiln_api::CreateRequest = serde_json::from_value(
            serde_json::json!({"model": tag, "files": files, "quantize": "q4_K_M"}),
        )
        .unwrap();
        let mut statuses = Vec::new();
        engine
            .create(request, &mut |p| {
                statuses.push(p.status);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(statuses[0], "converting model", "{statuses:?}");
        assert!(
            statuses.contains(&"quantizing F16 model to Q4_K_M".to_owned()),
            "{statuses:?}"
        );
        let line = format!("{layer_status} {projector_digest}");
        assert!(
            statuses.contains(&line),
            "{tag}: no {line:?} in {statuses:?}"
        );
        let name = kiln_store::ModelName::parse(tag).unwrap();
        let manifest = store.manifest(&name).unwrap().manifest;
        let media: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        assert_eq!(
            &media[..2],
            [
                "application/vnd.ollama.image.model",
                "application/vnd.ollama.image.projector"
            ],
            "{tag}: {media:?}"
        );
        let blob = |i: usize| {
            std::fs::read(store.blob_path(&manifest.layers[i].digest().unwrap())).unwrap()
        };
        assert!(
            blob(0) == llama_q4,
            "{tag}: the model layer is not llama.cpp's Q4_K_M of the text model"
        );
        assert!(
            blob(1) == projector,
            "{tag}: the projector layer is not the conversion's projector"
        );
        assert_eq!(manifest.layers[1].digest, projector_digest);
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.blob_path(&manifest.config.digest().unwrap())).unwrap(),
        )
        .unwrap();
        assert_eq!(config["model_family"], "qwen35");
        assert_eq!(config["model_families"], serde_json::json!(["qwen35"]));
        assert_eq!(config["file_type"], "Q4_K_M");
    }
}

/// `/api/create` with a GPT-OSS folder's files: without `quantize` the model layer is llama.cpp's
/// COPY of the conversion (Ollama's validation) and the config names file type 4 as Ollama's
/// `FileType.String` does ("unknown"); any `quantize` is Ollama's refusal of quantized models.
fn mxfp4_model_created_as_ollama_creates_it(folder: &Path, llama_copy: &[u8], work: &Path) {
    let store = kiln_store::Store::open(work.join("models-gptoss")).unwrap();
    let engine = kiln::create::Engine::new(store.clone()).with_threads(2);
    let files = upload_folder(&store, folder);
    let request = |quantize: &str| -> kiln_api::CreateRequest {
        serde_json::from_value(serde_json::json!({
            "model": "gpt-oss-tiny", "files": files, "quantize": quantize,
        }))
        .unwrap()
    };
    let err = engine
        .create(request("q4_K_M"), &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "quantization is only supported for F16, BF16 and F32 models"
    );
    let mut statuses = Vec::new();
    engine
        .create(request(""), &mut |p| {
            if statuses.last() != Some(&p.status) {
                statuses.push(p.status);
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert!(
        statuses.iter().any(|s| s == "validating GGUF model"),
        "{statuses:?}"
    );
    let name = kiln_store::ModelName::parse("gpt-oss-tiny").unwrap();
    let manifest = store.manifest(&name).unwrap().manifest;
    let model = manifest
        .layers
        .iter()
        .find(|l| l.media_type == "application/vnd.ollama.image.model")
        .unwrap();
    let blob = std::fs::read(store.blob_path(&model.digest().unwrap())).unwrap();
    assert!(
        blob == llama_copy,
        "the model layer differs from llama.cpp's COPY"
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.blob_path(&manifest.config.digest().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(config["model_family"], "gpt-oss");
    assert_eq!(config["file_type"], "unknown");
}

/// Ollama's fixtures for gemma-2b-it, gemma-2-2b-it, gemma-2-9b-it, Phi-3-mini-128k-instruct and
/// c4ai-command-r-v01
/// list the architecture keys its converter wrote for those models. The weights are too large
/// for CI, but those keys come from `config.json` alone: converting a folder with each model's
/// published hyperparameters (and a one-tensor stand-in for its weights) must give every
/// architecture key of the fixture, value for value, in Go's formatting.
#[test]
fn architecture_keys_match_ollamas_fixtures() {
    let phi3_factors = |step: f64| -> Vec<f64> { (0..48).map(|i| 1.0 + step * i as f64).collect() };
    let cases = [
        (
            "gemma-2b-it",
            serde_json::json!({"architectures": ["GemmaForCausalLM"], "head_dim": 256,
                "hidden_size": 2048, "intermediate_size": 16384, "max_position_embeddings": 8192,
                "num_attention_heads": 8, "num_hidden_layers": 18, "num_key_value_heads": 1,
                "rms_norm_eps": 1e-06, "rope_theta": 10000.0}),
        ),
        (
            "gemma-2-2b-it",
            serde_json::json!({"architectures": ["Gemma2ForCausalLM"], "head_dim": 256,
                "hidden_size": 2304, "intermediate_size": 9216, "max_position_embeddings": 8192,
                "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4,
                "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
                "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                "query_pre_attn_scalar": 256}),
        ),
        (
            "gemma-2-9b-it",
            serde_json::json!({"architectures": ["Gemma2ForCausalLM"], "head_dim": 256,
                "hidden_size": 3584, "intermediate_size": 14336, "max_position_embeddings": 8192,
                "num_attention_heads": 16, "num_hidden_layers": 42, "num_key_value_heads": 8,
                "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
                "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}),
        ),
        (
            "Phi-3-mini-128k-instruct",
            serde_json::json!({"architectures": ["Phi3ForCausalLM"], "hidden_size": 3072,
                "intermediate_size": 8192, "max_position_embeddings": 131072,
                "original_max_position_embeddings": 4096, "num_attention_heads": 32,
                "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05,
                "rope_theta": 10000.0, "sliding_window": 262144,
                "rope_scaling": {"type": "longrope", "long_factor": phi3_factors(0.5),
                                 "short_factor": phi3_factors(0.01)}}),
        ),
        (
            "c4ai-command-r-v01",
            serde_json::json!({"architectures": ["CohereForCausalLM"], "hidden_size": 8192,
                "intermediate_size": 22528, "layer_norm_eps": 1e-05, "logit_scale": 0.0625,
                "max_position_embeddings": 8192, "model_max_length": 131072,
                "num_attention_heads": 64, "num_hidden_layers": 40, "num_key_value_heads": 64,
                "rope_theta": 8000000.0, "use_qk_norm": false}),
        ),
    ];
    let tmp = TempDir::new("convert-keys");
    let work = tmp.path();
    for (name, config) in cases {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::write(
            dir.join("tokenizer.json"),
            r#"{"model": {"vocab": {"a": 0, "b": 1}}}"#,
        )
        .unwrap();
        // One norm weight of two F32 values: enough for a layer to exist.
        let header = br#"{"model.layers.0.input_layernorm.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut st = (header.len() as u64).to_le_bytes().to_vec();
        st.extend_from_slice(header);
        st.extend_from_slice(&[0; 8]);
        std::fs::write(dir.join("model.safetensors"), st).unwrap();

        // SAFETY: the folder was just written and is not modified while it is read.
        let folder = unsafe { ModelFolder::map_dir(&dir) }.unwrap();
        let out = Conversion::plan(&folder)
            .unwrap()
            .write(Vec::new())
            .unwrap();
        let gguf = Gguf::parse(&out, &Limits::default()).unwrap();
        let fixture: BTreeMap<String, String> = serde_json::from_slice(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("testdata/ollama-convert/{name}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let arch = &fixture["general.architecture"];
        let mut checked = 0;
        for (key, want) in &fixture {
            if !(key.starts_with(&format!("{arch}.")) || key.starts_with("general.")) {
                continue;
            }
            let got = gguf.metadata().get(key.as_str()).map(ollama_form);
            assert_eq!(got.as_deref(), Some(want.as_str()), "{name}: {key}");
            checked += 1;
        }
        assert!(checked >= 4, "{name}: only {checked} keys");
        if arch == "phi3" {
            // Ollama adds the rope factors as two F32 tensors.
            let names: Vec<&str> = gguf.tensors().iter().map(|t| t.name()).collect();
            assert_eq!(
                names,
                [
                    "blk.0.attn_norm.weight",
                    "rope_factors_long.weight",
                    "rope_factors_short.weight"
                ]
            );
            assert_eq!(gguf.tensors()[1].dims(), [48]);
        }
    }
}

/// `POST /api/create` with the files of a model folder whose conversion embeds a vision tower:
/// refused with kiln's "cannot … yet" (400), no manifest written, no blob added but the uploads.
/// A model with an embedded vision tower through the create engine, as Ollama's create handles
/// it (server/create.go, quantization.go): without `quantize` the converted file is the model
/// layer as it is (no COPY validation); with `quantize` the text tensors are exactly llama.cpp's
/// quantization of the text-only model, the tower's tensors are the conversion's bytes, and the
/// file carries the conversion's metadata with the new `general.file_type`, keys sorted, tensors
/// in the conversion's (Ollama's) order.
fn vision_tower_kept_as_ollama_keeps_it(python: &Path, dir: &Path, converted: &[u8], work: &Path) {
    std::fs::create_dir_all(work).unwrap();
    let models = work.join("models");
    let store = kiln_store::Store::open(&models).unwrap();
    let engine = kiln::create::Engine::new(store.clone()).with_threads(2);
    let files = upload_folder(&store, dir);
    let model_layer = |tag: &str| {
        let name = kiln_store::ModelName::parse(tag).unwrap();
        let manifest = store.manifest(&name).unwrap().manifest;
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.media_type == "application/vnd.ollama.image.model")
            .unwrap()
            .clone();
        std::fs::read(store.blob_path(&layer.digest().unwrap())).unwrap()
    };
    let create = |tag: &str, quantize: &str| {
        let request: kiln_api::CreateRequest = serde_json::from_value(
            serde_json::json!({"model": tag, "files": files, "quantize": quantize}),
        )
        .unwrap();
        let mut statuses = Vec::new();
        engine
            .create(request, &mut |p| {
                statuses.push(p.status);
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        statuses
    };

    let statuses = create("g3v:f16", "");
    assert!(
        !statuses.iter().any(|s| s == "validating GGUF model"),
        "{statuses:?}"
    );
    assert!(
        model_layer("g3v:f16") == converted,
        "without quantize, the model layer is the conversion"
    );

    let statuses = create("g3v:q4", "q4_K_M");
    assert!(statuses.contains(&"quantizing F16 model to Q4_K_M".to_owned()));
    let ours_bytes = model_layer("g3v:q4");
    let ours = Gguf::parse(&ours_bytes, &Limits::default()).unwrap();
    let source = Gguf::parse(converted, &Limits::default()).unwrap();

    // llama.cpp's Q4_K_M of the text-only model: the conversion without its tower. The
    // synthetic config leaves out the head counts and norm epsilon Ollama's converter reads
    // (it writes 0 and nothing), which llama.cpp's loader insists on; the values given here
    // only decide rules Q4_K_M does not have (grouped-query attention for Q2_K and IQ4).
    let mut md = source.metadata().to_vec();
    for (key, value) in [
        ("gemma3.attention.head_count", Value::U32(4)),
        ("gemma3.attention.head_count_kv", Value::U32(2)),
        ("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
    ] {
        md.retain(|(k, _)| *k != key);
        md.push((key, value));
    }
    let text: Vec<_> = source
        .tensors()
        .iter()
        .filter(|t| !t.name().starts_with("v.") && !t.name().starts_with("mm."))
        .collect();
    let specs: Vec<_> = text
        .iter()
        .map(|t| kiln_gguf::TensorSpec::new(t.name(), t.ggml_type(), t.dims().to_vec()))
        .collect();
    let mut w = kiln_gguf::Writer::new(Vec::new(), &md, &specs).unwrap();
    for t in &text {
        w.write_tensor_data(t.data()).unwrap();
    }
    let text_only = work.join("text-only.gguf");
    std::fs::write(&text_only, w.finish().unwrap()).unwrap();
    let reference = work.join("text-only-q4_k_m.gguf");
    kiln_testkit::run_llama_oracle(
        python,
        &[
            serde_json::json!({"op": "quantize", "input": text_only, "output": reference, "ftype": 15, "threads": 2}),
        ],
        work,
    );
    let theirs_bytes = std::fs::read(&reference).unwrap();
    let theirs = Gguf::parse(&theirs_bytes, &Limits::default()).unwrap();

    // Metadata: the conversion's, file type 15, keys in sorted order.
    let keys: Vec<&str> = ours.metadata().iter().map(|(k, _)| k).collect();
    let mut want: Vec<&str> = source.metadata().iter().map(|(k, _)| k).collect();
    if !want.contains(&"general.file_type") {
        want.push("general.file_type");
    }
    want.sort_unstable();
    assert_eq!(keys, want);
    for (k, v) in ours.metadata().iter() {
        if k == "general.file_type" {
            assert_eq!(v, &Value::U32(15));
        } else {
            assert_eq!(Some(v), source.metadata().get(k), "{k}");
        }
    }
    // Tensors: the conversion's order; the tower untouched; the rest llama.cpp's.
    let names = |g: &Gguf<'_>| {
        g.tensors()
            .iter()
            .map(|t| t.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&source));
    let mut tower = 0;
    for t in ours.tensors() {
        let (want_type, want_dims, want_data) =
            if t.name().starts_with("v.") || t.name().starts_with("mm.") {
                tower += 1;
                let s = source.tensor(t.name()).unwrap();
                (s.ggml_type(), s.dims(), s.data())
            } else {
                let r = theirs
                    .tensor(t.name())
                    .unwrap_or_else(|| panic!("llama.cpp wrote no {}", t.name()));
                (r.ggml_type(), r.dims(), r.data())
            };
        assert_eq!(
            (t.ggml_type(), t.dims()),
            (want_type, want_dims),
            "{}",
            t.name()
        );
        assert!(t.data() == want_data, "{}: bytes differ", t.name());
    }
    assert!(tower > 0, "the model has a vision tower");
}

/// A size target for a Hugging Face folder (`choose_mix_for_conversion`: sampled rows converted
/// as they are read, nothing written) is the mix chosen for the converted file, and kiln's
/// one-pass quantization of the folder with it equals llama.cpp's `llama_model_quantize` of the
/// conversion given the mix as tensor-type overrides.
#[test]
fn size_targets_for_a_folder_reproduce_in_llama_cpp() {
    use kiln::quantize::target::{Budget, TargetOptions, choose_mix, choose_mix_for_conversion};
    let Some(python) = kiln_testkit::oracle_python() else {
        return;
    };
    let tmp = TempDir::new("convert-target");
    let work = tmp.path();
    let folder = work.join("hf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/hf_llama.py");
    let status = std::process::Command::new(&python)
        .arg(&script)
        .arg("make")
        .arg(&folder)
        .args(["f32", "wide"])
        .status()
        .unwrap();
    assert!(status.success());
    // SAFETY: the folder was just written and is not modified while it is read.
    let mapped = unsafe { ModelFolder::map_dir(&folder) }.unwrap();
    let conversion = Conversion::plan(&mapped).unwrap();
    let converted = conversion.write(Vec::new()).unwrap();
    let converted_path = work.join("converted.gguf");
    std::fs::write(&converted_path, &converted).unwrap();
    let gguf = Gguf::parse(&converted, &Limits::default()).unwrap();
    let options = kiln::QuantizeOptions {
        threads: 2,
        ..Default::default()
    };
    let target = TargetOptions::new(Budget::BitsPerWeight(4.5));
    let mix =
        choose_mix_for_conversion(&conversion, kiln::FileType::Q4_K_M, &options, &target).unwrap();
    let from_file = choose_mix(
        std::slice::from_ref(&gguf),
        kiln::FileType::Q4_K_M,
        &options,
        &target,
    )
    .unwrap();
    assert_eq!(mix, from_file, "the folder's mix is its conversion's");
    let types: std::collections::BTreeSet<_> = mix.tensors.iter().map(|t| t.chosen).collect();
    assert!(types.len() >= 2, "a mix of one type: {types:?}");
    let mut ours = Vec::new();
    kiln::quantize_conversion(
        &conversion,
        &mut ours,
        kiln::FileType::Q4_K_M,
        &mix.apply(&options),
        &mut kiln::NoProgress,
    )
    .unwrap();
    assert_eq!(ours.len() as u64, mix.file_len);
    let overrides: Vec<serde_json::Value> = mix
        .overrides()
        .into_iter()
        .map(|(re, ty)| serde_json::json!([re, ty.0]))
        .collect();
    let theirs = work.join("llama-mix.gguf");
    kiln_testkit::run_llama_oracle(
        &python,
        &[
            serde_json::json!({"op": "quantize", "input": converted_path, "output": theirs,
            "ftype": 15, "threads": 2, "tensor_types": overrides}),
        ],
        work,
    );
    assert!(
        ours == std::fs::read(&theirs).unwrap(),
        "kiln's mix of the folder differs from llama.cpp's of the conversion"
    );
}
