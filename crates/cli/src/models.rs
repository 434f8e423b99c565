//! The model commands, as the `ollama` command prints them: create, list, show, cp, rm, pull,
//! push.

use std::time::{Instant, SystemTime};

use kiln::create;
use kiln_api::{CopyRequest, DeleteRequest, PullRequest, PushRequest, ShowRequest, ShowResponse};
use kiln_store::{ModelName, Store};
use serde_json::Value;

use crate::format::{human_bytes, human_time};
use crate::progress::Progress;
use crate::{CliError, CreateArgs, ShowArgs, Target, TransferArgs};

/// Rows as Ollama's tablewriter prints them without borders: each column padded to its widest
/// cell, four spaces between columns, nothing after the last.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 4;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// What the summary line of a create tells about the stored model: the model layer's size,
/// its weight count and the file type.
struct ModelSummary {
    size: u64,
    weights: u64,
    file_type: String,
}

fn model_summary(store: &Store, name: &str) -> Option<ModelSummary> {
    let name = ModelName::parse(name).ok()?;
    let manifest = store.manifest(&name).ok()?.manifest;
    let layer = manifest
        .layers
        .iter()
        .rfind(|l| l.media_type == kiln_store::MEDIA_TYPE_MODEL)?;
    let path = store.blob_path(&layer.digest().ok()?);
    // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
    let file = unsafe { kiln_gguf::GgufFile::map(path) }.ok()?;
    let gguf = file.parse(&kiln_gguf::Limits::default()).ok()?;
    let weights = gguf.tensors().iter().map(|t| t.n_elements()).sum();
    let file_type = gguf
        .metadata()
        .get("general.file_type")
        .and_then(|v| v.as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .and_then(kiln::quantize::FileType::from_llama_ftype)
        .map_or_else(String::new, |f| f.name().to_owned());
    Some(ModelSummary {
        size: layer.size.max(0) as u64,
        weights,
        file_type,
    })
}

/// `created NAME in T s`, then, for a model in the local store, its input and model sizes, file
/// type and bits per weight.
fn summary_line(name: &str, seconds: f64, inputs: u64, model: Option<&ModelSummary>) -> String {
    let mut line = format!("created {name} in {seconds:.1} s");
    if let Some(m) = model {
        line.push_str(": ");
        if inputs > 0 {
            line.push_str(&format!("{} → ", human_bytes(inputs as i64)));
        }
        line.push_str(&human_bytes(m.size as i64));
        let mut details = Vec::new();
        if !m.file_type.is_empty() {
            details.push(m.file_type.clone());
        }
        if m.weights > 0 {
            details.push(format!(
                "{:.2} bits per weight",
                m.size as f64 * 8.0 / m.weights as f64
            ));
        }
        if !details.is_empty() {
            line.push_str(&format!(" ({})", details.join(", ")));
        }
    }
    line
}

pub(crate) fn create(target: &Target, args: CreateArgs, json: bool) -> Result<(), CliError> {
    let name = args.name.clone();
    let start = Instant::now();
    let mut progress = Progress::new(json);
    let inputs = crate::modelfile::create(target, &args, &mut progress)?;
    progress.finish();
    if !json {
        let model = match target {
            Target::Local(engine) => model_summary(engine.store(), &name),
            Target::Remote(_) => None,
        };
        eprintln!(
            "{}",
            summary_line(&name, start.elapsed().as_secs_f64(), inputs, model.as_ref())
        );
    }
    Ok(())
}

pub(crate) fn list(target: &Target, prefix: Option<&str>, json: bool) -> Result<(), CliError> {
    let list = match target {
        Target::Local(engine) => create::list(engine.store())?,
        Target::Remote(remote) => remote.list()?,
    };
    if json {
        crate::print_json(&kiln_api::to_go_json(&list));
        return Ok(());
    }
    let now = SystemTime::now();
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "ID".into(),
        "SIZE".into(),
        "MODIFIED".into(),
    ]];
    for m in &list.models {
        if let Some(p) = prefix
            && !m.name.to_lowercase().starts_with(&p.to_lowercase())
        {
            continue;
        }
        let size = if m.remote_model.is_empty() {
            human_bytes(m.size)
        } else {
            "-".into()
        };
        let modified = match m.modified_at.to_system_time() {
            Some(t) => human_time(now.duration_since(t).map_err(|e| e.duration())),
            None => "Never".into(),
        };
        rows.push(vec![
            m.name.clone(),
            m.digest.chars().take(12).collect(),
            size,
            modified,
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

pub(crate) fn show(target: &Target, args: ShowArgs, json: bool) -> Result<(), CliError> {
    let request = ShowRequest {
        model: args.model,
        verbose: args.verbose,
        ..ShowRequest::default()
    };
    let show = match target {
        Target::Local(engine) => create::show(engine.store(), &request)?,
        Target::Remote(remote) => remote.show(&request)?,
    };
    if json {
        crate::print_json(&kiln_api::to_go_json(&show));
        return Ok(());
    }
    let part = [
        (args.modelfile, &show.modelfile),
        (args.parameters, &show.parameters),
        (args.template, &show.template),
        (args.system, &show.system),
        (args.license, &show.license),
    ]
    .into_iter()
    .find(|(wanted, _)| *wanted);
    match part {
        Some((_, text)) => println!("{text}"),
        None => print!("{}", show_info(&show)),
    }
    Ok(())
}

/// A number as Go's `strconv.FormatFloat(f, 'f', -1, 64)` prints a JSON number.
fn plain_number(v: &Value) -> Option<String> {
    let n = v.as_number()?;
    Some(match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u.to_string(),
        (None, Some(i)) => i.to_string(),
        _ => kiln_go::strconv::format_float_f(n.as_f64()?),
    })
}

/// Ollama's `showInfo`: the Model section, then capabilities, parameters, system and license.
fn show_info(show: &ShowResponse) -> String {
    let mut out = String::new();
    let mut section = |header: &str, rows: Vec<Vec<String>>| {
        out.push_str(&format!("  {header}\n"));
        out.push_str(&table(&rows));
        out.push('\n');
    };
    let row = |k: &str, v: String| vec![String::new(), k.to_owned(), v];
    let mut model = Vec::new();
    if !show.remote_host.is_empty() {
        model.push(row("Remote model", show.remote_model.clone()));
        model.push(row("Remote URL", show.remote_host.clone()));
    }
    let arch = show
        .model_info
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if show.model_info.is_empty() {
        model.push(row("architecture", show.details.family.clone()));
        model.push(row("parameters", show.details.parameter_size.clone()));
    } else {
        if !arch.is_empty() {
            model.push(row("architecture", arch.to_owned()));
        }
        if !show.details.parameter_size.is_empty() {
            model.push(row("parameters", show.details.parameter_size.clone()));
        }
        for (key, label) in [
            ("context_length", "context length"),
            ("embedding_length", "embedding length"),
        ] {
            if let Some(v) = show
                .model_info
                .get(&format!("{arch}.{key}"))
                .and_then(plain_number)
            {
                model.push(row(label, v));
            }
        }
    }
    model.push(row("quantization", show.details.quantization_level.clone()));
    if !show.requires.is_empty() {
        model.push(row("requires", show.requires.clone()));
    }
    section("Model", model);
    if !show.capabilities.is_empty() {
        let rows = show
            .capabilities
            .iter()
            .map(|c| vec![String::new(), c.clone()])
            .collect();
        section("Capabilities", rows);
    }
    if !show.parameters.is_empty() {
        let rows = show
            .parameters
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                std::iter::once(String::new())
                    .chain(l.split_whitespace().map(str::to_owned))
                    .collect()
            })
            .collect();
        section("Parameters", rows);
    }
    for (header, text) in [("System", &show.system), ("License", &show.license)] {
        if text.is_empty() {
            continue;
        }
        // Ollama shows the first two lines, then an ellipsis.
        let mut lines: Vec<Vec<String>> = text
            .trim()
            .lines()
            .take(2)
            .map(|l| vec![String::new(), l.to_owned()])
            .collect();
        if text.trim().lines().count() > 2 {
            lines.push(vec![String::new(), "...".into()]);
        }
        section(header, lines);
    }
    out
}

