//! llama.cpp's per-tensor type choice (`llama_tensor_get_type` in `src/llama-quant.cpp`), so kiln
//! picks the same type for every tensor that llama-quantize picks.

use kiln_gguf::GgmlType;
use regex::Regex;

use super::{FileType, SourceModel};

/// What the rules need to know about the model, read from its metadata and tensor table.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    pub arch: String,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_expert: u64,
    pub is_70b: bool,
    pub has_output: bool,
    pub n_attention_wv: u64,
}

impl ModelInfo {
    pub fn read(model: &SourceModel<'_, '_>) -> ModelInfo {
        let md = model.metadata();
        let arch = md.architecture().unwrap_or("").to_owned();
        // Per-layer arrays are allowed for head counts; llama.cpp uses layer 0 here.
        let first = |suffix: &str| -> Option<u64> {
            let value = md.get(&format!("{arch}.{suffix}"))?;
            value
                .as_u64()
                .or_else(|| value.as_array()?.iter().next()?.as_u64())
        };
        let n_layer = first("block_count").unwrap_or(0);
        let n_head = first("attention.head_count").unwrap_or(0);
        let n_head_kv = first("attention.head_count_kv").unwrap_or(n_head);
        let n_expert = first("expert_count").unwrap_or(0);
        let is_70b = arch == "llama" && n_layer == 80 && n_head != n_head_kv;
        let names = model.tensors().iter().map(|t| t.name());
        let has_output = model.tensors().iter().any(|t| t.name() == "output.weight");
        let n_attention_wv = names
            .filter(|n| {
                matches!(
                    category(n),
                    Category::AttnV | Category::AttnQkv | Category::AttnKvB
                )
            })
            .count() as u64;
        ModelInfo {
            arch,
            n_layer,
            n_head,
            n_head_kv,
            n_expert,
            is_70b,
            has_output,
            n_attention_wv,
        }
    }

    fn n_gqa(&self) -> u64 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

pub(crate) fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight") {
        Category::AttnQkv
    } else if name.contains("attn_kv_b.weight") {
        Category::AttnKvB
    } else if name.contains("attn_v.weight") {
        Category::AttnV
    } else if name.contains("attn_k.weight") {
        Category::AttnK
    } else if name.contains("attn_q.weight") {
        Category::AttnQ
    } else if name.contains("attn_output.weight") {
        Category::AttnOutput
    } else if name.contains("ffn_up") {
        Category::FfnUp
    } else if name.contains("ffn_gate") {
        Category::FfnGate
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// The layer number of a `blk.N.` tensor name (llama.cpp's `sscanf(name, "blk.%d.")`).
pub(crate) fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '-' && c != '+')
        .unwrap_or(rest.len());
    let (num, tail) = rest.split_at(digits_end);
    if !tail.starts_with('.') {
        return None;
    }
    num.parse().ok()
}

/// Whether llama.cpp may change this tensor's type at all (`tensor_allows_quantization`).
pub(crate) fn allows_quantization(name: &str, n_dims: usize, quantize_output: bool) -> bool {
    const NEVER: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    if name == "output.weight" && !quantize_output {
        return false;
    }
    if name == "position_embd.weight" || name == "token_types.weight" {
        return false;
    }
    !NEVER.iter().any(|p| name.contains(p))
}

fn use_more_bits(i: u64, n: u64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The block-size fallback llama.cpp applies when a row is not a whole number of blocks.
/// `None` means llama.cpp refuses the tensor.
fn fallback(ty: GgmlType, ne0: u64) -> Option<GgmlType> {
    let block = ty.block_size()?;
    if ne0.is_multiple_of(block) {
        return Some(ty);
    }
    let next = match ty {
        GgmlType::IQ1_S
        | GgmlType::IQ1_M
        | GgmlType::IQ2_XXS
        | GgmlType::IQ2_XS
        | GgmlType::IQ2_S
        | GgmlType::IQ3_XXS
        | GgmlType::IQ3_S
        | GgmlType::IQ4_XS => GgmlType::IQ4_NL,
        GgmlType::Q2_0 | GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
            GgmlType::Q4_0
        }
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other if block <= 32 => other,
        _ => return None,
    };
    if !ne0.is_multiple_of(next.block_size()?) {
        Some(GgmlType::F16)
    } else {
        Some(next)
    }
}

