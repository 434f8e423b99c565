//! `kiln quantize`: llama-quantize's command on kiln's quantizer, with what llama-quantize cannot
//! tell: each tensor's quantization error (`--report`), as a table or as JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use kiln::quantize::target::{Budget, Mix, TargetOptions};
use kiln::{FileType, Imatrix, QuantizeEvent, QuantizeOptions, QuantizeReport, TensorError};
use kiln_gguf::GgmlType;
use serde_json::{Value, json};

use crate::CliError;

/// `kiln quantize`'s arguments: llama-quantize's, plus `--report`.
#[derive(Debug, Args)]
pub(crate) struct QuantizeArgs {
    /// The model: a GGUF file (the first part of a split one), or a Hugging Face folder,
    /// converted as Ollama converts it while it is quantized
    input: PathBuf,
    /// The quantized GGUF to write (complete or not at all)
    output: PathBuf,
    /// File type: Q4_K_M, Q8_0, COPY, … (case-insensitive)
    #[arg(value_name = "TYPE")]
    file_type: String,
    /// Worker threads (0: every core); the output does not depend on it
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Every tensor the file type's default type (no per-tensor rules)
    #[arg(long)]
    pure: bool,
    /// Allow already-quantized input (quantized twice)
    #[arg(long)]
    allow_requantize: bool,
    /// Keep output.weight in its source type
    #[arg(long)]
    leave_output_tensor: bool,
    /// Importance matrix (llama-imatrix's GGUF or legacy .dat)
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Type for output.weight
    #[arg(long, value_name = "TYPE")]
    output_tensor_type: Option<String>,
    /// Type for token_embd.weight
    #[arg(long, value_name = "TYPE")]
    token_embedding_type: Option<String>,
    /// Type for tensors whose name matches REGEX (first match wins; repeatable)
    #[arg(long, value_name = "REGEX=TYPE")]
    tensor_type: Vec<String>,
    /// Ollama's per-architecture rules for Q4_K_S/Q4_K_M, as `ollama create -q` applies them
    #[arg(long)]
    ollama: bool,
    /// Measure each tensor's error (dequantized again and compared with the source: RMSE, max
    /// error, SNR, importance-weighted RMSE with --imatrix) and print it per tensor
    #[arg(long)]
    report: bool,
    /// Choose each tensor's type (Q2_K…Q8_0) for the least total error at this many bits per
    /// weight; TYPE's rules decide the tensors the mix does not cover
    #[arg(long, value_name = "BPW", conflicts_with = "target_size")]
    target_bpw: Option<f64>,
    /// Like --target-bpw, for an output file of at most this size (bytes, or 3.2GB, 800MiB, …)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    target_size: Option<u64>,
    /// For a Hugging Face folder with a vision tower (Qwen 3.5, Qwen3-VL): also write the
    /// projector GGUF Ollama makes of it (never quantized) to FILE
    #[arg(long, value_name = "FILE")]
    mmproj: Option<PathBuf>,
}

/// A size: bytes, or a number with a unit (kB MB GB TB, KiB MiB GiB TiB; B optional).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 3.2GB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    Ok((value * scale).floor() as u64)
}

fn tensor_type(s: &str) -> Result<GgmlType, CliError> {
    let lower = s.to_ascii_lowercase();
    GgmlType::from_name(&lower)
        .or_else(|| GgmlType::from_name(&lower.replace("_k", "_K")))
        .ok_or_else(|| CliError::Argument(format!("unknown tensor type {s:?}")))
}

