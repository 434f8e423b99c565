//! GPT-OSS (`GptOssForCausalLM`), as Ollama converts it: GGUF architecture `gpt-oss`, the expert
//! weights kept in the MXFP4 form OpenAI published them in (GGUF type 39, regrouped into ggml's
//! block layout), the fused gate/up experts split into two tensors, and the o200k tokenizer's
//! special ids fixed. The file type is 4, which Ollama names "unknown" and refuses to quantize.
//!
//! Hugging Face's layout (`max_position_embeddings` set) and OpenAI's original checkpoint layout
//! (`block.N.*`) each have their own name table, as in Ollama.

use kiln_gguf::{Array, Value, ValueType};

use super::{Architecture, Metadata, Parameters};
use crate::convert::tokenizer::Tokenizer;
use crate::convert::{Config, ConvertError, Dtype, ModelFolder, Planned, TensorView};

pub(crate) struct GptOss;

/// Token ids Ollama writes for every GPT-OSS model (o200k_harmony): `<|startoftext|>`,
/// `<|endoftext|>`, and the three ids that end a turn (`<|endoftext|>`, `<|return|>`, `<|call|>`).
const BOS: u32 = 199_998;
const EOS: u32 = 199_999;
const EOS_IDS: [i32; 3] = [199_999, 200_002, 200_012];

/// Values per MXFP4 block, and bytes of one block's packed values in the source.
const BLOCK_VALUES: u64 = 32;
const PACKED_BYTES: u64 = 16;

/// Whether the config is Hugging Face's layout (Ollama keys this on `max_position_embeddings`).
fn hugging_face_layout(c: &Config) -> Result<bool, ConvertError> {
    Ok(c.u32("max_position_embeddings")? > 0)
}

impl Architecture for GptOss {
    fn parameters(&self, c: &Config, _folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        let mut p = Parameters::new();
        let max_positions = c.u32("max_position_embeddings")?;
        let initial_context = c.u32("initial_context_length")?;
        let scaling_factor = c.f32("rope_scaling_factor")?;
        let scaling = c.object("rope_scaling")?;
        let scaling_type = scaling.string("rope_type")?;
        let nested_factor = scaling.f32("factor")?;
        let original_context = scaling.u32("original_max_position_embeddings")?;
        let beta_fast = scaling.f32("beta_fast")?;
        let beta_slow = scaling.f32("beta_slow")?;
        // Go converts the float32 product to uint32 by truncation (saturating here, where Go's
        // result for an out-of-range product is unspecified).
        let scaled_context = (scaling_factor * initial_context as f32) as u32;
        p.insert(
            "context_length",
            Value::U32(if max_positions != 0 {
                max_positions
            } else {
                scaled_context
            }),
        );
        let intermediate = c.u32("intermediate_size")?;
        let head_dim = c.u32("head_dim")?;
        for (key, value) in [
            ("block_count", c.u32("num_hidden_layers")?),
            ("embedding_length", c.u32("hidden_size")?),
            ("feed_forward_length", intermediate),
            ("expert_feed_forward_length", intermediate),
            (
                "expert_count",
                c.first_u32(&["num_experts", "num_local_experts"])?,
            ),
            ("expert_used_count", c.u32("experts_per_token")?),
            ("attention.head_count", c.u32("num_attention_heads")?),
            ("attention.head_count_kv", c.u32("num_key_value_heads")?),
            ("attention.key_length", head_dim),
            ("attention.value_length", head_dim),
            ("attention.sliding_window", c.u32("sliding_window")?),
            (
                "rope.scaling.original_context_length",
                if original_context != 0 {
                    original_context
                } else {
                    initial_context
                },
            ),
        ] {
            p.insert(key, Value::U32(value));
        }
        let eps = c.f32("rms_norm_eps")?;
        p.insert(
            "attention.layer_norm_rms_epsilon",
            Value::F32(if eps != 0.0 { eps } else { 1e-5 }),
        );
        p.insert("rope.freq_base", Value::F32(c.f32("rope_theta")?));
        p.insert(
            "rope.scaling.type",
            Value::string(if scaling_type.is_empty() {
                "yarn".to_owned()
            } else {
                scaling_type
            }),
        );
        p.insert(
            "rope.scaling.factor",
            Value::F32(if scaling_factor != 0.0 {
                scaling_factor
            } else {
                nested_factor
            }),
        );
        if beta_fast != 0.0 {
            p.insert("rope.scaling.yarn_beta_fast", Value::F32(beta_fast));
        }
        if beta_slow != 0.0 {
            p.insert("rope.scaling.yarn_beta_slow", Value::F32(beta_slow));
        }
        // The layout decides the name table; read it here so a bad field fails early.
        hugging_face_layout(c)?;
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        // The plan asks `replacements_for_config`, which picks one of the two tables.
        HUGGING_FACE_NAMES
    }

