//! OLMo 3 (`Olmo3ForCausalLM`), as Ollama converts it: GGUF architecture `olmo2`, norms after
//! attention and feed-forward instead of before, q/k norms over the whole projection, and
//! sliding-window layers from `layer_types`.

use kiln_gguf::{Array, Value, ValueType};

use super::{Architecture, Parameters};
use crate::convert::{Config, ConvertError, ModelFolder};

pub(crate) struct Olmo3;

impl Architecture for Olmo3 {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        let mut p = Parameters::new();
        super::insert_u32s(&mut p, c, &super::SIZE_FIELDS)?;
        p.insert(
            "attention.head_count_kv",
            Value::U32(c.first_u32(&["num_key_value_heads", "num_attention_heads"])?),
        );
        let theta = c.f32("rope_theta")?;
        if theta > 0.0 {
            p.insert("rope.freq_base", Value::F32(theta));
        }
        // Every field is decoded (and type-checked) when the object is there.
        let scaling = c.object("rope_scaling")?;
        let factor = scaling.f32("factor")?;
        let original = scaling.u32("original_max_position_embeddings")?;
        let attn_factor = scaling.f32("attention_factor")?;
        scaling.f32("beta_fast")?;
        scaling.f32("beta_slow")?;
        scaling.f32("extrapolation_factor")?;
        let rope_type = scaling.string("rope_type")?;
        if factor > 0.0 {
            p.insert("rope.scaling.factor", Value::F32(factor));
        }
        if original > 0 {
            p.insert("rope.scaling.original_context_length", Value::U32(original));
        }
        if attn_factor > 0.0 {
            p.insert("rope.scaling.attn_factor", Value::F32(attn_factor));
        }
        if !rope_type.is_empty() {
            p.insert("rope.scaling.type", Value::string(rope_type));
        }
        let eps = c.f32("rms_norm_eps")?;
        if eps > 0.0 {
            p.insert("attention.layer_norm_rms_epsilon", Value::F32(eps));
        }
        let window = c.u32("sliding_window")?;
        if window > 0 {
            p.insert("attention.sliding_window", Value::U32(window));
        }
        let layer_types = c.strings("layer_types")?;
        if !layer_types.is_empty() {
            let local = layer_types
                .iter()
                .map(|kind| Value::Bool(kind == "sliding_attention"))
                .collect();
            p.insert(
                "attention.sliding_window_pattern",
                Value::Array(Array::new(ValueType::Bool, local)),
            );
        }
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("lm_head", "output"),
            ("model.embed_tokens", "token_embd"),
            ("model.layers", "blk"),
            ("model.norm", "output_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("self_attn.q_norm", "attn_q_norm"),
            ("self_attn.k_norm", "attn_k_norm"),
            ("post_attention_layernorm", "post_attention_norm"),
            ("post_feedforward_layernorm", "post_ffw_norm"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.up_proj", "ffn_up"),
        ]
    }

    fn gguf_name(&self) -> &'static str {
        "olmo2"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::convert::{Conversion, test_folder};
    use kiln_gguf::{Gguf, Limits, Value};

    fn keys(config: &str) -> BTreeMap<String, String> {
        let folder = test_folder(config, &[("model.norm.weight", "F32", &[1], &[0; 4])]);
        let out = Conversion::plan(&folder)
            .unwrap()
            .write(Vec::new())
            .unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        g.metadata()
            .iter()
            .filter(|(k, _)| k.starts_with("olmo2."))
            .map(|(k, v)| {
                let v = match v {
                    Value::U32(n) => n.to_string(),
                    Value::F32(f) => f.to_string(),
                    Value::String(s) => s.to_string(),
                    Value::Array(a) => format!("{:?}", a.iter().collect::<Vec<_>>()),
                    other => format!("{other:?}"),
                };
                (k.to_string(), v)
            })
            .collect()
    }

    #[test]
    fn keys_as_ollama_writes_them() {
        // The bare minimum: sizes always (zero when unset), kv heads defaulting to heads, and
        // nothing optional.
        let k = keys(r#"{"architectures": ["Olmo3ForCausalLM"], "num_attention_heads": 8}"#);
        assert_eq!(k["olmo2.attention.head_count_kv"], "8");
        assert_eq!(k["olmo2.block_count"], "0");
        assert_eq!(k.len(), 6, "{k:?}");

        // rope_scaling fields each when set; attention_factor under Ollama's key name (llama.cpp's
        // converter writes yarn_attn_factor instead).
        let k = keys(
            r#"{"architectures": ["Olmo3ForCausalLM"], "num_attention_heads": 8,
                "num_key_value_heads": 2, "rope_theta": 500000, "rms_norm_eps": 1e-6,
                "sliding_window": 4096, "layer_types": ["sliding_attention", "full_attention", "x"],
                "rope_scaling": {"rope_type": "yarn", "factor": 8, "attention_factor": 1.2,
                                 "original_max_position_embeddings": 8192, "beta_fast": 32}}"#,
        );
        assert_eq!(k["olmo2.attention.head_count_kv"], "2");
        assert_eq!(k["olmo2.rope.scaling.attn_factor"], "1.2");
        assert_eq!(k["olmo2.rope.scaling.type"], "yarn");
        assert_eq!(k["olmo2.rope.scaling.factor"], "8");
        assert_eq!(k["olmo2.rope.scaling.original_context_length"], "8192");
        assert_eq!(k["olmo2.attention.sliding_window"], "4096");
        assert_eq!(
            k["olmo2.attention.sliding_window_pattern"],
            "[Bool(true), Bool(false), Bool(false)]"
        );
        assert!(!k.contains_key("olmo2.rope.scaling.beta_fast"));
    }
}
