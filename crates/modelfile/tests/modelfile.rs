//! Ollama's own parser tests (parser/parser_test.go at ollama fb30760), ported case by case: the
//! inputs and expected commands, errors and requests are Ollama's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_api::License;
use kiln_modelfile::{
    Command, Modelfile, ParseError, RequestError, files_for_model, parse, parse_bytes, upload_names,
};
use kiln_testkit::TempDir;
use serde_json::json;

fn c(name: &str, args: &str) -> Command {
    Command::new(name, args)
}

fn commands(input: &str) -> Vec<Command> {
    parse(input)
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
        .commands
}

const LLAMA3_TEMPLATE: &str = "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>";

#[test]
fn parse_file() {
    let input = format!(
        "\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE \"\"\"{LLAMA3_TEMPLATE}\"\"\"    \n"
    );
    assert_eq!(
        commands(&input),
        [
            c("model", "model1"),
            c("adapter", "adapter1"),
            c("license", "MIT"),
            c("param1", "value1"),
            c("param2", "value2"),
            c("template", LLAMA3_TEMPLATE),
        ]
    );
}

#[test]
fn parse_draft() {
    let m = parse("\nFROM base\nDRAFT ./assistant\n").unwrap();
    assert_eq!(m.commands, [c("model", "base"), c("draft", "./assistant")]);
    assert!(m.to_string().contains("DRAFT ./assistant"));
}

#[test]
fn trim_space() {
    let input = format!(
        "\nFROM \"     model 1\"\nADAPTER      adapter3\nLICENSE \"MIT       \"\nPARAMETER param1        value1\nPARAMETER param2    value2\nTEMPLATE \"\"\"   {LLAMA3_TEMPLATE}   \"\"\"    \n"
    );
    assert_eq!(
        commands(&input),
        [
            c("model", "     model 1"),
            c("adapter", "adapter3"),
            c("license", "MIT       "),
            c("param1", "value1"),
            c("param2", "value2"),
            c("template", &format!("   {LLAMA3_TEMPLATE}   ")),
        ]
    );
}

#[test]
fn from_lines() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("FROM \"FOO  BAR  \"", &[("model", "FOO  BAR  ")]),
        (
            "FROM \"FOO BAR\"\nPARAMETER param1 value1",
            &[("model", "FOO BAR"), ("param1", "value1")],
        ),
        ("FROM     FOOO BAR    ", &[("model", "FOOO BAR")]),
        ("FROM /what/is/the path ", &[("model", "/what/is/the path")]),
        ("FROM foo", &[("model", "foo")]),
        ("FROM /path/to/model", &[("model", "/path/to/model")]),
        (
            "FROM /path/to/model/fp16.bin",
            &[("model", "/path/to/model/fp16.bin")],
        ),
        ("FROM llama3:latest", &[("model", "llama3:latest")]),
        (
            "FROM llama3:7b-instruct-q4_K_M",
            &[("model", "llama3:7b-instruct-q4_K_M")],
        ),
        (
            "PARAMETER param1 value1\nFROM foo",
            &[("param1", "value1"), ("model", "foo")],
        ),
        (
            "PARAMETER what the \nFROM lemons make lemonade ",
            &[("what", "the"), ("model", "lemons make lemonade")],
        ),
    ];
    for (input, expected) in cases {
        let expected: Vec<_> = expected.iter().map(|(n, a)| c(n, a)).collect();
        assert_eq!(commands(input), expected, "{input:?}");
    }
    assert_eq!(parse(""), Err(ParseError::MissingFrom));
    assert_eq!(
        parse("PARAMETER param1 value1"),
        Err(ParseError::MissingFrom)
    );
}

#[test]
fn parameter_without_value() {
    let e = parse("\nFROM foo\nPARAMETER param1\n").unwrap_err();
    assert!(matches!(e, ParseError::Truncated { .. }), "{e:?}");
    assert_eq!(e.to_string(), "unexpected EOF: param1");
}

#[test]
fn bad_command_names_its_line() {
    let e = parse("\nFROM foo\nBADCOMMAND param1 value1\n").unwrap_err();
    assert_eq!(e, ParseError::InvalidCommand { line: 3 });
    assert_eq!(
        e.to_string(),
        "(line 3): command must be one of \"from\", \"license\", \"template\", \"system\", \"adapter\", \"draft\", \"renderer\", \"parser\", \"parameter\", \"message\", or \"requires\""
    );
}