pub(crate) fn copy(target: &Target, source: &str, destination: &str) -> Result<(), CliError> {
    let request = CopyRequest {
        source: source.to_owned(),
        destination: destination.to_owned(),
    };
    match target {
        Target::Local(engine) => create::copy(engine.store(), &request)?,
        Target::Remote(remote) => remote.copy(&request)?,
    }
    println!("copied '{source}' to '{destination}'");
    Ok(())
}

pub(crate) fn remove(target: &Target, models: &[String]) -> Result<(), CliError> {
    for model in models {
        let request = DeleteRequest {
            model: model.clone(),
            ..DeleteRequest::default()
        };
        let freed = match target {
            Target::Local(engine) => Some(create::delete(engine.store(), &request)?.bytes_freed),
            Target::Remote(remote) => {
                remote.delete(&request)?;
                None
            }
        };
        // The line Ollama prints, on stdout; what it freed (the server does not say) on stderr.
        println!("deleted '{model}'");
        if let Some(bytes) = freed {
            eprintln!("freed {}", human_bytes(bytes as i64));
        }
    }
    Ok(())
}

pub(crate) fn pull(target: &Target, args: TransferArgs, json: bool) -> Result<(), CliError> {
    let request = PullRequest {
        model: args.model,
        insecure: args.insecure,
        ..PullRequest::default()
    };
    let mut progress = Progress::new(json);
    let engine = match target {
        Target::Local(engine) => engine,
        Target::Remote(remote) => return remote.pull(&request, &mut progress),
    };
    let transfer = engine.prepare_pull(&request)?;
    let summary = engine.pull(&transfer, &mut |p| progress.line(&p))?;
    progress.finish();
    if !json {
        eprintln!(
            "pulled {}: {} fetched, {} resumed, {} layers already here",
            summary.name.display_shortest(),
            human_bytes(summary.fetched as i64),
            human_bytes(summary.resumed as i64),
            summary.cached
        );
    }
    Ok(())
}

