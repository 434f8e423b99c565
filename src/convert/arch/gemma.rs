//! Gemma (`GemmaForCausalLM`), Gemma 2 (`Gemma2ForCausalLM`) and Gemma 3 text models
//! (`Gemma3ForCausalLM`), as Ollama converts them.
//!
//! What they share: Hugging Face stores Gemma's RMS-norm weights as `weight - 1` (the model
//! multiplies by `1 + weight`), and Ollama's converter adds the one back, in float32, to every
//! `*_norm.weight` outside the vision tower.

use kiln_gguf::{Array, Value, ValueType};
use kiln_go::cmp;

use super::{Architecture, Metadata, Parameters};
use crate::convert::tokenizer::Tokenizer;
use crate::convert::{Config, ConvertError, ModelFolder, Planned, ValueMap};

/// Which Gemma generation: they differ in keys, tensor names and (for 3) the embedding rows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gemma {
    One,
    Two,
    /// `Gemma3ForCausalLM`: the text model alone (Gemma 3 1B).
    Three,
    /// `Gemma3ForConditionalGeneration`: the text model with its SigLIP vision tower and
    /// projector, all in one GGUF as Ollama writes it (Gemma 3 4B, 12B, 27B).
    ThreeVision,
}

/// Gemma's fill-in-the-middle and end-of-turn token ids, which Ollama writes for Gemma 1 and 2
/// whatever the vocabulary.
const FIXED_TOKEN_IDS: [(&str, u32); 4] = [
    ("tokenizer.ggml.eot_token_id", 107),
    ("tokenizer.ggml.middle_token_id", 68),
    ("tokenizer.ggml.prefix_token_id", 67),
    ("tokenizer.ggml.suffix_token_id", 69),
];