/// Options that steer the rules (a subset of `llama_model_quantize_params`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleOptions {
    pub pure: bool,
    pub quantize_output: bool,
    pub output_tensor_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    pub overrides: Vec<(Regex, GgmlType)>,
    pub has_imatrix: bool,
}

/// The stateful chooser: tensors must be presented in llama.cpp's output order, because the
/// attn_v and ffn_down counters advance as it goes.
pub(crate) struct Policy<'a> {
    ftype: FileType,
    default: GgmlType,
    info: &'a ModelInfo,
    opts: &'a RuleOptions,
    i_attention_wv: u64,
    i_ffn_down: u64,
}

/// Why no type could be chosen for a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicyError {
    /// A 256-block type whose row length has no fallback.
    NoFallback(GgmlType),
    /// An MoE tensor whose name has no layer number.
    NoLayer,
}

impl<'a> Policy<'a> {
    pub fn new(
        ftype: FileType,
        default: GgmlType,
        info: &'a ModelInfo,
        opts: &'a RuleOptions,
    ) -> Self {
        Policy {
            ftype,
            default,
            info,
            opts,
            i_attention_wv: 0,
            i_ffn_down: 0,
        }
    }

    /// The type llama.cpp gives this tensor.
    pub fn choose(
        &mut self,
        name: &str,
        ne: [u64; 4],
        n_dims: usize,
        source: GgmlType,
    ) -> Result<GgmlType, PolicyError> {
        if !allows_quantization(name, n_dims, self.opts.quantize_output) {
            return Ok(source);
        }
        let cat = category(name);
        if let (Some(t), Category::TokenEmbd) = (self.opts.token_embedding_type, cat) {
            return Ok(t);
        }
        if let (Some(t), Category::Output) = (self.opts.output_tensor_type, cat) {
            return Ok(t);
        }
        let mut new_type = self.default;
        if self.default.is_quantized() {
            let manual = self
                .opts
                .overrides
                .iter()
                .find(|(re, _)| re.is_match(name))
                .map(|(_, t)| *t);
            if let Some(t) = manual {
                new_type = t;
            } else if !self.opts.pure {
                new_type = self.rules(name, cat, ne, new_type)?;
            }
            new_type = fallback(new_type, ne[0]).ok_or(PolicyError::NoFallback(new_type))?;
        }
        Ok(new_type)
    }

    fn layer_info(&self, counter: u64, n: u64, name: &str) -> Result<(u64, u64), PolicyError> {
        if self.info.n_expert > 1 {
            let layer = layer_of(name)
                .filter(|&l| l >= 0 && (l as u64) < n)
                .ok_or(PolicyError::NoLayer)?;
            Ok((layer as u64, n))
        } else {
            Ok((counter, n))
        }
    }

