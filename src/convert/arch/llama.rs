//! Llama (`LlamaForCausalLM`: Llama 2 and 3.x, TinyLlama, SmolLM and other Llama-architecture
//! models), as Ollama converts it.

use kiln_gguf::Value;

use super::{Architecture, Parameters, shared_parameters};
use crate::convert::{Config, ConvertError, ModelFolder, Planned};

pub(crate) struct Llama;

/// Llama 3's rope frequency factors (`rope_scaling.rope_type == "llama3"`), computed in Ollama's
/// mix of float64 and float32.
fn rope_factors(config: &Config) -> Result<Option<Vec<f32>>, ConvertError> {
    let scaling = config.object("rope_scaling")?;
    let hidden = config.u32("hidden_size")?;
    let heads = config.u32("num_attention_heads")?;
    let theta = config.f32("rope_theta")?;
    if scaling.string("rope_type")? != "llama3" || hidden == 0 || heads == 0 || theta == 0.0 {
        return Ok(None);
    }
    let dim = hidden / heads;
    if dim == 0 {
        return Ok(None);
    }
    let or = |v: f32, default: f32| if v == 0.0 { default } else { v };
    let factor = or(scaling.f32("factor")?, 8.0);
    let low = or(scaling.f32("low_freq_factor")?, 1.0);
    let high = or(scaling.f32("high_freq_factor")?, 4.0);
    let original = match scaling.u32("original_max_position_embeddings")? {
        0 => 8192,
        n => n,
    } as f32;
    let (lambda_low, lambda_high) = (original / low, original / high);
    let mut factors =
        Vec::with_capacity(config.generated("rope frequency factors", u64::from(dim.div_ceil(2)))?);
    for i in (0..dim).step_by(2) {
        let lambda =
            2.0 * std::f64::consts::PI * f64::from(theta).powf(f64::from(i) / f64::from(dim));
        factors.push(if lambda < f64::from(lambda_high) {
            1.0
        } else if lambda > f64::from(lambda_low) {
            factor
        } else {
            let smooth = (original / lambda as f32 - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        });
    }
    Ok(Some(factors))
}

impl Architecture for Llama {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        let mut p = shared_parameters(c)?;
        p.insert("vocab_size", Value::U32(c.u32("vocab_size")?));
        let heads = c.first_u32(&["num_attention_heads", "n_head"])?;
        if heads > 0 {
            p.insert("attention.head_count", Value::U32(heads));
            // Ollama divides hidden_size (not n_embd) by the head count.
            p.insert(
                "rope.dimension_count",
                Value::U32(c.u32("hidden_size")? / heads),
            );
        }
        let head_dim = c.u32("head_dim")?;
        if head_dim > 0 {
            p.insert("attention.head_dim", Value::U32(head_dim));
            p.insert("attention.key_length", Value::U32(head_dim));
            p.insert("attention.value_length", Value::U32(head_dim));
        }
        let theta = c.f32("rope_theta")?;
        if theta > 0.0 {
            p.insert("rope.freq_base", Value::F32(theta));
        }
        let scaling = c.object("rope_scaling")?;
        // Go decodes the whole struct, so mistyped fields fail even when unused.
        scaling.f32("low_freq_factor")?;
        scaling.f32("high_freq_factor")?;
        scaling.u32("original_max_position_embeddings")?;
        scaling.string("rope_type")?;
        if scaling.string("type")? == "linear" {
            p.insert("rope.scaling.type", Value::string("linear"));
            p.insert("rope.scaling.factor", Value::F32(scaling.f32("factor")?));
        }
        let kv_heads = c.u32("num_key_value_heads")?;
        if kv_heads > 0 {
            p.insert("attention.head_count_kv", Value::U32(kv_heads));
        }
        let rms = c.f32("rms_norm_eps")?;
        if rms > 0.0 {
            p.insert("attention.layer_norm_rms_epsilon", Value::F32(rms));
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
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.up_proj", "ffn_up"),
            ("post_attention_layernorm", "ffn_norm"),
        ]
    }

    fn adjust_tensors(
        &self,
        c: &Config,
        _vocab_len: usize,
        tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        let (heads, kv_heads) = super::rotary_head_counts(c)?;
        for t in tensors.iter_mut() {
            if t.name.ends_with("attn_q.weight") || t.name.ends_with("attn_q_proj.weight") {
                t.permute_heads = Some(heads);
            } else if t.name.ends_with("attn_k.weight") || t.name.ends_with("attn_k_proj.weight") {
                t.permute_heads = Some(kv_heads);
            }
        }
        if let Some(factors) = rope_factors(c)? {
            tensors.push(Planned::f32_vector("rope_freqs.weight", &factors));
        }
        Ok(())
    }

    fn gguf_name(&self) -> &'static str {
        "llama"
    }
}
