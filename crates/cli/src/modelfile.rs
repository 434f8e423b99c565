//! `kiln create NAME [-f Modelfile]`: the Modelfile read and resolved as `ollama create` does, its
//! local files brought into the models directory (reflinked where the file system can) or
//! uploaded to the server as blobs, then the create request sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_api::{CreateRequest, ProgressResponse};
use kiln_modelfile::{Command, Modelfile, Resolved, upload_names};
use kiln_store::{Digest, ImportMethod, ImportMode};

use crate::progress::Progress;
use crate::{CliError, CreateArgs, Target};

/// How local files enter the models directory (`--import`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ImportArg {
    /// Reflink where the file system can (no bytes copied), else copy
    #[default]
    Auto,
    /// Reflink, or fail
    Reflink,
    /// Hard-link, or fail: nothing copied, but the blob is the file itself, so never edit the
    /// file in place afterwards
    Hardlink,
    /// Copy the bytes
    Copy,
}

impl From<ImportArg> for ImportMode {
    fn from(a: ImportArg) -> ImportMode {
        match a {
            ImportArg::Auto => ImportMode::Auto,
            ImportArg::Reflink => ImportMode::Reflink,
            ImportArg::Hardlink => ImportMode::Hardlink,
            ImportArg::Copy => ImportMode::Copy,
        }
    }
}

/// The Modelfile a create runs: `--from NAME` (a one-line `FROM NAME`), `-f FILE`, else
/// `./Modelfile`, else `FROM .` (the current folder is the model), as `ollama create` chooses.
/// Returns it with the folder its relative paths start from.
fn modelfile(args: &CreateArgs) -> Result<(Modelfile, PathBuf), CliError> {
    let cwd = std::env::current_dir().map_err(|source| CliError::Io {
        path: PathBuf::from("."),
        source,
    })?;
    if let Some(from) = &args.from {
        let commands = vec![Command::new("model", from.clone())];
        return Ok((Modelfile { commands }, cwd));
    }
    let path = match &args.file {
        Some(file) => {
            let path = cwd.join(file);
            if !path.exists() {
                return Err(CliError::ModelfileNotFound(file.clone()));
            }
            path
        }
        None => {
            let path = cwd.join("Modelfile");
            if !path.exists() {
                return Ok((kiln_modelfile::parse("FROM .\n").expect("valid"), cwd));
            }
            path
        }
    };
    let bytes = std::fs::read(&path).map_err(|source| CliError::Io {
        path: path.clone(),
        source,
    })?;
    let parsed = kiln_modelfile::parse_bytes(&bytes).map_err(|source| CliError::Modelfile {
        path: path.clone(),
        source,
    })?;
    let dir = path.parent().map_or(cwd, Path::to_owned);
    Ok((parsed, dir))
}

/// The request a create sends, and the local files its maps will name.
pub(crate) fn prepare(args: &CreateArgs) -> Result<Resolved, CliError> {
    let (modelfile, dir) = modelfile(args)?;
    let mut resolved = modelfile.resolve(&dir)?;
    for warning in &resolved.warnings {
        eprintln!("{warning}");
    }
    let request = &mut resolved.request;
    request.model = args.name.clone();
    if let Some(q) = &args.quantize {
        request.quantize = q.clone();
    }
    if let Some(q) = &args.draft_quantize {
        if resolved.draft_files.is_empty() {
            return Err(CliError::DraftQuantizeWithoutDraft);
        }
        resolved.request.draft_quantize = q.clone();
    }
    Ok(resolved)
}

/// The three file maps of a create, each as (upload name, local path).
fn named(resolved: &Resolved) -> [Vec<(String, PathBuf)>; 3] {
    let name = |set: &std::collections::BTreeSet<PathBuf>| {
        let paths: Vec<&PathBuf> = set.iter().collect();
        upload_names(&paths)
            .into_iter()
            .zip(set.iter().cloned())
            .collect()
    };
    [
        name(&resolved.files),
        name(&resolved.adapters),
        name(&resolved.draft_files),
    ]
}

fn set_maps(request: &mut CreateRequest, maps: [BTreeMap<String, String>; 3]) {
    let [files, adapters, drafts] = maps;
    let some = |m: BTreeMap<String, String>| (!m.is_empty()).then_some(m);
    request.files = some(files);
    request.adapters = some(adapters);
    request.draft_files = some(drafts);
}

