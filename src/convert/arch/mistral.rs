//! Ministral 3 text models (`Ministral3ForCausalLM`), as Ollama converts them: GGUF
//! architecture `mistral3`, Llama's rotary row regrouping of q/k, and yarn rope scaling from
//! `rope_parameters` (with Llama 4's attention temperature scaling).

use kiln_gguf::Value;

use super::{Architecture, Parameters};
use crate::convert::{Config, ConvertError, ModelFolder, Planned};

pub(crate) struct Ministral3;

impl Architecture for Ministral3 {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        // Go decodes every field of its struct, so mistyped ones fail even when unused here.
        c.u32("sliding_window")?;
        c.string("hidden_act")?;
        let rope = c.object("rope_parameters")?;
        rope.f32("mscale")?;

        let mut p = Parameters::new();
        super::insert_u32s(&mut p, c, &super::SIZE_FIELDS)?;
        super::insert_u32s(
            &mut p,
            c,
            &[
                ("vocab_size", "vocab_size"),
                ("attention.head_count_kv", "num_key_value_heads"),
            ],
        )?;
        p.insert(
            "attention.layer_norm_rms_epsilon",
            Value::F32(c.f32("rms_norm_eps")?),
        );
        let head_dim = c.u32("head_dim")?;
        p.insert("attention.key_length", Value::U32(head_dim));
        p.insert("attention.value_length", Value::U32(head_dim));
        let heads = c.u32("num_attention_heads")?;
        if heads == 0 {
            // Go divides by it even when head_dim is set, and panics.
            return Err(ConvertError::InvalidConfig(
                "num_attention_heads is missing or zero".into(),
            ));
        }
        let rope_dims = match head_dim {
            0 => c.u32("hidden_size")? / heads,
            d => d,
        };
        p.insert("rope.dimension_count", Value::U32(rope_dims));
        let theta = match c.f32("rope_theta")? {
            0.0 => rope.f32("rope_theta")?,
            t => {
                rope.f32("rope_theta")?;
                t
            }
        };
        p.insert("rope.freq_base", Value::F32(theta));
        p.insert("rope.scaling.factor", Value::F32(rope.f32("factor")?));
        p.insert(
            "rope.scaling.type",
            Value::string(rope.string("rope_type")?),
        );
        super::insert_f32s(
            &mut p,
            &rope,
            &[
                ("rope.scaling.yarn_beta_fast", "beta_fast"),
                ("rope.scaling.yarn_beta_slow", "beta_slow"),
            ],
        )?;
        let log_multiplier = rope.f32("mscale_all_dim")?;
        if rope.contains("mscale_all_dim") {
            p.insert(
                "rope.scaling.yarn_log_multiplier",
                Value::F32(log_multiplier),
            );
        }
        let original = rope.u32("original_max_position_embeddings")?;
        if original > 0 {
            p.insert("rope.scaling.original_context_length", Value::U32(original));
        }
        let beta = rope.f32("llama_4_scaling_beta")?;
        if rope.contains("llama_4_scaling_beta") {
            p.insert("attention.temperature_scale", Value::F32(beta));
        }
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("model.norm", "output_norm"),
            ("model.", ""),
            ("layers", "blk"),
            ("transformer.layers", "blk"),
            ("vision_tower", "v"),
            ("ln_pre", "encoder_norm"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
            ("embed_tokens", "token_embd"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("attention.q_proj", "attn_q"),
            ("attention.k_proj", "attn_k"),
            ("attention.v_proj", "attn_v"),
            ("attention.o_proj", "attn_output"),
            ("attention_norm", "attn_norm"),
            ("feed_forward.gate_proj", "ffn_gate"),
            ("feed_forward.down_proj", "ffn_down"),
            ("feed_forward.up_proj", "ffn_up"),
            ("multi_modal_projector", "mm"),
            ("ffn_norm", "ffn_norm"),
            ("lm_head", "output"),
        ]
    }

    fn adjust_tensors(
        &self,
        c: &Config,
        _vocab_len: usize,
        tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        let (heads, kv_heads) = super::rotary_head_counts(c)?;
        for t in tensors.iter_mut().filter(|t| !t.name.starts_with("v.")) {
            if t.name.ends_with(".attn_q.weight") {
                t.permute_heads = Some(heads);
            } else if t.name.ends_with(".attn_k.weight") {
                t.permute_heads = Some(kv_heads);
            }
        }
        Ok(())
    }

    fn gguf_name(&self) -> &'static str {
        "mistral3"
    }
}

#[cfg(test)]
mod tests {
    use crate::convert::{Conversion, ConvertError, test_folder};
    use kiln_gguf::{Gguf, Limits, Value};

    fn plan(config: &str) -> Result<Vec<u8>, ConvertError> {
        let folder = test_folder(config, &[("model.norm.weight", "F32", &[1], &[0; 4])]);
        Conversion::plan(&folder)?.write(Vec::new())
    }

    #[test]
    fn keys_as_ollama_writes_them() {
        let out = plan(
            r#"{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 64,
                "num_attention_heads": 4, "rope_parameters": {"rope_theta": 1e6}}"#,
        )
        .unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let get = |k: &str| g.metadata().get(k).cloned();
        // Rope dimensions from hidden / heads when head_dim is unset; theta from
        // rope_parameters when the top level has none; the scaling keys always, even empty.
        assert!(matches!(
            get("mistral3.rope.dimension_count"),
            Some(Value::U32(16))
        ));
        assert!(matches!(get("mistral3.rope.freq_base"), Some(Value::F32(f)) if f == 1e6));
        assert_eq!(
            get("mistral3.rope.scaling.type").and_then(|v| v.as_str().map(str::to_owned)),
            Some(String::new())
        );
        assert!(matches!(get("mistral3.rope.scaling.factor"), Some(Value::F32(f)) if f == 0.0));
        // Optional keys only when the config has the field (null counts as absent).
        assert!(get("mistral3.rope.scaling.yarn_log_multiplier").is_none());
        assert!(get("mistral3.attention.temperature_scale").is_none());
        assert!(get("mistral3.rope.scaling.original_context_length").is_none());
    }

    #[test]
    fn no_head_count_is_an_error_not_a_division_by_zero() {
        let err = plan(r#"{"architectures": ["Ministral3ForCausalLM"], "head_dim": 128}"#)
            .err()
            .unwrap();
        assert!(matches!(err, ConvertError::InvalidConfig(_)), "{err}");
    }
}
