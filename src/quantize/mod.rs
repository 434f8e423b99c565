//! Whole-model quantization: GGUF in, quantized GGUF out, byte-identical to llama.cpp's
//! `llama_model_quantize` (what `ollama create --quantize` runs).
//!
//! [`quantize_gguf`] streams: tensors are converted one chunk of rows at a time and written as
//! they are produced, so memory stays at a few chunk buffers whatever the model size.
//! [`quantize_model`] adds files: the input is memory-mapped and the output written to a
//! temporary file, fsynced and renamed, so the output path never holds a partial file.

mod ftype;
mod imatrix;
mod policy;
mod source;
pub mod target;
mod validate;

use std::collections::HashMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use kiln_gguf::{
    GgmlType, Gguf, GgufError, Limits, Metadata, TensorSpec, Value, WriteError, Writer,
};
use kiln_quant::QuantType;
use regex::Regex;

pub use ftype::{FileType, UnknownFileType};
pub use imatrix::{Imatrix, ImatrixError};
use policy::{ModelInfo, Policy, PolicyError, RuleOptions};
pub use source::{
    SourceModel, SplitError, parse_split_file_name, split_file_name, split_part_paths,
    split_position,
};

/// `general.quantization_version` as llama.cpp writes it (`GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;
/// The alignment llama.cpp's writer always uses.
pub const OUTPUT_ALIGNMENT: u64 = 32;

