#![doc = include_str!("../README.md")]

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
use kiln::Cancel;
use kiln::create::{self, Engine, HttpStatus, Transfer, TransferError};
use kiln_api::{
    CopyRequest, CreateRequest, DeleteRequest, ErrorResponse, ProcessResponse, ProgressResponse,
    PullRequest, PushRequest, ShowRequest, VersionResponse, Wire, content_type, decode_request,
    to_go_json, to_ndjson_line,
};
use kiln_registry::ClientOptions;
use kiln_store::{Digest, Store, StoreError};
use tokio_stream::StreamExt;

/// The version `/api/version` reports unless told otherwise: the Ollama release whose wire
/// behaviour kiln follows.
pub const DEFAULT_VERSION: &str = "0.33.0";

/// The environment [`Config::from_env`] reads, as `--help` text.
pub const ENVIRONMENT_HELP: &str = "Environment:
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

/// A server: the engine (which owns the store), the version it reports, and its shutdown flag.
pub struct Server {
    engine: Engine,
    version: String,
    shutting_down: AtomicBool,
}

impl Server {
    /// A server over `engine`, reporting [`DEFAULT_VERSION`].
    pub fn new(engine: Engine) -> Server {
        Server {
            engine,
            version: DEFAULT_VERSION.to_owned(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Reports `version` from `/api/version` (Ollama's clients compare it for features).
    pub fn with_version(mut self, version: impl Into<String>) -> Server {
        self.version = version.into();
        self
    }

    /// The engine requests run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Cancels every running create, pull and push at its next chunk or line (each removes what
    /// it wrote and answers its client with an error line); for a graceful shutdown.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}

type Shared = Arc<Server>;

/// Why [`serve`] could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `OLLAMA_HOST` is not an address to listen on.
    #[error("OLLAMA_HOST {value:?}: {message}")]
    BadHost {
        /// The value given.
        value: String,
        /// Why it does not parse.
        message: String,
    },
    /// The models directory could not be opened.
    #[error("models directory: {0}")]
    Store(#[from] StoreError),
    /// Binding the listening socket failed.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Everything a server process takes from its environment, as Ollama's `serve` reads it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`OLLAMA_HOST`).
    pub addr: SocketAddr,
    /// Quantization threads, 0 for all cores (`KILN_THREADS`).
    pub threads: usize,
    /// Reported by `/api/version` (`KILN_VERSION`).
    pub version: String,
    /// Registries reached over plain HTTP (`KILN_INSECURE_REGISTRIES`).
    pub insecure_registries: Vec<String>,
    /// Keep blobs a re-pulled model no longer uses (`OLLAMA_NOPRUNE`).
    pub no_prune: bool,
}

impl Config {
    /// Reads [`ENVIRONMENT_HELP`]'s variables (the models directory is the store's own,
    /// [`Store::from_env`]).
    pub fn from_env() -> Result<Config, ServeError> {
        Ok(Config {
            addr: listen_addr(&std::env::var("OLLAMA_HOST").unwrap_or_default())?,
            threads: std::env::var("KILN_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            version: std::env::var("KILN_VERSION").unwrap_or_else(|_| DEFAULT_VERSION.into()),
            insecure_registries: ClientOptions::insecure_hosts_from_env(),
            no_prune: env_bool("OLLAMA_NOPRUNE"),
        })
    }

    /// The engine this configuration describes, over `store`.
    pub fn engine(&self, store: Store) -> Engine {
        let registry = ClientOptions {
            insecure_hosts: self.insecure_registries.clone(),
            ..ClientOptions::default()
        };
        Engine::new(store)
            .with_threads(self.threads)
            .with_registry_options(registry)
            .with_no_prune(self.no_prune)
    }
}

/// Serves the Ollama model API on `config.addr` over `store` until Ctrl-C, which cancels running
/// jobs (they clean up) and waits for every response before returning. Logs to stderr.
pub async fn serve(config: &Config, store: Store) -> Result<(), ServeError> {
    eprintln!("[kiln] models at {}", store.root().display());
    let server = Arc::new(Server::new(config.engine(store)).with_version(config.version.clone()));
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
    eprintln!(
        "[kiln] listening on http://{}",
        listener.local_addr().map_or(config.addr, |a| a)
    );
    let flag = server.clone();
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("[kiln] shutting down: cancelling running creates");
        flag.shut_down();
    };
    // Graceful shutdown waits for every response, so cancelled creates have cleaned up.
    axum::serve(listener, router(server))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}

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

fn store_error(e: StoreError) -> Response {
    error(e.status(), e.to_string())
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
        Err(e) => return error(e.status(), e.to_string()),
    };
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::show(&store, &req)).await {
        Ok(Ok(show)) => json_response(StatusCode::OK, &show),
        Ok(Err(e)) => error(e.status(), e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

/// The namespace Ollama's `model.ParseName` gives a name (`library` when it has none).
fn namespace_of(name: &str) -> String {
    kiln_store::ModelName::parse(name)
        .map(|n| n.namespace().to_owned())
        .unwrap_or_default()
}

/// OpenAI's JSON body as Ollama's middleware writes it (`json.Encoder`, `application/json`).
fn openai_response<T: Wire + ?Sized>(status: StatusCode, value: &T) -> Response {
    let mut body = to_go_json(value);
    body.push(b'\n');
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type::JSON_PLAIN),
    );
    r
}

fn openai_error(status: u16, message: impl Into<String>) -> Response {
    openai_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &kiln_api::openai::ErrorResponse::new(status, message),
    )
}

/// `GET /v1/models`: the model list in OpenAI's shape.
async fn openai_models(State(app): State<Shared>) -> Response {
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::list(&store)).await {
        Ok(Ok(list)) => openai_response(
            StatusCode::OK,
            &kiln_api::openai::model_list(&list, namespace_of),
        ),
        Ok(Err(e)) => openai_error(e.status(), e.to_string()),
        Err(e) => openai_error(500, e.to_string()),
    }
}

/// `GET /v1/models/{model}`: one model in OpenAI's shape, errors as OpenAI errors.
async fn openai_model(State(app): State<Shared>, Path(model): Path<String>) -> Response {
    let store = app.engine.store().clone();
    let name = model.clone();
    let req = ShowRequest {
        name: model,
        ..ShowRequest::default()
    };
    match tokio::task::spawn_blocking(move || create::show(&store, &req)).await {
        Ok(Ok(show)) => openai_response(
            StatusCode::OK,
            &kiln_api::openai::model(&show, &name, namespace_of),
        ),
        Ok(Err(e)) => openai_error(e.status(), e.to_string()),
        Err(e) => openai_error(500, e.to_string()),
    }
}

async fn copy(State(app): State<Shared>, body: Bytes) -> Response {
    let req: CopyRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(e.status(), e.to_string()),
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
        Err(e) => return error(e.status(), e.to_string()),
    };
    let store = app.engine.store().clone();
    match tokio::task::spawn_blocking(move || create::delete(&store, &req)).await {
        Ok(Ok(_)) => empty(StatusCode::OK),
        Ok(Err(e)) => error(e.status(), e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

async fn head_blob(State(app): State<Shared>, Path(digest): Path<String>) -> Response {
    let d = match Digest::parse(&digest) {
        Ok(d) => d,
        Err(e) => return store_error(e.into()),
    };
    if app.engine.store().has_blob(&d) {
        empty(StatusCode::OK)
    } else {
        error(404, format!("blob \"{digest}\" not found"))
    }
}

async fn post_blob(State(app): State<Shared>, Path(digest): Path<String>, body: Body) -> Response {
    let expected = match Digest::parse(&digest) {
        Ok(d) => d,
        Err(e) => return store_error(e.into()),
    };
    let store = app.engine.store();
    if store.has_blob(&expected) {
        return empty(StatusCode::OK);
    }
    let mut writer = match store.blob_writer() {
        Ok(w) => w,
        Err(e) => return error(e.status(), e.to_string()),
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
        Err(e) => error(e.status(), e.to_string()),
    }
}

/// One message from a worker: a progress line or the error that ended it (status, message).
enum Line {
    Progress(ProgressResponse),
    Failed(u16, String),
}

/// A job that streams progress into a sink (which cancels by returning `Break`), may check a
/// cancellation token between chunks, and ends with an error's HTTP status and message, or
/// nothing.
type Job = Box<
    dyn FnOnce(
            &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
            &Cancel,
        ) -> Result<(), (u16, String)>
        + Send,
>;

/// Runs `job` on a blocking thread and answers as Ollama does: NDJSON lines (`streamResponse`,
/// where an error before the first line sets the HTTP status), or with `stream: false` the last
/// line or the error (`waitForStream`). A client that goes away, or Ctrl-C, cancels the job at
/// its next line.
async fn respond(app: &Shared, streaming: bool, job: Job) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Line>(64);
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let probe = tx.clone();
        let server = app.clone();
        let cancel = Cancel::with_probe(move || {
            server.shutting_down.load(Ordering::Relaxed) || probe.is_closed()
        });
        let mut sink = |p: ProgressResponse| {
            if app.shutting_down.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            match tx.blocking_send(Line::Progress(p)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        };
        if let Err((status, message)) = job(&mut sink, &cancel) {
            let _ = tx.blocking_send(Line::Failed(status, message));
        }
    });
    if !streaming {
        let mut last = None;
        while let Some(event) = rx.recv().await {
            match event {
                Line::Progress(p) => last = Some(p),
                Line::Failed(status, message) => return error(status, message),
            }
        }
        return match last {
            Some(p) => json_response(StatusCode::OK, &p),
            None => error(500, "the request ended without a result"),
        };
    }
    let first = match rx.recv().await {
        Some(Line::Failed(status, message)) => {
            let mut r = error(status, message);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type::JSON_PLAIN),
            );
            return r;
        }
        Some(Line::Progress(p)) => p,
        None => return error(500, "the request ended without a result"),
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx).map(|event| match event {
        Line::Progress(p) => to_ndjson_line(&p),
        Line::Failed(_, message) => to_ndjson_line(&ErrorResponse::new(message)),
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
        Err(e) => return error(e.status(), e.to_string()),
    };
    let streaming = req.is_streaming();
    let engine = app.engine.clone();
    let job = match tokio::task::spawn_blocking(move || engine.prepare(req)).await {
        Ok(Ok(job)) => job,
        Ok(Err(e)) => return error(e.status(), e.to_string()),
        Err(e) => return error(500, e.to_string()),
    };
    let engine = app.engine.clone();
    respond(
        &app,
        streaming,
        Box::new(move |sink, cancel| {
            engine
                .run(job, &mut |e: &create::Event| sink(e.into()), cancel)
                .map_err(|e| (e.status(), e.to_string()))
        }),
    )
    .await
}

/// Runs a prepared pull or push, streaming its progress lines.
type RunTransfer = fn(
    &Engine,
    &Transfer,
    &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
) -> Result<(), TransferError>;

/// Pull or push: Ollama's pre-stream checks (a 400 before any line), then the transfer streamed.
async fn transfer<R: kiln_api::Request + Send + 'static>(
    app: Shared,
    body: Bytes,
    streaming: fn(&R) -> bool,
    prepare: fn(&Engine, &R) -> Result<Transfer, TransferError>,
    run: RunTransfer,
) -> Response {
    let req: R = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return error(e.status(), e.to_string()),
    };
    let stream = streaming(&req);
    let engine = app.engine.clone();
    let prepared = match tokio::task::spawn_blocking(move || prepare(&engine, &req)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return error(e.status(), e.to_string()),
        Err(e) => return error(500, e.to_string()),
    };
    let engine = app.engine.clone();
    respond(
        &app,
        stream,
        Box::new(move |sink, _| {
            run(&engine, &prepared, sink).map_err(|e| (e.status(), e.to_string()))
        }),
    )
    .await
}