#[test]
fn renderer_and_parser() {
    assert_eq!(
        commands("\nFROM foo\nRENDERER renderer1\n"),
        [c("model", "foo"), c("renderer", "renderer1")]
    );
    assert_eq!(
        commands("\nFROM foo\nPARSER parser1\n"),
        [c("model", "foo"), c("parser", "parser1")]
    );
}

#[test]
fn messages() {
    let sys = c(
        "message",
        "system: You are a file parser. Always parse things.",
    );
    assert_eq!(
        commands("\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n"),
        [c("model", "foo"), sys.clone()]
    );
    assert_eq!(
        commands("\nFROM foo\nMESSAGE system You are a file parser. Always parse things."),
        [c("model", "foo"), sys.clone()]
    );
    assert_eq!(
        commands(
            "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n"
        ),
        [
            c("model", "foo"),
            sys,
            c("message", "user: Hey there!"),
            c(
                "message",
                "assistant: Hello, I want to parse all the things!"
            ),
        ]
    );
    assert_eq!(
        commands(
            "\nFROM foo\nMESSAGE system \"\"\"\nYou are a multiline file parser. Always parse things.\n\"\"\"\n\t\t\t"
        ),
        [
            c("model", "foo"),
            c(
                "message",
                "system: \nYou are a multiline file parser. Always parse things.\n"
            ),
        ]
    );
    assert_eq!(
        parse("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n"),
        Err(ParseError::InvalidMessageRole { line: 3 })
    );
    for input in ["\nFROM foo\nMESSAGE system\n", "\nFROM foo\nMESSAGE system"] {
        let e = parse(input).unwrap_err();
        assert!(
            matches!(
                e,
                ParseError::Truncated { .. } | ParseError::UnexpectedEof { .. }
            ),
            "{input:?}: {e:?}"
        );
        assert!(e.to_string().starts_with("unexpected EOF"));
    }
}

#[test]
fn quoted_values() {
    let ok: &[(&str, &str)] = &[
        (
            "\nFROM foo\nSYSTEM \"\"\"\nThis is a\nmultiline system.\n\"\"\"\n\t\t\t",
            "\nThis is a\nmultiline system.\n",
        ),
        (
            "\nFROM foo\nSYSTEM \"\"\"\nThis is a\nmultiline system.\"\"\"\n\t\t\t",
            "\nThis is a\nmultiline system.",
        ),
        (
            "\nFROM foo\nSYSTEM \"\"\"This is a\nmultiline system.\"\"\"\n\t\t\t",
            "This is a\nmultiline system.",
        ),
        (
            "\nFROM foo\nSYSTEM \"\"\"This is a multiline system.\"\"\"\n\t\t\t",
            "This is a multiline system.",
        ),
        (
            "\nFROM foo\nSYSTEM \"\"\"\nThis is a multiline system with \"quotes\".\n\"\"\"\n",
            "\nThis is a multiline system with \"quotes\".\n",
        ),
        ("\nFROM foo\nSYSTEM \"\"\"\"\"\"\n", ""),
        ("\nFROM foo\nSYSTEM \"\"\n", ""),
        ("\nFROM foo\nSYSTEM \"'\"\n", "'"),
        (
            "\nFROM foo\nSYSTEM \"\"\"''\"'\"\"'\"\"'\"'''''\"\"'\"\"'\"\"\"\n",
            "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'",
        ),
    ];
    for (input, system) in ok {
        assert_eq!(
            commands(input),
            [c("model", "foo"), c("system", system)],
            "{input:?}"
        );
    }
    assert_eq!(
        commands("\nFROM foo\nTEMPLATE \"\"\"\n{{ .Prompt }}\n\"\"\""),
        [c("model", "foo"), c("template", "\n{{ .Prompt }}\n")]
    );
    for input in [
        "\nFROM foo\nSYSTEM \"\"\"This is a multiline system.\"\"\n\t\t\t",
        "\nFROM foo\nSYSTEM \"\n\t\t\t",
    ] {
        assert!(
            matches!(parse(input), Err(ParseError::UnexpectedEof { .. })),
            "{input:?}"
        );
    }
}