/// How to quantize, beyond the file type (llama-quantize's options).
#[derive(Debug, Clone, Default)]
pub struct QuantizeOptions {
    /// Worker threads (0 = all available cores). The output does not depend on it.
    pub threads: usize,
    /// Allow already-quantized inputs (they are dequantized first, losing precision twice).
    pub allow_requantize: bool,
    /// Keep `output.weight` in its source type.
    pub leave_output_tensor: bool,
    /// Give every quantizable tensor the file type's default type (no per-tensor rules).
    pub pure: bool,
    /// Type for `output.weight`.
    pub output_tensor_type: Option<GgmlType>,
    /// Type for `token_embd.weight`.
    pub token_embedding_type: Option<GgmlType>,
    /// `(regex, type)` overrides; the first pattern found in a tensor's name wins.
    pub tensor_types: Vec<(String, GgmlType)>,
    /// Importance matrix: tensor name → per-column weights (`ne[0]` values per expert).
    pub imatrix: Option<HashMap<String, Vec<f32>>>,
    /// Apply Ollama's per-architecture overrides for Q4_K_S/Q4_K_M, as `/api/create` does.
    pub ollama_overrides: bool,
    /// Keep embedded tensors (vision towers, projectors, audio encoders: the names
    /// [`is_embedded_tensor`] picks) as they are, as Ollama's create does: the other tensors are
    /// quantized as llama.cpp quantizes the model without them, and the file is written as
    /// Ollama rewrites it: the input's metadata with the new `general.file_type` (no
    /// `general.quantization_version` added), keys sorted, tensors in Ollama's order. Without an
    /// embedded tensor in the model, this changes nothing.
    pub keep_embedded_tensors: bool,
    /// Metadata set after `general.file_type` (llama-quantize's `--override-kv`; an existing key
    /// is removed from its old place first).
    pub extra_metadata: Vec<(String, Value<'static>)>,
    /// Measure what quantization cost: each converted tensor is dequantized again and compared
    /// with its source values ([`TensorReport::error`]). The output bytes do not change.
    pub measure_error: bool,
}

/// One step of progress.
#[derive(Debug, Clone)]
pub enum QuantizeEvent<'a> {
    /// A tensor is about to be converted.
    Tensor {
        /// Its position in the output (0-based).
        index: usize,
        /// Number of tensors.
        count: usize,
        /// Its name.
        name: &'a str,
        /// Its source type.
        from: GgmlType,
        /// The type chosen for it.
        to: GgmlType,
    },
    /// A tensor has been written (with its error when [`QuantizeOptions::measure_error`] is set).
    TensorDone {
        /// Its position in the output (0-based).
        index: usize,
        /// What happened to it.
        report: &'a TensorReport,
    },
    /// Input bytes consumed so far, out of the total tensor bytes of the input.
    Bytes {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
}

/// Receives progress; returning `ControlFlow::Break` cancels the quantization between chunks.
pub trait QuantizeSink {
    /// Called for every event.
    fn event(&mut self, event: &QuantizeEvent<'_>) -> ControlFlow<()>;
}

impl<F: FnMut(&QuantizeEvent<'_>) -> ControlFlow<()>> QuantizeSink for F {
    fn event(&mut self, event: &QuantizeEvent<'_>) -> ControlFlow<()> {
        self(event)
    }
}

/// A sink that ignores progress.
pub struct NoProgress;

impl QuantizeSink for NoProgress {
    fn event(&mut self, _: &QuantizeEvent<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// How far a tensor's values moved in quantization: `dequantize(quantize(x))` against the source
/// values `x` (the input tensor as stored, decoded to f32).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorError {
    /// Root mean square of the error.
    pub rmse: f64,
    /// Largest absolute error of one value.
    pub max_abs: f64,
    /// Signal-to-noise ratio in decibels, `10 log10(Σx² / Σ(x̂-x)²)`; infinite when exact.
    pub snr_db: f64,
    /// The importance-weighted RMSE, `sqrt(Σ wᵢ(x̂ᵢ-xᵢ)² / Σ wᵢ)` with each value weighted by its
    /// column's importance, when an importance matrix covered the tensor.
    pub weighted_rmse: Option<f64>,
}

/// Running sums behind a [`TensorError`], added up per chunk of rows and per thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ErrorSums {
    n: u64,
    sq_err: f64,
    sq_src: f64,
    max_abs: f64,
    w_sq_err: f64,
    w_sum: f64,
}

impl ErrorSums {
    /// Adds the rows `source` and their round trip `back`, `n_per_row` values a row, each value
    /// weighted by its column's `weights` when given. Eight independent lanes keep the loop
    /// vectorizable; the lanes are summed at the end of each row.
    fn add_rows(
        &mut self,
        source: &[f32],
        back: &[f32],
        n_per_row: usize,
        weights: Option<&[f32]>,
    ) {
        const LANES: usize = 8;
        let weight_sum: f64 = weights.map_or(0.0, |w| w.iter().map(|&v| f64::from(v)).sum());
        for (src, got) in source.chunks(n_per_row).zip(back.chunks(n_per_row)) {
            let mut sq = [0f64; LANES];
            let mut sx = [0f64; LANES];
            let mut mx = [0f64; LANES];
            let mut wsq = [0f64; LANES];
            let body = src.len() / LANES * LANES;
            let lanes = src[..body]
                .chunks_exact(LANES)
                .zip(got[..body].chunks_exact(LANES));
            match weights {
                None => {
                    for (xs, ys) in lanes {
                        for k in 0..LANES {
                            let x = f64::from(xs[k]);
                            let e = f64::from(ys[k]) - x;
                            sq[k] += e * e;
                            sx[k] += x * x;
                            mx[k] = mx[k].max(e.abs());
                        }
                    }
                }
                Some(w) => {
                    for ((xs, ys), ws) in lanes.zip(w[..body].chunks_exact(LANES)) {
                        for k in 0..LANES {
                            let x = f64::from(xs[k]);
                            let e = f64::from(ys[k]) - x;
                            sq[k] += e * e;
                            sx[k] += x * x;
                            mx[k] = mx[k].max(e.abs());
                            wsq[k] += f64::from(ws[k]) * e * e;
                        }
                    }
                }
            }
            for j in body..src.len() {
                let x = f64::from(src[j]);
                let e = f64::from(got[j]) - x;
                sq[0] += e * e;
                sx[0] += x * x;
                mx[0] = mx[0].max(e.abs());
                if let Some(w) = weights {
                    wsq[0] += f64::from(w[j]) * e * e;
                }
            }
            self.sq_err += sq.iter().sum::<f64>();
            self.sq_src += sx.iter().sum::<f64>();
            self.max_abs = mx.iter().fold(self.max_abs, |a, &b| a.max(b));
            self.w_sq_err += wsq.iter().sum::<f64>();
            self.w_sum += weight_sum;
            self.n += src.len() as u64;
        }
    }

