//! Size targets: the per-tensor type mix that loses least under a size budget.
//!
//! Each tensor the file type would quantize is tried in every candidate type (on a sample of its
//! rows, with the importance matrix when there is one), which gives its error and size per type.
//! The mix minimising the model's total (importance-weighted) squared error under the budget is
//! then a multiple-choice knapsack, solved by Lagrangian relaxation (each tensor takes the type
//! minimising `error + λ·bytes`, λ found by bisection) and a greedy use of what budget is left.
//!
//! The mix is expressed as llama-quantize `--tensor-type` overrides on a base file type, so the
//! same bytes come out of kiln and of llama.cpp (tested against `llama_model_quantize`).

use kiln_gguf::{GgmlType, Gguf};
use kiln_quant::QuantType;

use super::{
    ErrorSums, FileType, QuantizeError, QuantizeOptions, SourceModel, TensorData, data_len,
    imatrix_for, kernel_type, output_size, plan,
};

/// What the mix must fit in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Tensor bits per weight over every weight of the model (as `llama-quantize` reports BPW).
    BitsPerWeight(f64),
    /// Bytes of the whole output file.
    FileBytes(u64),
}

/// How the mix is searched.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOptions {
    /// The budget.
    pub budget: Budget,
    /// Types a tensor may get (each only where the tensor's rows hold whole blocks of it).
    pub candidates: Vec<GgmlType>,
    /// Rows of each tensor measured per candidate (evenly spaced; all rows of smaller tensors).
    pub sample_rows: usize,
}

impl TargetOptions {
    /// The k-quants and Q8_0, on 256 sampled rows per tensor.
    pub fn new(budget: Budget) -> TargetOptions {
        TargetOptions {
            budget,
            candidates: vec![
                GgmlType::Q2_K,
                GgmlType::Q3_K,
                GgmlType::Q4_K,
                GgmlType::Q5_K,
                GgmlType::Q6_K,
                GgmlType::Q8_0,
            ],
            sample_rows: 256,
        }
    }
}

/// One tensor's choice in a [`Mix`].
#[derive(Debug, Clone, PartialEq)]
pub struct MixTensor {
    /// Tensor name.
    pub name: String,
    /// The type chosen.
    pub chosen: GgmlType,
    /// Its bytes in that type.
    pub bytes: u64,
    /// Its estimated squared error in that type (importance-weighted with an imatrix).
    pub error: f64,
}

/// A per-tensor type mix that meets a budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// The file type the overrides apply to (its rules decide every tensor not listed).
    pub base: FileType,
    /// The tensors given their own type, in output order.
    pub tensors: Vec<MixTensor>,
    /// The output file's exact size.
    pub file_len: u64,
    /// Tensor bits per weight over every weight.
    pub bits_per_weight: f64,
    /// Estimated total squared error of the tensors in the mix.
    pub error: f64,
    /// The fixed k-quant file type whose file is nearest the mix's size, for comparison.
    pub nearest_fixed: Option<FixedType>,
}

/// A fixed file type's size and estimated error (on the same samples as the mix's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedType {
    /// The file type.
    pub file_type: FileType,
    /// Its output file's size.
    pub file_len: u64,
    /// Its estimated total squared error.
    pub error: f64,
}

impl Mix {
    /// `options` with the mix's overrides (exact-name patterns) in front of its own.
    pub fn apply(&self, options: &QuantizeOptions) -> QuantizeOptions {
        let mut out = options.clone();
        let mut overrides = self.overrides();
        overrides.append(&mut out.tensor_types);
        out.tensor_types = overrides;
        out
    }

    /// The overrides as `(regex, type)`: one exact-name pattern per tensor.
    pub fn overrides(&self) -> Vec<(String, GgmlType)> {
        self.tensors
            .iter()
            .map(|t| (format!("^{}$", regex::escape(&t.name)), t.chosen))
            .collect()
    }

    /// The llama-quantize arguments that make the same file: `--tensor-type PATTERN=TYPE` for each
    /// tensor, then the base type (input and output paths are the caller's).
    pub fn llama_quantize_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (pattern, ty) in self.overrides() {
            args.push("--tensor-type".to_owned());
            args.push(format!("{pattern}={ty}"));
        }
        args.push(self.base.name().to_owned());
        args
    }
}

/// One tensor's measured options: `(type, bytes, error)` sorted by bytes.
struct Choices {
    name: String,
    options: Vec<(GgmlType, u64, f64)>,
}