#[test]
fn parameter_lines() {
    let cases: &[(&str, &str, &str)] = &[
        ("numa true", "numa", "true"),
        ("num_ctx 1", "num_ctx", "1"),
        ("num_batch 1", "num_batch", "1"),
        ("num_gqa 1", "num_gqa", "1"),
        ("num_gpu 1", "num_gpu", "1"),
        ("main_gpu 1", "main_gpu", "1"),
        ("use_mmap true", "use_mmap", "true"),
        ("num_thread 1", "num_thread", "1"),
        ("num_keep 1", "num_keep", "1"),
        ("seed 1", "seed", "1"),
        ("num_predict 1", "num_predict", "1"),
        ("top_k 1", "top_k", "1"),
        ("top_p 1.0", "top_p", "1.0"),
        ("min_p 0.05", "min_p", "0.05"),
        ("typical_p 1.0", "typical_p", "1.0"),
        ("repeat_last_n 1", "repeat_last_n", "1"),
        ("temperature 1.0", "temperature", "1.0"),
        ("repeat_penalty 1.0", "repeat_penalty", "1.0"),
        ("presence_penalty 1.0", "presence_penalty", "1.0"),
        ("frequency_penalty 1.0", "frequency_penalty", "1.0"),
        ("penalize_newline true", "penalize_newline", "true"),
        ("stop ### User:", "stop", "### User:"),
        ("stop ### User: ", "stop", "### User:"),
        ("stop \"### User:\"", "stop", "### User:"),
        ("stop \"### User: \"", "stop", "### User: "),
        ("stop \"\"\"### User:\"\"\"", "stop", "### User:"),
        ("stop \"\"\"### User:\n\"\"\"", "stop", "### User:\n"),
        ("stop <|endoftext|>", "stop", "<|endoftext|>"),
        ("stop <|eot_id|>", "stop", "<|eot_id|>"),
        ("stop </s>", "stop", "</s>"),
    ];
    for (line, name, value) in cases {
        assert_eq!(
            commands(&format!("FROM foo\nPARAMETER {line}\n")),
            [c("model", "foo"), c(name, value)],
            "{line:?}"
        );
    }
}

#[test]
fn comments() {
    assert_eq!(commands("\n# comment\nFROM foo\n\t"), [c("model", "foo")]);
}

#[test]
fn format_then_parse_round_trips() {
    let cases = [
        "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\nMESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
        "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\nMESSAGE system \"\"\"\nYou are a store greeter. Always respond with \"Hello!\".\n\"\"\"\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
        "\nFROM foo\nADAPTER adapter1\nLICENSE \"\"\"\nVery long and boring legal text.\nBlah blah blah.\n\"Oh look, a quote!\"\n\"\"\"\n\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\nMESSAGE system \"\"\"\nYou are a store greeter. Always respond with \"Hello!\".\n\"\"\"\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
        "\nFROM foo\nSYSTEM \"\"\n",
    ];
    for input in cases {
        let first = parse(input).unwrap();
        let second = parse(&first.to_string()).unwrap();
        assert_eq!(first, second, "{input:?}");
    }
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for unit in text.encode_utf16() {
        out.extend(if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        });
    }
    out
}

#[test]
fn utf16_with_a_byte_order_mark() {
    let data =
        "FROM bob\nPARAMETER param1 1\nPARAMETER param2 4096\nSYSTEM You are a utf16 file.\n";
    let expected = [
        c("model", "bob"),
        c("param1", "1"),
        c("param2", "4096"),
        c("system", "You are a utf16 file."),
    ];
    for big_endian in [false, true] {
        assert_eq!(
            parse_bytes(&utf16(data, big_endian)).unwrap().commands,
            expected
        );
    }
}

#[test]
fn multibyte_text_in_every_encoding() {
    let input = "FROM test\n\tSYSTEM 你好👋";
    let expected = [c("model", "test"), c("system", "你好👋")];
    assert_eq!(parse_bytes(input.as_bytes()).unwrap().commands, expected);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(input.as_bytes());
    assert_eq!(parse_bytes(&bom).unwrap().commands, expected);
    for big_endian in [false, true] {
        assert_eq!(
            parse_bytes(&utf16(input, big_endian)).unwrap().commands,
            expected
        );
    }
}

