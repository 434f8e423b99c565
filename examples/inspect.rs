//! Prints a GGUF file's header, metadata and tensor table.
//!
//! `cargo run --release --example inspect -- FILE.gguf [--json]`
//!
//! This is `kiln inspect` (crates/cli). A malformed file prints the parser's error and exits
//! with status 1.

fn main() -> std::process::ExitCode {
    kiln_cli::run(
        ["kiln".into(), "inspect".into()]
            .into_iter()
            .chain(std::env::args_os().skip(1)),
    )
}
