//! kiln-gguf's integration tests: interop with llama.cpp's gguf-py, round trips, hostile input.

use std::path::Path;
use std::process::Command;

use kiln_gguf::{Array, GgmlType, Gguf, GgufError, Limits, TensorSpec, Value, ValueType, Writer};
use kiln_testkit::{TempDir, oracle_python, oracle_script};
use proptest::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// The oracle: llama.cpp's Python gguf package.

fn interop(python: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg(oracle_script("gguf_interop.py"))
        .args(args)
        .output()
        .expect("run gguf_interop.py");
    assert!(
        out.status.success(),
        "gguf_interop.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle JSON")
}

/// kiln's view of a value in the oracle script's JSON shape.
fn value_json(v: &Value<'_>) -> (String, serde_json::Value) {
    let ty = v.value_type().name().to_owned();
    let json = match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(f64::from(*x)),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) => {
            let items: Vec<serde_json::Value> = a
                .iter()
                .map(|item| match item {
                    Value::Array(_) => {
                        let (_, inner) = value_json(&item);
                        inner
                    }
                    other => value_json(&other).1,
                })
                .collect();
            json!({"elem": a.element_type().name(), "value": items})
        }
    };
    (ty, json)
}

fn kv_json(gguf: &Gguf<'_>) -> Vec<serde_json::Value> {
    gguf.metadata()
        .iter()
        .map(|(k, v)| {
            let (ty, value) = value_json(v);
            json!({"key": k, "type": ty, "value": value})
        })
        .collect()
}

fn tensor_json(gguf: &Gguf<'_>) -> Vec<serde_json::Value> {
    gguf.tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name(), "type": t.ggml_type().0, "dims": t.dims(), "offset": t.offset(),
                "n_bytes": t.n_bytes().unwrap(), "sha256": format!("{:x}", Sha256::digest(t.data())),
            })
        })
        .collect()
}

