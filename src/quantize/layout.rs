//! What the output file holds, decided before anything is converted: every tensor's type and
//! order ([`plan`], llama.cpp's policy), the metadata, and the exact size ([`output_size`]).

use kiln_gguf::{GgmlType, Metadata, TensorSpec, Value};
use regex::Regex;

use super::policy::{self, ModelInfo, Policy, PolicyError, RuleOptions};
use super::{FileType, QuantizeError, QuantizeOptions, SourceModel};

/// `general.quantization_version` as llama.cpp writes it (`GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;
/// The alignment llama.cpp's writer always uses.
pub const OUTPUT_ALIGNMENT: u64 = 32;

/// The planned conversion of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    /// Index of the tensor in the input's tensor table.
    pub input_index: usize,
    /// Tensor name.
    pub name: String,
    /// Source type.
    pub from: GgmlType,
    /// Output type.
    pub to: GgmlType,
    /// Output dimensions (trailing 1s dropped, as llama.cpp writes them).
    pub dims: Vec<u64>,
}

fn compile_rules(
    metadata: &Metadata<'_>,
    ftype: FileType,
    options: &QuantizeOptions,
) -> Result<RuleOptions, QuantizeError> {
    let mut overrides = Vec::new();
    let arch = metadata.architecture().unwrap_or("");
    let ollama = if options.ollama_overrides {
        policy::ollama_overrides(arch, ftype)
    } else {
        Vec::new()
    };
    let user = options.tensor_types.iter().map(|(p, t)| (p.as_str(), *t));
    for (pattern, ty) in user.chain(ollama) {
        let re = Regex::new(pattern).map_err(|e| QuantizeError::BadPattern {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        overrides.push((re, ty));
    }
    Ok(RuleOptions {
        pure: options.pure,
        quantize_output: !options.leave_output_tensor,
        output_tensor_type: options.output_tensor_type,
        token_embedding_type: options.token_embedding_type,
        overrides,
        has_imatrix: options.imatrix.is_some(),
    })
}

/// Decides every tensor's output type and order, exactly as llama.cpp would, without converting.
pub fn plan(
    model: &SourceModel<'_, '_>,
    ftype: FileType,
    options: &QuantizeOptions,
) -> Result<Vec<TensorPlan>, QuantizeError> {
    let tensors = model.tensors();
    let names: Vec<&str> = tensors.iter().map(|t| t.name()).collect();
    let order = policy::output_order(&names);
    let info = ModelInfo::read(model);
    let rules = compile_rules(model.metadata(), ftype, options)?;
    let default = ftype.default_tensor_type();
    let mut policy = default.map(|d| Policy::new(ftype, d, &info, &rules));
    let mut plans = Vec::with_capacity(order.len());
    for i in order {
        let t = &tensors[i];
        let ne = t.ne();
        let n_dims = t.ggml_n_dims();
        let to = match policy.as_mut() {
            None => t.ggml_type(),
            Some(p) => p
                .choose(t.name(), ne, n_dims, t.ggml_type())
                .map_err(|e| match e {
                    PolicyError::NoFallback(ty) => QuantizeError::NoFallback {
                        name: t.name().to_owned(),
                        ne0: ne[0],
                        ty,
                    },
                    PolicyError::NoLayer => QuantizeError::NoLayer {
                        name: t.name().to_owned(),
                    },
                })?,
        };
        plans.push(TensorPlan {
            input_index: i,
            name: t.name().to_owned(),
            from: t.ggml_type(),
            to,
            dims: ne[..n_dims].to_vec(),
        });
    }
    Ok(plans)
}

/// Tensors Ollama keeps out of llama.cpp's text-model quantizer and copies back unchanged
/// (`isEmbeddedCompatibilityTensor`): audio (`a.`), multimodal projector (`mm.`), multi-token
/// prediction (`mtp.`), speech (`s.`) and vision (`v.`) tensors embedded in a model file.
pub fn is_embedded_tensor(name: &str) -> bool {
    ["a.", "mm.", "mtp.", "s.", "v."]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The output file's metadata and tensor plans, in file order.
type OutputLayout<'a> = (Vec<(&'a str, Value<'a>)>, Vec<TensorPlan>);

/// What the output holds: llama.cpp's metadata and plan, or (with
/// [`QuantizeOptions::keep_embedded_tensors`] and embedded tensors present) Ollama's rewrite.
pub(super) fn output_layout<'a>(
    model: &SourceModel<'_, 'a>,
    ftype: FileType,
    options: &'a QuantizeOptions,
) -> Result<OutputLayout<'a>, QuantizeError> {
    let file_type = output_file_type(model, ftype);
    let embedded = options.keep_embedded_tensors
        && model.tensors().iter().any(|t| is_embedded_tensor(t.name()));
    if !embedded {
        let plans = plan(model, ftype, options)?;
        let metadata = output_metadata(model.metadata(), file_type, &options.extra_metadata);
        return Ok((metadata, plans));
    }
    // llama.cpp sees the text model only (Ollama's loader hides the rest from it).
    let (text, index) = model.subset(|t| !is_embedded_tensor(t.name()));
    let mut plans = plan(&text, ftype, options)?;
    for p in &mut plans {
        p.input_index = index[p.input_index];
    }
    for (i, t) in model.tensors().iter().enumerate() {
        if is_embedded_tensor(t.name()) {
            plans.push(TensorPlan {
                input_index: i,
                name: t.name().to_owned(),
                from: t.ggml_type(),
                to: t.ggml_type(),
                dims: t.dims().to_vec(),
            });
        }
    }
    plans.sort_by(|a, b| crate::convert::ollama_tensor_order(&a.name, &b.name));
    let mut metadata: Vec<(&str, Value<'_>)> = model
        .metadata()
        .iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    let mut set = |key: &'a str, value: Value<'a>| {
        metadata.retain(|(k, _)| *k != key);
        metadata.push((key, value));
    };
    set("general.file_type", Value::U32(file_type));
    for (k, v) in &options.extra_metadata {
        set(k, v.clone());
    }
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    Ok((metadata, plans))
}

/// Output metadata as llama.cpp builds it: the input's entries in order; setting a key removes it
/// and appends it (`general.quantization_version`, `general.file_type`, then any extras); split keys go.
fn output_metadata<'a>(
    metadata: &Metadata<'a>,
    file_type: u32,
    extra: &'a [(String, Value<'static>)],
) -> Vec<(&'a str, Value<'a>)> {
    let mut md: Vec<(&str, Value<'_>)> = metadata.iter().map(|(k, v)| (k, v.clone())).collect();
    let mut set = |key: &'a str, value: Value<'a>| {
        md.retain(|(k, _)| *k != key);
        md.push((key, value));
    };
    set(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    set("general.file_type", Value::U32(file_type));
    for (k, v) in extra {
        set(k, v.clone());
    }
    md.retain(|(k, _)| !matches!(*k, "split.no" | "split.count" | "split.tensors.count"));
    md
}

/// The `general.file_type` the output gets: the requested type's, or the input's for COPY.
pub(super) fn output_file_type(model: &SourceModel<'_, '_>, ftype: FileType) -> u32 {
    match ftype.llama_ftype() {
        Some(n) => n,
        None => match model.metadata().file_type().ok().flatten() {
            Some(n) => n,
            None => guess_file_type(model),
        },
    }
}

pub(super) fn output_specs(plans: &[TensorPlan]) -> Vec<TensorSpec<'_>> {
    plans
        .iter()
        .map(|p| TensorSpec::new(p.name.as_str(), p.to, p.dims.clone()))
        .collect()
}

/// The exact size of the file quantizing `model` to `ftype` writes, computed from the plan
/// without quantizing anything (so a caller can check for disk space before starting).
pub fn output_size(
    model: &SourceModel<'_, '_>,
    ftype: FileType,
    options: &QuantizeOptions,
) -> Result<u64, QuantizeError> {
    let (metadata, plans) = output_layout(model, ftype, options)?;
    Ok(kiln_gguf::Layout::compute(&metadata, &output_specs(&plans))?.file_len)
}

/// llama.cpp's guess for a file without `general.file_type` (`llama_model_loader`): the file type of
/// the most common tensor type (first in output order on ties), flagged `LLAMA_FTYPE_GUESSED`.
fn guess_file_type(model: &SourceModel<'_, '_>) -> u32 {
    const GUESSED: u32 = 1024;
    let names: Vec<&str> = model.tensors().iter().map(|t| t.name()).collect();
    let mut counts: Vec<(GgmlType, usize)> = Vec::new();
    for i in policy::output_order(&names) {
        let ty = model.tensors()[i].ggml_type();
        match counts.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, n)) => *n += 1,
            None => counts.push((ty, 1)),
        }
    }
    let mut best: Option<(GgmlType, usize)> = None;
    for &(ty, n) in &counts {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((ty, n));
        }
    }
    let ftype = match best.map(|(t, _)| t) {
        Some(GgmlType::F16) => 1,
        Some(GgmlType::BF16) => 32,
        Some(GgmlType::Q4_0) => 2,
        Some(GgmlType::Q4_1) => 3,
        Some(GgmlType::Q5_0) => 8,
        Some(GgmlType::Q5_1) => 9,
        Some(GgmlType::Q8_0) => 7,
        Some(GgmlType::Q2_K) => 10,
        Some(GgmlType::Q3_K) => 12,
        Some(GgmlType::Q4_K) => 15,
        Some(GgmlType::Q5_K) => 17,
        Some(GgmlType::Q6_K) => 18,
        Some(GgmlType::IQ4_NL) => 25,
        Some(GgmlType::IQ4_XS) => 30,
        Some(GgmlType::TQ1_0) => 36,
        Some(GgmlType::TQ2_0) => 37,
        _ => 0,
    };
    ftype | GUESSED
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::{NoProgress, quantize_gguf};
    use kiln_gguf::{Gguf, Limits, TensorSpec};

    /// A tiny model of architecture `arch` with an untied output (tensor data all zero).
    fn model(arch: &str) -> Vec<u8> {
        let md = vec![
            ("general.architecture", Value::string(arch.to_owned())),
            ("general.file_type", Value::U32(1)),
        ];
        let specs = [
            TensorSpec::new("token_embd.weight", GgmlType::F16, vec![256, 4]),
            TensorSpec::new("output.weight", GgmlType::F16, vec![256, 4]),
            TensorSpec::new("blk.0.attn_q.weight", GgmlType::F16, vec![256, 256]),
        ];
        let mut w = kiln_gguf::Writer::new(Vec::new(), &md, &specs).unwrap();
        for s in &specs {
            w.write_tensor_data(&vec![0u8; s.n_bytes().unwrap() as usize])
                .unwrap();
        }
        w.finish().unwrap()
    }

    fn types(bytes: &[u8], ftype: FileType, ollama: bool) -> Vec<(String, GgmlType)> {
        let gguf = Gguf::parse(bytes, &Limits::default()).unwrap();
        let options = QuantizeOptions {
            ollama_overrides: ollama,
            ..Default::default()
        };
        plan(
            &SourceModel::new(std::slice::from_ref(&gguf)).unwrap(),
            ftype,
            &options,
        )
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.to))
        .collect()
    }

    /// The size announced before quantizing is the size written, for every kind of plan
    /// (k-quants with fallbacks, legacy, float, COPY, extra metadata).
    #[test]
    fn output_size_is_the_written_size() {
        let bytes = model("llama");
        let gguf = Gguf::parse(&bytes, &Limits::default()).unwrap();
        let source = SourceModel::new(std::slice::from_ref(&gguf)).unwrap();
        for ftype in [
            FileType::Q4_K_M,
            FileType::Q2_K,
            FileType::Q8_0,
            FileType::Q4_0,
            FileType::BF16,
            FileType::F32,
            FileType::Copy,
        ] {
            for extra in [vec![], vec![("kiln.note".to_owned(), Value::string("x"))]] {
                let options = QuantizeOptions {
                    threads: 1,
                    extra_metadata: extra,
                    ..Default::default()
                };
                let announced = output_size(&source, ftype, &options).unwrap();
                let mut out = Vec::new();
                let report =
                    quantize_gguf(&gguf, &mut out, ftype, &options, &mut NoProgress).unwrap();
                assert_eq!(
                    (announced, report.file_len),
                    (out.len() as u64, out.len() as u64),
                    "{ftype:?}"
                );
            }
        }
    }

    /// Ollama's server/quantization.go passes `^token_embd\.weight$=f16` and `^output\.weight$=f16`
    /// for glm4 at Q4_K_S/Q4_K_M only.
    #[test]
    fn ollama_overrides_apply_to_their_architectures_and_file_types_only() {
        let glm4 = model("glm4");
        let with = types(&glm4, FileType::Q4_K_M, true);
        assert!(with.contains(&("token_embd.weight".into(), GgmlType::F16)));
        assert!(with.contains(&("output.weight".into(), GgmlType::F16)));
        assert!(with.contains(&("blk.0.attn_q.weight".into(), GgmlType::Q4_K)));
        let without = types(&glm4, FileType::Q4_K_M, false);
        assert!(without.contains(&("output.weight".into(), GgmlType::Q6_K)));
        let q8 = types(&glm4, FileType::Q8_0, true);
        assert!(q8.contains(&("output.weight".into(), GgmlType::Q8_0)));
        let llama = types(&model("llama"), FileType::Q4_K_M, true);
        assert!(llama.contains(&("output.weight".into(), GgmlType::Q6_K)));
    }
}
