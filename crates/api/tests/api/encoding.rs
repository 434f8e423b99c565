//! HTML escaping, timestamps and NDJSON streaming.

use kiln_api::{
    ErrorResponse, ModelDetails, NdjsonDecoder, NdjsonError, ProgressResponse, ShowResponse,
    Timestamp, to_go_json, to_ndjson_line,
};
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn html_characters_are_escaped_like_go() {
    let e = ErrorResponse::new("<b>&</b> \u{2028}\u{2029} \"q\" \\ \n\t\u{1} \u{7f} é 😀");
    assert_eq!(
        String::from_utf8(to_go_json(&e)).unwrap(),
        "{\"error\":\"\\u003cb\\u003e\\u0026\\u003c/b\\u003e \\u2028\\u2029 \\\"q\\\" \\\\ \\n\\t\\u0001 \u{7f} é 😀\"}"
    );
    // Keys are escaped too (Go escapes map keys).
    let mut m = kiln_api::AnyMap::new();
    m.insert("a<b".into(), serde_json::json!("x>y"));
    assert_eq!(to_go_json(&m), br#"{"a\u003cb":"x\u003ey"}"#);
}

/// Go's zero-valued ShowResponse: structs and `model_info` are always present, `families` is null,
/// the omitempty strings and slices are absent (api/types.go:737-755, 933-942).
#[test]
fn show_response_omission_rules() {
    assert_eq!(
        String::from_utf8(to_go_json(&ShowResponse::default())).unwrap(),
        r#"{"details":{"parent_model":"","format":"","family":"","families":null,"parameter_size":"","quantization_level":""},"model_info":{},"modified_at":"0001-01-01T00:00:00Z"}"#
    );
    let details = ModelDetails {
        families: Some(vec![]),
        context_length: 8192,
        ..Default::default()
    };
    assert_eq!(
        String::from_utf8(to_go_json(&details)).unwrap(),
        r#"{"parent_model":"","format":"","family":"","families":[],"parameter_size":"","quantization_level":"","context_length":8192}"#
    );
    assert_eq!(
        to_go_json(&ProgressResponse::status("success")),
        br#"{"status":"success"}"#
    );
}

#[test]
fn timestamps_format_like_rfc3339nano() {
    // docs/api.md:1386-1433 and 1797: local offsets, trailing fraction zeros trimmed.
    for s in [
        "2025-05-10T08:06:48.639712648-07:00",
        "2024-06-04T14:38:31.83753-07:00",
        "2025-10-26T17:21:21.196249Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999+14:00",
    ] {
        let t: Timestamp = s.parse().unwrap();
        assert_eq!(t.to_string(), s);
    }
    let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::new(1_715_353_608, 639_712_648));
    assert_eq!(t.to_string(), "2024-05-10T15:06:48.639712648Z");
    assert_eq!(
        t.with_offset_minutes(-420).unwrap().to_string(),
        "2024-05-10T08:06:48.639712648-07:00"
    );
    let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_millis(1500));
    assert_eq!(t.to_string(), "1970-01-01T00:00:01.5Z");
    let t = Timestamp::from_system_time(UNIX_EPOCH - Duration::from_millis(1500));
    assert_eq!(t.to_string(), "1969-12-31T23:59:58.5Z");
    assert_eq!(
        t.to_system_time(),
        Some(UNIX_EPOCH - Duration::from_millis(1500))
    );
    for bad in [
        "2024-02-30T00:00:00Z",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T24:00:00Z",
    ] {
        assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
    }
}

#[test]
fn ndjson_error_lines_crlf_and_limits() {
    let mut d = NdjsonDecoder::<ProgressResponse>::new();
    let out = d.push(b"{\"status\":\"a\"}\r\n\n{\"error\":\"boom\"}\n{\"status\"");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].as_ref().unwrap().status, "a");
    assert!(matches!(&out[1], Err(NdjsonError::Remote(m)) if m == "boom"));
    assert!(d.push(b":\"b\"}").is_empty());
    let last = d.finish().unwrap().unwrap();
    assert_eq!(last.status, "b");

    let mut d = NdjsonDecoder::<ProgressResponse>::with_max_line(16);
    let out = d.push(b"{\"status\":\"way too long for the limit\"}\n{\"status\":\"ok\"}\n");
    assert!(matches!(out[0], Err(NdjsonError::LineTooLong { .. })));
    assert_eq!(out[1].as_ref().unwrap().status, "ok");
    let out = d.push(b"{\"status\":\"also way too long\"");
    assert!(matches!(out[0], Err(NdjsonError::LineTooLong { .. })));
    assert!(d.push(b" more junk").is_empty());
    assert_eq!(d.push(b"}\n{\"status\":\"x\"}\n").len(), 1);
    assert!(matches!(
        NdjsonDecoder::<ProgressResponse>::new().push(b"{oops}\n")[0],
        Err(NdjsonError::Json { line: 1, .. })
    ));
}

fn progress() -> impl Strategy<Value = ProgressResponse> {
    ("\\PC{0,40}", "[0-9a-f:]{0,20}", any::<i64>(), any::<i64>()).prop_map(
        |(status, digest, total, completed)| ProgressResponse {
            status,
            digest,
            total,
            completed,
        },
    )
}

proptest! {
    /// Any split of a stream into chunks (mid-object, mid-UTF-8, several objects per chunk) decodes
    /// to the same values, in order.
    #[test]
    fn ndjson_survives_arbitrary_chunking(
        items in prop::collection::vec(progress(), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream: Vec<u8> = items.iter().flat_map(to_ndjson_line).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut d = NdjsonDecoder::<ProgressResponse>::new();
        let mut got = Vec::new();
        let mut start = 0;
        for p in points.into_iter().chain([stream.len()]) {
            got.extend(d.push(&stream[start..p]));
            start = p;
        }
        prop_assert!(d.finish().is_none());
        let got: Vec<ProgressResponse> = got.into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(got, items);
    }

    /// Escaped output is still JSON that parses back to the same string, and no raw `<`, `>`, `&`
    /// survive.
    #[test]
    fn escaping_round_trips(s in "\\PC{0,60}|[<>&\u{2028}\u{2029}\"\\\\a]{0,20}") {
        let bytes = to_go_json(&ErrorResponse::new(s.clone()));
        prop_assert!(!bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&')));
        let back: ErrorResponse = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(back.error, s);
    }

    /// Timestamps print and parse back to the same instant and offset.
    #[test]
    fn timestamps_round_trip(
        secs in -62_135_596_800i64..253_402_214_400,
        nanos in 0u32..1_000_000_000,
        offset in -1439i16..=1439,
    ) {
        let t = Timestamp::from_unix(secs, nanos).unwrap();
        if let Some(t) = t.with_offset_minutes(offset) {
            let back: Timestamp = t.to_string().parse().unwrap();
            prop_assert_eq!(back, t);
        }
    }
}
