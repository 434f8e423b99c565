//! Ollama's `/api/pull` and `/api/push` on the engine's store, through [`kiln_registry`]: the
//! request checks Ollama makes before it streams, then the transfer with its status lines.

use std::ops::ControlFlow;

use kiln_api::{ProgressResponse, PullRequest, PushRequest};
use kiln_registry::{PullOptions, PullSummary, PushOptions, PushSummary, RegistryError};
use kiln_store::{Digest, ModelName};

use super::{Engine, Source, parse_model_ref};

/// Why a pull or push was refused or failed: `Display` is Ollama's message,
/// [`HttpStatus::status`](super::HttpStatus::status) its HTTP code.
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

/// What [`Engine::repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    /// Corrupt blobs removed from the store.
    pub removed_corrupt: Vec<Digest>,
    /// Blobs fetched again from their model's registry, verified.
    pub refetched: Vec<(ModelName, Digest)>,
    /// Models still missing blobs, each with why the first missing one could not be fetched.
    pub broken: Vec<(ModelName, Vec<Digest>, String)>,
}

impl Engine {
    /// Store repair: removes corrupt blobs ([`Store::repair`](kiln_store::Store::repair)), then
    /// fetches every blob a model lacks from that model's registry (over plain HTTP for
    /// `insecure`, or a host in the client's `insecure_hosts`). Models whose blobs cannot be
    /// fetched (created locally, or gone from the registry) are reported as broken, never
    /// changed: their manifests stay, so nothing else is lost.
    pub fn repair(&self, insecure: bool) -> Result<Repair, TransferError> {
        let report = self.store().repair().map_err(RegistryError::from)?;
        let mut repair = Repair {
            removed_corrupt: report.removed_corrupt,
            ..Repair::default()
        };
        let client = self.registry_client()?;
        // A blob several models share is fetched from whichever registry has it first; a model
        // is broken only if some blob is still missing once every model has been tried.
        let mut failures: Vec<(ModelName, Digest, String)> = Vec::new();
        for model in &report.broken {
            for &(digest, size) in &model.missing {
                if self.store().has_blob(&digest) {
                    continue;
                }
                match kiln_registry::fetch_blob(
                    client,
                    self.store(),
                    &model.name,
                    &digest,
                    size,
                    insecure,
                ) {
                    Ok(_) => repair.refetched.push((model.name.clone(), digest)),
                    Err(e) => failures.push((model.name.clone(), digest, e.to_string())),
                }
            }
        }
        for model in report.broken {
            let missing: Vec<Digest> = model
                .missing
                .iter()
                .map(|&(d, _)| d)
                .filter(|d| !self.store().has_blob(d))
                .collect();
            if let Some(first) = missing.first() {
                let reason = failures
                    .iter()
                    .find(|(n, d, _)| *n == model.name && d == first)
                    .map_or_else(String::new, |(_, _, r)| r.clone());
                repair.broken.push((model.name, missing, reason));
            }
        }
        Ok(repair)
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
