//! Command-R and Aya (`CohereForCausalLM`), as Ollama converts them: GGUF architecture
//! `command-r` with layer norms, tied embeddings and Cohere's logit scale.

use kiln_gguf::Value;

use super::{Architecture, Metadata, Parameters};
use crate::convert::tokenizer::Tokenizer;
use crate::convert::{Config, ConvertError, ModelFolder};

pub(crate) struct CommandR;

impl Architecture for CommandR {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        // Go decodes every field of its struct, so a mistyped one fails even when unused.
        c.bool("use_qk_norm")?;
        let mut p = Parameters::new();
        super::insert_u32s(&mut p, c, &super::SIZE_FIELDS)?;
        super::insert_u32s(
            &mut p,
            c,
            &[("attention.head_count_kv", "num_key_value_heads")],
        )?;
        // Trained context: model_max_length (Command-R says 8192 elsewhere but runs 128k).
        p.insert(
            "context_length",
            Value::U32(c.first_u32(&["model_max_length", "max_position_embeddings", "n_ctx"])?),
        );
        p.insert(
            "max_position_embeddings",
            Value::U32(c.first_u32(&["model_max_length", "max_position_embeddings"])?),
        );
        super::insert_f32s(
            &mut p,
            c,
            &[
                ("attention.layer_norm_epsilon", "layer_norm_eps"),
                ("rope.freq_base", "rope_theta"),
                ("logit_scale", "logit_scale"),
            ],
        )?;
        p.insert("rope.scaling.type", Value::string("none"));
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("self_attn.q_norm", "attn_q_norm"),
            ("self_attn.k_norm", "attn_k_norm"),
            ("model.layers", "blk"),
            ("input_layernorm", "attn_norm"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.o_proj", "attn_output"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.v_proj", "attn_v"),
            ("model.norm", "output_norm"),
            ("model.embed_tokens", "token_embd"),
        ]
    }

    fn gguf_name(&self) -> &'static str {
        "command-r"
    }

    fn extra_metadata(&self, _tokenizer: &mut Tokenizer, kv: &mut Metadata) {
        kv.insert("general.name".into(), Value::string("command-r"));
    }
}