/// Measures the candidate types (`candidates_for` each planned tensor) of every tensor the plan
/// quantizes: estimated squared error (importance-weighted when `options` has an imatrix) and
/// bytes. Types whose blocks do not divide the tensor's rows are left out, and so are tensors left
/// with none.
fn measure(
    model: &SourceModel<'_, '_>,
    data: &dyn TensorData,
    plans: &[super::TensorPlan],
    options: &QuantizeOptions,
    candidates_for: &dyn Fn(&super::TensorPlan) -> Vec<GgmlType>,
    sample_rows: usize,
) -> Result<Vec<Choices>, QuantizeError> {
    let mut out = Vec::new();
    let mut back = Vec::new();
    let mut quantized = Vec::new();
    for p in plans {
        if !p.to.is_quantized() || p.to == p.from {
            continue;
        }
        let t = &model.tensors()[p.input_index];
        let ne = t.ne();
        let n_per_row = ne[0] as usize;
        let from = kernel_type(&p.name, p.from)?;
        let candidates: Vec<GgmlType> = candidates_for(p)
            .into_iter()
            .filter(|ty| {
                let block = QuantType::from_ggml_id(ty.0).map_or(0, |q| q.block_size());
                block > 0 && n_per_row.is_multiple_of(block)
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let rows = (ne[1] * ne[2] * ne[3]) as usize;
        let rows_per_expert = (ne[1] * ne[3]) as usize;
        let in_row = data_len(t) / rows.max(1);
        let imatrix = imatrix_for(options, &p.name, ne)?;
        let sample: Vec<usize> = if rows <= sample_rows {
            (0..rows).collect()
        } else {
            (0..sample_rows).map(|i| i * rows / sample_rows).collect()
        };
        let scale = rows as f64 / sample.len().max(1) as f64;
        // The sampled rows as f32, read (or converted) once for every candidate.
        let mut sampled = vec![0f32; sample.len() * n_per_row];
        let mut read_buf = Vec::new();
        for (&row, dst) in sample
            .iter()
            .zip(sampled.chunks_exact_mut(n_per_row.max(1)))
        {
            let bytes = data.read(
                p.input_index,
                row * in_row..(row + 1) * in_row,
                &mut read_buf,
            )?;
            kiln_quant::dequantize(from, bytes, dst).map_err(|e| QuantizeError::Kernel {
                name: p.name.clone(),
                source: e,
            })?;
        }
        let mut choices = Vec::new();
        for ty in candidates {
            let to = kernel_type(&p.name, ty)?;
            let out_row =
                kiln_quant::row_size(to, n_per_row).map_err(|e| QuantizeError::Kernel {
                    name: p.name.clone(),
                    source: e,
                })?;
            let mut sums = ErrorSums::default();
            for (&row, rows_f32) in sample.iter().zip(sampled.chunks_exact(n_per_row.max(1))) {
                back.resize(n_per_row, 0.0);
                quantized.resize(out_row, 0);
                let weights = imatrix.map(|im| {
                    let e = row / rows_per_expert.max(1);
                    &im[e * n_per_row..(e + 1) * n_per_row]
                });
                let kernel = |e| QuantizeError::Kernel {
                    name: p.name.clone(),
                    source: e,
                };
                kiln_quant::quantize(to, rows_f32, n_per_row, weights, &mut quantized)
                    .map_err(kernel)?;
                kiln_quant::dequantize(to, &quantized, &mut back).map_err(kernel)?;
                sums.add_rows(rows_f32, &back, n_per_row, weights);
            }
            let error = if imatrix.is_some() {
                sums.w_sq_err
            } else {
                sums.sq_err
            } * scale;
            choices.push((ty, (out_row * rows) as u64, error));
        }
        choices.sort_by_key(|c| c.1);
        out.push(Choices {
            name: p.name.clone(),
            options: choices,
        });
    }
    Ok(out)
}

/// For a multiplier λ, each tensor's choice minimising `error + λ·bytes`.
fn pick(choices: &[Choices], lambda: f64) -> Vec<usize> {
    choices
        .iter()
        .map(|c| {
            let cost = |i: usize| c.options[i].2 + lambda * c.options[i].1 as f64;
            (0..c.options.len())
                .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
                .unwrap_or(0)
        })
        .collect()
}

fn bytes_of(choices: &[Choices], picked: &[usize]) -> u64 {
    choices
        .iter()
        .zip(picked)
        .map(|(c, &i)| c.options[i].1)
        .sum()
}

/// The choices within `budget` bytes with the least total error the relaxation and a greedy
/// fill find; `None` when even the smallest types do not fit.
fn solve(choices: &[Choices], budget: u64) -> Option<Vec<usize>> {
    let smallest = vec![0; choices.len()];
    if bytes_of(choices, &smallest) > budget {
        return None;
    }
    // λ = 0 takes each tensor's least error; a large λ its fewest bytes.
    let mut picked = pick(choices, 0.0);
    if bytes_of(choices, &picked) > budget {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while bytes_of(choices, &pick(choices, hi)) > budget {
            hi *= 4.0;
            if hi > 1e300 {
                break;
            }
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if bytes_of(choices, &pick(choices, mid)) > budget {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        picked = pick(choices, hi);
        if bytes_of(choices, &picked) > budget {
            picked = smallest;
        }
    }
    // Spend what is left: the upgrade with the best error saved per byte that still fits.
    loop {
        let left = budget - bytes_of(choices, &picked);
        let mut best: Option<(usize, usize, f64)> = None;
        for (t, c) in choices.iter().enumerate() {
            let (_, bytes_now, err_now) = c.options[picked[t]];
            for (i, &(_, bytes, err)) in c.options.iter().enumerate() {
                if bytes <= bytes_now || bytes - bytes_now > left || err >= err_now {
                    continue;
                }
                let gain = (err_now - err) / (bytes - bytes_now) as f64;
                if best.is_none_or(|(_, _, g)| gain > g) {
                    best = Some((t, i, gain));
                }
            }
        }
        match best {
            Some((t, i, _)) => picked[t] = i,
            None => return Some(picked),
        }
    }
}

/// Chooses the mix for `parts` (a GGUF model, split or not) on the base file type `base`: every
/// tensor `base` quantizes is given the candidate type that, together, minimise the estimated
/// total squared error within the budget. The file that [`Mix::apply`]'s options make is exactly
/// `Mix::file_len` bytes.
pub fn choose_mix(
    parts: &[Gguf<'_>],
    base: FileType,
    options: &QuantizeOptions,
    target: &TargetOptions,
) -> Result<Mix, QuantizeError> {
    let model = SourceModel::new(parts)?;
    let data = super::Parsed {
        model: &model,
        consumed: &|_| {},
    };
    choose_mix_in(&model, &data, base, options, target)
}

/// [`choose_mix`] for a Hugging Face folder's planned conversion: the sampled rows are converted
/// as they are read, nothing is written. The mix applies to
/// [`quantize_conversion`](super::quantize_conversion) of the same conversion.
pub fn choose_mix_for_conversion(
    conversion: &crate::convert::Conversion<'_>,
    base: FileType,
    options: &QuantizeOptions,
    target: &TargetOptions,
) -> Result<Mix, QuantizeError> {
    let header = conversion.header()?;
    let gguf = Gguf::parse_header(&header, &kiln_gguf::Limits::default())?;
    let model = SourceModel::new(std::slice::from_ref(&gguf))?;
    choose_mix_in(&model, conversion, base, options, target)
}

fn choose_mix_in(
    model: &SourceModel<'_, '_>,
    data: &dyn TensorData,
    base: FileType,
    options: &QuantizeOptions,
    target: &TargetOptions,
) -> Result<Mix, QuantizeError> {
    let plans = plan(model, base, options)?;
    let choices = measure(
        model,
        data,
        &plans,
        options,
        &|_| target.candidates.clone(),
        target.sample_rows,
    )?;
    let n_elements: u64 = model.tensors().iter().map(|t| t.n_elements()).sum();
    let size_with = |picked: &[usize]| -> Result<(u64, u64), QuantizeError> {
        let mix = to_mix(&choices, picked, base, 0, 0.0);
        let applied = mix.apply(options);
        let file_len = output_size(model, base, &applied)?;
        let plans = plan(model, base, &applied)?;
        let tensor_bytes: u64 = plans
            .iter()
            .map(|p| {
                let t = &model.tensors()[p.input_index];
                match QuantType::from_ggml_id(p.to.0) {
                    Some(q) if p.to != p.from => {
                        kiln_quant::row_size(q, t.ne()[0] as usize).map_or(0, |r| r as u64)
                            * (t.n_elements() / t.ne()[0].max(1))
                    }
                    _ => data_len(t) as u64,
                }
            })
            .sum();
        Ok((file_len, tensor_bytes))
    };
    let smallest = vec![0; choices.len()];
    let (file_small, tensors_small) = size_with(&smallest)?;
    let mix_small = bytes_of(&choices, &smallest);
    let fixed_tensor_bytes = tensors_small - mix_small;
    let overhead = file_small - tensors_small; // header and padding, nearly constant
    let budget_bytes = |file_slack: u64| -> Option<u64> {
        match target.budget {
            Budget::BitsPerWeight(bpw) => {
                let total = (bpw * n_elements as f64 / 8.0).floor() as u64;
                total.checked_sub(fixed_tensor_bytes)
            }
            Budget::FileBytes(b) => b.checked_sub(fixed_tensor_bytes + overhead + file_slack),
        }
    };
    let too_small = || QuantizeError::BudgetTooSmall {
        smallest_file: file_small,
        smallest_bpw: tensors_small as f64 * 8.0 / n_elements.max(1) as f64,
    };
    // Padding moves with the sizes: shrink the budget by the shortfall until the file fits.
    let mut slack = 0u64;
    for _ in 0..8 {
        let budget = budget_bytes(slack).ok_or_else(too_small)?;
        let picked = solve(&choices, budget).ok_or_else(too_small)?;
        let (file_len, tensor_bytes) = size_with(&picked)?;
        let fits = match target.budget {
            Budget::BitsPerWeight(_) => true,
            Budget::FileBytes(b) => file_len <= b,
        };
        if fits {
            let error = choices
                .iter()
                .zip(&picked)
                .map(|(c, &i)| c.options[i].2)
                .sum();
            let bpw = tensor_bytes as f64 * 8.0 / n_elements.max(1) as f64;
            let mut mix = to_mix(&choices, &picked, base, file_len, bpw);
            mix.error = error;
            mix.nearest_fixed = nearest_fixed(model, data, options, file_len, target.sample_rows)?;
            return Ok(mix);
        }
        if let Budget::FileBytes(b) = target.budget {
            slack += file_len - b;
        }
    }
    Err(too_small())
}

fn to_mix(choices: &[Choices], picked: &[usize], base: FileType, file_len: u64, bpw: f64) -> Mix {
    let tensors = choices
        .iter()
        .zip(picked)
        .map(|(c, &i)| MixTensor {
            name: c.name.clone(),
            chosen: c.options[i].0,
            bytes: c.options[i].1,
            error: c.options[i].2,
        })
        .collect();
    Mix {
        base,
        tensors,
        file_len,
        bits_per_weight: bpw,
        error: 0.0,
        nearest_fixed: None,
    }
}

/// The k-quant file type whose output is nearest `file_len` bytes, with its estimated error.
fn nearest_fixed(
    model: &SourceModel<'_, '_>,
    data: &dyn TensorData,
    options: &QuantizeOptions,
    file_len: u64,
    sample_rows: usize,
) -> Result<Option<FixedType>, QuantizeError> {
    use FileType::*;
    let mut best: Option<(FileType, u64)> = None;
    for ftype in [
        Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q8_0,
    ] {
        let Ok(len) = output_size(model, ftype, options) else {
            continue;
        };
        if best.is_none_or(|(_, b)| len.abs_diff(file_len) < b.abs_diff(file_len)) {
            best = Some((ftype, len));
        }
    }
    let Some((file_type, len)) = best else {
        return Ok(None);
    };
    Ok(Some(FixedType {
        file_type,
        file_len: len,
        error: estimate(model, data, file_type, options, sample_rows)?,
    }))
}

/// [`choose_mix`] for a model on disk: a GGUF file (the first part of a split model brings the
/// others) or a Hugging Face folder ([`choose_mix_for_conversion`]).
pub fn choose_mix_for_file(
    input: &std::path::Path,
    base: FileType,
    options: &QuantizeOptions,
    target: &TargetOptions,
) -> Result<Mix, QuantizeError> {
    if input.is_dir() {
        // SAFETY: read-only maps of the user's input, as for `quantize_model`.
        let folder = unsafe { crate::convert::ModelFolder::map_dir(input) }?;
        let conversion = crate::convert::Conversion::plan(&folder)?;
        return choose_mix_for_conversion(&conversion, base, options, target);
    }
    let files = super::map_parts(input)?;
    let parts = files
        .iter()
        .map(|f| f.parse(&kiln_gguf::Limits::default()))
        .collect::<Result<Vec<_>, _>>()?;
    choose_mix(&parts, base, options, target)
}

/// The estimated squared error of quantizing with `base`'s own rules (for comparing a mix with
/// the fixed file type of about its size), on the same samples as [`choose_mix`].
pub fn estimate_error(
    parts: &[Gguf<'_>],
    base: FileType,
    options: &QuantizeOptions,
    sample_rows: usize,
) -> Result<f64, QuantizeError> {
    let model = SourceModel::new(parts)?;
    let data = super::Parsed {
        model: &model,
        consumed: &|_| {},
    };
    estimate(&model, &data, base, options, sample_rows)
}

fn estimate(
    model: &SourceModel<'_, '_>,
    data: &dyn TensorData,
    base: FileType,
    options: &QuantizeOptions,
    sample_rows: usize,
) -> Result<f64, QuantizeError> {
    let plans = plan(model, base, options)?;
    let measured = measure(model, data, &plans, options, &|p| vec![p.to], sample_rows)?;
    Ok(measured
        .iter()
        .filter_map(|c| c.options.first())
        .map(|o| o.2)
        .sum())
}
