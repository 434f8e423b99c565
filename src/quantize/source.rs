//! The model being quantized: one GGUF file, or the parts of a split GGUF read as one model, as
//! llama.cpp's loader reads them (metadata from the first part, tensors from all parts).
//!
//! Split files come from llama.cpp's `gguf-split` and gguf-py's `split_max_tensors`/`split_max_size`:
//! `NAME-00001-of-00003.gguf`, … each with `split.no` (0-based), `split.count` and, in practice,
//! `split.tensors.count`. Big models on Hugging Face ship this way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kiln_gguf::{Gguf, Metadata, TensorInfo};

/// Why parts do not form one model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// The first file given is a later part.
    #[error(
        "this is part {} of a {count}-part split model; give the first part ({})",
        no + 1,
        split_file_name("NAME", 0, *count)
    )]
    NotFirstPart {
        /// Its `split.no` (0-based).
        no: u64,
        /// Its `split.count`.
        count: u64,
    },
    /// Fewer or more parts than `split.count` says.
    #[error("split model has {count} parts but {found} were given")]
    PartCount {
        /// `split.count` of the first part.
        count: u64,
        /// Parts given.
        found: usize,
    },
    /// A part whose `split.no`/`split.count` do not match its position.
    #[error("part {} of the split model says it is part {} of {}", position + 1, no.map_or("?".into(), |n| (n + 1).to_string()), count.map_or("?".into(), |n| n.to_string()))]
    WrongPart {
        /// Position among the parts given (0-based).
        position: usize,
        /// Its `split.no`, if readable.
        no: Option<u64>,
        /// Its `split.count`, if readable.
        count: Option<u64>,
    },
    /// The same tensor in two parts.
    #[error("tensor {name} appears in more than one part of the split model")]
    DuplicateTensor {
        /// Tensor name.
        name: String,
    },
    /// `split.tensors.count` disagrees with the parts' tensors (a part is stale or truncated).
    #[error("split model should hold {expected} tensors but its parts hold {found}")]
    TensorCount {
        /// `split.tensors.count`.
        expected: u64,
        /// Tensors found.
        found: usize,
    },
    /// A part named on disk could not be opened.
    #[error("split model part {path}: {message}")]
    MissingPart {
        /// The expected path.
        path: String,
        /// What failed.
        message: String,
    },
}

/// `(split.no, split.count)` of a file that is one part of several (`split.count` > 1).
pub fn split_position(metadata: &Metadata<'_>) -> Option<(u64, u64)> {
    let count = metadata.get("split.count")?.as_u64()?;
    if count <= 1 {
        return None;
    }
    let no = metadata
        .get("split.no")
        .and_then(|v| v.as_u64())
        .unwrap_or(u64::MAX);
    Some((no, count))
}

/// llama.cpp's part file name: `PREFIX-00001-of-00003.gguf` for `index` 0 of 3.
pub fn split_file_name(prefix: &str, index: u64, count: u64) -> String {
    format!("{prefix}-{:05}-of-{count:05}.gguf", index + 1)
}

/// Parses a part file name into `(prefix, index (0-based), count)`.
pub fn parse_split_file_name(name: &str) -> Option<(&str, u64, u64)> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    let (index, count): (u64, u64) = (index.parse().ok()?, count.parse().ok()?);
    (index >= 1 && count >= 1).then(|| (prefix, index - 1, count))
}

/// The paths of every part of the split model whose first part is `first`, as llama.cpp finds
/// them: beside it, named by the pattern.
pub fn split_part_paths(first: &Path, count: u64) -> Result<Vec<PathBuf>, SplitError> {
    let name = first.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let prefix = match parse_split_file_name(name) {
        Some((prefix, 0, c)) if c == count => prefix.to_owned(),
        _ => {
            return Err(SplitError::MissingPart {
                path: first.display().to_string(),
                message: format!(
                    "the first part of a {count}-part model must be named {}",
                    split_file_name("NAME", 0, count)
                ),
            });
        }
    };
    Ok((0..count)
        .map(|i| first.with_file_name(split_file_name(&prefix, i, count)))
        .collect())
}

