//! kiln-store's integration tests: Ollama's name cases and encodings, store operations, concurrency,
//! and writers killed mid-write.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kiln_store::{Digest, GarbageKind, Layer, Manifest, ModelConfig, ModelName, Store, StoreError};
use kiln_testkit::TempDir;

/// A store in a fresh temporary directory (removed when the [`TempDir`] drops).
fn temp_store(tag: &str) -> (Store, TempDir) {
    let dir = TempDir::new(&format!("store-{tag}"));
    (Store::open(dir.path()).unwrap(), dir)
}

// ---- names: types/model/name_test.go at ollama fb30760 ----------------------------------------

const PART80: &str =
    "88888888888888888888888888888888888888888888888888888888888888888888888888888888";

#[test]
fn ollama_name_validity_cases() {
    let part350 = "3".repeat(350);
    // TestNameIsValid's table (ParseNameBare + IsValid), with its String() round trip.
    let cases: Vec<(String, bool)> = vec![
        ("".into(), false),
        ("_why/_the/_lucky:_stiff".into(), true),
        ("h/n/m:t".into(), true),
        ("host/namespace/model:tag".into(), true),
        ("host/namespace/model".into(), false),
        ("namespace/model".into(), false),
        ("model".into(), false),
        (format!("{PART80}/{PART80}/{PART80}:{PART80}"), true),
        (format!("{part350}/{PART80}/{PART80}:{PART80}"), true),
        ("h/nn/mm:t".into(), true),
        ("m".into(), false),
        ("n/m:".into(), false),
        ("h/n/m".into(), false),
        ("@t".into(), false),
        ("m@d".into(), false),
        ("^".into(), false),
        ("mm:".into(), false),
        ("/nn/mm".into(), false),
        ("//".into(), false),
        ("//mm".into(), false),
        ("hh//".into(), false),
        ("//mm:@".into(), false),
        ("00@".into(), false),
        ("@".into(), false),
        ("-hh/nn/mm:tt".into(), false),
        ("hh/-nn/mm:tt".into(), false),
        ("hh/nn/-mm:tt".into(), false),
        ("hh/nn/mm:-tt".into(), false),
        ("host:https/namespace/model:tag".into(), true),
        ("host/name:space/model:tag".into(), false),
    ];
    for (s, valid) in cases {
        let parsed = ModelName::parse_qualified(&s);
        assert_eq!(parsed.is_ok(), valid, "{s:?}");
        if let Ok(n) = parsed {
            assert_eq!(n.to_string(), s);
        }
    }
    // Over-long parts.
    assert!(ModelName::parse(&format!("{}x/n/m:t", "3".repeat(350))).is_err());
    assert!(ModelName::parse(&format!("h/n/{PART80}x:t")).is_err());
}

#[test]
fn ollama_name_parsing_and_defaults() {
    // TestParseNameParts (ParseName applies the defaults; Filepath is the manifest path).
    let cases = [
        (
            "registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K",
            [
                "registry.ollama.ai",
                "library",
                "dolphin-mistral",
                "7b-v2.6-dpo-laser-q6_K",
            ],
        ),
        (
            "scheme://host:port/namespace/model:tag",
            ["host:port", "namespace", "model", "tag"],
        ),
        (
            "host/namespace/model:tag",
            ["host", "namespace", "model", "tag"],
        ),
        (
            "host:port/namespace/model:tag",
            ["host:port", "namespace", "model", "tag"],
        ),
        (
            "host/namespace/model",
            ["host", "namespace", "model", "latest"],
        ),
        (
            "host:port/namespace/model",
            ["host:port", "namespace", "model", "latest"],
        ),
        (
            "namespace/model",
            ["registry.ollama.ai", "namespace", "model", "latest"],
        ),
        (
            "model",
            ["registry.ollama.ai", "library", "model", "latest"],
        ),
        ("h/nn/mm:t", ["h", "nn", "mm", "t"]),
    ];
    for (s, parts) in cases {
        assert_eq!(ModelName::parse(s).unwrap().path_parts(), parts, "{s}");
    }
    // TestNameparseNameDefault.
    assert_eq!(
        ModelName::parse("xx").unwrap().to_string(),
        "registry.ollama.ai/library/xx:latest"
    );
    // DisplayShortest as /api/tags shows names.
    assert_eq!(
        ModelName::parse("llama3").unwrap().display_shortest(),
        "llama3:latest"
    );
    assert_eq!(
        ModelName::parse("me/llama3:q4").unwrap().display_shortest(),
        "me/llama3:q4"
    );
    assert_eq!(
        ModelName::parse("h.io/me/llama3:q4")
            .unwrap()
            .display_shortest(),
        "h.io/me/llama3:q4"
    );
    assert_eq!(
        ModelName::parse("REGISTRY.ollama.ai/LIBRARY/m:t")
            .unwrap()
            .display_shortest(),
        "m:t"
    );
}

