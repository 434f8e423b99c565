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
use kiln::create::{self, CreateError, Engine};
use kiln_api::{
    CopyRequest, CreateRequest, DeleteRequest, ErrorResponse, ProcessResponse, ProgressResponse,
    ShowRequest, VersionResponse, Wire, content_type, decode_request, to_go_json, to_ndjson_line,
};
use kiln_store::{Digest, Store, StoreError};
use tokio_stream::StreamExt;

/// Set by Ctrl-C: running creates cancel (and clean up) at their next progress line.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

const HELP: &str = "kiln serve: the Ollama model-management API (create, blobs, tags, show, copy, delete, ps, version)

Environment:
  OLLAMA_HOST     address to listen on (default 127.0.0.1:11434)
  OLLAMA_MODELS   models directory (default ~/.ollama/models), shared with Ollama
  KILN_THREADS    quantization threads (default: all cores)
  KILN_VERSION    version reported by /api/version (default 0.33.0)
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

/// One message from the create worker: a progress line or the error that ended it.
enum Event {
    Progress(ProgressResponse),
    Failed(CreateError),
}

async fn create(State(app): State<Shared>, body: Bytes) -> Response {
    let req: CreateRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(400, e.to_string()),
    };
    let streaming = req.is_streaming();
    let prepared = {
        let engine = app.engine.clone();
        match tokio::task::spawn_blocking(move || engine.prepare(req)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return error(e.status(), e.to_string()),
            Err(e) => return error(500, e.to_string()),
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    let engine = app.engine.clone();
    tokio::task::spawn_blocking(move || {
        // A send fails when the client has gone: cancel between chunks.
        // Ctrl-C cancels too, so shutdown does not wait for a long quantization.
        let mut sink = |p: ProgressResponse| {
            if SHUTTING_DOWN.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            match tx.blocking_send(Event::Progress(p)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        };
        if let Err(e) = engine.run(prepared, &mut sink) {
            let _ = tx.blocking_send(Event::Failed(e));
        }
    });
    if !streaming {
        // Ollama's waitForStream: the last progress, or the first error with its status.
        let mut last = None;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Progress(p) => last = Some(p),
                Event::Failed(e) => return error(e.status(), e.to_string()),
            }
        }
        return match last {
            Some(p) => json_response(StatusCode::OK, &p),
            None => error(500, "create ended without a result"),
        };
    }
    // Ollama's streamResponse: an error before anything was sent sets the HTTP status.
    let first = match rx.recv().await {
        Some(Event::Failed(e)) => {
            let mut r = error(e.status(), e.to_string());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type::JSON_PLAIN),
            );
            return r;
        }
        Some(Event::Progress(p)) => p,
        None => return error(500, "create ended without a result"),
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx).map(|event| match event {
        Event::Progress(p) => to_ndjson_line(&p),
        Event::Failed(e) => to_ndjson_line(&ErrorResponse::new(e.to_string())),
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
        .route("/api/pull", any(not_served))
        .route("/api/push", any(not_served))
        .layer(middleware::from_fn(log_requests))
        .with_state(app)
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
    let app = Arc::new(App {
        engine: Engine::new(store).with_threads(threads),
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
