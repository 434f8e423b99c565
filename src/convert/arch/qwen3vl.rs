//! Qwen3-VL dense models (`Qwen3VLForConditionalGeneration`), as Ollama converts them
//! (`convert/convert_qwen3vl.go` over `convert_qwen3.go`): the Qwen 3 language model, read from
//! `text_config` only, as `qwen3vl` (tensors as they are: Qwen 3's rotary halves need no
//! regrouping), and the vision tower in a separate projector GGUF ([`super::qwen_vision`]).

use kiln_gguf::{Array, Value, ValueType};

use super::qwen_vision::Vision;
use super::{Architecture, Parameters, Projector};
use crate::convert::{Config, ConvertError, ModelFolder, Planned};

pub(crate) struct Qwen3Vl;

/// Ollama's `qwen3Model`: the text model's fields, from `text_config`.
fn text(c: &Config) -> Result<Config, ConvertError> {
    c.object("text_config")
}

fn i32_array(values: Vec<i32>) -> Value<'static> {
    Value::Array(Array::new(
        ValueType::I32,
        values.into_iter().map(Value::I32).collect(),
    ))
}

impl Architecture for Qwen3Vl {
    fn parameters(&self, c: &Config, folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        let t = text(c)?;
        let vision = Vision::read_qwen3vl(c, folder)?;
        if t.u32("num_experts")? > 0 {
            return Err(ConvertError::NotYet("Qwen3-VL mixtures of experts".into()));
        }
        let mut p = Parameters::new();
        // Ollama writes these whether or not the config sets them.
        super::insert_u32s(
            &mut p,
            &t,
            &[
                ("block_count", "num_hidden_layers"),
                ("context_length", "max_position_embeddings"),
                ("embedding_length", "hidden_size"),
                ("feed_forward_length", "intermediate_size"),
                ("attention.head_count", "num_attention_heads"),
                ("attention.head_count_kv", "num_key_value_heads"),
                ("attention.key_length", "head_dim"),
                ("attention.value_length", "head_dim"),
            ],
        )?;
        t.bool("norm_topk_prob")?;
        t.u32("num_experts_per_tok")?;
        super::insert_f32s(
            &mut p,
            &t,
            &[
                ("rope.freq_base", "rope_theta"),
                ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
            ],
        )?;
        let scaling = t.object("rope_scaling")?;
        scaling.u32("original_max_position_embeddings")?;
        if scaling.contains("factor") {
            // Ollama declares the factor as a list and cannot decode the number configs hold.
            return Err(ConvertError::NotYet(
                "Qwen3-VL models with a rope_scaling factor".into(),
            ));
        }
        let sections = scaling.i32s("mrope_section")?;
        // Ollama reads `type`; the published configs name it `rope_type`, so this is mostly "".
        match scaling.string("type")?.as_str() {
            "" => {}
            "mrope" | "default" => {
                p.insert("rope.mrope_section", i32_array(sections.clone()));
            }
            "yarn" => {
                return Err(ConvertError::NotYet(
                    "Qwen3-VL models with yarn rope scaling".into(),
                ));
            }
            other => {
                // Ollama panics ("unknown rope scaling type").
                return Err(ConvertError::InvalidConfig(format!(
                    "unknown rope scaling type {other:?}"
                )));
            }
        }
        if !sections.is_empty() {
            let mut dimension = sections;
            if dimension.len() == 3 {
                dimension.push(0);
            }
            p.insert("rope.dimension_sections", i32_array(dimension));
        }
        p.insert("n_deepstack_layers", Value::U32(vision.deepstack_layers()));
        vision.insert_model_keys(&mut p);
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        // Ollama's Qwen 3 list, then Qwen3-VL's, in its order (Go's replacer prefers earlier
        // pairs at each position).
        &[
            ("lm_head", "output"),
            ("model.embed_tokens", "token_embd"),
            ("model.layers", "blk"),
            ("input_layernorm", "attn_norm"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.k_norm", "attn_k_norm"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.q_norm", "attn_q_norm"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.gate.weight", "ffn_gate_inp.weight"),
            ("mlp.experts.down_proj", "ffn_down_exps.weight"),
            ("mlp.experts.gate_up_proj", "ffn_gate_up_exps.weight"),
            ("post_attention_layernorm", "ffn_norm"),
            ("model.norm", "output_norm"),
            ("model.language_", ""),
            ("model.visual", "v"),
            ("patch_embed.proj", "patch_embd"),
            ("pos_embed", "position_embd"),
            ("blocks", "blk"),
            ("attn.qkv", "attn_qkv"),
            ("attn.proj", "attn_out"),
            ("norm1", "ln1"),
            ("norm2", "ln2"),
            ("mlp.linear_fc1", "ffn_up"),
            ("mlp.linear_fc2", "ffn_down"),
            ("deepstack_merger_list", "deepstack"),
        ]
    }

    fn split_projector<'f>(
        &self,
        c: &Config,
        folder: &ModelFolder,
        tensors: &mut Vec<Planned<'f>>,
    ) -> Result<Option<Projector<'f>>, ConvertError> {
        let text_hidden = text(c)?.u32("hidden_size")?;
        Vision::read_qwen3vl(c, folder)?.split(c, text_hidden, tensors)
    }

    fn gguf_name(&self) -> &'static str {
        "qwen3vl"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::convert::{Conversion, ConvertError, ModelFolder, safetensors_for_tests};
    use kiln_gguf::{Gguf, Limits, Value};

    const CONFIG: &str = r#"{"architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl", "hidden_size": 99,
        "text_config": {"hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 2, "intermediate_size": 8,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 5000000,
            "vocab_size": 4, "rope_scaling": {"rope_type": "default",
                "mrope_section": [1, 1, 0], "mrope_interleaved": true}},
        "vision_config": {"depth": 2, "hidden_size": 4, "num_heads": 2, "in_channels": 1,
            "patch_size": 2, "spatial_merge_size": 2, "out_hidden_size": 4,
            "num_position_embeddings": 4, "deepstack_visual_indexes": [1],
            "temporal_patch_size": 2}}"#;

    const PREPROCESSOR: &str = r#"{"patch_size": 4, "merge_size": 2,
        "size": {"shortest_edge": 64}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5]}"#;

    fn f32s(n: usize) -> Vec<u8> {
        (0..n).flat_map(|v| (v as f32).to_le_bytes()).collect()
    }

    fn folder(config: &str, preprocessor: Option<&str>) -> ModelFolder {
        let owned: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = vec![
            (
                "model.language_model.embed_tokens.weight",
                "F32",
                vec![4, 4],
                f32s(16),
            ),
            (
                "model.language_model.layers.0.self_attn.q_norm.weight",
                "F32",
                vec![2],
                f32s(2),
            ),
            ("model.language_model.norm.weight", "F32", vec![4], f32s(4)),
            ("lm_head.weight", "F32", vec![4, 4], f32s(16)),
            (
                "model.visual.patch_embed.proj.weight",
                "F32",
                vec![4, 1, 2, 2, 2],
                f32s(32),
            ),
            (
                "model.visual.merger.linear_fc1.weight",
                "F32",
                vec![16, 16],
                f32s(256),
            ),
            ("model.visual.merger.norm.weight", "F32", vec![4], f32s(4)),
            (
                "model.visual.deepstack_merger_list.0.linear_fc2.weight",
                "F32",
                vec![4, 16],
                f32s(64),
            ),
            (
                "model.visual.deepstack_merger_list.0.norm.bias",
                "F32",
                vec![16],
                f32s(16),
            ),
            (
                "model.visual.blocks.1.norm2.weight",
                "F32",
                vec![4],
                f32s(4),
            ),
            // BF16 0.0, 1.0, ... (exact): stored F32 all the same.
            (
                "model.visual.pos_embed.weight",
                "BF16",
                vec![4, 4],
                (0..16u16)
                    .flat_map(|v| ((f32::from(v).to_bits() >> 16) as u16).to_le_bytes())
                    .collect(),
            ),
        ];
        let views: Vec<(&str, &str, &[u64], &[u8])> = owned
            .iter()
            .map(|(n, d, s, b)| (*n, *d, &s[..], &b[..]))
            .collect();
        let mut files = BTreeMap::from([
            ("config.json".to_owned(), config.as_bytes().to_vec()),
            (
                "tokenizer.json".to_owned(),
                br#"{"model": {"vocab": {"a": 0, "b": 1, "c": 2, "d": 3}}}"#.to_vec(),
            ),
            (
                "model.safetensors".to_owned(),
                safetensors_for_tests(&views),
            ),
        ]);
        if let Some(pre) = preprocessor {
            files.insert("preprocessor_config.json".into(), pre.as_bytes().to_vec());
        }
        ModelFolder::from_bytes(files)
    }

    fn u32_of(g: &Gguf<'_>, key: &str) -> u32 {
        match g.metadata().get(key) {
            Some(Value::U32(v)) => *v,
            other => panic!("{key}: {other:?}"),
        }
    }

    /// Ollama's Qwen3-VL split, values worked out by hand from convert_qwen3vl.go: the text
    /// keys from `text_config` only (the top-level `hidden_size` is not read), dimension
    /// sections padded to four, no `rope.mrope_section` (Ollama reads `type`, the config says
    /// `rope_type`), no vision keys; the preprocessor's patch size overriding the config's; the
    /// projector's defaults (feed-forward 4 × hidden, rope base 1e4), pixel bounds, and a
    /// normalisation written only with three channels; deepstack mergers named by layer.
    #[test]
    fn text_and_projector_are_ollamas() {
        let f = folder(CONFIG, Some(PREPROCESSOR));
        let plan = Conversion::plan(&f).unwrap();
        let out = plan.write(Vec::new()).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "blk.0.attn_q_norm.weight",
                "output.weight",
                "output_norm.weight",
                "token_embd.weight"
            ]
        );
        assert!(
            matches!(g.metadata().get("general.architecture"), Some(Value::String(s)) if s == "qwen3vl")
        );
        for (key, want) in [
            ("qwen3vl.block_count", 1),
            ("qwen3vl.context_length", 128),
            ("qwen3vl.embedding_length", 4),
            ("qwen3vl.feed_forward_length", 8),
            ("qwen3vl.attention.head_count", 2),
            ("qwen3vl.attention.head_count_kv", 1),
            ("qwen3vl.attention.key_length", 2),
            ("qwen3vl.attention.value_length", 2),
            ("qwen3vl.n_deepstack_layers", 1),
        ] {
            assert_eq!(u32_of(&g, key), want, "{key}");
        }
        match g.metadata().get("qwen3vl.rope.dimension_sections") {
            Some(Value::Array(a)) => {
                let v: Vec<i32> = a
                    .iter()
                    .map(|v| match v {
                        Value::I32(i) => i,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(v, [1, 1, 0, 0]);
            }
            other => panic!("{other:?}"),
        }
        let keys: Vec<String> = g.metadata().iter().map(|(k, _)| k.to_string()).collect();
        assert!(
            !keys.iter().any(|k| k.starts_with("qwen3vl.vision.")),
            "{keys:?}"
        );
        assert!(!keys.iter().any(|k| k == "qwen3vl.rope.mrope_section"));

        let bytes = plan.projector().unwrap().write(Vec::new()).unwrap();
        let p = Gguf::parse(&bytes, &Limits::default()).unwrap();
        for (key, want) in [
            ("clip.vision.block_count", 2),
            ("clip.vision.embedding_length", 4),
            ("clip.vision.feed_forward_length", 16),
            ("clip.vision.attention.head_count", 2),
            ("clip.vision.num_channels", 1),
            // The preprocessor's 4, not the config's 2: sqrt(4) × 4.
            ("clip.vision.patch_size", 4),
            ("clip.vision.image_size", 8),
            ("clip.vision.projection_dim", 4),
            ("clip.vision.spatial_merge_size", 2),
            ("clip.vision.temporal_patch_size", 2),
            ("clip.vision.image_min_pixels", 64),
        ] {
            assert_eq!(u32_of(&p, key), want, "{key}");
        }
        let m = p.metadata();
        assert!(m.get("clip.vision.image_max_pixels").is_none());
        assert!(m.get("clip.vision.image_mean").is_some());
        assert!(
            m.get("clip.vision.image_std").is_none(),
            "one channel: not written"
        );
        assert!(matches!(m.get("clip.vision.rope.freq_base"), Some(Value::F32(f)) if *f == 1e4));
        assert!(matches!(
            m.get("clip.vision.attention.layer_norm_epsilon"),
            Some(Value::F32(f)) if *f == 1e-6
        ));
        match m.get("clip.vision.is_deepstack_layers") {
            Some(Value::Array(a)) => {
                let flags: Vec<bool> = a.iter().map(|v| matches!(v, Value::Bool(true))).collect();
                assert_eq!(flags, [false, true]);
            }
            other => panic!("{other:?}"),
        }
        let tensors: Vec<(&str, String)> = p
            .tensors()
            .iter()
            .map(|t| (t.name(), t.ggml_type().name().unwrap().to_ascii_uppercase()))
            .collect();
        let want: Vec<(&str, String)> = [
            ("mm.0.weight", "F16"),
            ("v.blk.1.ln2.weight", "F32"),
            ("v.deepstack.1.fc2.weight", "F16"),
            ("v.deepstack.1.norm.bias", "F32"),
            ("v.patch_embd.weight", "F32"),
            ("v.patch_embd.weight.1", "F32"),
            ("v.position_embd.weight", "F32"),
            ("v.post_ln.weight", "F32"),
        ]
        .into_iter()
        .map(|(n, t)| (n, t.to_owned()))
        .collect();
        assert_eq!(tensors, want);
        let pos: Vec<f32> = p
            .tensor("v.position_embd.weight")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(pos, (0..16).map(|v| v as f32).collect::<Vec<_>>());
    }

    /// Ollama requires the preprocessor file and decodes it strictly; kiln says which file.
    #[test]
    fn preprocessor_problems_and_experts_are_clear_errors() {
        assert!(matches!(
            Conversion::plan(&folder(CONFIG, None)),
            Err(ConvertError::MissingFile(f)) if f == "preprocessor_config.json"
        ));
        match Conversion::plan(&folder(CONFIG, Some(r#"{"patch_size": "16"}"#))) {
            Err(ConvertError::Json { file, .. }) => assert_eq!(file, "preprocessor_config.json"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let moe = CONFIG.replace(
            r#""vocab_size": 4,"#,
            r#""vocab_size": 4, "num_experts": 8,"#,
        );
        assert!(matches!(
            Conversion::plan(&folder(&moe, Some(PREPROCESSOR))),
            Err(ConvertError::NotYet(what)) if what.contains("mixtures of experts")
        ));
    }
}
