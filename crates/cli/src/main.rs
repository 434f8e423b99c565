//! The `kiln` command.

fn main() -> std::process::ExitCode {
    kiln_cli::run(std::env::args_os())
}
