//! Request decoding with Go's encoding/json semantics, and request serialization in Go field order.
//! Expected error texts follow Go's `UnmarshalTypeError` format (encoding/json v1, Go 1.26).

use std::collections::BTreeMap;

use kiln_api::{
    CopyRequest, CreateRequest, DecodeError, DeleteRequest, License, Message, PullRequest,
    PushRequest, ShowRequest, decode_request, to_go_json,
};
use serde_json::json;

fn create(body: &str) -> CreateRequest {
    decode_request(body.as_bytes()).unwrap()
}

fn create_err(body: &str) -> String {
    decode_request::<CreateRequest>(body.as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn empty_body_is_missing_request_body() {
    for body in ["", "   ", "\n\t\r "] {
        let e = decode_request::<CreateRequest>(body.as_bytes()).unwrap_err();
        assert_eq!(e, DecodeError::Empty);
        assert_eq!(e.to_string(), "missing request body");
    }
    assert_eq!(
        decode_request::<ShowRequest>(b"{\"model\":")
            .unwrap_err()
            .to_string(),
        "unexpected EOF"
    );
    assert!(matches!(
        decode_request::<ShowRequest>(b"{model}"),
        Err(DecodeError::Syntax(_))
    ));
}

#[test]
fn first_value_only_and_null_is_zero() {
    let r = create(r#"{"model":"a"} trailing garbage {"model":"b"}"#);
    assert_eq!(r.model, "a");
    assert_eq!(create("null"), CreateRequest::default());
}

#[test]
fn unknown_fields_are_ignored() {
    // `modelfile`/`path` were removed in v0.5.5 and are ignored today (reference §1).
    let r = create(r#"{"model":"m","modelfile":"FROM x","path":"/p","future":{"a":[1,2]}}"#);
    assert_eq!(r.model, "m");
    let s: ShowRequest =
        decode_request(br#"{"model":"m","keep_alive":"5m","verbose":true}"#).unwrap();
    assert!(s.verbose);
}

#[test]
fn keys_match_case_insensitively_last_wins() {
    let r = create(r#"{"MODEL":"a","Quantize":"q4_K_M","ſystem":"sys","\u212Aeep":1}"#);
    assert_eq!(r.model, "a");
    assert_eq!(r.quantize, "q4_K_M");
    assert_eq!(r.system, "sys");
    assert_eq!(create(r#"{"model":"a","Model":"b"}"#).model, "b");
    assert_eq!(create(r#"{"Model":"b","model":"a"}"#).model, "a");
    // Duplicate maps merge, as Go reuses the existing map.
    let r = create(r#"{"files":{"a.gguf":"sha256:1"},"files":{"b.gguf":"sha256:2"}}"#);
    assert_eq!(r.files.unwrap().len(), 2);
}

#[test]
fn null_semantics() {
    let r = create(r#"{"model":"a","model":null,"stream":null,"files":null,"license":null}"#);
    assert_eq!(r.model, "a");
    assert_eq!(r.stream, None);
    assert_eq!(r.files, None);
    assert_eq!(r.license, None);
    // A null map value becomes "" (then Ollama answers `invalid digest format`).
    let r = create(r#"{"files":{"a.gguf":null}}"#);
    assert_eq!(r.files.unwrap()["a.gguf"], "");
    // `{}` is not the same as absent: Ollama says `unknown type`, not `neither 'from' or 'files'`.
    assert_eq!(create(r#"{"files":{}}"#).files, Some(BTreeMap::new()));
}

#[test]
fn stream_flag() {
    assert!(create(r#"{}"#).is_streaming());
    assert!(create(r#"{"stream":true}"#).is_streaming());
    assert!(!create(r#"{"stream":false}"#).is_streaming());
}

#[test]
fn deprecated_aliases() {
    let r = create(r#"{"name":"old","quantization":"q8_0"}"#);
    assert_eq!(r.model_name(), "old");
    assert_eq!(r.quantize_type(), "q8_0");
    let r = create(r#"{"model":"new","name":"old","quantize":"Q4_K_M","quantization":"q8_0"}"#);
    assert_eq!(r.model_name(), "new");
    assert_eq!(r.quantize_type(), "Q4_K_M");
    let s: ShowRequest = decode_request(br#"{"name":"llava"}"#).unwrap();
    assert_eq!(s.model_name(), "llava");
    let d: DeleteRequest = decode_request(br#"{"name":"llama3:13b"}"#).unwrap();
    assert_eq!(d.model_name(), "llama3:13b");
    let d: DeleteRequest = decode_request(br#"{"model":"llama3:13b"}"#).unwrap();
    assert_eq!(d.model_name(), "llama3:13b");
}

#[test]
fn license_string_or_list() {
    assert_eq!(create(r#"{}"#).licenses().unwrap(), Vec::<String>::new());
    assert_eq!(
        create(r#"{"license":""}"#).licenses().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        create(r#"{"license":"MIT"}"#).licenses().unwrap(),
        vec!["MIT"]
    );
    let r = create(r#"{"license":["MIT","Apache-2.0",null]}"#);
    assert_eq!(r.licenses().unwrap(), vec!["MIT", "Apache-2.0", ""]);
    // Ollama accepts anything at decode time and fails during creation with Go's message.
    let cases = [
        (
            "5",
            "json: cannot unmarshal number into Go value of type []string",
        ),
        (
            "{}",
            "json: cannot unmarshal object into Go value of type []string",
        ),
        (
            r#"["a",1]"#,
            "json: cannot unmarshal number into Go value of type string",
        ),
    ];
    for (lic, msg) in cases {
        let r = create(&format!(r#"{{"license":{lic}}}"#));
        assert!(matches!(r.license, Some(License::Other(_))));
        assert_eq!(r.licenses().unwrap_err().to_string(), msg);
    }
}

#[test]
fn go_type_error_messages() {
    let cases = [
        (
            r#"{"stream":"yes"}"#,
            "json: cannot unmarshal string into Go struct field CreateRequest.stream of type bool",
        ),
        (
            r#"{"model":5}"#,
            "json: cannot unmarshal number into Go struct field CreateRequest.model of type string",
        ),
        (
            r#"{"files":"x"}"#,
            "json: cannot unmarshal string into Go struct field CreateRequest.files of type map[string]string",
        ),
        (
            r#"{"files":{"a":1}}"#,
            "json: cannot unmarshal number into Go struct field CreateRequest.files of type string",
        ),
        (
            r#"{"parameters":[1]}"#,
            "json: cannot unmarshal array into Go struct field CreateRequest.parameters of type map[string]interface {}",
        ),
        (
            r#"{"messages":{}}"#,
            "json: cannot unmarshal object into Go struct field CreateRequest.messages of type []api.Message",
        ),
        // Message has its own UnmarshalJSON (via a local Alias type); its errors are re-labelled.
        (
            r#"{"messages":["hi"]}"#,
            "json: cannot unmarshal string into Go struct field CreateRequest.messages of type api.Alias",
        ),
        (
            r#"{"messages":[{"role":1}]}"#,
            "json: cannot unmarshal number into Go struct field CreateRequest.messages.role of type string",
        ),
        (
            r#"{"messages":[{"tool_calls":[{"function":{"index":"0"}}]}]}"#,
            "json: cannot unmarshal string into Go struct field CreateRequest.messages.tool_calls.function.index of type int",
        ),
        (
            "[]",
            "json: cannot unmarshal array into Go value of type api.CreateRequest",
        ),
        // The first type error is reported (document order), decoding continues past it.
        (
            r#"{"system":1,"model":true}"#,
            "json: cannot unmarshal number into Go struct field CreateRequest.system of type string",
        ),
        (
            r#"{"messages":[{"images":["!!!!"]}]}"#,
            "illegal base64 data at input byte 0",
        ),
    ];
    for (body, msg) in cases {
        assert_eq!(create_err(body), msg, "{body}");
    }
    let e = decode_request::<ShowRequest>(br#"{"verbose":"true"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "json: cannot unmarshal string into Go struct field ShowRequest.verbose of type bool"
    );
    let DecodeError::Type(t) = e else {
        panic!("expected a type error")
    };
    assert_eq!(t.field(), Some("verbose"));
    assert_eq!(t.go_type(), "bool");
    assert_eq!(
        decode_request::<CopyRequest>(br#"{"source":1}"#)
            .unwrap_err()
            .to_string(),
        "json: cannot unmarshal number into Go struct field CopyRequest.source of type string"
    );
}

/// api/types_test.go:286-307 (TestMessage_UnmarshalJSON): roles are lower-cased.
#[test]
fn message_role_lowercased() {
    for (input, want) in [
        (r#"{"role": "USER", "content": "Hello!"}"#, "user"),
        (
            r#"{"role": "System", "content": "Initialization complete."}"#,
            "system",
        ),
        (
            r#"{"role": "assistant", "content": "How can I help you?"}"#,
            "assistant",
        ),
        (r#"{"role": "TOOl", "content": "Access granted."}"#, "tool"),
    ] {
        let m: Message = serde_json::from_str(input).unwrap();
        assert_eq!(m.role, want);
    }
}

/// api/types_test.go:738-800 (argument order is preserved) and :408-431 (index always marshals).
#[test]
fn tool_call_arguments_keep_order_and_index() {
    let body = r#"{"messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"echo","arguments":{"z":1,"a":2,"m":3,"b":4}}}]}]}"#;
    let r = create(body);
    let out = String::from_utf8(to_go_json(&r.messages)).unwrap();
    assert_eq!(
        out,
        r#"[{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"echo","arguments":{"z":1,"a":2,"m":3,"b":4}}}]}]"#
    );
}

#[test]
fn images_round_trip_as_canonical_base64() {
    let r = create(r#"{"messages":[{"role":"user","content":"x","images":["Zm9v\nYg=="]}]}"#);
    assert_eq!(r.messages[0].images[0].0, b"foob");
    let out = String::from_utf8(to_go_json(&r.messages[0])).unwrap();
    assert_eq!(
        out,
        r#"{"role":"user","content":"x","images":["Zm9vYg=="]}"#
    );
}

#[test]
fn numbers_in_any_behave_like_float64() {
    let r = create(
        r#"{"parameters":{"a":1.0,"b":1e2,"c":-0.0,"d":12345678901234567890,"e":0.000001,"f":1e-7,"g":1e21}}"#,
    );
    let p = r.parameters.unwrap();
    assert_eq!(
        String::from_utf8(to_go_json(&p)).unwrap(),
        r#"{"a":1,"b":100,"c":-0,"d":12345678901234567000,"e":0.000001,"f":1e-7,"g":1e+21}"#
    );
    // Integral values stay integers for typed access, like info.context_length checks need.
    assert_eq!(p["a"], json!(1));
}

#[test]
fn invalid_utf8_becomes_replacement_chars() {
    let r: CreateRequest = decode_request(b"{\"system\":\"a\xffb\"}").unwrap();
    assert_eq!(r.system, "a\u{FFFD}b");
}

/// Serialization follows api/types.go:652-711 field order; `name` has no omitempty.
#[test]
fn create_request_serializes_in_go_order() {
    assert_eq!(
        to_go_json(&CreateRequest::default()),
        br#"{"model":"","name":""}"#
    );
    let body = r#"{"model":"m","stream":false,"quantize":"q4_K_M","draft_quantize":"q8_0","from":"f","remote_host":"h","files":{"a.gguf":"sha256:1"},"draft_files":{"d.gguf":"sha256:2"},"adapters":{"l.gguf":"sha256:3"},"template":"{{ .Prompt }}","license":["MIT"],"system":"s","parameters":{"stop":["<|eot|>"]},"messages":[{"role":"user","content":"hi"}],"renderer":"r","parser":"p","requires":"0.30.0","info":{"context_length":4096},"name":"n","quantization":"Q8_0"}"#;
    let r = create(body);
    let expected = body.replace("<|eot|>", "\\u003c|eot|\\u003e");
    assert_eq!(String::from_utf8(to_go_json(&r)).unwrap(), expected);
    // And it decodes back to the same request.
    assert_eq!(create(&expected), r);
}

/// api/types.go:722-735: ShowRequest has no omitempty; nil options are `null`.
#[test]
fn show_copy_delete_serialize_like_go() {
    let s = ShowRequest {
        model: "llava".into(),
        ..Default::default()
    };
    assert_eq!(
        to_go_json(&s),
        br#"{"model":"llava","system":"","template":"","verbose":false,"options":null,"name":""}"#
    );
    let c = CopyRequest {
        source: "llama3.2".into(),
        destination: "llama3-backup".into(),
    };
    assert_eq!(
        to_go_json(&c),
        br#"{"source":"llama3.2","destination":"llama3-backup"}"#
    );
    let d = DeleteRequest {
        model: "llama3:13b".into(),
        name: String::new(),
    };
    assert_eq!(to_go_json(&d), br#"{"model":"llama3:13b","name":""}"#);
}

/// Malformed bodies get Go's scanner messages (what Ollama returns with status 400).
#[test]
fn syntax_errors_use_go_text() {
    assert_eq!(
        create_err("{model: \"x\"}"),
        "invalid character 'm' looking for beginning of object key string"
    );
    assert_eq!(
        create_err("{\"model\":\"x\",}"),
        "invalid character '}' looking for beginning of object key string"
    );
    assert_eq!(create_err("{\"model\":\"x\""), "unexpected EOF");
    assert_eq!(
        create_err("model=x"),
        "invalid character 'm' looking for beginning of value"
    );
    // Garbage after the first value is never looked at.
    assert_eq!(create("{\"model\":\"x\"}{oops").model, "x");
}

/// `api.PullRequest` / `api.PushRequest` (api/types.go): Go's field names, the deprecated `name`,
/// `insecure`, `stream`, and Go's type errors with the Go struct name.
#[test]
fn pull_and_push_requests() {
    let p: PullRequest =
        decode_request(br#"{"Model":"team/m:v1","INSECURE":true,"stream":false}"#).unwrap();
    assert_eq!(p.model_name(), "team/m:v1");
    assert!(p.insecure);
    assert!(!p.is_streaming());
    let p: PullRequest = decode_request(br#"{"name":"old","username":"u"}"#).unwrap();
    assert_eq!(p.model_name(), "old");
    assert!(p.is_streaming());
    assert!(!p.insecure);
    let p: PushRequest = decode_request(br#"{"model":"new","name":"old"}"#).unwrap();
    assert_eq!(p.model_name(), "new");
    assert_eq!(
        decode_request::<PullRequest>(br#"{"insecure":"yes"}"#)
            .unwrap_err()
            .to_string(),
        "json: cannot unmarshal string into Go struct field PullRequest.insecure of type bool"
    );
    assert_eq!(
        decode_request::<PushRequest>(br#"{"model":7}"#)
            .unwrap_err()
            .to_string(),
        "json: cannot unmarshal number into Go struct field PushRequest.model of type string"
    );
    // Serialized in Go's field order, as the Go client sends it.
    let body = to_go_json(&PullRequest {
        model: "m".into(),
        insecure: true,
        ..PullRequest::default()
    });
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"model":"m","insecure":true,"username":"","password":"","name":""}"#
    );
}
