//! llama.cpp's importance-matrix files (the GGUF format `llama-imatrix` writes).

use std::collections::HashMap;

use kiln_gguf::{GgmlType, Gguf, Limits, Value};

/// An importance matrix: per tensor, one weight per column (per expert for 3-D tensors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imatrix {
    /// Tensor name → `ne[0] * n_expert` values.
    pub data: HashMap<String, Vec<f32>>,
    /// The calibration datasets named in the file.
    pub datasets: Vec<String>,
    /// Chunks the statistics were collected over.
    pub chunk_count: u32,
}

/// Why an imatrix file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImatrixError {
    /// Not a GGUF file (the legacy `.dat` format is not supported).
    #[error("not a GGUF imatrix (the legacy .dat format is not supported): {0}")]
    Gguf(#[from] kiln_gguf::GgufError),
    /// A key llama.cpp requires is missing or mistyped.
    #[error("imatrix metadata {key} is missing or not a {expected}")]
    Metadata {
        /// The key.
        key: &'static str,
        /// The type expected.
        expected: &'static str,
    },
    /// A tensor with sums but no counts, or the other way round.
    #[error("imatrix has mismatched sums and counts for {name}")]
    Mismatched {
        /// Tensor name.
        name: String,
    },
    /// A sums or counts tensor that is not F32 or has the wrong shape.
    #[error("imatrix tensor {name} is not an F32 tensor of the expected shape")]
    BadTensor {
        /// Tensor name.
        name: String,
    },
    /// No entries at all.
    #[error("imatrix file has no data")]
    Empty,
}

const SUMS: &str = ".in_sum2";
const COUNTS: &str = ".counts";

fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Imatrix {
    /// Reads an imatrix GGUF: `<tensor>.in_sum2` (`[ne0, n_mat]`) and `<tensor>.counts` (`[1, n_mat]`)
    /// give `sums / count` per column, or 1 where a matrix saw no input, as llama-quantize computes.
    pub fn parse(bytes: &[u8]) -> Result<Imatrix, ImatrixError> {
        let gguf = Gguf::parse(bytes, &Limits::default())?;
        let md = gguf.metadata();
        let datasets = match md.get("imatrix.datasets") {
            Some(Value::Array(a)) if a.element_type() == kiln_gguf::ValueType::String => a
                .strings()
                .into_iter()
                .flatten()
                .map(|s| s.into_owned())
                .collect(),
            _ => {
                return Err(ImatrixError::Metadata {
                    key: "imatrix.datasets",
                    expected: "string array",
                });
            }
        };
        let chunk_count = md
            .get("imatrix.chunk_count")
            .and_then(Value::as_u32)
            .ok_or(ImatrixError::Metadata {
                key: "imatrix.chunk_count",
                expected: "u32",
            })?;
        md.get("imatrix.chunk_size")
            .and_then(Value::as_u32)
            .ok_or(ImatrixError::Metadata {
                key: "imatrix.chunk_size",
                expected: "u32",
            })?;
        let mut pairs: HashMap<&str, (Option<usize>, Option<usize>)> = HashMap::new();
        for (i, t) in gguf.tensors().iter().enumerate() {
            if let Some(name) = t.name().strip_suffix(SUMS) {
                pairs.entry(name).or_default().0 = Some(i);
            } else if let Some(name) = t.name().strip_suffix(COUNTS) {
                pairs.entry(name).or_default().1 = Some(i);
            }
        }
        let mut data = HashMap::with_capacity(pairs.len());
        for (name, pair) in pairs {
            let (Some(s), Some(c)) = pair else {
                return Err(ImatrixError::Mismatched {
                    name: name.to_owned(),
                });
            };
            let (sums, counts) = (&gguf.tensors()[s], &gguf.tensors()[c]);
            let ne = sums.ne();
            let (ne0, n_mat) = (ne[0] as usize, ne[1] as usize);
            let bad = |n: &str| ImatrixError::BadTensor { name: n.to_owned() };
            if sums.ggml_type() != GgmlType::F32 || ne[2] != 1 || ne[3] != 1 {
                return Err(bad(sums.name()));
            }
            if counts.ggml_type() != GgmlType::F32 || counts.n_elements() != n_mat as u64 {
                return Err(bad(counts.name()));
            }
            let sums: Vec<f32> = f32s(sums.data()).collect();
            let counts: Vec<f32> = f32s(counts.data()).collect();
            let mut values = Vec::with_capacity(ne0 * n_mat);
            for (m, &count) in counts.iter().enumerate() {
                let row = &sums[m * ne0..(m + 1) * ne0];
                if count > 0.0 {
                    values.extend(row.iter().map(|s| s / count));
                } else {
                    values.extend(std::iter::repeat_n(1.0, ne0));
                }
            }
            data.insert(name.to_owned(), values);
        }
        if data.is_empty() {
            return Err(ImatrixError::Empty);
        }
        Ok(Imatrix {
            data,
            datasets,
            chunk_count,
        })
    }

    /// The metadata llama-quantize records when it uses an imatrix (its `--override-kv` entries),
    /// appended after `general.file_type` in this order.
    pub fn provenance(&self, file_name: &str) -> Vec<(String, Value<'static>)> {
        let mut kv = vec![(
            "quantize.imatrix.file".to_owned(),
            Value::string(truncate(file_name)),
        )];
        if let Some(first) = self.datasets.first() {
            kv.push((
                "quantize.imatrix.dataset".to_owned(),
                Value::string(truncate(first)),
            ));
        }
        kv.push((
            "quantize.imatrix.entries_count".to_owned(),
            Value::I32(self.data.len() as i32),
        ));
        if self.chunk_count > 0 {
            kv.push((
                "quantize.imatrix.chunks_count".to_owned(),
                Value::I32(self.chunk_count as i32),
            ));
        }
        kv
    }
}

/// llama-quantize copies override strings into a 128-byte buffer (127 bytes and a NUL).
fn truncate(s: &str) -> String {
    let mut end = s.len().min(127);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
