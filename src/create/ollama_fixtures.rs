//! Ollama's own create tests (`server/routes_create_test.go`), run through kiln's engine: the
//! same requests on the same GGUF bytes must leave exactly the blobs Ollama's tests list, by
//! digest, and answer the same HTTP codes.

use std::ops::ControlFlow;

use kiln_api::{CreateRequest, ProgressResponse};
use kiln_store::{ModelName, Store};
use serde_json::json;

use super::test_support::TempStore;
use super::{CreateError, Engine, HttpStatus};

/// The blob Ollama's `createBinFile` writes: a tensor-less GGUF v3 whose string metadata is
/// `general.architecture = "test"` plus `extra`, keys sorted, and no padding after the header
/// (Go's `ggml.WriteGGUF` pads only before tensor data).
fn bin_file(store: &Store, extra: &[(&str, &str)]) -> String {
    let mut md = vec![("general.architecture", "test")];
    md.extend_from_slice(extra);
    md.sort();
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend((md.len() as u64).to_le_bytes());
    for (key, value) in md {
        bytes.extend((key.len() as u64).to_le_bytes());
        bytes.extend(key.as_bytes());
        bytes.extend(8u32.to_le_bytes()); // string
        bytes.extend((value.len() as u64).to_le_bytes());
        bytes.extend(value.as_bytes());
    }
    store
        .write_blob(&bytes[..], None)
        .unwrap()
        .digest
        .to_string()
}

struct Fixture {
    tmp: TempStore,
    engine: Engine,
}

fn fixture(tag: &str) -> Fixture {
    let tmp = TempStore::new(&format!("ollama-{tag}"));
    Fixture {
        engine: Engine::new(tmp.store.clone()).with_threads(1),
        tmp,
    }
}

impl Fixture {
    fn create(&self, request: serde_json::Value) -> Result<Vec<String>, CreateError> {
        let request: CreateRequest = serde_json::from_value(request).unwrap();
        let mut statuses = Vec::new();
        self.engine
            .create(request, &mut |p: ProgressResponse| {
                statuses.push(p.status);
                ControlFlow::Continue(())
            })
            .map(|()| statuses)
    }

    /// The blob digests on disk, as Ollama's `checkFileExists` compares them (sorted).
    fn blobs(&self) -> Vec<String> {
        self.tmp
            .blob_files()
            .iter()
            .filter_map(|n| n.strip_prefix("sha256-").map(str::to_owned))
            .collect()
    }

