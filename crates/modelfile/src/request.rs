//! From a parsed Modelfile to a create request, as Ollama's client builds one
//! (`Modelfile.CreateRequest` and the `ollama create` command): FROM, ADAPTER and DRAFT paths
//! resolved on this machine, a model folder's files picked in Ollama's priority order, parameters
//! typed, and the names the files are uploaded under.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use kiln_api::{AnyMap, CreateRequest, License, Message};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::params::{self, ParameterError};
use crate::sniff::content_type;
use crate::{Command, Modelfile};

/// Why a Modelfile cannot become a create request. Texts follow Ollama's where it has one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A path could not be examined or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A `~user/…` path names a user this machine does not have.
    #[error("failed to find user '{0}': user: unknown user {0}")]
    UnknownUser(String),
    /// `~` could not be expanded: no home directory for the current user.
    #[error("failed to get current user: no home directory")]
    NoHome,
    /// A model folder holds none of the files Ollama imports.
    #[error("no Modelfile or safetensors files found")]
    NoModelFiles,
    /// A file of a model folder resolves (through a symbolic link) outside the folder.
    #[error("insecure path: {}{}", rel.display(),
        if rel.to_string_lossy().contains(".cache") {
            "\n\nUse --local-dir <dir> when downloading model to disable caching"
        } else { "" })]
    InsecurePath {
        /// Where it points, relative to the folder.
        rel: PathBuf,
    },
    /// A configuration or tokenizer file whose content is not what its name says (say, a binary
    /// `config.json`). Ollama's text names the detected type where it means the expected one.
    #[error("invalid content type: expected {detected} for {}", path.display())]
    ContentType {
        /// What the content looks like.
        detected: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// DRAFT and FROM are the same file or folder.
    #[error("DRAFT must not reference the same local path as FROM: {}", path.display())]
    DraftIsModel {
        /// The path given twice.
        path: PathBuf,
    },
    /// REQUIRES is not a semantic version.
    #[error("requires must be a valid semver (e.g. 0.14.0)")]
    Requires,
    /// A PARAMETER line.
    #[error(transparent)]
    Parameter(#[from] ParameterError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RequestError + '_ {
    move |source| RequestError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A Modelfile resolved on this machine: the request without its file maps, and the local files
/// those maps will name once uploaded (see [`upload_names`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    /// Everything but `files`, `adapters` and `draft_files`; `from` is set when FROM names a model
    /// rather than a path that exists.
    pub request: CreateRequest,
    /// The model's files (a GGUF, or a folder's weights, configuration and tokenizer).
    pub files: BTreeSet<PathBuf>,
    /// ADAPTER files (the last ADAPTER wins, as in Ollama).
    pub adapters: BTreeSet<PathBuf>,
    /// DRAFT files.
    pub draft_files: BTreeSet<PathBuf>,
    /// Lines Ollama warns about and ignores (deprecated parameters).
    pub warnings: Vec<String>,
}

/// Home directories for `~` and `~user`, so tests need not depend on the machine's accounts.
pub trait Homes {
    /// The current user's home directory.
    fn current(&self) -> Option<PathBuf>;
    /// A named user's home directory.
    fn of(&self, user: &str) -> Option<PathBuf>;
}

/// The machine's accounts (the password database, then `$HOME` for the current user).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemHomes;

impl Homes for SystemHomes {
    fn current(&self) -> Option<PathBuf> {
        #[cfg(unix)]
        // SAFETY: getuid has no preconditions and cannot fail.
        if let Some(home) = passwd_home(None, unsafe { libc::getuid() }) {
            return Some(home);
        }
        std::env::var_os("HOME").map(PathBuf::from)
    }

    fn of(&self, user: &str) -> Option<PathBuf> {
        #[cfg(unix)]
        return passwd_home(Some(user), 0);
        #[cfg(not(unix))]
        {
            let _ = user;
            None
        }
    }
}

/// The home directory of a user by name, or else by uid, from the password database.
#[cfg(unix)]
fn passwd_home(name: Option<&str>, uid: libc::uid_t) -> Option<PathBuf> {
    use std::ffi::{CStr, CString, OsStr};
    use std::os::unix::ffi::OsStrExt;
    let name = match name {
        Some(n) => Some(CString::new(n).ok()?),
        None => None,
    };
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain old data; an all-zero value is valid and is only read after the
    // call below has filled it.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is NUL-terminated, the buffer's length
    // is passed with it, and `entry`/`found` are live locals.
    let rc = unsafe {
        match &name {
            Some(n) => libc::getpwnam_r(
                n.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            ),
            None => libc::getpwuid_r(
                uid,
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            ),
        }
    };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points to a NUL-terminated string inside `buf`, which is alive.
    let dir = unsafe { CStr::from_ptr(entry.pw_dir) };
    Some(PathBuf::from(OsStr::from_bytes(dir.to_bytes())))
}

/// Ollama's `expandPath`: `~` and `~user` to home directories, a relative path against
/// `relative_dir` (the Modelfile's folder), then made absolute and cleaned (without resolving links).
pub fn expand_path(
    path: &str,
    relative_dir: &Path,
    homes: &dyn Homes,
) -> Result<PathBuf, RequestError> {
    let joined = if path.starts_with('/') || path.starts_with('\\') || Path::new(path).is_absolute()
    {
        PathBuf::from(path)
    } else if let Some(rest) = path.strip_prefix('~') {
        if rest.is_empty() || rest.starts_with('/') {
            let home = homes.current().ok_or(RequestError::NoHome)?;
            home.join(rest.trim_start_matches('/'))
        } else {
            let (user, rest) = rest.split_once('/').unwrap_or((rest, ""));
            let home = homes
                .of(user)
                .ok_or_else(|| RequestError::UnknownUser(user.to_owned()))?;
            home.join(rest)
        }
    } else {
        relative_dir.join(path)
    };
    absolute_clean(&joined)
}

/// Go's `filepath.Abs`: joined to the working directory when relative, then lexically cleaned.
fn absolute_clean(path: &Path) -> Result<PathBuf, RequestError> {
    kiln_go::filepath::abs(path).map_err(io_at(path))
}

/// The entries of `dir` whose names match `pattern` (`*` for any run of characters), sorted as Go's
/// `filepath.Glob` returns them. A folder that cannot be read matches nothing.
fn glob_in(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| wildcard_match(pattern, name))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// `pattern/…` globbed one folder level down (`*/name`), as Go globs `**/name`.
fn glob_nested(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    glob_in(dir, "*")
        .into_iter()
        .filter(|sub| sub.is_dir())
        .flat_map(|sub| glob_in(&sub, pattern))
        .collect()
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| wildcard_match(tail, &rest[i..]))
        }
    }
}