#[test]
fn names_and_digests_cannot_escape_the_models_directory() {
    for bad in [
        "../x",
        "..",
        "a/../b:t",
        "/etc/passwd",
        "m:../../x",
        "m:t/..",
        "h/n/.m:t",
        "h/../m:t",
        "m:t\0",
        "a\\b",
        "m:.t",
    ] {
        assert!(ModelName::parse(bad).is_err(), "{bad:?}");
    }
    for bad in [
        "sha256:../x",
        "sha256-abc",
        "md5:00",
        "sha256:",
        &format!("sha256:{}/", "0".repeat(63)),
    ] {
        assert!(
            matches!(Digest::parse(bad), Err(e) if e.to_string() == "invalid digest format"),
            "{bad:?}"
        );
    }
    let upper = format!("sha256-{}", "AB".repeat(32));
    assert_eq!(
        Digest::parse(&upper).unwrap().to_string(),
        format!("sha256:{}", "ab".repeat(32))
    );
}

// ---- encodings: manifest.go / layer.go / types/model/config.go ---------------------------------

#[test]
fn manifest_and_config_bytes_follow_gos_encoder() {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let config = Layer {
        media_type: kiln_store::CONFIG_MEDIA_TYPE.into(),
        digest: d('a'),
        size: 123,
        ..Default::default()
    };
    let model = Layer {
        media_type: kiln_store::MEDIA_TYPE_MODEL.into(),
        digest: d('b'),
        size: 1000,
        from: "m<1>&.gguf".into(),
        name: String::new(),
    };
    let template = Layer {
        media_type: kiln_store::MEDIA_TYPE_TEMPLATE.into(),
        digest: d('c'),
        size: 7,
        ..Default::default()
    };
    let bytes = Manifest::new(config, vec![model, template]).to_bytes();
    // Manifest{SchemaVersion, MediaType, Config, Layers}; Layer{mediaType, digest, size, from,omitempty,
    // name,omitempty}; json.Encoder escapes <, >, & and ends with a newline.
    let expected = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"{}\",\"size\":123}},\
         \"layers\":[{{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"{}\",\"size\":1000,\"from\":\"m\\u003c1\\u003e\\u0026.gguf\"}},\
         {{\"mediaType\":\"application/vnd.ollama.image.template\",\"digest\":\"{}\",\"size\":7}}]}}\n",
        d('a'),
        d('b'),
        d('c')
    );
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);

    let mut cfg = ModelConfig::new();
    cfg.model_format = "gguf".into();
    cfg.model_family = "llama".into();
    cfg.model_families = Some(vec!["llama".into()]);
    cfg.model_type = "8.0B".into();
    cfg.file_type = "Q4_K_M".into();
    assert_eq!(
        String::from_utf8(cfg.to_bytes()).unwrap(),
        "{\"model_format\":\"gguf\",\"model_family\":\"llama\",\"model_families\":[\"llama\"],\"model_type\":\"8.0B\",\
         \"file_type\":\"Q4_K_M\",\"architecture\":\"amd64\",\"os\":\"linux\"}\n"
    );
    // Ollama's own fixture: the config blob TestCreateFromBin stores (server/routes_create_test.go:742
    // at ollama fb30760 lists its digest).
    let mut fixture = ModelConfig::new();
    fixture.model_format = "gguf".into();
    fixture.model_family = "test".into();
    fixture.model_families = Some(vec!["test".into()]);
    fixture.model_type = "0".into();
    fixture.file_type = "unknown".into();
    assert_eq!(
        Digest::of(&fixture.to_bytes()).hex(),
        "99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c"
    );
    // A nil ModelFamilies slice encodes as null; renderer/parser are omitempty.
    let mut bare = ModelConfig::new();
    bare.parser = "qwen3".into();
    assert_eq!(
        String::from_utf8(bare.to_bytes()).unwrap(),
        "{\"model_format\":\"\",\"model_family\":\"\",\"model_families\":null,\"model_type\":\"\",\"file_type\":\"\",\
         \"parser\":\"qwen3\",\"architecture\":\"amd64\",\"os\":\"linux\"}\n"
    );
}

// ---- operations -------------------------------------------------------------------------------