/// The keys Gemma 1 and 2 write unconditionally (zero when the config leaves them out).
fn gemma_parameters(c: &Config) -> Result<Parameters, ConvertError> {
    let mut p = Parameters::new();
    super::insert_u32s(
        &mut p,
        c,
        &[
            ("context_length", "max_position_embeddings"),
            ("embedding_length", "hidden_size"),
            ("block_count", "num_hidden_layers"),
            ("feed_forward_length", "intermediate_size"),
            ("attention.head_count", "num_attention_heads"),
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
    Ok(p)
}

/// Gemma 3's keys, with the head counts Ollama fixes for the 4B, 12B and 27B layer counts. A
/// text model (`Gemma3ForCausalLM`) reads its sizes from the top level, with rope and window
/// keys; a vision model takes them from `text_config` and adds the vision tower's.
fn gemma3_parameters(c: &Config, vision_model: bool) -> Result<Parameters, ConvertError> {
    // Go decodes every field of its struct, so mistyped ones fail even when unused here.
    let text = c.object("text_config")?;
    for field in [
        "head_dim",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "sliding_window",
    ] {
        text.u32(field)?;
    }
    c.u32("hidden_size")?;
    c.u32("intermediate_size")?;
    let vision = c.object("vision_config")?;
    for field in [
        "num_attention_heads",
        "num_hidden_layers",
        "hidden_size",
        "intermediate_size",
        "image_size",
        "num_channels",
        "patch_size",
    ] {
        vision.u32(field)?;
    }
    vision.f32("layer_norm_eps")?;

    let mut p = Parameters::new();
    let blocks = match c.u32("num_hidden_layers")? {
        0 => text.u32("num_hidden_layers")?,
        n => n,
    };
    p.insert("block_count", Value::U32(blocks));
    let configured = (c.u32("num_attention_heads")?, c.u32("num_key_value_heads")?);
    let (heads, kv_heads) = match blocks {
        34 => (8, 4),
        48 => (16, 8),
        62 => (32, 16),
        _ => configured,
    };
    p.insert("attention.head_count", Value::U32(heads));
    p.insert("attention.head_count_kv", Value::U32(kv_heads));
    // Go decodes these whatever the branch.
    let scaling = c.object("rope_scaling")?;
    let factor = scaling.f32("factor")?;
    let original = scaling.u32("original_max_position_embeddings")?;
    let extrapolation = scaling.f32("extrapolation_factor")?;
    let beta_fast = scaling.f32("beta_fast")?;
    let beta_slow = scaling.f32("beta_slow")?;
    let rope_type = scaling.string("rope_type")?;
    let layer_types = c.strings("layer_types")?;
    let pattern = c.u32("sliding_window_pattern")?;
    let softcap = c.f32("final_logit_softcapping")?;
    let local_theta = c.f32("rope_local_base_freq")?;
    let theta = c.f32("rope_theta")?;
    let eps = c.f32("rms_norm_eps")?;
    let head_dim = c.u32("head_dim")?;
    let window = c.u32("sliding_window")?;
    let context = c.u32("max_position_embeddings")?;
    if vision_model {
        p.insert("context_length", Value::U32(cmp::or(&[context, 131072])));
        p.insert("embedding_length", Value::U32(text.u32("hidden_size")?));
        p.insert(
            "feed_forward_length",
            Value::U32(text.u32("intermediate_size")?),
        );
        p.insert(
            "attention.sliding_window",
            Value::U32(text.u32("sliding_window")?),
        );
        super::insert_u32s(
            &mut p,
            &vision,
            &[
                ("vision.block_count", "num_hidden_layers"),
                ("vision.embedding_length", "hidden_size"),
                ("vision.feed_forward_length", "intermediate_size"),
                ("vision.image_size", "image_size"),
                ("vision.patch_size", "patch_size"),
                ("vision.attention.head_count", "num_attention_heads"),
            ],
        )?;
        p.insert(
            "vision.num_channels",
            Value::U32(cmp::or(&[vision.u32("num_channels")?, 3])),
        );
        p.insert(
            "vision.attention.layer_norm_epsilon",
            Value::F32(cmp::or(&[vision.f32("layer_norm_eps")?, 1e-6])),
        );
        let text_head_dim = cmp::or(&[text.u32("head_dim")?, 256]);
        p.insert("attention.key_length", Value::U32(text_head_dim));
        p.insert("attention.value_length", Value::U32(text_head_dim));
    } else {
        p.insert("context_length", Value::U32(context));
        p.insert("attention.layer_norm_rms_epsilon", Value::F32(eps));
        p.insert("attention.key_length", Value::U32(head_dim));
        p.insert("attention.value_length", Value::U32(head_dim));
        p.insert("attention.sliding_window", Value::U32(window));
        // Which layers attend locally: from layer_types when given, else every layer but each
        // sliding_window_pattern-th.
        if c.contains("sliding_window_pattern") || !layer_types.is_empty() {
            c.generated("sliding-window layer flags", u64::from(blocks))?;
            let local = (0..blocks)
                .map(|i| {
                    let is_local = match layer_types.get(i as usize) {
                        Some(kind) => kind == "sliding_attention",
                        None => pattern > 0 && (i + 1) % pattern != 0,
                    };
                    Value::Bool(is_local)
                })
                .collect();
            p.insert(
                "attention.sliding_window_pattern",
                Value::Array(Array::new(ValueType::Bool, local)),
            );
        }
        if softcap > 0.0 {
            p.insert("final_logit_softcapping", Value::F32(softcap));
        }
        p.insert(
            "rope.local.freq_base",
            Value::F32(cmp::or(&[local_theta, 10000.0])),
        );
        p.insert("rope.freq_base", Value::F32(cmp::or(&[theta, 1_000_000.0])));
        if rope_type == "yarn" && factor > 0.0 {
            p.insert("rope.scaling.type", Value::string("yarn"));
            p.insert("rope.scaling.factor", Value::F32(factor));
            p.insert("rope.scaling.original_context_length", Value::U32(original));
            p.insert(
                "rope.scaling.extrapolation_factor",
                Value::F32(cmp::or(&[extrapolation, 1.0])),
            );
            p.insert(
                "rope.scaling.beta_fast",
                Value::F32(cmp::or(&[beta_fast, 64.0])),
            );
            p.insert(
                "rope.scaling.beta_slow",
                Value::F32(cmp::or(&[beta_slow, 1.0])),
            );
        }
        p.insert("embedding_length", Value::U32(c.u32("hidden_size")?));
        p.insert(
            "feed_forward_length",
            Value::U32(c.u32("intermediate_size")?),
        );
    }
    let per_image = c.u32("mm_tokens_per_image")?;
    if per_image > 0 {
        p.insert("mm.tokens_per_image", Value::U32(per_image));
    }
    Ok(p)
}

impl Architecture for Gemma {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        match self {
            Gemma::One => gemma_parameters(c),
            Gemma::Two => {
                let mut p = gemma_parameters(c)?;
                p.insert(
                    "attention.sliding_window",
                    Value::U32(c.u32("sliding_window")?),
                );
                super::insert_f32s(
                    &mut p,
                    c,
                    &[
                        ("attn_logit_softcapping", "attn_logit_softcapping"),
                        ("final_logit_softcapping", "final_logit_softcapping"),
                    ],
                )?;
                Ok(p)
            }
            Gemma::Three => gemma3_parameters(c, false),
            Gemma::ThreeVision => gemma3_parameters(c, true),
        }
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Gemma::One => &[
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
            ],
            Gemma::Two => &[
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
                ("post_attention_layernorm", "post_attention_norm"),
                ("pre_feedforward_layernorm", "ffn_norm"),
                ("post_feedforward_layernorm", "post_ffw_norm"),
            ],
            Gemma::Three | Gemma::ThreeVision => &[
                ("lm_head", "output"),
                ("model.embed_tokens", "token_embd"),
                ("model.norm", "output_norm"),
                ("vision_tower.vision_model.embeddings", "v"),
                ("vision_tower.vision_model", "v"),
                ("vision_model.vision_model.embeddings", "v"),
                ("vision_model.vision_model", "v"),
                ("language_model.", ""),
                ("model.layers", "blk"),
                ("encoder.layers", "blk"),
                ("input_layernorm", "attn_norm"),
                ("self_attn.q_proj", "attn_q"),
                ("self_attn.q_norm", "attn_q_norm"),
                ("self_attn.k_proj", "attn_k"),
                ("self_attn.k_norm", "attn_k_norm"),
                ("self_attn.v_proj", "attn_v"),
                ("self_attn.o_proj", "attn_output"),
                ("self_attn.out_proj", "attn_output"),
                ("mlp.gate_proj", "ffn_gate"),
                ("mlp.down_proj", "ffn_down"),
                ("mlp.up_proj", "ffn_up"),
                ("post_attention_layernorm", "post_attention_norm"),
                ("pre_feedforward_layernorm", "ffn_norm"),
                ("post_feedforward_layernorm", "post_ffw_norm"),
                ("input_projection_weight", "input_projection.weight"),
                ("multi_modal_projector", "mm"),
            ],
        }
    }

    fn skip_tensor(&self, _name: &str) -> bool {
        false
    }

    fn adjust_tensors(
        &self,
        _config: &Config,
        vocab_len: usize,
        tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        for t in tensors.iter_mut() {
            if !t.name.starts_with("v.") && t.name.ends_with("_norm.weight") {
                t.values = ValueMap::AddOne;
            }
            // Gemma 3 checkpoints may carry embedding rows past the vocabulary; Ollama drops them.
            if matches!(self, Gemma::Three | Gemma::ThreeVision)
                && t.name == "token_embd.weight"
                && t.dims() >= 2
                && vocab_len > 0
            {
                t.truncate_rows(vocab_len as u64);
            }
        }
        Ok(())
    }

    fn gguf_name(&self) -> &'static str {
        match self {
            Gemma::One => "gemma",
            Gemma::Two => "gemma2",
            Gemma::Three | Gemma::ThreeVision => "gemma3",
        }
    }

    fn extra_metadata(&self, _tokenizer: &mut Tokenizer, kv: &mut Metadata) {
        if matches!(self, Gemma::One | Gemma::Two) {
            for (key, id) in FIXED_TOKEN_IDS {
                kv.insert(key.into(), Value::U32(id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::convert::{Conversion, ModelFolder, test_folder};
    use kiln_gguf::{Gguf, Limits, Value};

    /// A folder with `config` and these tensors (F32 or BF16 values), and a 4-token vocabulary.
    fn folder(config: &str, tensors: &[(&str, &str, &[u64], Vec<u8>)]) -> ModelFolder {
        let views: Vec<(&str, &str, &[u64], &[u8])> = tensors
            .iter()
            .map(|(n, d, s, b)| (*n, *d, *s, b.as_slice()))
            .collect();
        test_folder(config, &views)
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn convert(f: &ModelFolder) -> Vec<u8> {
        Conversion::plan(f).unwrap().write(Vec::new()).unwrap()
    }

    fn key<'a>(g: &'a Gguf<'_>, k: &str) -> Option<&'a Value<'a>> {
        g.metadata().get(k)
    }

    #[test]
    fn norms_gain_one_in_float32_and_others_are_untouched() {
        // BF16 values whose sum with one is not a BF16: Ollama adds in float32 and stores F32.
        let norm_bf16: Vec<u16> = vec![0x3C01, 0xBF80, 0x0000, 0x8000];
        let weight: Vec<f32> = vec![-0.0, 0.5, -2.0, 3.0, 0.25, -0.0, 1.0, 2.0];
        let f = folder(
            r#"{"architectures": ["GemmaForCausalLM"], "num_hidden_layers": 1}"#,
            &[
                (
                    "model.layers.0.input_layernorm.weight",
                    "BF16",
                    &[4],
                    norm_bf16.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                ("model.norm.weight", "F32", &[2], f32s(&[0.5, -1.0])),
                ("model.embed_tokens.weight", "F32", &[4, 2], f32s(&weight)),
            ],
        );
        let out = convert(&f);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let values = |name: &str| -> Vec<f32> {
            let t = g.tensors().iter().find(|t| t.name() == name).unwrap();
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let want: Vec<f32> = norm_bf16
            .iter()
            .map(|&b| f32::from_bits(u32::from(b) << 16) + 1.0)
            .collect();
        assert_eq!(values("blk.0.attn_norm.weight"), want);
        assert_eq!(want[0], 1.0 + f32::from_bits(0x3C01_0000));
        assert_eq!(values("output_norm.weight"), [1.5, 0.0]);
        // The embedding is not a norm: F16 of the same values, -0.0 kept.
        let embd = g
            .tensors()
            .iter()
            .find(|t| t.name() == "token_embd.weight")
            .unwrap();
        let halves: Vec<u16> = embd
            .data()
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(halves[0], 0x8000);
        assert_eq!(halves[1], 0x3800);
    }

    #[test]
    fn gemma_and_gemma2_keys_as_ollama_writes_them() {
        let config = r#"{"architectures": ["Gemma2ForCausalLM"], "num_hidden_layers": 1,
            "hidden_size": 2, "head_dim": 256, "sliding_window": 4096,
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}"#;
        let f = folder(
            config,
            &[("model.embed_tokens.weight", "F32", &[4, 2], f32s(&[0.0; 8]))],
        );
        let out = convert(&f);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        assert_eq!(
            key(&g, "general.architecture").and_then(Value::as_str),
            Some("gemma2")
        );
        for (k, v) in [
            ("gemma2.block_count", 1),
            ("gemma2.embedding_length", 2),
            // unset fields are still written, as zero
            ("gemma2.attention.head_count", 0),
            ("gemma2.context_length", 0),
            ("gemma2.attention.key_length", 256),
            ("gemma2.attention.value_length", 256),
            ("gemma2.attention.sliding_window", 4096),
            ("tokenizer.ggml.eot_token_id", 107),
            ("tokenizer.ggml.middle_token_id", 68),
            ("tokenizer.ggml.prefix_token_id", 67),
            ("tokenizer.ggml.suffix_token_id", 69),
        ] {
            assert!(
                matches!(key(&g, k), Some(Value::U32(n)) if *n == v),
                "{k}: {:?}",
                key(&g, k)
            );
        }
        for (k, v) in [
            ("gemma2.attn_logit_softcapping", 50.0),
            ("gemma2.final_logit_softcapping", 30.0),
            ("gemma2.attention.layer_norm_rms_epsilon", 0.0),
        ] {
            assert!(matches!(key(&g, k), Some(Value::F32(x)) if *x == v), "{k}");
        }
    }

    fn gemma3(extra: &str, embed_rows: u64) -> Vec<u8> {
        let config = format!(
            r#"{{"architectures": ["Gemma3ForCausalLM"], "hidden_size": 2,
                "num_attention_heads": 3, "num_key_value_heads": 1, {extra}}}"#
        );
        let rows = vec![0.0f32; embed_rows as usize * 2];
        convert(&folder(
            &config,
            &[(
                "model.embed_tokens.weight",
                "F32",
                &[embed_rows, 2],
                f32s(&rows),
            )],
        ))
    }

    fn bools(g: &Gguf<'_>, k: &str) -> Option<Vec<bool>> {
        key(g, k).and_then(Value::as_array).map(|a| {
            a.iter()
                .map(|v| matches!(v, Value::Bool(true)))
                .collect::<Vec<_>>()
        })
    }

    #[test]
    fn gemma3_keys_as_ollama_writes_them() {
        let out = gemma3(r#""num_hidden_layers": 7, "sliding_window_pattern": 3"#, 4);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        assert_eq!(
            bools(&g, "gemma3.attention.sliding_window_pattern"),
            Some(vec![true, true, false, true, true, false, true])
        );
        assert!(matches!(
            key(&g, "gemma3.attention.head_count"),
            Some(Value::U32(3))
        ));
        assert!(matches!(key(&g, "gemma3.rope.freq_base"), Some(Value::F32(x)) if *x == 1e6));
        assert!(matches!(key(&g, "gemma3.rope.local.freq_base"), Some(Value::F32(x)) if *x == 1e4));
        // Gemma 3 has none of Gemma 1 and 2's fixed token ids, and no softcap unless set.
        assert!(key(&g, "tokenizer.ggml.eot_token_id").is_none());
        assert!(key(&g, "gemma3.final_logit_softcapping").is_none());
        assert!(key(&g, "gemma3.rope.scaling.type").is_none());

        // layer_types wins over the pattern where it has an entry; Ollama fixes the head
        // counts of the 4B (34 layers); yarn scaling with its defaults.
        let layers: Vec<&str> = (0..34)
            .map(|i| {
                if i % 2 == 0 {
                    "\"sliding_attention\""
                } else {
                    "\"full_attention\""
                }
            })
            .collect();
        let extra = format!(
            r#""num_hidden_layers": 34, "layer_types": [{}],
               "rope_scaling": {{"rope_type": "yarn", "factor": 8.0,
                                 "original_max_position_embeddings": 32768}}"#,
            layers.join(",")
        );
        let out = gemma3(&extra, 4);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let pattern = bools(&g, "gemma3.attention.sliding_window_pattern").unwrap();
        assert_eq!(pattern.len(), 34);
        assert!(pattern.iter().enumerate().all(|(i, &l)| l == (i % 2 == 0)));
        assert!(matches!(
            key(&g, "gemma3.attention.head_count"),
            Some(Value::U32(8))
        ));
        assert!(matches!(
            key(&g, "gemma3.attention.head_count_kv"),
            Some(Value::U32(4))
        ));
        assert_eq!(
            key(&g, "gemma3.rope.scaling.type").and_then(Value::as_str),
            Some("yarn")
        );
        for (k, v) in [
            ("gemma3.rope.scaling.factor", 8.0),
            ("gemma3.rope.scaling.extrapolation_factor", 1.0),
            ("gemma3.rope.scaling.beta_fast", 64.0),
            ("gemma3.rope.scaling.beta_slow", 1.0),
        ] {
            assert!(matches!(key(&g, k), Some(Value::F32(x)) if *x == v), "{k}");
        }
        assert!(matches!(
            key(&g, "gemma3.rope.scaling.original_context_length"),
            Some(Value::U32(32768))
        ));
    }

    #[test]
    fn gemma3_vision_model_keys_as_ollama_writes_them() {
        let config = r#"{"architectures": ["Gemma3ForConditionalGeneration"],
            "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                            "num_hidden_layers": 34, "sliding_window": 1024},
            "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "image_size": 896,
                              "num_hidden_layers": 27, "num_attention_heads": 16, "patch_size": 14},
            "mm_tokens_per_image": 256, "rope_theta": 1e6, "rms_norm_eps": 1e-6}"#;
        let out = convert(&folder(
            config,
            &[(
                "language_model.model.norm.weight",
                "F32",
                &[2],
                f32s(&[0.0; 2]),
            )],
        ));
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        for (k, v) in [
            ("gemma3.block_count", 34),
            ("gemma3.attention.head_count", 8),
            ("gemma3.attention.head_count_kv", 4),
            // Defaults Ollama fills in for a vision model's config.
            ("gemma3.context_length", 131072),
            ("gemma3.attention.key_length", 256),
            ("gemma3.vision.num_channels", 3),
            ("gemma3.embedding_length", 2560),
            ("gemma3.feed_forward_length", 10240),
            ("gemma3.attention.sliding_window", 1024),
            ("gemma3.vision.block_count", 27),
            ("gemma3.vision.image_size", 896),
            ("gemma3.mm.tokens_per_image", 256),
        ] {
            assert!(
                matches!(key(&g, k), Some(Value::U32(n)) if *n == v),
                "{k}: {:?}",
                key(&g, k)
            );
        }
        assert!(matches!(
            key(&g, "gemma3.vision.attention.layer_norm_epsilon"),
            Some(Value::F32(x)) if *x == 1e-6
        ));
        // The text model's rope and epsilon keys are not written for a vision model.
        assert!(key(&g, "gemma3.rope.freq_base").is_none());
        assert!(key(&g, "gemma3.attention.layer_norm_rms_epsilon").is_none());
        // language_model. is dropped from the names, and the norm gains one.
        assert_eq!(g.tensors()[0].name(), "output_norm.weight");
        assert_eq!(g.tensors()[0].data(), f32s(&[1.0; 2]));
    }

    #[test]
    fn gemma3_embedding_rows_past_the_vocabulary_are_dropped() {
        let out = gemma3(r#""num_hidden_layers": 1"#, 6);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let embd = &g.tensors()[0];
        assert_eq!(embd.dims(), [2, 4]);
        assert_eq!(embd.data().len(), 4 * 2 * 2);
        // A config vocabulary larger than the tokenizer's pads it, and then all rows stay.
        let out = gemma3(r#""num_hidden_layers": 1, "vocab_size": 6"#, 6);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        assert_eq!(g.tensors()[0].dims(), [2, 6]);
    }

    #[test]
    fn mistyped_fields_fail_as_in_go() {
        let f = folder(
            r#"{"architectures": ["Gemma3ForCausalLM"], "vision_config": {"patch_size": 1.5}}"#,
            &[("model.embed_tokens.weight", "F32", &[4, 2], f32s(&[0.0; 8]))],
        );
        let err = Conversion::plan(&f).err().unwrap().to_string();
        assert!(err.contains("patch_size"), "{err}");
    }
}
