//! Resumable, parallel, ranged blob downloads into Ollama's partial-file layout.
//!
//! A download of blob `D` writes `blobs/D-partial` (sparse, its final size) and one progress
//! record per part, `blobs/D-partial-<n>` (`{"N":…,"Offset":…,"Size":…,"Completed":…}`, the
//! JSON Ollama writes). Records are rewritten after the data they count has been synced, so after
//! a crash a record never claims bytes that are not on disk; a resumed download continues each
//! part where its record says. Either kiln or Ollama can resume the other's download. Nothing
//! becomes a blob here: [`kiln_store::Store::commit_partial`] hashes the finished file first.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use kiln_store::{Digest, Store};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Call, Client};
use crate::{RegistryError, Remote};

/// Ollama's part sizing: the blob in 16 parts, each between 100 MB and 1000 MB (decimal).
const TARGET_PARTS: u64 = 16;
const MIN_PART: u64 = 100 * 1000 * 1000;
const MAX_PART: u64 = 1000 * 1000 * 1000;
/// A part's record is brought up to date after this many new bytes.
const CHECKPOINT_BYTES: u64 = 16 << 20;
const READ_BUFFER: usize = 1 << 20;

/// One part's progress record, field names and order as Ollama's `blobDownloadPart` JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PartRecord {
    #[serde(rename = "N")]
    n: usize,
    #[serde(rename = "Offset")]
    offset: u64,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Completed")]
    completed: u64,
}

/// Splits `total` bytes into parts as Ollama does.
fn plan_parts(total: u64) -> Vec<PartRecord> {
    let size = (total / TARGET_PARTS).clamp(MIN_PART, MAX_PART);
    let mut parts = Vec::new();
    let mut offset = 0;
    while offset < total {
        let len = size.min(total - offset);
        parts.push(PartRecord {
            n: parts.len(),
            offset,
            size: len,
            completed: 0,
        });
        offset += len;
    }
    parts
}

/// Existing records, if they describe a consistent download of `total` bytes.
fn load_parts(store: &Store, digest: &Digest, total: u64) -> Option<Vec<PartRecord>> {
    let mut parts = Vec::new();
    let mut offset = 0;
    loop {
        let path = store.partial_part_path(digest, parts.len());
        let Ok(text) = std::fs::read(&path) else {
            break;
        };
        let rec: PartRecord = serde_json::from_slice(&text).ok()?;
        if rec.n != parts.len() || rec.offset != offset || rec.completed > rec.size || rec.size == 0
        {
            return None;
        }
        offset = offset.checked_add(rec.size)?;
        parts.push(rec);
        if parts.len() > 10_000 {
            return None;
        }
    }
    (!parts.is_empty() && offset == total).then_some(parts)
}

fn save_part(store: &Store, digest: &Digest, rec: &PartRecord) -> Result<(), RegistryError> {
    let path = store.partial_part_path(digest, rec.n);
    let bytes = kiln_api::try_to_go_json_line(rec).map_err(|e| RegistryError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, bytes).map_err(RegistryError::io(path))
}

/// What one blob download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobTransfer {
    /// Bytes received over the network by this call.
    pub fetched: u64,
    /// Bytes already on disk from an earlier, interrupted download.
    pub resumed: u64,
}

/// Shared progress between the part workers and the thread that reports.
pub(crate) struct Progress {
    pub completed: AtomicU64,
    pub fetched: AtomicU64,
    pub cancel: AtomicBool,
}