fn create_model(store: &Store, name: &str, model_bytes: &[u8], template: &str) -> ModelName {
    let _guard = store.create_guard().unwrap();
    let model = store.write_blob(model_bytes, None).unwrap();
    let tmpl = store.write_blob(template.as_bytes(), None).unwrap();
    let mut cfg = ModelConfig::new();
    cfg.model_format = "gguf".into();
    let cfg_bytes = cfg.to_bytes();
    let config = store.write_blob(&cfg_bytes[..], None).unwrap();
    let manifest = Manifest::new(
        Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config.digest, config.size),
        vec![
            Layer::new(kiln_store::MEDIA_TYPE_MODEL, model.digest, model.size),
            Layer::new(kiln_store::MEDIA_TYPE_TEMPLATE, tmpl.digest, tmpl.size),
        ],
    );
    let name = ModelName::parse(name).unwrap();
    store.write_manifest(&name, &manifest).unwrap();
    name
}

#[test]
fn blobs_manifests_list_copy_delete() {
    let (store, tmp) = temp_store("ops");
    let dir = tmp.path();
    let data = b"GGUF pretend model";
    let blob = store
        .write_blob(&data[..], Some(&Digest::of(data)))
        .unwrap();
    assert!(blob.created);
    assert_eq!(
        std::fs::read(dir.join("blobs").join(Digest::of(data).file_name())).unwrap(),
        data
    );
    assert!(
        !store.write_blob(&data[..], None).unwrap().created,
        "an existing blob is reused"
    );
    let wrong = Digest::of(b"something else");
    match store.write_blob(&b"tampered"[..], Some(&wrong)) {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::of(b"tampered"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.has_blob(&Digest::of(b"tampered")));
    {
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"abandoned").unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the one real blob remains: {leftovers:?}"
    );

    let a = create_model(&store, "alpha:v1", b"shared model bytes", "tmpl A");
    let b = create_model(&store, "me/beta", b"shared model bytes", "tmpl B");
    assert!(
        dir.join("manifests/registry.ollama.ai/library/alpha/v1")
            .is_file()
    );
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|m| m.name.display_shortest())
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.contains(&"alpha:v1".to_owned()) && listed.contains(&"me/beta:latest".to_owned())
    );
    let stored = store.manifest(&a).unwrap();
    assert_eq!(
        stored.digest,
        Digest::of(
            &std::fs::read(dir.join("manifests/registry.ollama.ai/library/alpha/v1")).unwrap()
        )
    );
    assert_eq!(
        stored.manifest.size(),
        stored.manifest.layers.iter().map(|l| l.size).sum::<i64>() + stored.manifest.config.size
    );

    // Case-insensitive resolution keeps the existing spelling.
    let loud = ModelName::parse("ALPHA:V1").unwrap();
    assert_eq!(store.existing_name(&loud).unwrap(), a);

    let c = ModelName::parse("gamma").unwrap();
    store.copy(&a, &c).unwrap();
    assert_eq!(
        store.manifest_bytes(&a).unwrap(),
        store.manifest_bytes(&c).unwrap()
    );

    // A manifest referencing a missing blob is refused.
    let ghost = Manifest::new(
        Layer::new(kiln_store::CONFIG_MEDIA_TYPE, Digest::of(b"nope"), 4),
        vec![],
    );
    assert!(matches!(
        store.write_manifest(&ModelName::parse("ghost").unwrap(), &ghost),
        Err(StoreError::MissingBlob { .. })
    ));

    // Deleting alpha keeps blobs gamma (its copy) and beta still use.
    store.delete(&a).unwrap();
    assert!(matches!(
        store.manifest(&a),
        Err(StoreError::ModelNotFound { .. })
    ));
    let report = store.verify().unwrap();
    assert!(
        report.missing_blobs.is_empty() && report.corrupt_blobs.is_empty(),
        "{report:?}"
    );
    store.delete(&c).unwrap();
    store.delete(&b).unwrap();
    assert!(
        !dir.join("manifests/registry.ollama.ai").exists(),
        "empty directories are pruned"
    );
    // Everything the three models held is gone except the first, unreferenced blob.
    let left: Vec<_> = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(store.prune(Duration::ZERO).unwrap().len(), 1);
}

#[test]
fn verify_reports_corruption() {
    let (store, _dir) = temp_store("verify");
    let name = create_model(&store, "m", b"model", "t");
    let m = store.manifest(&name).unwrap();
    let digest = m.manifest.layers[0].digest().unwrap();
    std::fs::write(store.blob_path(&digest), b"flipped").unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.corrupt_blobs, vec![digest]);
    std::fs::remove_file(store.blob_path(&digest)).unwrap();
    let report = store.verify().unwrap();
    assert_eq!(
        report.missing_blobs,
        vec![("m:latest".to_owned(), digest.to_string())]
    );
}

