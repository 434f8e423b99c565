//! Golden bytes from Ollama itself. Sources are ollama/ollama at commit
//! fb30760996871fa9460115c753afd2c60d4ab0f7 (tag v0.33.0-rc2); each test names file and lines.

use kiln_api::{
    CreateRequest, ErrorResponse, ListResponse, ProcessResponse, ProgressResponse, VersionResponse,
    decode_request, f32_value, to_go_json, to_ndjson_line, try_to_go_json_line,
};
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Removes the pretty-printing whitespace of a documentation example (outside strings only), giving
/// the compact form Go's encoder writes for the same object with the same key order.
fn compact(pretty: &str) -> String {
    let mut out = String::new();
    let (mut in_str, mut escaped) = (false, false);
    for c in pretty.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// server/routes_create_test.go:989-1120 (TestCreateMergeParameters): the params blobs Ollama writes
/// with json.Encoder, identified by their sha256 file names. The third one proves the HTML escaping
/// (`<|endoftext|>` is stored as `\u003c|endoftext|\u003e`).
#[test]
fn params_blob_digests_match_ollama() {
    // The test's first request, as the JSON the Go client sends (`temperature: 1` is a Go int).
    let first: CreateRequest = decode_request(
        br#"{"model":"","stream":false,"files":{"test.gguf":"sha256:x"},"parameters":{"temperature":1,"top_k":10,"stop":["USER:","ASSISTANT:"]},"name":"test"}"#,
    )
    .unwrap();
    let blob = try_to_go_json_line(&first.parameters).unwrap();
    assert_eq!(
        sha256_hex(&blob),
        "1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37"
    );

    // A float spelled `1.0` goes through float64 in Go and prints as `1` too.
    let float_one: CreateRequest = decode_request(
        br#"{"parameters":{"temperature":1.0,"top_k":1e1,"stop":["USER:","ASSISTANT:"]}}"#,
    )
    .unwrap();
    assert_eq!(try_to_go_json_line(&float_one.parameters).unwrap(), blob);

    // Merged parameters (new keys win, untouched keys kept, arrays replaced).
    let merge = |new: &[u8]| {
        let mut merged = first.parameters.clone().unwrap();
        let new: CreateRequest = decode_request(new).unwrap();
        merged.extend(new.parameters.unwrap());
        sha256_hex(&to_ndjson_line(&merged))
    };
    assert_eq!(
        merge(br#"{"name":"test2","from":"test","parameters":{"temperature":0.6,"top_p":0.7}}"#),
        "e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba"
    );
    assert_eq!(
        merge(
            br#"{"name":"test2","from":"test","parameters":{"temperature":0.6,"top_p":0.7,"stop":["<|endoftext|>"]}}"#
        ),
        "12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35"
    );
}

/// server/routes_create_test.go:1122-1226 (TestCreateReplacesMessages): the messages blobs.
#[test]
fn messages_blob_digests_match_ollama() {
    let cases: [(&[u8], &str); 2] = [
        (
            br#"{"name":"test","messages":[{"role":"assistant","content":"What is my purpose?"},{"role":"user","content":"You run tests."},{"role":"assistant","content":"Oh, my god."}]}"#,
            "298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4",
        ),
        (
            br#"{"name":"test2","from":"test","messages":[{"role":"assistant","content":"You're a test, Harry."},{"role":"user","content":"I-I'm a what?"},{"role":"assistant","content":"A test. And a thumping good one at that, I'd wager."}]}"#,
            "a60ecc9da299ec7ede453f99236e5577fd125e143689b646d9f0ddc9971bf4db",
        ),
    ];
    for (body, digest) in cases {
        let req: CreateRequest = decode_request(body).unwrap();
        assert_eq!(sha256_hex(&to_ndjson_line(&req.messages)), digest);
    }
}

/// docs/api.md:1262-1273, the quantize example's NDJSON stream (compact, exactly as sent).
#[test]
fn progress_lines_round_trip_byte_exact() {
    let stream = concat!(
        r#"{"status":"quantizing F16 model to Q4_K_M","digest":"0","total":6433687776,"completed":12302}"#,
        "\n",
        r#"{"status":"quantizing F16 model to Q4_K_M","digest":"0","total":6433687776,"completed":6433687552}"#,
        "\n",
        r#"{"status":"verifying conversion"}"#,
        "\n",
        r#"{"status":"creating new layer sha256:fb7f4f211b89c6c4928ff4ddb73db9f9c0cfca3e000c3e40d6cf27ddc6ca72eb"}"#,
        "\n",
        r#"{"status":"using existing layer sha256:966de95ca8a62200913e3f8bfbf84c8494536f1b94b49166851e76644e966396"}"#,
        "\n",
        r#"{"status":"writing manifest"}"#,
        "\n",
        r#"{"status":"success"}"#,
        "\n",
    );
    let mut out = Vec::new();
    for line in stream.lines() {
        let p: ProgressResponse = serde_json::from_str(line).unwrap();
        out.extend(to_ndjson_line(&p));
    }
    assert_eq!(String::from_utf8(out).unwrap(), stream);
    let first: ProgressResponse = serde_json::from_str(stream.lines().next().unwrap()).unwrap();
    assert_eq!(first.total, 6_433_687_776);
    assert_eq!(first.digest, "0");
}

/// docs/api.md:1396-1433 (GET /api/tags example), compacted: key order, nanosecond local-offset
/// timestamps and details all come back byte-identical.
#[test]
fn tags_example_round_trips() {
    let doc = r#"{
  "models": [
    {
      "name": "deepseek-r1:latest",
      "model": "deepseek-r1:latest",
      "modified_at": "2025-05-10T08:06:48.639712648-07:00",
      "size": 4683075271,
      "digest": "0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163",
      "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "qwen2",
        "families": ["qwen2"],
        "parameter_size": "7.6B",
        "quantization_level": "Q4_K_M"
      }
    },
    {
      "name": "llama3.2:latest",
      "model": "llama3.2:latest",
      "modified_at": "2025-05-04T17:37:44.706015396-07:00",
      "size": 2019393189,
      "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
      "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M"
      }
    }
  ]
}"#;
    let list: ListResponse = serde_json::from_str(doc).unwrap();
    assert_eq!(list.models.len(), 2);
    assert_eq!(list.models[0].modified_at.offset_minutes(), -420);
    assert_eq!(list.models[0].modified_at.subsec_nanos(), 639_712_648);
    assert_eq!(String::from_utf8(to_go_json(&list)).unwrap(), compact(doc));
}

