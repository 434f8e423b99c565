//! What a create reports as it runs: one [`Event`] enum, received by any
//! [`Sink`](crate::progress::Sink) of events ([`CreateSink`]), and the one place they become
//! Ollama's status lines (`From<&Event> for ProgressResponse`).

use kiln_api::ProgressResponse;
use kiln_store::Digest;

use crate::quantize::FileType;

/// One step of a create, in the order Ollama streams them.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The `from` model is not local and is being pulled: the registry's own progress lines.
    Pulling(ProgressResponse),
    /// An uploaded GGUF is being read (`parsing GGUF`, once per file).
    ParsingGguf,
    /// A Hugging Face folder is being converted (`converting model`): bytes written of the
    /// converted file's size, both 0 when it starts.
    Converting {
        /// Bytes written.
        written: u64,
        /// The converted file's size.
        total: u64,
    },
    /// The model layer is being quantized.
    Quantizing {
        /// The source's file type, as Ollama names it (`F16`).
        from: String,
        /// The target file type.
        to: FileType,
        /// The target as the request spelled it, upper-cased (`Q4_K` for llama-quantize's alias).
        spelled: String,
        /// Ollama's progress figures: bytes of the layer, estimated from the tensor count.
        completed: i64,
        /// The layer's size.
        total: i64,
    },
    /// An uploaded model is being checked by rewriting it as llama.cpp's COPY does.
    Validating {
        /// As [`Event::Quantizing`]'s.
        completed: i64,
        /// The layer's size.
        total: i64,
    },
    /// The quantized model is being committed (`verifying conversion`).
    VerifyingConversion,
    /// An uploaded LLaVA projector gets its default projector type.
    UpdatingProjector,
    /// A layer of the manifest: written now or already in the store.
    Layer {
        /// Its blob.
        digest: Digest,
        /// Whether this create wrote it.
        created: bool,
    },
    /// A template layer holding the built-in template Ollama recognised in the GGUF's chat
    /// template (its line replaces the layer's).
    DetectedTemplate {
        /// The built-in template's name (`llama3-instruct`, …).
        name: String,
    },
    /// The manifest is being written.
    WritingManifest,
    /// The model is stored.
    Success,
}

/// The digest Ollama sends with its quantization progress.
const QUANTIZE_PROGRESS_DIGEST: &str = "0000000000000000000";

impl From<&Event> for ProgressResponse {
    fn from(event: &Event) -> ProgressResponse {
        let figures = |status: String, digest: &str, completed: i64, total: i64| ProgressResponse {
            status,
            digest: digest.to_owned(),
            total,
            completed,
        };
        match event {
            Event::Pulling(line) => line.clone(),
            Event::ParsingGguf => ProgressResponse::status("parsing GGUF"),
            Event::Converting { written, total } => figures(
                "converting model".into(),
                "",
                *written as i64,
                *total as i64,
            ),
            Event::Quantizing {
                from,
                spelled,
                completed,
                total,
                ..
            } => figures(
                format!("quantizing {from} model to {spelled}"),
                QUANTIZE_PROGRESS_DIGEST,
                *completed,
                *total,
            ),
            Event::Validating { completed, total } => figures(
                "validating GGUF model".into(),
                QUANTIZE_PROGRESS_DIGEST,
                *completed,
                *total,
            ),
            Event::VerifyingConversion => ProgressResponse::status("verifying conversion"),
            Event::UpdatingProjector => {
                ProgressResponse::status("updating GGUF projector metadata")
            }
            Event::Layer { digest, created } => ProgressResponse::status(format!(
                "{} {digest}",
                if *created {
                    "creating new layer"
                } else {
                    "using existing layer"
                }
            )),
            Event::DetectedTemplate { name } => {
                ProgressResponse::status(format!("using autodetected template {name}"))
            }
            Event::WritingManifest => ProgressResponse::status("writing manifest"),
            Event::Success => ProgressResponse::status("success"),
        }
    }
}

impl From<Event> for ProgressResponse {
    fn from(event: Event) -> ProgressResponse {
        ProgressResponse::from(&event)
    }
}

/// A create's [`Sink`](crate::progress::Sink): anything that takes its [`Event`]s (closures
/// `FnMut(&Event) -> ControlFlow<()>`); `ControlFlow::Break` stops the create (it then cleans up
/// and fails with `create cancelled`).
pub trait CreateSink: crate::progress::Sink<Event> {}

impl<T: ?Sized + crate::progress::Sink<Event>> CreateSink for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_ollamas_status_lines() {
        let digest = Digest::parse(&format!("sha256:{}", "0f".repeat(32))).unwrap();
        let line = |e: Event| {
            String::from_utf8(kiln_api::to_ndjson_line(&ProgressResponse::from(e))).unwrap()
        };
        assert_eq!(line(Event::ParsingGguf), "{\"status\":\"parsing GGUF\"}\n");
        assert_eq!(
            line(Event::Converting {
                written: 0,
                total: 0
            }),
            "{\"status\":\"converting model\"}\n"
        );
        assert_eq!(
            line(Event::Quantizing {
                from: "F16".into(),
                to: FileType::Q4_K_M,
                spelled: "Q4_K".into(),
                completed: 5,
                total: 10,
            }),
            "{\"status\":\"quantizing F16 model to Q4_K\",\"digest\":\"0000000000000000000\",\"total\":10,\"completed\":5}\n"
        );
        assert_eq!(
            line(Event::Layer {
                digest,
                created: true
            }),
            format!("{{\"status\":\"creating new layer {digest}\"}}\n")
        );
        assert_eq!(
            line(Event::Layer {
                digest,
                created: false
            }),
            format!("{{\"status\":\"using existing layer {digest}\"}}\n")
        );
        assert_eq!(line(Event::Success), "{\"status\":\"success\"}\n");
    }
}
