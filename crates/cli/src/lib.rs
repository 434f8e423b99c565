#![doc = include_str!("../README.md")]

mod format;
mod health;
mod inspect;
mod interrupt;
mod modelfile;
mod models;
mod progress;
mod quantize;
mod remote;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kiln::create::{CreateError, Engine, ManageError, TransferError};
use kiln_store::{Store, StoreError};

pub use format::{human_bytes, human_duration};

/// Why a command failed. Usage errors are clap's (exit code 2); everything here exits 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The models directory could not be opened or read.
    #[error("models directory: {0}")]
    Store(#[from] StoreError),
    /// list, show, cp or rm failed.
    #[error("{0}")]
    Manage(#[from] ManageError),
    /// create failed.
    #[error("{0}")]
    Create(#[from] CreateError),
    /// pull or push failed.
    #[error("{0}")]
    Transfer(#[from] TransferError),
    /// The server could not start or stopped with an error.
    #[error("{0}")]
    Serve(#[from] kiln_server::ServeError),
    /// A file named on the command line could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file that does not parse.
    #[error("{}: {source}", path.display())]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: kiln_gguf::GgufError,
    },
    /// The server answered with an error, or could not be reached.
    #[error("{0}")]
    Remote(String),
    /// A command that works on the models directory only was given `--host`.
    #[error("kiln {0} works on the models directory, not through a server: drop --host")]
    LocalOnly(&'static str),
    /// The Modelfile does not parse.
    #[error("{}: {source}", path.display())]
    Modelfile {
        /// The Modelfile.
        path: PathBuf,
        /// What is wrong, and on which line.
        #[source]
        source: kiln_modelfile::ParseError,
    },
    /// `-f FILE` names no file.
    #[error("specified Modelfile wasn't found: {}", .0.display())]
    ModelfileNotFound(PathBuf),
    /// The Modelfile's FROM, ADAPTER or DRAFT lines, or its parameters, cannot make a request.
    #[error("{0}")]
    Request(#[from] kiln_modelfile::RequestError),
    /// `--draft-quantize` without a DRAFT line.
    #[error("--draft-quantize requires a DRAFT model")]
    DraftQuantizeWithoutDraft,
    /// An argument that does not name what it should (a tensor type, an imatrix file).
    #[error("{0}")]
    Argument(String),
    /// Quantization failed.
    #[error("{0}")]
    Quantize(#[from] kiln::QuantizeError),
    /// Ctrl-C stopped a create or a quantization; what it had written is removed (exit code 130).
    #[error("interrupted: nothing was written")]
    Interrupted,
    /// The command ran and found problems it has already printed (an unhealthy store, a model
    /// left broken by repair).
    #[error("problems found")]
    Unhealthy,
}

/// `kiln`: Ollama's model-management commands, run directly on the models directory.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    /// Models directory (default: OLLAMA_MODELS, else ~/.ollama/models)
    #[arg(long, global = true, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Progress and results as JSON lines on stdout (Ollama's API shapes), for scripts
    #[arg(long, global = true)]
    json: bool,
    /// Talk to a running server instead of the models directory (default: OLLAMA_HOST, else
    /// 127.0.0.1:11434)
    #[arg(long, global = true, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    host: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a model: from a model in the store or a registry, quantized or not
    Create(CreateArgs),
    /// List models
    #[command(alias = "ls")]
    List {
        /// Only models whose name starts with this (case-insensitive)
        prefix: Option<String>,
    },
    /// Show information for a model
    Show(ShowArgs),
    /// Copy a model
    Cp {
        /// The model to copy
        source: String,
        /// The new name
        destination: String,
    },
    /// Remove models (and the blobs no other model uses)
    Rm {
        /// Models to remove
        #[arg(required = true, value_name = "MODEL")]
        names: Vec<String>,
    },
    /// Pull a model from a registry
    Pull(TransferArgs),
    /// Push a model to a registry
    Push(TransferArgs),
    /// Quantize a GGUF file or a Hugging Face folder (llama-quantize's options), optionally
    /// reporting each tensor's error
    Quantize(quantize::QuantizeArgs),
    /// Print a GGUF file's header, metadata and tensor table
    Inspect {
        /// The GGUF file
        file: PathBuf,
    },
    /// Serve the Ollama model API (create, pull, push, blobs, tags, show, copy, delete)
    #[command(after_help = kiln_server::ENVIRONMENT_HELP)]
    Serve,
    /// Re-hash every blob and check every manifest
    Verify,
    /// Remove unreferenced blobs, abandoned partial downloads and crash leftovers
    Gc {
        /// List what would be removed and the bytes it would free, removing nothing
        #[arg(long)]
        dry_run: bool,
        /// Leave files younger than this many seconds (a running upload elsewhere)
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        grace: u64,
    },
    /// Remove corrupt blobs and fetch missing ones again from each model's registry
    Repair {
        /// Reach registries over plain HTTP
        #[arg(long)]
        insecure: bool,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Name of the new model
    name: String,
    /// The Modelfile (default: ./Modelfile if there is one, else the current folder is the model)
    #[arg(short, long, value_name = "FILE", conflicts_with = "from")]
    file: Option<PathBuf>,
    /// Start from this model or path instead of a Modelfile (a one-line `FROM …`)
    #[arg(long, value_name = "MODEL")]
    from: Option<String>,
    /// Quantize the model to this type (q4_K_M, q8_0, …)
    #[arg(short, long, value_name = "TYPE")]
    quantize: Option<String>,
    /// Quantize the draft model to this type
    #[arg(long, value_name = "TYPE")]
    draft_quantize: Option<String>,
    /// How local files enter the models directory (ignored with --host, which uploads them)
    #[arg(long, value_enum, default_value_t = modelfile::ImportArg::Auto)]
    import: modelfile::ImportArg,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The model
    model: String,
    /// Show the Modelfile
    #[arg(long, group = "part")]
    modelfile: bool,
    /// Show the parameters
    #[arg(long, group = "part")]
    parameters: bool,
    /// Show the template
    #[arg(long, group = "part")]
    template: bool,
    /// Show the system message
    #[arg(long, group = "part")]
    system: bool,
    /// Show the license
    #[arg(long, group = "part")]
    license: bool,
    /// Also the model's metadata and tensors
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, Args)]
struct TransferArgs {
    /// The model
    model: String,
    /// Reach the registry over plain HTTP
    #[arg(long)]
    insecure: bool,
}

/// Runs the `kiln` command with these arguments (the first is the program name) and returns its
/// exit code: 0 on success, 1 when the command failed, 2 for a usage error, 130 when Ctrl-C
/// stopped it.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Unhealthy) => ExitCode::FAILURE,
        Err(e @ CliError::Interrupted) => {
            eprintln!("Error: {e}");
            ExitCode::from(interrupt::INTERRUPTED_EXIT)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes bytes the API encoder made (UTF-8 JSON) to stdout as they are.
pub(crate) fn print_raw(bytes: &[u8]) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(bytes);
}

/// [`print_raw`] and a newline.
pub(crate) fn print_json(bytes: &[u8]) {
    print_raw(bytes);
    print_raw(b"\n");
}

fn open_store(models: Option<PathBuf>) -> Result<Store, CliError> {
    Ok(match models {
        Some(dir) => Store::open(dir)?,
        None => Store::from_env()?,
    })
}

/// The engine a command runs on: the server's environment settings (threads, insecure
/// registries, no-prune) over `store`.
fn engine(store: Store) -> Result<Engine, CliError> {
    let config = kiln_server::Config::from_env()?;
    Ok(config.engine(store))
}

/// Where the model commands run: on the models directory, or through a server.
pub(crate) enum Target {
    /// The models directory, with the engine for creates and transfers.
    Local(Box<Engine>),
    /// A running server.
    Remote(remote::Remote),
}

fn execute(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    // Commands on a file need no models directory (opening one may create it).
    let command = match cli.command {
        Command::Inspect { file } => return inspect::inspect(&file, json),
        Command::Quantize(args) => return quantize::quantize(args, json),
        other => other,
    };
    let target = match &cli.host {
        Some(host) => {
            let host = if host.is_empty() {
                std::env::var("OLLAMA_HOST").unwrap_or_default()
            } else {
                host.clone()
            };
            Target::Remote(remote::Remote::new(&host)?)
        }
        None => Target::Local(Box::new(engine(open_store(cli.models)?)?)),
    };
    let local = |command: &'static str| match &target {
        Target::Local(engine) => Ok(engine.store().clone()),
        Target::Remote(_) => Err(CliError::LocalOnly(command)),
    };
    match command {
        Command::Create(args) => models::create(&target, args, json),
        Command::List { prefix } => models::list(&target, prefix.as_deref(), json),
        Command::Show(args) => models::show(&target, args, json),
        Command::Cp {
            source,
            destination,
        } => models::copy(&target, &source, &destination),
        Command::Rm { names } => models::remove(&target, &names),
        Command::Pull(args) => models::pull(&target, args, json),
        Command::Push(args) => models::push(&target, args, json),
        Command::Inspect { .. } | Command::Quantize(_) => unreachable!("handled above"),
        Command::Serve => serve(local("serve")?),
        Command::Verify => health::verify(&local("verify")?, json),
        Command::Gc { dry_run, grace } => health::gc(
            &local("gc")?,
            dry_run,
            std::time::Duration::from_secs(grace),
            json,
        ),
        Command::Repair { insecure } => health::repair(engine(local("repair")?)?, insecure, json),
    }
}

fn serve(store: Store) -> Result<(), CliError> {
    let config = kiln_server::Config::from_env()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| CliError::Io {
        path: PathBuf::from("(tokio runtime)"),
        source,
    })?;
    runtime.block_on(kiln_server::serve(&config, store))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks of the command definition (names, groups, defaults).
    #[test]
    fn command_line_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