    fn merge(&mut self, other: &ErrorSums) {
        self.n += other.n;
        self.sq_err += other.sq_err;
        self.sq_src += other.sq_src;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.w_sq_err += other.w_sq_err;
        self.w_sum += other.w_sum;
    }

    fn finish(&self, weighted: bool) -> TensorError {
        let n = self.n.max(1) as f64;
        TensorError {
            rmse: (self.sq_err / n).sqrt(),
            max_abs: self.max_abs,
            snr_db: if self.sq_err == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (self.sq_src / self.sq_err).log10()
            },
            weighted_rmse: (weighted && self.w_sum > 0.0)
                .then(|| (self.w_sq_err / self.w_sum).sqrt()),
        }
    }
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Source type.
    pub from: GgmlType,
    /// Output type.
    pub to: GgmlType,
    /// Number of elements.
    pub n_elements: u64,
    /// Source bytes.
    pub bytes_in: u64,
    /// Output bytes (without padding).
    pub bytes_out: u64,
    /// The quantization error, when it was measured ([`QuantizeOptions::measure_error`]); for a
    /// tensor copied as it was, exactly zero.
    pub error: Option<TensorError>,
}

impl TensorReport {
    /// Output bits per weight.
    pub fn bits_per_weight(&self) -> f64 {
        self.bytes_out as f64 * 8.0 / self.n_elements.max(1) as f64
    }
}

/// The whole model's figures, from a [`QuantizeReport`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSummary {
    /// Weights in all tensors.
    pub n_elements: u64,
    /// Tensor bytes read (without padding).
    pub bytes_in: u64,
    /// Tensor bytes written.
    pub bytes_out: u64,
    /// Output bits per weight over all tensors.
    pub bits_per_weight: f64,
    /// The RMSE over every weight of the model, when measured.
    pub rmse: Option<f64>,
    /// The lowest tensor SNR in decibels, when measured.
    pub worst_snr_db: Option<f64>,
}

/// The outcome of a quantization.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeReport {
    /// The file type written.
    pub file_type: u32,
    /// Every tensor, in output order.
    pub tensors: Vec<TensorReport>,
    /// Size of the output file.
    pub file_len: u64,
}