pub(crate) fn push(target: &Target, args: TransferArgs, json: bool) -> Result<(), CliError> {
    let request = PushRequest {
        model: args.model.clone(),
        insecure: args.insecure,
        ..PushRequest::default()
    };
    let mut progress = Progress::new(json);
    let engine = match target {
        Target::Local(engine) => engine,
        Target::Remote(remote) => return remote.push(&request, &mut progress),
    };
    let transfer = engine.prepare_push(&request)?;
    let summary = engine.push(&transfer, &mut |p| progress.line(&p))?;
    progress.finish();
    if !json {
        eprintln!(
            "pushed {}: {} sent, {} blobs already there, {} mounted",
            args.model,
            human_bytes(summary.sent as i64),
            summary.existing,
            summary.mounted
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_summary_gives_sizes_type_and_bits_per_weight() {
        let model = ModelSummary {
            size: 1_000_000,
            weights: 1_600_000,
            file_type: "Q4_K_M".into(),
        };
        assert_eq!(
            summary_line("m", 2.04, 3_200_000, Some(&model)),
            format!(
                "created m in 2.0 s: {} → {} (Q4_K_M, 5.00 bits per weight)",
                human_bytes(3_200_000),
                human_bytes(1_000_000)
            )
        );
        assert_eq!(summary_line("m", 0.5, 0, None), "created m in 0.5 s");
    }

    #[test]
    fn tables_pad_columns_as_tablewriter_does() {
        let rows = vec![
            vec!["NAME".into(), "ID".into()],
            vec!["a:latest".into(), "123".into()],
        ];
        assert_eq!(table(&rows), "NAME        ID\na:latest    123\n");
    }
}
