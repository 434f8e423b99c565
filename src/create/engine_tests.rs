//! The create engine's tests: Ollama's behaviours, each through `Engine::create`.

use std::collections::BTreeMap;

use kiln_api::{CreateRequest, ProgressResponse};
use kiln_gguf::{GgmlType, Limits, TensorSpec, Value, Writer};
use kiln_store::{
    Digest, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE, ModelConfig, ModelName, Store,
};

use super::*;
use crate::Cancel;
use crate::quantize::{FileType, QuantizeOptions};

fn tiny_model() -> Vec<u8> {
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(1)),
    ];
    let specs = [TensorSpec::new(
        "blk.0.attn_q.weight",
        GgmlType::F16,
        vec![256, 64],
    )];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    let data: Vec<u8> = (0..256 * 64)
        .flat_map(crate::quantize::f16_for_tests)
        .collect();
    w.write_tensor_data(&data).unwrap();
    w.finish().unwrap()
}

/// A Hugging Face folder (its config, a two-token tokenizer and one safetensors file) stored as
/// blobs, by file name.
fn store_folder(
    store: &Store,
    config: &[u8],
    tensors: &[(&str, &str, &[u64], &[u8])],
) -> BTreeMap<String, Digest> {
    [
        ("config.json", config.to_vec()),
        (
            "tokenizer.json",
            br#"{"model": {"vocab": {"a": 0, "b": 1}}}"#.to_vec(),
        ),
        (
            "model.safetensors",
            crate::convert::safetensors_for_tests(tensors),
        ),
    ]
    .into_iter()
    .map(|(name, bytes)| {
        let digest = store.write_blob(&bytes[..], None).unwrap().digest;
        (name.to_owned(), digest)
    })
    .collect()
}

/// Ollama picks a renderer, parser and stop words by architecture for the request that names
/// none (create.go's switch): the request's own values win, field by field.
#[test]
fn renderer_parser_and_stop_words_by_architecture() {
    let tmp = test_support::TempStore::new("engine-renderer");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let model_of = |arch: &str| {
        let md = vec![
            ("general.architecture", Value::string(arch.to_owned())),
            ("general.file_type", Value::U32(1)),
        ];
        let specs = [TensorSpec::new(
            "blk.0.attn_q.weight",
            GgmlType::F16,
            vec![256, 2],
        )];
        let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
        w.write_tensor_data(&[0u8; 1024]).unwrap();
        store
            .write_blob(&w.finish().unwrap()[..], None)
            .unwrap()
            .digest
    };
    let create = |tag: &str, digest: Digest, extra: serde_json::Value| {
        let mut request = serde_json::json!({
            "model": tag, "files": {"model.gguf": digest.to_string()}
        });
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let request: CreateRequest = serde_json::from_value(request).unwrap();
        engine
            .create(request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let m = store
            .manifest(&ModelName::parse(tag).unwrap())
            .unwrap()
            .manifest;
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.blob_path(&m.config.digest().unwrap())).unwrap(),
        )
        .unwrap();
        let params = m
            .layers
            .iter()
            .find(|l| l.media_type == MEDIA_TYPE_PARAMS)
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(
                    &std::fs::read(store.blob_path(&l.digest().unwrap())).unwrap(),
                )
                .unwrap()
            });
        (config["renderer"].clone(), config["parser"].clone(), params)
    };
    let gemma4 = model_of("gemma4");
    assert_eq!(
        create("g4", gemma4, serde_json::json!({})),
        (
            serde_json::json!("gemma4"),
            serde_json::json!("gemma4"),
            Some(serde_json::json!({"stop": ["<turn|>"]}))
        )
    );
    assert_eq!(
        create(
            "g4b",
            gemma4,
            serde_json::json!({"parser": "mine", "parameters": {"stop": ["x"]}})
        ),
        (
            serde_json::json!("gemma4"),
            serde_json::json!("mine"),
            Some(serde_json::json!({"stop": ["x"]}))
        )
    );
    let (renderer, parser, params) =
        create("nh", model_of("nemotron_h_moe"), serde_json::json!({}));
    assert_eq!(
        (renderer, parser),
        (
            serde_json::json!("nemotron-3-nano"),
            serde_json::json!("nemotron-3-nano")
        )
    );
    assert_eq!(params, None);
    let (renderer, _, params) = create("ll", model_of("llama"), serde_json::json!({}));
    assert!(renderer.is_null() || renderer == "", "{renderer}");
    assert_eq!(params, None);
}

/// A model converted from FP8 weights is made Q8_0 when the create asks for no type, as
/// Ollama's create does; asked for a type, it gets that one.
#[test]
fn fp8_conversions_default_to_q8_0() {
    let tmp = test_support::TempStore::new("engine-fp8");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let weight: Vec<u8> = (0..64 * 64).map(|i| (i % 120) as u8).collect();
    let scale: Vec<u8> = [0.01f32].iter().flat_map(|f| f.to_le_bytes()).collect();
    let norm = vec![0u8; 64 * 4];
    let tensors: [(&str, &str, &[u64], &[u8]); 3] = [
        (
            "model.layers.0.mlp.down_proj.weight",
            "F8_E4M3",
            &[64, 64],
            &weight,
        ),
        (
            "model.layers.0.mlp.down_proj.weight_scale_inv",
            "F32",
            &[1, 1],
            &scale,
        ),
        ("model.norm.weight", "F32", &[64], &norm),
    ];
    let config = br#"{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 64,
        "num_attention_heads": 2, "block_count": 1,
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}"#;
    let files: BTreeMap<String, String> = store_folder(&store, config, &tensors)
        .into_iter()
        .map(|(name, digest)| (name, digest.to_string()))
        .collect();
    for (tag, quantize, file_type, status) in [
        ("fp8", "", 7, "quantizing F16 model to Q8_0"),
        ("fp8-q4", "q4_0", 2, "quantizing F16 model to Q4_0"),
    ] {
        let request = CreateRequest {
            model: tag.into(),
            files: Some(files.clone()),
            quantize: quantize.into(),
            ..Default::default()
        };
        let mut statuses = Vec::new();
        engine
            .create(request, &mut |p| {
                statuses.push(p.status);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!(statuses.iter().any(|s| s == status), "{statuses:?}");
        let stored = model_layer(&store, tag, MEDIA_TYPE_MODEL);
        let g = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
        assert_eq!(g.metadata().file_type().unwrap(), Some(file_type));
    }
    // The engine's convert limits reach the conversion: the same upload under a 64-byte JSON
    // limit is refused, naming the file and the limit, and no model is written.
    let strict = Engine::new(store.clone()).with_convert_limits(crate::convert::ConvertLimits {
        max_json_bytes: 64,
        ..Default::default()
    });
    let request = CreateRequest {
        model: "fp8-strict".into(),
        files: Some(files.clone()),
        ..Default::default()
    };
    let err = strict
        .create(request, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    let want = format!(
        "config.json is {} bytes, over the 64-byte limit for JSON files",
        config.len()
    );
    assert!(err.to_string().ends_with(&want), "{err}");
    assert!(
        store
            .manifest(&kiln_store::ModelName::parse("fp8-strict").unwrap())
            .is_err()
    );
}

/// A LLaVA-style CLIP projector GGUF with its tensors, optionally naming its projector type.
fn clip_projector(projector_type: Option<&str>) -> Vec<u8> {
    let mut md = vec![
        ("general.architecture", Value::string("clip")),
        ("clip.has_vision_encoder", Value::Bool(true)),
        ("clip.vision.block_count", Value::U32(1)),
        ("general.alignment", Value::U32(32)),
    ];
    if let Some(t) = projector_type {
        md.push(("clip.projector_type", Value::string(t)));
    }
    let specs = [
        TensorSpec::new("v.blk.0.attn_q.weight", GgmlType::F16, vec![32, 2]),
        TensorSpec::new("mm.2.bias", GgmlType::F32, vec![8]),
        TensorSpec::new("mm.0.weight", GgmlType::F16, vec![32, 8]),
    ];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    for (i, s) in specs.iter().enumerate() {
        let n = s.n_bytes().unwrap() as usize;
        w.write_tensor_data(&(0..n).map(|j| (j * 7 + i) as u8).collect::<Vec<_>>())
            .unwrap();
    }
    w.finish().unwrap()
}

/// Ollama's addDefaultLlavaProjectorType: an uploaded projector without a type gets
/// `clip.projector_type = "mlp"`, rewritten by Ollama's writer (keys sorted, tensors by layer
/// then name, bytes unchanged); one that names its type is kept as uploaded.
#[test]
fn uploaded_projectors_without_a_type_get_llavas_mlp() {
    let tmp = test_support::TempStore::new("engine-projector");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let model = store.write_blob(&tiny_model()[..], None).unwrap().digest;
    for (tag, projector_type) in [("untyped", None), ("typed", Some("ldp"))] {
        let upload = clip_projector(projector_type);
        let projector = store.write_blob(&upload[..], None).unwrap().digest;
        let files = BTreeMap::from([
            ("model.gguf".to_owned(), model.to_string()),
            ("mmproj.gguf".to_owned(), projector.to_string()),
        ]);
        let request = CreateRequest {
            model: tag.into(),
            files: Some(files),
            ..Default::default()
        };
        let mut statuses = Vec::new();
        engine
            .create(request, &mut |p| {
                statuses.push(p.status);
                ControlFlow::Continue(())
            })
            .unwrap();
        let updated = statuses
            .iter()
            .any(|s| s == "updating GGUF projector metadata");
        let stored = model_layer(&store, tag, MEDIA_TYPE_PROJECTOR);
        let source = kiln_gguf::Gguf::parse(&upload, &Limits::default()).unwrap();
        let ours = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
        if projector_type.is_some() {
            assert!(!updated, "{statuses:?}");
            assert!(stored == upload, "a typed projector is kept as uploaded");
            continue;
        }
        assert!(updated, "{statuses:?}");
        let keys: Vec<&str> = ours.metadata().iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "clip.has_vision_encoder",
                "clip.projector_type",
                "clip.vision.block_count",
                "general.alignment",
                "general.architecture"
            ]
        );
        assert_eq!(
            ours.metadata().get_str("clip.projector_type").unwrap(),
            "mlp"
        );
        let names: Vec<&str> = ours.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["mm.0.weight", "mm.2.bias", "v.blk.0.attn_q.weight"]);
        for t in ours.tensors() {
            assert_eq!(t.data(), source.tensor(t.name()).unwrap().data());
        }
    }
}