impl QuantizeReport {
    /// Totals over every tensor: sizes, bits per weight, the pooled RMSE and the worst SNR.
    pub fn summary(&self) -> ModelSummary {
        let n: u64 = self.tensors.iter().map(|t| t.n_elements).sum();
        let bytes_in = self.tensors.iter().map(|t| t.bytes_in).sum();
        let bytes_out: u64 = self.tensors.iter().map(|t| t.bytes_out).sum();
        let measured: Vec<(&TensorReport, &TensorError)> = self
            .tensors
            .iter()
            .filter_map(|t| Some((t, t.error.as_ref()?)))
            .collect();
        let all_measured = !measured.is_empty() && measured.len() == self.tensors.len();
        let rmse = all_measured.then(|| {
            let sq: f64 = measured
                .iter()
                .map(|(t, e)| e.rmse * e.rmse * t.n_elements as f64)
                .sum();
            (sq / n.max(1) as f64).sqrt()
        });
        let worst_snr_db = measured.iter().map(|(_, e)| e.snr_db).reduce(f64::min);
        ModelSummary {
            n_elements: n,
            bytes_in,
            bytes_out,
            bits_per_weight: bytes_out as f64 * 8.0 / n.max(1) as f64,
            rmse,
            worst_snr_db,
        }
    }
}

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The input is not a valid GGUF file.
    #[error("input is not a valid GGUF file: {0}")]
    Gguf(#[from] GgufError),
    /// Writing the output failed.
    #[error("writing the quantized model failed: {0}")]
    Write(#[from] WriteError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A quantized input without `allow_requantize`.
    #[error("tensor {name} is already quantized ({ty}); requantizing needs allow_requantize")]
    RequantizeNotAllowed {
        /// Tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A type kiln has no kernel for (as source or as target).
    #[error("tensor {name}: type {ty} is not supported")]
    UnsupportedType {
        /// Tensor name.
        name: String,
        /// The type.
        ty: GgmlType,
    },
    /// A row length that fits no block size llama.cpp can fall back to.
    #[error("tensor {name}: row length {ne0} does not fit {ty} and has no fallback type")]
    NoFallback {
        /// Tensor name.
        name: String,
        /// Row length.
        ne0: u64,
        /// The type that did not fit.
        ty: GgmlType,
    },
    /// An MoE tensor whose layer number cannot be read from its name.
    #[error("tensor {name}: cannot read the layer number from the name of an expert tensor")]
    NoLayer {
        /// Tensor name.
        name: String,
    },
    /// An invalid `--tensor-type` pattern.
    #[error("invalid tensor type pattern {pattern:?}: {message}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// The regex error.
        message: String,
    },
    /// An importance matrix with the wrong size or a non-finite value.
    #[error("importance matrix for {name}: {problem}")]
    BadImatrix {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// Quantized data with a non-finite scale or value (the source holds NaN/Inf or overflows);
    /// llama-quantize refuses these too ("quantized data validation failed").
    #[error(
        "tensor {name}: quantized data validation failed ({ty} block or element {unit} is not finite)"
    )]
    InvalidData {
        /// Tensor name.
        name: String,
        /// The output type.
        ty: GgmlType,
        /// Index of the first bad block (or element, for float types) in the chunk.
        unit: usize,
    },
    /// A kernel refused its input (a bug: sizes are checked before).
    #[error("tensor {name}: {source}")]
    Kernel {
        /// Tensor name.
        name: String,
        /// The kernel's error.
        #[source]
        source: kiln_quant::QuantError,
    },
    /// The parts of a split model do not fit together.
    #[error("{0}")]
    Split(#[from] SplitError),
    /// The sink asked to stop.
    #[error("quantization cancelled")]
    Cancelled,
    /// A size target below what the smallest candidate types reach.
    #[error(
        "the size target is too small: the smallest mix is {smallest_file} bytes ({smallest_bpw:.2} bits per weight)"
    )]
    BudgetTooSmall {
        /// The file the smallest candidates make.
        smallest_file: u64,
        /// Its tensor bits per weight.
        smallest_bpw: f64,
    },
    /// A model converted as it is quantized ([`quantize_conversion`]) failed to convert.
    #[error("{0}")]
    Convert(Box<crate::convert::ConvertError>),
}

impl From<crate::convert::ConvertError> for QuantizeError {
    fn from(e: crate::convert::ConvertError) -> Self {
        QuantizeError::Convert(Box::new(e))
    }
}

/// Where the quantizer reads a tensor's data from: the bytes of a parsed (often memory-mapped)
/// GGUF, or a conversion producing them on demand, so that a converted model is never written
/// out in full before it is quantized.
pub(crate) trait TensorData {
    /// Bytes `range` of tensor `index`'s data (in its stored type), borrowed from `self` or
    /// produced into `buf`.
    fn read<'s>(
        &'s self,
        index: usize,
        range: std::ops::Range<usize>,
        buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], QuantizeError>;
    /// Tensor `index` is no longer needed (a mapping can give its pages back).
    fn release(&self, _index: usize) {}
}

/// A parsed model's own bytes, reporting each tensor's bytes to `consumed` when it is done.
struct Parsed<'m, 'g, 'a> {
    model: &'m SourceModel<'g, 'a>,
    consumed: &'m dyn Fn(&[u8]),
}

