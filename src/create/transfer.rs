//! Ollama's `/api/pull` and `/api/push` on the engine's store, through [`kiln_registry`]: the
//! request checks Ollama makes before it streams, then the transfer with its status lines.

use std::ops::ControlFlow;

use kiln_api::{ProgressResponse, PullRequest, PushRequest};
use kiln_registry::{PullOptions, PullSummary, PushOptions, PushSummary, RegistryError};
use kiln_store::ModelName;

use super::{Engine, Source, parse_model_ref};

/// Why a pull or push was refused or failed: `Display` is Ollama's message,
/// [`TransferError::status`] its HTTP code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The name to pull is not a valid model name (checked before streaming).
    #[error("invalid model name")]
    InvalidModelName,
    /// A push without a model name (checked before streaming).
    #[error("model is required")]
    ModelRequired,
    /// The registry transfer failed (streamed, as Ollama streams it).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl TransferError {
    /// The HTTP status Ollama answers with when this error comes before any progress line.
    pub fn status(&self) -> u16 {
        match self {
            TransferError::InvalidModelName | TransferError::ModelRequired => 400,
            TransferError::Registry(e) => e.status(),
        }
    }
}

/// A checked pull or push, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    name: ModelName,
    insecure: bool,
}

impl Transfer {
    /// The model, spelled as an existing local model spells it.
    pub fn name(&self) -> &ModelName {
        &self.name
    }
}

/// Ollama's pull name: `:cloud` and `-cloud` sources become the legacy tag suffixes its cloud
/// stubs are stored under (`model:cloud`, `model:7b-cloud`).
fn pull_name(raw: &str) -> Option<ModelName> {
    let (base, source) = parse_model_ref(raw)?;
    let name = if source == Source::Cloud {
        // Go's HasExplicitTag: a colon after the last slash (a host's port does not count).
        let explicit_tag = base
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        if explicit_tag {
            format!("{base}-cloud")
        } else {
            format!("{base}:cloud")
        }
    } else {
        base
    };
    ModelName::parse(&name).ok()
}

impl Engine {
    /// The checks Ollama's pull handler makes before it streams.
    pub fn prepare_pull(&self, request: &PullRequest) -> Result<Transfer, TransferError> {
        let name = pull_name(request.model_name()).ok_or(TransferError::InvalidModelName)?;
        let name = self
            .store()
            .existing_name(&name)
            .map_err(RegistryError::from)?;
        Ok(Transfer {
            name,
            insecure: request.insecure,
        })
    }

    /// The checks Ollama's push handler makes before it streams.
    pub fn prepare_push(&self, request: &PushRequest) -> Result<Transfer, TransferError> {
        let raw = request.model_name();
        if raw.is_empty() {
            return Err(TransferError::ModelRequired);
        }
        let name = ModelName::parse(raw).map_err(|_| TransferError::InvalidModelName)?;
        let name = self
            .store()
            .existing_name(&name)
            .map_err(RegistryError::from)?;
        Ok(Transfer {
            name,
            insecure: request.insecure,
        })
    }

    /// Pulls a checked model into the store, streaming Ollama's lines (ending with `success`)
    /// into `sink`; `ControlFlow::Break` cancels, keeping finished parts for a later resume.
    pub fn pull(
        &self,
        transfer: &Transfer,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    ) -> Result<PullSummary, TransferError> {
        let options = PullOptions {
            insecure: transfer.insecure,
            no_prune: self.no_prune,
        };
        let client = self.registry_client()?;
        Ok(kiln_registry::pull(
            client,
            self.store(),
            &transfer.name,
            &options,
            sink,
        )?)
    }

    /// Pushes a checked model to its registry, streaming Ollama's lines into `sink`.
    pub fn push(
        &self,
        transfer: &Transfer,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    ) -> Result<PushSummary, TransferError> {
        let options = PushOptions {
            insecure: transfer.insecure,
        };
        let client = self.registry_client()?;
        Ok(kiln_registry::push(
            client,
            self.store(),
            &transfer.name,
            &options,
            sink,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_sources_become_ollamas_legacy_tags() {
        let shown = |raw: &str| pull_name(raw).map(|n| n.display_shortest());
        assert_eq!(shown("gpt-oss:cloud").as_deref(), Some("gpt-oss:cloud"));
        assert_eq!(
            shown("gpt-oss:20b:cloud").as_deref(),
            Some("gpt-oss:20b-cloud")
        );
        assert_eq!(
            shown("gpt-oss:20b-cloud").as_deref(),
            Some("gpt-oss:20b-cloud")
        );
        assert_eq!(
            shown("example.com:5000/team/m:cloud").as_deref(),
            Some("example.com:5000/team/m:cloud")
        );
        assert_eq!(shown("llama3").as_deref(), Some("llama3:latest"));
        assert_eq!(shown(""), None);
        assert_eq!(shown("a:cloud:local"), None);
        assert_eq!(shown("bad name!"), None);
    }
}
