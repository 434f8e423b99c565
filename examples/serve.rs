//! kiln's reference server: the Ollama model-management API over a models directory.
//!
//! `cargo run --release --example serve [-- --help]`
//!
//! All of it is `kiln_server`: this is its environment-configured entry point.

use kiln_server::{Config, ENVIRONMENT_HELP, serve};
use kiln_store::Store;

const HELP: &str = "kiln serve: the Ollama model-management API (create, pull, push, blobs, tags, show, copy, delete, ps, version)\n";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}\n{ENVIRONMENT_HELP}");
        return std::process::ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let store = match Store::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: models directory: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match serve(&config, store).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
