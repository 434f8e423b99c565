//! Store health for an Ollama models directory (`OLLAMA_MODELS`, default `~/.ollama/models`).
//!
//! ```text
//! cargo run --release --example store -- verify
//! cargo run --release --example store -- gc [--dry-run] [--grace SECONDS]
//! cargo run --release --example store -- repair [--insecure]
//! ```
//!
//! These are `kiln verify`, `kiln gc` and `kiln repair` (crates/cli), safe against running
//! creates and pulls.

fn main() -> std::process::ExitCode {
    kiln_cli::run(std::iter::once("kiln".into()).chain(std::env::args_os().skip(1)))
}
