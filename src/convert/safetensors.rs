//! The safetensors format, read from `&[u8]`: an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the data.
//!
//! Every range is checked against the buffer and against its dtype and shape before a tensor is
//! handed out, so a hostile file gives an error, never an out-of-bounds slice or a huge
//! allocation. Ollama's reader checks none of this; the files it accepts that this one refuses
//! are those whose data it would read past or misinterpret.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// Largest header accepted (the `safetensors` crate's limit, also 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Why a safetensors file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SafetensorsError {
    /// Fewer than 8 bytes, or fewer than the header claims.
    #[error("safetensors file is truncated: header needs {needed} bytes, the file has {len}")]
    Truncated {
        /// Bytes the header length says are there.
        needed: u64,
        /// Bytes there are.
        len: u64,
    },
    /// A header larger than the limit ([`MAX_HEADER_BYTES`] unless configured otherwise).
    #[error("safetensors header of {len} bytes is over the {limit}-byte limit")]
    HeaderTooLarge {
        /// The claimed header length.
        len: u64,
        /// The limit it is over.
        limit: u64,
    },
    /// The header is not a JSON object of tensor entries.
    #[error("safetensors header is not valid JSON: {0}")]
    Json(String),
    /// An entry that is not `{"dtype", "shape", "data_offsets"}`.
    #[error("safetensors tensor {name:?} has a malformed entry: {reason}")]
    BadEntry {
        /// The tensor.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// A dtype this reader does not know.
    #[error("safetensors tensor {name:?} has unknown dtype {dtype:?}")]
    UnknownDtype {
        /// The tensor.
        name: String,
        /// Its dtype string.
        dtype: String,
    },
    /// A byte range outside the data section or reversed.
    #[error(
        "safetensors tensor {name:?} has data offsets [{start}, {end}] outside the {len}-byte data section"
    )]
    BadOffsets {
        /// The tensor.
        name: String,
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
        /// Size of the data section.
        len: u64,
    },
    /// Tensors that overlap or leave a gap: as the `safetensors` crate requires, the tensors,
    /// in offset order, must tile the data section exactly.
    #[error(
        "safetensors tensor {name:?} starts at byte {start} of the data section, but the tensors before it end at byte {expected}: tensors must not overlap or leave gaps"
    )]
    NotContiguous {
        /// The tensor.
        name: String,
        /// Its start offset.
        start: u64,
        /// Where the previous tensor (in offset order) ends.
        expected: u64,
    },
    /// Data past the last tensor.
    #[error(
        "safetensors data section has {len} bytes but its tensors end at byte {end}: trailing bytes belong to no tensor"
    )]
    TrailingData {
        /// Where the last tensor ends.
        end: u64,
        /// Size of the data section.
        len: u64,
    },
    /// A byte range whose length does not match the dtype and shape.
    #[error(
        "safetensors tensor {name:?} of dtype {dtype} and shape {shape:?} needs {expected} bytes, its data has {actual}"
    )]
    SizeMismatch {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
        /// Its shape.
        shape: Vec<u64>,
        /// Bytes the dtype and shape need (`None` when they overflow).
        expected: String,
        /// Bytes the offsets give.
        actual: u64,
    },
}

/// A tensor's element type, as safetensors names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dtype {
    /// `BOOL`
    Bool,
    /// `U8`
    U8,
    /// `I8`
    I8,
    /// `F8_E4M3`
    F8E4M3,
    /// `F8_E5M2`
    F8E5M2,
    /// `U16`
    U16,
    /// `I16`
    I16,
    /// `F16`
    F16,
    /// `BF16`
    BF16,
    /// `U32`
    U32,
    /// `I32`
    I32,
    /// `F32`
    F32,
    /// `U64`
    U64,
    /// `I64`
    I64,
    /// `F64`
    F64,
}

impl Dtype {
    const ALL: [(Dtype, &'static str, u64); 15] = [
        (Dtype::Bool, "BOOL", 1),
        (Dtype::U8, "U8", 1),
        (Dtype::I8, "I8", 1),
        (Dtype::F8E4M3, "F8_E4M3", 1),
        (Dtype::F8E5M2, "F8_E5M2", 1),
        (Dtype::U16, "U16", 2),
        (Dtype::I16, "I16", 2),
        (Dtype::F16, "F16", 2),
        (Dtype::BF16, "BF16", 2),
        (Dtype::U32, "U32", 4),
        (Dtype::I32, "I32", 4),
        (Dtype::F32, "F32", 4),
        (Dtype::U64, "U64", 8),
        (Dtype::I64, "I64", 8),
        (Dtype::F64, "F64", 8),
    ];

    /// The name safetensors uses.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|d| d.0 == self).map_or("?", |d| d.1)
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        Self::ALL.iter().find(|d| d.0 == self).map_or(1, |d| d.2)
    }