#[test]
fn concurrent_creates_deletes_and_prunes_keep_the_store_consistent() {
    let (store, _dir) = temp_store("concurrent");
    std::thread::scope(|s| {
        for t in 0..3 {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..20 {
                    create_model(
                        &store,
                        &format!("t{t}:m{}", i % 4),
                        format!("model {t} {i}").as_bytes(),
                        "shared template",
                    );
                }
            });
        }
        let store = store.clone();
        s.spawn(move || {
            for i in 0..40 {
                let _ = store.delete(&ModelName::parse(&format!("t{}:m{}", i % 3, i % 4)).unwrap());
                let _ = store.prune(Duration::ZERO);
            }
        });
    });
    let report = store.verify().unwrap();
    assert!(
        report.missing_blobs.is_empty()
            && report.corrupt_blobs.is_empty()
            && report.bad_manifests.is_empty(),
        "{report:?}"
    );
}

/// Child mode for the crash test: create models forever until killed.
fn crash_child(root: &str) {
    let store = Store::open(root).unwrap();
    for i in 0.. {
        let body: Vec<u8> = (0..200_000u32).map(|j| (j ^ i) as u8).collect();
        create_model(
            &store,
            &format!("crash:v{}", i % 5),
            &body,
            &format!("template {i}"),
        );
        if i % 3 == 0 {
            let _ = store.delete(&ModelName::parse(&format!("crash:v{}", (i + 2) % 5)).unwrap());
        }
    }
}

#[test]
fn writers_killed_at_random_points_never_corrupt_the_store() {
    if let Ok(root) = std::env::var("KILN_STORE_CRASH_CHILD") {
        crash_child(&root);
        return;
    }
    let (store, tmp) = temp_store("crash");
    let dir = tmp.path();
    let mut seed = 0x2545_f491_u64 ^ std::process::id() as u64;
    for round in 0..25 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "writers_killed_at_random_points_never_corrupt_the_store",
                "--nocapture",
            ])
            .env("KILN_STORE_CRASH_CHILD", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 120));
        child.kill().unwrap();
        child.wait().unwrap();
        let report = store.verify().unwrap();
        assert!(
            report.missing_blobs.is_empty()
                && report.corrupt_blobs.is_empty()
                && report.bad_manifests.is_empty(),
            "round {round}: {report:?}"
        );
    }
    // Only whole files remain apart from temporaries, which prune collects.
    store.prune(Duration::ZERO).unwrap();
    for entry in std::fs::read_dir(dir.join("blobs")).unwrap().flatten() {
        assert!(
            Digest::parse(&entry.file_name().to_string_lossy()).is_ok(),
            "{:?} left behind",
            entry.file_name()
        );
    }
}

#[test]
fn partial_downloads_enter_the_store_only_when_they_hash_right() {
    let (store, _dir) = temp_store("partials");
    let good = b"the whole blob".as_slice();
    let digest = Digest::of(good);
    // Ollama's file names, so a pull resumes across kiln and Ollama.
    assert_eq!(
        store
            .partial_path(&digest)
            .file_name()
            .unwrap()
            .to_string_lossy(),
        format!("sha256-{}-partial", &digest.to_string()[7..])
    );
    assert_eq!(
        store
            .partial_part_path(&digest, 3)
            .file_name()
            .unwrap()
            .to_string_lossy(),
        format!("sha256-{}-partial-3", &digest.to_string()[7..])
    );

    // A download whose bytes are wrong is removed, records too, and reported.
    std::fs::write(store.partial_path(&digest), b"the whole blub").unwrap();
    std::fs::write(store.partial_part_path(&digest, 0), b"{}").unwrap();
    assert_eq!(store.partials().unwrap().len(), 1);
    assert_eq!(store.partials().unwrap()[0].digest, digest);
    match store.commit_partial(&digest) {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, digest);
            assert_eq!(actual, Digest::of(b"the whole blub"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.has_blob(&digest));
    assert!(store.partials().unwrap().is_empty());
    assert!(!store.partial_part_path(&digest, 0).exists());

    // The right bytes become the blob.
    std::fs::write(store.partial_path(&digest), good).unwrap();
    std::fs::write(store.partial_part_path(&digest, 0), b"{}").unwrap();
    std::fs::write(store.partial_part_path(&digest, 1), b"{}").unwrap();
    let stored = store.commit_partial(&digest).unwrap();
    assert_eq!(
        (stored.digest, stored.size, stored.created),
        (digest, good.len() as u64, true)
    );
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), good);
    assert!(store.partials().unwrap().is_empty());
    assert!(!store.partial_part_path(&digest, 1).exists());

    // Abandoned downloads are store debris: prune leaves them alone within the grace period
    // and removes them after it.
    let other = Digest::of(b"never finished");
    std::fs::write(store.partial_path(&other), b"never").unwrap();
    std::fs::write(store.partial_part_path(&other, 0), b"{}").unwrap();
    assert!(store.prune(Duration::from_secs(3600)).unwrap().is_empty());
    assert_eq!(store.partials().unwrap().len(), 1);
    let removed = store.prune(Duration::ZERO).unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}"); // two partial files and the unreferenced blob
    assert!(store.partials().unwrap().is_empty());
}

