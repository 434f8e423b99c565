//! Phi-3 (`Phi3ForCausalLM`: Phi-3, Phi-3.5 and Phi-4 mini language models), as Ollama converts
//! it: fused `qkv` and `gate_up` weights kept fused, and the long/short rope factors of
//! `rope_scaling` written as two F32 tensors.

use kiln_gguf::Value;
use kiln_go::builtin::max_f64;

use super::{Architecture, Parameters};
use crate::convert::{Config, ConvertError, ModelFolder, Planned};

pub(crate) struct Phi3;

impl Architecture for Phi3 {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        let hidden = c.u32("hidden_size")?;
        let heads = c.first_u32(&["num_attention_heads", "n_head"])?;
        let context = c.u32("max_position_embeddings")?;
        let original = c.u32("original_max_position_embeddings")?;
        // Read (and type-check) every field Ollama's struct declares.
        c.u32("n_positions")?;
        let scaling = c.object("rope_scaling")?;
        scaling.f32s("long_factor")?;
        scaling.f32s("short_factor")?;

        let mut p = Parameters::new();
        p.insert("context_length", Value::U32(context));
        p.insert(
            "embedding_length",
            Value::U32(c.first_u32(&["hidden_size", "n_embd"])?),
        );
        p.insert(
            "feed_forward_length",
            Value::U32(c.u32("intermediate_size")?),
        );
        p.insert(
            "block_count",
            Value::U32(c.first_u32(&["num_hidden_layers", "n_layers"])?),
        );
        p.insert("attention.head_count", Value::U32(heads));
        p.insert(
            "attention.head_count_kv",
            Value::U32(c.first_u32(&["num_key_value_heads", "n_head_kv"])?),
        );
        p.insert(
            "attention.layer_norm_rms_epsilon",
            Value::F32(c.f32("rms_norm_eps")?),
        );
        if heads == 0 {
            return Err(ConvertError::InvalidConfig(
                "num_attention_heads (or n_head) is missing or zero".into(),
            ));
        }
        // hidden_size, not n_embd, as Ollama divides it.
        p.insert("rope.dimension_count", Value::U32(hidden / heads));
        p.insert("rope.freq_base", Value::F32(c.f32("rope_theta")?));
        p.insert("rope.scaling.original_context_length", Value::U32(original));
        p.insert(
            "attention.sliding_window",
            Value::U32(c.u32("sliding_window")?),
        );

        let scale = f64::from(context) / f64::from(original);
        let attn_factor = match scaling.string("type")?.as_str() {
            "" => None,
            "su" | "longrope" => Some(max_f64(
                (1.0 + scale.ln() / f64::from(original).ln()).sqrt(),
                1.0,
            )),
            "yarn" => Some(max_f64(0.1 * scale.ln() + 1.0, 1.0)),
            other => {
                return Err(ConvertError::InvalidConfig(format!(
                    "unknown rope scaling type {other:?} (Phi-3 knows su, longrope and yarn)"
                )));
            }
        };
        if let Some(factor) = attn_factor {
            p.insert("rope.scaling.attn_factor", Value::F32(factor as f32));
        }
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("lm_head", "output"),
            ("model.embed_tokens", "token_embd"),
            ("model.norm", "output_norm"),
            ("model.layers", "blk"),
            ("input_layernorm", "attn_norm"),
            ("self_attn.qkv_proj", "attn_qkv"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.gate_up_proj", "ffn_up"),
            ("post_attention_layernorm", "ffn_norm"),
        ]
    }

    fn adjust_tensors(
        &self,
        c: &Config,
        _vocab_len: usize,
        tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        // Ollama adds both, even empty when the config has no rope_scaling, once a layer exists.
        if tensors.iter().any(|t| t.name.starts_with("blk.0.")) {
            let scaling = c.object("rope_scaling")?;
            for (name, field) in [
                ("rope_factors_long.weight", "long_factor"),
                ("rope_factors_short.weight", "short_factor"),
            ] {
                tensors.push(Planned::f32_vector(name, &scaling.f32s(field)?));
            }
        }
        Ok(())
    }

    fn gguf_name(&self) -> &'static str {
        "phi3"
    }
}

#[cfg(test)]
mod tests {
    use crate::convert::{Conversion, ConvertError, ModelFolder, test_folder};
    use kiln_gguf::{Gguf, Limits, Value};

    fn folder(config: &str) -> ModelFolder {
        let norm: (&str, &str, &[u64], &[u8]) = (
            "model.layers.0.input_layernorm.weight",
            "F32",
            &[2],
            &[0; 8],
        );
        test_folder(config, &[norm])
    }

    fn attn_factor(config: &str) -> Option<f32> {
        let out = Conversion::plan(&folder(config))
            .unwrap()
            .write(Vec::new())
            .unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        match g.metadata().get("phi3.rope.scaling.attn_factor") {
            Some(Value::F32(f)) => Some(*f),
            None => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_rope_scaling_still_gives_both_factor_tensors_empty() {
        let out = Conversion::plan(&folder(
            r#"{"architectures": ["Phi3ForCausalLM"], "hidden_size": 8, "num_attention_heads": 2}"#,
        ))
        .unwrap()
        .write(Vec::new())
        .unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let factors: Vec<_> = g
            .tensors()
            .iter()
            .filter(|t| t.name().starts_with("rope_factors_"))
            .map(|t| (t.dims().to_vec(), t.data().len()))
            .collect();
        assert_eq!(factors, [(vec![0], 0), (vec![0], 0)]);
        assert!(g.metadata().get("phi3.rope.scaling.attn_factor").is_none());
        assert!(matches!(
            g.metadata().get("phi3.rope.dimension_count"),
            Some(Value::U32(4))
        ));
    }

    #[test]
    fn attention_factors_follow_the_scaling_type() {
        let config = |kind: &str, ctx: u32, original: u32| {
            format!(
                r#"{{"architectures": ["Phi3ForCausalLM"], "hidden_size": 8,
                     "num_attention_heads": 2, "max_position_embeddings": {ctx},
                     "original_max_position_embeddings": {original},
                     "rope_scaling": {{"type": "{kind}", "long_factor": [1, 2],
                                       "short_factor": [1, 1]}}}}"#
            )
        };
        let su = attn_factor(&config("su", 131072, 4096)).unwrap();
        assert_eq!(su, (1.0f64 + 32f64.ln() / 4096f64.ln()).sqrt() as f32);
        assert_eq!(attn_factor(&config("longrope", 131072, 4096)), Some(su));
        let yarn = attn_factor(&config("yarn", 8192, 4096)).unwrap();
        assert_eq!(yarn, (0.1 * 2f64.ln() + 1.0) as f32);
        // Never below one; and Go's max keeps the NaN of an unset original context.
        assert_eq!(attn_factor(&config("yarn", 1024, 4096)), Some(1.0));
        assert!(attn_factor(&config("su", 4096, 0)).unwrap().is_nan());
    }

    #[test]
    fn what_ollama_panics_on_is_a_clear_error() {
        let err = |config: &str| match Conversion::plan(&folder(config)) {
            Err(e @ ConvertError::InvalidConfig(_)) => e.to_string(),
            other => panic!("{:?}", other.err()),
        };
        assert_eq!(
            err(r#"{"architectures": ["Phi3ForCausalLM"], "hidden_size": 8}"#),
            "config.json: num_attention_heads (or n_head) is missing or zero"
        );
        assert!(
            err(
                r#"{"architectures": ["Phi3ForCausalLM"], "num_attention_heads": 2,
                   "rope_scaling": {"type": "dynamic"}}"#
            )
            .contains("\"dynamic\"")
        );
    }
}