impl TensorData for Parsed<'_, '_, '_> {
    fn read<'s>(
        &'s self,
        index: usize,
        range: std::ops::Range<usize>,
        _buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], QuantizeError> {
        Ok(&self.model.tensors()[index].data()[range])
    }

    fn release(&self, index: usize) {
        (self.consumed)(self.model.tensors()[index].data());
    }
}

/// The size of a tensor's data: known from its type, or (for a type kiln cannot size, only ever
/// copied) the span the file gives it.
fn data_len(t: &kiln_gguf::TensorInfo<'_>) -> usize {
    t.n_bytes().map_or(t.data().len(), |n| n as usize)
}

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
        let to = match policy.as_mut() {
            None => t.ggml_type(),
            Some(p) => p
                .choose(t.name(), ne, t.dims().len(), t.ggml_type())
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
        let n_dims = (1..=4).rev().find(|&d| ne[d - 1] != 1).unwrap_or(1);
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
fn output_layout<'a>(
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

fn kernel_type(name: &str, ty: GgmlType) -> Result<QuantType, QuantizeError> {
    QuantType::from_ggml_id(ty.0).ok_or_else(|| QuantizeError::UnsupportedType {
        name: name.to_owned(),
        ty,
    })
}

/// Elements per conversion chunk: large enough to amortize thread start-up, small enough to keep
/// memory flat (16 MiB of f32).
const CHUNK_ELEMENTS: usize = 4 << 20;

/// Quantizes a parsed GGUF into `out` (written sequentially, never seeked). One part of a split
/// model is refused: use [`quantize_parts`].
pub fn quantize_gguf<W: Write>(
    gguf: &Gguf<'_>,
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    quantize_parts(std::slice::from_ref(gguf), out, ftype, options, sink)
}

/// Quantizes a split model (every part, in order; or one unsplit file) into one output file, as
/// llama-quantize does when given the first part.
pub fn quantize_parts<W: Write>(
    parts: &[Gguf<'_>],
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    let model = SourceModel::new(parts)?;
    let data = Parsed {
        model: &model,
        consumed: &|_| {},
    };
    quantize_streaming(&model, out, ftype, options, sink, &data)
}

/// Quantizes a Hugging Face model folder in one pass: each tensor is converted (exactly as
/// [`Conversion::write`](crate::convert::Conversion::write) converts it) a chunk of rows at a
/// time, straight into the quantizer, so the F16/BF16 GGUF a two-step conversion writes never
/// exists, on disk or in memory. The output is byte for byte the two-step one (convert, then
/// [`quantize_gguf`]).
pub fn quantize_conversion<W: Write>(
    conversion: &crate::convert::Conversion<'_>,
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    let header = conversion.header()?;
    let gguf = Gguf::parse_header(&header, &Limits::default())?;
    let model = SourceModel::new(std::slice::from_ref(&gguf))?;
    quantize_streaming(&model, out, ftype, options, sink, conversion)
}

/// The `general.file_type` the output gets: the requested type's, or the input's for COPY.
fn output_file_type(model: &SourceModel<'_, '_>, ftype: FileType) -> u32 {
    match ftype.llama_ftype() {
        Some(n) => n,
        None => match model.metadata().file_type().ok().flatten() {
            Some(n) => n,
            None => guess_file_type(model),
        },
    }
}

fn output_specs(plans: &[TensorPlan]) -> Vec<TensorSpec<'_>> {
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

/// [`quantize_gguf`] over `model`'s tensor infos, reading their bytes from `source`.
fn quantize_streaming<W: Write>(
    model: &SourceModel<'_, '_>,
    out: W,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
    source: &dyn TensorData,
) -> Result<QuantizeReport, QuantizeError> {
    let file_type = output_file_type(model, ftype);
    let (metadata, plans) = output_layout(model, ftype, options)?;
    if let Some(im) = &options.imatrix {
        for (name, values) in im {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(QuantizeError::BadImatrix {
                    name: name.clone(),
                    problem: "contains a non-finite value".into(),
                });
            }
        }
    }
    let specs = output_specs(&plans);
    let mut writer = Writer::new(out, &metadata, &specs)?;
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    };
    let total: u64 = model.tensors().iter().map(|t| data_len(t) as u64).sum();
    let mut done = 0u64;
    let mut report = Vec::with_capacity(plans.len());
    let mut rows_f32: Vec<f32> = Vec::new();
    let mut round_trip: Vec<f32> = Vec::new();
    let mut quantized: Vec<u8> = Vec::new();
    let mut read_buf: Vec<u8> = Vec::new();
    for (index, p) in plans.iter().enumerate() {
        let t = &model.tensors()[p.input_index];
        let event = QuantizeEvent::Tensor {
            index,
            count: plans.len(),
            name: &p.name,
            from: p.from,
            to: p.to,
        };
        if sink.event(&event).is_break() {
            return Err(QuantizeError::Cancelled);
        }
        let len = data_len(t);
        let ne = t.ne();
        let mut sums = ErrorSums::default();
        let mut weighted = false;
        let bytes_out = if p.to == p.from {
            let mut at = 0;
            while at < len {
                let end = (at + CHUNK_ELEMENTS).min(len);
                let piece = source.read(p.input_index, at..end, &mut read_buf)?;
                writer.write_tensor_data(piece)?;
                done += piece.len() as u64;
                if sink.event(&QuantizeEvent::Bytes { done, total }).is_break() {
                    return Err(QuantizeError::Cancelled);
                }
                at = end;
            }
            len as u64
        } else {
            let from = kernel_type(&p.name, p.from)?;
            let to = kernel_type(&p.name, p.to)?;
            if from.block_size() > 1 && !options.allow_requantize {
                return Err(QuantizeError::RequantizeNotAllowed {
                    name: p.name.clone(),
                    ty: p.from,
                });
            }
            let n_per_row = ne[0] as usize;
            let rows_per_expert = (ne[1] * ne[3]) as usize;
            let experts = ne[2] as usize;
            let imatrix = imatrix_for(options, &p.name, ne)?;
            weighted = imatrix.is_some();
            let in_row = len / (rows_per_expert * experts).max(1);
            let out_row = kiln_quant::row_size(to, n_per_row).map_err(|_| {
                QuantizeError::UnsupportedType {
                    name: p.name.clone(),
                    ty: p.to,
                }
            })?;
            let chunk_rows = (CHUNK_ELEMENTS / n_per_row.max(1)).max(1);
            let mut written = 0u64;
            for e in 0..experts {
                let weights = imatrix.map(|im| &im[e * n_per_row..(e + 1) * n_per_row]);
                let mut row = 0;
                while row < rows_per_expert {
                    let rows = chunk_rows.min(rows_per_expert - row);
                    let first = e * rows_per_expert + row;
                    let src = source.read(
                        p.input_index,
                        first * in_row..(first + rows) * in_row,
                        &mut read_buf,
                    )?;
                    rows_f32.resize(rows * n_per_row, 0.0);
                    if options.measure_error {
                        round_trip.resize(rows * n_per_row, 0.0);
                    }
                    quantized.resize(rows * out_row, 0);
                    let rows_io = RowsIo {
                        from,
                        to,
                        in_row,
                        n_per_row,
                        out_row,
                    };
                    let check = if options.measure_error {
                        Some(&mut round_trip[..rows * n_per_row])
                    } else {
                        None
                    };
                    let chunk_sums = convert_rows(
                        &rows_io,
                        src,
                        weights,
                        &mut rows_f32,
                        &mut quantized,
                        check,
                        threads,
                    )
                    .map_err(|e| QuantizeError::Kernel {
                        name: p.name.clone(),
                        source: e,
                    })?;
                    sums.merge(&chunk_sums);
                    if let Some(at) = validate::first_invalid(p.to, &quantized) {
                        return Err(QuantizeError::InvalidData {
                            name: p.name.clone(),
                            ty: p.to,
                            unit: at,
                        });
                    }
                    writer.write_tensor_data(&quantized)?;
                    written += quantized.len() as u64;
                    done += src.len() as u64;
                    if sink.event(&QuantizeEvent::Bytes { done, total }).is_break() {
                        return Err(QuantizeError::Cancelled);
                    }
                    row += rows;
                }
            }
            written
        };
        source.release(p.input_index);
        let error = options.measure_error.then(|| {
            if p.to == p.from {
                // Copied bit for bit.
                sums.n = t.n_elements();
            }
            sums.finish(weighted)
        });
        report.push(TensorReport {
            name: p.name.clone(),
            from: p.from,
            to: p.to,
            n_elements: t.n_elements(),
            bytes_in: len as u64,
            bytes_out,
            error,
        });
        let done_event = QuantizeEvent::TensorDone {
            index,
            report: report.last().expect("just pushed"),
        };
        if sink.event(&done_event).is_break() {
            return Err(QuantizeError::Cancelled);
        }
    }
    let file_len = writer.layout().file_len;
    let mut out = writer.finish()?;
    out.flush()
        .map_err(|e| QuantizeError::Write(WriteError::Io(e)))?;
    Ok(QuantizeReport {
        file_type,
        tensors: report,
        file_len,
    })
}

