//! kiln's reference server: the Ollama model-management API over a models directory.
//!
//! `cargo run --release --example serve [-- --help]`
//!
//! Routing and HTTP only: every decision is made by `kiln::create` (the engine) and `kiln_store`.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use kiln::create::{self, Engine};
use kiln_api::{
    CopyRequest, CreateRequest, DeleteRequest, ErrorResponse, ProcessResponse, ProgressResponse,
    PullRequest, PushRequest, ShowRequest, VersionResponse, Wire, content_type, decode_request,
    to_go_json, to_ndjson_line,
};
use kiln_registry::ClientOptions;
use kiln_store::{Digest, Store, StoreError};
use tokio_stream::StreamExt;

/// Set by Ctrl-C: running creates cancel (and clean up) at their next progress line.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

const HELP: &str = "kiln serve: the Ollama model-management API (create, pull, push, blobs, tags, show, copy, delete, ps, version)

Environment:
  OLLAMA_HOST                address to listen on (default 127.0.0.1:11434)
  OLLAMA_MODELS              models directory (default ~/.ollama/models), shared with Ollama
  OLLAMA_NOPRUNE             keep blobs a re-pulled model no longer uses
  KILN_THREADS               quantization threads (default: all cores)
  KILN_VERSION               version reported by /api/version (default 0.33.0)
  KILN_INSECURE_REGISTRIES   comma-separated registries (host[:port]) reached over plain HTTP,
                             also for the implicit pull of a create's `from`
  KILN_REGISTRY_USERNAME,    Basic credentials for registries that ask for them (else the
  KILN_REGISTRY_PASSWORD     auths of $DOCKER_CONFIG/config.json or ~/.docker/config.json);
                             ~/.ollama/id_ed25519 signs requests to ollama.com as Ollama does
";

/// Server state: the engine (which owns the store) and the version it reports.
pub struct App {
    /// The create engine.
    pub engine: Engine,
    /// Reported by `/api/version`.
    pub version: String,
}

/// Shared server state.
pub type Shared = Arc<App>;

fn json_response<T: Wire + ?Sized>(status: StatusCode, value: &T) -> Response {
    let mut r = (status, to_go_json(value)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type::JSON),
    );
    r
}

fn error(status: u16, message: impl Into<String>) -> Response {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &ErrorResponse::new(message),
    )
}

fn empty(status: StatusCode) -> Response {
    status.into_response()
}

async fn root() -> &'static str {
    "Ollama is running"
}

async fn version(State(app): State<Shared>) -> Response {
    json_response(
        StatusCode::OK,
        &VersionResponse {
            version: app.version.clone(),
        },
    )
}

async fn ps() -> Response {
    json_response(StatusCode::OK, &ProcessResponse::default())
}

async fn not_served(req: Request) -> Response {
    error(
        501,
        format!(
            "kiln does not serve {}: it creates and manages models; run them with Ollama on the same OLLAMA_MODELS",
            req.uri().path()
        ),
    )
}