#[test]
fn a_cancelled_create_leaves_the_store_as_it_was() {
    let tmp = test_support::TempStore::new("engine-cancel");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let model = tiny_model();
    let digest = store.write_blob(&model[..], None).unwrap().digest;
    let mut files = BTreeMap::new();
    files.insert("m.gguf".to_owned(), digest.to_string());
    let request = CreateRequest {
        model: "base".into(),
        files: Some(files),
        ..Default::default()
    };
    engine
        .create(request, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let before = tmp.blob_files();
    let names_before = store.names().unwrap();

    // Cancel at each point a client could go away: after the first, second, … progress line,
    // up to the last. Gone at `success`, the model is written and the create succeeded.
    for stop_after in 0.. {
        let request = CreateRequest {
            model: "quantized".into(),
            from: "base".into(),
            quantize: "q8_0".into(),
            system: format!("prompt {stop_after}"),
            ..Default::default()
        };
        let mut seen = 0;
        let result = engine.create(request, &mut |_| {
            seen += 1;
            if seen > stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if result.is_ok() {
            assert!(stop_after >= 5, "only {stop_after} lines");
            assert!(seen > stop_after, "the last line, success, was refused");
            assert!(
                store
                    .manifest(&ModelName::parse("quantized").unwrap())
                    .is_ok()
            );
            delete(
                &store,
                &kiln_api::DeleteRequest {
                    model: "quantized".into(),
                    ..Default::default()
                },
            )
            .unwrap();
            break;
        }
        assert!(matches!(result, Err(CreateError::Cancelled)), "{result:?}");
        assert_eq!(
            tmp.blob_files(),
            before,
            "cancelled after {stop_after} lines"
        );
        assert_eq!(store.names().unwrap(), names_before);
    }
    assert_eq!(tmp.blob_files(), before);
    // And an error after blobs were written (a bad license type) also leaves nothing behind.
    let request = CreateRequest {
        model: "broken".into(),
        from: "base".into(),
        system: "new system prompt".into(),
        license: Some(kiln_api::License::Other(serde_json::json!(42))),
        ..Default::default()
    };
    assert!(
        engine
            .create(request, &mut |_| ControlFlow::Continue(()))
            .is_err()
    );
    assert_eq!(tmp.blob_files(), before);
}

#[test]
fn validation_errors_use_ollamas_messages_and_codes() {
    let tmp = test_support::TempStore::new("engine-errors");
    let engine = Engine::new(tmp.store.clone());
    let check = |req: CreateRequest, status: u16, message: &str| {
        let err = engine
            .create(req, &mut |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert_eq!(
            (err.status(), err.to_string()),
            (status, message.to_owned())
        );
    };
    let files = |k: &str, v: &str| Some(BTreeMap::from([(k.to_owned(), v.to_owned())]));
    check(
        CreateRequest {
            model: "m".into(),
            files: files("../x.gguf", "sha256:00"),
            ..Default::default()
        },
        400,
        "file path must be relative",
    );
    check(
        CreateRequest {
            model: "m".into(),
            files: files("x.gguf", ""),
            ..Default::default()
        },
        400,
        "invalid digest format",
    );
    check(
        CreateRequest {
            model: "bad name!".into(),
            ..Default::default()
        },
        400,
        "invalid model name",
    );
    check(
        CreateRequest {
            model: "m".into(),
            ..Default::default()
        },
        400,
        "neither 'from' or 'files' was specified",
    );
    check(
        CreateRequest {
            model: "m".into(),
            files: Some(BTreeMap::new()),
            ..Default::default()
        },
        400,
        "unknown type",
    );
    check(
        CreateRequest {
            model: "m".into(),
            draft_quantize: "q4_K_M".into(),
            ..Default::default()
        },
        400,
        "--draft-quantize requires a DRAFT model",
    );
}

/// A 2-layer model as `count` shards the way gguf-py writes them: the first shard holds all
/// metadata, every shard has split.no/split.count/split.tensors.count.
fn split_model(count: u16) -> Vec<Vec<u8>> {
    let names: Vec<String> = (0..2)
        .flat_map(|l| {
            ["attn_q", "attn_k", "ffn_up"]
                .into_iter()
                .map(move |t| format!("blk.{l}.{t}.weight"))
        })
        .collect();
    let per_part = names.len().div_ceil(count as usize);
    names
        .chunks(per_part)
        .enumerate()
        .map(|(i, chunk)| {
            let mut md = Vec::new();
            if i == 0 {
                md.push(("general.architecture", Value::string("llama")));
                md.push(("general.file_type", Value::U32(1)));
                md.push(("llama.block_count", Value::U32(2)));
            }
            md.push(("split.no", Value::U16(i as u16)));
            md.push(("split.count", Value::U16(count)));
            md.push(("split.tensors.count", Value::I32(names.len() as i32)));
            let specs: Vec<TensorSpec<'_>> = chunk
                .iter()
                .map(|n| TensorSpec::new(n.as_str(), GgmlType::F16, vec![256, 32]))
                .collect();
            let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
            for (k, _) in specs.iter().enumerate() {
                let data: Vec<u8> = (0..256 * 32)
                    .flat_map(|j| crate::quantize::f16_for_tests(j + 7 * k + 1000 * i))
                    .collect();
                w.write_tensor_data(&data).unwrap();
            }
            w.finish().unwrap()
        })
        .collect()
}

fn collect(
    engine: &Engine,
    request: CreateRequest,
) -> (Result<(), CreateError>, Vec<ProgressResponse>) {
    let mut lines = Vec::new();
    let result = engine.create(request, &mut |p| {
        lines.push(p);
        ControlFlow::Continue(())
    });
    (result, lines)
}

fn config_of(store: &Store, name: &str) -> serde_json::Value {
    let m = store
        .manifest(&ModelName::parse(name).unwrap())
        .unwrap()
        .manifest;
    let d = m.config.digest().unwrap();
    serde_json::from_slice(&std::fs::read(store.blob_path(&d)).unwrap()).unwrap()
}

fn model_layer(store: &Store, name: &str, media_type: &str) -> Vec<u8> {
    let m = store
        .manifest(&ModelName::parse(name).unwrap())
        .unwrap()
        .manifest;
    let layers: Vec<_> = m
        .layers
        .iter()
        .filter(|l| l.media_type == media_type)
        .collect();
    assert_eq!(layers.len(), 1, "{name}: one {media_type} layer");
    std::fs::read(store.blob_path(&layers[0].digest().unwrap())).unwrap()
}

#[test]
fn split_uploads_become_one_merged_model() {
    let tmp = test_support::TempStore::new("engine-split");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(2);
    let shards = split_model(3);
    let digests: Vec<String> = shards
        .iter()
        .map(|b| store.write_blob(&b[..], None).unwrap().digest.to_string())
        .collect();
    let files = |names: &[&str], which: &[usize]| {
        Some(
            names
                .iter()
                .zip(which)
                .map(|(n, &i)| (n.to_string(), digests[i].clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let good = [
        "dir/m-00001-of-00003.gguf",
        "dir/m-00002-of-00003.gguf",
        "dir/m-00003-of-00003.gguf",
    ];
    let parsed: Vec<kiln_gguf::Gguf<'_>> = shards
        .iter()
        .map(|b| kiln_gguf::Gguf::parse(b, &Limits::default()).unwrap())
        .collect();
    for (quantize, ftype) in [("", FileType::Copy), ("q8_0", FileType::Q8_0)] {
        let name = format!("split{}", quantize.replace('_', ""));
        let (result, lines) = collect(
            &engine,
            CreateRequest {
                model: name.clone(),
                files: files(&good, &[0, 1, 2]),
                quantize: quantize.into(),
                ..Default::default()
            },
        );
        result.unwrap();
        let statuses: Vec<&str> = lines.iter().map(|l| l.status.as_str()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == "parsing GGUF").count(), 3);
        let expected_status = if quantize.is_empty() {
            "validating GGUF model"
        } else {
            "quantizing F16 model to Q8_0"
        };
        assert!(statuses.contains(&expected_status), "{statuses:?}");
        let mut merged = Vec::new();
        crate::quantize::quantize_parts(
            &parsed,
            &mut merged,
            ftype,
            &QuantizeOptions {
                allow_requantize: true,
                ollama_overrides: true,
                ..Default::default()
            },
            &mut crate::NoProgress,
        )
        .unwrap();
        let stored = model_layer(&store, &name, MEDIA_TYPE_MODEL);
        assert!(
            stored == merged,
            "{name}: the model layer is the merged model"
        );
        let gguf = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
        assert_eq!(gguf.tensors().len(), 6);
        assert!(gguf.metadata().get("split.count").is_none());
        let m = store
            .manifest(&ModelName::parse(&name).unwrap())
            .unwrap()
            .manifest;
        assert_eq!(m.layers.len(), 1);
        // Rewritten through COPY, the layer is a new one (Ollama's manifest.NewLayer): no
        // `from`, so the manifest's bytes (and its ID in `ollama list`) are Ollama's.
        assert_eq!(m.layers[0].from, "");
    }

    let check = |names: &[&str], which: &[usize], message: &str| {
        let (result, _) = collect(
            &engine,
            CreateRequest {
                model: "bad".into(),
                files: files(names, which),
                ..Default::default()
            },
        );
        let err = result.unwrap_err();
        assert_eq!((err.status(), err.to_string()), (500, message.to_owned()));
    };
    check(
        &["m-00001-of-00003.gguf", "m-00002-of-00003.gguf"],
        &[0, 1],
        "split GGUF \"m-00001-of-00003.gguf\" has 2 shards, expected 3",
    );
    check(
        &["a.gguf"],
        &[0],
        "split GGUF \"a.gguf\" must use llama.cpp split filename pattern",
    );
    check(
        &["m-00002-of-00003.gguf"],
        &[0],
        "split GGUF \"m-00002-of-00003.gguf\" filename index 1 does not match metadata index 0",
    );
    check(
        &["m-00001-of-00004.gguf"],
        &[0],
        "split GGUF \"m-00001-of-00004.gguf\" filename count 4 does not match metadata count 3",
    );
}

#[test]
fn progress_counts_tensors_as_ollama_does() {
    let tmp = test_support::TempStore::new("engine-progress");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let shards = split_model(1);
    let digest = store.write_blob(&shards[0][..], None).unwrap();
    let (result, lines) = collect(
        &engine,
        CreateRequest {
            model: "p".into(),
            files: Some(BTreeMap::from([(
                "p.gguf".to_owned(),
                digest.digest.to_string(),
            )])),
            quantize: "Q4_K_M".into(),
            ..Default::default()
        },
    );
    result.unwrap();
    let progress: Vec<&ProgressResponse> = lines
        .iter()
        .filter(|l| l.status == "quantizing F16 model to Q4_K_M")
        .collect();
    // One line per tensor start (llama-quantize's "[i/n]"), completed rising to about total.
    assert_eq!(progress.len(), 6);
    let total = digest.size as i64;
    let mut last = 0;
    for p in &progress {
        assert_eq!((p.digest.as_str(), p.total), ("0000000000000000000", total));
        assert!(p.completed > last);
        last = p.completed;
    }
    assert!(
        last <= total && last > total * 99 / 100,
        "{last} of {total}"
    );
}

#[test]
fn info_overrides_config_fields_with_ollamas_checks() {
    let tmp = test_support::TempStore::new("engine-info");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
    let base = |info: serde_json::Value| CreateRequest {
        model: "i".into(),
        files: Some(BTreeMap::from([("i.gguf".to_owned(), digest.to_string())])),
        info: Some(serde_json::from_value(info).unwrap()),
        ..Default::default()
    };
    let (result, _) = collect(
        &engine,
        base(serde_json::json!({
            "capabilities": ["vision", 3, "tools"],
            "model_family": "fam",
            "base_name": "Base",
            "quantization_level": "Q9",
            "parameter_size": "1T",
            "context_length": 8192,
            "embedding_length": 4096.0,
            "unknown": true
        })),
    );
    result.unwrap();
    let config = config_of(&store, "i");
    assert_eq!(
        config["capabilities"],
        serde_json::json!(["vision", "", "tools"])
    );
    assert_eq!(config["model_family"], "fam");
    assert_eq!(
        config["model_families"],
        serde_json::json!(["fam", "llama"])
    );
    assert_eq!(config["base_name"], "Base");
    assert_eq!(config["file_type"], "Q9");
    assert_eq!(config["model_type"], "1T");
    assert_eq!(config["context_length"], 8192);
    assert_eq!(config["embedding_length"], 4096);
    // Without info the GGUF's values fill in.
    let (result, _) = collect(&engine, base(serde_json::json!({})));
    result.unwrap();
    let config = config_of(&store, "i");
    assert_eq!(config["model_family"], "llama");
    assert_eq!(config["file_type"], "F16");
    assert!(config.get("context_length").is_none());

    for (info, message) in [
        (
            serde_json::json!({"model_family": 5}),
            "info field \"model_family\" must be a string",
        ),
        (
            serde_json::json!({"parameter_size": null}),
            "info field \"parameter_size\" must be a string",
        ),
        (
            serde_json::json!({"context_length": "8k"}),
            "info field \"context_length\" must be a number",
        ),
        (
            serde_json::json!({"context_length": -1}),
            "info field \"context_length\" must be a non-negative integer",
        ),
        (
            serde_json::json!({"embedding_length": 1.5}),
            "info field \"embedding_length\" must be a non-negative integer",
        ),
        (
            serde_json::json!({"embedding_length": 1e300}),
            "info field \"embedding_length\" must be a non-negative integer",
        ),
    ] {
        let (result, _) = collect(&engine, base(info));
        let err = result.unwrap_err();
        assert_eq!((err.status(), err.to_string()), (400, message.to_owned()));
    }
}

#[test]
fn draft_models_are_stored_and_quantized_as_ollama_does() {
    let tmp = test_support::TempStore::new("engine-draft");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let model = store.write_blob(&tiny_model()[..], None).unwrap().digest;
    let draft_bytes = split_model(1).remove(0);
    let draft = store.write_blob(&draft_bytes[..], None).unwrap().digest;
    let request = |draft_quantize: &str, draft_digest: Digest| CreateRequest {
        model: "d".into(),
        files: Some(BTreeMap::from([("m.gguf".to_owned(), model.to_string())])),
        draft_files: Some(BTreeMap::from([(
            "draft.gguf".to_owned(),
            draft_digest.to_string(),
        )])),
        draft_quantize: draft_quantize.into(),
        ..Default::default()
    };
    let (result, lines) = collect(&engine, request("q8_0", draft));
    result.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.status == "quantizing F16 model to Q8_0")
    );
    let stored = model_layer(&store, "d", MEDIA_TYPE_DRAFT);
    let parsed = kiln_gguf::Gguf::parse(&draft_bytes, &Limits::default()).unwrap();
    let mut expected = Vec::new();
    crate::quantize::quantize_gguf(
        &parsed,
        &mut expected,
        FileType::Q8_0,
        &QuantizeOptions {
            allow_requantize: true,
            ollama_overrides: true,
            ..Default::default()
        },
        &mut crate::NoProgress,
    )
    .unwrap();
    assert!(stored == expected, "the draft layer is the quantized draft");
    let config = config_of(&store, "d");
    assert_eq!(
        config["draft"],
        serde_json::json!({"model_format": "gguf", "architecture": "llama"})
    );
    // The main model is not quantized by draft_quantize.
    assert_eq!(config["file_type"], "F16");

    // An already-quantized draft cannot be draft-quantized.
    let quantized = store.write_blob(&expected[..], None).unwrap().digest;
    let (result, _) = collect(&engine, request("q4_K_M", quantized));
    let err = result.unwrap_err();
    assert_eq!(
        (err.status(), err.to_string()),
        (
            500,
            "draft quantization requires an unquantized draft model, got Q8_0".to_owned()
        )
    );
    // A client that goes away at any line of a draft create cancels it: never a 400 for a
    // cancelled draft, and nothing of the model is left.
    let total = collect(&engine, request("q8_0", draft)).1.len();
    let names = store.names().unwrap();
    for stop_after in 0..total {
        let mut seen = 0;
        let result = engine.create(
            CreateRequest {
                model: "d-cancelled".into(),
                ..request("q8_0", draft)
            },
            &mut |_| {
                seen += 1;
                if seen > stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        if stop_after + 1 == total {
            // Gone at `success`: the model is written, so the create succeeded.
            result.unwrap();
            assert!(
                store
                    .manifest(&ModelName::parse("d-cancelled").unwrap())
                    .is_ok()
            );
            break;
        }
        let err = result.unwrap_err();
        assert!(
            matches!(err, CreateError::Cancelled),
            "cancel after {stop_after} lines: {err:?}"
        );
        assert_eq!(store.names().unwrap(), names);
    }
    // Draft problems are 400s.
    let (result, _) = collect(
        &engine,
        CreateRequest {
            model: "d".into(),
            files: Some(BTreeMap::from([("m.gguf".to_owned(), model.to_string())])),
            draft_files: Some(BTreeMap::new()),
            ..Default::default()
        },
    );
    let err = result.unwrap_err();
    assert_eq!(
        (err.status(), err.to_string()),
        (400, "unknown type".to_owned())
    );
}

/// A cancel probe that turns true stops a quantization within one chunk of rows of a big
/// tensor, not at the next tensor, and leaves the store as it was.
#[test]
fn cancellation_stops_within_a_chunk_of_rows() {
    let tmp = test_support::TempStore::new("engine-cancel-chunk");
    let store = tmp.store.clone();
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(1)),
    ];
    // 16 Mi weights in one tensor: several of the quantizer's chunks.
    let specs = [TensorSpec::new(
        "blk.0.ffn_down.weight",
        GgmlType::F16,
        vec![4096, 4096],
    )];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    w.write_tensor_data(&vec![0x3c; 4096 * 4096 * 2]).unwrap();
    let digest = store
        .write_blob(&w.finish().unwrap()[..], None)
        .unwrap()
        .digest;
    let engine = Engine::new(store.clone()).with_threads(1);
    let before = tmp.blob_files();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let cancel = crate::Cancel::with_probe(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    });
    let job = engine
        .prepare(CreateRequest {
            model: "big".into(),
            files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
            quantize: "q8_0".into(),
            ..Default::default()
        })
        .unwrap();
    let mut lines = Vec::new();
    let result = engine.run(
        job,
        &mut |e: &Event| {
            lines.push(ProgressResponse::from(e).status);
            ControlFlow::Continue(())
        },
        &cancel,
    );
    assert!(matches!(result, Err(CreateError::Cancelled)), "{result:?}");
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "stopped at the first chunk boundary"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("quantizing F16 model to Q8_0")
    );
    assert_eq!(tmp.blob_files(), before);
    assert!(store.names().unwrap().is_empty());
}

/// The engine's limits bound what it parses: an upload within the defaults but beyond a
/// tighter limit is refused before anything is written.
#[test]
fn the_engines_limits_bound_the_files_it_reads() {
    let tmp = test_support::TempStore::new("engine-limits");
    let store = tmp.store.clone();
    let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
    let request = || CreateRequest {
        model: "limited".into(),
        files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
        ..Default::default()
    };
    let strict = Engine::new(store.clone()).with_limits(Limits::default().max_metadata(1));
    let before = tmp.blob_files();
    let err = strict
        .create(request(), &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(
        matches!(err, CreateError::Gguf(_)),
        "two metadata entries, one allowed: {err:?}"
    );
    assert_eq!(tmp.blob_files(), before);
    assert!(store.names().unwrap().is_empty());
    Engine::new(store.clone())
        .create(request(), &mut |_| ControlFlow::Continue(()))
        .unwrap();
}

/// A model whose blobs are damaged is an error from show, naming the blob, never a response
/// with empty fields.
#[test]
fn show_reports_corrupt_and_missing_blobs() {
    let tmp = test_support::TempStore::new("engine-show-corrupt");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
    let request = CreateRequest {
        model: "damaged".into(),
        files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
        system: "You are kiln.".into(),
        ..Default::default()
    };
    engine
        .create(request, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let name = ModelName::parse("damaged").unwrap();
    let manifest = store.manifest(&name).unwrap().manifest;
    let show_it = || {
        show(
            &store,
            &kiln_api::ShowRequest {
                model: "damaged".into(),
                ..Default::default()
            },
        )
    };
    let healthy = show_it().unwrap();
    assert_eq!(healthy.system, "You are kiln.");
    assert_eq!(healthy.model_info["general.architecture"], "llama");

    let path_of = |media_type: &str| {
        let layer = manifest.layers_of(media_type).next().unwrap();
        store.blob_path(&layer.digest().unwrap())
    };
    let config_path = store.blob_path(&manifest.config.digest().unwrap());
    let cases = [
        ("config", config_path, &b"{not json"[..]),
        ("model", path_of(MEDIA_TYPE_MODEL), &b"GGUF\x03\0\0\0"[..]),
        ("system", path_of(MEDIA_TYPE_SYSTEM), &b"\xff\xfe"[..]),
    ];
    for (what, path, garbage) in cases {
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, garbage).unwrap();
        let err = show_it().unwrap_err();
        assert_eq!(err.status(), 500, "{what}: {err}");
        assert!(
            matches!(&err, ManageError::CorruptBlob { what: w, .. } if *w == what),
            "{what}: {err}"
        );
        assert!(
            err.to_string().starts_with("model 'damaged:latest': "),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = show_it().unwrap_err();
        assert_eq!(err.status(), 404, "{what}: {err}");
        assert!(
            matches!(&err, ManageError::MissingBlob { what: w, .. } if *w == what),
            "{what}: {err}"
        );
        std::fs::write(&path, good).unwrap();
        assert_eq!(show_it().unwrap().system, "You are kiln.");
    }
}

/// Ollama's TestCreateAndShowRemoteModel, TestCreateFromCloudSourceSuffix and
/// TestCreateRemoteModelRejectsDraftFiles, through kiln's engine and show.
#[test]
fn remote_models_store_only_their_config() {
    let tmp = test_support::TempStore::new("engine-remote");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone());
    let info = serde_json::json!({
        "capabilities": ["completion", "tools", "thinking"],
        "model_family": "gptoss",
        "context_length": 131072,
        "embedding_length": 2880,
        "quantization_level": "MXFP4",
        "parameter_size": "20.9B",
    });
    let (result, lines) = collect(
        &engine,
        CreateRequest {
            model: "test".into(),
            from: "bob".into(),
            remote_host: "https://ollama.com".into(),
            info: Some(serde_json::from_value(info).unwrap()),
            ..Default::default()
        },
    );
    result.unwrap();
    assert_eq!(lines.last().unwrap().status, "success");
    let shown = show(
        &store,
        &kiln_api::ShowRequest {
            model: "test".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(shown.details.family, "gptoss");
    assert_eq!(shown.details.families, Some(vec!["gptoss".to_owned()]));
    assert_eq!(shown.details.parameter_size, "20.9B");
    assert_eq!(shown.details.quantization_level, "MXFP4");
    assert_eq!(shown.details.format, "");
    assert_eq!(shown.capabilities, ["completion", "tools", "thinking"]);
    assert_eq!(shown.model_info["gptoss.context_length"], 131072);
    assert_eq!(shown.model_info["gptoss.embedding_length"], 2880);
    assert_eq!(shown.remote_model, "bob");
    assert_eq!(shown.remote_host, "https://ollama.com:11434");
    let manifest = store
        .manifest(&ModelName::parse("test").unwrap())
        .unwrap()
        .manifest;
    assert!(manifest.layers.is_empty());

    let (result, _) = collect(
        &engine,
        CreateRequest {
            model: "test-cloud-from-suffix".into(),
            from: "gpt-oss:20b:cloud".into(),
            info: Some(
                serde_json::from_value(serde_json::json!({"capabilities": ["completion"]}))
                    .unwrap(),
            ),
            ..Default::default()
        },
    );
    result.unwrap();
    let config = config_of(&store, "test-cloud-from-suffix");
    assert_eq!(config["remote_host"], "https://ollama.com:443");
    assert_eq!(config["remote_model"], "gpt-oss:20b");

    let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
    for (request, message) in [
        (
            CreateRequest {
                model: "test-remote-draft".into(),
                from: "bob".into(),
                remote_host: "https://ollama.com".into(),
                draft_files: Some(BTreeMap::from([(
                    "draft.gguf".to_owned(),
                    digest.to_string(),
                )])),
                ..Default::default()
            },
            "DRAFT cannot be used with remote models",
        ),
        (
            CreateRequest {
                model: "r".into(),
                from: "bob".into(),
                remote_host: "http://[::1]:namedport".into(),
                ..Default::default()
            },
            "bad remote",
        ),
        (
            CreateRequest {
                model: "r".into(),
                from: "bob:local:cloud".into(),
                ..Default::default()
            },
            "invalid model name",
        ),
    ] {
        let (result, _) = collect(&engine, request);
        let err = result.unwrap_err();
        assert_eq!((err.status(), err.to_string()), (400, message.to_owned()));
    }
}

/// `show` as Ollama's GetModelInfo answers it: `model_info` without `general.name` and
/// `tokenizer.chat_template`, every non-empty array `null` unless verbose (Ollama decodes show's
/// GGUF with no room for array values) and an empty one `[]`; `tensors` with ggml's upper-cased
/// type names; capabilities from the GGUF (a chat template's tools and thinking when Ollama does
/// not render the chat itself, embedding when there is a pooling type, else completion; vision from
/// a projector layer) and `projector_info` from the first projector as stored.
#[test]
fn show_answers_model_info_tensors_and_capabilities_as_ollama() {
    let tmp = test_support::TempStore::new("engine-show-info");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let md = vec![
        ("general.architecture", Value::string("bert")),
        ("general.name", Value::string("mini")),
        ("general.file_type", Value::U32(1)),
        ("bert.pooling_type", Value::U32(1)),
        (
            "tokenizer.chat_template",
            Value::string("{% if tools %}<think>{{ x }}</think>{% endif %}"),
        ),
        (
            "bert.short",
            Value::Array(kiln_gguf::Array::new(
                kiln_gguf::ValueType::U32,
                vec![Value::U32(1), Value::U32(2)],
            )),
        ),
        (
            "bert.none",
            Value::Array(kiln_gguf::Array::new(kiln_gguf::ValueType::U32, vec![])),
        ),
    ];
    let specs = [
        TensorSpec::new("blk.0.attn_q.weight", GgmlType::F16, vec![256, 64]),
        TensorSpec::new("blk.0.attn_q.bias", GgmlType::F32, vec![64]),
    ];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    for s in &specs {
        w.write_tensor_data(&vec![0u8; s.n_bytes().unwrap() as usize])
            .unwrap();
    }
    let model = store
        .write_blob(&w.finish().unwrap()[..], None)
        .unwrap()
        .digest;
    let projector = store
        .write_blob(&clip_projector(Some("ldp"))[..], None)
        .unwrap()
        .digest;
    let files = BTreeMap::from([
        ("model.gguf".to_owned(), model.to_string()),
        ("mmproj.gguf".to_owned(), projector.to_string()),
    ]);
    let request = CreateRequest {
        model: "emb".into(),
        files: Some(files),
        ..Default::default()
    };
    engine
        .create(request, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let show = |verbose: bool| {
        super::models::show(
            &store,
            &kiln_api::ShowRequest {
                model: "emb".into(),
                verbose,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let plain = show(false);
    assert!(!plain.model_info.contains_key("general.name"));
    assert!(!plain.model_info.contains_key("tokenizer.chat_template"));
    assert_eq!(plain.model_info["bert.short"], serde_json::Value::Null);
    assert_eq!(plain.model_info["bert.none"], serde_json::json!([]));
    assert_eq!(plain.model_info["bert.pooling_type"], 1);
    assert_eq!(
        plain.capabilities,
        ["tools", "thinking", "embedding", "vision"]
    );
    let tensors: Vec<(&str, &str, &[u64])> = plain
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.tensor_type.as_str(), t.shape.as_slice()))
        .collect();
    // In the stored model layer's order (the COPY validation writes llama.cpp's order).
    assert_eq!(
        tensors,
        [
            ("blk.0.attn_q.bias", "F32", &[64u64][..]),
            ("blk.0.attn_q.weight", "F16", &[256, 64][..]),
        ]
    );
    let stored = model_layer(&store, "emb", MEDIA_TYPE_MODEL);
    let stored = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
    let order: Vec<&str> = stored.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(order, ["blk.0.attn_q.bias", "blk.0.attn_q.weight"]);
    assert_eq!(plain.projector_info["general.architecture"], "clip");
    assert_eq!(plain.projector_info["clip.projector_type"], "ldp");
    let verbose = show(true);
    assert_eq!(verbose.model_info["bert.short"], serde_json::json!([1, 2]));
}

/// Capabilities, the template `show` answers with, and `/api/tags`' details, as Ollama derives
/// them (server/images.go, server/routes.go selectedModelTemplate, server/model_list_cache.go)
/// for one GGUF whose Jinja chat template calls tools and thinks, stored three ways: without a
/// template, with a plain Go template (the chat template is preferred: it offers more), and with
/// a Go template that has its own tool round trip and thinking tags (it is kept).
#[test]
fn capabilities_and_templates_follow_ollamas_selection() {
    let tmp = test_support::TempStore::new("engine-capabilities");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let chat = "{% for message in messages %}{% if message.role == 'tool' %}<tool_response>\
                {% endif %}{% if message.tool_calls %}x{% endif %}{% endfor %}{% if tools %}\
                {% endif %}<think></think>";
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("llama.embedding_length", Value::U32(64)),
        ("general.file_type", Value::U32(1)),
        ("tokenizer.chat_template", Value::string(chat)),
        // After the first tokenizer key: Ollama's list scan never sees it, show does.
        ("llama.context_length", Value::U32(4096)),
    ];
    let specs = [TensorSpec::new(
        "blk.0.attn_q.weight",
        GgmlType::F16,
        vec![256, 4],
    )];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    w.write_tensor_data(&vec![0u8; specs[0].n_bytes().unwrap() as usize])
        .unwrap();
    let model = store
        .write_blob(&w.finish().unwrap()[..], None)
        .unwrap()
        .digest;
    let round_trip = "{{ range $i, $m := .Messages }}{{ if eq .Role \"tool\" }}{{ .Content }}\
                      {{ end }}{{ if .Thinking }}<t>{{ .Thinking }}</t>{{ end }}{{ .ToolCalls }}\
                      {{ end }}{{ .Tools }}";
    for (name, template) in [
        ("bare", ""),
        ("plain", "{{ .System }} {{ .Prompt }}"),
        ("own", round_trip),
    ] {
        let request = CreateRequest {
            model: name.into(),
            files: Some(BTreeMap::from([(
                "model.gguf".to_owned(),
                model.to_string(),
            )])),
            template: template.into(),
            ..Default::default()
        };
        engine
            .create(request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
    }
    let show = |name: &str| {
        super::models::show(
            &store,
            &kiln_api::ShowRequest {
                model: name.into(),
                ..Default::default()
            },
        )
        .unwrap()
    };
    for name in ["bare", "plain"] {
        let s = show(name);
        assert_eq!(
            s.capabilities,
            ["tools", "thinking", "completion"],
            "{name}"
        );
        assert_eq!(s.template, chat, "{name}");
        assert_eq!(s.details.quantization_level, "F16");
    }
    let own = show("own");
    assert_eq!(own.capabilities, ["completion", "tools", "thinking"]);
    assert_eq!(own.template, round_trip);
    assert!(own.modelfile.contains(round_trip));
    let list = super::models::list(&store).unwrap();
    for m in &list.models {
        assert_eq!(m.details.embedding_length, 64, "{}", m.name);
        assert_eq!(m.details.context_length, 0, "{}", m.name);
        let expected: &[&str] = if m.name == "own:latest" {
            &["completion", "tools", "thinking"]
        } else {
            &["completion"]
        };
        assert_eq!(m.capabilities, expected, "{}", m.name);
    }
    assert_eq!(list.models.len(), 3);
}

/// The typed boundary: a job built with the builder (a `FileType`, a `Digest`) makes the same
/// model, through the same events, as Ollama's request for it; the events are the lines.
#[test]
fn a_built_job_makes_the_same_model_as_the_request() {
    let tmp = test_support::TempStore::new("engine-typed-job");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;

    let (result, wire_lines) = collect(
        &engine,
        CreateRequest {
            model: "wire".into(),
            files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
            quantize: "q8_0".into(),
            system: "be brief".into(),
            ..Default::default()
        },
    );
    result.unwrap();

    let job = CreateJob::builder(ModelName::parse("typed").unwrap())
        .file("m.gguf", digest)
        .quantize(FileType::Q8_0)
        .system("be brief")
        .build()
        .unwrap();
    let mut events = Vec::new();
    engine
        .run(
            job,
            &mut |e: &Event| {
                events.push(e.clone());
                ControlFlow::Continue(())
            },
            &Cancel::new(),
        )
        .unwrap();
    let manifest = |name: &str| {
        store
            .manifest_bytes(&ModelName::parse(name).unwrap())
            .unwrap()
    };
    assert_eq!(manifest("typed"), manifest("wire"));
    assert!(events.contains(&Event::ParsingGguf));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Quantizing { from, to: FileType::Q8_0, .. } if from == "F16"
    )));
    assert_eq!(events.last(), Some(&Event::Success));
    // The second create reuses every blob the first wrote: only the reuse lines differ.
    let typed_lines: Vec<String> = events
        .iter()
        .map(|e| ProgressResponse::from(e).status)
        .collect();
    let wire: Vec<String> = wire_lines
        .into_iter()
        .map(|l| {
            l.status
                .replace("creating new layer", "using existing layer")
        })
        .collect();
    assert_eq!(typed_lines, wire);
}

/// A cancellation token fired while a Hugging Face folder is converted (to its own type, so the
/// conversion is written as it is) stops it at the next chunk and leaves no blob behind.
#[test]
fn cancel_stops_a_conversion_being_written() {
    let tmp = test_support::TempStore::new("engine-cancel-convert");
    let store = tmp.store.clone();
    let engine = Engine::new(store.clone()).with_threads(1);
    let weight: Vec<u8> = (0..64 * 64)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let norm = vec![0u8; 64 * 4];
    let tensors: [(&str, &str, &[u64], &[u8]); 2] = [
        (
            "model.layers.0.mlp.down_proj.weight",
            "F32",
            &[64, 64],
            &weight,
        ),
        ("model.norm.weight", "F32", &[64], &norm),
    ];
    let config = br#"{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 64,
        "num_attention_heads": 2, "block_count": 1}"#;
    let mut builder = CreateJob::builder(ModelName::parse("conv").unwrap());
    for (name, digest) in store_folder(&store, config, &tensors) {
        builder = builder.file(name, digest);
    }
    // F16 is the conversion's own type: the conversion is written as it is.
    let job = builder.quantize(FileType::F16).build().unwrap();
    let before = tmp.blob_files();
    let cancel = Cancel::new();
    let mut converting = 0;
    let result = engine.run(
        job,
        &mut |e: &Event| {
            if let Event::Converting { written, .. } = e
                && *written > 0
            {
                converting += 1;
                cancel.cancel();
            }
            ControlFlow::Continue(())
        },
        &cancel,
    );
    assert!(matches!(result, Err(CreateError::Cancelled)), "{result:?}");
    assert_eq!(
        converting, 1,
        "stopped at the next chunk after the token fired"
    );
    assert_eq!(tmp.blob_files(), before);
    assert!(store.names().unwrap().is_empty());
}

/// Writes a model as Ollama's x/create stores a safetensors one (or as any Ollama wrote it): a
/// config blob, then each layer `(media type, layer name, blob)` in order.
fn write_model(
    store: &Store,
    name: &str,
    config: serde_json::Value,
    layers: &[(&str, &str, &[u8])],
) {
    let config = store
        .write_blob(config.to_string().as_bytes(), None)
        .unwrap();
    let layers = layers
        .iter()
        .map(|(media_type, layer_name, bytes)| {
            let blob = store.write_blob(*bytes, None).unwrap();
            kiln_store::Layer {
                name: (*layer_name).to_owned(),
                ..kiln_store::Layer::new(*media_type, blob.digest, blob.size)
            }
        })
        .collect();
    let config = kiln_store::Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config.digest, config.size);
    store
        .write_manifest(
            &ModelName::parse(name).unwrap(),
            &kiln_store::Manifest::new(config, layers),
        )
        .unwrap();
}

/// A tensor blob as Ollama's x/create writes one: a safetensors file (header length, header).
fn tensor_blob(header: serde_json::Value) -> Vec<u8> {
    let json = header.to_string();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json.as_bytes());
    bytes
}

fn show_of(
    store: &Store,
    name: &str,
    verbose: bool,
) -> Result<kiln_api::ShowResponse, ManageError> {
    super::models::show(
        store,
        &kiln_api::ShowRequest {
            model: name.into(),
            verbose,
            ..Default::default()
        },
    )
}

/// The tensor layers of a small safetensors LLM: one plain tensor, one int4 tensor (the blob's
/// `__metadata__` says so), a packed blob of two tensors whose types are inferred from their
/// `.scale` shapes (int4, int8), and one nvfp4 tensor.
fn mlx_tensor_layers() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "model.embed_tokens.weight",
            tensor_blob(serde_json::json!({
                "model.embed_tokens.weight": {"dtype": "BF16", "shape": [16, 8], "data_offsets": [0, 256]},
            })),
        ),
        (
            "model.layers.0.mlp.up_proj.weight",
            tensor_blob(serde_json::json!({
                "__metadata__": {"quant_type": "int4", "group_size": "32"},
                "model.layers.0.mlp.up_proj.weight": {"dtype": "U32", "shape": [32, 1], "data_offsets": [0, 128]},
                "model.layers.0.mlp.up_proj.weight.scale": {"dtype": "BF16", "shape": [32, 1], "data_offsets": [128, 192]},
            })),
        ),
        (
            "model.layers.0.mlp.experts",
            tensor_blob(serde_json::json!({
                "model.layers.0.mlp.experts.0.gate_proj.weight": {"dtype": "U32", "shape": [4, 4], "data_offsets": [0, 64]},
                "model.layers.0.mlp.experts.0.gate_proj.weight.scale": {"dtype": "BF16", "shape": [4, 1], "data_offsets": [64, 72]},
                "model.layers.0.mlp.experts.0.down_proj.weight": {"dtype": "U32", "shape": [4, 16], "data_offsets": [72, 328]},
                "model.layers.0.mlp.experts.0.down_proj.weight.scale": {"dtype": "BF16", "shape": [4, 1], "data_offsets": [328, 336]},
            })),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            tensor_blob(serde_json::json!({
                "__metadata__": {"quant_type": "nvfp4", "group_size": "16"},
                "model.layers.0.self_attn.q_proj.weight": {"dtype": "U32", "shape": [8, 2], "data_offsets": [0, 64]},
                "model.layers.0.self_attn.q_proj.weight.scale": {"dtype": "U8", "shape": [8, 1], "data_offsets": [64, 72]},
            })),
        ),
    ]
}

