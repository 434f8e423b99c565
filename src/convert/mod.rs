//! Hugging Face model folders (safetensors weights, `config.json`, tokenizer files) → an F16
//! GGUF, as Ollama's converter writes it for `/api/create` with safetensors `files`.
//!
//! The output carries the same metadata (keys, types and values), the same tensors (names,
//! types, shapes and bytes) in the same order as Ollama's `convert.ConvertModel`. Architectures:
//! BERT (`BertModel`: Ollama's own fixture for `sentence-transformers/all-MiniLM-L6-v2` is
//! checked key by key and tensor by tensor in the tests), Llama (`LlamaForCausalLM` with a BPE
//! `tokenizer.json` or a SentencePiece `tokenizer.model`), Qwen2 (`Qwen2ForCausalLM`), Gemma 1,
//! 2 and 3 (`GemmaForCausalLM`, `Gemma2ForCausalLM`, `Gemma3ForCausalLM`,
//! `Gemma3ForConditionalGeneration` with its vision tower), Phi-3 (`Phi3ForCausalLM`), OLMo 3
//! (`Olmo3ForCausalLM`), Ministral 3 (`Ministral3ForCausalLM`), Command-R
//! (`CohereForCausalLM`), GPT-OSS (`GptOssForCausalLM`, experts kept in MXFP4) and Qwen 3.5 dense
//! text models (`Qwen3_5ForConditionalGeneration`, value heads reordered, with the
//! multi-token-prediction layer) and mixtures of experts (`Qwen3_5MoeForConditionalGeneration`,
//! experts stacked or split into `ffn_*_exps`), each with its vision tower in a separate
//! projector GGUF ([`Conversion::projector`]), and Qwen3-VL dense models
//! (`Qwen3VLForConditionalGeneration`, its tower in a projector GGUF too): tensors, vocabulary
//! and merges checked against llama.cpp's own converter, and llama.cpp's logits of the result
//! against those of llama.cpp's conversion; the keys Ollama writes checked against its Go source
//! in unit tests. The others Ollama converts are refused with [`ConvertError::NotYet`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // SAFETY: nothing modifies the folder's files while they are converted.
//! let folder = unsafe { kiln::convert::ModelFolder::map_dir("all-MiniLM-L6-v2")? };
//! let conversion = kiln::convert::Conversion::plan(&folder)?;
//! let file = std::fs::File::create("all-minilm-f16.gguf")?;
//! conversion.write(std::io::BufWriter::new(file))?;
//! # Ok(())
//! # }
//! ```

mod arch;
mod config;
mod conversion;
mod error;
mod folder;
mod fp8;
pub mod safetensors;
mod sentencepiece;
mod tensor;
mod tokenizer;

#[cfg(test)]
use std::collections::BTreeMap;

pub use arch::supported_architectures;
pub use conversion::{Conversion, ConvertProgress, PROGRESS_STEP};
pub use error::ConvertError;
pub use folder::{ConvertLimits, MAX_GENERATED_ITEMS, MAX_JSON_BYTES, ModelFolder};
pub use safetensors::{Dtype, Safetensors, SafetensorsError, TensorView};
pub(crate) use tensor::ollama_tensor_order;

// The names the submodules share, at their paths from before the split (`super::Config`, …).
use config::Config;
use folder::parse_json;
use tensor::{Axis, HeadTiling, Planned, ValueMap};

/// A model folder for unit tests: `config`, a four-token `tokenizer.json`, and these tensors.
/// A safetensors file of these tensors (name, dtype, shape, bytes), for tests elsewhere.
#[cfg(test)]
pub(crate) fn safetensors_for_tests(tensors: &[(&str, &str, &[u64], &[u8])]) -> Vec<u8> {
    safetensors::encode(tensors)
}

#[cfg(test)]
pub(crate) fn test_folder(config: &str, tensors: &[(&str, &str, &[u64], &[u8])]) -> ModelFolder {
    ModelFolder::from_bytes(BTreeMap::from([
        ("config.json".to_owned(), config.as_bytes().to_vec()),
        (
            "tokenizer.json".to_owned(),
            br#"{"model": {"vocab": {"a": 0, "b": 1, "c": 2, "d": 3}}}"#.to_vec(),
        ),
        ("model.safetensors".to_owned(), safetensors::encode(tensors)),
    ]))
}
