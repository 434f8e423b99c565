//! What a quantization did: per tensor ([`TensorReport`], its measured [`TensorError`]) and for
//! the whole model ([`QuantizeReport`], [`ModelSummary`]).

use kiln_gguf::GgmlType;

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
pub(super) struct ErrorSums {
    pub(super) n: u64,
    pub(super) sq_err: f64,
    sq_src: f64,
    max_abs: f64,
    pub(super) w_sq_err: f64,
    w_sum: f64,
}

impl ErrorSums {
    /// Adds the rows `source` and their round trip `back`, `n_per_row` values a row, each value
    /// weighted by its column's `weights` when given. Eight independent lanes keep the loop
    /// vectorizable; the lanes are summed at the end of each row.
    pub(super) fn add_rows(
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

    pub(super) fn merge(&mut self, other: &ErrorSums) {
        self.n += other.n;
        self.sq_err += other.sq_err;
        self.sq_src += other.sq_src;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.w_sq_err += other.w_sq_err;
        self.w_sum += other.w_sum;
    }

    pub(super) fn finish(&self, weighted: bool) -> TensorError {
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
    ///
    /// [`QuantizeOptions::measure_error`]: super::QuantizeOptions::measure_error
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
