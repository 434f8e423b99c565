//! Store health for an Ollama models directory (`OLLAMA_MODELS`, default `~/.ollama/models`).
//!
//! ```text
//! cargo run --release --example store -- verify
//! cargo run --release --example store -- gc [--dry-run] [--grace SECONDS]
//! cargo run --release --example store -- repair [--insecure]
//! ```
//!
//! `verify` re-hashes every blob and checks every manifest; `gc` removes blobs no manifest
//! references, abandoned partial downloads and crash leftovers older than the grace period
//! (default one hour, so a running upload elsewhere is left alone), or with `--dry-run` lists
//! them and the bytes they would free; `repair` removes corrupt blobs and fetches every missing
//! blob again from its model's registry (`--insecure`: plain HTTP; `KILN_INSECURE_REGISTRIES`
//! as for the server), naming the models it cannot make whole. All are safe against running
//! creates and pulls.

use std::process::ExitCode;
use std::time::Duration;

use kiln_store::{GarbageKind, Store};

const USAGE: &str =
    "usage: store verify | store gc [--dry-run] [--grace SECONDS] | store repair [--insecure]";

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

fn repair(store: &Store, insecure: bool) -> Result<bool, String> {
    let options = kiln_registry::ClientOptions {
        insecure_hosts: kiln_registry::ClientOptions::insecure_hosts_from_env(),
        ..Default::default()
    };
    let engine = kiln::create::Engine::new(store.clone()).with_registry_options(options);
    let repair = engine.repair(insecure).map_err(|e| e.to_string())?;
    for d in &repair.removed_corrupt {
        println!("removed corrupt blob {d}");
    }
    for (model, d) in &repair.refetched {
        println!("fetched {d} again for {}", model.display_shortest());
    }
    for (model, missing, reason) in &repair.broken {
        println!(
            "broken: {} lacks {} blob(s) ({reason})",
            model.display_shortest(),
            missing.len()
        );
    }
    Ok(repair.broken.is_empty())
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
        Some("repair") if args.len() == 1 => repair(&store, false),
        Some("repair") if args.len() == 2 && args[1] == "--insecure" => repair(&store, true),
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
