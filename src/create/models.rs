//! The model-management endpoints around create: list (`/api/tags`), show, copy and delete.

use kiln_api::{
    CopyRequest, DeleteRequest, ListModelResponse, ListResponse, ModelDetails, ShowRequest,
    ShowResponse, Timestamp,
};
use kiln_gguf::{GgufFile, Limits, Value};
use kiln_store::{
    Digest, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE, Manifest, ModelConfig, ModelName, Store, StoreError, StoredManifest,
};

/// Why a list/show/copy/delete failed: `Display` is Ollama's message, `status()` its HTTP code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No model named.
    #[error("model is required")]
    ModelRequired,
    /// A model name Ollama rejects (show).
    #[error("invalid model name")]
    InvalidModelName,
    /// A model name Ollama rejects (delete).
    #[error("name \"{0}\" is invalid")]
    InvalidName(String),
    /// A copy source Ollama rejects.
    #[error("source \"{0}\" is invalid")]
    InvalidSource(String),
    /// A copy destination Ollama rejects.
    #[error("destination \"{0}\" is invalid")]
    InvalidDestination(String),
    /// No such model (show, delete).
    #[error("model '{0}' not found")]
    NotFound(String),
    /// No such copy source.
    #[error("model \"{0}\" not found")]
    SourceNotFound(String),
    /// A blob of the model that cannot be read or parsed: show reports it instead of answering
    /// with empty fields (Ollama answers such models with a 500 too).
    #[error("model '{model}': {what} blob {digest} is unreadable: {reason}")]
    CorruptBlob {
        /// The model.
        model: String,
        /// Which layer (`config`, `template`, `model`, …).
        what: &'static str,
        /// The blob's digest.
        digest: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A blob the manifest names is not in the store: 404, as Ollama answers (so a client may
    /// pull the model again), with the blob named.
    #[error("model '{model}' not found: its {what} blob {digest} is missing")]
    MissingBlob {
        /// The model.
        model: String,
        /// Which layer.
        what: &'static str,
        /// The blob's digest.
        digest: String,
    },
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ManageError {
    /// The HTTP status Ollama answers with.
    pub fn status(&self) -> u16 {
        match self {
            ManageError::NotFound(_)
            | ManageError::SourceNotFound(_)
            | ManageError::MissingBlob { .. } => 404,
            ManageError::Store(_) | ManageError::CorruptBlob { .. } => 500,
            _ => 400,
        }
    }
}

fn read_config(store: &Store, manifest: &Manifest) -> ModelConfig {
    manifest
        .config
        .digest()
        .ok()
        .and_then(|d| std::fs::read(store.blob_path(&d)).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn details(config: &ModelConfig) -> ModelDetails {
    ModelDetails {
        parent_model: String::new(),
        format: config.model_format.clone(),
        family: config.model_family.clone(),
        families: config.model_families.clone(),
        parameter_size: config.model_type.clone(),
        quantization_level: config.file_type.clone(),
        context_length: config.context_length,
        embedding_length: config.embedding_length,
    }
}

/// Reads show's inputs strictly: a blob that is missing, unreadable or malformed is an error
/// naming the model, the layer and the blob, never an empty field.
struct ShowReader<'s> {
    store: &'s Store,
    model: String,
}

impl ShowReader<'_> {
    fn corrupt(&self, what: &'static str, digest: &str, reason: impl ToString) -> ManageError {
        ManageError::CorruptBlob {
            model: self.model.clone(),
            what,
            digest: digest.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn bytes(&self, what: &'static str, layer: &kiln_store::Layer) -> Result<Vec<u8>, ManageError> {
        let digest = layer
            .digest()
            .map_err(|e| self.corrupt(what, &layer.digest, e))?;
        std::fs::read(self.store.blob_path(&digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ManageError::MissingBlob {
                model: self.model.clone(),
                what,
                digest: layer.digest.clone(),
            },
            _ => self.corrupt(what, &layer.digest, e),
        })
    }

    fn texts(
        &self,
        manifest: &Manifest,
        media_type: &str,
        what: &'static str,
    ) -> Result<Vec<String>, ManageError> {
        manifest
            .layers_of(media_type)
            .map(|l| {
                String::from_utf8(self.bytes(what, l)?)
                    .map_err(|_| self.corrupt(what, &l.digest, "not UTF-8 text"))
            })
            .collect()
    }

    fn config(&self, manifest: &Manifest) -> Result<ModelConfig, ManageError> {
        if manifest.config.digest.is_empty() {
            return Ok(ModelConfig::default());
        }
        let bytes = self.bytes("config", &manifest.config)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt("config", &manifest.config.digest, e))
    }
}

/// `/api/tags`: every model, newest first.
pub fn list(store: &Store) -> Result<ListResponse, ManageError> {
    let models = store
        .list()?
        .into_iter()
        .map(|m: StoredManifest| {
            let config = read_config(store, &m.manifest);
            ListModelResponse {
                name: m.name.display_shortest(),
                model: m.name.display_shortest(),
                modified_at: Timestamp::from_system_time(m.modified),
                size: m.manifest.size(),
                digest: m.digest.hex(),
                details: details(&config),
                remote_model: config.remote_model.clone(),
                remote_host: config.remote_host.clone(),
                ..Default::default()
            }
        })
        .collect();
    Ok(ListResponse { models })
}

/// `/api/show`: details, layers' text, and the model file's metadata as `model_info`.
pub fn show(store: &Store, request: &ShowRequest) -> Result<ShowResponse, ManageError> {
    let raw = request.model_name();
    if raw.is_empty() {
        return Err(ManageError::ModelRequired);
    }
    let name = ModelName::parse(raw).map_err(|_| ManageError::InvalidModelName)?;
    let name = store.existing_name(&name)?;
    let stored = store.manifest(&name).map_err(|e| match e {
        StoreError::ModelNotFound { .. } => ManageError::NotFound(name.display_shortest()),
        other => other.into(),
    })?;
    let manifest = &stored.manifest;
    let reader = ShowReader {
        store,
        model: name.display_shortest(),
    };
    let config = reader.config(manifest)?;
    let template = reader
        .texts(manifest, MEDIA_TYPE_TEMPLATE, "template")?
        .concat();
    let system = reader
        .texts(manifest, MEDIA_TYPE_SYSTEM, "system")?
        .concat();
    let license = reader
        .texts(manifest, MEDIA_TYPE_LICENSE, "license")?
        .join("\n");
    let params: kiln_api::AnyMap = match manifest.layers_of(MEDIA_TYPE_PARAMS).next() {
        Some(layer) => serde_json::from_slice(&reader.bytes("params", layer)?)
            .map_err(|e| reader.corrupt("params", &layer.digest, e))?,
        None => kiln_api::AnyMap::new(),
    };
    let parameters = params
        .iter()
        .flat_map(|(k, v)| match v {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| format!("{k:<30} {i}"))
                .collect::<Vec<_>>(),
            other => vec![format!("{k:<30} {other}")],
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut model_info = kiln_api::AnyMap::new();
    let remote = !config.remote_host.is_empty();
    // Config capabilities first (cloud models carry theirs), then what the GGUF gives.
    let mut capabilities: Vec<String> = Vec::new();
    for c in &config.capabilities {
        if !capabilities.contains(c) {
            capabilities.push(c.clone());
        }
    }
    let has_model = manifest.layers_of(MEDIA_TYPE_MODEL).next().is_some();
    if has_model && !capabilities.iter().any(|c| c == "completion") {
        capabilities.push("completion".into());
    }
    if remote && !config.model_family.is_empty() {
        let family = &config.model_family;
        model_info.insert("general.architecture".into(), family.clone().into());
        if !config.base_name.is_empty() {
            model_info.insert("general.basename".into(), config.base_name.clone().into());
        }
        if config.context_length > 0 {
            model_info.insert(
                format!("{family}.context_length"),
                config.context_length.into(),
            );
        }
        if config.embedding_length > 0 {
            model_info.insert(
                format!("{family}.embedding_length"),
                config.embedding_length.into(),
            );
        }
    }
    if let Some(layer) = manifest.layers_of(MEDIA_TYPE_MODEL).next() {
        let digest = layer
            .digest()
            .map_err(|e| reader.corrupt("model", &layer.digest, e))?;
        if !store.has_blob(&digest) {
            return Err(ManageError::MissingBlob {
                model: reader.model.clone(),
                what: "model",
                digest: layer.digest.clone(),
            });
        }
        model_info = gguf_info(store, &digest, request.verbose)
            .map_err(|e| reader.corrupt("model", &layer.digest, e))?;
    }
    let mut modelfile = format!(
        "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {}\n\n",
        name.display_shortest()
    );
    for l in manifest.layers_of(MEDIA_TYPE_MODEL) {
        if let Ok(d) = l.digest() {
            modelfile.push_str(&format!("FROM {}\n", store.blob_path(&d).display()));
        }
    }
    if !template.is_empty() {
        modelfile.push_str(&format!("TEMPLATE \"\"\"{template}\"\"\"\n"));
    }
    if !system.is_empty() {
        modelfile.push_str(&format!("SYSTEM \"\"\"{system}\"\"\"\n"));
    }
    Ok(ShowResponse {
        license,
        modelfile,
        parameters,
        template,
        system,
        renderer: config.renderer.clone(),
        parser: config.parser.clone(),
        details: details(&config),
        model_info,
        capabilities,
        remote_model: config.remote_model.clone(),
        remote_host: config.remote_host.clone(),
        modified_at: Timestamp::from_system_time(stored.modified),
        requires: config.requires.clone(),
        ..Default::default()
    })
}

/// A GGUF's metadata as Ollama's `model_info` (long arrays only when verbose, as `null` otherwise).
fn gguf_info(store: &Store, digest: &Digest, verbose: bool) -> Result<kiln_api::AnyMap, String> {
    let mut info = kiln_api::AnyMap::new();
    // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
    let file = unsafe { GgufFile::map(store.blob_path(digest)) }.map_err(|e| e.to_string())?;
    let gguf = file.parse(&Limits::default()).map_err(|e| e.to_string())?;
    fn json(v: &Value<'_>) -> serde_json::Value {
        match v {
            Value::F32(x) => kiln_api::f32_value(*x),
            Value::F64(x) => serde_json::json!(x),
            Value::Bool(b) => serde_json::json!(b),
            Value::String(s) => serde_json::json!(s),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(|x| json(&x)).collect()),
            other => other
                .as_i64()
                .map(serde_json::Value::from)
                .or_else(|| other.as_u64().map(serde_json::Value::from))
                .unwrap_or_default(),
        }
    }
    for (k, v) in gguf.metadata().iter() {
        let value = match v {
            Value::Array(a) if !verbose && a.len() > 16 => serde_json::Value::Null,
            other => json(other),
        };
        info.insert(k.to_owned(), value);
    }
    let parameters: u64 = gguf.tensors().iter().map(|t| t.n_elements()).sum();
    info.entry("general.parameter_count".to_owned())
        .or_insert(serde_json::json!(parameters));
    Ok(info)
}

/// `/api/copy`.
pub fn copy(store: &Store, request: &CopyRequest) -> Result<(), ManageError> {
    let source = ModelName::parse(&request.source)
        .map_err(|_| ManageError::InvalidSource(request.source.clone()))?;
    let destination = ModelName::parse(&request.destination)
        .map_err(|_| ManageError::InvalidDestination(request.destination.clone()))?;
    let source = store.existing_name(&source)?;
    let destination = store.existing_name(&destination)?;
    if source == destination {
        return Ok(());
    }
    store.copy(&source, &destination).map_err(|e| match e {
        StoreError::ModelNotFound { .. } => ManageError::SourceNotFound(request.source.clone()),
        other => other.into(),
    })
}

/// `/api/delete`; reports the blobs it removed and the bytes they freed.
pub fn delete(store: &Store, request: &DeleteRequest) -> Result<kiln_store::Deleted, ManageError> {
    let raw = request.model_name();
    if raw.is_empty() {
        return Err(ManageError::ModelRequired);
    }
    let name = ModelName::parse(raw).map_err(|_| ManageError::InvalidName(raw.to_owned()))?;
    let name = store.existing_name(&name)?;
    store.delete(&name).map_err(|e| match e {
        StoreError::ModelNotFound { .. } => ManageError::NotFound(raw.to_owned()),
        other => other.into(),
    })
}