/// docs/api.md:1781-1802 (GET /api/ps example). The docs predate `context_length`, which HEAD always
/// emits (api/types.go:835-844), so it is expected after `size_vram`.
#[test]
fn ps_example_round_trips() {
    let doc = r#"{
  "models": [
    {
      "name": "mistral:latest",
      "model": "mistral:latest",
      "size": 5137025024,
      "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
      "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "7.2B",
        "quantization_level": "Q4_0"
      },
      "expires_at": "2024-06-04T14:38:31.83753-07:00",
      "size_vram": 5137025024
    }
  ]
}"#;
    let ps: ProcessResponse = serde_json::from_str(doc).unwrap();
    let expected = compact(doc).replace(
        r#""size_vram":5137025024}"#,
        r#""size_vram":5137025024,"context_length":0}"#,
    );
    assert_eq!(String::from_utf8(to_go_json(&ps)).unwrap(), expected);
    assert_eq!(
        String::from_utf8(to_go_json(&ProcessResponse::default())).unwrap(),
        r#"{"models":[]}"#
    );
}

/// server/routes_test.go:143-162 (`{"version":"%s"}`) and docs/api.md:1866-1871.
#[test]
fn version_body() {
    let v = VersionResponse {
        version: "0.5.1".into(),
    };
    assert_eq!(to_go_json(&v), br#"{"version":"0.5.1"}"#);
    let back: VersionResponse = serde_json::from_slice(br#"{"version":"0.5.1"}"#).unwrap();
    assert_eq!(back, v);
}

/// api/client_test.go:417 and cmd/cmd_test.go:343 error bodies; docs/api/errors.mdx mid-stream line.
#[test]
fn error_bodies() {
    assert_eq!(
        to_go_json(&ErrorResponse::new("rate limit exceeded")),
        br#"{"error":"rate limit exceeded"}"#
    );
    assert_eq!(
        to_go_json(&ErrorResponse::new("model 'llama3' not found")),
        br#"{"error":"model 'llama3' not found"}"#
    );
    assert_eq!(
        to_ndjson_line(&ErrorResponse::new(
            "an error was encountered while running the model"
        )),
        b"{\"error\":\"an error was encountered while running the model\"}\n"
    );
    // Unknown fields (AuthorizationError's signin_url, api/client_test.go:402) are ignored.
    let e: ErrorResponse = serde_json::from_str(
        r#"{"error":"unauthorized","signin_url":"https://ollama.com/signin/example"}"#,
    )
    .unwrap();
    assert_eq!(e.error, "unauthorized");
}

/// docs/api.md:1466-1486 (show example's model_info): GGUF float32 values print as Go prints a
/// float32 (`0.00001`, `500000`), not as widened doubles.
#[test]
fn model_info_float32_text() {
    let mut info = kiln_api::AnyMap::new();
    info.insert(
        "llama.attention.layer_norm_rms_epsilon".into(),
        f32_value(1e-5),
    );
    info.insert("llama.rope.freq_base".into(), f32_value(500000.0));
    info.insert("general.parameter_count".into(), 8030261248u64.into());
    assert_eq!(
        String::from_utf8(to_go_json(&info)).unwrap(),
        r#"{"general.parameter_count":8030261248,"llama.attention.layer_norm_rms_epsilon":0.00001,"llama.rope.freq_base":500000}"#
    );
}