    fn rules(
        &mut self,
        name: &str,
        cat: Category,
        ne: [u64; 4],
        mut new_type: GgmlType,
    ) -> Result<GgmlType, PolicyError> {
        use FileType as F;
        use GgmlType as T;
        let ft = self.ftype;
        let info = self.info;
        let falcon = info.arch == "falcon";
        let tied = !info.has_output;
        if cat == Category::Output || (tied && cat == Category::TokenEmbd) {
            if let Some(t) = self.opts.output_tensor_type {
                return Ok(t);
            }
            let qk = new_type.block_size().unwrap_or(1);
            if ft == F::MXFP4_MOE || falcon || !ne[0].is_multiple_of(qk) {
                return Ok(T::Q8_0);
            }
            return Ok(if new_type != T::Q8_0 {
                T::Q6_K
            } else {
                new_type
            });
        }
        if ft == F::MXFP4_MOE {
            // Expert tensors (stacked along the third dimension) MXFP4, everything else Q8_0;
            // BailingMoE 3's 3-D attention projections are not experts.
            let expert = ne[2] > 1
                && (info.arch != "bailingmoe3"
                    || matches!(cat, Category::FfnUp | Category::FfnGate | Category::FfnDown));
            return Ok(if expert { T::MXFP4 } else { T::Q8_0 });
        }
        match cat {
            Category::TokenEmbd => {
                if let Some(t) = self.opts.token_embedding_type {
                    return Ok(t);
                }
                if matches!(ft, F::TQ1_0 | F::TQ2_0) {
                    new_type = T::Q4_K;
                }
            }
            Category::AttnV | Category::AttnQkv | Category::AttnKvB => {
                let gqa = info.n_gqa();
                match ft {
                    F::Q2_K => new_type = if gqa >= 4 { T::Q4_K } else { T::Q3_K },
                    F::Q3_K_M => {
                        new_type = if self.i_attention_wv < 2 {
                            T::Q5_K
                        } else {
                            T::Q4_K
                        }
                    }
                    F::Q3_K_L => new_type = T::Q5_K,
                    F::IQ4_NL | F::IQ4_XS if gqa >= 4 => new_type = T::Q5_K,
                    F::Q4_K_M | F::Q5_K_M
                        if use_more_bits(self.i_attention_wv, info.n_attention_wv) =>
                    {
                        new_type = T::Q6_K
                    }
                    F::Q4_K_S if self.i_attention_wv < 4 => new_type = T::Q5_K,
                    _ => {}
                }
                if info.is_70b && matches!(new_type, T::Q3_K | T::Q4_K) {
                    new_type = T::Q5_K;
                }
                if info.n_expert == 8 {
                    new_type = T::Q8_0;
                }
                self.i_attention_wv += 1;
            }
            Category::AttnK if info.n_expert == 8 => {
                new_type = T::Q8_0;
            }
            Category::FfnDown => {
                let (i, n) = self.layer_info(self.i_ffn_down, info.n_layer, name)?;
                match ft {
                    F::Q2_K => new_type = T::Q3_K,
                    F::Q3_K_M => {
                        new_type = if i < n / 16 {
                            T::Q5_K
                        } else if !falcon || use_more_bits(i, n) {
                            T::Q4_K
                        } else {
                            T::Q3_K
                        }
                    }
                    F::Q3_K_L => new_type = if falcon { T::Q4_K } else { T::Q5_K },
                    F::Q4_K_M => {
                        if falcon {
                            new_type = if i < n / 16 {
                                T::Q6_K
                            } else if use_more_bits(i, n) {
                                T::Q5_K
                            } else {
                                T::Q4_K
                            };
                        } else if use_more_bits(i, n) {
                            new_type = T::Q6_K;
                        }
                    }
                    F::IQ4_NL | F::IQ4_XS if i < n / 8 && !self.opts.has_imatrix => {
                        new_type = T::Q5_K
                    }
                    F::Q5_K_M if use_more_bits(i, n) => new_type = T::Q6_K,
                    F::Q4_K_S if !falcon && i < n / 8 => new_type = T::Q5_K,
                    F::Q4_0 if self.opts.has_imatrix && i < n / 8 => new_type = T::Q4_1,
                    F::Q5_0 if self.opts.has_imatrix && i < n / 8 => new_type = T::Q5_1,
                    _ => {}
                }
                self.i_ffn_down += 1;
            }
            Category::AttnOutput => {
                if !falcon {
                    if info.n_expert == 8 {
                        if matches!(
                            ft,
                            F::Q2_K
                                | F::Q3_K_S
                                | F::Q3_K_M
                                | F::IQ4_NL
                                | F::Q4_K_S
                                | F::Q4_K_M
                                | F::IQ4_XS
                        ) {
                            new_type = T::Q5_K;
                        }
                    } else {
                        match ft {
                            F::Q2_K => new_type = T::Q3_K,
                            F::Q3_K_M => new_type = T::Q4_K,
                            F::Q3_K_L => new_type = T::Q5_K,
                            _ => {}
                        }
                    }
                } else if ft == F::Q3_K_L {
                    new_type = T::Q4_K;
                }
            }
            _ => {}
        }
        Ok(new_type)
    }
}