/// Rewrites a parsed file with kiln's writer: same metadata, same tensors, same order.
fn rewrite(gguf: &Gguf<'_>) -> Vec<u8> {
    let metadata = gguf.metadata().to_vec();
    let specs: Vec<TensorSpec<'_>> = gguf
        .tensors()
        .iter()
        .map(|t| TensorSpec::new(t.name(), t.ggml_type(), t.dims().to_vec()))
        .collect();
    let mut w = Writer::new(Vec::new(), &metadata, &specs).unwrap();
    for t in gguf.tensors() {
        let data = t.data();
        let (a, b) = data.split_at(data.len() / 3);
        w.write_tensor_data(a).unwrap();
        w.write_tensor_data(b).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn files_written_by_gguf_py_parse_to_the_same_content_and_rewrite_identically() {
    let Some(py) = oracle_python() else { return };
    let dir = TempDir::new("gguf-pywritten");
    for alignment in [1u32, 8, 32, 64, 256] {
        let path = dir.join(format!("pywritten-{alignment}.gguf"));
        let written = interop(
            &py,
            &["write", path.to_str().unwrap(), &alignment.to_string()],
        );
        let seen = interop(&py, &["read", path.to_str().unwrap()]);
        let bytes = std::fs::read(&path).unwrap();
        let gguf = Gguf::parse(&bytes, &Limits::default()).unwrap();
        assert_eq!(gguf.version(), 3);
        assert_eq!(gguf.alignment(), u64::from(alignment));
        assert_eq!(
            serde_json::Value::Array(kv_json(&gguf)),
            written["kv"],
            "metadata, alignment {alignment}"
        );
        assert_eq!(
            serde_json::Value::Array(tensor_json(&gguf)),
            seen["tensors"],
            "tensors, alignment {alignment}"
        );
        assert_eq!(gguf.alignment(), seen["alignment"].as_u64().unwrap());
        // gguf-py writes canonical files: kiln's rewrite must reproduce them byte for byte.
        assert!(
            rewrite(&gguf) == bytes,
            "rewrite differs from gguf-py's file at alignment {alignment}"
        );
    }
}

fn every_value_metadata(alignment: Option<u32>) -> Vec<(String, Value<'static>)> {
    let mut md = vec![("general.architecture".to_owned(), Value::string("llama"))];
    if let Some(a) = alignment {
        md.push(("general.alignment".to_owned(), Value::U32(a)));
    }
    md.extend([
        ("k.u8".to_owned(), Value::U8(200)),
        ("k.i8".to_owned(), Value::I8(-3)),
        ("k.u16".to_owned(), Value::U16(65000)),
        ("k.i16".to_owned(), Value::I16(-30000)),
        ("k.u32".to_owned(), Value::U32(4_000_000_000)),
        ("k.i32".to_owned(), Value::I32(-2_000_000_000)),
        ("k.f32".to_owned(), Value::F32(-1.25e-7)),
        ("k.bool".to_owned(), Value::Bool(true)),
        ("k.str".to_owned(), Value::string("ünïcode <&> \u{1F600}")),
        ("k.u64".to_owned(), Value::U64(u64::MAX)),
        ("k.i64".to_owned(), Value::I64(i64::MIN)),
        ("k.f64".to_owned(), Value::F64(6.02e23)),
        (
            "tokenizer.ggml.tokens".to_owned(),
            Value::Array(Array::new(
                ValueType::String,
                (0..1000).map(|i| Value::string(format!("t{i}"))).collect(),
            )),
        ),
        (
            "k.arr_f32".to_owned(),
            Value::Array(Array::new(
                ValueType::F32,
                vec![Value::F32(1.0), Value::F32(-0.5)],
            )),
        ),
        (
            "k.arr_bool".to_owned(),
            Value::Array(Array::new(ValueType::Bool, vec![Value::Bool(false)])),
        ),
    ]);
    md
}

fn kiln_tensors() -> Vec<(TensorSpec<'static>, Vec<u8>)> {
    let specs = [
        TensorSpec::new("token_embd.weight", GgmlType::F16, vec![64, 3]),
        TensorSpec::new("blk.0.q4_0", GgmlType::Q4_0, vec![64, 2]),
        TensorSpec::new("blk.0.q6_k", GgmlType::Q6_K, vec![256, 1]),
        TensorSpec::new("blk.0.bf16", GgmlType::BF16, vec![7]),
        TensorSpec::new("blk.0.iq4_xs", GgmlType::IQ4_XS, vec![512, 1, 1]),
        TensorSpec::new("blk.0.f32.4d", GgmlType::F32, vec![2, 3, 4, 5]),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.n_bytes().unwrap() as usize;
            let data = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
            (s, data)
        })
        .collect()
}

#[test]
fn files_written_by_kiln_are_read_by_gguf_py_with_the_same_content() {
    let Some(py) = oracle_python() else { return };
    let dir = TempDir::new("gguf-kiln-written");
    for alignment in [None, Some(16u32), Some(128)] {
        let md = every_value_metadata(alignment);
        let tensors = kiln_tensors();
        let specs: Vec<_> = tensors.iter().map(|(s, _)| s.clone()).collect();
        let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
        for (_, data) in &tensors {
            w.write_tensor_data(data).unwrap();
        }
        let bytes = w.finish().unwrap();
        let path = dir.join(format!("kiln-written-{alignment:?}.gguf"));
        std::fs::write(&path, &bytes).unwrap();
        let seen = interop(&py, &["read", path.to_str().unwrap()]);
        let gguf = Gguf::parse(&bytes, &Limits::default()).unwrap();
        assert_eq!(seen["version"], 3);
        assert_eq!(
            seen["alignment"].as_u64().unwrap(),
            u64::from(alignment.unwrap_or(32))
        );
        assert_eq!(serde_json::Value::Array(kv_json(&gguf)), seen["kv"]);
        let expected: Vec<serde_json::Value> = tensors
            .iter()
            .zip(gguf.tensors())
            .map(|((s, data), t)| {
                json!({"name": s.name, "type": s.ggml_type.0, "dims": s.dims, "offset": t.offset(),
                       "n_bytes": data.len(), "sha256": format!("{:x}", Sha256::digest(data))})
            })
            .collect();
        assert_eq!(serde_json::Value::Array(expected), seen["tensors"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips and layout.

fn small_file() -> Vec<u8> {
    let md = every_value_metadata(None);
    let tensors = kiln_tensors();
    let specs: Vec<_> = tensors.iter().map(|(s, _)| s.clone()).collect();
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    for (_, data) in &tensors {
        w.write_tensor_data(data).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn writer_layout_matches_what_it_writes_and_offsets_are_aligned() {
    let bytes = small_file();
    let gguf = Gguf::parse(&bytes, &Limits::default()).unwrap();
    let md = gguf.metadata().to_vec();
    let specs: Vec<_> = gguf
        .tensors()
        .iter()
        .map(|t| TensorSpec::new(t.name(), t.ggml_type(), t.dims().to_vec()))
        .collect();
    let layout = kiln_gguf::Layout::compute(&md, &specs).unwrap();
    assert_eq!(layout.file_len, bytes.len() as u64);
    assert_eq!(layout.data_offset, gguf.data_offset());
    for (t, off) in gguf.tensors().iter().zip(&layout.offsets) {
        assert_eq!(t.offset(), *off);
        assert_eq!(off % 32, 0);
    }
    assert_eq!(rewrite(&gguf), bytes);
}

#[test]
fn writer_rejects_wrong_sizes_and_incomplete_files() {
    let specs = [
        TensorSpec::new("a", GgmlType::F32, vec![4]),
        TensorSpec::new("b", GgmlType::Q8_0, vec![32]),
    ];
    let md: Vec<(&str, Value<'_>)> = vec![];
    let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
    assert!(matches!(
        w.write_tensor_data(&[0; 17]),
        Err(kiln_gguf::WriteError::TooMuchData { extra: 1, .. })
    ));
    w.write_tensor_data(&[0; 16]).unwrap();
    w.write_tensor_data(&[0; 10]).unwrap();
    assert!(matches!(
        w.finish(),
        Err(kiln_gguf::WriteError::Incomplete {
            written: 10,
            expected: 34,
            ..
        })
    ));
    let bad = [TensorSpec::new("q", GgmlType::Q4_K, vec![100])];
    assert!(Writer::new(Vec::new(), &md, &bad).is_err());
    let unknown = [TensorSpec::new("u", GgmlType(99), vec![4])];
    assert!(matches!(
        Writer::new(Vec::new(), &md, &unknown),
        Err(kiln_gguf::WriteError::UnknownType { .. })
    ));
    let dup = [
        TensorSpec::new("d", GgmlType::F32, vec![1]),
        TensorSpec::new("d", GgmlType::F32, vec![1]),
    ];
    assert!(matches!(
        Writer::new(Vec::new(), &md, &dup),
        Err(kiln_gguf::WriteError::Duplicate { .. })
    ));
    let mixed = vec![(
        "m",
        Value::Array(Array::new(ValueType::U8, vec![Value::U8(1), Value::I8(1)])),
    )];
    assert!(matches!(
        Writer::new(Vec::new(), &mixed, &[]),
        Err(kiln_gguf::WriteError::MixedArray { .. })
    ));
}

#[test]
fn typed_metadata_helpers() {
    let md = vec![
        ("general.architecture", Value::string("llama")),
        ("general.file_type", Value::U32(15)),
        ("llama.block_count", Value::U32(32)),
        ("llama.context_length", Value::U64(8192)),
        ("llama.attention.head_count_kv", Value::I32(8)),
        ("general.name", Value::F32(1.0)),
    ];
    let bytes = Writer::new(Vec::new(), &md, &[]).unwrap().finish().unwrap();
    let gguf = Gguf::parse(&bytes, &Limits::default()).unwrap();
    let m = gguf.metadata();
    assert_eq!(m.architecture().unwrap(), "llama");
    assert_eq!(m.file_type().unwrap(), Some(15));
    assert_eq!(m.block_count().unwrap(), 32);
    assert_eq!(m.context_length().unwrap(), Some(8192));
    assert_eq!(m.head_count_kv().unwrap(), Some(8));
    assert_eq!(m.head_count().unwrap(), None);
    assert!(matches!(
        m.name(),
        Err(kiln_gguf::MetadataError::WrongType {
            found: ValueType::F32,
            ..
        })
    ));
    assert!(matches!(
        m.get_str("nope"),
        Err(kiln_gguf::MetadataError::Missing { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn kv(b: &mut Vec<u8>, key: &str, ty: u32, value: &[u8]) {
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(value);
}

fn parse(b: &[u8]) -> Result<Gguf<'_>, GgufError> {
    Gguf::parse(b, &Limits::default())
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error_not_a_panic() {
    let bytes = small_file();
    let gguf = parse(&bytes).unwrap();
    let last_tensor_end = gguf
        .tensors()
        .iter()
        .map(|t| gguf.data_offset() + t.offset() + t.data().len() as u64)
        .max()
        .unwrap();
    for len in 0..bytes.len() {
        let r = parse(&bytes[..len]);
        if (len as u64) < last_tensor_end {
            assert!(r.is_err(), "truncated to {len} bytes parsed");
        }
    }
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    for (t, k) in [
        (1u64 << 60, 0u64),
        (0, 1 << 60),
        (u64::MAX, u64::MAX),
        (1 << 20, 0),
    ] {
        let b = header(3, t, k);
        assert!(b.len() <= 40);
        match parse(&b) {
            Err(GgufError::LimitExceeded { .. } | GgufError::Truncated { .. }) => {}
            other => panic!("({t}, {k}): {other:?}"),
        }
    }
    // A string claiming 2^60 bytes, an array claiming 2^60 elements.
    let mut b = header(3, 0, 1);
    b.extend_from_slice(&(1u64 << 60).to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    assert!(matches!(
        parse(&b),
        Err(GgufError::LimitExceeded {
            what: "string length",
            offset: 24,
            ..
        })
    ));
    let mut b = header(3, 0, 1);
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u64 << 60).to_le_bytes());
    kv(&mut b, "a", 9, &v);
    assert!(matches!(
        parse(&b),
        Err(GgufError::LimitExceeded {
            what: "array length",
            ..
        })
    ));
    let mut b = header(3, 0, 1);
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u64 << 20).to_le_bytes());
    kv(&mut b, "a", 9, &v);
    assert!(matches!(
        parse(&b),
        Err(GgufError::Truncated {
            what: "array elements",
            ..
        })
    ));
    let tight = Limits::default().max_tensors(2).max_metadata(1);
    assert!(matches!(
        Gguf::parse(&header(3, 3, 0), &tight),
        Err(GgufError::LimitExceeded { .. })
    ));
}

#[test]
fn versions_magic_and_endianness() {
    assert!(matches!(
        parse(b"GGML\x03\0\0\0"),
        Err(GgufError::BadMagic { .. })
    ));
    assert!(matches!(parse(b"GG"), Err(GgufError::BadMagic { .. })));
    assert!(matches!(
        parse(&header(1, 0, 0)),
        Err(GgufError::UnsupportedVersion { version: 1 })
    ));
    assert!(matches!(
        parse(&header(3u32.swap_bytes(), 0, 0)),
        Err(GgufError::BigEndian { version: 3 })
    ));
    assert_eq!(parse(&header(2, 0, 0)).unwrap().version(), 2);
}

#[test]
fn bad_metadata_is_rejected_with_its_offset() {
    let mut b = header(3, 0, 2);
    kv(&mut b, "a", 4, &1u32.to_le_bytes());
    kv(&mut b, "a", 4, &1u32.to_le_bytes());
    assert!(matches!(
        parse(&b),
        Err(GgufError::DuplicateKey { offset: 41, .. })
    ));
    let mut b = header(3, 0, 1);
    kv(&mut b, "", 4, &1u32.to_le_bytes());
    assert!(matches!(parse(&b), Err(GgufError::EmptyKey { offset: 24 })));
    let mut b = header(3, 0, 1);
    kv(&mut b, "a", 13, &[0; 8]);
    assert!(matches!(
        parse(&b),
        Err(GgufError::UnknownValueType { id: 13, offset: 33 })
    ));
    let mut b = header(3, 0, 1);
    kv(&mut b, "a", 7, &[2]);
    assert!(matches!(
        parse(&b),
        Err(GgufError::InvalidBool { value: 2, .. })
    ));
    let mut b = header(3, 0, 1);
    kv(&mut b, "a", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]);
    assert!(matches!(parse(&b), Err(GgufError::InvalidUtf8 { .. })));
    for (ty, value, ok) in [
        (4u32, 0u32, false),
        (4, 3, false),
        (4, 64, true),
        (5, 32, false),
    ] {
        let mut b = header(3, 0, 1);
        kv(&mut b, "general.alignment", ty, &value.to_le_bytes());
        assert_eq!(parse(&b).is_ok(), ok, "alignment type {ty} value {value}");
    }
    // Arrays nested past the depth limit.
    let mut b = header(3, 0, 1);
    let mut v = Vec::new();
    for _ in 0..100 {
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
    }
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    kv(&mut b, "deep", 9, &v);
    assert!(matches!(parse(&b), Err(GgufError::NestingTooDeep { .. })));
}

fn tensor_info(b: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, offset: u64) {
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
}

fn with_tensors(infos: &[(&str, &[u64], u32, u64)], data_len: usize) -> Vec<u8> {
    let mut b = header(3, infos.len() as u64, 0);
    for (name, dims, ty, off) in infos {
        tensor_info(&mut b, name, dims, *ty, *off);
    }
    b.resize(b.len().next_multiple_of(32) + data_len, 0);
    b
}

#[test]
fn ggml_counts_dims_without_trailing_ones() {
    // The stored count and ggml's count differ exactly when the stored shape ends in 1s.
    let cases: [(&[u64], usize, usize); 6] = [
        (&[8], 1, 1),
        (&[8, 1], 2, 1),
        (&[1, 8], 2, 2),
        (&[8, 1, 1, 1], 4, 1),
        (&[8, 1, 4], 3, 3),
        (&[1, 1, 8], 3, 3),
    ];
    for (dims, stored, ggml) in cases {
        let b = with_tensors(&[("a", dims, 0, 0)], 128);
        let gguf = parse(&b).unwrap();
        let t = &gguf.tensors()[0];
        assert_eq!(
            (t.dims().len(), t.ggml_n_dims()),
            (stored, ggml),
            "{dims:?}"
        );
    }
}

#[test]
fn bad_tensor_tables_are_rejected() {
    let ok = with_tensors(&[("a", &[8], 0, 0), ("b", &[8], 0, 32)], 64);
    assert_eq!(parse(&ok).unwrap().tensors().len(), 2);
    let overlap = with_tensors(&[("a", &[16], 0, 0), ("b", &[8], 0, 32)], 96);
    assert!(matches!(parse(&overlap), Err(GgufError::Overlap { .. })));
    let oob = with_tensors(&[("a", &[8], 0, 0), ("b", &[9], 0, 32)], 64);
    assert!(matches!(parse(&oob), Err(GgufError::OutOfBounds { .. })));
    let far = with_tensors(&[("a", &[8], 0, u64::MAX - 31)], 64);
    assert!(matches!(parse(&far), Err(GgufError::OutOfBounds { .. })));
    let misaligned = with_tensors(&[("a", &[8], 0, 4)], 64);
    assert!(matches!(
        parse(&misaligned),
        Err(GgufError::Misaligned {
            offset: 4,
            alignment: 32,
            ..
        })
    ));
    let dup = with_tensors(&[("a", &[8], 0, 0), ("a", &[8], 0, 32)], 64);
    assert!(matches!(
        parse(&dup),
        Err(GgufError::DuplicateTensor { .. })
    ));
    let dims5 = with_tensors(&[("a", &[1, 1, 1, 1, 1], 0, 0)], 64);
    assert!(matches!(
        parse(&dims5),
        Err(GgufError::TooManyDims { n_dims: 5, .. })
    ));
    let overflow = with_tensors(&[("a", &[1 << 32, 1 << 32], 0, 0)], 64);
    assert!(matches!(parse(&overflow), Err(GgufError::BadShape { .. })));
    let negative = with_tensors(&[("a", &[u64::MAX], 0, 0)], 64);
    assert!(matches!(parse(&negative), Err(GgufError::BadShape { .. })));
    let partial = with_tensors(&[("a", &[100], 12, 0)], 4096);
    assert!(matches!(
        parse(&partial),
        Err(GgufError::PartialBlock {
            ne0: 100,
            block: 256,
            ..
        })
    ));
}

#[test]
fn unknown_tensor_types_still_parse_and_report_their_id() {
    let b = with_tensors(&[("known", &[8], 0, 0), ("future", &[7, 3], 1234, 32)], 96);
    let gguf = parse(&b).unwrap();
    let t = &gguf.tensors()[1];
    assert_eq!(t.ggml_type(), GgmlType(1234));
    assert!(!t.ggml_type().is_known());
    assert_eq!(t.n_bytes(), None);
    assert_eq!(
        t.data().len(),
        64,
        "unknown type spans to the end of the file"
    );
    assert_eq!(format!("{}", t.ggml_type()), "type#1234");
}

// ---------------------------------------------------------------------------------------------
// Property: arbitrary metadata and tensor tables round-trip.

fn scalar() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u32>().prop_map(|b| Value::F32(f32::from_bits(b))),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::string),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(|b| Value::F64(f64::from_bits(b))),
    ]
}

fn value() -> impl Strategy<Value = Value<'static>> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        (inner, 0usize..6).prop_map(|(v, n)| {
            let ty = v.value_type();
            Value::Array(Array::new(ty, vec![v; n]))
        })
    })
}

fn tensor_spec() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    let ty = prop::sample::select(vec![
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::TQ1_0,
        GgmlType::MXFP4,
        GgmlType::Q1_0,
    ]);
    (ty, prop::collection::vec(1u64..4, 0..4), 1u64..3).prop_map(|(ty, rest, blocks)| {
        let mut dims = vec![ty.block_size().unwrap() * blocks];
        dims.extend(rest);
        (ty, dims)
    })
}

