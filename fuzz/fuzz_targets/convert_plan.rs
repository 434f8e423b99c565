//! The whole safetensors → GGUF conversion on an arbitrary model folder: `config.json`, the
//! tokenizer files and the weights come from the input, in the order of `FILES`, each as a
//! little-endian `u32` length and that many bytes (cut short at the input's end; an empty one is
//! absent). Lengths rather than separators, so binary weights reach the parser whole. Planning must never panic or exhaust memory; a plan that succeeds must write
//! exactly `output_len` bytes of a GGUF that kiln's own reader accepts.
#![no_main]

use std::collections::BTreeMap;

use kiln::convert::{Conversion, ModelFolder};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 11] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors",
    "tokenizer.model",
    "added_tokens.json",
    "special_tokens_map.json",
    "generation_config.json",
    "modules.json",
    "1_Pooling/config.json",
    "preprocessor_config.json",
];

/// Splits the input into length-prefixed files.
fn folder_files(mut data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for name in FILES {
        let Some((len, rest)) = data.split_first_chunk::<4>() else {
            break;
        };
        let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
        let (bytes, rest) = rest.split_at(len.min(rest.len()));
        if !bytes.is_empty() {
            files.insert(name.to_owned(), bytes.to_vec());
        }
        data = rest;
    }
    files
}

fuzz_target!(|data: &[u8]| {
    let folder = ModelFolder::from_bytes(folder_files(data));
    let Ok(plan) = Conversion::plan(&folder) else {
        return;
    };
    let Ok(len) = plan.output_len() else {
        return;
    };
    // Padding a vocabulary to the limit is legal but slow to write; the plan is what is tested.
    if len > 64 << 20 {
        return;
    }
    if let Ok(out) = plan.write(Vec::new()) {
        assert_eq!(out.len() as u64, len);
        kiln_gguf::Gguf::parse(&out, &kiln_gguf::Limits::default()).expect("kiln reads its output");
    }
    // A vision tower's projector GGUF: the same promises (a tensor GGUF cannot hold, such as a
    // 5-D one, is an error at `output_len`, as for the model).
    if let Some(Ok(len)) = plan.projector().map(|p| p.output_len()) {
        let projector = plan.projector().expect("just seen");
        if let Ok(out) = projector.write(Vec::new()) {
            assert_eq!(out.len() as u64, len);
            kiln_gguf::Gguf::parse(&out, &kiln_gguf::Limits::default())
                .expect("kiln reads its projector");
        }
    }
});