/// Downloads `digest` (`size` bytes, as the manifest says) into its partial file, resuming what
/// an earlier attempt left. `report(completed)` is called about every 60 ms from this thread;
/// returning false cancels (the parts stop within one read, their records kept for next time).
pub(crate) fn download_blob(
    client: &Client,
    store: &Store,
    remote: &Remote,
    digest: &Digest,
    size: u64,
    report: &mut dyn FnMut(u64) -> bool,
) -> Result<BlobTransfer, RegistryError> {
    let data_path = store.partial_path(digest);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&data_path)
        .map_err(RegistryError::io(&data_path))?;
    // One download per blob at a time, across processes: a second pull of the same blob waits
    // here, then finds the finished partial (or the blob) and goes on from it.
    file.lock().map_err(RegistryError::io(&data_path))?;
    if store.has_blob(digest) {
        return Ok(BlobTransfer::default());
    }
    let parts = match load_parts(store, digest, size) {
        Some(p) => p,
        None => {
            // No usable records: start over (a stale or foreign data file is discarded).
            file.set_len(0).map_err(RegistryError::io(&data_path))?;
            let parts = plan_parts(size);
            for p in &parts {
                save_part(store, digest, p)?;
            }
            parts
        }
    };
    file.set_len(size).map_err(RegistryError::io(&data_path))?;
    let resumed: u64 = parts.iter().map(|p| p.completed).sum();
    let progress = Progress {
        completed: AtomicU64::new(resumed),
        fetched: AtomicU64::new(0),
        cancel: AtomicBool::new(false),
    };
    if size == 0 || resumed == size {
        return Ok(BlobTransfer {
            fetched: 0,
            resumed,
        });
    }
    let url = remote.blob_url(digest);
    let pending: Mutex<Vec<PartRecord>> = Mutex::new(
        parts
            .into_iter()
            .filter(|p| p.completed < p.size)
            .rev()
            .collect(),
    );
    let streams = client.options().download_streams.max(1);
    let (done_tx, done_rx) = mpsc::channel::<Result<(), RegistryError>>();
    let result = std::thread::scope(|scope| {
        let workers = streams.min(pending.lock().map_or(1, |p| p.len()));
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (pending, progress, file, url) = (&pending, &progress, &file, url.as_str());
            scope.spawn(move || {
                let outcome = (|| loop {
                    let next = pending.lock().ok().and_then(|mut p| p.pop());
                    let Some(part) = next else {
                        return Ok(());
                    };
                    fetch_part(client, store, digest, url, file, part, progress)?;
                })();
                if outcome.is_err() {
                    // One failed part ends the download; the others stop at their next read.
                    progress.cancel.store(true, Ordering::Relaxed);
                }
                let _ = done_tx.send(outcome);
            });
        }
        drop(done_tx);
        let mut first_error = None;
        let mut finished = 0;
        while finished < workers {
            match done_rx.recv_timeout(Duration::from_millis(60)) {
                Ok(outcome) => {
                    finished += 1;
                    if let Err(e) = outcome {
                        // A cancellation caused by another part's failure is not the cause.
                        if first_error.is_none()
                            || matches!(first_error, Some(RegistryError::Cancelled))
                        {
                            first_error = Some(e);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if !progress.cancel.load(Ordering::Relaxed)
                && !report(progress.completed.load(Ordering::Relaxed))
            {
                progress.cancel.store(true, Ordering::Relaxed);
                first_error.get_or_insert(RegistryError::Cancelled);
            }
        }
        first_error.map_or(Ok(()), Err)
    });
    let fetched = progress.fetched.load(Ordering::Relaxed);
    result?;
    file.sync_all().map_err(RegistryError::io(&data_path))?;
    Ok(BlobTransfer { fetched, resumed })
}

/// Downloads what is missing of one part, with retries; keeps its record current.
fn fetch_part(
    client: &Client,
    store: &Store,
    digest: &Digest,
    url: &str,
    file: &File,
    mut part: PartRecord,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let opts = client.options();
    let mut last_error = None;
    let mut tries = 0;
    while part.completed < part.size {
        if progress.cancel.load(Ordering::Relaxed) {
            return Err(RegistryError::Cancelled);
        }
        let before = part.completed;
        match fetch_range(client, store, digest, url, file, &mut part, progress) {
            Ok(()) => {}
            Err(e) if e.is_transient() => last_error = Some(e),
            Err(e) => return Err(e),
        }
        if part.completed < part.size {
            if part.completed > before {
                // Progress was made: a dropped connection is not a strike against the part.
                tries = 0;
            } else {
                tries += 1;
            }
            if tries >= opts.retries {
                return Err(RegistryError::MaxRetries(Box::new(last_error.unwrap_or(
                    RegistryError::SizeMismatch {
                        digest: *digest,
                        want: part.size,
                        got: part.completed,
                    },
                ))));
            }
            let pause = opts.backoff.saturating_mul(1 << tries.min(16));
            sleep_unless_cancelled(pause, &progress.cancel);
        }
    }
    Ok(())
}

fn sleep_unless_cancelled(total: Duration, cancel: &AtomicBool) {
    let step = Duration::from_millis(20);
    let mut slept = Duration::ZERO;
    while slept < total && !cancel.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        slept += step;
    }
}

/// One ranged GET for the rest of `part`, written at its offset; returns when the range is
/// complete, the connection ends, or the download is cancelled.
fn fetch_range(
    client: &Client,
    store: &Store,
    digest: &Digest,
    url: &str,
    file: &File,
    part: &mut PartRecord,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let start = part.offset + part.completed;
    let end = part.offset + part.size; // exclusive
    let range = format!("bytes={start}-{}", end - 1);
    let call = Call::new(Method::GET, url).header("range", &range);
    let resp = client.send(&call)?;
    let status = resp.status().as_u16();
    // 206 with our range; a 200 is the whole blob, usable only when we start at zero.
    if !(status == 206 || (status == 200 && start == 0)) {
        return Err(RegistryError::RangeIgnored {
            url: url.to_owned(),
            start,
            status,
        });
    }
    if status == 206 {
        let content_range = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_range.starts_with(&format!("bytes {start}-")) {
            return Err(RegistryError::RangeIgnored {
                url: url.to_owned(),
                start,
                status,
            });
        }
    }
    let mut body = resp;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut since_checkpoint = 0u64;
    let mut outcome = Ok(());
    while part.completed < part.size {
        if progress.cancel.load(Ordering::Relaxed) {
            outcome = Err(RegistryError::Cancelled);
            break;
        }
        let want = (part.size - part.completed).min(buf.len() as u64) as usize;
        let n = match std::io::Read::read(&mut body, &mut buf[..want]) {
            Ok(0) => break, // the connection ended early: the caller retries from here
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                outcome = Err(RegistryError::Transfer {
                    url: url.to_owned(),
                    source: e,
                });
                break;
            }
        };
        let at = part.offset + part.completed;
        if let Err(e) = file.write_all_at(&buf[..n], at) {
            return Err(RegistryError::Io {
                path: store.partial_path(digest),
                source: e,
            });
        }
        part.completed += n as u64;
        since_checkpoint += n as u64;
        progress.completed.fetch_add(n as u64, Ordering::Relaxed);
        progress.fetched.fetch_add(n as u64, Ordering::Relaxed);
        if since_checkpoint >= CHECKPOINT_BYTES {
            checkpoint(store, digest, file, part)?;
            since_checkpoint = 0;
        }
    }
    checkpoint(store, digest, file, part)?;
    outcome
}