/// A safetensors LLM in the store, shown and listed as Ollama answers it. show
/// (server/routes.go:1429-1446, 1540-1551; x/server/show.go): the family from config.json's
/// architecture, the parameter size from the tensor headers' unpacked shapes (128 + 256 + 128 +
/// 256 + 128 = 896 parameters), the quantization level (the config has none) the first of the
/// lowest-precision quantization types in manifest order (int4, not nvfp4 or int8),
/// `model_info` from config.json, tensors only when verbose, the Go template as the template,
/// capabilities with no GGUF (server/images.go:148: only a GGUF-format model is opened), and the
/// Modelfile's FROM naming the model (routes.go:1523). `/api/tags` (model_list_cache.go:311)
/// answers the config's details and its capabilities and template's.
#[test]
fn safetensors_llms_are_shown_from_config_json_and_tensor_headers() {
    let tmp = test_support::TempStore::new("engine-show-mlx");
    let store = tmp.store.clone();
    let hf = serde_json::json!({
        "architectures": ["Qwen3ForCausalLM"], "hidden_size": 8, "num_hidden_layers": 2,
        "max_position_embeddings": 4096, "intermediate_size": 32, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 16, "rope_theta": 1000000.0,
        "torch_dtype": "bfloat16",
    })
    .to_string();
    let tensors = mlx_tensor_layers();
    let mut layers: Vec<(&str, &str, &[u8])> = vec![
        (kiln_store::MEDIA_TYPE_JSON, "config.json", hf.as_bytes()),
        (kiln_store::MEDIA_TYPE_JSON, "tokenizer.json", b"{}"),
    ];
    for (name, blob) in &tensors {
        layers.push((kiln_store::MEDIA_TYPE_TENSOR, name, blob));
    }
    let config = serde_json::json!({
        "model_format": "safetensors", "model_family": "", "model_type": "7B", "file_type": "",
        "capabilities": ["completion"], "parser": "qwen3", "renderer": "qwen3",
        "requires": "0.14.0", "architecture": "amd64", "os": "linux",
    });
    write_model(&store, "mlx", config.clone(), &layers);
    let shown = show_of(&store, "mlx", false).unwrap();
    assert_eq!(shown.details.format, "safetensors");
    assert_eq!(shown.details.family, "qwen3");
    assert_eq!(shown.details.parameter_size, "896");
    assert_eq!(shown.details.quantization_level, "int4");
    assert_eq!(
        serde_json::to_value(&shown.model_info).unwrap(),
        serde_json::json!({
            "general.architecture": "qwen3",
            "general.parameter_count": 896,
            "qwen3.context_length": 4096,
            "qwen3.embedding_length": 8,
            "qwen3.block_count": 2,
            "qwen3.attention.head_count": 2,
            "qwen3.attention.head_count_kv": 1,
            "qwen3.feed_forward_length": 32,
            "qwen3.vocab_size": 16,
        })
    );
    assert!(shown.tensors.is_empty());
    assert!(shown.projector_info.is_empty());
    assert_eq!(shown.template, super::models::DEFAULT_TEMPLATE);
    assert_eq!(shown.capabilities, ["completion", "tools"]);
    assert!(
        shown
            .modelfile
            .starts_with("# Modelfile generated by \"ollama show\"\nFROM mlx:latest\nTEMPLATE "),
        "{}",
        shown.modelfile
    );
    let verbose = show_of(&store, "mlx", true).unwrap();
    let rows: Vec<(&str, &str, &[u64])> = verbose
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.tensor_type.as_str(), t.shape.as_slice()))
        .collect();
    assert_eq!(
        rows,
        [
            ("model.embed_tokens.weight", "BF16", &[16u64, 8][..]),
            (
                "model.layers.0.mlp.experts.0.down_proj.weight",
                "int8",
                &[4, 64][..]
            ),
            (
                "model.layers.0.mlp.experts.0.gate_proj.weight",
                "int4",
                &[4, 32][..]
            ),
            ("model.layers.0.mlp.up_proj.weight", "int4", &[32, 8][..]),
            (
                "model.layers.0.self_attn.q_proj.weight",
                "nvfp4",
                &[8, 16][..]
            ),
        ]
    );
    let listed = super::models::list(&store).unwrap();
    let entry = &listed.models[0];
    assert_eq!(
        (
            entry.details.format.as_str(),
            entry.details.family.as_str(),
            entry.details.parameter_size.as_str(),
            entry.details.quantization_level.as_str(),
            entry.details.context_length,
        ),
        ("safetensors", "", "7B", "", 0)
    );
    assert_eq!(entry.capabilities, ["completion", "tools"]);

    // Without quantized tensors the level is config.json's torch_dtype (GetSafetensorsDtype).
    let mut plain: Vec<(&str, &str, &[u8])> = layers[..2].to_vec();
    plain.push((kiln_store::MEDIA_TYPE_TENSOR, tensors[0].0, &tensors[0].1));
    write_model(&store, "mlx-bf16", config.clone(), &plain);
    let shown = show_of(&store, "mlx-bf16", false).unwrap();
    assert_eq!(shown.details.quantization_level, "bfloat16");
    assert_eq!(shown.model_info["general.parameter_count"], 128);
}

