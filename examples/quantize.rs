//! A llama-quantize-like command on kiln's model quantizer: `kiln quantize`, run as an example.
//!
//! ```text
//! cargo run --release --example quantize -- [--threads N] [--pure] [--allow-requantize]
//!     [--imatrix FILE] [--leave-output-tensor] [--output-tensor-type T] [--token-embedding-type T]
//!     [--tensor-type REGEX=T]... [--ollama] [--report] [--json] IN.gguf|HF_FOLDER OUT.gguf TYPE
//! ```
//! TYPE is a llama-quantize file type (Q4_K_M, q8_0, COPY, …; case-insensitive). Progress goes to
//! stderr, then a summary (and with `--report`, each tensor's error). OUT is never left
//! half-written.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ["kiln".to_owned(), "quantize".to_owned()]
        .into_iter()
        .chain(std::env::args().skip(1));
    kiln_cli::run(args)
}