    fn replacements_for_config(
        &self,
        c: &Config,
    ) -> Result<&'static [(&'static str, &'static str)], ConvertError> {
        Ok(if hugging_face_layout(c)? {
            HUGGING_FACE_NAMES
        } else {
            ORIGINAL_NAMES
        })
    }

    fn adopt_packed<'f>(
        &self,
        packed: Vec<(String, TensorView<'f>)>,
        tensors: &mut Vec<Planned<'f>>,
    ) -> Result<(), ConvertError> {
        // `NAME.blocks` and `NAME.scales` pair up; anything else packed has no float meaning.
        let mut pairs: std::collections::BTreeMap<String, [Option<TensorView<'f>>; 2]> =
            std::collections::BTreeMap::new();
        for (name, view) in packed {
            let slot = if let Some(base) = name.strip_suffix(".blocks") {
                (base.to_owned(), 0)
            } else if let Some(base) = name.strip_suffix(".scales") {
                (base.to_owned(), 1)
            } else {
                return Err(ConvertError::UnsupportedDtype {
                    name,
                    dtype: view.dtype,
                });
            };
            pairs.entry(slot.0).or_default()[slot.1] = Some(view);
        }
        for (base, [blocks, scales]) in pairs {
            let name = if base.ends_with(".weight") {
                base.clone()
            } else {
                format!("{base}.weight")
            };
            // Ollama writes only the expert weights; other pairs are left out.
            let halves: &[(&str, u64)] = if name.contains("ffn_down_exps") {
                &[("", 0)]
            } else if name.contains("ffn_gate_up_exps") {
                &[("gate", 0), ("up", 1)]
            } else {
                continue;
            };
            let missing = |part: &str| ConvertError::Mxfp4 {
                name: base.clone(),
                message: format!("no {base}.{part} tensor to pair with"),
            };
            let blocks = blocks.ok_or_else(|| missing("blocks"))?;
            let scales = scales.ok_or_else(|| missing("scales"))?;
            let step = halves.len() as u64;
            for &(half, first_row) in halves {
                let out_name = if half.is_empty() {
                    name.clone()
                } else {
                    name.replacen("gate_up", half, 1)
                };
                let source = Mxfp4Source::new(&base, &blocks, &scales, first_row, step)?;
                tensors.push(Planned::from_mxfp4(out_name, source));
            }
        }
        Ok(())
    }

    fn adjust_tensors(
        &self,
        _config: &Config,
        _vocab_len: usize,
        tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        // The fused gate/up bias interleaves gate and up columns: even ones are the gate's.
        let mut split = Vec::new();
        let mut i = 0;
        while i < tensors.len() {
            if tensors[i].name.ends_with("gate_up_exps.bias") {
                let fused = tensors.remove(i);
                for (part, first) in [("gate_exps", 0), ("up_exps", 1)] {
                    let name = fused.name.replace("gate_up_exps", part);
                    split.push(fused.every_other_column(name, first)?);
                }
            } else {
                i += 1;
            }
        }
        tensors.extend(split);
        Ok(())
    }

    fn gguf_name(&self) -> &'static str {
        "gpt-oss"
    }

    fn extra_metadata(&self, _tokenizer: &mut Tokenizer, kv: &mut Metadata) {
        kv.insert("general.file_type".into(), Value::U32(4));
        kv.insert("tokenizer.ggml.pre".into(), Value::string("gpt-4o"));
        kv.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(BOS));
        kv.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
        kv.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(EOS));
        kv.insert(
            "tokenizer.ggml.eos_token_ids".into(),
            Value::Array(Array::new(
                ValueType::I32,
                EOS_IDS.iter().map(|&id| Value::I32(id)).collect(),
            )),
        );
        kv.insert("tokenizer.ggml.add_eos_token".into(), Value::Bool(false));
    }
}