async fn tags(State(app): State<Shared>) -> Response {
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::list(&store)).await {
        Ok(Ok(list)) => json_response(StatusCode::OK, &list),
        Ok(Err(e)) => error(e.status(), e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

async fn show(State(app): State<Shared>, body: Bytes) -> Response {
    let req: ShowRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::show(&store, &req)).await {
        Ok(Ok(show)) => json_response(StatusCode::OK, &show),
        Ok(Err(e)) => error(e.status(), e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

async fn copy(State(app): State<Shared>, body: Bytes) -> Response {
    let req: CopyRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::copy(&store, &req)).await {
        Ok(Ok(())) => empty(StatusCode::OK),
        Ok(Err(e)) => error(e.status(), e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

async fn delete(State(app): State<Shared>, body: Bytes) -> Response {
    let req: DeleteRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::delete(&store, &req)).await {
        Ok(Ok(())) => empty(StatusCode::OK),
        Ok(Err(e)) => error(e.status(), e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

async fn head_blob(State(app): State<Shared>, Path(digest): Path<String>) -> Response {
    let Ok(d) = Digest::parse(&digest) else {
        return error(400, "invalid digest format");
    };
    if app.engine.store().has_blob(&d) {
        empty(StatusCode::OK)
    } else {
        error(404, format!("blob \"{digest}\" not found"))
    }
}

async fn post_blob(State(app): State<Shared>, Path(digest): Path<String>, body: Body) -> Response {
    let Ok(expected) = Digest::parse(&digest) else {
        return error(400, "invalid digest format");
    };
    let store = app.engine.store();
    if store.has_blob(&expected) {
        return empty(StatusCode::OK);
    }
    let mut writer = match store.blob_writer() {
        Ok(w) => w,
        Err(e) => return error(500, e.to_string()),
    };
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return error(400, e.to_string()),
        };
        if let Err(e) =
            tokio::task::block_in_place(|| std::io::Write::write_all(&mut writer, &chunk))
        {
            return error(500, e.to_string());
        }
    }
    match tokio::task::block_in_place(|| writer.commit_expecting(Some(&expected))) {
        Ok(_) => empty(StatusCode::CREATED),
        Err(e @ StoreError::DigestMismatch { .. }) => error(400, e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

/// One message from a worker: a progress line or the error that ended it (status, message).
enum Event {
    Progress(ProgressResponse),
    Failed(u16, String),
}

/// A job that streams progress into a sink (which cancels by returning `Break`), may ask between
/// lines whether it is cancelled, and ends with an error's HTTP status and message, or nothing.
type Job = Box<
    dyn FnOnce(
            &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
            &dyn Fn() -> bool,
        ) -> Result<(), (u16, String)>
        + Send,
>;

/// Runs `job` on a blocking thread and answers as Ollama does: NDJSON lines (`streamResponse`,
/// where an error before the first line sets the HTTP status), or with `stream: false` the last
/// line or the error (`waitForStream`). A client that goes away, or Ctrl-C, cancels the job at
/// its next line.
async fn respond(streaming: bool, job: Job) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::task::spawn_blocking(move || {
        let probe = tx.clone();
        let cancelled = move || SHUTTING_DOWN.load(Ordering::Relaxed) || probe.is_closed();
        let mut sink = |p: ProgressResponse| {
            if SHUTTING_DOWN.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            match tx.blocking_send(Event::Progress(p)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        };
        if let Err((status, message)) = job(&mut sink, &cancelled) {
            let _ = tx.blocking_send(Event::Failed(status, message));
        }
    });
    if !streaming {
        let mut last = None;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Progress(p) => last = Some(p),
                Event::Failed(status, message) => return error(status, message),
            }
        }
        return match last {
            Some(p) => json_response(StatusCode::OK, &p),
            None => error(500, "the request ended without a result"),
        };
    }
    let first = match rx.recv().await {
        Some(Event::Failed(status, message)) => {
            let mut r = error(status, message);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type::JSON_PLAIN),
            );
            return r;
        }
        Some(Event::Progress(p)) => p,
        None => return error(500, "the request ended without a result"),
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx).map(|event| match event {
        Event::Progress(p) => to_ndjson_line(&p),
        Event::Failed(_, message) => to_ndjson_line(&ErrorResponse::new(message)),
    });
    let lines = tokio_stream::once(to_ndjson_line(&first))
        .chain(rest)
        .map(|line| Ok::<_, std::convert::Infallible>(Bytes::from(line)));
    let mut r = Response::new(Body::from_stream(lines));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type::NDJSON),
    );
    r
}

async fn create(State(app): State<Shared>, body: Bytes) -> Response {
    let req: CreateRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let streaming = req.is_streaming();
    let engine = app.engine.clone();
    let prepared = match tokio::task::spawn_blocking(move || engine.prepare(req)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return error(e.status(), e.to_string()),
        Err(e) => return error(500, e.to_string()),
    };
    let engine = app.engine.clone();
    respond(
        streaming,
        Box::new(move |sink, cancelled| {
            engine
                .run_cancellable(prepared, sink, cancelled)
                .map_err(|e| (e.status(), e.to_string()))
        }),
    )
    .await
}

async fn pull(State(app): State<Shared>, body: Bytes) -> Response {
    let req: PullRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let streaming = req.is_streaming();
    let engine = app.engine.clone();
    let transfer = match tokio::task::spawn_blocking(move || engine.prepare_pull(&req)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return error(e.status(), e.to_string()),
        Err(e) => return error(500, e.to_string()),
    };
    let engine = app.engine.clone();
    respond(
        streaming,
        Box::new(move |sink, _| {
            engine
                .pull(&transfer, sink)
                .map(drop)
                .map_err(|e| (e.status(), e.to_string()))
        }),
    )
    .await
}

async fn push(State(app): State<Shared>, body: Bytes) -> Response {
    let req: PushRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let streaming = req.is_streaming();
    let engine = app.engine.clone();
    let transfer = match tokio::task::spawn_blocking(move || engine.prepare_push(&req)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return error(e.status(), e.to_string()),
        Err(e) => return error(500, e.to_string()),
    };
    let engine = app.engine.clone();
    respond(
        streaming,
        Box::new(move |sink, _| {
            engine
                .push(&transfer, sink)
                .map(drop)
                .map_err(|e| (e.status(), e.to_string()))
        }),
    )
    .await
}

async fn log_requests(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    eprintln!(
        "[kiln] {} {method} {path} {:?}",
        response.status().as_u16(),
        start.elapsed()
    );
    response
}

/// The router, for tests and embedding.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version).head(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/copy", post(copy))
        .route("/api/delete", axum::routing::delete(delete))
        .route("/api/create", post(create))
        .route("/api/blobs/{digest}", post(post_blob).head(head_blob))
        .route("/api/generate", any(not_served))
        .route("/api/chat", any(not_served))
        .route("/api/embed", any(not_served))
        .route("/api/embeddings", any(not_served))
        .route("/api/pull", post(pull))
        .route("/api/push", post(push))
        .layer(middleware::from_fn(log_requests))
        .with_state(app)
}

/// Ollama's `envconfig.Bool`: trimmed of spaces and quotes; empty is false, anything
/// `strconv.ParseBool` does not read as false (unparsable values included) is true.
fn env_bool(key: &str) -> bool {
    let raw = std::env::var(key).unwrap_or_default();
    let v = raw.trim().trim_matches(|c| c == '"' || c == '\'');
    !v.is_empty() && !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False")
}

fn listen_addr() -> Result<SocketAddr, String> {
    let raw = std::env::var("OLLAMA_HOST").unwrap_or_default();
    let raw = raw.trim().trim_matches(|c| c == '"' || c == '\'');
    let raw = raw.strip_prefix("http://").unwrap_or(raw);
    let raw = if raw.is_empty() {
        "127.0.0.1:11434"
    } else {
        raw
    };
    let with_port = if raw.contains(':') {
        raw.to_owned()
    } else {
        format!("{raw}:11434")
    };
    with_port
        .parse()
        .map_err(|e| format!("OLLAMA_HOST {raw:?}: {e}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return std::process::ExitCode::SUCCESS;
    }
    let addr = match listen_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let store = match Store::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: models directory: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let threads = std::env::var("KILN_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let version = std::env::var("KILN_VERSION").unwrap_or_else(|_| "0.33.0".into());
    eprintln!("[kiln] models at {}", store.root().display());
    let registry = ClientOptions {
        insecure_hosts: ClientOptions::insecure_hosts_from_env(),
        ..ClientOptions::default()
    };
    let no_prune = env_bool("OLLAMA_NOPRUNE");
    let app = Arc::new(App {
        engine: Engine::new(store)
            .with_threads(threads)
            .with_registry_options(registry)
            .with_no_prune(no_prune),
        version,
    });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: listen on {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "[kiln] listening on http://{}",
        listener.local_addr().map_or(addr, |a| a)
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("[kiln] shutting down: cancelling running creates");
        SHUTTING_DOWN.store(true, Ordering::Relaxed);
    };
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await;
    // Graceful shutdown has waited for every response, so cancelled creates have cleaned up.
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
