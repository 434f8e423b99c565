#![doc = include_str!("../README.md")]

mod error;
mod metadata;
mod read;
mod types;
mod value;
mod write;

pub use error::{GgufError, MetadataError, WriteError};
pub use metadata::{Metadata, TensorInfo};
pub use read::{DEFAULT_ALIGNMENT, Gguf, MAGIC, MAX_DIMS};
pub use types::GgmlType;
pub use value::{Array, ArrayIter, Value, ValueType};
pub use write::{Layout, TensorSpec, Writer};

use std::path::Path;

/// Bounds on what a file may make the parser accept, in the style of image-rs `Limits`.
///
/// The defaults admit every real model (a 256k-token vocabulary, a million tensors, multi-megabyte
/// chat templates) while a tiny file that claims 2^60 of anything is refused before any allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most tensors (default 4 Mi).
    pub max_tensors: u64,
    /// Most metadata entries (default 1 Mi).
    pub max_metadata: u64,
    /// Longest string or key, in bytes (default 256 MiB).
    pub max_string_len: u64,
    /// Most elements in one array (default 64 Mi).
    pub max_array_len: u64,
    /// Deepest array nesting (default 16).
    pub max_depth: u32,
    /// Most bytes the parser may allocate for its tables (default 1 GiB).
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tensors: 4 << 20,
            max_metadata: 1 << 20,
            max_string_len: 256 << 20,
            max_array_len: 64 << 20,
            max_depth: 16,
            max_alloc: 1 << 30,
        }
    }
}

impl Limits {
    /// No limits beyond what the input's length itself implies (for trusted files).
    pub fn none() -> Self {
        Limits {
            max_tensors: u64::MAX,
            max_metadata: u64::MAX,
            max_string_len: u64::MAX,
            max_array_len: u64::MAX,
            max_depth: u32::MAX,
            max_alloc: u64::MAX,
        }
    }

    /// Sets [`Limits::max_tensors`].
    pub fn max_tensors(mut self, n: u64) -> Self {
        self.max_tensors = n;
        self
    }

    /// Sets [`Limits::max_metadata`].
    pub fn max_metadata(mut self, n: u64) -> Self {
        self.max_metadata = n;
        self
    }

    /// Sets [`Limits::max_string_len`].
    pub fn max_string_len(mut self, n: u64) -> Self {
        self.max_string_len = n;
        self
    }

    /// Sets [`Limits::max_array_len`].
    pub fn max_array_len(mut self, n: u64) -> Self {
        self.max_array_len = n;
        self
    }

    /// Sets [`Limits::max_depth`].
    pub fn max_depth(mut self, n: u32) -> Self {
        self.max_depth = n;
        self
    }

    /// Sets [`Limits::max_alloc`].
    pub fn max_alloc(mut self, n: u64) -> Self {
        self.max_alloc = n;
        self
    }
}

/// The bytes of a GGUF file on disk, memory-mapped or read, for [`Gguf::parse`].
pub enum GgufFile {
    /// A read-only memory map.
    Mapped(memmap2::Mmap),
    /// The file read into memory.
    Read(Vec<u8>),
}

impl GgufFile {
    /// Reads the whole file into memory: always safe, costs the file's size in RAM.
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<Self> {
        std::fs::read(path).map(GgufFile::Read)
    }

    /// Maps the file read-only: no copy, pages load on demand.
    ///
    /// # Safety
    /// The file must not be truncated or modified while the map is alive (another process doing so
    /// makes the borrowed slices change under the parser: undefined behaviour). Content-addressed,
    /// write-once files such as Ollama blobs meet this by construction.
    pub unsafe fn map(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: forwarded to the caller (see the function's contract).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(GgufFile::Mapped(map))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            GgufFile::Mapped(m) => m,
            GgufFile::Read(v) => v,
        }
    }

    /// Tells the OS that the pages holding `bytes` (a slice of this file, e.g. a tensor's data that
    /// has been consumed) will not be read again soon, so their memory can be reclaimed. They are
    /// re-read from the file if touched again. A no-op for files read into memory.
    pub fn release(&self, bytes: &[u8]) {
        #[cfg(unix)]
        if let GgufFile::Mapped(map) = self {
            const PAGE: usize = 4096;
            let base = map.as_ptr() as usize;
            let start = bytes.as_ptr() as usize;
            let Some(offset) = start.checked_sub(base) else {
                return;
            };
            if offset + bytes.len() > map.len() {
                return;
            }
            // Only whole pages inside the range: neighbours may still be in use.
            let first = offset.next_multiple_of(PAGE);
            let end = (offset + bytes.len()) / PAGE * PAGE;
            if end > first {
                // SAFETY: the map is a read-only shared file mapping, so MADV_DONTNEED only drops
                // page-cache references; any later read repopulates the same bytes from the file.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        end - first,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = bytes;
    }

    /// Parses the file.
    pub fn parse(&self, limits: &Limits) -> Result<Gguf<'_>, GgufError> {
        Gguf::parse(self.bytes(), limits)
    }
}