fn request(input: &str) -> kiln_api::CreateRequest {
    let m = parse(input).unwrap();
    m.create_request(Path::new("")).unwrap().request
}

#[test]
fn create_requests() {
    assert_eq!(request("FROM test").from, "test");
    let r = request("FROM test\nTEMPLATE some template\n");
    assert_eq!(
        (r.from.as_str(), r.template.as_str()),
        ("test", "some template")
    );

    let r = request(
        "FROM test\nLICENSE single license\nPARAMETER temperature 0.5\nMESSAGE user Hello\n",
    );
    assert_eq!(
        r.license,
        Some(License::List(vec!["single license".into()]))
    );
    assert_eq!(
        serde_json::to_value(&r.parameters).unwrap(),
        json!({"temperature": 0.5})
    );
    assert_eq!(r.messages.len(), 1);
    assert_eq!(
        (r.messages[0].role.as_str(), r.messages[0].content.as_str()),
        ("user", "Hello")
    );

    let r = request(
        "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\nLICENSE license1\nLICENSE license2\nMESSAGE user Hello there!\nMESSAGE assistant Hi! How are you?\n",
    );
    assert_eq!(r.from, "test");
    assert_eq!(r.system, "You are a bot.");
    assert_eq!(
        r.license,
        Some(License::List(vec!["license1".into(), "license2".into()]))
    );
    assert_eq!(
        serde_json::to_value(&r.parameters).unwrap(),
        json!({"temperature": 0.5, "top_k": 1})
    );
    let messages: Vec<_> = r
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        messages,
        [("user", "Hello there!"), ("assistant", "Hi! How are you?")]
    );
    assert!(r.files.is_none());
}

#[test]
fn create_request_parameters_as_ollama_types_them() {
    let r = request(
        "FROM x\nPARAMETER stop <|im_end|>\nPARAMETER stop \"</s>\"\nPARAMETER use_mmap false\nPARAMETER main_gpu 1\nPARAMETER temperature 0.7\n",
    );
    // f32 0.7 travels as Go's float32 text, 0.7.
    assert_eq!(
        kiln_api::to_go_json(&r.parameters.unwrap()),
        br#"{"main_gpu":1,"stop":["\u003c|im_end|\u003e","\u003c/s\u003e"],"temperature":0.7,"use_mmap":false}"#
    );
    let m = parse("FROM x\nPARAMETER mirostat 2\n").unwrap();
    let out = m.create_request(Path::new("")).unwrap();
    assert_eq!(out.warnings, ["warning: parameter mirostat is deprecated"]);
    assert!(out.request.parameters.is_none());
    let e = parse("FROM x\nPARAMETER numa true\n")
        .unwrap()
        .create_request(Path::new(""))
        .unwrap_err();
    assert_eq!(e.to_string(), "unknown parameter 'numa'");
    let e = parse("FROM x\nREQUIRES banana\n")
        .unwrap()
        .create_request(Path::new(""))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "requires must be a valid semver (e.g. 0.14.0)"
    );
    assert_eq!(request("FROM x\nREQUIRES v0.14.1\n").requires, "0.14.1");
}

