//! kiln-registry against a real OCI registry: the CNCF distribution registry 2.8 (Debian's
//! `docker-registry`), started by each test on loopback with its own storage, sometimes behind a
//! proxy written here that adds a bearer-token server, counts bytes, or injects faults.
//!
//! Needs `docker-registry` on PATH (or `KILN_DOCKER_REGISTRY`); without it these tests skip,
//! unless `KILN_REQUIRE_ORACLE=1` (as `scripts/test.sh` sets), where they fail.

use std::ops::ControlFlow;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kiln_api::ProgressResponse;
use kiln_registry::{
    Client, ClientOptions, Credentials, OllamaKey, PullOptions, PushOptions, RegistryError, pull,
    push,
};
use kiln_store::{Digest, Layer, Manifest, ModelName, Store};

// ---------------------------------------------------------------------------------------------
// Harness

use kiln_testkit::TempDir;
use kiln_testkit::registry::{Registry, required};

macro_rules! registry_or_skip {
    ($auth:expr) => {
        match Registry::start_or_skip($auth) {
            Some(r) => r,
            None => return,
        }
    };
}

/// A store in a temporary directory.
struct TempStore {
    store: Store,
    _dir: TempDir,
}

fn temp_store(tag: &str) -> TempStore {
    let dir = TempDir::new(tag);
    TempStore {
        store: Store::open(dir.0.join("models")).unwrap(),
        _dir: dir,
    }
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A model in `store`: a model blob of `size` bytes, a template, a params layer and a config.
fn put_model(store: &Store, name: &ModelName, size: usize, seed: u64) -> Manifest {
    let blob = |bytes: &[u8]| {
        let b = store.write_blob(bytes, None).unwrap();
        (b.digest, b.size)
    };
    let (model, model_size) = blob(&noise(size, seed));
    let (template, template_size) = blob(format!("{{{{ .Prompt }}}} {seed}").as_bytes());
    let (params, params_size) = blob(br#"{"stop":["<|end|>"]}"#);
    let (config, config_size) = blob(
        format!(r#"{{"model_format":"gguf","model_family":"llama","seed":{seed}}}"#).as_bytes(),
    );
    let manifest = Manifest::new(
        Layer::new(kiln_store::CONFIG_MEDIA_TYPE, config, config_size),
        vec![
            Layer::new(kiln_store::MEDIA_TYPE_MODEL, model, model_size),
            Layer::new(kiln_store::MEDIA_TYPE_TEMPLATE, template, template_size),
            Layer::new(kiln_store::MEDIA_TYPE_PARAMS, params, params_size),
        ],
    );
    store.write_manifest(name, &manifest).unwrap();
    manifest
}

fn quick_client() -> Client {
    Client::new(ClientOptions {
        retries: 2,
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    })
    .unwrap()
}

fn collect(
    lines: &mut Vec<ProgressResponse>,
) -> impl FnMut(ProgressResponse) -> ControlFlow<()> + '_ {
    move |p| {
        lines.push(p);
        ControlFlow::Continue(())
    }
}

fn statuses(lines: &[ProgressResponse]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        if out.last() != Some(&l.status) {
            out.push(l.status.clone());
        }
    }
    out
}

/// Every file under the store's blobs directory, sorted.
fn blob_files(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.root().join("blobs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn curl_like_get(url: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::blocking::Client::new()
        .get(url)
        .header("accept", kiln_store::MANIFEST_MEDIA_TYPE)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
}

// ---------------------------------------------------------------------------------------------
// A proxy in front of the registry: bearer tokens, byte counts, faults.

#[derive(Default)]
struct Faults {
    /// Require `Authorization: Bearer <TOKEN>`; the token server at /token hands it out.
    require_token: AtomicBool,
    /// With `require_token`: the token server demands these Basic credentials.
    token_basic: std::sync::Mutex<Option<(String, String)>>,
    /// Flip one byte of every blob body.
    corrupt_blobs: AtomicBool,
    /// Close blob bodies after this many bytes (0: never), once per setting.
    cut_after: AtomicU64,
    /// Set when a cut happens: blob GETs then answer 503 (the network stays down) until cleared.
    blobs_down: AtomicBool,
    /// Pause this long per 64 KiB of blob body.
    slow_ms: AtomicU64,
    /// Blob body bytes sent.
    blob_bytes: AtomicU64,
    /// Token requests seen (their query strings).
    token_queries: std::sync::Mutex<Vec<String>>,
}

const TOKEN: &str = "kiln-test-token";

struct Proxy {
    addr: String,
    faults: Arc<Faults>,
    _runtime: tokio::runtime::Runtime,
}

fn start_proxy(upstream: &str) -> Proxy {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};

    #[derive(Clone)]
    struct S {
        upstream: String,
        me: String,
        faults: Arc<Faults>,
        http: reqwest::Client,
    }

    async fn token(State(s): State<S>, req: Request) -> Response {
        let q = req.uri().query().unwrap_or_default().to_owned();
        s.faults.token_queries.lock().unwrap().push(q);
        let want = s.faults.token_basic.lock().unwrap().clone();
        if let Some((u, p)) = want {
            let expected = format!(
                "Basic {}",
                kiln_api::base64::encode(format!("{u}:{p}").as_bytes())
            );
            let got = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if got != expected {
                return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
            }
        }
        (
            [("content-type", "application/json")],
            format!(r#"{{"token":"{TOKEN}"}}"#),
        )
            .into_response()
    }

    async fn forward(State(s): State<S>, req: Request) -> Response {
        let path = req.uri().path().to_owned();
        if s.faults.require_token.load(Ordering::Relaxed) {
            let ok = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {TOKEN}"));
            if !ok {
                let repo = path
                    .strip_prefix("/v2/")
                    .and_then(|p| {
                        p.split_once("/blobs")
                            .or_else(|| p.split_once("/manifests"))
                    })
                    .map_or("", |(r, _)| r);
                let challenge = format!(
                    r#"Bearer realm="http://{}/token",service="kiln-test",scope="repository:{repo}:pull,push""#,
                    s.me
                );
                let mut r = (StatusCode::UNAUTHORIZED, "{}").into_response();
                r.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_str(&challenge).unwrap(),
                );
                return r;
            }
        }
        if s.faults.blobs_down.load(Ordering::Relaxed)
            && req.method() == axum::http::Method::GET
            && path.contains("/blobs/sha256:")
        {
            return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        let url = format!(
            "http://{}{}",
            s.upstream,
            req.uri().path_and_query().map_or("", |p| p.as_str())
        );
        let method = req.method().clone();
        let mut headers = req.headers().clone();
        headers.remove("host");
        headers.remove("authorization");
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap();
        let up = s
            .http
            .request(method.clone(), &url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = up.status();
        let mut headers = up.headers().clone();
        for name in ["location", "docker-upload-location"] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                let v = v.replace(&s.upstream, &s.me);
                headers.insert(name, HeaderValue::from_str(&v).unwrap());
            }
        }
        let is_blob = method == axum::http::Method::GET && path.contains("/blobs/sha256:");
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let faults = Arc::clone(&s.faults);
        tokio::spawn(async move {
            let mut up = up;
            let mut sent = 0u64;
            let mut flipped = false;
            let cut = if is_blob {
                faults.cut_after.swap(0, Ordering::Relaxed)
            } else {
                0
            };
            while let Ok(Some(chunk)) = up.chunk().await {
                let mut chunk = chunk.to_vec();
                if is_blob {
                    if faults.corrupt_blobs.load(Ordering::Relaxed) && !flipped && !chunk.is_empty()
                    {
                        chunk[0] ^= 0xFF;
                        flipped = true;
                    }
                    if cut > 0 && sent + chunk.len() as u64 > cut {
                        chunk.truncate((cut - sent) as usize);
                        faults
                            .blob_bytes
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        faults.blobs_down.store(true, Ordering::Relaxed);
                        let _ = tx.send(Ok(chunk)).await;
                        let _ = tx
                            .send(Err(std::io::Error::other("connection cut by the test")))
                            .await;
                        return;
                    }
                    let slow = faults.slow_ms.load(Ordering::Relaxed);
                    if slow > 0 {
                        let pauses = chunk.len().div_ceil(64 << 10) as u64;
                        tokio::time::sleep(Duration::from_millis(slow * pauses)).await;
                    }
                    faults
                        .blob_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                sent += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut r = Response::new(Body::from_stream(stream));
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r
    }

    let faults = Arc::new(Faults::default());
    let (runtime, addr) = kiln_testkit::serve_with(|addr| {
        let state = S {
            upstream: upstream.to_owned(),
            me: addr.to_owned(),
            faults: Arc::clone(&faults),
            http: reqwest::Client::new(),
        };
        axum::Router::new()
            .route("/token", axum::routing::get(token))
            .fallback(forward)
            .with_state(state)
    });
    Proxy {
        addr,
        faults,
        _runtime: runtime,
    }
}

fn insecure() -> PullOptions {
    PullOptions {
        insecure: true,
        ..PullOptions::default()
    }
}

fn push_insecure() -> PushOptions {
    PushOptions { insecure: true }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn push_then_pull_into_an_empty_store_is_byte_identical() {
    let registry = registry_or_skip!(None);
    let src = temp_store("src");
    let name: ModelName = format!("{}/team/tiny:q4", registry.addr).parse().unwrap();
    let manifest = put_model(&src.store, &name, 3 << 20, 1);
    let client = quick_client();

    let mut lines = Vec::new();
    let pushed = push(
        &client,
        &src.store,
        &name,
        &push_insecure(),
        &mut collect(&mut lines),
    )
    .unwrap();
    assert_eq!(pushed.existing, 0);
    assert_eq!(pushed.sent, manifest.size() as u64);
    let s = statuses(&lines);
    assert_eq!(s.first().map(String::as_str), Some("retrieving manifest"));
    assert_eq!(&s[s.len() - 2..], ["pushing manifest", "success"]);
    for layer in manifest.layers.iter().chain([&manifest.config]) {
        let hex = &layer.digest[7..19];
        assert!(s.contains(&format!("pushing {hex}")), "{s:?}");
    }
    // The registry holds what Ollama sends: the stored manifest re-encoded by json.Marshal,
    // i.e. the file's bytes without their trailing newline.
    let stored = src.store.manifest_bytes(&name).unwrap();
    let (status, served) = curl_like_get(&format!(
        "http://{}/v2/team/tiny/manifests/q4",
        registry.addr
    ));
    assert_eq!(status, 200);
    assert_eq!(served, stored[..stored.len() - 1]);

    let dst = temp_store("dst");
    let mut lines = Vec::new();
    let summary = pull(
        &client,
        &dst.store,
        &name,
        &insecure(),
        &mut collect(&mut lines),
    )
    .unwrap();
    let s = statuses(&lines);
    assert_eq!(s.first().map(String::as_str), Some("pulling manifest"));
    assert_eq!(
        &s[s.len() - 3..],
        ["verifying sha256 digest", "writing manifest", "success"]
    );
    // Every blob the same bytes, the manifest the registry's bytes.
    for layer in manifest.layers.iter().chain([&manifest.config]) {
        let d = Digest::parse(&layer.digest).unwrap();
        assert_eq!(
            std::fs::read(dst.store.blob_path(&d)).unwrap(),
            std::fs::read(src.store.blob_path(&d)).unwrap()
        );
        assert!(
            lines
                .iter()
                .any(|l| l.status == format!("pulling {}", &layer.digest[7..19])
                    && l.digest == layer.digest
                    && l.total == layer.size
                    && l.completed == layer.size)
        );
    }
    assert_eq!(dst.store.manifest_bytes(&name).unwrap(), served);
    assert_eq!(summary.manifest_digest, Digest::of(&served));
    assert_eq!(summary.fetched, manifest.size() as u64);
    assert_eq!(blob_files(&dst.store).len(), 4, "no partial files left");

    // A second pull fetches nothing and changes nothing.
    let before = blob_files(&dst.store);
    let manifest_before = dst.store.manifest_bytes(&name).unwrap();
    let again = pull(&client, &dst.store, &name, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(again.fetched, 0);
    assert_eq!(again.cached, 4);
    assert_eq!(blob_files(&dst.store), before);
    assert_eq!(dst.store.manifest_bytes(&name).unwrap(), manifest_before);

    // Pushing again finds every blob in place.
    let again = push(&client, &src.store, &name, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((again.existing, again.sent), (4, 0));
}

#[test]
fn a_second_repository_mounts_blobs_instead_of_uploading_them() {
    let registry = registry_or_skip!(None);
    let src = temp_store("mount");
    let a: ModelName = format!("{}/team/a:v1", registry.addr).parse().unwrap();
    let manifest = put_model(&src.store, &a, 1 << 20, 2);
    let client = quick_client();
    push(&client, &src.store, &a, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    // A model whose layers say they came from team/a, as Ollama records `from`.
    let b: ModelName = format!("{}/team/b:v1", registry.addr).parse().unwrap();
    let mut derived = manifest.clone();
    for l in derived.layers.iter_mut() {
        l.from = a.to_string();
    }
    src.store.write_manifest(&b, &derived).unwrap();
    let summary = push(&client, &src.store, &b, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(summary.mounted, 3, "{summary:?}");
    assert_eq!(summary.sent, manifest.config.size as u64);
    let dst = temp_store("mount-dst");
    pull(&client, &dst.store, &b, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(blob_files(&dst.store).len(), 4);
}

#[test]
fn an_interrupted_pull_resumes_from_its_partial_files() {
    let registry = registry_or_skip!(None);
    let proxy = start_proxy(&registry.addr);
    let src = temp_store("resume-src");
    let direct: ModelName = format!("{}/team/big:v1", registry.addr).parse().unwrap();
    let size = 40 << 20;
    let manifest = put_model(&src.store, &direct, size, 3);
    let client = quick_client();
    push(&client, &src.store, &direct, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let via_proxy: ModelName = format!("{}/team/big:v1", proxy.addr).parse().unwrap();
    let dst = temp_store("resume-dst");
    let total = manifest.size() as u64;

    // The network goes down 25 MiB into the model blob: the retry finds it down, the pull gives up.
    let one_try = Client::new(ClientOptions {
        retries: 1,
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    })
    .unwrap();
    proxy.faults.cut_after.store(25 << 20, Ordering::Relaxed);
    let err = pull(&one_try, &dst.store, &via_proxy, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(matches!(err, RegistryError::MaxRetries(_)), "{err}");
    assert!(
        err.to_string().starts_with("max retries exceeded: "),
        "{err}"
    );
    // No manifest, no blob: only the partial download of the model blob.
    assert!(dst.store.manifest(&via_proxy).is_err());
    let model = Digest::parse(&manifest.layers[0].digest).unwrap();
    assert!(!dst.store.has_blob(&model));
    let partials = dst.store.partials().unwrap();
    assert_eq!(partials.len(), 1);
    assert_eq!(partials[0].digest, model);

    // The network is back: the second pull fetches only what is missing.
    proxy.faults.blobs_down.store(false, Ordering::Relaxed);
    let served_before = proxy.faults.blob_bytes.load(Ordering::Relaxed);
    let summary = pull(&client, &dst.store, &via_proxy, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let served = proxy.faults.blob_bytes.load(Ordering::Relaxed) - served_before;
    // What the first pull received before the cut is kept (the last bytes the proxy wrote may
    // have been lost with the connection).
    assert!(
        summary.resumed <= 25 << 20 && summary.resumed > 20 << 20,
        "{summary:?}"
    );
    assert_eq!(summary.fetched + summary.resumed, total);
    assert_eq!(served, summary.fetched);
    assert!(served < total);
    assert_eq!(
        std::fs::read(dst.store.blob_path(&model)).unwrap(),
        std::fs::read(src.store.blob_path(&model)).unwrap()
    );
    assert!(dst.store.partials().unwrap().is_empty());
}

#[test]
fn a_cancelled_pull_keeps_its_progress_and_stores_nothing() {
    let registry = registry_or_skip!(None);
    let proxy = start_proxy(&registry.addr);
    let src = temp_store("cancel-src");
    let direct: ModelName = format!("{}/team/slow:v1", registry.addr).parse().unwrap();
    let manifest = put_model(&src.store, &direct, 8 << 20, 4);
    let client = quick_client();
    push(&client, &src.store, &direct, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let name: ModelName = format!("{}/team/slow:v1", proxy.addr).parse().unwrap();
    proxy.faults.slow_ms.store(5, Ordering::Relaxed);
    let dst = temp_store("cancel-dst");
    // The client goes away once a quarter of the model blob has arrived.
    let quarter = manifest.layers[0].size / 4;
    let err = pull(&client, &dst.store, &name, &insecure(), &mut |p| {
        if p.status.starts_with("pulling ") && p.completed >= quarter && p.total > quarter {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap_err();
    assert!(matches!(err, RegistryError::Cancelled), "{err}");
    assert!(dst.store.manifest(&name).is_err());
    let files = blob_files(&dst.store);
    assert!(files.iter().all(|f| f.contains("-partial")), "{files:?}");
    proxy.faults.slow_ms.store(0, Ordering::Relaxed);
    let summary = pull(&client, &dst.store, &name, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(summary.resumed >= quarter as u64, "{summary:?}");
    assert_eq!(summary.fetched + summary.resumed, manifest.size() as u64);
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_stored() {
    let registry = registry_or_skip!(None);
    let proxy = start_proxy(&registry.addr);
    let src = temp_store("corrupt-src");
    let direct: ModelName = format!("{}/team/c:v1", registry.addr).parse().unwrap();
    put_model(&src.store, &direct, 1 << 20, 5);
    let client = quick_client();
    push(&client, &src.store, &direct, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    proxy.faults.corrupt_blobs.store(true, Ordering::Relaxed);
    let name: ModelName = format!("{}/team/c:v1", proxy.addr).parse().unwrap();
    let dst = temp_store("corrupt-dst");
    let mut lines = Vec::new();
    let err = pull(
        &client,
        &dst.store,
        &name,
        &insecure(),
        &mut collect(&mut lines),
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("digest mismatch, file must be downloaded again: want sha256:"),
        "{err}"
    );
    assert!(statuses(&lines).contains(&"verifying sha256 digest".to_owned()));
    assert!(!statuses(&lines).contains(&"writing manifest".to_owned()));
    assert!(dst.store.manifest(&name).is_err());
    // The corrupt download is gone; other blobs that verified may stay (they are correct).
    for f in blob_files(&dst.store) {
        assert!(!f.contains("-partial"), "{f}");
        let d = Digest::parse(&f).unwrap();
        assert_eq!(
            Digest::of(&std::fs::read(dst.store.blob_path(&d)).unwrap()),
            d
        );
    }
}

#[test]
fn missing_tags_and_blobs_give_ollamas_errors_and_leave_the_store_alone() {
    let registry = registry_or_skip!(None);
    let client = quick_client();
    let dst = temp_store("missing");
    let name: ModelName = format!("{}/team/none:v1", registry.addr).parse().unwrap();
    let mut lines = Vec::new();
    let err = pull(
        &client,
        &dst.store,
        &name,
        &insecure(),
        &mut collect(&mut lines),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "pull model manifest: file does not exist");
    assert_eq!(statuses(&lines), ["pulling manifest"]);
    assert!(blob_files(&dst.store).is_empty());

    // A model whose template blob the registry has lost (deleted through its API).
    let src = temp_store("missing-src");
    let half: ModelName = format!("{}/team/half:v1", registry.addr).parse().unwrap();
    let manifest = put_model(&src.store, &half, 1 << 16, 6);
    push(&client, &src.store, &half, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let lost = &manifest.layers[1].digest;
    let resp = reqwest::blocking::Client::new()
        .delete(format!(
            "http://{}/v2/team/half/blobs/{lost}",
            registry.addr
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let err = pull(&client, &dst.store, &half, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert_eq!(err.to_string(), "file does not exist");
    assert!(dst.store.manifest(&half).is_err());
    // Not even the blob downloaded before the missing one stays: the store is as it was.
    assert!(
        blob_files(&dst.store).is_empty(),
        "{:?}",
        blob_files(&dst.store)
    );
    assert!(dst.store.partials().unwrap().is_empty());
}

#[test]
fn basic_auth_with_htpasswd() {
    let dir = TempDir::new("htpasswd");
    let htpasswd = dir.0.join("htpasswd");
    let Some(hash) = bcrypt("s3cret") else {
        assert!(
            !required(),
            "python3 with crypt's bcrypt is needed to make an htpasswd file"
        );
        return;
    };
    std::fs::write(&htpasswd, format!("kiln:{hash}\n")).unwrap();
    let registry = registry_or_skip!(Some(&htpasswd));
    let src = temp_store("basic-src");
    let name: ModelName = format!("{}/team/private:v1", registry.addr)
        .parse()
        .unwrap();
    put_model(&src.store, &name, 1 << 16, 7);

    let anonymous = Client::new(ClientOptions {
        credentials: Some(Credentials {
            username: "kiln".into(),
            password: "wrong".into(),
        }),
        retries: 1,
        ..ClientOptions::default()
    })
    .unwrap();
    let err = push(&anonymous, &src.store, &name, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "unauthorized: access denied");

    let client = Client::new(ClientOptions {
        credentials: Some(Credentials {
            username: "kiln".into(),
            password: "s3cret".into(),
        }),
        ..ClientOptions::default()
    })
    .unwrap();
    push(&client, &src.store, &name, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let dst = temp_store("basic-dst");
    pull(&client, &dst.store, &name, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        dst.store.manifest(&name).unwrap().manifest.layers,
        src.store.manifest(&name).unwrap().manifest.layers
    );
}

fn bcrypt(password: &str) -> Option<String> {
    let python = std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            password,
        ])
        .output()
        .ok()?;
    let hash = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    hash.starts_with("$2").then_some(hash)
}

#[test]
fn bearer_tokens_from_a_token_server() {
    let registry = registry_or_skip!(None);
    let proxy = start_proxy(&registry.addr);
    proxy.faults.require_token.store(true, Ordering::Relaxed);
    *proxy.faults.token_basic.lock().unwrap() = Some(("robot".into(), "t0ken".into()));
    let src = temp_store("bearer-src");
    let name: ModelName = format!("{}/team/tok:v1", proxy.addr).parse().unwrap();
    let manifest = put_model(&src.store, &name, 2 << 20, 8);
    let client = Client::new(ClientOptions {
        credentials: Some(Credentials {
            username: "robot".into(),
            password: "t0ken".into(),
        }),
        key: None,
        ..ClientOptions::default()
    })
    .unwrap();
    push(&client, &src.store, &name, &push_insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let dst = temp_store("bearer-dst");
    pull(&client, &dst.store, &name, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        dst.store.manifest(&name).unwrap().manifest.layers,
        manifest.layers
    );
    let queries = proxy.faults.token_queries.lock().unwrap().clone();
    assert!(!queries.is_empty());
    assert!(
        queries
            .iter()
            .all(|q| q == "scope=repository%3Ateam%2Ftok%3Apull%2Cpush&service=kiln-test"),
        "{queries:?}"
    );

    // Without credentials the token server refuses, and the error says so.
    let nobody = Client::new(ClientOptions {
        credentials: Some(Credentials {
            username: "robot".into(),
            password: "nope".into(),
        }),
        ..ClientOptions::default()
    })
    .unwrap();
    let other = temp_store("bearer-none");
    let err = pull(&nobody, &other.store, &name, &insecure(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "pull model manifest: 401: bad credentials");
    assert!(blob_files(&other.store).is_empty());
}

#[test]
fn ollama_keys_made_by_ssh_keygen_sign_as_ollama_signs() {
    let dir = TempDir::new("key");
    let key = dir.0.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"])
        .arg(&key)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(!required(), "ssh-keygen is needed for this test");
        return;
    }
    let parsed = OllamaKey::from_file(&key).unwrap();
    // The public half as ssh-keygen wrote it: `ssh-ed25519 <base64> comment`.
    let public = std::fs::read_to_string(dir.0.join("id_ed25519.pub")).unwrap();
    let field = public.split(' ').nth(1).unwrap();
    assert_eq!(parsed.public_key_base64(), field);
    let signed = parsed
        .sign_token_request("https://ollama.com/token?nonce=x&scope=s&service=ollama.com&ts=1");
    let (pk, sig) = signed.split_once(':').unwrap();
    assert_eq!(pk, field);
    let sig = kiln_api::base64::decode(sig).unwrap();
    assert_eq!(sig.len(), 64);
    // Verify with the public key ssh-keygen wrote (its last 32 wire bytes).
    let wire = kiln_api::base64::decode(field).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(wire[wire.len() - 32..].try_into().unwrap())
        .unwrap();
    let data = format!(
        "GET,https://ollama.com/token?nonce=x&scope=s&service=ollama.com&ts=1,{}",
        kiln_api::base64::encode(
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
    );
    vk.verify_strict(
        data.as_bytes(),
        &ed25519_dalek::Signature::from_bytes(sig[..].try_into().unwrap()),
    )
    .unwrap();
}

#[test]
fn insecure_hosts_reach_a_plain_http_registry_without_the_flag() {
    let registry = registry_or_skip!(None);
    let src = temp_store("plain-src");
    let name: ModelName = format!("{}/team/plain:v1", registry.addr).parse().unwrap();
    put_model(&src.store, &name, 4096, 9);
    let secure = PushOptions::default();
    // Without the host listed, kiln speaks TLS to a plain HTTP server, which fails.
    let refused = push(&quick_client(), &src.store, &name, &secure, &mut |_| {
        ControlFlow::Continue(())
    });
    assert!(refused.is_err(), "{refused:?}");
    let client = Client::new(ClientOptions {
        retries: 2,
        backoff: Duration::from_millis(10),
        insecure_hosts: vec![registry.addr.to_uppercase()],
        ..ClientOptions::default()
    })
    .unwrap();
    push(&client, &src.store, &name, &secure, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let dst = temp_store("plain-dst");
    pull(
        &client,
        &dst.store,
        &name,
        &PullOptions::default(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(blob_files(&dst.store), blob_files(&src.store));
}