/// Ollama's TestGetModelInfo_SafetensorsUsesStoredFileType and
/// TestGetModelInfo_SafetensorsModelfileUsesShortName (server/routes_test.go:530, 598): a
/// safetensors LLM's stored file type is its quantization level, a manifest without config.json
/// is answered without `model_info` (GetSafetensorsLLMInfo's error is ignored), and the
/// Modelfile starts FROM the model's name with no replacement hint.
#[test]
fn safetensors_models_answer_ollamas_show_tests() {
    let tmp = test_support::TempStore::new("engine-show-mlx-ollama");
    let store = tmp.store.clone();
    write_model(
        &store,
        "show-safetensors",
        serde_json::json!({"model_format": "safetensors", "file_type": "mxfp8", "capabilities": ["completion"]}),
        &[],
    );
    let shown = show_of(&store, "show-safetensors", false).unwrap();
    assert_eq!(shown.details.quantization_level, "mxfp8");
    assert!(shown.model_info.is_empty());
    write_model(
        &store,
        "show-safetensors",
        serde_json::json!({"model_format": "safetensors", "capabilities": ["completion"]}),
        &[],
    );
    let shown = show_of(&store, "show-safetensors", false).unwrap();
    assert!(
        shown.modelfile.contains("FROM show-safetensors:latest\n"),
        "{}",
        shown.modelfile
    );
    assert!(
        !shown
            .modelfile
            .contains("# To build a new Modelfile based on this, replace FROM with:"),
        "{}",
        shown.modelfile
    );
}