    /// `digests` plus the model layer of every stored model. Ollama's tests stub out
    /// llama-quantize with a plain copy, so their uploaded GGUF is also the model layer; kiln
    /// really validates it (llama-quantize's COPY, checked against llama.cpp in
    /// tests/model_quant.rs), which rewrites the header (`general.file_type`, alignment), so
    /// the model layer is a second blob here.
    fn expected(&self, digests: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = digests.iter().map(|d| (*d).to_owned()).collect();
        for m in self.tmp.store.list().unwrap() {
            for l in &m.manifest.layers {
                if l.media_type == kiln_store::MEDIA_TYPE_MODEL {
                    v.push(l.digest.trim_start_matches("sha256:").to_owned());
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }

    fn manifests(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tmp
            .store
            .list()
            .unwrap()
            .into_iter()
            .map(|m| m.name.to_string())
            .collect();
        names.sort();
        names
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(
            self.tmp
                .store
                .root()
                .join("blobs")
                .join(format!("sha256-{digest}")),
        )
        .unwrap()
    }
}

const GGUF: &str = "89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad";
const CONFIG: &str = "99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c";

#[test]
fn create_from_bin() {
    let f = fixture("bin");
    let digest = bin_file(&f.tmp.store, &[]);
    assert_eq!(digest, format!("sha256:{GGUF}"));
    f.create(json!({"name": "test", "files": {"test.gguf": digest}, "stream": false}))
        .unwrap();
    assert_eq!(f.manifests(), ["registry.ollama.ai/library/test:latest"]);
    assert_eq!(f.blobs(), f.expected(&[CONFIG, GGUF]));

    for request in [
        json!({"name": "my-gguf-model", "files": {"0.gguf": ""}}),
        json!({"name": "my-gguf-model", "files": {"0.gguf": digest}, "adapters": {"adapter.gguf": ""}}),
    ] {
        let err = f.create(request).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("invalid digest format"), "{err}");
    }
    assert_eq!(f.blobs(), f.expected(&[CONFIG, GGUF]));
}

#[test]
fn create_from_model_adds_no_blobs() {
    let f = fixture("from");
    let digest = bin_file(&f.tmp.store, &[]);
    f.create(json!({"name": "test", "files": {"test.gguf": digest}}))
        .unwrap();
    f.create(json!({"name": "test2", "from": "test"})).unwrap();
    assert_eq!(
        f.manifests(),
        [
            "registry.ollama.ai/library/test2:latest",
            "registry.ollama.ai/library/test:latest"
        ]
    );
    assert_eq!(f.blobs(), f.expected(&[CONFIG, GGUF]));
}

#[test]
fn recreating_with_a_new_template_prunes_the_old_one() {
    let f = fixture("removes");
    let digest = bin_file(&f.tmp.store, &[]);
    f.create(json!({"name": "test", "files": {"test.gguf": digest}, "template": "{{ .Prompt }}"}))
        .unwrap();
    assert_eq!(
        f.blobs(),
        f.expected(&[
            GGUF,
            "b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315",
            CONFIG
        ])
    );
    f.create(json!({"name": "test", "files": {"test.gguf": digest},
                    "template": "{{ .System }} {{ .Prompt }}"}))
        .unwrap();
    assert_eq!(
        f.blobs(),
        f.expected(&[
            CONFIG,
            GGUF,
            "fe7ac77b725cda2ccad03f88a880ecdfd7a33192d6cae08fce2c0ee1455991ed"
        ])
    );
}

#[test]
fn recreating_without_system_drops_it() {
    let f = fixture("unsets");
    let digest = bin_file(&f.tmp.store, &[]);
    f.create(json!({"name": "test", "files": {"test.gguf": digest}, "system": "Say hi!"}))
        .unwrap();
    assert_eq!(
        f.blobs(),
        f.expected(&[
            CONFIG,
            GGUF,
            "f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851"
        ])
    );
    f.create(json!({"name": "test", "files": {"test.gguf": digest}, "system": ""}))
        .unwrap();
    assert_eq!(f.blobs(), f.expected(&[CONFIG, GGUF]));
}

#[test]
fn parameters_merge_with_the_base_model() {
    let f = fixture("params");
    let digest = bin_file(&f.tmp.store, &[]);
    let first = "1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37";
    f.create(json!({"name": "test", "files": {"test.gguf": digest},
                    "parameters": {"temperature": 1, "top_k": 10, "stop": ["USER:", "ASSISTANT:"]}}))
        .unwrap();
    assert_eq!(f.blobs(), f.expected(&[first, CONFIG, GGUF]));

    f.create(json!({"name": "test2", "from": "test",
                    "parameters": {"temperature": 0.6, "top_p": 0.7}}))
        .unwrap();
    let merged = "e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba";
    assert_eq!(f.blobs(), f.expected(&[first, CONFIG, GGUF, merged]));
    assert_eq!(
        f.blob(merged),
        b"{\"stop\":[\"USER:\",\"ASSISTANT:\"],\"temperature\":0.6,\"top_k\":10,\"top_p\":0.7}\n"
    );

    // Lists are replaced, not merged; test2's old parameters blob is pruned.
    f.create(json!({"name": "test2", "from": "test",
                    "parameters": {"temperature": 0.6, "top_p": 0.7, "stop": ["<|endoftext|>"]}}))
        .unwrap();
    let replaced = "12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35";
    assert_eq!(f.blobs(), f.expected(&[replaced, first, CONFIG, GGUF]));
    let value: serde_json::Value = serde_json::from_slice(&f.blob(replaced)).unwrap();
    assert_eq!(
        value,
        json!({"temperature": 0.6, "top_k": 10, "top_p": 0.7, "stop": ["<|endoftext|>"]})
    );
}

#[test]
fn messages_replace_the_base_models() {
    let f = fixture("messages");
    let digest = bin_file(&f.tmp.store, &[]);
    let first = "298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4";
    f.create(
        json!({"name": "test", "files": {"test.gguf": digest}, "messages": [
            {"role": "assistant", "content": "What is my purpose?"},
            {"role": "user", "content": "You run tests."},
            {"role": "assistant", "content": "Oh, my god."},
        ]}),
    )
    .unwrap();
    assert_eq!(f.blobs(), f.expected(&[first, GGUF, CONFIG]));

    f.create(json!({"name": "test2", "from": "test", "messages": [
        {"role": "assistant", "content": "You're a test, Harry."},
        {"role": "user", "content": "I-I'm a what?"},
        {"role": "assistant", "content": "A test. And a thumping good one at that, I'd wager."},
    ]}))
    .unwrap();
    // test still uses the first messages blob, so it stays.
    let second = "a60ecc9da299ec7ede453f99236e5577fd125e143689b646d9f0ddc9971bf4db";
    assert_eq!(f.blobs(), f.expected(&[CONFIG, first, GGUF, second]));
    let value: serde_json::Value = serde_json::from_slice(&f.blob(second)).unwrap();
    assert_eq!(
        value[2]["content"],
        "A test. And a thumping good one at that, I'd wager."
    );
}

#[test]
fn template_and_system_blobs_hold_the_raw_text() {
    let f = fixture("template");
    let digest = bin_file(&f.tmp.store, &[]);
    f.create(json!({"name": "test", "files": {"test.gguf": digest},
                    "template": "{{ .System }} {{ .Prompt }}", "system": "Say bye!"}))
        .unwrap();
    let system = "4c5f51faac758fecaff8db42f0b7382891a4d0c0bb885f7b86be88c814a7cc86";
    let template = "fe7ac77b725cda2ccad03f88a880ecdfd7a33192d6cae08fce2c0ee1455991ed";
    assert_eq!(f.blobs(), f.expected(&[CONFIG, system, GGUF, template]));
    assert_eq!(f.blob(template), b"{{ .System }} {{ .Prompt }}");
    assert_eq!(f.blob(system), b"Say bye!");
}

#[test]
fn bad_templates_are_rejected_with_400() {
    let f = fixture("bad-template");
    let digest = bin_file(&f.tmp.store, &[]);
    // Ollama's three cases, with the messages Go's parser gives for them.
    for (template, message) in [
        ("{{ .Prompt", "template: :1: unclosed action"),
        ("{{ if .Prompt }}", "template: :1: unexpected EOF"),
        (
            "{{ Prompt }}",
            "template: :1: function \"Prompt\" not defined",
        ),
        ("{{ template \"x\" }}", "undefined template specified"),
    ] {
        let err = f
            .create(json!({"name": "test", "files": {"test.gguf": digest}, "template": template}))
            .unwrap_err();
        assert_eq!(err.status(), 400, "{template}: {err}");
        assert_eq!(err.to_string(), format!("template error: {message}"));
    }
    // Ollama refuses the quantize request before it reaches the template.
    let err = f
        .create(json!({"name": "test", "files": {"test.gguf": digest},
                        "quantize": "q4_K_M", "template": "{{ .Prompt"}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "quantization is only supported for F16, BF16 and F32 models"
    );
    // Nothing was stored: the GGUF was already there.
    assert_eq!(f.blobs(), [GGUF]);
    assert!(f.manifests().is_empty());
}

#[test]
fn licenses_each_get_a_blob() {
    let f = fixture("licenses");
    let digest = bin_file(&f.tmp.store, &[]);
    f.create(json!({"name": "test", "files": {"test.gguf": digest},
                    "license": ["MIT", "Apache-2.0"]}))
        .unwrap();
    let mit = "e5dcffe836b6ec8a58e492419b550e65fb8cbdc308503979e5dacb33ac7ea3b7";
    let apache = "2af71558e438db0b73a20beab92dc278a94e1bbe974c00c1a33e3ab62d53a608";
    assert_eq!(f.blobs(), f.expected(&[CONFIG, mit, apache, GGUF]));
    assert_eq!(f.blob(mit), b"MIT");
    assert_eq!(f.blob(apache), b"Apache-2.0");
    let name = ModelName::parse("test").unwrap();
    let layers = f.tmp.store.manifest(&name).unwrap().manifest.layers;
    let licenses: Vec<String> = layers
        .iter()
        .filter(|l| l.media_type == kiln_store::MEDIA_TYPE_LICENSE)
        .map(|l| l.digest.clone())
        .collect();
    assert_eq!(
        licenses,
        [format!("sha256:{mit}"), format!("sha256:{apache}")]
    );
}

#[test]
fn a_known_chat_template_is_detected() {
    let f = fixture("detect");
    // Phi-3's Jinja template, as in Ollama's TestCreateDetectTemplate.
    let jinja = "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
    let digest = bin_file(&f.tmp.store, &[("tokenizer.chat_template", jinja)]);
    let statuses = f
        .create(json!({"name": "test", "files": {"test.gguf": digest}}))
        .unwrap();
    let params = "0d79f567714c62c048378f2107fb332dabee0135d080c302d884317da9433cc5";
    let gguf = "3322a0c650c758b7386ff55629d27d07c07b6c3d3515e259dc3e5598c41e9f4e";
    let template = "35360843d0c84fb1506952a131bbef13cd2bb4a541251f22535170c05b56e672";
    assert_eq!(f.blobs(), f.expected(&[params, gguf, template, CONFIG]));
    assert_eq!(statuses[0], "parsing GGUF");
    assert_eq!(
        statuses[statuses.len() - 4..],
        [
            "using autodetected template phi-3".to_owned(),
            format!("using existing layer sha256:{params}"),
            "writing manifest".to_owned(),
            "success".to_owned(),
        ]
    );
    assert_eq!(f.blob(params), br#"{"stop":["\u003c|end|\u003e","\u003c|system|\u003e","\u003c|user|\u003e","\u003c|assistant|\u003e"]}"#.iter().copied().chain(*b"\n").collect::<Vec<u8>>());

    // An explicit template replaces the detected one; the parameters stay.
    f.create(json!({"name": "test", "files": {"test.gguf": digest}, "template": "{{ .Prompt }}"}))
        .unwrap();
    assert_eq!(
        f.blobs(),
        f.expected(&[
            params,
            gguf,
            "b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315",
            CONFIG
        ])
    );
}

#[test]
fn an_unknown_chat_template_adds_nothing() {
    let f = fixture("undetected");
    let digest = bin_file(
        &f.tmp.store,
        &[("tokenizer.chat_template", "{{ messages | tojson }}")],
    );
    f.create(json!({"name": "test", "files": {"test.gguf": digest}}))
        .unwrap();
    let name = ModelName::parse("test").unwrap();
    let layers = f.tmp.store.manifest(&name).unwrap().manifest.layers;
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].media_type, kiln_store::MEDIA_TYPE_MODEL);
}

/// `show`'s `modelfile` as Ollama's `Model.String()` writes it: every layer as a command, values
/// quoted only when they hold a line end or start or end with a space, parameters through Go's
/// `%v` of the decoded `float64` (a stored 1000000 prints as `1e+06`), the default template when
/// the model has none.
#[test]
fn show_modelfile_is_ollamas_model_string() {
    let f = fixture("show-modelfile");
    let digest = bin_file(&f.tmp.store, &[]);
    f.create(json!({
        "name": "test",
        "files": {"test.gguf": digest},
        "template": "{{ .System }} {{ .Prompt }}",
        "system": " You are\nhelpful ",
        "parameters": {"num_ctx": 1000000, "temperature": 0.7, "stop": ["<|im_end|>", "\"q\""], "top_p": 0.00001},
        "license": ["MIT", "Apache \"2.0\"\nfull text"],
        "messages": [{"role": "user", "content": "hi: there"}, {"role": "assistant", "content": "hello "}],
    }))
    .unwrap();
    let show = |model: &str| {
        super::models::show(
            &f.tmp.store,
            &serde_json::from_value(json!({"model": model})).unwrap(),
        )
        .unwrap()
    };
    let name = ModelName::parse("test").unwrap();
    let manifest = f.tmp.store.manifest(&name).unwrap().manifest;
    let model_path = |manifest: &kiln_store::Manifest| {
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.media_type == kiln_store::MEDIA_TYPE_MODEL)
            .unwrap();
        f.tmp
            .store
            .blob_path(&layer.digest().unwrap())
            .display()
            .to_string()
    };
    let expected = format!(
        "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM test:latest\n\n\
FROM {}\n\
TEMPLATE {{{{ .System }}}} {{{{ .Prompt }}}}\n\
SYSTEM \" You are\nhelpful \"\n\
PARAMETER num_ctx 1e+06\n\
PARAMETER stop <|im_end|>\n\
PARAMETER stop \"q\"\n\
PARAMETER temperature 0.7\n\
PARAMETER top_p 1e-05\n\
LICENSE MIT\n\
LICENSE \"\"\"Apache \"2.0\"\nfull text\"\"\"\n\
MESSAGE user hi: there\n\
MESSAGE assistant \"hello \"\n",
        model_path(&manifest)
    );
    let shown = show("test");
    assert_eq!(shown.modelfile, expected);
    assert_eq!(shown.messages.len(), 2);
    assert_eq!(shown.messages[1].content, "hello ");
    let parameters: Vec<&str> = shown.parameters.lines().collect();
    assert_eq!(
        parameters,
        [
            "num_ctx                        1e+06",
            "stop                           \"<|im_end|>\"",
            "stop                           \"\\\"q\\\"\"",
            "temperature                    0.7",
            "top_p                          1e-05",
        ]
    );

    // What show prints parses back (through Ollama's grammar) to the same layers.
    let parsed = kiln_modelfile::parse(&shown.modelfile).unwrap();
    let system = parsed.commands.iter().find(|c| c.name == "system").unwrap();
    assert_eq!(system.args, " You are\nhelpful ");

    // A model without a template layer shows (and would run with) Ollama's default template.
    f.create(json!({"name": "plain", "files": {"test.gguf": digest}}))
        .unwrap();
    let plain = show("plain");
    assert_eq!(plain.template, "{{ .Prompt }}");
    let plain_manifest = f
        .tmp
        .store
        .manifest(&ModelName::parse("plain").unwrap())
        .unwrap()
        .manifest;
    assert_eq!(
        plain.modelfile,
        format!(
            "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM plain:latest\n\nFROM {}\nTEMPLATE {{{{ .Prompt }}}}\n",
            model_path(&plain_manifest)
        )
    );
}