#[test]
fn manifests_from_a_registry_are_stored_byte_for_byte() {
    let (store, tmp) = temp_store("verbatim");
    let dir = tmp.path();
    let name: ModelName = "registry.example/team/m:v1".parse().unwrap();
    let config = store.write_blob(&b"{}"[..], None).unwrap().digest;
    // Missing blobs are refused: the manifest comes last.
    let missing = br#"{"schemaVersion":2,"config":{"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":2},"layers":[]}"#;
    assert!(matches!(
        store.write_manifest_verbatim(&name, missing),
        Err(StoreError::MissingBlob { .. })
    ));
    assert!(store.manifest(&name).is_err());
    // Indented, with a key order and spacing kiln's encoder would not produce.
    let text = "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n  \"config\": {\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"digest\": \"CONFIG\", \"size\": 2},\n  \"layers\": []\n}\n"
        .replace("CONFIG", &config.to_string());
    let bytes = text.as_bytes();
    store.write_manifest_verbatim(&name, bytes).unwrap();
    assert_eq!(store.manifest_bytes(&name).unwrap(), bytes);
    assert!(dir.join("manifests/registry.example/team/m/v1").is_file());
    assert_eq!(store.manifest(&name).unwrap().manifest.layers.len(), 0);
}

#[test]
fn blobs_a_damaged_manifest_mentions_are_never_collected() {
    let (store, tmp) = temp_store("damaged-manifest");
    let dir = tmp.path();
    let model = store.write_blob(&b"model bytes"[..], None).unwrap();
    let config = store.write_blob(&b"{}"[..], None).unwrap();
    let manifest = Manifest::new(
        Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config.digest, config.size),
        vec![Layer::new(
            kiln_store::MEDIA_TYPE_MODEL,
            model.digest,
            model.size,
        )],
    );
    let damaged: ModelName = "damaged".parse().unwrap();
    let sibling: ModelName = "sibling".parse().unwrap();
    store.write_manifest(&damaged, &manifest).unwrap();
    store.write_manifest(&sibling, &manifest).unwrap();
    // Cut the file short: it no longer parses, but still names both blobs.
    let path = dir.join("manifests/registry.ollama.ai/library/damaged/latest");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(store.manifest(&damaged).is_err());
    assert_eq!(
        store.verify().unwrap().bad_manifests,
        std::slice::from_ref(&path)
    );

    // Deleting the model that shares them, a create's cleanup and a prune all keep them.
    let deleted = store.delete(&sibling).unwrap();
    assert!(deleted.blobs_removed.is_empty(), "{deleted:?}");
    assert_eq!(deleted.bytes_freed, 0);
    assert!(store.has_blob(&model.digest) && store.has_blob(&config.digest));
    let removed = store
        .remove_unreferenced([model.digest, config.digest])
        .unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert!(store.prune(Duration::ZERO).unwrap().is_empty());
    assert!(store.has_blob(&model.digest) && store.has_blob(&config.digest));

    // Once the damaged manifest is gone, they are garbage.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(store.prune(Duration::ZERO).unwrap().len(), 2);
}