/// An image generation model (safetensors tensor layers, no GGUF, the `image` capability) is
/// answered with what its config says and, when verbose, its tensors (server/routes.go:1554); a
/// model that is neither that nor a safetensors LLM and has no model layer is not found, as
/// Ollama's GGUF read of the missing model answers (routes.go:1567, 1366).
#[test]
fn image_generation_models_are_answered_without_a_gguf() {
    let tmp = test_support::TempStore::new("engine-show-imagegen");
    let store = tmp.store.clone();
    let weight = tensor_blob(serde_json::json!({
        "transformer/proj.weight": {"dtype": "BF16", "shape": [4, 2], "data_offsets": [0, 16]},
    }));
    let layers: [(&str, &str, &[u8]); 2] = [
        (kiln_store::MEDIA_TYPE_JSON, "model_index.json", b"{}"),
        (
            kiln_store::MEDIA_TYPE_TENSOR,
            "transformer/proj.weight",
            &weight,
        ),
    ];
    write_model(
        &store,
        "imagegen",
        serde_json::json!({"model_format": "safetensors", "file_type": "bf16", "capabilities": ["image"]}),
        &layers,
    );
    let shown = show_of(&store, "imagegen", false).unwrap();
    assert_eq!(shown.capabilities, ["image"]);
    assert!(shown.model_info.is_empty() && shown.tensors.is_empty());
    assert_eq!(shown.details.quantization_level, "bf16");
    assert!(shown.modelfile.contains("\nFROM imagegen:latest\n"));
    let verbose = show_of(&store, "imagegen", true).unwrap();
    assert_eq!(
        verbose.tensors,
        [kiln_api::Tensor {
            name: "transformer/proj.weight".into(),
            tensor_type: "BF16".into(),
            shape: vec![4, 2],
        }]
    );
    for config in [
        serde_json::json!({"model_format": "safetensors", "capabilities": ["vision"]}),
        serde_json::json!({"model_format": "gguf"}),
    ] {
        write_model(&store, "nothing", config, &layers);
        let err = show_of(&store, "nothing", false).unwrap_err();
        assert_eq!(
            (err.status(), err.to_string()),
            (404, "model 'nothing:latest' not found".to_owned())
        );
    }
}