/// Hugging Face's tensor names.
const HUGGING_FACE_NAMES: &[(&str, &str)] = &[
    ("lm_head", "output"),
    ("model.embed_tokens", "token_embd"),
    ("model.layers", "blk"),
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.sinks", "attn_sinks.weight"),
    ("post_attention_layernorm", "post_attention_norm"),
    ("mlp.router", "ffn_gate_inp"),
    ("mlp.experts.gate_up_proj_", "ffn_gate_up_exps."),
    ("mlp.experts.down_proj_", "ffn_down_exps."),
    ("model.norm", "output_norm"),
];

/// OpenAI's original checkpoint names (`.blocks`/`.scales` first, so that `block` → `blk` and
/// `scale` → `weight` leave them alone).
const ORIGINAL_NAMES: &[(&str, &str)] = &[
    (".blocks", ".blocks"),
    (".scales", ".scales"),
    ("block", "blk"),
    ("attn.norm", "attn_norm"),
    ("attn.qkv", "attn_qkv"),
    ("attn.sinks", "attn_sinks.weight"),
    ("attn.out", "attn_output"),
    ("mlp.norm", "post_attention_norm"),
    ("mlp.gate", "ffn_gate_inp"),
    ("mlp.mlp1_", "ffn_gate_up_exps."),
    ("mlp.mlp2_", "ffn_down_exps."),
    ("embedding", "token_embd"),
    ("norm", "output_norm"),
    ("unembedding", "output"),
    ("scale", "weight"),
];

/// An expert weight in OpenAI's MXFP4 form: `blocks` `[experts, rows, groups, 16]` (two 4-bit
/// codes per byte, consecutive values low nibble first) and `scales` `[experts, rows, groups]`
/// (E8M0 exponents), of which every `step`-th row from `first_row` is written.
#[derive(Clone)]
pub(crate) struct Mxfp4Source<'f> {
    blocks: &'f [u8],
    scales: &'f [u8],
    experts: u64,
    rows: u64,
    groups: u64,
    first_row: u64,
    step: u64,
}

