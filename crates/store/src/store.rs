//! The models directory itself: blobs, manifests and the operations over them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::digest::Hasher;
use crate::{Digest, InvalidDigest, InvalidName, Manifest, ModelName};

/// What went wrong in the store; every variant says where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A model name that Ollama would not accept.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A malformed digest.
    #[error(transparent)]
    InvalidDigest(#[from] InvalidDigest),
    /// Content whose hash is not the digest it was announced with; nothing was stored.
    #[error("digest mismatch, expected \"{expected}\", got \"{actual}\"")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// No manifest for this model.
    #[error("model '{name}' not found")]
    ModelNotFound {
        /// The model.
        name: String,
    },
    /// A manifest would reference a blob the store does not hold.
    #[error("manifest references missing blob {digest}")]
    MissingBlob {
        /// The missing blob.
        digest: String,
    },
    /// A file to import that is not a regular file (a directory, a device…).
    #[error("{path}: not a regular file, cannot import it as a blob")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// An imported file whose content does not hash to the digest it was expected to have;
    /// nothing was stored.
    #[error("{path}: digest mismatch, expected \"{expected}\", got \"{actual}\"")]
    ImportMismatch {
        /// The file being imported.
        path: PathBuf,
        /// The expected digest.
        expected: Digest,
        /// The digest of the file's content.
        actual: Digest,
    },
    /// [`ImportMode::Reflink`] failed: the file system does not share extents (ext4, tmpfs…),
    /// the file is on another file system, or the platform has no `FICLONE`.
    #[error("cannot reflink {from} into {blobs}: {error}")]
    Reflink {
        /// The file being imported.
        from: PathBuf,
        /// The blobs directory.
        blobs: PathBuf,
        /// The error of `ioctl(FICLONE)`.
        #[source]
        error: io::Error,
    },
    /// [`ImportMode::Hardlink`] failed: typically the file is on another file system than the
    /// store (`EXDEV`), or the kernel refuses to link a file the caller does not own.
    #[error("cannot hard-link {from} into {blobs}: {error}")]
    Hardlink {
        /// The file being imported.
        from: PathBuf,
        /// The blobs directory.
        blobs: PathBuf,
        /// The error of `link(2)`.
        #[source]
        error: io::Error,
    },
    /// A manifest file that is not valid JSON.
    #[error("{path}: malformed manifest: {message}")]
    BadManifest {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        message: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Temporary files carry this prefix so a crash leaves only recognisable, prunable debris.
const TEMP_PREFIX: &str = ".kiln-tmp-";
/// Suffix of a download in progress (Ollama's naming); part records add `-<n>`.
const PARTIAL_SUFFIX: &str = "-partial";
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name() -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{TEMP_PREFIX}{}-{n}-{nanos}", std::process::id())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` so that it appears complete or not at all: `write` fills a temporary file
/// beside it (buffered), which is then flushed, fsynced and renamed over `path`, and the
/// directory fsynced. On any error the temporary file is removed and `path` is untouched. I/O
/// failures of the steps around `write` become errors through `io_error(path of the step, error)`.
pub fn write_atomically<T, E>(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<File>) -> Result<T, E>,
    io_error: impl Fn(&Path, io::Error) -> E,
) -> Result<T, E> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(temp_name());
    let result = (|| {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| io_error(&temp, e))?;
        let mut buffered = io::BufWriter::with_capacity(1 << 20, file);
        let value = write(&mut buffered)?;
        let file = buffered
            .into_inner()
            .map_err(|e| io_error(&temp, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&temp, e))?;
        fs::rename(&temp, path).map_err(|e| io_error(path, e))?;
        sync_dir(dir);
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// An Ollama models directory (`OLLAMA_MODELS`): `blobs/sha256-<hex>` and
/// `manifests/<host>/<namespace>/<model>/<tag>`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A blob that was stored (or found already present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Whether this call created it (false: an identical blob was already there).
    pub created: bool,
}

/// How [`Store::import_file`] may bring a file into the store.
///
/// Whatever the mode, the blob is named by the sha256 of its own content, hashed after it was
/// made, and an expected digest is checked before the blob gets its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ImportMode {
    /// Reflink where the file system can (Btrfs, XFS, bcachefs: no data is copied and the blob
    /// is independent of the source), else copy. Never hard-links: see
    /// [`Hardlink`](Self::Hardlink).
    #[default]
    Auto,
    /// Reflink (`ioctl(FICLONE)`) or fail with [`StoreError::Reflink`].
    Reflink,
    /// Hard-link the file into the store, or fail with [`StoreError::Hardlink`]. The blob *is*
    /// the source file (one inode): nothing is copied, but writing to the source in place
    /// afterwards changes the blob, which then no longer matches its digest (`verify` reports
    /// it, `repair` removes it). Use it only for files nothing will modify. Replacing the source
    /// (a write to a new file then a rename, as most tools save) or deleting it is harmless.
    Hardlink,
    /// Copy the bytes.
    Copy,
}