/// Checks that every match has `expected` content (when given), as Ollama's glob does; the first
/// mismatch is an error.
fn checked(matches: Vec<PathBuf>, expected: Option<&str>) -> Result<Vec<PathBuf>, RequestError> {
    if let Some(expected) = expected {
        for path in &matches {
            let detected = detect(path)?;
            if detected != expected {
                return Err(RequestError::ContentType {
                    detected,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(matches)
}

fn detect(path: &Path) -> Result<&'static str, RequestError> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(io_at(path))?;
    Ok(content_type(&head))
}

/// The files Ollama imports from a model folder, in its priority order: `model*.safetensors` (and
/// one level down, for sentence-transformers modules), else `consolidated*.safetensors`, else
/// PyTorch `pytorch_model*.bin` or `consolidated*.pth` (zip archives), else `*.gguf`, else `*.bin`
/// (binary); then `*.json` (here and one level down), `chat_template.jinja` and `tokenizer.model`.
pub fn files_for_model(dir: &Path) -> Result<Vec<PathBuf>, RequestError> {
    // A weights pattern whose content check fails counts as no match, as in Ollama.
    let weights = |pattern: &str, expected: Option<&str>| {
        checked(glob_in(dir, pattern), expected).unwrap_or_default()
    };
    let mut files = weights("model*.safetensors", None);
    if !files.is_empty() {
        files.extend(checked(glob_nested(dir, "model*.safetensors"), None)?);
    } else {
        let candidates = [
            ("consolidated*.safetensors", None),
            ("pytorch_model*.bin", Some("application/zip")),
            ("consolidated*.pth", Some("application/zip")),
            ("*.gguf", Some("application/octet-stream")),
            ("*.bin", Some("application/octet-stream")),
        ];
        files = candidates
            .iter()
            .map(|(pattern, expected)| weights(pattern, *expected))
            .find(|found| !found.is_empty())
            .ok_or(RequestError::NoModelFiles)?;
    }
    files.extend(checked(glob_in(dir, "*.json"), Some("text/plain"))?);
    files.extend(checked(glob_nested(dir, "*.json"), Some("text/plain"))?);
    files.extend(checked(
        glob_in(dir, "chat_template.jinja"),
        Some("text/plain"),
    )?);
    let tokenizer = weights("tokenizer.model", Some("application/octet-stream"));
    if !tokenizer.is_empty() {
        files.extend(tokenizer);
    } else {
        files.extend(
            checked(glob_nested(dir, "tokenizer.model"), Some("text/plain")).unwrap_or_default(),
        );
    }
    Ok(files)
}

/// The files a FROM/ADAPTER/DRAFT path stands for: the file itself, or a folder's files (each
/// resolved through links and required to stay inside the folder). `Ok(None)` when the path does
/// not exist.
fn local_files(path: &Path) -> Result<Option<Vec<PathBuf>>, RequestError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    if !meta.is_dir() {
        return Ok(Some(vec![path.to_owned()]));
    }
    let mut files = Vec::new();
    for file in files_for_model(path)? {
        let real = std::fs::canonicalize(&file).map_err(io_at(&file))?;
        let rel = kiln_go::filepath::rel(path, &real);
        if !kiln_go::filepath::is_local(&rel) {
            return Err(RequestError::InsecurePath { rel });
        }
        files.push(real);
    }
    Ok(Some(files))
}

fn same_path(a: &Path, b: &Path) -> Result<bool, RequestError> {
    let a = std::fs::canonicalize(a).map_err(io_at(a))?;
    let b = std::fs::canonicalize(b).map_err(io_at(b))?;
    Ok(a == b)
}

fn reject_same(path: &Path, others: &[PathBuf]) -> Result<(), RequestError> {
    for other in others {
        if same_path(path, other)? {
            return Err(RequestError::DraftIsModel {
                path: path.to_owned(),
            });
        }
    }
    Ok(())
}

impl Modelfile {
    /// Resolves the Modelfile against this machine, `relative_dir` being the folder relative FROM,
    /// ADAPTER and DRAFT paths start from (the Modelfile's own folder). Hashes nothing.
    pub fn resolve(&self, relative_dir: &Path) -> Result<Resolved, RequestError> {
        self.resolve_with(relative_dir, &SystemHomes)
    }

    /// [`Modelfile::resolve`] with the home directories `~` expands to.
    pub fn resolve_with(
        &self,
        relative_dir: &Path,
        homes: &dyn Homes,
    ) -> Result<Resolved, RequestError> {
        let mut out = Resolved::default();
        let mut licenses = Vec::new();
        let mut parameters = AnyMap::new();
        let mut model_paths = Vec::new();
        let mut draft_paths = Vec::new();
        for Command { name, args } in &self.commands {
            match name.as_str() {
                "model" => {
                    let path = expand_path(args, relative_dir, homes)?;
                    let Some(files) = local_files(&path)? else {
                        out.request.from = args.clone();
                        continue;
                    };
                    reject_same(&path, &draft_paths)?;
                    model_paths.push(path);
                    out.files.extend(files);
                }
                "draft" => {
                    let path = expand_path(args, relative_dir, homes)?;
                    let files = existing_files(&path)?;
                    reject_same(&path, &model_paths)?;
                    draft_paths.push(path);
                    out.draft_files.extend(files);
                }
                "adapter" => {
                    let path = expand_path(args, relative_dir, homes)?;
                    let files = existing_files(&path)?;
                    out.adapters = files.into_iter().collect();
                }
                "template" => out.request.template = args.clone(),
                "system" => out.request.system = args.clone(),
                "license" => licenses.push(args.clone()),
                "renderer" => out.request.renderer = args.clone(),
                "parser" => out.request.parser = args.clone(),
                "requires" => {
                    let version = args.strip_prefix('v').unwrap_or(args);
                    if !is_semver(version) {
                        return Err(RequestError::Requires);
                    }
                    out.request.requires = version.to_owned();
                }
                "message" => {
                    let (role, content) = args.split_once(": ").unwrap_or((args, ""));
                    out.request.messages.push(Message {
                        role: role.to_owned(),
                        content: content.to_owned(),
                        ..Message::default()
                    });
                }
                parameter => {
                    if params::DEPRECATED_PARAMETERS.contains(&parameter) {
                        out.warnings
                            .push(format!("warning: parameter {parameter} is deprecated"));
                        continue;
                    }
                    let value = params::parameter_value(parameter, args)?;
                    match (parameters.get_mut(parameter), value) {
                        (Some(Value::Array(list)), Value::Array(more)) => list.extend(more),
                        (_, value) => {
                            parameters.insert(parameter.to_owned(), value);
                        }
                    }
                }
            }
        }
        if !parameters.is_empty() {
            out.request.parameters = Some(parameters);
        }
        if !licenses.is_empty() {
            out.request.license = Some(License::List(licenses));
        }
        Ok(out)
    }

    /// Ollama's `Modelfile.CreateRequest`: [`Modelfile::resolve`], then every local file hashed, the
    /// file maps keyed by local path (before [`upload_names`] renames them for the server).
    pub fn create_request(&self, relative_dir: &Path) -> Result<ModelfileRequest, RequestError> {
        let resolved = self.resolve(relative_dir)?;
        resolved.hashed()
    }
}

/// [`local_files`] for a path that must exist (ADAPTER, DRAFT).
fn existing_files(path: &Path) -> Result<Vec<PathBuf>, RequestError> {
    std::fs::metadata(path).map_err(io_at(path))?;
    local_files(path)?.ok_or_else(|| io_at(path)(io::ErrorKind::NotFound.into()))
}

/// A create request whose file maps are keyed by local path, with the warnings met on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelfileRequest {
    /// The request; `files`, `adapters` and `draft_files` map local paths to `sha256:<hex>`.
    pub request: CreateRequest,
    /// Lines Ollama warns about and ignores.
    pub warnings: Vec<String>,
}

impl Resolved {
    /// Hashes every local file (in parallel, as Ollama does) into the request's file maps, keyed by
    /// local path.
    pub fn hashed(self) -> Result<ModelfileRequest, RequestError> {
        let all: Vec<&PathBuf> = self
            .files
            .iter()
            .chain(&self.adapters)
            .chain(&self.draft_files)
            .collect();
        let digests = digest_files(&all)?;
        let map = |set: &BTreeSet<PathBuf>| {
            (!set.is_empty()).then(|| {
                set.iter()
                    .map(|p| (p.to_string_lossy().into_owned(), digests[p].clone()))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        let mut request = self.request;
        request.files = map(&self.files);
        request.adapters = map(&self.adapters);
        request.draft_files = map(&self.draft_files);
        Ok(ModelfileRequest {
            request,
            warnings: self.warnings,
        })
    }
}

/// `sha256:<hex>` of each file, computed on as many threads as the machine has cores less one.
pub fn digest_files<P: AsRef<Path> + Sync>(
    paths: &[P],
) -> Result<BTreeMap<PathBuf, String>, RequestError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(paths.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let path = path.as_ref();
                    let digest = digest_file(path);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((path.to_owned(), digest));
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|(path, digest)| Ok((path, digest?)))
        .collect()
}

/// `sha256:<hex>` of one file's bytes.
pub fn digest_file(path: &Path) -> Result<String, RequestError> {
    let mut file = std::fs::File::open(path).map_err(io_at(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

/// The names files are uploaded under, as `ollama create` names them: the file name, or, when
/// there are several files, the path below their deepest common folder (so a sentence-transformers
/// `2_Dense/config.json` keeps its folder), always with `/` separators.
pub fn upload_names<P: AsRef<Path>>(paths: &[P]) -> Vec<String> {
    let absolute: Vec<PathBuf> = paths
        .iter()
        .map(|p| absolute_clean(p.as_ref()).unwrap_or_else(|_| p.as_ref().to_owned()))
        .collect();
    let root = common_root(&absolute);
    absolute
        .iter()
        .map(|path| {
            let base = || {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let name = match &root {
                Some(root) => {
                    let rel = kiln_go::filepath::rel(root, path);
                    if rel == Path::new(".")
                        || rel.components().next() == Some(Component::ParentDir)
                    {
                        base()
                    } else {
                        rel.to_string_lossy().into_owned()
                    }
                }
                None => base(),
            };
            kiln_go::path::clean(&name.replace('\\', "/"))
        })
        .collect()
}

/// The deepest folder holding every path, for two or more paths.
fn common_root(paths: &[PathBuf]) -> Option<PathBuf> {
    if paths.len() < 2 {
        return None;
    }
    let mut root: Option<PathBuf> = None;
    for path in paths {
        let dir = path.parent().unwrap_or(path).to_owned();
        let Some(current) = &mut root else {
            root = Some(dir);
            continue;
        };
        while !dir.starts_with(&*current) {
            if !current.pop() {
                return None;
            }
        }
    }
    root
}

/// `golang.org/x/mod/semver.IsValid` of `v` + `version`: MAJOR[.MINOR[.PATCH[-PRE][+BUILD]]],
/// numbers without leading zeros.
pub fn is_semver(version: &str) -> bool {
    kiln_go::semver::is_valid(&format!("v{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_keep_subfolders_below_the_common_root() {
        assert_eq!(upload_names(&["/m/model.gguf"]), ["model.gguf"]);
        assert_eq!(
            upload_names(&["/m/a/model.safetensors", "/m/a/2_Dense/config.json"]),
            ["model.safetensors", "2_Dense/config.json"]
        );
        assert_eq!(
            upload_names(&["/x/a.gguf", "/y/b.gguf"]),
            ["x/a.gguf", "y/b.gguf"]
        );
    }

    #[test]
    fn globs_match_as_go() {
        assert!(wildcard_match("model*.safetensors", "model.safetensors"));
        assert!(wildcard_match(
            "model*.safetensors",
            "model-00001-of-00002.safetensors"
        ));
        assert!(!wildcard_match("model*.safetensors", "amodel.safetensors"));
        assert!(wildcard_match("*.json", ".hidden.json"));
    }

    #[test]
    fn paths_expand_as_ollama() {
        struct Fake;
        impl Homes for Fake {
            fn current(&self) -> Option<PathBuf> {
                Some("/home/me".into())
            }
            fn of(&self, user: &str) -> Option<PathBuf> {
                (user == "bob").then(|| "/home/bob".into())
            }
        }
        let dir = Path::new("/work/models");
        let e = |p| expand_path(p, dir, &Fake);
        assert_eq!(e("~").unwrap(), Path::new("/home/me"));
        assert_eq!(e("~/m/x.gguf").unwrap(), Path::new("/home/me/m/x.gguf"));
        assert_eq!(e("~bob/x").unwrap(), Path::new("/home/bob/x"));
        assert_eq!(e("~bob").unwrap(), Path::new("/home/bob"));
        assert_eq!(
            e("~nobody/x").unwrap_err().to_string(),
            "failed to find user 'nobody': user: unknown user nobody"
        );
        assert_eq!(
            e("./a/../b.gguf").unwrap(),
            Path::new("/work/models/b.gguf")
        );
        assert_eq!(e("/abs/./x/../y").unwrap(), Path::new("/abs/y"));
    }
}
