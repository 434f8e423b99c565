//! Store health for an Ollama models directory (`OLLAMA_MODELS`, default `~/.ollama/models`).
//!
//! ```text
//! cargo run --release --example store -- verify
//! cargo run --release --example store -- gc [--dry-run] [--grace SECONDS]
//! ```
//!
//! `verify` re-hashes every blob and checks every manifest; `gc` removes blobs no manifest
//! references, abandoned partial downloads and crash leftovers older than the grace period
//! (default one hour, so a running upload elsewhere is left alone), or with `--dry-run` lists
//! them and the bytes they would free. Both are safe against running creates and pulls.

use std::process::ExitCode;
use std::time::Duration;

use kiln_store::{GarbageKind, Store};

const USAGE: &str = "usage: store verify | store gc [--dry-run] [--grace SECONDS]";

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn verify(store: &Store) -> Result<bool, String> {
    let report = store.verify().map_err(|e| e.to_string())?;
    for d in &report.corrupt_blobs {
        println!("corrupt blob: {d} (its content does not hash to its name)");
    }
    for (model, digest) in &report.missing_blobs {
        println!("missing blob: {model} references {digest}, which is not in the store");
    }
    for path in &report.bad_manifests {
        println!("bad manifest: {} does not parse", path.display());
    }
    let healthy = report.corrupt_blobs.is_empty()
        && report.missing_blobs.is_empty()
        && report.bad_manifests.is_empty();
    println!(
        "{} blobs checked: {}",
        report.blobs_checked,
        if healthy { "healthy" } else { "problems found" }
    );
    Ok(healthy)
}

fn gc(store: &Store, dry_run: bool, grace: Duration) -> Result<(), String> {
    let garbage = store.garbage(grace).map_err(|e| e.to_string())?;
    let total: u64 = garbage.iter().map(|g| g.bytes).sum();
    if dry_run {
        for g in &garbage {
            let why = match g.kind {
                GarbageKind::Unreferenced => "unreferenced blob",
                GarbageKind::PartialDownload => "partial download",
                GarbageKind::Temporary => "temporary file",
                _ => "garbage",
            };
            println!(
                "{:>10}  {why:<18} {}",
                human_bytes(g.bytes),
                g.path.display()
            );
        }
        println!(
            "would remove {} files, freeing {}",
            garbage.len(),
            human_bytes(total)
        );
        return Ok(());
    }
    let removed = store.prune(grace).map_err(|e| e.to_string())?;
    let freed: u64 = garbage
        .iter()
        .filter(|g| removed.contains(&g.path))
        .map(|g| g.bytes)
        .sum();
    println!(
        "removed {} files, freed {}",
        removed.len(),
        human_bytes(freed)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = match Store::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: models directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("verify") if args.len() == 1 => verify(&store),
        Some("gc") => {
            let mut dry_run = false;
            let mut grace = Duration::from_secs(3600);
            let mut rest = args[1..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--dry-run" => dry_run = true,
                    "--grace" => match rest.next().and_then(|s| s.parse().ok()) {
                        Some(secs) => grace = Duration::from_secs(secs),
                        None => {
                            eprintln!("error: --grace needs a number of seconds\n{USAGE}");
                            return ExitCode::from(2);
                        }
                    },
                    other => {
                        eprintln!("error: unknown option {other:?}\n{USAGE}");
                        return ExitCode::from(2);
                    }
                }
            }
            gc(&store, dry_run, grace).map(|()| true)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
