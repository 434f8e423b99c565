//! A llama-quantize-like command on kiln's model quantizer.
//!
//! ```text
//! cargo run --release --example quantize -- [--threads N] [--pure] [--allow-requantize]
//!     [--imatrix FILE] [--leave-output-tensor] [--output-tensor-type T] [--token-embedding-type T]
//!     [--tensor-type REGEX=T]... [--ollama] IN.gguf OUT.gguf TYPE
//! ```
//! TYPE is a llama-quantize file type (Q4_K_M, q8_0, COPY, …; case-insensitive). Progress goes to
//! stderr, then a summary. Errors are one line and a non-zero exit; OUT is never left half-written.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kiln::{FileType, Imatrix, QuantizeEvent, QuantizeOptions, quantize_model};
use kiln_gguf::GgmlType;

fn parse_type(s: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(&s.to_ascii_lowercase())
        .or_else(|| GgmlType::from_name(&s.to_ascii_lowercase().replace("_k", "_K")))
        .ok_or_else(|| format!("unknown tensor type {s:?}"))
}

struct Args {
    options: QuantizeOptions,
    input: PathBuf,
    output: PathBuf,
    ftype: FileType,
}

fn parse_args() -> Result<Args, String> {
    let mut options = QuantizeOptions::default();
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--threads" => {
                options.threads = value("--threads")?
                    .parse()
                    .map_err(|_| "--threads needs a number")?
            }
            "--pure" => options.pure = true,
            "--allow-requantize" => options.allow_requantize = true,
            "--leave-output-tensor" => options.leave_output_tensor = true,
            "--ollama" => options.ollama_overrides = true,
            "--imatrix" => {
                let path = value(&a)?;
                let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
                let imatrix = Imatrix::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
                options.extra_metadata = imatrix.provenance(&path);
                options.imatrix = Some(imatrix.data);
            }
            "--output-tensor-type" => options.output_tensor_type = Some(parse_type(&value(&a)?)?),
            "--token-embedding-type" => {
                options.token_embedding_type = Some(parse_type(&value(&a)?)?)
            }
            "--tensor-type" => {
                let v = value(&a)?;
                let (re, ty) = v.split_once('=').ok_or("--tensor-type needs REGEX=TYPE")?;
                options.tensor_types.push((re.to_owned(), parse_type(ty)?));
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let [input, output, ty] =
        <[String; 3]>::try_from(positional).map_err(|_| "expected IN.gguf OUT.gguf TYPE")?;
    let ftype = ty.parse::<FileType>().map_err(|e| e.to_string())?;
    Ok(Args {
        options,
        input: input.into(),
        output: output.into(),
        ftype,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!(
                "usage: quantize [--threads N] [--pure] [--allow-requantize] [--leave-output-tensor] [--imatrix FILE] \
                 [--output-tensor-type T] [--token-embedding-type T] [--tensor-type REGEX=T]... [--ollama] \
                 IN.gguf|HF_FOLDER OUT.gguf TYPE\n\
                 A Hugging Face folder (safetensors, config.json, tokenizer files) is converted as Ollama \
                 converts it while it is quantized (no F16 file is written).\ntypes: {}",
                FileType::supported_names()
            );
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let mut last_percent = u64::MAX;
    let mut sink = |e: &QuantizeEvent<'_>| {
        if let QuantizeEvent::Bytes { done, total } = *e {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            if percent != last_percent {
                last_percent = percent;
                eprint!("\rquantizing: {percent:3}%");
            }
        }
        ControlFlow::Continue(())
    };
    // A model folder is converted as it is quantized: no converted file is written.
    let result = quantize_model(
        &args.input,
        &args.output,
        args.ftype,
        &args.options,
        &mut sink,
    );
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("\nerror: {e}");
            return ExitCode::FAILURE;
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    eprintln!();
    let mut per_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let (mut bytes_in, mut bytes_out, mut elements) = (0u64, 0u64, 0u64);
    for t in &report.tensors {
        let entry = per_type.entry(t.to.to_string()).or_default();
        entry.0 += 1;
        entry.1 += t.n_elements;
        bytes_in += t.bytes_in;
        bytes_out += t.bytes_out;
        elements += t.n_elements;
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let bpw = |b: u64| {
        if elements == 0 {
            0.0
        } else {
            b as f64 * 8.0 / elements as f64
        }
    };
    println!(
        "{} -> {} ({})",
        args.input.display(),
        args.output.display(),
        args.ftype.description()
    );
    for (ty, (count, n)) in &per_type {
        println!("  {ty:<8} {count:>5} tensors {n:>14} weights");
    }
    println!(
        "  size      {:.2} MiB ({:.2} bpw) -> {:.2} MiB ({:.2} bpw)",
        mib(bytes_in),
        bpw(bytes_in),
        mib(bytes_out),
        bpw(bytes_out)
    );
    println!(
        "  time      {seconds:.2} s, {:.1} M weights/s, {:.1} MiB/s of input",
        elements as f64 / seconds / 1e6,
        mib(bytes_in) / seconds
    );
    ExitCode::SUCCESS
}