/// Runs a Modelfile create on the models directory: each local file imported as a blob
/// (`--import`), the create run, then the imported blobs no model references (a safetensors
/// folder's weights, once converted) removed again, so a create leaves only the model it made.
pub(crate) fn create_local(
    engine: &kiln::create::Engine,
    resolved: Resolved,
    mode: ImportMode,
    progress: &mut Progress,
) -> Result<(), CliError> {
    let store = engine.store();
    let named = named(&resolved);
    let mut request = resolved.request;
    let mut imported: Vec<Digest> = Vec::new();
    let outcome = (|| {
        // Held from the first import to the manifest, so a gc meanwhile keeps the blobs.
        let guard = store.create_guard()?;
        let mut maps: [BTreeMap<String, String>; 3] = Default::default();
        for (map, files) in maps.iter_mut().zip(&named) {
            for (name, path) in files {
                let _ = progress.line(&ProgressResponse {
                    status: format!("importing {name}"),
                    ..ProgressResponse::default()
                });
                let blob = store.import_file(path, mode, None)?;
                if blob.created {
                    imported.push(blob.digest);
                }
                let how = match blob.method {
                    ImportMethod::Reflink => "reflinked",
                    ImportMethod::Hardlink => "hard-linked",
                    _ => "copied",
                };
                if !progress.is_json() {
                    progress.finish();
                    eprintln!(
                        "  {name}: {} {how} as {}",
                        crate::human_bytes(blob.size as i64),
                        blob.digest
                    );
                }
                map.insert(name.clone(), blob.digest.to_string());
            }
        }
        set_maps(&mut request, maps);
        let job = engine.prepare(request)?;
        let cancel = crate::interrupt::ctrl_c_token().unwrap_or_default();
        let sink = &mut |e: &kiln::create::Event| progress.line(&e.into());
        engine
            .run_holding(job, &mut cancel.guard(sink), &cancel, guard)
            .map_err(|e| interrupted_or(e.into(), &cancel))
    })();
    if !imported.is_empty() {
        // Inputs only: what no manifest references goes (under the exclusive lock, after ours
        // is released).
        let _ = store.remove_unreferenced(imported);
    }
    outcome
}

/// [`CliError::Interrupted`] when Ctrl-C fired (whatever error the stopped work reported),
/// otherwise the error itself.
pub(crate) fn interrupted_or(error: CliError, cancel: &kiln::Cancel) -> CliError {
    if cancel.is_cancelled() {
        CliError::Interrupted
    } else {
        error
    }
}

/// Runs a Modelfile create through a server, as `ollama create` does: every local file hashed,
/// uploaded as a blob (skipped when the server has it) on up to one fewer threads than the
/// machine has cores (Ollama's limit), with one progress bar over all the bytes, then the
/// request sent with the files named by their upload names.
pub(crate) fn create_remote(
    remote: &crate::remote::Remote,
    resolved: Resolved,
    progress: &mut Progress,
) -> Result<(), CliError> {
    let named = named(&resolved);
    let mut request = resolved.request;
    let mut maps: [BTreeMap<String, String>; 3] = Default::default();
    let mut uploads: Vec<(String, PathBuf)> = Vec::new();
    for (map, files) in maps.iter_mut().zip(&named) {
        let paths: Vec<&PathBuf> = files.iter().map(|(_, p)| p).collect();
        let digests = kiln_modelfile::digest_files(&paths)?;
        for (name, path) in files {
            let digest = digests[path].clone();
            map.insert(name.clone(), digest.clone());
            if !uploads.iter().any(|(d, _)| *d == digest) {
                uploads.push((digest, path.clone()));
            }
        }
    }
    upload_all(remote, &uploads, progress)?;
    set_maps(&mut request, maps);
    remote.create(&request, progress)
}

/// Uploads `(digest, path)` blobs in parallel; the first failure is the error (the others
/// still finish what they started).
fn upload_all(
    remote: &crate::remote::Remote,
    uploads: &[(String, PathBuf)],
    progress: &mut Progress,
) -> Result<(), CliError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let mut total = 0i64;
    for (_, path) in uploads {
        let len = std::fs::metadata(path).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        total += len.len() as i64;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
        .min(uploads.len().max(1));
    let sent = Arc::new(AtomicU64::new(0));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let status = |completed: i64| ProgressResponse {
        status: "copying files".to_owned(),
        total,
        completed,
        ..ProgressResponse::default()
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut first_error = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((digest, path)) = uploads.get(i) else {
                            break;
                        };
                        if let Err(e) = remote.create_blob(digest, path, &sent) {
                            first_error.get_or_insert(e);
                        }
                        done.fetch_add(1, Ordering::Release);
                    }
                    first_error
                })
            })
            .collect();
        if progress.is_json() {
            for (digest, _) in uploads {
                let _ = progress.line(&ProgressResponse {
                    status: format!("copying file {digest}"),
                    ..ProgressResponse::default()
                });
            }
        } else {
            while done.load(Ordering::Acquire) < uploads.len()
                && !workers.iter().all(|w| w.is_finished())
            {
                let _ = progress.line(&status(sent.load(Ordering::Relaxed) as i64));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let mut result = Ok(());
        for worker in workers {
            match worker.join() {
                Ok(Some(e)) if result.is_ok() => result = Err(e),
                Ok(_) => {}
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        if result.is_ok() && !progress.is_json() && !uploads.is_empty() {
            let _ = progress.line(&status(total));
            progress.finish();
            for (digest, _) in uploads {
                eprintln!("  copying file {digest} 100%");
            }
        }
        result
    })
}

/// Runs `kiln create` from its arguments; returns the size of the model's input files (the
/// `FROM` files, for the summary; 0 when `FROM` names a stored model).
pub(crate) fn create(
    target: &Target,
    args: &CreateArgs,
    progress: &mut Progress,
) -> Result<u64, CliError> {
    let resolved = prepare(args)?;
    let inputs = resolved
        .files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    match target {
        Target::Local(engine) => create_local(engine, resolved, args.import.into(), progress)?,
        Target::Remote(remote) => create_remote(remote, resolved, progress)?,
    }
    Ok(inputs)
}
