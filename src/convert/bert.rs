//! BERT (`BertModel`), e.g. sentence-transformers embedding models, as Ollama converts it.

use std::collections::BTreeMap;

use kiln_gguf::{Array, Value, ValueType};
use serde::Deserialize;

use super::tokenizer::Tokenizer;
use super::{Architecture, Config, ConvertError, Metadata, ModelFolder, parse_json as json};

pub(crate) struct Bert;

/// The first non-zero value (Go's `cmp.Or`).
fn first_set<T: PartialEq + Default + Copy>(values: &[T]) -> T {
    values
        .iter()
        .copied()
        .find(|v| *v != T::default())
        .unwrap_or_default()
}

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
    fn parameters(
        &self,
        c: &Config,
        folder: &ModelFolder,
    ) -> Result<BTreeMap<&'static str, Value<'static>>, ConvertError> {
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
            let file = crate::create::go_clean_path(&format!("{pooling_dir}/config.json"));
            let pooling: Pooling = json(&file, folder.require(&file)?)?;
            if pooling.pooling_mode_mean_tokens {
                pooling_type = 1;
            } else if pooling.pooling_mode_cls_token {
                pooling_type = 2;
            }
        }

        let mut p = BTreeMap::new();
        p.insert("pooling_type", Value::U32(pooling_type));
        p.insert("normalize_embeddings", Value::Bool(normalize));
        let u32s = |keys: &[&str]| -> Result<u32, ConvertError> {
            let values = keys
                .iter()
                .map(|k| c.u32(k))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(first_set(&values))
        };
        p.insert(
            "block_count",
            Value::U32(u32s(&["n_layers", "num_hidden_layers", "n_layer"])?),
        );
        for (key, names) in [
            ("context_length", &["max_position_embeddings", "n_ctx"][..]),
            ("embedding_length", &["hidden_size", "n_embd"]),
            ("feed_forward_length", &["intermediate_size", "n_inner"]),
            ("attention.head_count", &["num_attention_heads", "n_head"]),
        ] {
            let v = u32s(names)?;
            if v > 0 {
                p.insert(key, Value::U32(v));
            }
        }
        // Go decodes every field of the struct, so a mistyped num_key_value_heads fails too.
        c.u32("num_key_value_heads")?;
        let eps = first_set(&[
            c.f32("layer_norm_eps")?,
            c.f32("layer_norm_epsilon")?,
            c.f32("norm_epsilon")?,
        ]);
        if eps > 0.0 {
            p.insert("attention.layer_norm_epsilon", Value::F32(eps));
        }
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

    fn metadata(
        &self,
        params: &BTreeMap<&'static str, Value<'static>>,
        tokenizer: &mut Tokenizer,
        kv: &mut Metadata,
    ) {
        kv.insert("general.architecture".into(), Value::string("bert"));
        kv.insert("bert.attention.causal".into(), Value::Bool(false));
        for (key, value) in params {
            kv.insert(format!("bert.{key}"), value.clone());
        }
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