/// Shapes of one conversion: source and target types and their row sizes.
struct RowsIo {
    from: QuantType,
    to: QuantType,
    in_row: usize,
    n_per_row: usize,
    out_row: usize,
}

/// Converts whole rows `src` (type `from`) to `out` (type `to`), each thread taking a contiguous
/// share of the rows through both steps (dequantize into `scratch`, then quantize), so conversion
/// scales with the threads too. Rows are independent, so the bytes never depend on `threads`.
/// With `check`, each share is dequantized again into it and compared with `scratch`: the error
/// sums of the rows are returned (else empty sums).
fn convert_rows(
    io: &RowsIo,
    src: &[u8],
    weights: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [u8],
    check: Option<&mut [f32]>,
    threads: usize,
) -> Result<ErrorSums, kiln_quant::QuantError> {
    let one = |src: &[u8], f32s: &mut [f32], out: &mut [u8], back: Option<&mut [f32]>| {
        kiln_quant::dequantize(io.from, src, f32s)?;
        kiln_quant::quantize(io.to, f32s, io.n_per_row, weights, out)?;
        let mut sums = ErrorSums::default();
        if let Some(back) = back {
            kiln_quant::dequantize(io.to, out, back)?;
            sums.add_rows(f32s, back, io.n_per_row, weights);
        }
        Ok(sums)
    };
    let rows = src.len() / io.in_row.max(1);
    if threads <= 1 || rows < 2 {
        return one(src, scratch, out, check);
    }
    let per = rows.div_ceil(threads);
    let mut backs: Vec<Option<&mut [f32]>> = match check {
        Some(back) => back.chunks_mut(per * io.n_per_row).map(Some).collect(),
        None => Vec::new(),
    };
    backs.resize_with(rows.div_ceil(per), || None);
    std::thread::scope(|scope| {
        let workers: Vec<_> = src
            .chunks(per * io.in_row)
            .zip(scratch.chunks_mut(per * io.n_per_row))
            .zip(out.chunks_mut(per * io.out_row))
            .zip(backs)
            .map(|(((s, f), o), b)| scope.spawn(move || one(s, f, o, b)))
            .collect();
        let mut total = ErrorSums::default();
        for w in workers {
            let sums = w
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            total.merge(&sums);
        }
        Ok(total)
    })
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

/// The imatrix slice for a tensor, checked as llama.cpp checks it (`ne[0] * ne[2]` values; a
/// mismatch is an error except for token_embd, which is then quantized without one).
fn imatrix_for<'o>(
    options: &'o QuantizeOptions,
    name: &str,
    ne: [u64; 4],
) -> Result<Option<&'o [f32]>, QuantizeError> {
    let Some(values) = options.imatrix.as_ref().and_then(|m| m.get(name)) else {
        return Ok(None);
    };
    let expected = (ne[0] * ne[2]) as usize;
    if values.len() == expected {
        Ok(Some(values))
    } else if name == "token_embd.weight" {
        Ok(None)
    } else {
        Err(QuantizeError::BadImatrix {
            name: name.to_owned(),
            problem: format!("has {} values, expected {expected}", values.len()),
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Maps a GGUF file and, when it is the first part of a split model, the other parts beside it.
pub(crate) fn map_parts(input: &Path) -> Result<Vec<kiln_gguf::GgufFile>, QuantizeError> {
    let map = |path: &Path| {
        // SAFETY: the map is read-only; a caller that truncates the input while it is being
        // quantized gets a SIGBUS, which is the documented contract of quantizing a live file.
        unsafe { kiln_gguf::GgufFile::map(path) }.map_err(io_err(path))
    };
    let mut files = vec![map(input)?];
    let position = split_position(files[0].parse(&Limits::default())?.metadata());
    if let Some((no, count)) = position {
        if no != 0 {
            return Err(SplitError::NotFirstPart { no, count }.into());
        }
        for path in split_part_paths(input, count)?.iter().skip(1) {
            files.push(map(path).map_err(|e| SplitError::MissingPart {
                path: path.display().to_string(),
                message: match e {
                    QuantizeError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                },
            })?);
        }
    }
    Ok(files)
}

/// Quantizes the GGUF file `input` into `output`. The output appears complete or not at all: it
/// is written to a temporary file beside it, fsynced, then renamed. When `input` is the first part
/// of a split model (`NAME-00001-of-0000N.gguf`), the other parts are read from beside it and the
/// output is one merged file, as llama-quantize writes it. When `input` is a directory, it is a
/// Hugging Face model folder, converted as Ollama converts it while it is quantized
/// ([`quantize_conversion`]: no converted file is written).
pub fn quantize_model(
    input: &Path,
    output: &Path,
    ftype: FileType,
    options: &QuantizeOptions,
    sink: &mut dyn QuantizeSink,
) -> Result<QuantizeReport, QuantizeError> {
    if input.is_dir() {
        // SAFETY: read-only maps of the user's input; like llama-quantize, this assumes nothing
        // rewrites the files while they are read (a truncation would be a SIGBUS).
        let folder = unsafe { crate::convert::ModelFolder::map_dir(input) }?;
        let conversion = crate::convert::Conversion::plan(&folder)?;
        return write_atomically(output, |out| {
            quantize_conversion(&conversion, out, ftype, options, sink)
        });
    }
    let files = map_parts(input)?;
    let parts = files
        .iter()
        .map(|f| f.parse(&Limits::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let model = SourceModel::new(&parts)?;
    write_atomically(output, |out| {
        let release = |b: &[u8]| files.iter().for_each(|f| f.release(b));
        let data = Parsed {
            model: &model,
            consumed: &release,
        };
        quantize_streaming(&model, out, ftype, options, sink, &data)
    })
}

/// Runs `write` into a temporary file beside `output`, then fsyncs and renames it into place; on
/// any error the temporary file is removed and `output` is untouched (kiln-store's one helper).
fn write_atomically(
    output: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<QuantizeReport, QuantizeError>,
) -> Result<QuantizeReport, QuantizeError> {
    kiln_store::write_atomically(output, write, |path, source| QuantizeError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Deterministic small F16 values for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn f16_for_tests(i: usize) -> [u8; 2] {
    kiln_quant::f32_to_f16_bits(((i * 37 % 101) as f32 - 50.0) * 0.001).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_gguf::TensorSpec;

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
