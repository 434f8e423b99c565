//! `ollama pull`: Ollama's `PullModel`, with its status lines, made resumable and verified.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use kiln_api::ProgressResponse;
use kiln_store::{Digest, Layer, Manifest, ModelName, Store, StoreError};
use reqwest::Method;

use crate::client::{Call, Client, read_up_to};
use crate::download::{BlobTransfer, download_blob};
use crate::{RegistryError, Remote};

/// Largest manifest kiln accepts from a registry (a model with thousands of tensor layers is a
/// few MB; a hostile registry cannot make kiln buffer more than this).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Media type of safetensors tensor layers, which Ollama pulls only through MLX.
const MEDIA_TYPE_TENSOR: &str = "application/vnd.ollama.image.tensor";
/// Idle partial downloads kept in the store; beyond this the oldest are removed before a pull
/// starts new ones, so abandoned pulls cannot fill the disk one by one.
pub const MAX_IDLE_PARTIALS: usize = 16;
/// Progress lines for one transfer are at least this far apart (Ollama's ticker).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(60);

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Plain HTTP (Ollama's `insecure`).
    pub insecure: bool,
    /// Keep blobs of the model's previous version even when nothing uses them any more
    /// (`OLLAMA_NOPRUNE`).
    pub no_prune: bool,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSummary {
    /// The model as stored (spelled as an existing model spells it).
    pub name: ModelName,
    /// sha256 of the manifest bytes.
    pub manifest_digest: Digest,
    /// Bytes received for blobs.
    pub fetched: u64,
    /// Bytes of blobs reused from interrupted downloads.
    pub resumed: u64,
    /// Layers already in the store.
    pub cached: usize,
}

/// Sends one line; a sink that breaks cancels the transfer.
pub(crate) fn emit(
    sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    p: ProgressResponse,
) -> Result<(), RegistryError> {
    match sink(p) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(RegistryError::Cancelled),
    }
}

/// `pulling <12 hex digits>` with the full digest: Ollama's per-blob line.
pub(crate) fn transfer_line(
    verb: &str,
    digest: &Digest,
    total: u64,
    completed: u64,
) -> ProgressResponse {
    ProgressResponse {
        status: format!("{verb} {}", &digest.hex()[..12]),
        digest: digest.to_string(),
        total: total as i64,
        completed: completed as i64,
    }
}

/// The layers a manifest transfers, config last (Ollama's order), each digest checked.
pub(crate) fn transfer_layers(
    manifest: &Manifest,
    repository: &str,
) -> Result<Vec<(Digest, u64)>, RegistryError> {
    let mut out = Vec::new();
    let config = Some(&manifest.config).filter(|c| !c.digest.is_empty());
    for layer in manifest.layers.iter().chain(config) {
        out.push(checked_layer(layer, repository)?);
    }
    Ok(out)
}

fn checked_layer(layer: &Layer, repository: &str) -> Result<(Digest, u64), RegistryError> {
    if layer.digest.is_empty() {
        return Err(RegistryError::EmptyDigest {
            repository: repository.to_owned(),
        });
    }
    let digest = Digest::parse(&layer.digest)
        .ok()
        .filter(|d| d.to_string() == layer.digest)
        .ok_or_else(|| RegistryError::InvalidDigest(layer.digest.clone()))?;
    let size = u64::try_from(layer.size).map_err(|_| {
        RegistryError::BadManifest(format!(
            "layer {} has negative size {}",
            layer.digest, layer.size
        ))
    })?;
    Ok((digest, size))
}

/// Fetches the manifest bytes of `remote` (stored verbatim: their sha256 is the model's digest).
pub fn fetch_manifest(
    client: &Client,
    remote: &Remote,
) -> Result<(Vec<u8>, Manifest), RegistryError> {
    let url = remote.manifest_url();
    let call = Call::new(Method::GET, &url).header("accept", kiln_store::MANIFEST_MEDIA_TYPE);
    let resp = client.send(&call)?;
    let bytes = read_up_to(resp, &url, "manifest", MAX_MANIFEST_BYTES)?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadManifest(e.to_string()))?;
    Ok((bytes, manifest))
}

