//! Qwen2 (`Qwen2ForCausalLM`: Qwen2 and Qwen2.5 language models), as Ollama converts it.

use kiln_gguf::{Array, Value, ValueType};

use super::{Architecture, Parameters};
use crate::convert::{Config, ConvertError, ModelFolder};

pub(crate) struct Qwen2;

impl Architecture for Qwen2 {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        // Ollama writes these whether or not config.json sets them.
        let mut p = Parameters::new();
        super::insert_u32s(&mut p, c, &super::SIZE_FIELDS)?;
        super::insert_u32s(
            &mut p,
            c,
            &[("attention.head_count_kv", "num_key_value_heads")],
        )?;
        super::insert_f32s(
            &mut p,
            c,
            &[
                ("rope.freq_base", "rope_theta"),
                ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
            ],
        )?;
        let scaling = c.object("rope_scaling")?;
        scaling.u32("original_max_position_embeddings")?;
        if scaling.contains("factor") {
            // Ollama declares the factor as a list and cannot decode the number configs hold,
            // nor write a list for yarn: it fails on every such config.
            return Err(ConvertError::NotYet(
                "Qwen2 models with a rope_scaling factor".into(),
            ));
        }
        match scaling.string("type")?.as_str() {
            "" => {}
            "mrope" | "default" => {
                let section = scaling.i32s("mrope_section")?;
                p.insert(
                    "rope.mrope_section",
                    Value::Array(Array::new(
                        ValueType::I32,
                        section.into_iter().map(Value::I32).collect(),
                    )),
                );
            }
            other => {
                return Err(ConvertError::NotYet(format!(
                    "Qwen2 models with {other:?} rope scaling"
                )));
            }
        }
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("lm_head", "output"),
            ("model.embed_tokens", "token_embd"),
            ("model.layers", "blk"),
            ("input_layernorm", "attn_norm"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("post_attention_layernorm", "ffn_norm"),
            ("model.norm", "output_norm"),
        ]
    }

    fn gguf_name(&self) -> &'static str {
        "qwen2"
    }
}