/// How [`Store::import_file`] brought the file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportMethod {
    /// A reflink: the blob shares the source's extents, copy-on-write.
    Reflink,
    /// A hard link: the blob is the source's inode.
    Hardlink,
    /// A byte copy.
    Copy,
}

/// A file [`Store::import_file`] added to the store (or found already present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The blob's digest: the sha256 of its content.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// How the content was brought in.
    pub method: ImportMethod,
    /// Whether this call created the blob (false: an identical blob was already there and is
    /// kept; what this call made was discarded).
    pub created: bool,
}

/// A manifest read from the store.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The model.
    pub name: ModelName,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// sha256 of the manifest file's bytes (what `/api/tags` reports as `digest`, in hex).
    pub digest: Digest,
    /// The manifest file's modification time (`modified_at`).
    pub modified: SystemTime,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs checked.
    pub blobs_checked: usize,
    /// Blobs whose content does not hash to their name.
    pub corrupt_blobs: Vec<Digest>,
    /// (model, digest) pairs where a manifest references a missing blob.
    pub missing_blobs: Vec<(String, String)>,
    /// Manifest files that could not be parsed.
    pub bad_manifests: Vec<PathBuf>,
}

/// Holds the store's lock: shared for creates, exclusive for deletes and prunes.
///
/// A create holds a shared guard from its first blob to its manifest, so a concurrent delete or
/// prune (which take it exclusively) can never remove a blob that is about to be referenced.
#[derive(Debug)]
pub struct StoreGuard {
    _file: File,
}

