//! `kiln inspect`: a GGUF file's header, metadata and tensor table.
//!
//! Long arrays are abbreviated in the text output; `--json` prints one JSON document for scripts
//! (arrays abbreviated the same way, with their full length).

use std::path::Path;

use kiln_gguf::{Gguf, GgufFile, Limits, Value};
use serde_json::json;

use crate::CliError;

const SHOWN_ITEMS: usize = 8;

fn value_text(v: &Value<'_>) -> String {
    match v {
        Value::String(s) => format!("{:?}", abbreviate(s)),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().take(SHOWN_ITEMS).map(|x| value_text(&x)).collect();
            let more = if a.len() > SHOWN_ITEMS {
                format!(", … ({} items)", a.len())
            } else {
                String::new()
            };
            format!("[{}{more}]", items.join(", "))
        }
        Value::F32(x) => format!("{x:?}"),
        Value::F64(x) => format!("{x:?}"),
        Value::Bool(b) => b.to_string(),
        other => match other.as_i64() {
            Some(i) => i.to_string(),
            None => other
                .as_u64()
                .map(|u| u.to_string())
                .unwrap_or_else(|| format!("{other:?}")),
        },
    }
}

fn abbreviate(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        format!(
            "{}… ({} bytes)",
            s.chars().take(MAX).collect::<String>(),
            s.len()
        )
    }
}

fn value_json(v: &Value<'_>) -> serde_json::Value {
    match v {
        Value::String(s) => json!(abbreviate(s)),
        Value::Array(a) => json!({
            "type": a.element_type().name(),
            "len": a.len(),
            "items": a.iter().take(SHOWN_ITEMS).map(|x| value_json(&x)).collect::<Vec<_>>(),
        }),
        Value::Bool(b) => json!(b),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        other => match other.as_i64() {
            Some(i) => json!(i),
            None => json!(other.as_u64()),
        },
    }
}

pub(crate) fn print_text(path: &str, gguf: &Gguf<'_>) {
    println!(
        "{path}: GGUF v{}, {} bytes",
        gguf.version(),
        gguf.bytes().len()
    );
    println!(
        "alignment {}, data at offset {}",
        gguf.alignment(),
        gguf.data_offset()
    );
    println!("\nmetadata ({} entries):", gguf.metadata().len());
    for (key, value) in gguf.metadata().iter() {
        println!(
            "  {key:<40} {:<7} {}",
            value.value_type().name(),
            value_text(value)
        );
    }
    println!("\ntensors ({}):", gguf.tensors().len());
    println!(
        "  {:<48} {:<8} {:<24} {:>14} {:>14}",
        "name", "type", "shape", "offset", "bytes"
    );
    for t in gguf.tensors() {
        let shape = format!("{:?}", t.dims());
        let bytes = t
            .n_bytes()
            .map(|b| b.to_string())
            .unwrap_or_else(|| "?".into());
        println!(
            "  {:<48} {:<8} {:<24} {:>14} {:>14}",
            t.name(),
            t.ggml_type().to_string(),
            shape,
            t.offset(),
            bytes
        );
    }
}

pub(crate) fn print_json(path: &str, gguf: &Gguf<'_>) {
    let metadata: Vec<_> = gguf
        .metadata()
        .iter()
        .map(|(k, v)| json!({"key": k, "type": v.value_type().name(), "value": value_json(v)}))
        .collect();
    let tensors: Vec<_> = gguf
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name(), "type": t.ggml_type().to_string(), "type_id": t.ggml_type().0,
                "shape": t.dims(), "offset": t.offset(), "bytes": t.n_bytes(),
            })
        })
        .collect();
    let doc = json!({
        "file": path, "version": gguf.version(), "size": gguf.bytes().len(), "alignment": gguf.alignment(),
        "data_offset": gguf.data_offset(), "metadata": metadata, "tensors": tensors,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// Prints `path`'s header, metadata and tensors; a file that does not parse is an error naming
/// what is wrong and where.
pub(crate) fn inspect(path: &Path, as_json: bool) -> Result<(), CliError> {
    // SAFETY: a read-only map of the user's file; like llama.cpp's tools, this assumes nothing
    // truncates it while it is read.
    let file = unsafe { GgufFile::map(path) }.map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })?;
    let gguf = file.parse(&Limits::default()).map_err(|e| CliError::Gguf {
        path: path.to_owned(),
        source: e,
    })?;
    let name = path.display().to_string();
    if as_json {
        print_json(&name, &gguf);
    } else {
        print_text(&name, &gguf);
    }
    Ok(())
}
