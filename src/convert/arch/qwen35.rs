//! Qwen 3.5 dense text models (`Qwen3_5ForConditionalGeneration`'s language model), as Ollama
//! converts them (`convert/convert_qwen3next.go`).
//!
//! Qwen 3.5 is a hybrid: most layers are gated delta-net linear attention (`linear_attn.*`),
//! every `full_attention_interval`-th is full attention with a gated query. Beyond the renaming,
//! the conversion changes values in three ways, all as Ollama (and llama.cpp) do:
//! - the zero-centred RMS norm weights get one added (the gated norm `ssm_norm` excepted);
//! - `A_log` is stored as the decay itself, `-exp(A_log)`;
//! - the value heads of every linear-attention weight move from Hugging Face's order, grouped
//!   by key head, to the tiled order ggml broadcasts over ([`HeadTiling`]).
//!
//! The multi-token-prediction layer the published checkpoints carry (`mtp.*`) becomes the
//! block after the last (`blk.{num_hidden_layers}.`, its shared tensors `nextn.*`), as in Ollama
//! and llama.cpp. With `num_experts` set the model is `qwen35moe`: each layer's per-expert
//! projections are stacked into one tensor per projection and the official checkpoints' fused
//! gate/up experts split in two, as Ollama does. The vision tower goes to a separate projector
//! GGUF ([`super::qwen_vision`]).

use kiln_gguf::{Array, Value, ValueType};

use super::qwen_vision::Vision;
use super::{Architecture, Metadata, Parameters, Projector};
use crate::convert::tokenizer::Tokenizer;
use crate::convert::{
    Axis, Config, ConvertError, HeadTiling, ModelFolder, Planned, Safetensors, ValueMap,
};

pub(crate) struct Qwen35;

/// The text model's hyperparameters, from `text_config` when the config nests them (as
/// `Qwen3_5ForConditionalGeneration` checkpoints do) or from the top level, completed from
/// `rope_parameters` as Ollama's `parseMore` completes them.
struct Text {
    layers: u32,
    nextn: u32,
    context: u32,
    hidden: u32,
    feed_forward: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    rope_theta: f32,
    rms_eps: f32,
    experts: u32,
    experts_used: u32,
    /// Written only when the config has it (Ollama's `*bool`).
    norm_topk_prob: Option<bool>,
    expert_feed_forward: u32,
    shared_expert_feed_forward: u32,
    full_attention_interval: u32,
    layer_types: Vec<String>,
    conv_kernel: u32,
    key_head_dim: u32,
    key_heads: u32,
    value_heads: u32,
    value_head_dim: u32,
    partial_rotary: f32,
    scaling_type: String,
    mrope_sections: Vec<i32>,
    mrope_interleaved: bool,
}

impl Text {
    /// Reads every field of Ollama's `qwen3NextTextConfig` from `c` (Go decodes them all, so a
    /// mistyped one fails even when unused).
    fn read(c: &Config) -> Result<Text, ConvertError> {
        let norm_topk_prob = match c.contains("norm_topk_prob") {
            true => Some(c.bool("norm_topk_prob")?),
            false => None,
        };
        let scaling = c.object("rope_scaling")?;
        let params = c.object("rope_parameters")?;
        if scaling.contains("factor") {
            // Ollama declares the factor as a list and cannot decode the number configs hold.
            return Err(ConvertError::NotYet(
                "Qwen 3.5 models with a rope_scaling factor".into(),
            ));
        }
        let mut scaling_type = scaling.string("type")?;
        if scaling_type.is_empty() {
            scaling_type = params.string("rope_type")?;
        }
        let mut mrope_sections = params.i32s("mrope_section")?;
        let scaling_sections = scaling.i32s("mrope_section")?;
        if mrope_sections.is_empty() {
            mrope_sections = scaling_sections;
        }
        let mut nextn = c.u32("num_nextn_predict_layers")?;
        let mtp_layers = c.u32("mtp_num_hidden_layers")?;
        if nextn == 0 {
            nextn = mtp_layers;
        }
        let rope_theta = match c.f32("rope_theta")? {
            0.0 => params.f32("rope_theta")?,
            theta => theta,
        };
        let partial_rotary = match c.f32("partial_rotary_factor")? {
            0.0 => params.f32("partial_rotary_factor")?,
            factor => factor,
        };
        Ok(Text {
            layers: c.u32("num_hidden_layers")?,
            nextn,
            context: c.u32("max_position_embeddings")?,
            hidden: c.u32("hidden_size")?,
            feed_forward: c.u32("intermediate_size")?,
            heads: c.u32("num_attention_heads")?,
            kv_heads: c.u32("num_key_value_heads")?,
            head_dim: c.u32("head_dim")?,
            rope_theta,
            rms_eps: c.f32("rms_norm_eps")?,
            experts: c.u32("num_experts")?,
            experts_used: c.u32("num_experts_per_tok")?,
            norm_topk_prob,
            expert_feed_forward: c.u32("moe_intermediate_size")?,
            shared_expert_feed_forward: c.u32("shared_expert_intermediate_size")?,
            full_attention_interval: c.u32("full_attention_interval")?,
            layer_types: c.strings("layer_types")?,
            conv_kernel: c.u32("linear_conv_kernel_dim")?,
            key_head_dim: c.u32("linear_key_head_dim")?,
            key_heads: c.u32("linear_num_key_heads")?,
            value_heads: c.u32("linear_num_value_heads")?,
            value_head_dim: c.u32("linear_value_head_dim")?,
            partial_rotary,
            scaling_type,
            mrope_sections,
            mrope_interleaved: params.bool("mrope_interleaved")?,
        })
    }

    /// The text configuration of `c`: `text_config` replaces the top-level fields when present,
    /// as in Ollama (whose top-level fields are decoded, and checked, all the same). The checks
    /// are Ollama's `parseMore`, with its messages.
    fn of(c: &Config) -> Result<Text, ConvertError> {
        let top = Text::read(c)?;
        let text = if c.contains("text_config") {
            Text::read(&c.object("text_config")?)?
        } else {
            top
        };
        let invalid = |what: &str| Err(ConvertError::InvalidConfig(format!("qwen3next: {what}")));
        for (value, field) in [
            (text.layers, "num_hidden_layers"),
            (text.heads, "num_attention_heads"),
            (text.kv_heads, "num_key_value_heads"),
            (text.head_dim, "head_dim"),
        ] {
            if value == 0 {
                return invalid(&format!("{field} must be set"));
            }
        }
        if text.rope_theta == 0.0 {
            return invalid("rope_theta must be set");
        }
        if !(text.partial_rotary > 0.0 && text.partial_rotary <= 1.0) {
            return invalid(&format!(
                "partial_rotary_factor must be in (0,1], got {}",
                text.partial_rotary
            ));
        }
        if [
            text.key_heads,
            text.value_heads,
            text.key_head_dim,
            text.value_head_dim,
        ]
        .contains(&0)
        {
            return invalid(
                "linear attention config must be set (linear_num_key_heads, \
                 linear_num_value_heads, linear_key_head_dim, linear_value_head_dim)",
            );
        }
        if !text.value_heads.is_multiple_of(text.key_heads) {
            // Ollama leaves such weights unreordered, which no runtime can use.
            return invalid(&format!(
                "linear_num_value_heads ({}) must be a multiple of linear_num_key_heads ({})",
                text.value_heads, text.key_heads
            ));
        }
        text.check_layer_kinds()?;
        Ok(text)
    }

    /// Ollama's `kvHeadCounts` checks: the layers must mix full and linear attention, by
    /// `layer_types` or by `full_attention_interval`.
    fn check_layer_kinds(&self) -> Result<(), ConvertError> {
        let invalid = |what: String| Err(ConvertError::InvalidConfig(format!("qwen3next: {what}")));
        if !self.layer_types.is_empty() {
            let full = |i: usize| {
                self.layer_types
                    .get(i)
                    .is_some_and(|t| t == "full_attention")
            };
            let layers = self.layers as usize;
            let has_full = (0..layers).any(full);
            let has_linear = (0..layers).any(|i| !full(i));
            if !has_full || !has_linear {
                return invalid(
                    "layer_types must include both full_attention and linear_attention".into(),
                );
            }
            return Ok(());
        }
        let interval = self.full_attention_interval;
        if interval == 0 {
            return invalid("full_attention_interval must be set".into());
        }
        if interval > self.layers {
            return invalid(format!(
                "full_attention_interval ({interval}) exceeds num_hidden_layers ({})",
                self.layers
            ));
        }
        Ok(())
    }

    /// Rows of a linear-attention layer's fused q and k projections (and convolution channels
    /// before the value channels).
    fn qk_rows(&self) -> u64 {
        2 * u64::from(self.key_head_dim) * u64::from(self.key_heads)
    }

