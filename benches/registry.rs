//! kiln's pull and push vs `curl` of the same blobs from the same registry, in one run on one
//! machine: the physical reference for a transfer over loopback.
//!
//! `cargo bench --bench registry` (needs `docker-registry`: `scripts/setup-registry.sh`, and
//! `curl`; `KILN_BENCH_BYTES` sets the model size, default 1 GiB)
//!
//! Starts Debian's docker-registry on loopback, writes a model with one random blob of that size,
//! then times: kiln's push (POST, PATCH chunks, PUT ?digest=), curl's monolithic upload of the same
//! bytes to another repository (POST then one PUT), kiln's pull into an empty store (parallel
//! ranged parts, every byte hashed, renamed into the store, manifest written), and curl's GET of the
//! blob into a file beside it (no hashing). Prints MB/s of each and kiln's ratio to curl.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::Command;
use std::time::Instant;

use kiln_registry::{Client, ClientOptions, PullOptions, PushOptions, pull, push};
use kiln_store::{CONFIG_MEDIA_TYPE, Layer, MEDIA_TYPE_MODEL, Manifest, ModelName, Store};
use kiln_testkit::TempDir;
use kiln_testkit::registry::Registry;

/// Writes `size` pseudo-random bytes as one blob, streaming (no buffer of the whole blob).
fn random_blob(store: &Store, size: u64) -> kiln_store::StoredBlob {
    let mut writer = store.blob_writer().unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        writer.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    writer.commit().unwrap()
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail"])
        .args(args)
        .output()
        .expect("curl is needed for the reference transfer");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mbps(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let size: u64 = std::env::var("KILN_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let Some(registry) = Registry::start_or_skip(None) else {
        return;
    };
    let dir = TempDir::new("bench");
    let source = Store::open(dir.0.join("source")).unwrap();
    let blob = random_blob(&source, size);
    let config = source
        .write_blob(
            &br#"{"model_format":"gguf","model_family":"llama"}"#[..],
            None,
        )
        .unwrap();
    let manifest = Manifest::new(
        Layer::new(CONFIG_MEDIA_TYPE, config.digest, config.size),
        vec![Layer::new(MEDIA_TYPE_MODEL, blob.digest, blob.size)],
    );
    let name: ModelName = format!("{}/bench/model:v1", registry.addr).parse().unwrap();
    source.write_manifest(&name, &manifest).unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let mut quiet = |_| ControlFlow::Continue(());
    println!(
        "model blob: {size} bytes, docker-registry on {}, {} cores",
        registry.addr,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Push: kiln, then curl's two-request monolithic upload of the same file elsewhere.
    let t = Instant::now();
    let pushed = push(
        &client,
        &source,
        &name,
        &PushOptions { insecure: true },
        &mut quiet,
    )
    .unwrap();
    let kiln_push = t.elapsed().as_secs_f64();
    assert!(pushed.sent >= size, "{pushed:?}");
    let base = format!("http://{}", registry.addr);
    let t = Instant::now();
    let headers = curl(&[
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{base}/v2/bench/curl/blobs/uploads/"),
    ]);
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .expect("upload location");
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let blob_path = source.blob_path(&blob.digest);
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "-T",
        blob_path.to_str().unwrap(),
        "-o",
        "/dev/null",
        &format!("{location}{separator}digest={}", blob.digest),
    ]);
    let curl_push = t.elapsed().as_secs_f64();

    // Pull: kiln into an empty store, then curl of the same blob into a file on the same disk.
    let dest = Store::open(dir.0.join("dest")).unwrap();
    let t = Instant::now();
    let pulled = pull(
        &client,
        &dest,
        &name,
        &PullOptions {
            insecure: true,
            no_prune: false,
        },
        &mut quiet,
    )
    .unwrap();
    let kiln_pull = t.elapsed().as_secs_f64();
    assert!(pulled.fetched >= size, "{pulled:?}");
    assert_eq!(
        std::fs::metadata(dest.blob_path(&blob.digest))
            .unwrap()
            .len(),
        size
    );
    let out = dir.0.join("curl.blob");
    let t = Instant::now();
    curl(&[
        "-o",
        out.to_str().unwrap(),
        &format!("{base}/v2/bench/model/blobs/{}", blob.digest),
    ]);
    let curl_pull = t.elapsed().as_secs_f64();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);

    println!("{:<34} {:>8} {:>10}", "transfer", "seconds", "MB/s");
    for (label, secs) in [
        ("kiln push (chunked, resumable)", kiln_push),
        ("curl upload (POST + one PUT)", curl_push),
        ("kiln pull (parallel, verified)", kiln_pull),
        ("curl GET into a file", curl_pull),
    ] {
        println!("{label:<34} {secs:>8.2} {:>10.0}", mbps(size, secs));
    }
    println!(
        "kiln / curl throughput: push {:.0} %, pull {:.0} %",
        100.0 * curl_push / kiln_push,
        100.0 * curl_pull / kiln_pull
    );
}
