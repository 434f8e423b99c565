//! `ollama push`: Ollama's `PushModel` and `uploadBlob` against a distribution registry.
//!
//! Each blob the registry lacks is uploaded in one session: `POST …/blobs/uploads/` (with a
//! cross-repository `mount` when the layer says where it came from), `PATCH` chunks in order,
//! `PUT ?digest=` to finish. A chunk that fails is resumed from the offset the registry reports
//! for the session, not resent from the start. The manifest goes last.

use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kiln_api::ProgressResponse;
use kiln_store::{Digest, ModelName, Store};
use reqwest::Method;
use reqwest::blocking::Body;

use crate::client::{Call, Client, resolve_location};
use crate::pull::{emit, transfer_layers};
use crate::{RegistryError, Remote};

/// Chunk sizing for uploads, as Ollama sizes its parts.
const TARGET_PARTS: u64 = 16;
const MIN_PART: u64 = 100 * 1000 * 1000;
const MAX_PART: u64 = 1000 * 1000 * 1000;
const PROGRESS_INTERVAL: Duration = Duration::from_millis(60);

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Plain HTTP (Ollama's `insecure`).
    pub insecure: bool,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSummary {
    /// Bytes sent for blobs.
    pub sent: u64,
    /// Blobs the registry already had.
    pub existing: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
}

/// Pushes `name` from `store` to its registry, streaming Ollama's status lines into `sink`.
pub fn push(
    client: &Client,
    store: &Store,
    name: &ModelName,
    options: &PushOptions,
    sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
) -> Result<PushSummary, RegistryError> {
    let name = store.existing_name(name)?;
    let remote = Remote::new(
        name.clone(),
        options.insecure || client.plain_http(name.host()),
    );
    emit(sink, ProgressResponse::status("retrieving manifest"))?;
    let stored = match store.manifest(&name) {
        Ok(m) => m,
        Err(e) => {
            let _ = sink(ProgressResponse::status("couldn't retrieve manifest"));
            return Err(e.into());
        }
    };
    let layers = transfer_layers(&stored.manifest, &remote.repository())?;
    let froms: Vec<&str> = stored
        .manifest
        .layers
        .iter()
        .map(|l| l.from.as_str())
        .chain(std::iter::once(stored.manifest.config.from.as_str()))
        .collect();
    let mut summary = PushSummary {
        sent: 0,
        existing: 0,
        mounted: 0,
    };
    for (i, &(digest, size)) in layers.iter().enumerate() {
        upload_blob(
            client,
            store,
            &remote,
            &digest,
            size,
            froms.get(i).copied().unwrap_or_default(),
            &mut summary,
            sink,
        )?;
    }
    emit(sink, ProgressResponse::status("pushing manifest"))?;
    // Ollama sends `json.Marshal(mf)`: the stored manifest re-encoded, without the newline its
    // file ends with.
    let body = kiln_api::try_to_go_json(&stored.manifest)
        .map_err(|e| RegistryError::BadManifest(e.to_string()))?;
    let url = remote.manifest_url();
    let make = move || Ok(Body::from(body.clone()));
    let mut call =
        Call::new(Method::PUT, &url).header("content-type", kiln_store::MANIFEST_MEDIA_TYPE);
    call.body = Some(&make);
    client.send(&call)?;
    let _ = sink(ProgressResponse::status("success"));
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn upload_blob(
    client: &Client,
    store: &Store,
    remote: &Remote,
    digest: &Digest,
    size: u64,
    from: &str,
    summary: &mut PushSummary,
    sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
) -> Result<(), RegistryError> {
    let line = |completed| crate::pull::transfer_line("pushing", digest, size, completed);
    let blob_url = remote.blob_url(digest);
    match client.send(&Call::new(Method::HEAD, &blob_url)) {
        Ok(_) => {
            summary.existing += 1;
            return emit(sink, line(size));
        }
        Err(RegistryError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut start_url = remote.upload_url();
    if let Ok(source) = ModelName::parse(from).map(|n| Remote::new(n, remote.insecure()))
        && !from.is_empty()
    {
        start_url = format!(
            "{start_url}?from={}&mount={}",
            kiln_go::url::query_escape(&source.repository()),
            kiln_go::url::query_escape(&digest.to_string())
        );
    }
    let resp = client.send(&Call::new(Method::POST, &start_url))?;
    if resp.status().as_u16() == 201 {
        // Mounted from another repository: nothing to send.
        summary.mounted += 1;
        return emit(sink, line(size));
    }
    let mut location = upload_location(&resp, &start_url)?;
    let path = store.blob_path(digest);
    let file = store.open_blob(digest)?;
    let chunk = (size / TARGET_PARTS).clamp(MIN_PART, MAX_PART);
    let sent = Arc::new(AtomicU64::new(0));
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = client.options();
    let mut offset = 0u64;
    let mut tries = 0u32;
    let mut last = Instant::now() - PROGRESS_INTERVAL;
    while offset < size {
        let end = (offset + chunk).min(size);
        let len = end - offset;
        let make_body = {
            let (file, path) = (&file, &path);
            let (sent, cancel) = (Arc::clone(&sent), Arc::clone(&cancel));
            move || {
                let f = file.try_clone().map_err(RegistryError::io(path.clone()))?;
                let section = Section {
                    file: f,
                    at: offset,
                    left: len,
                    sent: Arc::clone(&sent),
                    cancel: Arc::clone(&cancel),
                };
                Ok(Body::sized(section, len))
            }
        };
        let mut call = Call::new(Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header("content-range", &format!("{offset}-{}", end - 1));
        call.body = Some(&make_body);
        let before = sent.load(Ordering::Relaxed);
        let outcome = run_reporting(|| client.send(&call), &mut || {
            if last.elapsed() >= PROGRESS_INTERVAL {
                last = Instant::now();
                if sink(line(sent.load(Ordering::Relaxed).min(size))).is_break() {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        });
        if cancel.load(Ordering::Relaxed) {
            return Err(RegistryError::Cancelled);
        }
        match outcome {
            Ok(resp) => {
                location = upload_location(&resp, &location)?;
                offset = end;
                tries = 0;
            }
            Err(e) if e.is_transient() && tries + 1 < opts.retries => {
                tries += 1;
                sent.store(before, Ordering::Relaxed);
                std::thread::sleep(opts.backoff.saturating_mul(1 << tries.min(16)));
                // Ask the session how much it holds, and go on from there.
                let status = client.send(&Call::new(Method::GET, &location))?;
                offset = session_offset(&status).unwrap_or(offset);
                location = upload_location(&status, &location).unwrap_or(location);
                sent.store(offset, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    summary.sent += sent.load(Ordering::Relaxed);
    let sep = if location.contains('?') { '&' } else { '?' };
    let finish = format!(
        "{location}{sep}digest={}",
        kiln_go::url::query_escape(&digest.to_string())
    );
    let empty = || Ok(Body::from(Vec::new()));
    let mut call =
        Call::new(Method::PUT, &finish).header("content-type", "application/octet-stream");
    call.body = Some(&empty);
    client.send(&call)?;
    emit(sink, line(size))
}

/// Runs `work` on a helper thread while `tick` runs here every 60 ms (the sink is not `Send`).
fn run_reporting<T: Send>(work: impl FnOnce() -> T + Send, tick: &mut dyn FnMut()) -> T {
    std::thread::scope(|s| {
        let handle = s.spawn(work);
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            tick();
        }
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// `Docker-Upload-Location`, else `Location`, resolved against the request URL.
fn upload_location(
    resp: &reqwest::blocking::Response,
    base: &str,
) -> Result<String, RegistryError> {
    let h = resp.headers();
    let loc = h
        .get("docker-upload-location")
        .or_else(|| h.get(reqwest::header::LOCATION))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::BadUrl(format!("no upload location from {base}")))?;
    resolve_location(base, loc)
}

/// The next byte an upload session expects, from its `Range: 0-<last>` header.
fn session_offset(resp: &reqwest::blocking::Response) -> Option<u64> {
    let range = resp.headers().get(reqwest::header::RANGE)?.to_str().ok()?;
    let last: u64 = range
        .trim_start_matches("bytes=")
        .split_once('-')?
        .1
        .parse()
        .ok()?;
    Some(last + 1)
}

/// A byte range of a blob file, counting what was read and stopping when cancelled.
struct Section {
    file: std::fs::File,
    at: u64,
    left: u64,
    sent: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("cancelled"));
        }
        let want = (self.left.min(buf.len() as u64)) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob shorter than its manifest says",
            ));
        }
        self.at += n as u64;
        self.left -= n as u64;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