/// llama.cpp's output tensor order: by layer number (`blk.N.`, others first as -1), then by name.
pub(crate) fn output_order(names: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        let la = layer_of(names[a]).unwrap_or(-1);
        let lb = layer_of(names[b]).unwrap_or(-1);
        la.cmp(&lb)
            .then_with(|| names[a].as_bytes().cmp(names[b].as_bytes()))
    });
    order
}

/// Ollama's own `--tensor-type` overrides for `/api/create` (server/quantization.go), applied only
/// for Q4_K_S and Q4_K_M.
pub(crate) fn ollama_overrides(arch: &str, ftype: FileType) -> Vec<(&'static str, GgmlType)> {
    if !matches!(ftype, FileType::Q4_K_S | FileType::Q4_K_M) {
        return Vec::new();
    }
    match arch {
        "qwen35" | "qwen35moe" => vec![(r"^blk\.[0-9]+\.nextn\.eh_proj\.weight$", GgmlType::Q8_0)],
        "gemma3n" => vec![(r"^per_layer_token_embd\.weight$", GgmlType::F16)],
        "deepseek2" => vec![
            (r"attn_k_b\.weight$", GgmlType::Q8_0),
            (r"attn_q_a\.weight$", GgmlType::Q8_0),
            (r"attn_q_b\.weight$", GgmlType::Q8_0),
            (r"attn_v_b\.weight$", GgmlType::Q8_0),
            (r"attn_kv_a_mqa\.weight$", GgmlType::Q8_0),
        ],
        "glmocr" | "glm4" => vec![
            (r"^token_embd\.weight$", GgmlType::F16),
            (r"^output\.weight$", GgmlType::F16),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_layer_then_bytewise_name() {
        let names = [
            "blk.10.a",
            "blk.2.b",
            "output.weight",
            "blk.2.a",
            "token_embd.weight",
            "output_norm.weight",
        ];
        let order: Vec<&str> = output_order(&names).into_iter().map(|i| names[i]).collect();
        assert_eq!(
            order,
            [
                "output.weight",
                "output_norm.weight",
                "token_embd.weight",
                "blk.2.a",
                "blk.2.b",
                "blk.10.a"
            ]
        );
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_8_layers() {
        let picked: Vec<u64> = (0..8).filter(|&i| use_more_bits(i, 8)).collect();
        assert_eq!(picked, [0, 3, 6, 7]);
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(GgmlType::Q4_K, 352), Some(GgmlType::Q5_0));
        assert_eq!(fallback(GgmlType::Q6_K, 352), Some(GgmlType::Q8_0));
        assert_eq!(fallback(GgmlType::Q5_K, 352), Some(GgmlType::Q5_1));
        assert_eq!(fallback(GgmlType::Q2_K, 352), Some(GgmlType::Q4_0));
        assert_eq!(fallback(GgmlType::IQ4_XS, 352), Some(GgmlType::IQ4_NL));
        assert_eq!(fallback(GgmlType::Q4_K, 100), Some(GgmlType::F16));
        assert_eq!(fallback(GgmlType::Q8_0, 100), Some(GgmlType::F16));
        assert_eq!(fallback(GgmlType::Q4_K, 512), Some(GgmlType::Q4_K));
    }
}