#[test]
fn garbage_lists_what_prune_removes_without_removing_it() {
    let (store, tmp) = temp_store("garbage");
    let dir = tmp.path();
    let kept = store.write_blob(&b"{}"[..], None).unwrap();
    let manifest = Manifest::new(
        Layer::new(kiln_store::CONFIG_MEDIA_TYPE, kept.digest, kept.size),
        vec![],
    );
    store
        .write_manifest(&"kept".parse().unwrap(), &manifest)
        .unwrap();
    let orphan = store.write_blob(&vec![7u8; 10_000][..], None).unwrap();
    let partial = Digest::of(b"half a download");
    std::fs::write(store.partial_path(&partial), vec![1u8; 5000]).unwrap();
    std::fs::write(store.partial_part_path(&partial, 0), b"{}").unwrap();
    let crashed = dir.join("blobs/.kiln-tmp-crashed");
    std::fs::write(&crashed, b"left by a crash").unwrap();

    assert!(store.garbage(Duration::from_secs(3600)).unwrap().is_empty());
    let garbage = store.garbage(Duration::ZERO).unwrap();
    let mut kinds: Vec<(String, GarbageKind)> = garbage
        .iter()
        .map(|g| {
            (
                g.path.file_name().unwrap().to_string_lossy().into_owned(),
                g.kind,
            )
        })
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (".kiln-tmp-crashed".to_owned(), GarbageKind::Temporary),
        (
            format!("{}", orphan.digest).replace(':', "-"),
            GarbageKind::Unreferenced,
        ),
        (
            format!("{}-partial", partial).replace(':', "-"),
            GarbageKind::PartialDownload,
        ),
        (
            format!("{}-partial-0", partial).replace(':', "-"),
            GarbageKind::PartialDownload,
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(kinds, expected);
    // Sizes are what the files occupy on disk: at least their length, rounded to blocks.
    let orphan_entry = garbage
        .iter()
        .find(|g| g.kind == GarbageKind::Unreferenced)
        .unwrap();
    assert!(orphan_entry.bytes >= 10_000, "{orphan_entry:?}");
    // Nothing was removed by looking.
    assert!(store.has_blob(&orphan.digest) && crashed.exists());
    let mut removed = store.prune(Duration::ZERO).unwrap();
    removed.sort();
    let mut listed: Vec<_> = garbage.into_iter().map(|g| g.path).collect();
    listed.sort();
    assert_eq!(removed, listed);
    assert!(store.has_blob(&kept.digest));
    assert!(store.garbage(Duration::ZERO).unwrap().is_empty());
}

// ---- delete reports what it freed ------------------------------------------------------------

#[test]
fn delete_reports_only_the_blobs_it_removed() {
    let (store, _dir) = temp_store("delete-freed");
    let config = store
        .write_blob(&b"{\"shared config\":1}"[..], None)
        .unwrap();
    let shared = store.write_blob(&[7u8; 3000][..], None).unwrap();
    let own_a = store.write_blob(&[1u8; 1000][..], None).unwrap();
    let own_b = store.write_blob(&[2u8; 500][..], None).unwrap();
    let model = |own: &kiln_store::StoredBlob| {
        Manifest::new(
            Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config.digest, config.size),
            vec![
                Layer::new(kiln_store::MEDIA_TYPE_MODEL, shared.digest, shared.size),
                Layer::new(kiln_store::MEDIA_TYPE_ADAPTER, own.digest, own.size),
            ],
        )
    };
    let a: ModelName = "a".parse().unwrap();
    let b: ModelName = "b".parse().unwrap();
    store.write_manifest(&a, &model(&own_a)).unwrap();
    store.write_manifest(&b, &model(&own_b)).unwrap();

    // The first delete frees only the blob no one else uses.
    let first = store.delete(&a).unwrap();
    assert_eq!(first.blobs_removed, vec![own_a.digest]);
    assert_eq!(first.bytes_freed, own_a.size);
    assert!(store.has_blob(&shared.digest) && store.has_blob(&config.digest));

    // The last one frees the rest, each blob counted once.
    let second = store.delete(&b).unwrap();
    let mut removed = second.blobs_removed.clone();
    removed.sort();
    let mut expected = vec![config.digest, shared.digest, own_b.digest];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(second.bytes_freed, config.size + shared.size + own_b.size);
    assert!(matches!(
        store.delete(&b),
        Err(StoreError::ModelNotFound { .. })
    ));
}

// ---- imports: reflink, hard link, copy -------------------------------------------------------

use kiln_store::{ImportMethod, ImportMode};