    /// The value-head tiling along `axis`, after `start` entries, for heads of `head_len`.
    fn tiling(&self, axis: Axis, start: u64, head_len: u64) -> HeadTiling {
        HeadTiling {
            axis,
            start,
            key_heads: u64::from(self.key_heads),
            per_key: u64::from(self.value_heads / self.key_heads),
            head_len,
        }
    }
}

/// Whether the value heads are reordered: Ollama does so for every model of this family but
/// Qwen3-Next's (by `model_type` or any `architectures` entry), whose layout its runtime reads
/// unreordered.
fn reorders_value_heads(c: &Config) -> Result<bool, ConvertError> {
    let qwen3_next = |s: &str| {
        let s = s.to_lowercase();
        s.contains("qwen3_next") || s.contains("qwen3next")
    };
    Ok(!qwen3_next(&c.string("model_type")?)
        && !c.strings("architectures")?.iter().any(|a| qwen3_next(a)))
}

/// The MTP tensors outside `mtp.layers.N.`, by Hugging Face name, with their GGUF names in the
/// MTP block.
const MTP_SHARED: [(&str, &str); 7] = [
    ("mtp.fc.weight", "nextn.eh_proj.weight"),
    ("mtp.pre_fc_norm_embedding.weight", "nextn.enorm.weight"),
    ("mtp.pre_fc_norm_hidden.weight", "nextn.hnorm.weight"),
    ("mtp.norm.weight", "nextn.shared_head_norm.weight"),
    ("mtp.embed_tokens.weight", "nextn.embed_tokens.weight"),
    (
        "mtp.shared_head.head.weight",
        "nextn.shared_head_head.weight",
    ),
    (
        "mtp.shared_head.norm.weight",
        "nextn.shared_head_norm.weight",
    ),
];

/// Ollama's count of MTP layers when the config gives none: one past the highest
/// `mtp.layers.N.` index among `names`, else one if there is any other `mtp.` tensor.
fn mtp_layers_named<'n>(names: impl Iterator<Item = &'n str>) -> Result<u32, ConvertError> {
    let mut any = false;
    let mut highest: Option<i64> = None;
    for name in names.filter(|n| n.starts_with("mtp.")) {
        any = true;
        let Some((layer, suffix)) = name
            .strip_prefix("mtp.layers.")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        // Go's strconv.Atoi: an optional sign, decimal digits, int64 range.
        if let Ok(n) = layer.parse::<i64>()
            && n >= 0
            && !suffix.is_empty()
        {
            highest = highest.max(Some(n));
        }
    }
    match highest {
        Some(n) => u32::try_from(n + 1).map_err(|_| {
            ConvertError::InvalidConfig(format!("qwen3next: mtp layer index {n} out of range"))
        }),
        None => Ok(u32::from(any)),
    }
}

/// [`mtp_layers_named`] over the tensor headers of the folder's weights files.
fn mtp_layers_in(folder: &ModelFolder) -> Result<u32, ConvertError> {
    let mut names = Vec::new();
    for (file, bytes) in folder.top_level(".safetensors") {
        let parsed =
            Safetensors::parse_with_limit(bytes, folder.limits.max_safetensors_header_bytes)
                .map_err(|source| ConvertError::Safetensors {
                    file: file.to_owned(),
                    source: Box::new(source),
                })?;
        names.extend(parsed.tensors.into_iter().map(|t| t.name));
    }
    mtp_layers_named(names.iter().map(String::as_str))
}

/// The GGUF name of MTP tensor `name` (after the replacements) in a model of `layers` trunk
/// layers and `nextn` MTP layers, as Ollama names it: `mtp.layers.N.rest` is `blk.{layers +
/// N}.rest`, the shared tensors go to the first MTP block. `None` for other names.
fn mtp_name(name: &str, layers: u32, nextn: u32) -> Result<Option<String>, ConvertError> {
    if let Some((layer, rest)) = name
        .strip_prefix("mtp.layers.")
        .and_then(|r| r.split_once('.'))
        && !layer.is_empty()
        && layer.bytes().all(|b| b.is_ascii_digit())
        && let Ok(index) = layer.parse::<u32>()
    {
        // Go's uint32 sum; a name it wraps onto is caught as a duplicate.
        return Ok(Some(format!("blk.{}.{rest}", layers.wrapping_add(index))));
    }
    let Some(&(_, suffix)) = MTP_SHARED.iter().find(|(hf, _)| *hf == name) else {
        return Ok(None);
    };
    if nextn > 1 {
        // Ollama writes the shared tensors once per MTP layer.
        return Err(ConvertError::NotYet(
            "Qwen 3.5 models with more than one multi-token-prediction layer".into(),
        ));
    }
    Ok(Some(format!("blk.{layers}.{suffix}")))
}

/// The fused expert projections of the official checkpoints (`experts.gate_up_proj`
/// `[experts, 2 × ff, hidden]` and `experts.down_proj` `[experts, hidden, ff]`), by the part of
/// their name Ollama replaces.
const FUSED_GATE_UP: &str = ".mlp.experts.gate_up_proj";
const FUSED_DOWN: &str = ".mlp.experts.down_proj";

/// The per-expert projections Ollama stacks, with the GGUF tensor each layer's go into.
const EXPERT_PROJECTIONS: [(&str, &str); 3] = [
    ("gate_proj", "ffn_gate_exps"),
    ("up_proj", "ffn_up_exps"),
    ("down_proj", "ffn_down_exps"),
];

/// Whether `name` (a GGUF name) belongs to a mixture of experts.
fn is_expert_weight(name: &str) -> bool {
    name.contains(".mlp.experts") || name.contains("_exps.") || name.contains("_shexp")
}

/// The block and projection of a per-expert weight `blk.N.mlp.experts.*.P.weight` that Ollama
/// stacks (its `path.Match` pattern for each of the `blocks` layers, `*` any run of characters
/// but `/`), with the stacked tensor's name.
fn expert_projection(name: &str, blocks: u32) -> Option<String> {
    let rest = name.strip_prefix("blk.")?;
    let (block, rest) = rest.split_once('.')?;
    let index: u32 = block.parse().ok()?;
    // The pattern spells the block as Go formats it: no sign, no leading zeros.
    if index >= blocks || index.to_string() != block {
        return None;
    }
    let expert = rest.strip_prefix("mlp.experts.")?;
    EXPERT_PROJECTIONS.iter().find_map(|(projection, stacked)| {
        let middle = expert.strip_suffix(&format!(".{projection}.weight"))?;
        (!middle.contains('/')).then(|| format!("blk.{index}.{stacked}.weight"))
    })
}