/// Pulls `name` into `store`, streaming Ollama's status lines into `sink` (which cancels by
/// returning `Break`). Blobs are downloaded into partial files, resumed if an earlier pull was
/// interrupted, hashed, and only then renamed into the store; the manifest is written last, so a
/// failed or cancelled pull leaves no manifest and no unverified blob.
pub fn pull(
    client: &Client,
    store: &Store,
    name: &ModelName,
    options: &PullOptions,
    sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
) -> Result<PullSummary, RegistryError> {
    let name = store.existing_name(name)?;
    let remote = Remote::new(
        name.clone(),
        options.insecure || client.plain_http(name.host()),
    );
    let guard = store.create_guard()?;
    let previous: HashSet<String> = match store.manifest(&name) {
        Ok(m) => m.manifest.digests().map(str::to_owned).collect(),
        Err(_) => HashSet::new(),
    };
    emit(sink, ProgressResponse::status("pulling manifest"))?;
    let (bytes, manifest) =
        fetch_manifest(client, &remote).map_err(|e| RegistryError::PullManifest(Box::new(e)))?;
    if manifest
        .layers
        .iter()
        .any(|l| l.media_type == MEDIA_TYPE_TENSOR)
    {
        return Err(RegistryError::TensorModel);
    }
    let layers = transfer_layers(&manifest, &remote.repository())?;
    let wanted: HashSet<Digest> = layers.iter().map(|(d, _)| *d).collect();
    remove_idle_partials(store, &wanted, MAX_IDLE_PARTIALS)?;

    let mut summary = PullSummary {
        name: name.clone(),
        manifest_digest: Digest::of(&bytes),
        fetched: 0,
        resumed: 0,
        cached: 0,
    };
    let mut to_verify: Vec<Digest> = Vec::new();
    for &(digest, size) in &layers {
        let cached = !to_verify.contains(&digest)
            && store.has_blob(&digest)
            && store.blob_size(&digest).ok() == Some(size);
        if cached {
            summary.cached += 1;
            emit(sink, transfer_line("pulling", &digest, size, size))?;
            continue;
        }
        let mut last = Instant::now() - PROGRESS_INTERVAL;
        let mut cancelled = false;
        let mut report = |completed: u64| {
            if last.elapsed() >= PROGRESS_INTERVAL {
                last = Instant::now();
                if sink(transfer_line("pulling", &digest, size, completed)).is_break() {
                    cancelled = true;
                }
            }
            !cancelled
        };
        let t = match download_blob(client, store, &remote, &digest, size, &mut report) {
            Ok(t) => t,
            Err(e) => {
                if !e.keeps_partial() {
                    // The model cannot be pulled as it is (a blob is missing, refused or
                    // malformed): nothing of this pull is worth resuming, and the store is left
                    // as it was.
                    for d in to_verify.iter().chain([&digest]) {
                        remove_if_idle(store, d)?;
                    }
                }
                return Err(e);
            }
        };
        summary.fetched += t.fetched;
        summary.resumed += t.resumed;
        emit(sink, transfer_line("pulling", &digest, size, size))?;
        if !to_verify.contains(&digest) {
            to_verify.push(digest);
        }
    }

    emit(sink, ProgressResponse::status("verifying sha256 digest"))?;
    // Every download is checked, so the ones that are right enter the store and the ones that
    // are wrong are removed (commit_partial does that); the first mismatch ends the pull.
    let mut mismatch = None;
    for digest in &to_verify {
        if store.has_blob(digest) && !store.partial_path(digest).exists() {
            continue; // finished by a concurrent pull of the same blob
        }
        match store.commit_partial(digest) {
            Ok(_) => {}
            Err(StoreError::DigestMismatch { expected, actual }) => {
                mismatch.get_or_insert(RegistryError::DigestMismatch {
                    want: expected,
                    got: actual,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(e) = mismatch {
        return Err(e);
    }

    emit(sink, ProgressResponse::status("writing manifest"))?;
    store.write_manifest_verbatim(&name, &bytes)?;
    drop(guard);

    let unused: Vec<Digest> = previous
        .iter()
        .filter(|d| !manifest.digests().any(|n| n == d.as_str()))
        .filter_map(|d| Digest::parse(d).ok())
        .collect();
    if !options.no_prune && !unused.is_empty() {
        // The model is written: from here on a cancelled client changes nothing.
        let _ = sink(ProgressResponse::status("removing unused layers"));
        if let Err(e) = store.remove_unreferenced(unused) {
            let _ = sink(ProgressResponse::status(format!(
                "couldn't remove unused layers: {e}"
            )));
        }
    }
    let _ = sink(ProgressResponse::status("success"));
    Ok(summary)
}

/// Downloads one blob of `name` from its registry into `store` (resuming a partial download,
/// hashing every byte, entering the store only when it matches `digest`): how a repair fetches
/// the blobs a model lost. The manifest is not touched.
pub fn fetch_blob(
    client: &Client,
    store: &Store,
    name: &ModelName,
    digest: &Digest,
    size: u64,
    insecure: bool,
) -> Result<BlobTransfer, RegistryError> {
    let remote = Remote::new(name.clone(), insecure || client.plain_http(name.host()));
    let _guard = store.create_guard()?;
    let transfer = match download_blob(client, store, &remote, digest, size, &mut |_| true) {
        Ok(t) => t,
        Err(e) => {
            if !e.keeps_partial() {
                store.remove_partial(digest)?;
            }
            return Err(e);
        }
    };
    match store.commit_partial(digest) {
        Ok(_) => Ok(transfer),
        Err(StoreError::DigestMismatch { expected, actual }) => {
            Err(RegistryError::DigestMismatch {
                want: expected,
                got: actual,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes the oldest idle partial downloads (not being written by anyone, not wanted by this
/// pull) until at most `keep` remain.
fn remove_idle_partials(
    store: &Store,
    wanted: &HashSet<Digest>,
    keep: usize,
) -> Result<(), RegistryError> {
    let partials = store.partials()?;
    let mut excess = partials.len().saturating_sub(keep);
    for p in partials {
        if excess == 0 {
            break;
        }
        if wanted.contains(&p.digest) {
            continue;
        }
        if !remove_if_idle(store, &p.digest)? {
            continue;
        }
        excess -= 1;
    }
    Ok(())
}

/// Removes the partial download of `digest` unless a download in progress (here or in another
/// process) holds it; says whether it was removed.
fn remove_if_idle(store: &Store, digest: &Digest) -> Result<bool, RegistryError> {
    let path = store.partial_path(digest);
    let Ok(f) = std::fs::File::options().write(true).open(&path) else {
        return Ok(false);
    };
    if f.try_lock().is_err() {
        return Ok(false);
    }
    store.remove_partial(digest)?;
    Ok(true)
}