/// Entries of `blobs/` (nothing else, temporary files included).
fn blob_entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn source_file(dir: &std::path::Path, name: &str, content: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn import_by_copy_is_verified_and_independent() {
    let (store, tmp) = temp_store("import-copy");
    let dir = tmp.path();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = source_file(&dir.join("src"), "model.gguf", &content);
    let digest = Digest::of(&content);

    let got = store
        .import_file(&src, ImportMode::Copy, Some(&digest))
        .unwrap();
    assert_eq!(got.digest, digest);
    assert_eq!(got.size, content.len() as u64);
    assert_eq!(got.method, ImportMethod::Copy);
    assert!(got.created);
    assert_eq!(blob_entries(dir), vec![digest.file_name()]);
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), content);

    // Independent of the source: writing to it in place leaves the blob intact.
    std::fs::write(&src, b"edited").unwrap();
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), content);

    // Identical content again: the existing blob is reused, no temp file left.
    let again = source_file(&dir.join("src"), "again.gguf", &content);
    let reused = store.import_file(&again, ImportMode::Copy, None).unwrap();
    assert!(!reused.created);
    assert_eq!(reused.digest, digest);
    assert_eq!(blob_entries(dir), vec![digest.file_name()]);

    // A wrong expected digest stores nothing and says where.
    let other = source_file(&dir.join("src"), "other.gguf", b"other bytes");
    match store.import_file(&other, ImportMode::Copy, Some(&digest)) {
        Err(StoreError::ImportMismatch {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, other);
            assert_eq!(expected, digest);
            assert_eq!(actual, Digest::of(b"other bytes"));
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(blob_entries(dir), vec![digest.file_name()]);

    // Bad inputs are errors naming the path, never panics.
    match store.import_file(dir.join("src"), ImportMode::Copy, None) {
        Err(StoreError::NotAFile { path }) => assert_eq!(path, dir.join("src")),
        r => panic!("{r:?}"),
    }
    match store.import_file(dir.join("missing"), ImportMode::Auto, None) {
        Err(StoreError::Io { path, .. }) => assert_eq!(path, dir.join("missing")),
        r => panic!("{r:?}"),
    }
    assert_eq!(blob_entries(dir), vec![digest.file_name()]);
}

#[cfg(unix)]
#[test]
fn import_by_hardlink_shares_the_inode_and_is_verified() {
    use std::os::unix::fs::MetadataExt;
    let (store, tmp) = temp_store("import-hardlink");
    let dir = tmp.path();
    let content = b"GGUF hard-linked weights".repeat(1000);
    let src = source_file(&dir.join("src"), "model.gguf", &content);
    let digest = Digest::of(&content);

    // A wrong expected digest leaves nothing in the store, and the source as it was.
    let wrong = Digest::of(b"not it");
    match store.import_file(&src, ImportMode::Hardlink, Some(&wrong)) {
        Err(StoreError::ImportMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, digest);
        }
        r => panic!("{r:?}"),
    }
    assert!(blob_entries(dir).is_empty(), "{:?}", blob_entries(dir));
    assert_eq!(std::fs::metadata(&src).unwrap().nlink(), 1);
    assert_eq!(std::fs::read(&src).unwrap(), content);

    let got = store
        .import_file(&src, ImportMode::Hardlink, Some(&digest))
        .unwrap();
    assert_eq!(got.method, ImportMethod::Hardlink);
    assert!(got.created);
    assert_eq!(got.size, content.len() as u64);
    assert_eq!(blob_entries(dir), vec![digest.file_name()]);
    let blob = std::fs::metadata(store.blob_path(&digest)).unwrap();
    let source = std::fs::metadata(&src).unwrap();
    assert_eq!((blob.dev(), blob.ino()), (source.dev(), source.ino()));
    assert_eq!(blob.nlink(), 2);

    // A symbolic link is followed: the blob is the file, not the link.
    let link = dir.join("src/link.gguf");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let via_link = store
        .import_file(&link, ImportMode::Hardlink, None)
        .unwrap();
    assert!(!via_link.created);
    assert_eq!(blob_entries(dir), vec![digest.file_name()]);
    assert!(
        std::fs::symlink_metadata(store.blob_path(&digest))
            .unwrap()
            .is_file()
    );

    // Deleting the model frees nothing: the data is still the source's.
    let name: ModelName = "linked".parse().unwrap();
    let config = store.write_blob(&b"{}"[..], None).unwrap();
    let manifest = Manifest::new(
        Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config.digest, config.size),
        vec![Layer::new(
            kiln_store::MEDIA_TYPE_MODEL,
            got.digest,
            got.size,
        )],
    );
    store.write_manifest(&name, &manifest).unwrap();
    let deleted = store.delete(&name).unwrap();
    assert_eq!(deleted.blobs_removed.len(), 2);
    assert_eq!(deleted.bytes_freed, config.size);
    assert_eq!(std::fs::read(&src).unwrap(), content);
}

/// Whether `ImportMode::Reflink` works for a store and a file under `dir`; the error says why not.
fn try_reflink(dir: &std::path::Path) -> Result<(), String> {
    let (store, root) = (Store::open(dir.join("store")).unwrap(), dir.join("store"));
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let src = source_file(&dir.join("src"), "model.gguf", &content);
    let digest = Digest::of(&content);
    let result = store.import_file(&src, ImportMode::Reflink, Some(&digest));
    let out = match result {
        Ok(got) => {
            assert_eq!(got.method, ImportMethod::Reflink);
            assert_eq!(got.digest, digest);
            assert_eq!(blob_entries(&root), vec![digest.file_name()]);
            // Copy-on-write: a separate inode, and editing the source in place leaves the blob.
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let b = std::fs::metadata(store.blob_path(&digest)).unwrap();
                let s = std::fs::metadata(&src).unwrap();
                assert_ne!(b.ino(), s.ino());
            }
            std::fs::OpenOptions::new()
                .write(true)
                .open(&src)
                .unwrap()
                .write_all(b"edited in place")
                .unwrap();
            assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), content);
            // Auto reflinks too.
            let again = source_file(&dir.join("src"), "again.gguf", &content);
            let auto = store.import_file(&again, ImportMode::Auto, None).unwrap();
            assert_eq!(auto.method, ImportMethod::Reflink);
            assert!(!auto.created);
            Ok(())
        }
        Err(StoreError::Reflink { error, .. }) => {
            // Nothing left behind, and Auto falls back to a copy.
            assert!(blob_entries(&root).is_empty(), "{:?}", blob_entries(&root));
            let auto = store
                .import_file(&src, ImportMode::Auto, Some(&digest))
                .unwrap();
            assert_eq!(auto.method, ImportMethod::Copy);
            assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), content);
            Err(error.to_string())
        }
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(dir.join("src"));
    out
}

