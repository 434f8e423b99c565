//! [`ModelFolder`]: a model folder's files (mapped or in memory), read within [`ConvertLimits`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_gguf::GgufFile;

use super::ConvertError;

/// JSON files larger than this are refused (the largest real `tokenizer.json` files are tens of
/// megabytes).
pub const MAX_JSON_BYTES: u64 = 256 << 20;
/// Bounds on what a model folder can make the converter read or generate, in the spirit of
/// [`kiln_gguf::Limits`]: the defaults are far above any real model and far below what would
/// exhaust memory; an embedder converting untrusted uploads can lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertLimits {
    /// The largest JSON file (config, tokenizer, …) read, in bytes.
    pub max_json_bytes: u64,
    /// The most items a count from `config.json` may make kiln generate (vocabulary padding,
    /// rope factors, per-layer flags).
    pub max_generated_items: u64,
    /// The largest JSON header of a `*.safetensors` file, in bytes (the header is parsed into
    /// memory; the tensor data is not).
    pub max_safetensors_header_bytes: u64,
}

impl Default for ConvertLimits {
    fn default() -> ConvertLimits {
        ConvertLimits {
            max_json_bytes: MAX_JSON_BYTES,
            max_generated_items: MAX_GENERATED_ITEMS,
            max_safetensors_header_bytes: super::safetensors::MAX_HEADER_BYTES,
        }
    }
}

/// The default of [`ConvertLimits::max_generated_items`]: far above any real model (the largest
/// vocabularies are near 2^18), far below what would exhaust memory.
pub const MAX_GENERATED_ITEMS: u64 = 1 << 22;

/// The files of a model folder, by path relative to the folder (`/`-separated), each mapped
/// read-only.
pub struct ModelFolder {
    files: BTreeMap<String, Source>,
    pub(super) limits: ConvertLimits,
}

enum Source {
    File(GgufFile),
    Bytes(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::File(bytes) => bytes.bytes(),
            Source::Bytes(b) => b,
        }
    }
}

impl ModelFolder {
    /// Maps every file under `dir` (recursively).
    ///
    /// # Safety
    /// As [`GgufFile::map`]: the files must not be modified or truncated while the folder is
    /// alive.
    pub unsafe fn map_dir(dir: impl AsRef<Path>) -> Result<ModelFolder, ConvertError> {
        let mut files = BTreeMap::new();
        let mut pending = vec![(dir.as_ref().to_path_buf(), String::new())];
        while let Some((path, prefix)) = pending.pop() {
            let io = |source| ConvertError::Io {
                path: path.clone(),
                source,
            };
            for entry in std::fs::read_dir(&path).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = format!("{prefix}{name}");
                if entry.file_type().map_err(io)?.is_dir() {
                    pending.push((entry.path(), format!("{rel}/")));
                } else {
                    files.insert(rel, entry.path());
                }
            }
        }
        // SAFETY: forwarded to the caller.
        unsafe { ModelFolder::map_files(files) }
    }

    /// Maps the given files, named by their path in the model folder (Ollama's `files` map,
    /// resolved to blob paths).
    ///
    /// # Safety
    /// As [`GgufFile::map`]: the files must not be modified or truncated while the folder is
    /// alive (content-addressed blobs meet this).
    pub unsafe fn map_files(files: BTreeMap<String, PathBuf>) -> Result<ModelFolder, ConvertError> {
        let mut mapped = BTreeMap::new();
        for (name, path) in files {
            // SAFETY: forwarded to the caller.
            let bytes = unsafe { GgufFile::map(&path) }.map_err(|source| ConvertError::Io {
                path: path.clone(),
                source,
            })?;
            mapped.insert(name, Source::File(bytes));
        }
        Ok(ModelFolder {
            files: mapped,
            limits: ConvertLimits::default(),
        })
    }

    /// The folder with these limits for its conversion (the default is
    /// [`ConvertLimits::default`]).
    pub fn with_limits(mut self, limits: ConvertLimits) -> ModelFolder {
        self.limits = limits;
        self
    }

    /// A folder whose files are already in memory, by relative path (for embedders that hold
    /// them, tests and fuzzing).
    pub fn from_bytes(files: BTreeMap<String, Vec<u8>>) -> ModelFolder {
        ModelFolder {
            files: files
                .into_iter()
                .map(|(k, v)| (k, Source::Bytes(v)))
                .collect(),
            limits: ConvertLimits::default(),
        }
    }

    /// Gives back the memory of a mapped file's pages inside `bytes` (read again from the file
    /// if they are needed later), as a streaming reader does once it is past them.
    pub(super) fn release(&self, bytes: &[u8]) {
        for source in self.files.values() {
            if let Source::File(file) = source {
                file.release(bytes);
            }
        }
    }

    /// Whether the folder has this file.
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// A JSON file's bytes, `None` when absent.
    pub(super) fn read(&self, name: &str) -> Result<Option<&[u8]>, ConvertError> {
        let Some(source) = self.files.get(name) else {
            return Ok(None);
        };
        let bytes = source.bytes();
        let limit = self.limits.max_json_bytes;
        if bytes.len() as u64 > limit {
            return Err(ConvertError::TooLarge {
                file: name.to_owned(),
                len: bytes.len() as u64,
                limit,
            });
        }
        Ok(Some(bytes))
    }

    /// A binary file's bytes (any size: tensor and tokenizer model files), `None` when absent.
    pub(super) fn read_binary(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Source::bytes)
    }

    pub(super) fn require(&self, name: &str) -> Result<&[u8], ConvertError> {
        self.read(name)?
            .ok_or_else(|| ConvertError::MissingFile(name.to_owned()))
    }

    /// Top-level files ending in `suffix`, in name order (Go's `fs.Glob("*<suffix>")`).
    pub(super) fn top_level(&self, suffix: &str) -> impl Iterator<Item = (&str, &[u8])> {
        self.files
            .iter()
            .filter(move |(k, _)| !k.contains('/') && k.ends_with(suffix))
            .map(|(k, s)| (k.as_str(), s.bytes()))
    }
}

