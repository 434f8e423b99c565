//! The whole safetensors → GGUF conversion on an arbitrary model folder: `config.json`, the
//! tokenizer files and the weights come from the input (split at NUL bytes, in the order of
//! `FILES`). Planning must never panic or exhaust memory; a plan that succeeds must write
//! exactly `output_len` bytes of a GGUF that kiln's own reader accepts.
#![no_main]

use std::collections::BTreeMap;

use kiln::convert::{Conversion, ModelFolder};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 8] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors",
    "tokenizer.model",
    "added_tokens.json",
    "special_tokens_map.json",
    "generation_config.json",
];

fuzz_target!(|data: &[u8]| {
    let files: BTreeMap<String, Vec<u8>> = FILES
        .iter()
        .zip(data.split(|&b| b == 0))
        .filter(|(_, bytes)| !bytes.is_empty())
        .map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec()))
        .collect();
    let folder = ModelFolder::from_bytes(files);
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
});
