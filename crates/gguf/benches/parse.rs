//! Parsing and writing a header the size of a real tokenizer (150k strings).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_gguf::{Array, GgmlType, Gguf, Limits, TensorSpec, Value, ValueType, Writer};

fn tokenizer_file() -> (Vec<(String, Value<'static>)>, Vec<u8>) {
    let tokens: Vec<Value<'static>> = (0..150_000)
        .map(|i| Value::string(format!("tok{i}_ĠHello")))
        .collect();
    let scores: Vec<Value<'static>> = (0..150_000).map(|i| Value::F32(i as f32 * -0.5)).collect();
    let metadata = vec![
        ("general.architecture".to_owned(), Value::string("llama")),
        (
            "tokenizer.ggml.tokens".to_owned(),
            Value::Array(Array::new(ValueType::String, tokens)),
        ),
        (
            "tokenizer.ggml.scores".to_owned(),
            Value::Array(Array::new(ValueType::F32, scores)),
        ),
    ];
    let tensors = vec![TensorSpec::new("w", GgmlType::F32, vec![8])];
    let mut w = Writer::new(Vec::new(), &metadata, &tensors).unwrap();
    w.write_tensor_data(&[0u8; 32]).unwrap();
    (metadata, w.finish().unwrap())
}

fn bench(c: &mut Criterion) {
    let (metadata, bytes) = tokenizer_file();
    let mut group = c.benchmark_group("gguf");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse_150k_token_vocab", |b| {
        b.iter(|| {
            Gguf::parse(black_box(&bytes), &Limits::default())
                .unwrap()
                .tensors()
                .len()
        })
    });
    let parsed = Gguf::parse(&bytes, &Limits::default()).unwrap();
    let copied = parsed.metadata().to_vec();
    group.bench_function("write_copied_150k_token_vocab", |b| {
        let tensors = vec![TensorSpec::new("w", GgmlType::F32, vec![8])];
        b.iter(|| {
            let mut w = Writer::new(Vec::with_capacity(bytes.len()), &copied, &tensors).unwrap();
            w.write_tensor_data(&[0u8; 32]).unwrap();
            w.finish().unwrap().len()
        })
    });
    group.bench_function("write_owned_150k_token_vocab", |b| {
        let tensors = vec![TensorSpec::new("w", GgmlType::F32, vec![8])];
        b.iter(|| {
            let mut w = Writer::new(Vec::with_capacity(bytes.len()), &metadata, &tensors).unwrap();
            w.write_tensor_data(&[0u8; 32]).unwrap();
            w.finish().unwrap().len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