/// A safetensors model whose config.json or tensor blob is missing or damaged is an error from
/// show naming the blob (where Ollama would skip it and answer with less).
#[test]
fn show_reports_damaged_safetensors_blobs() {
    let tmp = test_support::TempStore::new("engine-show-mlx-damaged");
    let store = tmp.store.clone();
    let tensors = mlx_tensor_layers();
    let hf = br#"{"model_type": "llama", "hidden_size": 8}"#;
    write_model(
        &store,
        "st",
        serde_json::json!({"model_format": "safetensors", "capabilities": ["completion"]}),
        &[
            (kiln_store::MEDIA_TYPE_JSON, "config.json", hf),
            (kiln_store::MEDIA_TYPE_TENSOR, tensors[0].0, &tensors[0].1),
        ],
    );
    assert_eq!(
        show_of(&store, "st", false).unwrap().model_info["llama.embedding_length"],
        8
    );
    let manifest = store
        .manifest(&ModelName::parse("st").unwrap())
        .unwrap()
        .manifest;
    for (what, layer, garbage) in [
        (
            "config.json",
            &manifest.layers[0],
            &br#"{"hidden_size": "8"}"#[..],
        ),
        ("tensor", &manifest.layers[1], &b"\x10\0\0\0\0\0\0\0{}"[..]),
    ] {
        let path = store.blob_path(&layer.digest().unwrap());
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, garbage).unwrap();
        let err = show_of(&store, "st", false).unwrap_err();
        assert_eq!(err.status(), 500, "{what}: {err}");
        assert!(
            matches!(&err, ManageError::CorruptBlob { what: w, digest, .. } if *w == what && *digest == layer.digest),
            "{what}: {err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = show_of(&store, "st", false).unwrap_err();
        assert_eq!(err.status(), 404, "{what}: {err}");
        assert!(
            err.to_string()
                .starts_with("model 'st:latest' not found: its "),
            "{err}"
        );
        std::fs::write(&path, good).unwrap();
    }
}