#[test]
fn import_by_reflink_where_the_file_system_allows() {
    // The temporary directory: usually ext4 or tmpfs (no reflinks: Auto must copy).
    let tmp = std::env::temp_dir().join(format!("kiln-store-reflink-{}", std::process::id()));
    match try_reflink(&tmp) {
        Ok(()) => eprintln!("reflink works in {}", tmp.display()),
        Err(why) => eprintln!("no reflink in {} ({why}); Auto copied", tmp.display()),
    }
    let _ = std::fs::remove_dir_all(&tmp);

    // A directory on Btrfs/XFS/bcachefs, e.g. a loop-mounted image (see the crate README).
    let Some(dir) = std::env::var_os("KILN_REFLINK_DIR") else {
        eprintln!(
            "SKIPPED reflink on a reflink-capable file system: set KILN_REFLINK_DIR to a \
             directory on Btrfs, XFS or bcachefs"
        );
        return;
    };
    let dir = PathBuf::from(dir).join(format!("kiln-store-reflink-{}", std::process::id()));
    let result = try_reflink(&dir);
    if result.is_ok() {
        eprintln!("reflink verified in {}", dir.display());
    }
    #[cfg(unix)]
    cross_device_links_fail_cleanly(&dir, &tmp);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = result {
        panic!("KILN_REFLINK_DIR={} does not reflink: {why}", dir.display());
    }
}

/// A source on another file system than the store: explicit Hardlink and Reflink fail with their
/// own errors and leave nothing; Auto copies.
#[cfg(unix)]
fn cross_device_links_fail_cleanly(store_dir: &std::path::Path, other_dir: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let root = store_dir.join("cross");
    let store = Store::open(&root).unwrap();
    let src = source_file(other_dir, "model.gguf", b"on another file system");
    if std::fs::metadata(&src).unwrap().dev() == std::fs::metadata(&root).unwrap().dev() {
        eprintln!("SKIPPED cross-device links: both directories are on one file system");
        let _ = std::fs::remove_dir_all(other_dir);
        return;
    }
    assert!(matches!(
        store.import_file(&src, ImportMode::Hardlink, None),
        Err(StoreError::Hardlink { .. })
    ));
    assert!(matches!(
        store.import_file(&src, ImportMode::Reflink, None),
        Err(StoreError::Reflink { .. })
    ));
    assert!(blob_entries(&root).is_empty(), "{:?}", blob_entries(&root));
    let auto = store.import_file(&src, ImportMode::Auto, None).unwrap();
    assert_eq!(auto.method, ImportMethod::Copy);
    let _ = std::fs::remove_dir_all(other_dir);
}

/// `write_atomically`: a write that fails leaves the old file as it was and no temporary file
/// beside it; one that succeeds replaces it whole.
#[test]
fn atomic_writes_replace_whole_or_not_at_all() {
    let tmp = TempDir::new("atomic");
    let dir = tmp.path();
    let path = dir.join("out.gguf");
    std::fs::write(&path, b"old contents").unwrap();
    let io = |p: &std::path::Path, e: std::io::Error| format!("{}: {e}", p.display());
    let failed: Result<(), String> = kiln_store::write_atomically(
        &path,
        |f| {
            f.write_all(&[7u8; 3 << 20]).map_err(|e| e.to_string())?;
            Err("the writer gave up".to_owned())
        },
        io,
    );
    assert_eq!(failed, Err("the writer gave up".to_owned()));
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(), ["out.gguf"]);
    let written = kiln_store::write_atomically(
        &path,
        |f| f.write_all(b"new").map(|()| 3).map_err(|e| e.to_string()),
        io,
    );
    assert_eq!(written, Ok(3));
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert_eq!(names(), ["out.gguf"]);
    // A directory that does not exist: the creation step's error, through `io_error`.
    let missing = dir.join("no/such/dir/out.gguf");
    let err = kiln_store::write_atomically(&missing, |_| Ok::<(), String>(()), io).unwrap_err();
    assert!(err.contains("no/such/dir"), "{err}");
}
