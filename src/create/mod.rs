//! Ollama's `/api/create`, on a [`kiln_store::Store`]: resolve the source (`from` a local model or
//! uploaded `files`), quantize or validate the GGUF through [`crate::quantize`], add the template,
//! system, license, parameters and messages layers and the config blob, then write the manifest —
//! streaming the status lines Ollama streams, with its error messages and HTTP codes.
//!
//! The store only changes by complete blobs first and the manifest last; a failed or cancelled
//! create removes the blobs it added that nothing references, leaving the store as it was.
//!
//! The boundary is typed: a [`CreateJob`] (from [`CreateJob::builder`], or from Ollama's request
//! by [`Engine::prepare`]) runs with [`Engine::run`], which reports [`Event`]s to a
//! [`CreateSink`] and stops at the next chunk of rows once its [`Cancel`](crate::Cancel) token fires. Ollama's
//! status lines are `ProgressResponse::from(&event)`, made in one place; every error's HTTP status
//! is [`HttpStatus::status`], one table.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use kiln::create::{CreateJob, Engine, Event};
//! use kiln::{Cancel, FileType};
//! use kiln_store::{ModelName, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/home/me/.ollama/models")?;
//! let gguf = std::fs::read("model-f16.gguf")?;
//! let digest = store.write_blob(&gguf[..], None)?.digest;
//! let job = CreateJob::builder(ModelName::parse("my-model:q4")?)
//!     .file("model-f16.gguf", digest)
//!     .quantize(FileType::Q4_K_M)
//!     .system("You are concise.")
//!     .build()?;
//! let cancel = Cancel::new(); // clone it into a Ctrl-C handler to stop the job
//! Engine::new(store).run(
//!     job,
//!     &mut |event: &Event| {
//!         if let Event::Quantizing { completed, total, .. } = event {
//!             eprintln!("{completed}/{total}");
//!         }
//!         ControlFlow::Continue(())
//!     },
//!     &cancel,
//! )?;
//! # Ok(())
//! # }
//! ```

mod capabilities;
mod models;
mod remote;
mod safetensors_show;
mod transfer;

#[cfg(test)]
mod ollama_fixtures;
#[cfg(test)]
mod test_support;

mod config;
mod engine;
mod error;
mod event;
mod flow;
mod job;
mod layers;
mod shards;
mod status;
mod step;

pub use engine::Engine;
pub use error::CreateError;
pub use event::{CreateSink, Event};
pub use job::{BlobRef, CreateJob, CreateJobBuilder, JobFiles, ModelSource, Quantize};
pub use models::{ManageError, copy, delete, list, show};
pub use remote::{CLOUD_HOST, Source, parse_model_ref, remote_url};
pub use status::HttpStatus;
pub use transfer::{Repair, Transfer, TransferError};

use std::ops::ControlFlow;

use kiln_store::Layer;

/// Ollama's media type for a draft (speculative decoding) model layer.
pub const MEDIA_TYPE_DRAFT: &str = "application/vnd.ollama.image.draft";

/// A layer on its way into the manifest, with the status line Ollama streams for it.
struct Pending {
    layer: Layer,
    /// Whether its line says `creating new layer` (else `using existing layer`).
    new: bool,
    /// The built-in template Ollama detected in the GGUF, which this layer holds (its line
    /// names it instead).
    detected_template: Option<String>,
}

impl Pending {
    /// A layer already in the store, reported as `using existing layer`.
    fn existing(layer: Layer) -> Pending {
        Pending::stored(layer, false)
    }

    /// A layer this create stored (`new` when its blob was written now).
    fn stored(layer: Layer, new: bool) -> Pending {
        Pending {
            layer,
            new,
            detected_template: None,
        }
    }

    /// Its line in the stream.
    fn event(&self) -> Result<Event, CreateError> {
        if let Some(name) = &self.detected_template {
            return Ok(Event::DetectedTemplate { name: name.clone() });
        }
        Ok(Event::Layer {
            digest: self
                .layer
                .digest()
                .map_err(|_| CreateError::InvalidDigest)?,
            created: self.new,
        })
    }
}

fn emit(sink: &mut dyn CreateSink, event: Event) -> Result<(), CreateError> {
    match sink.event(&event) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(CreateError::Cancelled),
    }
}

#[cfg(test)]
mod engine_tests;