/// Go's `strconv.ParseInt(s, 0, 64)` without digit separators: an optional sign, then a decimal
/// number, or a binary, octal or hexadecimal one by its prefix (a leading `0` is octal).
fn go_int(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let prefixed = |p: [&str; 2]| body.strip_prefix(p[0]).or_else(|| body.strip_prefix(p[1]));
    let (radix, digits) = if let Some(d) = prefixed(["0x", "0X"]) {
        (16, d)
    } else if let Some(d) = prefixed(["0b", "0B"]) {
        (2, d)
    } else if let Some(d) = prefixed(["0o", "0O"]) {
        (8, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// The order Ollama's `mergeTensors` stacks experts in: by number of dot-separated parts, then
/// part by part, numerically where both parts are integers and bytewise otherwise.
fn expert_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    x.len().cmp(&y.len()).then_with(|| {
        x.iter()
            .zip(&y)
            .map(|(p, q)| match (go_int(p), go_int(q)) {
                (Some(m), Some(n)) => m.cmp(&n),
                _ => p.cmp(q),
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// Stacks each layer's per-expert gate, up and down projections into one tensor each
/// (`ffn_{gate,up,down}_exps`, experts outermost), as Ollama merges them; a layer must have
/// all `experts` of a projection, of one shape.
fn stack_experts(
    tensors: &mut Vec<Planned<'_>>,
    blocks: u32,
    experts: u32,
) -> Result<(), ConvertError> {
    let mut groups: std::collections::BTreeMap<String, Vec<Planned<'_>>> = Default::default();
    let mut rest = Vec::with_capacity(tensors.len());
    for t in tensors.drain(..) {
        match expert_projection(&t.name, blocks) {
            Some(stacked) => groups.entry(stacked).or_default().push(t),
            None => rest.push(t),
        }
    }
    for (stacked, mut parts) in groups {
        if parts.len() != experts as usize {
            return Err(ConvertError::Experts {
                name: stacked,
                reason: format!(
                    "{} experts' weights, but num_experts is {experts}",
                    parts.len()
                ),
            });
        }
        parts.sort_by(|a, b| expert_order(&a.name, &b.name));
        rest.push(Planned::stack(stacked, parts)?);
    }
    *tensors = rest;
    Ok(())
}

/// A GGUF array of `int32`.
fn i32_array(values: &[i32]) -> Value<'static> {
    Value::Array(Array::new(
        ValueType::I32,
        values.iter().copied().map(Value::I32).collect(),
    ))
}

impl Architecture for Qwen35 {
    fn parameters(&self, c: &Config, folder: &ModelFolder) -> Result<Parameters, ConvertError> {
        let mut t = Text::of(c)?;
        if t.nextn == 0 {
            t.nextn = mtp_layers_in(folder)?;
        }
        let vision = Vision::read(c, folder)?;
        if !matches!(t.scaling_type.as_str(), "" | "default") {
            return Err(ConvertError::NotYet(format!(
                "Qwen 3.5 models with {:?} rope scaling",
                t.scaling_type
            )));
        }

        let mut p = Parameters::new();
        // Go's uint32 sum.
        p.insert("block_count", Value::U32(t.layers.wrapping_add(t.nextn)));
        if t.nextn > 0 {
            p.insert("nextn_predict_layers", Value::U32(t.nextn));
        }
        p.insert("context_length", Value::U32(t.context));
        p.insert("embedding_length", Value::U32(t.hidden));
        p.insert("feed_forward_length", Value::U32(t.feed_forward));
        if t.experts > 0 {
            p.insert("expert_count", Value::U32(t.experts));
            p.insert("expert_used_count", Value::U32(t.experts_used));
            if let Some(norm) = t.norm_topk_prob {
                p.insert("norm_top_k_prob", Value::Bool(norm));
            }
            if t.expert_feed_forward > 0 {
                p.insert(
                    "expert_feed_forward_length",
                    Value::U32(t.expert_feed_forward),
                );
            }
            if t.shared_expert_feed_forward > 0 {
                p.insert(
                    "expert_shared_feed_forward_length",
                    Value::U32(t.shared_expert_feed_forward),
                );
            }
        }
        p.insert("attention.head_count", Value::U32(t.heads));
        p.insert("attention.key_length", Value::U32(t.head_dim));
        p.insert("attention.value_length", Value::U32(t.head_dim));
        p.insert("attention.layer_norm_rms_epsilon", Value::F32(t.rms_eps));
        p.insert("rope.freq_base", Value::F32(t.rope_theta));
        // Go's uint32(float32(headDim) * partialRotary): the product in float32, truncated.
        p.insert(
            "rope.dimension_count",
            Value::U32((t.head_dim as f32 * t.partial_rotary) as u32),
        );
        if !t.mrope_sections.is_empty() {
            p.insert("mrope_sections", i32_array(&t.mrope_sections));
            p.insert("rope.mrope_section", i32_array(&t.mrope_sections));
            let mut dimension = t.mrope_sections.clone();
            if dimension.len() == 3 {
                dimension.push(0);
            }
            p.insert("rope.dimension_sections", i32_array(&dimension));
        }
        if t.mrope_interleaved {
            p.insert("rope.mrope_interleaved", Value::Bool(true));
        }
        p.insert(
            "ssm.inner_size",
            Value::U32(t.value_head_dim.wrapping_mul(t.value_heads)),
        );
        p.insert("ssm.state_size", Value::U32(t.key_head_dim));
        p.insert("ssm.group_count", Value::U32(t.key_heads));
        p.insert("ssm.time_step_rank", Value::U32(t.value_heads));
        p.insert("ssm.conv_kernel", Value::U32(t.conv_kernel));
        // The weights are stored with their value heads tiled (see `adjust_tensors`).
        if reorders_value_heads(c)? {
            p.insert("ssm.v_head_reordered", Value::Bool(true));
        }
        if t.full_attention_interval > 0 {
            p.insert(
                "full_attention_interval",
                Value::U32(t.full_attention_interval),
            );
        }
        // The largest per-layer count, which is the full-attention layers' (checked above to exist).
        p.insert("attention.head_count_kv", Value::U32(t.kv_heads));
        if vision.depth > 0 {
            vision.insert_model_keys(&mut p);
        }
        for (key, field) in [
            ("image_token_id", "image_token_id"),
            ("vision_start_token_id", "vision_start_token_id"),
            ("vision_end_token_id", "vision_end_token_id"),
        ] {
            let id = c.u32(field)?;
            if id > 0 {
                p.insert(key, Value::U32(id));
            }
        }
        Ok(p)
    }

    fn replacements(&self) -> &'static [(&'static str, &'static str)] {
        // Ollama's list, in its order (Go's replacer prefers earlier pairs).
        &[
            ("lm_head", "output"),
            ("model.language_model.embed_tokens", "token_embd"),
            ("model.language_model.norm", "output_norm"),
            ("model.language_model.layers", "blk"),
            ("model.embed_tokens", "token_embd"),
            ("model.norm", "output_norm"),
            ("model.layers", "blk"),
            ("model.visual", "v"),
            ("patch_embed.proj", "patch_embed"),
            ("blocks", "blk"),
            ("attn.qkv", "attn_qkv"),
            ("attn.proj", "attn_out"),
            ("deepstack_merger_list", "deepstack_merger"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "post_attention_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.q_norm", "attn_q_norm"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.k_norm", "attn_k_norm"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("linear_attn.in_proj_qkvz", "ssm_in"),
            ("linear_attn.in_proj_ba", "ssm_ba"),
            ("linear_attn.in_proj_qkv", "attn_qkv"),
            ("linear_attn.in_proj_z", "attn_gate"),
            ("linear_attn.in_proj_a", "ssm_alpha"),
            ("linear_attn.in_proj_b", "ssm_beta"),
            ("linear_attn.conv1d", "ssm_conv1d"),
            ("linear_attn.dt_bias", "ssm_dt.bias"),
            ("linear_attn.dt_proj", "ssm_dt"),
            ("linear_attn.A_log", "ssm_a"),
            ("linear_attn.norm", "ssm_norm"),
            ("linear_attn.out_proj", "ssm_out"),
            ("mlp.gate.weight", "ffn_gate_inp.weight"),
            ("mlp.shared_expert.down_proj", "ffn_down_shexp"),
            ("mlp.shared_expert.gate_proj", "ffn_gate_shexp"),
            ("mlp.shared_expert.up_proj", "ffn_up_shexp"),
            ("mlp.shared_expert_gate", "ffn_gate_inp_shexp"),
            ("mlp.down_proj", "ffn_down"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
        ]
    }

    fn split_projector<'f>(
        &self,
        c: &Config,
        folder: &ModelFolder,
        tensors: &mut Vec<Planned<'f>>,
    ) -> Result<Option<Projector<'f>>, ConvertError> {
        let text_hidden = Text::of(c)?.hidden;
        Vision::read(c, folder)?.split(c, text_hidden, tensors)
    }

    fn adjust_tensors(
        &self,
        c: &Config,
        _vocab_len: usize,
        tensors: &mut Vec<Planned<'_>>,
    ) -> Result<(), ConvertError> {
        let text = Text::of(c)?;
        let reorder = reorders_value_heads(c)?;
        let value_head = u64::from(text.value_head_dim);
        let nextn = match text.nextn {
            0 => mtp_layers_named(tensors.iter().map(|t| t.name.as_str()))?,
            n => n,
        };
        for t in tensors.iter_mut() {
            if let Some(name) = mtp_name(&t.name, text.layers, nextn)? {
                t.name = name;
            }
        }
        // Renamed MTP tensors may meet a trunk tensor's (or each other's) name.
        let mut names = std::collections::BTreeSet::new();
        for t in tensors.iter() {
            if !names.insert(t.name.clone()) {
                return Err(ConvertError::DuplicateTensor(t.name.clone()));
            }
        }
        if text.experts == 0 {
            if let Some(t) = tensors.iter().find(|t| is_expert_weight(&t.name)) {
                return Err(ConvertError::InvalidConfig(format!(
                    "qwen3next: {:?} is an expert weight, but num_experts is not set",
                    t.name
                )));
            }
        } else {
            stack_experts(tensors, text.layers.wrapping_add(nextn), text.experts)?;
        }
        let mut out = Vec::with_capacity(tensors.len() + text.layers as usize);
        for mut t in tensors.drain(..) {
            let name = t.name.as_str();
            if name.starts_with("v.") {
                // Ollama keeps such tensors in the model GGUF, which no runtime reads.
                return Err(ConvertError::NotYet(format!(
                    "Qwen 3.5 vision tensors ({name}) without a vision tower in \
                     config.json (vision_config.depth 0)"
                )));
            }
            if name.contains(FUSED_GATE_UP) {
                let names = ["ffn_gate_exps", "ffn_up_exps"]
                    .map(|to| name.replace(FUSED_GATE_UP, &format!(".{to}.weight")));
                out.extend(t.halves(names)?);
                continue;
            }
            if name.contains(FUSED_DOWN) {
                // Renamed only: the storage stays the one the source name decided.
                t.name = name.replace(FUSED_DOWN, ".ffn_down_exps.weight");
                out.push(t);
                continue;
            }
            if name.contains(".mlp.experts.") {
                return Err(ConvertError::Experts {
                    name: t.name.clone(),
                    reason: "not a per-expert projection of a layer of the model, nor a fused one"
                        .into(),
                });
            }
            if name.ends_with(".ssm_in.weight") || name.ends_with(".ssm_ba.weight") {
                // Qwen3-Next's fused projections, which Qwen 3.5 checkpoints do not have.
                return Err(ConvertError::NotYet(
                    "Qwen3-Next's fused linear-attention projections".into(),
                ));
            }
            let shifted_norm = (name.ends_with("_norm.weight")
                && !name.ends_with(".ssm_norm.weight"))
                || name.ends_with(".nextn.enorm.weight")
                || name.ends_with(".nextn.hnorm.weight");
            let tiling = if shifted_norm {
                t.values = ValueMap::AddOne;
                None
            } else if name.ends_with(".ssm_a") {
                t.values = ValueMap::NegExp;
                Some(text.tiling(Axis::Rows, 0, 1))
            } else if name.ends_with(".attn_qkv.weight") {
                Some(text.tiling(Axis::Rows, text.qk_rows(), value_head))
            } else if name.ends_with(".attn_gate.weight") {
                Some(text.tiling(Axis::Rows, 0, value_head))
            } else if name.ends_with(".ssm_beta.weight")
                || name.ends_with(".ssm_alpha.weight")
                || name.ends_with(".ssm_dt")
                || name.ends_with(".ssm_dt.bias")
            {
                Some(text.tiling(Axis::Rows, 0, 1))
            } else if name.ends_with(".ssm_out.weight") {
                Some(text.tiling(Axis::Columns, 0, value_head))
            } else if name.ends_with(".ssm_conv1d.weight") {
                // Hugging Face's [channels, 1, kernel] convolution, stored as [channels, kernel].
                if let &[channels, 1, kernel] | &[1, channels, kernel] = t.shape() {
                    t.reshape(vec![channels, kernel])?;
                }
                Some(text.tiling(Axis::Rows, text.qk_rows(), value_head))
            } else {
                None
            };
            if let Some(tiling) = tiling.filter(|_| reorder) {
                t.tile_value_heads(tiling)?;
            }
            out.push(t);
        }
        *tensors = out;
        Ok(())
    }

    fn gguf_name(&self) -> &'static str {
        "qwen35"
    }

    fn gguf_name_for_config(&self, c: &Config) -> Result<&'static str, ConvertError> {
        Ok(if Text::of(c)?.experts > 0 {
            "qwen35moe"
        } else {
            "qwen35"
        })
    }

    fn extra_metadata(&self, _tokenizer: &mut Tokenizer, kv: &mut Metadata) {
        kv.insert("tokenizer.ggml.pre".into(), Value::string("qwen35"));
    }
}

#[cfg(test)]
mod tests {
    use crate::convert::{Conversion, ConvertError, ModelFolder, test_folder};
    use kiln_gguf::{Gguf, Limits, Value};

    /// A text config with 2 key heads and 4 value heads of one value each (so the reorders are
    /// visible on a few numbers), merged with `extra` (a JSON object's members).
    fn config(text_extra: &str, top_extra: &str) -> String {
        format!(
            r#"{{"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
                {top_extra}
                "text_config": {{"hidden_size": 2, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 4,
                    "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
                    "layer_types": ["linear_attention", "full_attention"],
                    "linear_conv_kernel_dim": 2, "linear_key_head_dim": 1,
                    "linear_num_key_heads": 2, "linear_num_value_heads": 4,
                    "linear_value_head_dim": 1,
                    {text_extra}
                    "rope_parameters": {{"rope_type": "default", "rope_theta": 10000000,
                        "partial_rotary_factor": 0.25, "mrope_interleaved": true,
                        "mrope_section": [11, 11, 10]}}}}}}"#
        )
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    const L: &str = "model.language_model.layers.0.";

    /// The linear-attention layer's tensors of Ollama's reorder tests (`convert_qwen3next_test.go`),
    /// under their Hugging Face names, with `extra` added.
    fn folder(config: &str, extra: &[(&str, &[u64], Vec<u8>)]) -> ModelFolder {
        let seq = |n: usize| f32s(&(0..n).map(|v| v as f32).collect::<Vec<_>>());
        let qkv = f32s(&[
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 23.0,
        ]);
        let mut owned: Vec<(String, Vec<u64>, Vec<u8>)> = vec![
            (
                format!("{L}linear_attn.in_proj_z.weight"),
                vec![4, 2],
                seq(8),
            ),
            (
                format!("{L}linear_attn.in_proj_qkv.weight"),
                vec![8, 2],
                qkv.clone(),
            ),
            (
                format!("{L}linear_attn.out_proj.weight"),
                vec![2, 4],
                seq(8),
            ),
            (
                format!("{L}linear_attn.in_proj_b.weight"),
                vec![4, 2],
                seq(8),
            ),
            (format!("{L}linear_attn.dt_bias"), vec![4], seq(4)),
            (format!("{L}linear_attn.conv1d.weight"), vec![8, 1, 2], qkv),
            (
                format!("{L}linear_attn.A_log"),
                vec![4],
                f32s(&[0.0, 1.0, 2.0, 3.0]),
            ),
            (format!("{L}linear_attn.norm.weight"), vec![1], f32s(&[0.5])),
            (
                format!("{L}input_layernorm.weight"),
                vec![2],
                f32s(&[0.5, -0.25]),
            ),
        ];
        for (name, shape, data) in extra {
            owned.push(((*name).to_owned(), shape.to_vec(), data.clone()));
        }
        let views: Vec<(&str, &str, &[u64], &[u8])> = owned
            .iter()
            .map(|(n, s, d)| (n.as_str(), "F32", &s[..], &d[..]))
            .collect();
        test_folder(config, &views)
    }

    fn values(g: &Gguf<'_>, name: &str) -> Vec<f32> {
        let t = g.tensors().iter().find(|t| t.name() == name).unwrap();
        assert_eq!(t.ggml_type(), kiln_gguf::GgmlType::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn convert(folder: &ModelFolder) -> Result<Vec<u8>, ConvertError> {
        Conversion::plan(folder)?.write(Vec::new())
    }

    #[test]
    fn linear_attention_weights_are_stored_as_ollama_stores_them() {
        let f = folder(&config("", ""), &[]);
        let out = convert(&f).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let half = |name: &str| -> Vec<f32> {
            let t = g.tensors().iter().find(|t| t.name() == name).unwrap();
            t.data()
                .chunks_exact(2)
                .map(|b| kiln_quant::f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect()
        };
        // Ollama's expectations, test by test.
        assert_eq!(
            half("blk.0.attn_gate.weight"),
            [0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]
        );
        assert_eq!(
            half("blk.0.attn_qkv.weight"),
            [
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 10.0, 11.0, 20.0, 21.0, 12.0, 13.0, 22.0,
                23.0
            ]
        );
        assert_eq!(
            half("blk.0.ssm_out.weight"),
            [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
        assert_eq!(
            half("blk.0.ssm_beta.weight"),
            [0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]
        );
        assert_eq!(values(&g, "blk.0.ssm_dt.bias"), [0.0, 2.0, 1.0, 3.0]);
        // The convolution is stored F32 as [channels, kernel], its value channels reordered.
        let conv = g
            .tensors()
            .iter()
            .find(|t| t.name() == "blk.0.ssm_conv1d.weight")
            .unwrap();
        assert_eq!(conv.dims(), [2, 8]);
        assert_eq!(
            values(&g, "blk.0.ssm_conv1d.weight"),
            [
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 10.0, 11.0, 20.0, 21.0, 12.0, 13.0, 22.0,
                23.0
            ]
        );
        // A = -exp(A_log), reordered; the zero-centred norm shifted, the gated norm not.
        let a: Vec<f32> = [0.0f64, 2.0, 1.0, 3.0]
            .iter()
            .map(|v| -(v.exp() as f32))
            .collect();
        assert_eq!(values(&g, "blk.0.ssm_a"), a);
        assert_eq!(values(&g, "blk.0.attn_norm.weight"), [1.5, 0.75]);
        assert_eq!(values(&g, "blk.0.ssm_norm.weight"), [0.5]);
    }

    #[test]
    fn metadata_is_ollamas() {
        let f = folder(
            &config(
                "",
                r#""image_token_id": 1001, "vision_start_token_id": 1002, "vision_end_token_id": 0,"#,
            ),
            &[],
        );
        let out = convert(&f).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let m = g.metadata();
        let get = |key: &str| m.get(key).cloned();
        let u32_of = |key: &str| match get(key) {
            Some(Value::U32(v)) => v,
            other => panic!("{key}: {other:?}"),
        };
        let i32s = |key: &str| -> Vec<i32> {
            match get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::I32(i) => i,
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                other => panic!("{key}: {other:?}"),
            }
        };
        assert!(matches!(get("general.architecture"), Some(Value::String(s)) if s == "qwen35"));
        assert!(matches!(get("tokenizer.ggml.pre"), Some(Value::String(s)) if s == "qwen35"));
        for (key, want) in [
            ("qwen35.block_count", 2),
            ("qwen35.context_length", 64),
            ("qwen35.embedding_length", 2),
            ("qwen35.feed_forward_length", 4),
            ("qwen35.attention.head_count", 2),
            ("qwen35.attention.head_count_kv", 1),
            ("qwen35.attention.key_length", 4),
            ("qwen35.attention.value_length", 4),
            ("qwen35.rope.dimension_count", 1),
            ("qwen35.ssm.inner_size", 4),
            ("qwen35.ssm.state_size", 1),
            ("qwen35.ssm.group_count", 2),
            ("qwen35.ssm.time_step_rank", 4),
            ("qwen35.ssm.conv_kernel", 2),
            ("qwen35.image_token_id", 1001),
            ("qwen35.vision_start_token_id", 1002),
        ] {
            assert_eq!(u32_of(key), want, "{key}");
        }
        assert!(matches!(get("qwen35.rope.freq_base"), Some(Value::F32(f)) if f == 1e7));
        assert!(
            matches!(get("qwen35.attention.layer_norm_rms_epsilon"), Some(Value::F32(f)) if f == 1e-6)
        );
        assert_eq!(i32s("qwen35.mrope_sections"), [11, 11, 10]);
        assert_eq!(i32s("qwen35.rope.mrope_section"), [11, 11, 10]);
        assert_eq!(i32s("qwen35.rope.dimension_sections"), [11, 11, 10, 0]);
        assert!(matches!(
            get("qwen35.rope.mrope_interleaved"),
            Some(Value::Bool(true))
        ));
        assert!(matches!(
            get("qwen35.ssm.v_head_reordered"),
            Some(Value::Bool(true))
        ));
        // Unset in the config, so not written (and no zero token id either).
        assert!(get("qwen35.full_attention_interval").is_none());
        assert!(get("qwen35.vision_end_token_id").is_none());
        assert!(get("qwen35.nextn_predict_layers").is_none());
    }

    #[test]
    fn top_level_hyperparameters_serve_without_text_config() {
        let flat = r#"{"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
            "hidden_size": 2, "num_hidden_layers": 4, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 4, "rope_theta": 1000, "partial_rotary_factor": 0.5,
            "full_attention_interval": 4, "linear_conv_kernel_dim": 2, "linear_key_head_dim": 1,
            "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_value_head_dim": 1}"#;
        let out = convert(&folder(flat, &[])).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let m = g.metadata();
        assert!(matches!(
            m.get("qwen35.full_attention_interval"),
            Some(Value::U32(4))
        ));
        assert!(matches!(
            m.get("qwen35.rope.dimension_count"),
            Some(Value::U32(2))
        ));
        assert!(m.get("qwen35.rope.dimension_sections").is_none());
    }

    #[test]
    fn qwen3_next_layouts_are_not_reordered() {
        let c = config("", "").replace(
            r#""model_type": "qwen3_5""#,
            r#""model_type": "qwen3_next""#,
        );
        let out = convert(&folder(&c, &[])).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        assert!(g.metadata().get("qwen35.ssm.v_head_reordered").is_none());
        assert_eq!(values(&g, "blk.0.ssm_dt.bias"), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn the_mtp_layer_becomes_the_block_after_the_last() {
        let half = f32s(&[0.5, -0.5]);
        let mtp: [(&str, &[u64], Vec<u8>); 4] = [
            ("mtp.fc.weight", &[2, 4], f32s(&[0.0; 8])),
            ("mtp.pre_fc_norm_embedding.weight", &[2], half.clone()),
            ("mtp.norm.weight", &[2], half.clone()),
            ("mtp.layers.0.input_layernorm.weight", &[2], half.clone()),
        ];
        // No MTP count in the config: Ollama counts the layers from the tensor names.
        let out = convert(&folder(&config("", ""), &mtp)).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        assert!(matches!(
            g.metadata().get("qwen35.block_count"),
            Some(Value::U32(3))
        ));
        assert!(matches!(
            g.metadata().get("qwen35.nextn_predict_layers"),
            Some(Value::U32(1))
        ));
        let names: Vec<&str> = g.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(
            &names[names.len() - 4..],
            [
                "blk.2.attn_norm.weight",
                "blk.2.nextn.eh_proj.weight",
                "blk.2.nextn.enorm.weight",
                "blk.2.nextn.shared_head_norm.weight"
            ]
        );
        for norm in [
            "blk.2.attn_norm.weight",
            "blk.2.nextn.enorm.weight",
            "blk.2.nextn.shared_head_norm.weight",
        ] {
            assert_eq!(values(&g, norm), [1.5, 0.5], "{norm}");
        }
        // Two MTP layers would need the shared tensors once per layer, as Ollama writes them.
        let two = config(r#""mtp_num_hidden_layers": 2,"#, "");
        assert!(matches!(
            convert(&folder(&two, &mtp)),
            Err(ConvertError::NotYet(what)) if what.contains("more than one multi-token")
        ));
        // Two names for one GGUF tensor.
        let twice = [
            ("mtp.norm.weight", &[2][..], half.clone()),
            ("mtp.shared_head.norm.weight", &[2][..], half),
        ];
        assert!(matches!(
            convert(&folder(&config("", ""), &twice)),
            Err(ConvertError::DuplicateTensor(name)) if name == "blk.2.nextn.shared_head_norm.weight"
        ));
    }

    /// A mixture of 2 experts of feed-forward size 1 over hidden size 2: layer 0 one tensor per
    /// expert and projection (given out of order), layer 1 fused.
    fn experts() -> Vec<(String, Vec<u64>, Vec<u8>)> {
        let mut t = Vec::new();
        let m = "model.language_model.layers.";
        for (x, base) in [(1u32, 2.0f32), (0, 0.0)] {
            for (i, p) in ["gate_proj", "up_proj", "down_proj"].iter().enumerate() {
                let shape = if *p == "down_proj" {
                    vec![2, 1]
                } else {
                    vec![1, 2]
                };
                let v = base + 10.0 * i as f32;
                t.push((
                    format!("{m}0.mlp.experts.{x}.{p}.weight"),
                    shape,
                    f32s(&[v, v + 1.0]),
                ));
            }
        }
        // [experts 2, 2 × ff 1, hidden 2]: expert 0 gate 0 1, up 2 3; expert 1 gate 4 5, up 6 7.
        let seq = |n: usize| f32s(&(0..n).map(|v| v as f32).collect::<Vec<_>>());
        t.push((
            format!("{m}1.mlp.experts.gate_up_proj"),
            vec![2, 2, 2],
            seq(8),
        ));
        t.push((format!("{m}1.mlp.experts.down_proj"), vec![2, 2, 1], seq(4)));
        for l in 0..2 {
            t.push((format!("{m}{l}.mlp.gate.weight"), vec![2, 2], seq(4)));
            t.push((
                format!("{m}{l}.mlp.shared_expert_gate.weight"),
                vec![1, 2],
                seq(2),
            ));
        }
        t
    }

    fn moe_folder(text_extra: &str, tensors: &[(String, Vec<u64>, Vec<u8>)]) -> ModelFolder {
        let c = config(
            &format!(
                r#""num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 1,
                   "shared_expert_intermediate_size": 3, "norm_topk_prob": false, {text_extra}"#
            ),
            "",
        )
        .replace(
            "Qwen3_5ForConditionalGeneration",
            "Qwen3_5MoeForConditionalGeneration",
        );
        let views: Vec<(&str, &[u64], Vec<u8>)> = tensors
            .iter()
            .map(|(n, s, d)| (n.as_str(), &s[..], d.clone()))
            .collect();
        folder(&c, &views)
    }

    #[test]
    fn experts_are_stacked_and_split_as_ollama_stores_them() {
        let out = convert(&moe_folder("", &experts())).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let m = g.metadata();
        assert!(
            matches!(m.get("general.architecture"), Some(Value::String(s)) if s == "qwen35moe")
        );
        for (key, want) in [
            ("qwen35moe.expert_count", 2),
            ("qwen35moe.expert_used_count", 1),
            ("qwen35moe.expert_feed_forward_length", 1),
            ("qwen35moe.expert_shared_feed_forward_length", 3),
            ("qwen35moe.feed_forward_length", 4),
        ] {
            assert!(
                matches!(m.get(key), Some(Value::U32(v)) if *v == want),
                "{key}"
            );
        }
        assert!(matches!(
            m.get("qwen35moe.norm_top_k_prob"),
            Some(Value::Bool(false))
        ));
        let tensor = |name: &str| g.tensors().iter().find(|t| t.name() == name).unwrap();
        let half = |name: &str| -> Vec<f32> {
            let t = tensor(name);
            assert_eq!(t.ggml_type(), kiln_gguf::GgmlType::F16, "{name}");
            t.data()
                .chunks_exact(2)
                .map(|b| kiln_quant::f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect()
        };
        // Stacked in expert order (by number, not by name or by file order).
        assert_eq!(tensor("blk.0.ffn_gate_exps.weight").dims(), [2, 1, 2]);
        assert_eq!(half("blk.0.ffn_gate_exps.weight"), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(half("blk.0.ffn_up_exps.weight"), [10.0, 11.0, 12.0, 13.0]);
        assert_eq!(tensor("blk.0.ffn_down_exps.weight").dims(), [1, 2, 2]);
        assert_eq!(half("blk.0.ffn_down_exps.weight"), [20.0, 21.0, 22.0, 23.0]);
        // The fused projection split per expert.
        assert_eq!(tensor("blk.1.ffn_gate_exps.weight").dims(), [2, 1, 2]);
        assert_eq!(half("blk.1.ffn_gate_exps.weight"), [0.0, 1.0, 4.0, 5.0]);
        assert_eq!(half("blk.1.ffn_up_exps.weight"), [2.0, 3.0, 6.0, 7.0]);
        assert_eq!(half("blk.1.ffn_down_exps.weight"), [0.0, 1.0, 2.0, 3.0]);
        // The router F32, the shared expert's gate F16 (2-D), as Ollama stores them.
        assert_eq!(
            values(&g, "blk.1.ffn_gate_inp.weight"),
            [0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(half("blk.0.ffn_gate_inp_shexp.weight"), [0.0, 1.0]);
        assert!(g.tensors().iter().all(|t| !t.name().contains("experts")));
    }

    #[test]
    fn experts_that_do_not_fit_are_clear_errors() {
        let message = |tensors: &[(String, Vec<u64>, Vec<u8>)]| {
            convert(&moe_folder("", tensors)).err().unwrap().to_string()
        };
        let mut missing = experts();
        missing.retain(|(n, _, _)| !n.ends_with("experts.1.up_proj.weight"));
        assert_eq!(
            message(&missing),
            "cannot store the expert weights \"blk.0.ffn_up_exps.weight\": 1 experts' weights, \
             but num_experts is 2"
        );
        let mut shapes = experts();
        shapes[0].1 = vec![2, 1];
        assert!(
            message(&shapes).starts_with("cannot store the expert weights \"blk.0.ffn_gate_exps")
        );
        let mut odd = experts();
        let fused = odd
            .iter_mut()
            .find(|t| t.0.ends_with("gate_up_proj"))
            .unwrap();
        fused.1 = vec![2, 1, 4];
        assert_eq!(
            message(&odd),
            "cannot store the expert weights \"blk.1.mlp.experts.gate_up_proj\": an odd second \
             dimension does not split into halves (shape [2, 1, 4])"
        );
        let mut stray = experts();
        let mut extra = stray[0].clone();
        extra.0 = "model.language_model.layers.7.mlp.experts.1.gate_proj.weight".into();
        stray.push(extra);
        assert!(message(&stray).contains("not a per-expert projection of a layer"));
    }

    #[test]
    fn experts_are_ordered_as_ollamas_merge_orders_them() {
        use std::cmp::Ordering::*;
        assert_eq!(super::expert_order("a.10.b", "a.9.b"), Greater);
        assert_eq!(super::expert_order("a.0x10.b", "a.15.b"), Greater);
        assert_eq!(super::expert_order("a.b", "a.1.b"), Less);
        assert_eq!(super::expert_order("a.x.b", "a.1.b"), Greater);
        assert_eq!(super::go_int("010"), Some(8));
        assert_eq!(super::go_int("-0b11"), Some(-3));
        assert_eq!(super::go_int("08"), None);
        assert_eq!(
            super::expert_projection("blk.3.mlp.experts.a.b.up_proj.weight", 4).as_deref(),
            Some("blk.3.ffn_up_exps.weight")
        );
        assert_eq!(
            super::expert_projection("blk.03.mlp.experts.0.up_proj.weight", 4),
            None
        );
        assert_eq!(
            super::expert_projection("blk.4.mlp.experts.0.up_proj.weight", 4),
            None
        );
    }

    #[test]
    fn mtp_layers_are_counted_as_ollama_counts_them() {
        let count = |names: &[&str]| super::mtp_layers_named(names.iter().copied()).unwrap();
        assert_eq!(count(&["blk.0.attn_norm.weight"]), 0);
        assert_eq!(count(&["mtp.fc.weight"]), 1);
        assert_eq!(
            count(&[
                "mtp.layers.3.x",
                "mtp.layers.-1.x",
                "mtp.layers.9.",
                "mtp.layers.+1.y"
            ]),
            4
        );
        assert!(super::mtp_layers_named(["mtp.layers.4294967295.x"].into_iter()).is_err());
        assert_eq!(
            super::mtp_name("mtp.layers.+1.x", 2, 1).unwrap(),
            None,
            "Go's ParseUint takes no sign"
        );
        assert_eq!(
            super::mtp_name("mtp.layers.1.x", 2, 1).unwrap().as_deref(),
            Some("blk.3.x")
        );
    }

    #[test]
    fn what_is_not_converted_yet_is_refused_by_name() {
        let not_yet = |f: &ModelFolder| match convert(f) {
            Err(ConvertError::NotYet(what)) => what,
            other => panic!("{:?}", other.map(|_| ())),
        };
        let one = f32s(&[0.0]);
        // Vision tensors without a tower in the config: Ollama keeps them in the model GGUF.
        let what = not_yet(&folder(
            &config("", ""),
            &[("model.visual.blocks.0.norm1.weight", &[1], one.clone())],
        ));
        assert!(
            what.contains("v.blk.0.norm1.weight") && what.contains("vision_config.depth 0"),
            "{what}"
        );
        // Expert weights in a model that has no experts.
        assert_eq!(
            convert(&folder(
                &config("", ""),
                &[(
                    "model.language_model.layers.0.mlp.experts.0.up_proj.weight",
                    &[1],
                    one
                )]
            ))
            .err()
            .unwrap()
            .to_string(),
            "config.json: qwen3next: \"blk.0.mlp.experts.0.up_proj.weight\" is an expert \
             weight, but num_experts is not set"
        );
        let yarn = config("", "").replace(r#""rope_type": "default""#, r#""rope_type": "yarn""#);
        assert_eq!(
            not_yet(&folder(&yarn, &[])),
            "Qwen 3.5 models with \"yarn\" rope scaling"
        );
    }

    /// A folder of the text test layer (F32) plus `vision` tensors (name, dtype, shape, bytes)
    /// and, when given, a `preprocessor_config.json`.
    fn vision_folder(
        top_extra: &str,
        vision: &[(&str, &str, &[u64], Vec<u8>)],
        preprocessor: Option<&str>,
    ) -> ModelFolder {
        let text = folder(&config("", ""), &[]);
        let mut owned: Vec<(String, String, Vec<u64>, Vec<u8>)> = Vec::new();
        let bytes = text.read_binary("model.safetensors").unwrap();
        for t in crate::convert::Safetensors::parse(bytes).unwrap().tensors {
            owned.push((
                t.name.clone(),
                "F32".into(),
                t.shape.clone(),
                t.data.to_vec(),
            ));
        }
        for (n, d, s, b) in vision {
            owned.push(((*n).into(), (*d).into(), s.to_vec(), b.clone()));
        }
        let views: Vec<(&str, &str, &[u64], &[u8])> = owned
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), d.as_str(), &s[..], &b[..]))
            .collect();
        let mut files = std::collections::BTreeMap::from([
            ("config.json".to_owned(), config("", top_extra).into_bytes()),
            (
                "tokenizer.json".to_owned(),
                br#"{"model": {"vocab": {"a": 0, "b": 1, "c": 2, "d": 3}}}"#.to_vec(),
            ),
            (
                "model.safetensors".to_owned(),
                crate::convert::safetensors_for_tests(&views),
            ),
        ]);
        if let Some(pre) = preprocessor {
            files.insert("preprocessor_config.json".into(), pre.as_bytes().to_vec());
        }
        ModelFolder::from_bytes(files)
    }

    fn metadata_keys(g: &Gguf<'_>) -> Vec<String> {
        g.metadata().iter().map(|(k, _)| k.to_string()).collect()
    }

    fn bools(v: Option<Value<'_>>) -> Vec<bool> {
        match v {
            Some(Value::Array(a)) => a.iter().map(|v| matches!(v, Value::Bool(true))).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn floats(v: Option<Value<'_>>) -> Vec<f32> {
        match v {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::F32(f) => f,
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// Ollama's `MultimodalConverter` split for Qwen 3.5 (`TextKV`, `ProjectorKV`,
    /// `ProjectorTensors`): the model keeps the text tensors and loses the tower's keys (and
    /// the mrope and value-head keys); the projector gets `clip` metadata and the renamed tower,
    /// the patch convolution as two F32 frames, the position embedding F32, BF16 kept BF16.
    /// Expected values worked out by hand from convert_qwen3next.go.
    #[test]
    fn the_vision_tower_goes_to_a_projector_as_ollama_writes_it() {
        let seq = |n: usize| f32s(&(0..n).map(|v| v as f32).collect::<Vec<_>>());
        // BF16 bits of 1.0, -2.0, 0.5, ... (any values: they are kept as they are).
        let qkv_bf16: Vec<u8> = (0..48u16)
            .flat_map(|i| (0x3f80u16 + i * 7).to_le_bytes())
            .collect();
        let vision: [(&str, &str, &[u64], Vec<u8>); 10] = [
            (
                "model.visual.patch_embed.proj.weight",
                "F32",
                &[4, 1, 2, 2, 2],
                seq(32),
            ),
            ("model.visual.patch_embed.proj.bias", "F32", &[4], seq(4)),
            ("model.visual.pos_embed.weight", "F32", &[4, 4], seq(16)),
            ("model.visual.blocks.0.norm1.weight", "F32", &[4], seq(4)),
            (
                "model.visual.blocks.0.attn.qkv.weight",
                "BF16",
                &[12, 4],
                qkv_bf16.clone(),
            ),
            (
                "model.visual.blocks.0.attn.proj.weight",
                "F32",
                &[4, 4],
                seq(16),
            ),
            (
                "model.visual.blocks.0.mlp.linear_fc1.weight",
                "F32",
                &[8, 4],
                seq(32),
            ),
            ("model.visual.merger.norm.weight", "F32", &[4], seq(4)),
            (
                "model.visual.merger.linear_fc2.weight",
                "F32",
                &[2, 16],
                seq(32),
            ),
            (
                "model.visual.deepstack_merger_list.0.linear_fc1.weight",
                "F32",
                &[16, 16],
                seq(256),
            ),
        ];
        let f = vision_folder(
            r#""vision_config": {"depth": 2, "hidden_size": 4, "num_heads": 2,
                "intermediate_size": 8, "num_position_embeddings": 4, "in_channels": 1,
                "patch_size": 2, "deepstack_visual_indexes": [1, 5, -1]},
               "image_token_id": 1001, "vision_start_token_id": 1002,"#,
            &vision,
            Some(
                r#"{"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
                    "size": {"shortest_edge": 64, "longest_edge": 4096},
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1]}"#,
            ),
        );
        let plan = Conversion::plan(&f).unwrap();
        let model_bytes = plan.write(Vec::new()).unwrap();
        let model = Gguf::parse(&model_bytes, &Limits::default()).unwrap();
        assert!(model.tensors().iter().all(|t| !t.name().starts_with("v.")));
        assert!(model.tensor("blk.0.attn_qkv.weight").is_some());
        let keys = metadata_keys(&model);
        for gone in [
            "qwen35.image_token_id",
            "qwen35.vision_start_token_id",
            "qwen35.mrope_sections",
            "qwen35.rope.mrope_section",
            "qwen35.rope.mrope_interleaved",
            "qwen35.ssm.v_head_reordered",
        ] {
            assert!(!keys.iter().any(|k| k == gone), "{gone} is in the model");
        }
        assert!(!keys.iter().any(|k| k.starts_with("qwen35.vision")));
        assert!(keys.iter().any(|k| k == "qwen35.rope.dimension_sections"));

        let projector = plan.projector().expect("a projector");
        let bytes = projector.write(Vec::new()).unwrap();
        assert_eq!(bytes.len() as u64, projector.output_len().unwrap());
        let p = Gguf::parse(&bytes, &Limits::default()).unwrap();
        let m = p.metadata();
        let mut want_keys = vec![
            "general.architecture",
            "general.type",
            "general.file_type",
            "general.quantization_version",
            "clip.has_vision_encoder",
            "clip.projector_type",
            "clip.use_gelu",
            "clip.vision.block_count",
            "clip.vision.embedding_length",
            "clip.vision.feed_forward_length",
            "clip.vision.attention.head_count",
            "clip.vision.image_size",
            "clip.vision.patch_size",
            "clip.vision.projection_dim",
            "clip.vision.spatial_merge_size",
            "clip.vision.attention.layer_norm_epsilon",
            "clip.vision.is_deepstack_layers",
            "clip.vision.image_mean",
            "clip.vision.image_std",
        ];
        want_keys.sort_unstable();
        assert_eq!(metadata_keys(&p), want_keys, "sorted, as Go writes them");
        let string = |k: &str| match m.get(k).cloned() {
            Some(Value::String(s)) => s.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        let u32_of = |k: &str| match m.get(k).cloned() {
            Some(Value::U32(v)) => v,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(string("general.architecture"), "clip");
        assert_eq!(string("general.type"), "mmproj");
        assert_eq!(string("clip.projector_type"), "qwen3vl_merger");
        assert!(matches!(
            m.get("clip.use_gelu").cloned(),
            Some(Value::Bool(true))
        ));
        assert!(matches!(
            m.get("clip.has_vision_encoder").cloned(),
            Some(Value::Bool(true))
        ));
        for (k, want) in [
            ("general.file_type", 1),
            ("general.quantization_version", 2),
            ("clip.vision.block_count", 2),
            ("clip.vision.embedding_length", 4),
            ("clip.vision.feed_forward_length", 8),
            ("clip.vision.attention.head_count", 2),
            // sqrt(4) patches of 2 (the config's patch size wins over the preprocessor's).
            ("clip.vision.image_size", 4),
            ("clip.vision.patch_size", 2),
            // No out_hidden_size: the text model's width.
            ("clip.vision.projection_dim", 2),
            // From the preprocessor, which the config leaves it to.
            ("clip.vision.spatial_merge_size", 2),
        ] {
            assert_eq!(u32_of(k), want, "{k}");
        }
        assert!(matches!(
            m.get("clip.vision.attention.layer_norm_epsilon").cloned(),
            Some(Value::F32(e)) if e == 1e-6
        ));
        // Indexes 5 and -1 are outside the two layers and ignored.
        assert_eq!(
            bools(m.get("clip.vision.is_deepstack_layers").cloned()),
            [false, true]
        );
        assert_eq!(
            floats(m.get("clip.vision.image_mean").cloned()),
            [0.5, 0.5, 0.5]
        );
        assert_eq!(
            floats(m.get("clip.vision.image_std").cloned()),
            [0.25, 0.5, 1.0]
        );

        let mut want = vec![
            ("mm.2.weight", "F16", vec![16, 2]),
            ("v.blk.0.attn_out.weight", "F16", vec![4, 4]),
            ("v.blk.0.attn_qkv.weight", "BF16", vec![4, 12]),
            ("v.blk.0.ffn_up.weight", "F16", vec![4, 8]),
            ("v.blk.0.ln1.weight", "F32", vec![4]),
            (
                "v.deepstack_merger.0.linear_fc1.weight",
                "F16",
                vec![16, 16],
            ),
            ("v.patch_embd.bias", "F32", vec![4]),
            ("v.patch_embd.weight", "F32", vec![2, 2, 1, 4]),
            ("v.patch_embd.weight.1", "F32", vec![2, 2, 1, 4]),
            ("v.position_embd.weight", "F32", vec![4, 4]),
            ("v.post_ln.weight", "F32", vec![4]),
        ];
        want.sort_by(|a, b| a.0.cmp(b.0));
        let got: Vec<(&str, String, Vec<u64>)> = p
            .tensors()
            .iter()
            .map(|t| {
                let ty = t.ggml_type().name().unwrap().to_ascii_uppercase();
                (t.name(), ty, t.dims().to_vec())
            })
            .collect();
        let want: Vec<(&str, String, Vec<u64>)> = want
            .into_iter()
            .map(|(n, ty, d)| (n, ty.to_owned(), d))
            .collect();
        assert_eq!(got, want);
        // Frame t of output channel o: source values o·8 + t·4 + 0..4.
        let frame = |t: usize| -> Vec<f32> {
            (0..4)
                .flat_map(|o| (0..4).map(move |k| (o * 8 + t * 4 + k) as f32))
                .collect()
        };
        assert_eq!(values(&p, "v.patch_embd.weight"), frame(0));
        assert_eq!(values(&p, "v.patch_embd.weight.1"), frame(1));
        let seq16: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(values(&p, "v.position_embd.weight"), seq16);
        assert_eq!(
            p.tensor("v.blk.0.attn_qkv.weight").unwrap().data(),
            &qkv_bf16[..]
        );
        let out = p.tensor("v.blk.0.attn_out.weight").unwrap().data();
        let halves: Vec<f32> = out
            .chunks_exact(2)
            .map(|b| kiln_quant::f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        assert_eq!(halves, seq16);
    }

    /// Ollama's other projector rules: the image size falls back to 768 when the position
    /// embeddings are not a square, `out_hidden_size` and `layer_norm_epsilon` are used when
    /// set, a preprocessor file Go cannot decode is ignored whole, and a patch convolution of
    /// another shape is left out; a tower in the config without its tensors stays in the
    /// model's keys (Ollama's single-file fallback); and a hostile depth is a clear error.
    #[test]
    fn projector_fallbacks_are_ollamas() {
        let one = f32s(&[1.0, 2.0]);
        let four_d = f32s(&[0.0; 8]);
        let vision: [(&str, &str, &[u64], Vec<u8>); 2] = [
            ("model.visual.merger.norm.weight", "F32", &[2], one),
            (
                "model.visual.patch_embed.proj.weight",
                "F32",
                &[2, 1, 2, 2],
                four_d,
            ),
        ];
        let tower = r#""vision_config": {"depth": 1, "hidden_size": 2,
            "num_position_embeddings": 8, "patch_size": 2, "out_hidden_size": 7,
            "layer_norm_epsilon": 1e-5},"#;
        // "merge_size" of the wrong type: nothing of the file is taken.
        let bad_pre = r#"{"merge_size": "2", "image_mean": [0.5]}"#;
        let f = vision_folder(tower, &vision, Some(bad_pre));
        let plan = Conversion::plan(&f).unwrap();
        let bytes = plan.projector().unwrap().write(Vec::new()).unwrap();
        let p = Gguf::parse(&bytes, &Limits::default()).unwrap();
        let m = p.metadata();
        let u32_of = |k: &str| match m.get(k).cloned() {
            Some(Value::U32(v)) => v,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(u32_of("clip.vision.image_size"), 768);
        assert_eq!(u32_of("clip.vision.projection_dim"), 7);
        assert_eq!(u32_of("clip.vision.spatial_merge_size"), 0);
        assert!(m.get("clip.vision.image_mean").cloned().is_none());
        assert!(matches!(
            m.get("clip.vision.attention.layer_norm_epsilon").cloned(),
            Some(Value::F32(e)) if e == 1e-5
        ));
        assert_eq!(
            bools(m.get("clip.vision.is_deepstack_layers").cloned()),
            [false]
        );
        let names: Vec<&str> = p.tensors().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["v.post_ln.weight"]);

        // A tower in the config, none in the weights: one GGUF with the tower's keys.
        let f = vision_folder(tower, &[], Some(r#"{"merge_size": 2}"#));
        let plan = Conversion::plan(&f).unwrap();
        assert!(plan.projector().is_none());
        let out = plan.write(Vec::new()).unwrap();
        let g = Gguf::parse(&out, &Limits::default()).unwrap();
        let m = g.metadata();
        for (k, want) in [
            ("qwen35.vision.block_count", 1),
            ("qwen35.vision.embedding_length", 2),
            ("qwen35.vision.attention.head_count", 0),
            ("qwen35.vision.num_channels", 0),
            ("qwen35.vision.patch_size", 2),
            ("qwen35.vision.spatial_merge_size", 2),
        ] {
            assert!(
                matches!(m.get(k).cloned(), Some(Value::U32(v)) if v == want),
                "{k}"
            );
        }
        assert!(
            m.get("qwen35.vision.feed_forward_length")
                .cloned()
                .is_none()
        );
        assert!(matches!(
            m.get("qwen35.vision.deepstack_visual_indexes").cloned(),
            Some(Value::Array(a)) if a.is_empty()
        ));
        assert!(m.get("qwen35.mrope_sections").cloned().is_some());

        // Depth is a count of generated flags: bounded before anything is allocated.
        let hostile = r#""vision_config": {"depth": 4294967295},"#;
        let vision: [(&str, &str, &[u64], Vec<u8>); 1] = [(
            "model.visual.merger.norm.weight",
            "F32",
            &[2],
            f32s(&[1.0, 2.0]),
        )];
        match Conversion::plan(&vision_folder(hostile, &vision, None)) {
            Err(ConvertError::TooMany { count, .. }) => assert_eq!(count, 4294967295),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn inconsistent_configs_and_shapes_are_clear_errors() {
        let message = |f: &ModelFolder| convert(f).err().unwrap().to_string();
        assert_eq!(
            message(&folder(&config(r#""linear_num_value_heads": 3,"#, ""), &[])),
            "config.json: qwen3next: linear_num_value_heads (3) must be a multiple of \
             linear_num_key_heads (2)"
        );
        let all_linear = config("", "").replace(r#""full_attention"]"#, r#""linear_attention"]"#);
        assert_eq!(
            message(&folder(&all_linear, &[])),
            "config.json: qwen3next: layer_types must include both full_attention and \
             linear_attention"
        );
        let no_head_dim = config("", "").replace(r#""head_dim": 4,"#, "");
        assert_eq!(
            message(&folder(&no_head_dim, &[])),
            "config.json: qwen3next: head_dim must be set"
        );
        let wide = config("", "").replace(
            r#""partial_rotary_factor": 0.25"#,
            r#""partial_rotary_factor": 1.5"#,
        );
        assert_eq!(
            message(&folder(&wide, &[])),
            "config.json: qwen3next: partial_rotary_factor must be in (0,1], got 1.5"
        );
        // Value heads that the weights do not have: named, not silently left unordered.
        let more_heads = config("", "").replace(
            r#""linear_value_head_dim": 1"#,
            r#""linear_value_head_dim": 2"#,
        );
        assert_eq!(
            message(&folder(&more_heads, &[])),
            "cannot reorder the value heads of \"blk.0.ssm_conv1d.weight\" of shape [8, 2]: \
             expected 4 leading rows, then 2 key heads × 2 value heads × 2"
        );
        let mistyped = config(r#""linear_num_key_heads": "2","#, "");
        assert!(message(&folder(&mistyped, &[])).starts_with("parse config.json: "));
    }

    proptest::proptest! {
        /// Whatever heads the config claims and whatever shapes the weights have, planning and
        /// writing never panic: a plan either fails with an error or writes exactly its length.
        #[test]
        fn hostile_head_counts_and_shapes_never_panic(
            key_heads in 0u32..4,
            value_heads in 0u32..9,
            key_dim in 0u32..3,
            value_dim in 0u32..3,
            shapes in proptest::collection::vec(
                proptest::collection::vec(0u64..9, 1..4), 8),
            fitting in proptest::collection::vec(proptest::bool::weighted(0.8), 8),
        ) {
            // Mostly the shapes the config implies (so that whole plans succeed), some random.
            let (k, v) = (u64::from(key_heads * key_dim), u64::from(value_heads * value_dim));
            let (heads, channels) = (u64::from(value_heads), 2 * k + v);
            let implied: [Vec<u64>; 8] = [
                vec![channels, 2],
                vec![v, 2],
                vec![heads, 2],
                vec![heads],
                vec![heads],
                vec![channels, 1, 2],
                vec![2, v],
                vec![2, v],
            ];
            let c = config(
                &format!(
                    r#""linear_num_key_heads": {key_heads}, "linear_num_value_heads": {value_heads},
                       "linear_key_head_dim": {key_dim}, "linear_value_head_dim": {value_dim},"#
                ),
                "",
            );
            let names = [
                "linear_attn.in_proj_qkv.weight",
                "linear_attn.in_proj_z.weight",
                "linear_attn.in_proj_a.weight",
                "linear_attn.A_log",
                "linear_attn.dt_bias",
                "linear_attn.conv1d.weight",
                "linear_attn.out_proj.weight",
                "mtp.layers.0.linear_attn.out_proj.weight",
            ];
            let owned: Vec<(String, Vec<u64>, Vec<u8>)> = names
                .iter()
                .zip(shapes.iter().zip(&implied).zip(&fitting))
                .map(|(n, ((random, implied), &fits))| {
                    let shape = if fits { implied } else { random };
                    let name = if n.starts_with("mtp.") { (*n).to_owned() } else { format!("{L}{n}") };
                    let len = shape.iter().product::<u64>() as usize * 4;
                    (name, shape.clone(), vec![0x3f; len])
                })
                .collect();
            let views: Vec<(&str, &str, &[u64], &[u8])> = owned
                .iter()
                .map(|(n, s, d)| (n.as_str(), "F32", &s[..], &d[..]))
                .collect();
            let f = test_folder(&c, &views);
            if let Ok(plan) = Conversion::plan(&f) {
                let len = plan.output_len().unwrap();
                let out = plan.write(Vec::new()).unwrap();
                proptest::prop_assert_eq!(out.len() as u64, len);
            }
        }
    }
}