impl<'f> Mxfp4Source<'f> {
    fn new(
        name: &str,
        blocks: &TensorView<'f>,
        scales: &TensorView<'f>,
        first_row: u64,
        step: u64,
    ) -> Result<Mxfp4Source<'f>, ConvertError> {
        let bad = |message: String| ConvertError::Mxfp4 {
            name: name.to_owned(),
            message,
        };
        let shape = |v: &TensorView<'_>| {
            let dims: Vec<String> = v.shape.iter().map(u64::to_string).collect();
            format!("[{}]", dims.join(" "))
        };
        if blocks.dtype != Dtype::U8 || scales.dtype != Dtype::U8 {
            return Err(bad(format!(
                "blocks and scales must be U8, not {:?} and {:?}",
                blocks.dtype, scales.dtype
            )));
        }
        let &[experts, rows, groups, packed] = &blocks.shape[..] else {
            return Err(bad(format!(
                "blocks shape {} is not [experts rows groups 16]",
                shape(blocks)
            )));
        };
        if packed != PACKED_BYTES {
            return Err(bad(format!(
                "blocks shape {} does not end in 16 bytes per block",
                shape(blocks)
            )));
        }
        if scales.shape[..] != [experts, rows, groups] {
            return Err(bad(format!(
                "scales shape {} does not match blocks shape {}",
                shape(scales),
                shape(blocks)
            )));
        }
        if !rows.is_multiple_of(step) {
            return Err(bad(format!(
                "{rows} rows cannot be split into {step} interleaved halves"
            )));
        }
        Ok(Mxfp4Source {
            blocks: blocks.data,
            scales: scales.data,
            experts,
            rows,
            groups,
            first_row,
            step,
        })
    }

    /// The output shape, outermost first: `[experts, rows written, values per row]`.
    pub fn shape(&self) -> Vec<u64> {
        vec![
            self.experts,
            self.rows / self.step,
            self.groups * BLOCK_VALUES,
        ]
    }

    /// The source bytes it reads (for releasing the mapping once written).
    pub fn sources(&self) -> [&'f [u8]; 2] {
        [self.blocks, self.scales]
    }

    /// Number of 17-byte ggml blocks in the output.
    pub fn block_count(&self) -> u64 {
        self.experts * (self.rows / self.step) * self.groups
    }

    /// Appends output blocks `range` (ggml's `block_mxfp4`: the exponent byte, then 16 bytes
    /// holding value `j` in the low and value `j + 16` in the high nibble of byte `j`).
    pub fn write_blocks(&self, range: std::ops::Range<u64>, out: &mut Vec<u8>) {
        let rows_out = self.rows / self.step;
        for block in range {
            let group = block % self.groups;
            let row = block / self.groups;
            let (expert, row) = (row / rows_out, row % rows_out);
            let source_row = self.first_row + row * self.step;
            let at = ((expert * self.rows + source_row) * self.groups + group) as usize;
            out.push(self.scales[at]);
            let packed = &self.blocks[at * PACKED_BYTES as usize..][..PACKED_BYTES as usize];
            // Source byte k holds values 2k (low) and 2k + 1 (high).
            let (front, back) = packed.split_at(8);
            for (&a, &b) in front.iter().zip(back) {
                out.push((a & 0x0F) | (b << 4));
                out.push((a >> 4) | (b & 0xF0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::convert::{Conversion, ConvertError, test_folder};
    use kiln_gguf::{Gguf, Limits, Value};

    const CONFIG: &str = r#"{"architectures": ["GptOssForCausalLM"], "num_hidden_layers": 1,
        "max_position_embeddings": 131072, "hidden_size": 64, "intermediate_size": 32,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "num_local_experts": 2, "experts_per_token": 1, "rms_norm_eps": 1e-05,
        "initial_context_length": 4096, "rope_theta": 150000, "sliding_window": 128,
        "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
        "original_max_position_embeddings": 4096, "rope_type": "yarn"}}"#;

    fn convert(config: &str, tensors: &[(&str, &str, &[u64], &[u8])]) -> Vec<u8> {
        let folder = test_folder(config, tensors);
        Conversion::plan(&folder)
            .unwrap()
            .write(Vec::new())
            .unwrap()
    }

    /// The values of one ggml MXFP4 block as integers (codes), in order: ggml's layout read
    /// back by its definition (value j low nibble of byte j, value j+16 its high nibble).
    fn ggml_codes(block: &[u8]) -> Vec<u8> {
        let qs = &block[1..17];
        let low = qs.iter().map(|b| b & 0x0F);
        let high = qs.iter().map(|b| b >> 4);
        low.chain(high).collect()
    }

    #[test]
    fn experts_regroup_into_ggml_blocks_and_gate_up_splits_by_row() {
        // 2 experts × 4 fused rows × 1 group: every source value its own code.
        let (experts, rows) = (2u64, 4u64);
        let mut blocks = Vec::new();
        let mut codes = Vec::new();
        for i in 0..experts * rows {
            let values: Vec<u8> = (0..32).map(|j| ((i * 7 + j * 3) % 16) as u8).collect();
            // OpenAI's packing: consecutive values share a byte, the first in the low nibble.
            blocks.extend(values.chunks(2).map(|p| p[0] | (p[1] << 4)));
            codes.push(values);
        }
        let scales: Vec<u8> = (0..experts * rows).map(|i| 120 + i as u8).collect();
        let bias: Vec<u8> = (0..experts * rows)
            .flat_map(|i| kiln_quant::f32_to_bf16_bits(i as f32).to_le_bytes())
            .collect();
        let out = convert(
            CONFIG,
            &[
                (
                    "model.layers.0.mlp.experts.gate_up_proj_blocks",
                    "U8",
                    &[experts, rows, 1, 16],
                    &blocks,
                ),
                (
                    "model.layers.0.mlp.experts.gate_up_proj_scales",
                    "U8",
                    &[experts, rows, 1],
                    &scales,
                ),
                (
                    "model.layers.0.mlp.experts.gate_up_proj_bias",
                    "BF16",
                    &[experts, rows],
                    &bias,
                ),
            ],
        );
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        for (part, first) in [("gate", 0u64), ("up", 1)] {
            let t = g
                .tensor(&format!("blk.0.ffn_{part}_exps.weight"))
                .unwrap_or_else(|| panic!("{part} weight"));
            assert_eq!(t.ggml_type(), kiln_gguf::GgmlType::MXFP4);
            assert_eq!(t.dims(), [32, rows / 2, experts]);
            for (k, block) in t.data().chunks_exact(17).enumerate() {
                let (e, r) = (k as u64 / (rows / 2), k as u64 % (rows / 2));
                let source = (e * rows + first + 2 * r) as usize;
                assert_eq!(block[0], scales[source], "{part} block {k} scale");
                assert_eq!(ggml_codes(block), codes[source], "{part} block {k} values");
            }
            let b = g.tensor(&format!("blk.0.ffn_{part}_exps.bias")).unwrap();
            assert_eq!(b.ggml_type(), kiln_gguf::GgmlType::F32);
            assert_eq!(b.dims(), [rows / 2, experts]);
            let got: Vec<f32> = b
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let want: Vec<f32> = (0..experts)
                .flat_map(|e| (0..rows / 2).map(move |r| (e * rows + first + 2 * r) as f32))
                .collect();
            assert_eq!(got, want, "{part} bias");
        }
        assert!(g.tensor("blk.0.ffn_gate_up_exps.weight").is_none());
        assert_eq!(g.metadata().get("general.file_type"), Some(&Value::U32(4)));
    }

    #[test]
    fn keys_follow_ollamas_converter() {
        let out = convert(CONFIG, &[("model.norm.weight", "F32", &[1], &[0; 4])]);
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let m = g.metadata();
        let u = |k: &str| m.get(k).and_then(Value::as_u64);
        assert_eq!(
            m.get("general.architecture").unwrap().as_str(),
            Some("gpt-oss")
        );
        assert_eq!(u("gpt-oss.context_length"), Some(131072));
        assert_eq!(u("gpt-oss.expert_count"), Some(2));
        assert_eq!(u("gpt-oss.expert_feed_forward_length"), Some(32));
        assert_eq!(
            u("gpt-oss.rope.scaling.original_context_length"),
            Some(4096)
        );
        assert_eq!(u("tokenizer.ggml.bos_token_id"), Some(199_998));
        assert_eq!(
            m.get("gpt-oss.rope.scaling.yarn_beta_fast"),
            Some(&Value::F32(32.0))
        );
        assert_eq!(
            m.get("tokenizer.ggml.pre").unwrap().as_str(),
            Some("gpt-4o")
        );
        // Without max_position_embeddings: the scaled initial context, the original names.
        let original = CONFIG.replace(
            "\"max_position_embeddings\": 131072,",
            "\"rope_scaling_factor\": 32.0,",
        );
        let out = convert(
            &original,
            &[
                ("block.0.attn.norm.scale", "F32", &[1], &[0; 4]),
                ("block.0.mlp.mlp1_bias", "F32", &[1, 2], &[0; 8]),
                ("norm.scale", "F32", &[1], &[0; 4]),
                ("unembedding.weight", "F32", &[1, 1], &[0; 4]),
            ],
        );
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        assert_eq!(
            g.metadata()
                .get("gpt-oss.context_length")
                .and_then(Value::as_u64),
            Some(131072)
        );
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "blk.0.attn_norm.weight",
                "blk.0.ffn_gate_exps.bias",
                "blk.0.ffn_up_exps.bias",
                "output.weight",
                "output_norm.weight"
            ]
        );
    }

    #[test]
    fn malformed_expert_weights_are_clear_errors() {
        let blocks = [0u8; 2 * 16];
        let scales = [0u8; 2];
        let plan = |tensors: &[(&str, &str, &[u64], &[u8])]| {
            let folder = test_folder(CONFIG, tensors);
            Conversion::plan(&folder).map(|_| ()).unwrap_err()
        };
        let b = "model.layers.0.mlp.experts.down_proj_blocks";
        let s = "model.layers.0.mlp.experts.down_proj_scales";
        let g = "model.layers.0.mlp.experts.gate_up_proj_blocks";
        let gs = "model.layers.0.mlp.experts.gate_up_proj_scales";
        for (tensors, want) in [
            (
                vec![(b, "U8", &[1u64, 2, 1, 16][..], &blocks[..])],
                "no blk.0.ffn_down_exps.scales",
            ),
            (
                vec![
                    (b, "U8", &[1, 2, 2, 8][..], &blocks[..]),
                    (s, "U8", &[1, 2, 1][..], &scales[..]),
                ],
                "does not end in 16 bytes",
            ),
            (
                vec![
                    (b, "U8", &[1, 2, 1, 16][..], &blocks[..]),
                    (s, "U8", &[2, 1, 1][..], &scales[..]),
                ],
                "does not match blocks shape",
            ),
            (
                vec![
                    (g, "U8", &[1, 1, 2, 16][..], &blocks[..]),
                    (gs, "U8", &[1, 1, 2][..], &scales[..]),
                ],
                "cannot be split",
            ),
            (
                vec![(
                    "model.layers.0.mlp.router.weight",
                    "U8",
                    &[2][..],
                    &scales[..],
                )],
                "unknown data type",
            ),
        ] {
            let err = plan(&tensors);
            assert!(
                matches!(
                    err,
                    ConvertError::Mxfp4 { .. } | ConvertError::UnsupportedDtype { .. }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains(want), "{err} lacks {want:?}");
        }
    }
}