/// A minimal GGUF (v3, no tensors) with these string keys, as Ollama's test writes one.
fn gguf(kv: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((kv.len() as u64 + 1).to_le_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    for (k, v) in std::iter::once(&("general.architecture", "test")).chain(kv) {
        string(&mut out, k);
        out.extend(8u32.to_le_bytes());
        string(&mut out, v);
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[test]
fn create_request_files() {
    let dir = TempDir::new("files");
    let (b1, b2) = (gguf(&[]), gguf(&[("foo", "bar")]));
    let n1 = dir.write("testbin.1.gguf", &b1);
    let n2 = dir.write("testbin.2.gguf", &b2);
    let key = |p: &PathBuf| p.to_string_lossy().into_owned();

    let r = request(&format!("FROM {}", n1.display()));
    assert_eq!(r.files, Some(BTreeMap::from([(key(&n1), sha256(&b1))])));
    assert!(r.from.is_empty());
    let r = request(&format!("FROM {}\nFROM {}", n1.display(), n2.display()));
    assert_eq!(
        r.files,
        Some(BTreeMap::from([
            (key(&n1), sha256(&b1)),
            (key(&n2), sha256(&b2))
        ]))
    );
}

#[test]
fn draft_files_and_the_same_path_check() {
    let dir = TempDir::new("draft");
    let draft = dir.write("draft.gguf", b"draft");
    let m = parse("\nFROM base\nDRAFT ./draft.gguf\n").unwrap();
    let r = m.create_request(&dir.0).unwrap().request;
    let drafts = r.draft_files.unwrap();
    assert_eq!(drafts.len(), 1);
    assert!(drafts.contains_key(&*draft.to_string_lossy()));

    dir.write("model.gguf", b"model");
    let e = parse("\nFROM ./model.gguf\nDRAFT ./model.gguf\n")
        .unwrap()
        .create_request(&dir.0)
        .unwrap_err();
    assert!(matches!(e, RequestError::DraftIsModel { .. }));
    assert!(
        e.to_string()
            .contains("DRAFT must not reference the same local path as FROM")
    );

    let folder = TempDir::new("draft-dir");
    folder.write("model.gguf", &[0u8; 512]);
    let e = parse("\nFROM .\nDRAFT .\n")
        .unwrap()
        .create_request(&folder.0)
        .unwrap_err();
    assert!(matches!(e, RequestError::DraftIsModel { .. }), "{e}");
}

fn relative_files(dir: &TempDir) -> Result<Vec<String>, RequestError> {
    let mut files: Vec<String> = files_for_model(&dir.0)?
        .iter()
        .map(|f| {
            f.strip_prefix(&dir.0)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    Ok(files)
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// A file of a test folder: its name and bytes.
type FileSpec<'a> = (&'a str, &'a [u8]);

/// A folder's name, its files, and the files Ollama picks (`None`: an error).
type FolderCase<'a> = (&'a str, Vec<FileSpec<'a>>, Option<Vec<&'a str>>);

#[test]
fn files_for_model_in_ollamas_priority_order() {
    let text = b"test content".as_slice();
    let binary: Vec<u8> = (0..512).map(|i| (i % 256) as u8).collect();
    let zip = b"PK\x03\x04".as_slice();
    let config = br#"{"config": true}"#.as_slice();

    let cases: Vec<FolderCase> = vec![
        (
            "safetensors",
            vec![
                ("model-00001-of-00002.safetensors", text),
                ("model-00002-of-00002.safetensors", text),
                ("config.json", text),
                ("tokenizer.json", text),
                ("chat_template.jinja", text),
            ],
            Some(vec![
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "config.json",
                "tokenizer.json",
                "chat_template.jinja",
            ]),
        ),
        (
            "tokenizer-model",
            vec![
                ("model-00001-of-00001.safetensors", text),
                ("config.json", text),
                ("tokenizer.json", text),
                ("tokenizer.model", &binary),
            ],
            Some(vec![
                "model-00001-of-00001.safetensors",
                "config.json",
                "tokenizer.json",
                "tokenizer.model",
            ]),
        ),
        (
            "sentence-transformers",
            vec![
                ("model.safetensors", text),
                ("config.json", text),
                ("modules.json", text),
                ("2_Dense/config.json", text),
                ("2_Dense/model.safetensors", text),
                ("3_Dense/config.json", text),
                ("3_Dense/model.safetensors", text),
            ],
            Some(vec![
                "model.safetensors",
                "config.json",
                "modules.json",
                "2_Dense/config.json",
                "2_Dense/model.safetensors",
                "3_Dense/config.json",
                "3_Dense/model.safetensors",
            ]),
        ),
        (
            "prefers-model-files",
            vec![
                ("model-00001-of-00001.safetensors", text),
                ("consolidated.safetensors", text),
                ("config.json", text),
            ],
            Some(vec!["model-00001-of-00001.safetensors", "config.json"]),
        ),
        (
            "consolidated",
            vec![("consolidated.safetensors", text), ("config.json", text)],
            Some(vec!["consolidated.safetensors", "config.json"]),
        ),
        (
            "pytorch",
            vec![
                ("pytorch_model-00001-of-00002.bin", zip),
                ("pytorch_model-00002-of-00002.bin", zip),
                ("config.json", config),
            ],
            Some(vec![
                "pytorch_model-00001-of-00002.bin",
                "pytorch_model-00002-of-00002.bin",
                "config.json",
            ]),
        ),
        (
            "pth",
            vec![
                ("consolidated.00.pth", zip),
                ("consolidated.01.pth", zip),
                ("config.json", config),
            ],
            Some(vec![
                "consolidated.00.pth",
                "consolidated.01.pth",
                "config.json",
            ]),
        ),
        (
            "gguf",
            vec![("model.gguf", &binary), ("config.json", config)],
            Some(vec!["model.gguf", "config.json"]),
        ),
        (
            "bin-as-gguf",
            vec![("model.bin", &binary), ("config.json", config)],
            Some(vec!["model.bin", "config.json"]),
        ),
        (
            "none",
            vec![("README.md", b"content"), ("config.json", b"content")],
            None,
        ),
        (
            "text-pytorch",
            vec![
                ("pytorch_model.bin", b"plain text content"),
                ("config.json", b"plain text content"),
            ],
            None,
        ),
    ];
    for (name, files, want) in cases {
        let dir = TempDir::new(name);
        for (file, bytes) in files {
            dir.write(file, bytes);
        }
        let got = relative_files(&dir);
        match want {
            Some(want) => assert_eq!(got.unwrap(), sorted(&want), "{name}"),
            None => assert!(got.is_err(), "{name}: {got:?}"),
        }
    }
    let dir = TempDir::new("none-again");
    dir.write("README.md", b"content");
    assert!(matches!(
        files_for_model(&dir.0),
        Err(RequestError::NoModelFiles)
    ));
}

#[test]
fn folder_links_that_leave_the_folder_are_refused() {
    let outside = TempDir::new("outside");
    let blob = outside.write("blob", b"weights");
    let dir = TempDir::new("cache-like");
    dir.write("config.json", b"{}");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&blob, dir.0.join("model.safetensors")).unwrap();
    #[cfg(unix)]
    {
        let e = parse("FROM .").unwrap().resolve(&dir.0).unwrap_err();
        assert!(matches!(e, RequestError::InsecurePath { .. }), "{e}");
        assert!(e.to_string().starts_with("insecure path: ../"), "{e}");
    }
}

#[test]
fn folder_files_upload_under_their_names_below_the_folder() {
    let dir = TempDir::new("upload");
    for f in [
        "model.safetensors",
        "config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
    ] {
        dir.write(f, b"x");
    }
    let resolved = parse("FROM .").unwrap().resolve(&dir.0).unwrap();
    let files: Vec<_> = resolved.files.iter().collect();
    let mut names = upload_names(&files);
    names.sort();
    assert_eq!(
        names,
        sorted(&[
            "model.safetensors",
            "config.json",
            "2_Dense/config.json",
            "2_Dense/model.safetensors"
        ])
    );
}

/// No input makes the parser panic, and formatting what it parsed parses back to the same
/// commands (the formatter's quoting is enough for every value the parser can produce... except
/// where Ollama's own is not: see below).
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_bytes(&bytes);
        }

        #[test]
        fn never_panics_on_modelfile_like_text(
            lines in proptest::collection::vec(
                "(FROM|from|PARAMETER|MESSAGE|SYSTEM|TEMPLATE|#|LICENSE|bad)[ \t]{0,2}[a-z_ \"\n:]{0,12}",
                0..8)
        ) {
            let _ = parse(&lines.join("\n"));
        }

        #[test]
        fn simple_values_round_trip(
            system in "[a-zA-Z0-9.,!?][a-zA-Z0-9 .,!?'\n]{0,30}[a-zA-Z0-9.,!?]",
            stop in "[a-z<>|/]{1,10}",
        ) {
            let m = Modelfile {
                commands: vec![
                    Command::new("model", "base"),
                    Command::new("system", system),
                    Command::new("stop", stop),
                ],
            };
            prop_assert_eq!(parse(&m.to_string()).unwrap(), m);
        }
    }
}