/// The template layer's legacy name, `application/vnd.ollama.image.prompt`, is a template to
/// Ollama (server/images.go:741, server/model_list_cache.go:451): show answers it as the
/// template (and in the Modelfile), and both show and list derive capabilities from it. With
/// both names, the last layer is the template.
#[test]
fn legacy_prompt_layers_are_templates() {
    let tmp = test_support::TempStore::new("engine-prompt-layer");
    let store = tmp.store.clone();
    let model = store.write_blob(&tiny_model()[..], None).unwrap();
    let model = kiln_store::Layer::new(MEDIA_TYPE_MODEL, model.digest, model.size);
    let prompt = "{{ .System }}{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}{{ .Suffix }}";
    let plain = "{{ .Prompt }} plain";
    let text_layer = |media_type: &str, text: &str| {
        let blob = store.write_blob(text.as_bytes(), None).unwrap();
        kiln_store::Layer::new(media_type, blob.digest, blob.size)
    };
    let config = store
        .write_blob(&ModelConfig::new().to_bytes()[..], None)
        .unwrap();
    let config = kiln_store::Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config.digest, config.size);
    for (name, layers) in [
        (
            "legacy",
            vec![text_layer(kiln_store::MEDIA_TYPE_PROMPT, prompt)],
        ),
        (
            "prompt-last",
            vec![
                text_layer(MEDIA_TYPE_TEMPLATE, plain),
                text_layer(kiln_store::MEDIA_TYPE_PROMPT, prompt),
            ],
        ),
        (
            "template-last",
            vec![
                text_layer(kiln_store::MEDIA_TYPE_PROMPT, prompt),
                text_layer(MEDIA_TYPE_TEMPLATE, plain),
            ],
        ),
    ] {
        let mut all = vec![model.clone()];
        all.extend(layers);
        store
            .write_manifest(
                &ModelName::parse(name).unwrap(),
                &kiln_store::Manifest::new(config.clone(), all),
            )
            .unwrap();
    }
    for name in ["legacy", "prompt-last"] {
        let shown = show_of(&store, name, false).unwrap();
        assert_eq!(shown.template, prompt, "{name}");
        assert_eq!(
            shown.capabilities,
            ["completion", "tools", "insert"],
            "{name}"
        );
        assert!(
            shown.modelfile.contains(&format!("TEMPLATE {prompt}\n")),
            "{name}"
        );
    }
    // System layers: the last one is the model's system prompt (Ollama assigns each in turn).
    let mut two_systems = vec![model.clone()];
    two_systems.push(text_layer(MEDIA_TYPE_SYSTEM, "first"));
    two_systems.push(text_layer(MEDIA_TYPE_SYSTEM, "second"));
    store
        .write_manifest(
            &ModelName::parse("two-systems").unwrap(),
            &kiln_store::Manifest::new(config.clone(), two_systems),
        )
        .unwrap();
    assert_eq!(
        show_of(&store, "two-systems", false).unwrap().system,
        "second"
    );
    let shown = show_of(&store, "template-last", false).unwrap();
    assert_eq!(shown.template, plain);
    assert_eq!(shown.capabilities, ["completion"]);
    for m in super::models::list(&store).unwrap().models {
        let expected: &[&str] =
            if m.name == "template-last:latest" || m.name == "two-systems:latest" {
                &["completion"]
            } else {
                &["completion", "tools", "insert"]
            };
        assert_eq!(m.capabilities, expected, "{}", m.name);
    }
}