/// Data first, then the record that counts it.
fn checkpoint(
    store: &Store,
    digest: &Digest,
    file: &File,
    part: &PartRecord,
) -> Result<(), RegistryError> {
    file.sync_data()
        .map_err(RegistryError::io(store.partial_path(digest)))?;
    save_part(store, digest, part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_sized_as_ollama_sizes_them() {
        assert!(plan_parts(0).is_empty());
        let p = plan_parts(10);
        assert_eq!(
            p,
            vec![PartRecord {
                n: 0,
                offset: 0,
                size: 10,
                completed: 0
            }]
        );
        // 1 GiB: 16 parts would be 67 MB, below the 100 MB floor.
        let p = plan_parts(1 << 30);
        assert_eq!(p.len(), 11);
        assert!(p[..10].iter().all(|x| x.size == MIN_PART));
        assert_eq!(p.iter().map(|x| x.size).sum::<u64>(), 1 << 30);
        // 64 GB: 16 parts of 4 GB would exceed the 1000 MB ceiling.
        let p = plan_parts(64_000_000_000);
        assert_eq!(p.len(), 64);
        assert!(p.windows(2).all(|w| w[0].offset + w[0].size == w[1].offset));
    }

    #[test]
    fn records_are_ollamas_json() {
        let rec = PartRecord {
            n: 3,
            offset: 300,
            size: 100,
            completed: 7,
        };
        let line = kiln_api::try_to_go_json_line(&rec).unwrap();
        assert_eq!(
            line,
            b"{\"N\":3,\"Offset\":300,\"Size\":100,\"Completed\":7}\n"
        );
    }
}