impl std::fmt::Debug for ModelFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.files.keys()).finish()
    }
}

/// Parses a JSON file of the folder, naming it in the error.
pub(super) fn parse_json<'de, T: serde::Deserialize<'de>>(
    file: &str,
    bytes: &'de [u8],
) -> Result<T, ConvertError> {
    serde_json::from_slice(bytes).map_err(|e| ConvertError::Json {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{Conversion, test_folder};

    #[test]
    fn lowered_limits_refuse_what_the_defaults_accept() {
        let config = r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 64}"#;
        let folder = || test_folder(config, &[("x.weight", "F32", &[1], &[0; 4])]);
        assert!(Conversion::plan(&folder()).is_ok());
        let small_json = folder().with_limits(ConvertLimits {
            max_json_bytes: 32,
            ..ConvertLimits::default()
        });
        match Conversion::plan(&small_json) {
            Err(ConvertError::TooLarge { file, limit, .. }) => {
                assert_eq!((file.as_str(), limit), ("config.json", 32));
            }
            other => panic!("{:?}", other.err()),
        }
        // A 64-entry vocabulary (padded from the four-token tokenizer), over a limit of 63.
        let few = folder().with_limits(ConvertLimits {
            max_generated_items: 63,
            ..ConvertLimits::default()
        });
        let err = Conversion::plan(&few).err().unwrap();
        assert!(
            matches!(
                err,
                ConvertError::TooMany {
                    what: "vocabulary entries",
                    count: 64,
                    limit: 63
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "config.json asks for 64 vocabulary entries, over kiln's limit of 63"
        );
        // The weights file's JSON header (under 200 bytes here) over a limit of 16 bytes.
        let small_header = folder().with_limits(ConvertLimits {
            max_safetensors_header_bytes: 16,
            ..ConvertLimits::default()
        });
        let err = Conversion::plan(&small_header).err().unwrap();
        let header_len = {
            let bytes = crate::convert::safetensors::encode(&[("x.weight", "F32", &[1], &[0; 4])]);
            u64::from_le_bytes(bytes[..8].try_into().unwrap())
        };
        assert_eq!(
            err.to_string(),
            format!(
                "model.safetensors: safetensors header of {header_len} bytes is over the 16-byte limit"
            )
        );
    }
}