/// A model to quantize: the metadata of its (first) file and the tensors of all its files.
#[derive(Debug, Clone)]
pub struct SourceModel<'g, 'a> {
    metadata: &'g Metadata<'a>,
    tensors: Vec<TensorInfo<'a>>,
}

impl<'g, 'a> SourceModel<'g, 'a> {
    /// One file, or every part of a split model in order. A lone part of a split model is an
    /// error, so a model is never quantized with tensors missing.
    pub fn new(parts: &'g [Gguf<'a>]) -> Result<Self, SplitError> {
        let Some(first) = parts.first() else {
            return Err(SplitError::PartCount { count: 1, found: 0 });
        };
        let count = match split_position(first.metadata()) {
            None if parts.len() == 1 => {
                return Ok(SourceModel {
                    metadata: first.metadata(),
                    tensors: first.tensors().to_vec(),
                });
            }
            None => {
                return Err(SplitError::WrongPart {
                    position: 0,
                    no: None,
                    count: None,
                });
            }
            Some((0, count)) => count,
            Some((no, count)) => return Err(SplitError::NotFirstPart { no, count }),
        };
        if parts.len() as u64 != count {
            return Err(SplitError::PartCount {
                count,
                found: parts.len(),
            });
        }
        let mut tensors = Vec::new();
        let mut names = HashSet::new();
        for (position, part) in parts.iter().enumerate() {
            let md = part.metadata();
            let no = md.get("split.no").and_then(|v| v.as_u64());
            let c = md.get("split.count").and_then(|v| v.as_u64());
            if no != Some(position as u64) || c != Some(count) {
                return Err(SplitError::WrongPart {
                    position,
                    no,
                    count: c,
                });
            }
            for t in part.tensors() {
                if !names.insert(t.name()) {
                    return Err(SplitError::DuplicateTensor {
                        name: t.name().to_owned(),
                    });
                }
                tensors.push(t.clone());
            }
        }
        if let Some(expected) = first
            .metadata()
            .get("split.tensors.count")
            .and_then(|v| v.as_u64())
            && expected != tensors.len() as u64
        {
            return Err(SplitError::TensorCount {
                expected,
                found: tensors.len(),
            });
        }
        Ok(SourceModel {
            metadata: first.metadata(),
            tensors,
        })
    }

    /// The model's metadata (its first file's).
    pub fn metadata(&self) -> &'g Metadata<'a> {
        self.metadata
    }

    /// Every tensor, in file order across the parts.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The model with only the tensors `keep` accepts, and each kept tensor's index here.
    pub(crate) fn subset(
        &self,
        keep: impl Fn(&TensorInfo<'a>) -> bool,
    ) -> (SourceModel<'g, 'a>, Vec<usize>) {
        let index: Vec<usize> = (0..self.tensors.len())
            .filter(|&i| keep(&self.tensors[i]))
            .collect();
        let model = SourceModel {
            metadata: self.metadata,
            tensors: index.iter().map(|&i| self.tensors[i].clone()).collect(),
        };
        (model, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_file_names_follow_llama_cpp() {
        assert_eq!(split_file_name("m", 0, 3), "m-00001-of-00003.gguf");
        assert_eq!(
            parse_split_file_name("my-model-00002-of-00003.gguf"),
            Some(("my-model", 1, 3))
        );
        for bad in [
            "m-00000-of-00003.gguf",
            "m-0001-of-00003.gguf",
            "m-00001-of-00003.bin",
            "m.gguf",
            "m-00001-of-0000a.gguf",
        ] {
            assert_eq!(parse_split_file_name(bad), None, "{bad}");
        }
        let paths = split_part_paths(Path::new("/d/x-00001-of-00002.gguf"), 2).unwrap();
        assert_eq!(paths[1], Path::new("/d/x-00002-of-00002.gguf"));
        assert!(split_part_paths(Path::new("/d/x.gguf"), 2).is_err());
    }
}