fn options(args: &QuantizeArgs) -> Result<QuantizeOptions, CliError> {
    let mut options = QuantizeOptions {
        threads: args.threads,
        pure: args.pure,
        allow_requantize: args.allow_requantize,
        leave_output_tensor: args.leave_output_tensor,
        ollama_overrides: args.ollama,
        measure_error: args.report,
        ..QuantizeOptions::default()
    };
    if let Some(path) = &args.imatrix {
        let bytes = std::fs::read(path).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        let imatrix = Imatrix::parse(&bytes)
            .map_err(|e| CliError::Argument(format!("{}: {e}", path.display())))?;
        options.extra_metadata = imatrix.provenance(&path.to_string_lossy());
        options.imatrix = Some(imatrix.data);
    }
    options.output_tensor_type = args
        .output_tensor_type
        .as_deref()
        .map(tensor_type)
        .transpose()?;
    options.token_embedding_type = args
        .token_embedding_type
        .as_deref()
        .map(tensor_type)
        .transpose()?;
    for spec in &args.tensor_type {
        let (re, ty) = spec.split_once('=').ok_or_else(|| {
            CliError::Argument(format!("--tensor-type {spec}: expected REGEX=TYPE"))
        })?;
        options.tensor_types.push((re.to_owned(), tensor_type(ty)?));
    }
    Ok(options)
}

/// A float for JSON: `null` for what JSON cannot carry (an exact tensor's infinite SNR).
fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn error_json(e: &TensorError) -> Value {
    json!({
        "rmse": number(e.rmse),
        "max_abs_error": number(e.max_abs),
        "snr_db": number(e.snr_db),
        "weighted_rmse": e.weighted_rmse.map(number),
    })
}

/// The report as one JSON object: every tensor, then the model's totals.
pub(crate) fn report_json(report: &QuantizeReport, file_type: FileType, seconds: f64) -> Value {
    let tensors: Vec<Value> = report
        .tensors
        .iter()
        .map(|t| {
            let mut v = json!({
                "name": t.name,
                "from": t.from.to_string(),
                "to": t.to.to_string(),
                "n_elements": t.n_elements,
                "bytes_in": t.bytes_in,
                "bytes_out": t.bytes_out,
                "bits_per_weight": number(t.bits_per_weight()),
            });
            if let Some(e) = &t.error {
                v["error"] = error_json(e);
            }
            v
        })
        .collect();
    let s = report.summary();
    json!({
        "file_type": file_type.name(),
        "file_len": report.file_len,
        "seconds": number(seconds),
        "tensors": tensors,
        "summary": {
            "n_elements": s.n_elements,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
            "bits_per_weight": number(s.bits_per_weight),
            "rmse": s.rmse.map(number),
            "worst_snr_db": s.worst_snr_db.map(number),
        },
    })
}

fn snr_text(db: f64) -> String {
    if db.is_infinite() {
        "exact".to_owned()
    } else {
        format!("{db:.1}")
    }
}

