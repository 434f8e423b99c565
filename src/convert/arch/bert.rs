//! BERT (`BertModel`), e.g. sentence-transformers embedding models, as Ollama converts it.

use kiln_gguf::{Array, Value, ValueType};
use serde::Deserialize;

use super::{Architecture, Metadata, Parameters, shared_parameters};
use crate::convert::tokenizer::Tokenizer;
use crate::convert::{Config, ConvertError, ModelFolder, parse_json as json};

pub(crate) struct Bert;

#[derive(Deserialize)]
struct Module {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct Pooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

impl Architecture for Bert {
    fn parameters(&self, c: &Config, folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        // sentence-transformers' modules.json names the pooling and normalisation steps.
        let modules: Vec<Module> = json("modules.json", folder.require("modules.json")?)?;
        let mut pooling_dir = "";
        let mut normalize = false;
        for m in &modules {
            match m.kind.as_str() {
                "sentence_transformers.models.Pooling" => pooling_dir = &m.path,
                "sentence_transformers.models.Normalize" => normalize = true,
                _ => {}
            }
        }
        let mut pooling_type = 0u32;
        if !pooling_dir.is_empty() {
            let file = kiln_go::path::clean(&format!("{pooling_dir}/config.json"));
            let pooling: Pooling = json(&file, folder.require(&file)?)?;
            if pooling.pooling_mode_mean_tokens {
                pooling_type = 1;
            } else if pooling.pooling_mode_cls_token {
                pooling_type = 2;
            }
        }

        let mut p = shared_parameters(c)?;
        p.insert("pooling_type", Value::U32(pooling_type));
        p.insert("normalize_embeddings", Value::Bool(normalize));
        let heads = c.first_u32(&["num_attention_heads", "n_head"])?;
        if heads > 0 {
            p.insert("attention.head_count", Value::U32(heads));
        }
        // Go decodes every field of the struct, so a mistyped num_key_value_heads fails too.
        c.u32("num_key_value_heads")?;
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("encoder.layer", "blk"),
            ("encoder.layers", "blk"),
            ("embeddings.word_embeddings", "token_embd"),
            ("embeddings.token_type_embeddings", "token_types"),
            ("embeddings.LayerNorm", "token_embd_norm"),
            ("embeddings.position_embeddings", "position_embd"),
            ("attention.self.query", "attn_q"),
            ("attention.self.key", "attn_k"),
            ("attention.self.value", "attn_v"),
            ("attention.output.dense", "attn_output"),
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("intermediate.dense", "ffn_up"),
            ("output.dense", "ffn_down"),
            ("output.LayerNorm", "layer_output_norm"),
        ]
    }

    fn skip_tensor(&self, name: &str) -> bool {
        matches!(
            name,
            "embeddings.position_ids" | "pooler.dense.weight" | "pooler.dense.bias"
        )
    }

    fn gguf_name(&self) -> &'static str {
        "bert"
    }

    fn extra_metadata(&self, tokenizer: &mut Tokenizer, kv: &mut Metadata) {
        kv.insert("bert.attention.causal".into(), Value::Bool(false));
        kv.insert("tokenizer.ggml.model".into(), Value::string("bert"));
        kv.insert("tokenizer.ggml.token_type_count".into(), Value::U32(2));
        // WordPiece continuation pieces lose their "##"; word starts gain llama.cpp's
        // phantom-space marker; bracketed special tokens stay as they are.
        for token in &mut tokenizer.vocab.tokens {
            if token.starts_with('[') && token.ends_with(']') {
                continue;
            } else if let Some(piece) = token.strip_prefix("##") {
                *token = piece.to_owned();
            } else {
                *token = format!("\u{2581}{token}");
            }
        }
        kv.insert(
            "tokenizer.ggml.tokens".into(),
            Value::Array(Array::new(
                ValueType::String,
                tokenizer
                    .vocab
                    .tokens
                    .iter()
                    .map(|t| Value::string(t.clone()))
                    .collect(),
            )),
        );
    }
}