impl Store {
    /// Opens (creating if needed) a models directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for dir in [root.join("blobs"), root.join("manifests")] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        Ok(Store { root })
    }

    /// The directory Ollama uses: `OLLAMA_MODELS` (trimmed of spaces and quotes, as Ollama does)
    /// or `~/.ollama/models`.
    pub fn default_root() -> PathBuf {
        let var = std::env::var("OLLAMA_MODELS").unwrap_or_default();
        let trimmed = var.trim().trim_matches(|c| c == '"' || c == '\'');
        if !trimmed.is_empty() {
            return PathBuf::from(trimmed);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".ollama").join("models")
    }

    /// Opens [`Store::default_root`].
    pub fn from_env() -> Result<Store, StoreError> {
        Store::open(Store::default_root())
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes an unprivileged writer can still store in the blobs directory (`statvfs`'s
    /// `f_bavail × f_frsize`); `u64::MAX` where the platform cannot tell.
    pub fn available_bytes(&self) -> Result<u64, StoreError> {
        let dir = self.blobs_dir();
        available_bytes_at(&dir).map_err(io_at(&dir))
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    fn lock(&self, exclusive: bool) -> Result<StoreGuard, StoreError> {
        let path = self.root.join(".kiln.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .map_err(io_at(&path))?;
        Ok(StoreGuard { _file: file })
    }

    /// A shared guard for a create: hold it from the first blob until the manifest is written.
    /// Drop it before calling [`delete`](Self::delete) or [`prune`](Self::prune), which wait for
    /// every guard (the same process included).
    pub fn create_guard(&self) -> Result<StoreGuard, StoreError> {
        self.lock(false)
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.file_name())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(io_at(&path))
    }

    /// Size of a blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        Ok(fs::metadata(&path).map_err(io_at(&path))?.len())
    }

    /// Starts writing a blob whose digest is learnt at the end (see [`BlobWriter`]).
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let path = self.blobs_dir().join(temp_name());
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Hasher::default(),
            size: 0,
        })
    }

    /// Streams `reader` into a blob. With `expected`, content that hashes differently is discarded
    /// and reported, never stored.
    pub fn write_blob(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<StoredBlob, StoreError> {
        let mut writer = self.blob_writer()?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        path: writer.path.clone(),
                        source: e,
                    });
                }
            };
            writer.write_all(&buf[..n]).map_err(|e| StoreError::Io {
                path: writer.path.clone(),
                source: e,
            })?;
        }
        writer.commit_expecting(expected)
    }

    /// Adds a local file to the store as a blob, by reflink, hard link or copy (see
    /// [`ImportMode`]), and names it by the sha256 of the blob's content. With `expected`, a
    /// file that hashes differently is an [`StoreError::ImportMismatch`] and nothing is left in
    /// the store. The blob is made under a temporary name in `blobs/`, hashed, fsynced and
    /// renamed into place; an existing identical blob is kept.
    ///
    /// The call holds the store's shared lock while it works; a create still needs its own
    /// [`create_guard`](Self::create_guard) until a manifest references the blob.
    pub fn import_file(
        &self,
        path: impl AsRef<Path>,
        mode: ImportMode,
        expected: Option<&Digest>,
    ) -> Result<Imported, StoreError> {
        let path = path.as_ref();
        let _guard = self.lock(false)?;
        let source = File::open(path).map_err(io_at(path))?;
        if !source.metadata().map_err(io_at(path))?.is_file() {
            return Err(StoreError::NotAFile {
                path: path.to_owned(),
            });
        }
        let blobs = self.blobs_dir();
        let (temp, method) = match mode {
            ImportMode::Copy => (self.import_copy(path, source)?, ImportMethod::Copy),
            ImportMode::Reflink => match self.import_reflink(&source)? {
                Ok(temp) => (temp, ImportMethod::Reflink),
                Err(error) => {
                    return Err(StoreError::Reflink {
                        from: path.to_owned(),
                        blobs,
                        error,
                    });
                }
            },
            ImportMode::Auto => match self.import_reflink(&source)? {
                Ok(temp) => (temp, ImportMethod::Reflink),
                // Whatever stopped the clone, a copy either works or reports a real error.
                Err(_) => (self.import_copy(path, source)?, ImportMethod::Copy),
            },
            ImportMode::Hardlink => {
                drop(source);
                // link(2) would link a symbolic link itself: link what it points to.
                let real = fs::canonicalize(path).map_err(io_at(path))?;
                let temp = TempFile::new(blobs.join(temp_name()));
                if let Err(error) = fs::hard_link(&real, &temp.0) {
                    return Err(StoreError::Hardlink {
                        from: path.to_owned(),
                        blobs,
                        error,
                    });
                }
                if !fs::symlink_metadata(&temp.0).is_ok_and(|m| m.is_file()) {
                    return Err(StoreError::NotAFile {
                        path: path.to_owned(),
                    });
                }
                (temp, ImportMethod::Hardlink)
            }
        };
        // Hash what the blob holds, not what the source held a moment ago.
        let (digest, size) = hash_file(&temp.0, true)?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::ImportMismatch {
                path: path.to_owned(),
                expected: *expected,
                actual: digest,
            });
        }
        let target = self.blob_path(&digest);
        let created = !target.is_file();
        if created {
            fs::rename(&temp.0, &target).map_err(io_at(&target))?;
            temp.keep();
            sync_dir(&blobs);
        }
        Ok(Imported {
            digest,
            size,
            method,
            created,
        })
    }

    /// Copies `source` into a new temporary file in `blobs/`.
    fn import_copy(&self, path: &Path, mut source: File) -> Result<TempFile, StoreError> {
        let (temp, mut file) = self.new_temp()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_at(path)(e)),
            };
            file.write_all(&buf[..n]).map_err(io_at(&temp.0))?;
        }
        Ok(temp)
    }

    /// Clones `source` into a new temporary file in `blobs/`; the inner error is the clone's.
    fn import_reflink(&self, source: &File) -> Result<Result<TempFile, io::Error>, StoreError> {
        let (temp, file) = self.new_temp()?;
        Ok(reflink(source, &file).map(|()| temp))
    }

    fn new_temp(&self) -> Result<(TempFile, File), StoreError> {
        let temp = TempFile::new(self.blobs_dir().join(temp_name()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp.0)
            .map_err(io_at(&temp.0))?;
        Ok((temp, file))
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        let mut p = self.manifests_dir();
        for part in name.path_parts() {
            p.push(part);
        }
        p
    }

    /// Reads a model's manifest.
    pub fn manifest(&self, name: &ModelName) -> Result<StoredManifest, StoreError> {
        let path = self.manifest_path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::ModelNotFound {
                    name: name.display_shortest(),
                });
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let modified = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io_at(&path))?;
        let manifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(StoredManifest {
            name: name.clone(),
            manifest,
            digest: Digest::of(&bytes),
            modified,
        })
    }

    /// The manifest's raw bytes.
    pub fn manifest_bytes(&self, name: &ModelName) -> Result<Vec<u8>, StoreError> {
        let path = self.manifest_path(name);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::ModelNotFound {
                name: name.display_shortest(),
            },
            _ => StoreError::Io { path, source: e },
        })
    }

    /// Writes a manifest atomically (temp file, fsync, rename), after checking that every blob it
    /// references is present. Returns the digest of the bytes written.
    pub fn write_manifest(
        &self,
        name: &ModelName,
        manifest: &Manifest,
    ) -> Result<Digest, StoreError> {
        for d in manifest.digests() {
            let digest = Digest::parse(d)?;
            if !self.has_blob(&digest) {
                return Err(StoreError::MissingBlob {
                    digest: d.to_owned(),
                });
            }
        }
        let bytes = manifest.to_bytes();
        self.write_manifest_bytes(name, &bytes)?;
        Ok(Digest::of(&bytes))
    }

    /// Writes manifest bytes exactly as given (a registry's answer, whose digest is the sha256 of
    /// those bytes), after checking that they parse as a manifest and that every blob they
    /// reference is present. Atomic like [`write_manifest`](Self::write_manifest).
    pub fn write_manifest_verbatim(
        &self,
        name: &ModelName,
        bytes: &[u8],
    ) -> Result<Digest, StoreError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| StoreError::BadManifest {
                path: self.manifest_path(name),
                message: e.to_string(),
            })?;
        for d in manifest.digests() {
            let digest = Digest::parse(d)?;
            if !self.has_blob(&digest) {
                return Err(StoreError::MissingBlob {
                    digest: d.to_owned(),
                });
            }
        }
        self.write_manifest_bytes(name, bytes)?;
        Ok(Digest::of(bytes))
    }

    /// Where a download of `digest` accumulates before it is verified: Ollama's
    /// `blobs/sha256-<hex>-partial`, so either program can resume the other's download.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir()
            .join(format!("{}{PARTIAL_SUFFIX}", digest.file_name()))
    }

    /// The progress record of part `n` of a download (Ollama's `sha256-<hex>-partial-<n>`).
    pub fn partial_part_path(&self, digest: &Digest, n: usize) -> PathBuf {
        self.blobs_dir()
            .join(format!("{}{PARTIAL_SUFFIX}-{n}", digest.file_name()))
    }

    /// Every partial download in the store: its digest, the bytes its data file holds on disk
    /// (allocated, not announced: files are sparse) and when it was last written.
    pub fn partials(&self) -> Result<Vec<PartialDownload>, StoreError> {
        let blobs = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&blobs).map_err(io_at(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = name
                .strip_suffix(PARTIAL_SUFFIX)
                .and_then(|d| Digest::parse(d).ok())
            else {
                continue;
            };
            let meta = entry.metadata().map_err(io_at(&entry.path()))?;
            out.push(PartialDownload {
                digest,
                allocated: allocated_bytes(&meta),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        out.sort_by_key(|p| p.modified);
        Ok(out)
    }

    /// Removes a partial download: its data file and every part record.
    pub fn remove_partial(&self, digest: &Digest) -> Result<(), StoreError> {
        let mut n = 0;
        loop {
            let p = self.partial_part_path(digest, n);
            match fs::remove_file(&p) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(StoreError::Io { path: p, source: e }),
            }
        }
        let p = self.partial_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path: p, source: e }),
        }
    }

    /// Turns a finished partial download into the blob `digest`: the data file is hashed, and
    /// only when it hashes to `digest` is it fsynced and renamed into place. Otherwise the
    /// download is removed (it must be fetched again) and the mismatch reported. Part records
    /// are removed either way.
    pub fn commit_partial(&self, digest: &Digest) -> Result<StoredBlob, StoreError> {
        let path = self.partial_path(digest);
        let (actual, size) = {
            let mut f = File::open(&path).map_err(io_at(&path))?;
            let mut h = Hasher::default();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(StoreError::Io { path, source: e }),
                };
                h.update(&buf[..n]);
                size += n as u64;
            }
            f.sync_all().map_err(io_at(&path))?;
            (h.finish(), size)
        };
        if actual != *digest {
            self.remove_partial(digest)?;
            return Err(StoreError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        let target = self.blob_path(digest);
        let created = !target.is_file();
        if created {
            fs::rename(&path, &target).map_err(io_at(&target))?;
            sync_dir(&self.blobs_dir());
        }
        self.remove_partial(digest)?;
        Ok(StoredBlob {
            digest: *digest,
            size,
            created,
        })
    }

    fn write_manifest_bytes(&self, name: &ModelName, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.manifest_path(name);
        let dir = path
            .parent()
            .expect("manifest paths have four components")
            .to_owned();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let io = |_: &Path, source| StoreError::Io {
            path: path.clone(),
            source,
        };
        write_atomically(&path, |f| f.write_all(bytes).map_err(|e| io(&path, e)), io)
    }

    /// Every model, newest first (as `/api/tags` lists them). Unreadable entries are skipped, as
    /// Ollama skips them.
    pub fn list(&self) -> Result<Vec<StoredManifest>, StoreError> {
        let mut out = Vec::new();
        for name in self.names()? {
            if let Ok(m) = self.manifest(&name) {
                out.push(m);
            }
        }
        out.sort_by(|a, b| {
            b.modified
                .cmp(&a.modified)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    /// The names of every manifest file (exactly four levels under `manifests/`, valid parts only).
    pub fn names(&self) -> Result<Vec<ModelName>, StoreError> {
        fn children(dir: &Path) -> Vec<(String, PathBuf)> {
            let Ok(rd) = fs::read_dir(dir) else {
                return Vec::new();
            };
            let mut v: Vec<_> = rd
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect();
            v.sort();
            v
        }
        let mut names = Vec::new();
        for (host, hp) in children(&self.manifests_dir()) {
            for (ns, np) in children(&hp) {
                for (model, mp) in children(&np) {
                    for (tag, tp) in children(&mp) {
                        if tp.is_file()
                            && let Ok(name) = ModelName::from_parts(&host, &ns, &model, &tag)
                        {
                            names.push(name);
                        }
                    }
                }
            }
        }
        Ok(names)
    }

    /// `name` with each part spelled as an existing model spells it (case-insensitive match, as
    /// Ollama resolves names before creating or copying).
    pub fn existing_name(&self, name: &ModelName) -> Result<ModelName, StoreError> {
        Ok(name.with_existing_spelling(&self.names()?))
    }

    /// Copies a model: the manifest bytes are written unchanged under the new name.
    pub fn copy(&self, source: &ModelName, destination: &ModelName) -> Result<(), StoreError> {
        let bytes = self.manifest_bytes(source)?;
        self.write_manifest_bytes(destination, &bytes)
    }

    /// Every digest a manifest references, as `sha256:<hex>`. A manifest that does not parse
    /// (damaged, or written by a newer Ollama) still protects every digest its bytes mention, so
    /// collecting garbage never removes a blob a manifest might reference; one that cannot be read
    /// at all stops the collection with its error.
    fn referenced(&self) -> Result<HashSet<String>, StoreError> {
        let mut used = HashSet::new();
        for name in self.names()? {
            match self.manifest(&name) {
                Ok(m) => used.extend(m.manifest.digests().map(str::to_owned)),
                Err(_) => {
                    let path = self.manifest_path(&name);
                    let bytes = fs::read(&path).map_err(io_at(&path))?;
                    used.extend(digests_mentioned(&bytes));
                }
            }
        }
        Ok(used)
    }

    /// Deletes a model: its manifest goes, then empty directories, then the blobs no other manifest
    /// references (nor mentions, when a manifest does not parse). Returns what was removed and
    /// the bytes that freed (see [`Deleted`]).
    pub fn delete(&self, name: &ModelName) -> Result<Deleted, StoreError> {
        let _guard = self.lock(true)?;
        let stored = self.manifest(name)?;
        let path = self.manifest_path(name);
        fs::remove_file(&path).map_err(io_at(&path))?;
        let mut dir = path.parent().map(Path::to_path_buf);
        let top = self.manifests_dir();
        while let Some(d) = dir {
            if d == top || fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        let used = self.referenced()?;
        let mut report = Deleted::default();
        let mut seen = HashSet::new();
        for d in stored.manifest.digests() {
            if used.contains(d) || !seen.insert(d) {
                continue;
            }
            if let Ok(digest) = Digest::parse(d) {
                let p = self.blob_path(&digest);
                let meta = match fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::Io { path: p, source: e }),
                };
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::Io { path: p, source: e }),
                }
                report.blobs_removed.push(digest);
                report.bytes_freed += freed_by_unlink(&meta);
            }
        }
        Ok(report)
    }

    /// Removes these blobs unless a manifest references them, under the exclusive lock — so a blob
    /// another create is about to reference (it holds a create guard) is kept. For a create that
    /// failed or was replaced: returns the digests removed.
    pub fn remove_unreferenced(
        &self,
        digests: impl IntoIterator<Item = Digest>,
    ) -> Result<Vec<Digest>, StoreError> {
        let _guard = self.lock(true)?;
        let used = self.referenced()?;
        let mut removed = Vec::new();
        for d in digests {
            if !used.contains(&d.to_string()) && fs::remove_file(self.blob_path(&d)).is_ok() {
                removed.push(d);
            }
        }
        Ok(removed)
    }

    /// What [`prune`](Self::prune) would remove now, without removing anything (`gc --dry-run`):
    /// blobs no manifest references, abandoned partial downloads and temporary files left by
    /// crashes, each older than `grace`, with the bytes each occupies on disk.
    pub fn garbage(&self, grace: Duration) -> Result<Vec<Garbage>, StoreError> {
        let _guard = self.lock(true)?;
        self.collect_garbage(grace)
    }

    fn collect_garbage(&self, grace: Duration) -> Result<Vec<Garbage>, StoreError> {
        let used = self.referenced()?;
        let now = SystemTime::now();
        let mut candidates: Vec<(PathBuf, GarbageKind)> = Vec::new();
        let blobs = self.blobs_dir();
        for entry in fs::read_dir(&blobs).map_err(io_at(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = match Digest::parse(&name) {
                Ok(d) if !used.contains(&d.to_string()) => Some(GarbageKind::Unreferenced),
                Ok(_) => None,
                Err(_) if name.starts_with(TEMP_PREFIX) => Some(GarbageKind::Temporary),
                Err(_) if is_partial_name(&name) => Some(GarbageKind::PartialDownload),
                Err(_) => None,
            };
            if let Some(kind) = kind {
                candidates.push((entry.path(), kind));
            }
        }
        // Stale manifest temp files too.
        for name in self.names().unwrap_or_default() {
            if let Some(dir) = self.manifest_path(&name).parent()
                && let Ok(rd) = fs::read_dir(dir)
            {
                candidates.extend(
                    rd.flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
                        .map(|e| (e.path(), GarbageKind::Temporary)),
                );
            }
        }
        let mut garbage = Vec::new();
        for (path, kind) in candidates {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let old = meta
                .modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= grace);
            if old {
                garbage.push(Garbage {
                    path,
                    kind,
                    bytes: allocated_bytes(&meta),
                });
            }
        }
        garbage.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(garbage)
    }

    /// Removes what [`garbage`](Self::garbage) lists, under the exclusive lock (so nothing a
    /// running create or pull is about to reference goes). Returns the paths removed.
    pub fn prune(&self, grace: Duration) -> Result<Vec<PathBuf>, StoreError> {
        let _guard = self.lock(true)?;
        let mut removed = Vec::new();
        for g in self.collect_garbage(grace)? {
            if fs::remove_file(&g.path).is_ok() {
                removed.push(g.path);
            }
        }
        Ok(removed)
    }

    /// Re-hashes every blob and checks every manifest's references.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        (report.blobs_checked, report.corrupt_blobs) = self.corrupt_blobs()?;
        for name in self.names()? {
            match self.manifest(&name) {
                Ok(m) => {
                    for d in m.manifest.digests() {
                        if Digest::parse(d).map_or(true, |d| !self.has_blob(&d)) {
                            report
                                .missing_blobs
                                .push((name.display_shortest(), d.to_owned()));
                        }
                    }
                }
                Err(_) => report.bad_manifests.push(self.manifest_path(&name)),
            }
        }
        Ok(report)
    }

    /// Blobs checked, and those whose content does not hash to their name.
    fn corrupt_blobs(&self) -> Result<(usize, Vec<Digest>), StoreError> {
        let blobs = self.blobs_dir();
        let mut buf = vec![0u8; 1 << 20];
        let mut checked = 0;
        let mut corrupt = Vec::new();
        for entry in fs::read_dir(&blobs).map_err(io_at(&blobs))?.flatten() {
            let Ok(digest) = Digest::parse(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let path = entry.path();
            let mut f = File::open(&path).map_err(io_at(&path))?;
            let mut h = Hasher::default();
            loop {
                let n = f.read(&mut buf).map_err(io_at(&path))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            checked += 1;
            if h.finish() != digest {
                corrupt.push(digest);
            }
        }
        Ok((checked, corrupt))
    }

    /// Removes every blob whose content does not hash to its name (under the exclusive lock, so
    /// no create or pull is half-way through one), then reports each model that now lacks blobs:
    /// a caller with a registry can fetch them again (`kiln::create::Engine::repair`), otherwise
    /// these models are broken and say so.
    pub fn repair(&self) -> Result<RepairReport, StoreError> {
        let _guard = self.lock(true)?;
        let (_, corrupt) = self.corrupt_blobs()?;
        for d in &corrupt {
            let path = self.blob_path(d);
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        let mut broken = Vec::new();
        for m in self.list()? {
            let missing: Vec<(Digest, u64)> = std::iter::once(&m.manifest.config)
                .filter(|c| !c.digest.is_empty())
                .chain(&m.manifest.layers)
                .filter_map(|l| Some((l.digest().ok()?, l.size.max(0) as u64)))
                .filter(|(d, _)| !self.has_blob(d))
                .collect();
            if !missing.is_empty() {
                broken.push(BrokenModel {
                    name: m.name,
                    missing,
                });
            }
        }
        Ok(RepairReport {
            removed_corrupt: corrupt,
            broken,
        })
    }
}

/// What [`Store::delete`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deleted {
    /// The blobs removed: those of the model that no other manifest references (shared blobs
    /// stay, and so does every blob a manifest that does not parse mentions).
    pub blobs_removed: Vec<Digest>,
    /// Bytes those blobs occupied: their sizes, except a blob that still had another hard link
    /// (imported with [`ImportMode::Hardlink`]), whose data stays on disk and counts zero. A
    /// reflinked blob counts its full size although extents it shares with its source stay.
    pub bytes_freed: u64,
}

/// What [`Store::repair`] did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Corrupt blobs it removed.
    pub removed_corrupt: Vec<Digest>,
    /// Models that lack blobs (removed as corrupt, or missing before).
    pub broken: Vec<BrokenModel>,
}

