//! `kiln verify`, `kiln gc` and `kiln repair`: store health, safe against running creates and
//! pulls (the store's locks).

use std::time::Duration;

use kiln::create::Engine;
use kiln_store::{GarbageKind, Store};
use serde_json::json;

use crate::CliError;
use crate::format::human_bytes;

fn garbage_kind(kind: GarbageKind) -> &'static str {
    match kind {
        GarbageKind::Unreferenced => "unreferenced blob",
        GarbageKind::PartialDownload => "partial download",
        GarbageKind::Temporary => "temporary file",
        _ => "garbage",
    }
}

/// Re-hashes every blob and checks every manifest; [`CliError::Unhealthy`] when anything is wrong.
pub(crate) fn verify(store: &Store, json: bool) -> Result<(), CliError> {
    let report = store.verify()?;
    let healthy = report.corrupt_blobs.is_empty()
        && report.missing_blobs.is_empty()
        && report.bad_manifests.is_empty();
    if json {
        let out = json!({
            "blobs_checked": report.blobs_checked,
            "corrupt_blobs": report.corrupt_blobs.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "missing_blobs": report.missing_blobs.iter()
                .map(|(model, digest)| json!({"model": model, "digest": digest})).collect::<Vec<_>>(),
            "bad_manifests": report.bad_manifests.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "healthy": healthy,
        });
        println!("{out}");
    } else {
        for d in &report.corrupt_blobs {
            println!("corrupt blob: {d} (its content does not hash to its name)");
        }
        for (model, digest) in &report.missing_blobs {
            println!("missing blob: {model} references {digest}, which is not in the store");
        }
        for path in &report.bad_manifests {
            println!("bad manifest: {} does not parse", path.display());
        }
        println!(
            "{} blobs checked: {}",
            report.blobs_checked,
            if healthy { "healthy" } else { "problems found" }
        );
    }
    if healthy {
        Ok(())
    } else {
        Err(CliError::Unhealthy)
    }
}

/// Lists (dry run) or removes the store's garbage older than `grace`, with the bytes it frees.
pub(crate) fn gc(
    store: &Store,
    dry_run: bool,
    grace: Duration,
    json: bool,
) -> Result<(), CliError> {
    let garbage = store.garbage(grace)?;
    let removed = if dry_run {
        Vec::new()
    } else {
        store.prune(grace)?
    };
    // What prune removed, by the sizes the listing found (a file may vanish in between).
    let listed: Vec<_> = garbage
        .iter()
        .filter(|g| dry_run || removed.contains(&g.path))
        .collect();
    let bytes: u64 = listed.iter().map(|g| g.bytes).sum();
    if json {
        let files: Vec<_> = listed
            .iter()
            .map(|g| json!({"path": g.path.display().to_string(), "kind": garbage_kind(g.kind), "bytes": g.bytes}))
            .collect();
        println!(
            "{}",
            json!({"dry_run": dry_run, "files": files, "bytes": bytes})
        );
        return Ok(());
    }
    if dry_run {
        for g in &listed {
            println!(
                "{:>10}  {:<18} {}",
                human_bytes(g.bytes as i64),
                garbage_kind(g.kind),
                g.path.display()
            );
        }
        println!(
            "would remove {} files, freeing {}",
            listed.len(),
            human_bytes(bytes as i64)
        );
    } else {
        println!(
            "removed {} files, freed {}",
            removed.len(),
            human_bytes(bytes as i64)
        );
    }
    Ok(())
}

/// Removes corrupt blobs and fetches missing ones again; [`CliError::Unhealthy`] when a model
/// stays broken.
pub(crate) fn repair(engine: Engine, insecure: bool, json: bool) -> Result<(), CliError> {
    let repair = engine.repair(insecure)?;
    if json {
        let out = json!({
            "removed_corrupt": repair.removed_corrupt.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "refetched": repair.refetched.iter()
                .map(|(m, d)| json!({"model": m.display_shortest(), "digest": d.to_string()})).collect::<Vec<_>>(),
            "broken": repair.broken.iter()
                .map(|(m, missing, reason)| json!({"model": m.display_shortest(),
                    "missing": missing.iter().map(|d| d.to_string()).collect::<Vec<_>>(), "reason": reason}))
                .collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
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
    }
    if repair.broken.is_empty() {
        Ok(())
    } else {
        Err(CliError::Unhealthy)
    }
}