/// The per-tensor error table a person reads.
fn report_table(report: &QuantizeReport) -> String {
    let weighted = report
        .tensors
        .iter()
        .any(|t| t.error.is_some_and(|e| e.weighted_rmse.is_some()));
    let mut header = vec!["TENSOR", "TYPE", "BPW", "RMSE", "MAX ERROR", "SNR dB"];
    if weighted {
        header.push("WEIGHTED RMSE");
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for t in &report.tensors {
        let ty = if t.from == t.to {
            t.to.to_string()
        } else {
            format!("{} -> {}", t.from, t.to)
        };
        let mut row = vec![t.name.clone(), ty, format!("{:.2}", t.bits_per_weight())];
        match &t.error {
            Some(e) => {
                row.push(format!("{:.3e}", e.rmse));
                row.push(format!("{:.3e}", e.max_abs));
                row.push(snr_text(e.snr_db));
                if weighted {
                    row.push(e.weighted_rmse.map_or("-".into(), |w| format!("{w:.3e}")));
                }
            }
            None => row.extend(["-", "-", "-"].map(String::from)),
        }
        rows.push(row);
    }
    crate::models::table(&rows)
}

/// Runs `kiln quantize`.
pub(crate) fn quantize(args: QuantizeArgs, json: bool) -> Result<(), CliError> {
    let file_type: FileType = args
        .file_type
        .parse()
        .map_err(|e: kiln::quantize::UnknownFileType| CliError::Argument(e.to_string()))?;
    let mut options = options(&args)?;
    let start = Instant::now();
    let budget = match (args.target_bpw, args.target_size) {
        (Some(bpw), _) => Some(Budget::BitsPerWeight(bpw)),
        (None, Some(bytes)) => Some(Budget::FileBytes(bytes)),
        (None, None) => None,
    };
    let mix = match budget {
        Some(budget) => {
            if !json {
                eprintln!("choosing each tensor's type for the target…");
            }
            let mix = kiln::quantize::target::choose_mix_for_file(
                &args.input,
                file_type,
                &options,
                &TargetOptions::new(budget),
            )?;
            options = mix.apply(&options);
            Some(mix)
        }
        None => None,
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_percent = u64::MAX;
    let mut sink = |e: &QuantizeEvent<'_>| {
        if let QuantizeEvent::Bytes { done, total } = *e {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            if terminal && !json && percent != last_percent {
                last_percent = percent;
                eprint!("\rquantizing: {percent:3}%");
            }
        }
        ControlFlow::Continue(())
    };
    let has_projector = write_projector(&args)?;
    let cancel = crate::interrupt::ctrl_c_token().unwrap_or_default();
    let report = kiln::quantize_model(
        &args.input,
        &args.output,
        file_type,
        &options,
        &mut cancel.guard(&mut sink),
    )
    .map_err(|e| crate::modelfile::interrupted_or(e.into(), &cancel))?;
    let seconds = start.elapsed().as_secs_f64();
    if terminal && !json {
        eprintln!();
    }
    if has_projector && args.mmproj.is_none() && !json {
        eprintln!(
            "note: the vision tower is not in {}: Ollama keeps it in a separate projector GGUF; \
             write it with --mmproj FILE",
            args.output.display()
        );
    }
    if json {
        let mut value = report_json(&report, file_type, seconds);
        if let Some(mix) = &mix {
            value["mix"] = mix_json(mix);
        }
        crate::print_json(&serde_json::to_vec(&value).unwrap_or_default());
        return Ok(());
    }
    let mut out = String::new();
    if let Some(mix) = &mix {
        out.push_str(&mix_text(mix));
        out.push('\n');
    }
    if args.report {
        out.push_str(&report_table(&report));
        out.push('\n');
    }
    out.push_str(&summary_text(&args, &report, file_type, seconds));
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

/// Whether the input is a folder whose conversion has a projector GGUF, written to `--mmproj`
/// when given (complete or not at all); `--mmproj` for any other input is an error.
fn write_projector(args: &QuantizeArgs) -> Result<bool, CliError> {
    if !args.input.is_dir() {
        return match &args.mmproj {
            Some(_) => Err(CliError::Argument(
                "--mmproj needs a Hugging Face folder with a vision tower as input".into(),
            )),
            None => Ok(false),
        };
    }
    // SAFETY: read-only maps of the user's input, which nothing rewrites while it is read.
    let folder = unsafe { kiln::convert::ModelFolder::map_dir(&args.input) }
        .map_err(kiln::QuantizeError::from)?;
    let conversion = kiln::convert::Conversion::plan(&folder).map_err(kiln::QuantizeError::from)?;
    let (Some(projector), Some(path)) = (conversion.projector(), &args.mmproj) else {
        if args.mmproj.is_some() {
            return Err(CliError::Argument(format!(
                "--mmproj: {} has no vision tower to write",
                args.input.display()
            )));
        }
        return Ok(conversion.projector().is_some());
    };
    kiln_store::write_atomically(
        path,
        |out| {
            projector
                .write(out)
                .map(|_| ())
                .map_err(kiln::QuantizeError::from)
                .map_err(CliError::from)
        },
        |path, source| CliError::Io {
            path: path.to_owned(),
            source,
        },
    )?;
    Ok(true)
}

fn mix_json(mix: &Mix) -> Value {
    json!({
        "base": mix.base.name(),
        "file_len": mix.file_len,
        "bits_per_weight": number(mix.bits_per_weight),
        "estimated_error": number(mix.error),
        "tensors": mix.tensors.iter().map(|t| json!({
            "name": t.name, "type": t.chosen.to_string(), "bytes": t.bytes,
            "estimated_error": number(t.error),
        })).collect::<Vec<_>>(),
        "nearest_fixed": mix.nearest_fixed.map(|f| json!({
            "file_type": f.file_type.name(), "file_len": f.file_len,
            "estimated_error": number(f.error),
        })),
        "llama_quantize_args": mix.llama_quantize_args(),
    })
}

/// The mix as a person reads it: types used, size and error next to the nearest fixed type,
/// and the llama-quantize arguments that make the same file.
fn mix_text(mix: &Mix) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in &mix.tensors {
        *counts.entry(t.chosen.to_string()).or_default() += 1;
    }
    let types: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let mut out = format!(
        "mix: {} tensors ({}) on {}: {} ({:.2} bpw), estimated squared error {:.4e}\n",
        mix.tensors.len(),
        types.join(", "),
        mix.base.name(),
        crate::human_bytes(mix.file_len as i64),
        mix.bits_per_weight,
        mix.error
    );
    if let Some(f) = &mix.nearest_fixed {
        out.push_str(&format!(
            "nearest fixed type: {}: {}, estimated squared error {:.4e} ({:+.1}% for the mix)\n",
            f.file_type.name(),
            crate::human_bytes(f.file_len as i64),
            f.error,
            (mix.error / f.error - 1.0) * 100.0
        ));
    }
    let args: Vec<String> = mix
        .llama_quantize_args()
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    out.push_str(&format!(
        "same bytes with llama.cpp: llama-quantize {} IN.gguf OUT.gguf {}\n",
        args[..args.len() - 1].join(" "),
        args[args.len() - 1]
    ));
    out
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn summary_text(
    args: &QuantizeArgs,
    report: &QuantizeReport,
    file_type: FileType,
    seconds: f64,
) -> String {
    let mut per_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in &report.tensors {
        let entry = per_type.entry(t.to.to_string()).or_default();
        entry.0 += 1;
        entry.1 += t.n_elements;
    }
    let s = report.summary();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let bpw_in = s.bytes_in as f64 * 8.0 / s.n_elements.max(1) as f64;
    let mut out = format!(
        "{} -> {} ({})\n",
        args.input.display(),
        args.output.display(),
        file_type.description()
    );
    for (ty, (count, n)) in &per_type {
        out.push_str(&format!("  {ty:<8} {count:>5} tensors {n:>14} weights\n"));
    }
    out.push_str(&format!(
        "  size      {:.2} MiB ({bpw_in:.2} bpw) -> {:.2} MiB ({:.2} bpw)\n",
        mib(s.bytes_in),
        mib(s.bytes_out),
        s.bits_per_weight
    ));
    if let (Some(rmse), Some(worst)) = (s.rmse, s.worst_snr_db) {
        out.push_str(&format!(
            "  error     RMSE {rmse:.3e} over all weights, worst tensor SNR {} dB\n",
            snr_text(worst)
        ));
    }
    out.push_str(&format!(
        "  time      {seconds:.2} s, {:.1} M weights/s, {:.1} MiB/s of input\n",
        s.n_elements as f64 / seconds / 1e6,
        mib(s.bytes_in) / seconds
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("3.2GB"), Ok(3_200_000_000));
        assert_eq!(parse_size("800MiB"), Ok(800 << 20));
        assert_eq!(parse_size("2 gib"), Ok(2 << 30));
        assert!(parse_size("3.2 parsecs").is_err());
        assert!(parse_size("GB").is_err());
    }
}