/// A model whose manifest names blobs the store does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenModel {
    /// The model.
    pub name: ModelName,
    /// Its missing blobs, with the sizes its manifest gives.
    pub missing: Vec<(Digest, u64)>,
}

/// Something in the models directory that garbage collection removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    /// The file.
    pub path: PathBuf,
    /// Why it is garbage.
    pub kind: GarbageKind,
    /// Bytes it occupies on disk (what removing it reclaims).
    pub bytes: u64,
}

/// Why a file is garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GarbageKind {
    /// A blob no manifest references (nor mentions, when a manifest is damaged).
    Unreferenced,
    /// An abandoned partial download (`sha256-…-partial`, `-partial-N`).
    PartialDownload,
    /// A temporary file left by a crash.
    Temporary,
}

/// Every `sha256:<64 hex>` or `sha256-<64 hex>` in `bytes`, normalised to `sha256:<hex>`.
fn digests_mentioned(bytes: &[u8]) -> Vec<String> {
    const TAG: &[u8] = b"sha256";
    let mut found = Vec::new();
    let mut i = 0;
    while i + TAG.len() + 65 <= bytes.len() {
        if &bytes[i..i + TAG.len()] == TAG && matches!(bytes[i + TAG.len()], b':' | b'-') {
            let hex = &bytes[i + TAG.len() + 1..i + TAG.len() + 65];
            if hex.iter().all(|b| b.is_ascii_hexdigit()) {
                let hex = String::from_utf8_lossy(hex).to_ascii_lowercase();
                found.push(format!("sha256:{hex}"));
                i += TAG.len() + 65;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// A download that has not finished (see [`Store::partials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialDownload {
    /// The blob it will become.
    pub digest: Digest,
    /// Bytes allocated on disk for its data file.
    pub allocated: u64,
    /// When its data file was last written.
    pub modified: SystemTime,
}

/// `sha256-<hex>-partial` or `sha256-<hex>-partial-<n>`: a download in progress, which prune
/// removes only after the grace period (and never while a pull holds the store's shared lock).
fn is_partial_name(name: &str) -> bool {
    let Some((blob, rest)) = name.split_once(PARTIAL_SUFFIX) else {
        return false;
    };
    Digest::parse(blob).is_ok()
        && (rest.is_empty()
            || rest
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// What removing this file's last name here frees: its size, or nothing when the inode has
/// another link.
#[cfg(unix)]
fn freed_by_unlink(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if meta.nlink() > 1 { 0 } else { meta.len() }
}

#[cfg(not(unix))]
fn freed_by_unlink(meta: &fs::Metadata) -> u64 {
    meta.len()
}

#[cfg(unix)]
fn allocated_bytes(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks().saturating_mul(512)
}

#[cfg(not(unix))]
fn allocated_bytes(meta: &fs::Metadata) -> u64 {
    meta.len()
}

/// A temporary file, removed when dropped unless [`kept`](TempFile::keep) (renamed into place).
struct TempFile(PathBuf, bool);

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile(path, false)
    }

    fn keep(mut self) {
        self.1 = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.1 {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// The sha256 and length of a file's content, fsyncing it first when `sync`.
fn hash_file(path: &Path, sync: bool) -> Result<(Digest, u64), StoreError> {
    let mut f = File::open(path).map_err(io_at(path))?;
    if sync {
        f.sync_all().map_err(io_at(path))?;
    }
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(path)(e)),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finish(), size))
}

/// Makes `dest` share `source`'s extents (`ioctl(FICLONE)`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reflink(source: &File, dest: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open files we own for the duration of the call; FICLONE
    // takes the source descriptor as its argument and touches no memory of ours.
    let rc = unsafe { libc::ioctl(dest.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn reflink(_source: &File, _dest: &File) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reflinks are implemented on Linux only (FICLONE)",
    ))
}

/// A blob being written: bytes go to a temporary file in `blobs/` while they are hashed; `commit`
/// fsyncs and renames it to `sha256-<hex>`. Dropped without commit, the temporary file is removed.
pub struct BlobWriter {
    store: Store,
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes the blob and stores it under its digest (reusing an identical existing blob).
    pub fn commit(self) -> Result<StoredBlob, StoreError> {
        self.commit_expecting(None)
    }

    /// [`commit`](Self::commit), refusing content that does not hash to `expected`.
    pub fn commit_expecting(mut self, expected: Option<&Digest>) -> Result<StoredBlob, StoreError> {
        let file = self.file.take().expect("commit runs once");
        let file = file.into_inner().map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_at(&self.path))?;
        drop(file);
        let digest = std::mem::take(&mut self.hasher).finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual: digest,
            });
        }
        let target = self.store.blob_path(&digest);
        let created = !target.is_file();
        if created {
            fs::rename(&self.path, &target).map_err(io_at(&target))?;
            sync_dir(&self.store.blobs_dir());
        }
        Ok(StoredBlob {
            digest,
            size: self.size,
            created,
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.file = None;
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn available_bytes_at(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statvfs only writes the struct we own and reads the NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field widths differ between platforms
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn available_bytes_at(_dir: &Path) -> io::Result<u64> {
    Ok(u64::MAX)
}