async fn pull(State(app): State<Shared>, body: Bytes) -> Response {
    transfer(
        app,
        body,
        PullRequest::is_streaming,
        |engine, req: &PullRequest| engine.prepare_pull(req),
        |engine, t, sink| engine.pull(t, sink).map(drop),
    )
    .await
}

async fn push(State(app): State<Shared>, body: Bytes) -> Response {
    transfer(
        app,
        body,
        PushRequest::is_streaming,
        |engine, req: &PushRequest| engine.prepare_push(req),
        |engine, t, sink| engine.push(t, sink).map(drop),
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

/// The Ollama model API over `server`'s engine, to serve or to mount in a larger app.
pub fn router(server: Arc<Server>) -> Router {
    let app = server;
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
        .route("/v1/models", get(openai_models))
        .route("/v1/models/{model}", get(openai_model))
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

/// `OLLAMA_HOST` as an address: quotes and `http://` stripped, default 127.0.0.1:11434, port
/// 11434 when none is given.
fn listen_addr(raw: &str) -> Result<SocketAddr, ServeError> {
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
        .map_err(|e: std::net::AddrParseError| ServeError::BadHost {
            value: raw.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        let parse = |s: &str| listen_addr(s).map(|a| a.to_string());
        assert_eq!(parse("").unwrap(), "127.0.0.1:11434");
        assert_eq!(parse("0.0.0.0").unwrap(), "0.0.0.0:11434");
        assert_eq!(
            parse("\"http://127.0.0.1:8080\"").unwrap(),
            "127.0.0.1:8080"
        );
        assert!(matches!(
            parse("example.com"),
            Err(ServeError::BadHost { .. })
        ));
    }
}