proptest! {
    #[test]
    fn arbitrary_files_round_trip(
        kvs in prop::collection::vec(("[a-z.]{1,10}", value()), 0..8),
        tensors in prop::collection::vec(tensor_spec(), 0..6),
        alignment in prop::sample::select(vec![None, Some(1u32), Some(8), Some(64)]),
    ) {
        let mut md: Vec<(String, Value<'static>)> = Vec::new();
        for (k, v) in kvs {
            if k != "general.alignment" && !md.iter().any(|(e, _)| *e == k) {
                md.push((k, v));
            }
        }
        if let Some(a) = alignment {
            md.push(("general.alignment".into(), Value::U32(a)));
        }
        let specs: Vec<TensorSpec<'static>> = tensors
            .iter()
            .enumerate()
            .map(|(i, (ty, dims))| TensorSpec::new(format!("t{i}"), *ty, dims.clone()))
            .collect();
        let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
        let mut datas = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let data: Vec<u8> = (0..s.n_bytes().unwrap()).map(|j| (j as usize * 13 + i) as u8).collect();
            w.write_tensor_data(&data).unwrap();
            datas.push(data);
        }
        let bytes = w.finish().unwrap();
        let gguf = Gguf::parse(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(gguf.metadata().len(), md.len());
        for ((k, v), (pk, pv)) in md.iter().zip(gguf.metadata().iter()) {
            prop_assert_eq!(k.as_str(), pk);
            prop_assert_eq!(v, pv);
        }
        prop_assert_eq!(gguf.tensors().len(), specs.len());
        for ((s, data), t) in specs.iter().zip(&datas).zip(gguf.tensors()) {
            prop_assert_eq!(s.name.as_ref(), t.name());
            prop_assert_eq!(s.ggml_type, t.ggml_type());
            prop_assert_eq!(&s.dims[..], t.dims());
            prop_assert_eq!(&data[..], t.data());
        }
        prop_assert_eq!(&rewrite(&gguf), &bytes);
        // The header alone, as a producer has it before any data exists, reads as the same file.
        let (header, layout) = kiln_gguf::Layout::header(&md, &specs).unwrap();
        prop_assert_eq!(&header[..], &bytes[..header.len()]);
        let head = Gguf::parse_header(&header, &Limits::default()).unwrap();
        prop_assert_eq!(head.data_offset(), layout.data_offset);
        prop_assert_eq!(head.metadata().len(), md.len());
        for (h, t) in head.tensors().iter().zip(gguf.tensors()) {
            prop_assert_eq!((h.name(), h.dims(), h.offset()), (t.name(), t.dims(), t.offset()));
            prop_assert_eq!(h.n_bytes(), Some(t.data().len() as u64));
            prop_assert!(h.data().is_empty());
        }
    }

    #[test]
    fn random_mutations_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = small_file();
        for (i, v) in flips {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        if let Ok(g) = Gguf::parse(&bytes, &Limits::default()) {
            for (_, v) in g.metadata().iter() {
                let _ = format!("{v:?}");
            }
        }
        let _ = Gguf::parse_header(&bytes, &Limits::default());
    }
}

/// A header without data still refuses tensors that overlap or whose size nothing bounds.
#[test]
fn header_alone_refuses_overlap_and_unknown_sizes() {
    let md: Vec<(String, Value<'static>)> = vec![];
    let specs = [
        TensorSpec::new("a", GgmlType::F32, vec![8]),
        TensorSpec::new("b", GgmlType::F32, vec![8]),
    ];
    let (mut header, _) = kiln_gguf::Layout::header(&md, &specs).unwrap();
    assert!(Gguf::parse_header(&header, &Limits::default()).is_ok());
    // The last eight bytes are b's offset (32): move it to 0, inside a.
    let n = header.len();
    header[n - 8..].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        Gguf::parse_header(&header, &Limits::default()),
        Err(GgufError::Overlap { .. })
    ));
    // b's type (the four bytes before its offset) becomes one this crate cannot size.
    header[n - 8..].copy_from_slice(&32u64.to_le_bytes());
    header[n - 12..n - 8].copy_from_slice(&9999u32.to_le_bytes());
    let err = Gguf::parse_header(&header, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, GgufError::UnknownTensorSize { name, .. } if name == "b"),
        "{err}"
    );
}

/// Found by the fuzzer: a legal 1 GiB alignment once made the writer allocate the padding.
#[test]
fn huge_alignment_is_padded_by_streaming_not_allocating() {
    let bytes = include_bytes!("regressions/huge-alignment.gguf");
    let gguf = Gguf::parse(bytes, &Limits::default()).unwrap();
    assert_eq!(gguf.alignment(), 1 << 30);
    let md = gguf.metadata().to_vec();
    let layout = kiln_gguf::Layout::compute(&md, &[]).unwrap();
    assert_eq!(layout.data_offset, 1 << 30);
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            assert!(
                b.len() <= 1 << 20,
                "a {} byte write means the padding was buffered",
                b.len()
            );
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Writer::new(Counter(0), &md, &[]).unwrap().finish().unwrap();
    assert_eq!(out.0, 1 << 30);
}