    fn parse(name: &str) -> Option<Dtype> {
        Self::ALL.iter().find(|d| d.1 == name).map(|d| d.0)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a safetensors file, borrowing its data.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorView<'a> {
    /// Its name in the file.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost dimension first (PyTorch's order). A 0-dimensional tensor reads as `[1]`,
    /// as Ollama promotes it.
    pub shape: Vec<u64>,
    /// Its bytes, exactly `dtype.size() × product(shape)` of them.
    pub data: &'a [u8],
}

/// A parsed safetensors file: its tensors in name order, and its `__metadata__` strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Safetensors<'a> {
    /// Tensors sorted by name (the order Ollama converts them in).
    pub tensors: Vec<TensorView<'a>>,
    /// The optional `__metadata__` string map.
    pub metadata: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

impl<'a> Safetensors<'a> {
    /// Parses and checks a whole file held in memory (or mapped), with a header of at most
    /// [`MAX_HEADER_BYTES`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SafetensorsError> {
        Safetensors::parse_with_limit(bytes, MAX_HEADER_BYTES)
    }

    /// [`parse`](Self::parse) with a header of at most `max_header_bytes` (the JSON header is
    /// parsed into memory, so this bounds what a file can make the reader allocate for it).
    pub fn parse_with_limit(
        bytes: &'a [u8],
        max_header_bytes: u64,
    ) -> Result<Self, SafetensorsError> {
        let len = bytes.len() as u64;
        let Some(prefix) = bytes.get(..8) else {
            return Err(SafetensorsError::Truncated { needed: 8, len });
        };
        let header_len = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
        if header_len > max_header_bytes {
            return Err(SafetensorsError::HeaderTooLarge {
                len: header_len,
                limit: max_header_bytes,
            });
        }
        let data_start = 8 + header_len;
        if data_start > len {
            return Err(SafetensorsError::Truncated {
                needed: data_start,
                len,
            });
        }
        let header = &bytes[8..data_start as usize];
        let data = &bytes[data_start as usize..];
        let entries: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(header).map_err(|e| SafetensorsError::Json(e.to_string()))?;
        let mut tensors = Vec::with_capacity(entries.len());
        let mut offsets = Vec::with_capacity(entries.len());
        let mut metadata = BTreeMap::new();
        for (name, raw) in entries {
            if name == "__metadata__" {
                metadata =
                    serde_json::from_str(raw.get()).map_err(|e| SafetensorsError::BadEntry {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
                continue;
            }
            let entry: Entry =
                serde_json::from_str(raw.get()).map_err(|e| SafetensorsError::BadEntry {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            let Some(dtype) = Dtype::parse(&entry.dtype) else {
                return Err(SafetensorsError::UnknownDtype {
                    name,
                    dtype: entry.dtype,
                });
            };
            let (start, end) = entry.data_offsets;
            if start > end || end > data.len() as u64 {
                return Err(SafetensorsError::BadOffsets {
                    name,
                    start,
                    end,
                    len: data.len() as u64,
                });
            }
            let expected = entry
                .shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(end - start) {
                return Err(SafetensorsError::SizeMismatch {
                    name,
                    dtype: entry.dtype,
                    shape: entry.shape,
                    expected: expected.map_or("more than 2^64".into(), |n| n.to_string()),
                    actual: end - start,
                });
            }
            let shape = if entry.shape.is_empty() {
                vec![1]
            } else {
                entry.shape
            };
            offsets.push(start);
            tensors.push(TensorView {
                name,
                dtype,
                shape,
                data: &data[start as usize..end as usize],
            });
        }
        let spans = tensors
            .iter()
            .zip(&offsets)
            .map(|(t, &start)| (start, start + t.data.len() as u64, t.name.as_str()))
            .collect();
        check_contiguous(spans, data.len() as u64)?;
        Ok(Safetensors { tensors, metadata })
    }
}

/// Refuses overlapping tensors, gaps between them and bytes after the last one, as the
/// `safetensors` crate does: a tensor's bytes belong to it alone. `spans` are each tensor's
/// `(start, end, name)` in the data section of `len` bytes.
fn check_contiguous(mut spans: Vec<(u64, u64, &str)>, len: u64) -> Result<(), SafetensorsError> {
    spans.sort_unstable();
    let mut end = 0;
    for (start, stop, name) in spans {
        if start != end {
            return Err(SafetensorsError::NotContiguous {
                name: name.to_owned(),
                start,
                expected: end,
            });
        }
        end = stop;
    }
    if end != len {
        return Err(SafetensorsError::TrailingData { end, len });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn encode(tensors: &[(&str, &str, &[u64], &[u8])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": dtype, "shape": shape,
                               "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend_from_slice(bytes);
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tensors_come_back_sorted_with_their_bytes() {
        let bytes = encode(&[
            ("b.weight", "F16", &[2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]),
            ("a.bias", "F32", &[1], &[9, 9, 9, 9]),
            ("scalar", "BF16", &[], &[7, 7]),
        ]);
        let st = Safetensors::parse(&bytes).unwrap();
        let names: Vec<_> = st.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.bias", "b.weight", "scalar"]);
        assert_eq!(st.tensors[1].dtype, Dtype::F16);
        assert_eq!(st.tensors[1].shape, [2, 2]);
        assert_eq!(st.tensors[1].data, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            st.tensors[2].shape,
            [1],
            "0-d tensors read as [1], as in Ollama"
        );
        assert_eq!(st.metadata["format"], "pt");
    }

    #[test]
    fn overlapping_gapped_and_trailing_layouts_are_refused() {
        let file = |header: &str, data_len: usize| {
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend(header.as_bytes());
            b.extend(vec![0u8; data_len]);
            b
        };
        let two = |a: [u64; 2], b: [u64; 2]| {
            format!(
                r#"{{"a":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}},"b":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}}}}"#,
                a[0], a[1], b[0], b[1]
            )
        };
        // Both tensors read the same four bytes: writing one would change the other.
        assert_eq!(
            Safetensors::parse(&file(&two([0, 4], [0, 4]), 4)).unwrap_err(),
            SafetensorsError::NotContiguous {
                name: "b".into(),
                start: 0,
                expected: 4
            }
        );
        // Partial overlap.
        assert!(matches!(
            Safetensors::parse(&file(&two([0, 4], [2, 6]), 6)).unwrap_err(),
            SafetensorsError::NotContiguous {
                start: 2,
                expected: 4,
                ..
            }
        ));
        // A gap before the first tensor and between tensors.
        assert!(matches!(
            Safetensors::parse(&file(&two([4, 8], [8, 12]), 12)).unwrap_err(),
            SafetensorsError::NotContiguous {
                start: 4,
                expected: 0,
                ..
            }
        ));
        assert!(matches!(
            Safetensors::parse(&file(&two([0, 4], [6, 10]), 10)).unwrap_err(),
            SafetensorsError::NotContiguous {
                start: 6,
                expected: 4,
                ..
            }
        ));
        // Bytes after the last tensor.
        assert_eq!(
            Safetensors::parse(&file(&two([0, 4], [4, 8]), 9)).unwrap_err(),
            SafetensorsError::TrailingData { end: 8, len: 9 }
        );
        // In any order in the header, tiling tensors are accepted.
        let tiled = file(&two([4, 8], [0, 4]), 8);
        assert_eq!(Safetensors::parse(&tiled).unwrap().tensors.len(), 2);
    }

    #[test]
    fn hostile_headers_are_refused_with_what_was_wrong() {
        let with_header = |h: &str, data: &[u8]| {
            let mut b = (h.len() as u64).to_le_bytes().to_vec();
            b.extend(h.as_bytes());
            b.extend(data);
            b
        };
        let err = |b: &[u8]| Safetensors::parse(b).unwrap_err();
        assert_eq!(
            err(&[1, 2, 3]),
            SafetensorsError::Truncated { needed: 8, len: 3 }
        );
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend(b"{}");
        assert_eq!(
            err(&huge),
            SafetensorsError::HeaderTooLarge {
                len: u64::MAX,
                limit: MAX_HEADER_BYTES
            }
        );
        let mut short = 100u64.to_le_bytes().to_vec();
        short.extend(b"{}");
        assert_eq!(
            err(&short),
            SafetensorsError::Truncated {
                needed: 108,
                len: 10
            }
        );
        assert!(matches!(
            err(&with_header("[1]", &[])),
            SafetensorsError::Json(_)
        ));
        let t = |dtype: &str, shape: &str, offsets: &str| {
            format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
        };
        assert!(matches!(
            err(&with_header(&t("Q4", "[1]", "[0,1]"), &[0])),
            SafetensorsError::UnknownDtype { .. }
        ));
        assert!(matches!(
            err(&with_header(&t("F32", "[1]", "[0,8]"), &[0; 4])),
            SafetensorsError::BadOffsets { end: 8, len: 4, .. }
        ));
        assert!(matches!(
            err(&with_header(&t("F32", "[1]", "[4,0]"), &[0; 4])),
            SafetensorsError::BadOffsets { .. }
        ));
        assert!(matches!(
            err(&with_header(&t("F32", "[2]", "[0,4]"), &[0; 4])),
            SafetensorsError::SizeMismatch { actual: 4, .. }
        ));
        let overflow = t("F32", "[4294967296, 4294967296]", "[0,4]");
        assert!(matches!(
            err(&with_header(&overflow, &[0; 4])),
            SafetensorsError::SizeMismatch { .. }
        ));
        assert!(matches!(
            err(&with_header(&t("F32", "[-1]", "[0,4]"), &[0; 4])),
            SafetensorsError::BadEntry { .. }
        ));
        assert!(matches!(
            err(&with_header(r#"{"t": 5}"#, &[])),
            SafetensorsError::BadEntry { .. }
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Safetensors::parse(&bytes);
        }

        #[test]
        fn arbitrary_headers_never_panic(header in "\\PC{0,200}", data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend(header.as_bytes());
            b.extend(data);
            if let Ok(st) = Safetensors::parse(&b) {
                for t in st.tensors {
                    prop_assert_eq!(t.data.len() as u64, t.shape.iter().product::<u64>() * t.dtype.size());
                }
            }
        }
    }
}
