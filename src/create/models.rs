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
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ManageError {
    /// The HTTP status Ollama answers with.
    pub fn status(&self) -> u16 {
        match self {
            ManageError::NotFound(_) | ManageError::SourceNotFound(_) => 404,
            ManageError::Store(_) => 500,
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

fn layer_text(store: &Store, manifest: &Manifest, media_type: &str) -> Vec<String> {
    manifest
        .layers_of(media_type)
        .filter_map(|l| l.digest().ok())
        .filter_map(|d| std::fs::read_to_string(store.blob_path(&d)).ok())
        .collect()
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
    let config = read_config(store, manifest);
    let template = layer_text(store, manifest, MEDIA_TYPE_TEMPLATE).concat();
    let system = layer_text(store, manifest, MEDIA_TYPE_SYSTEM).concat();
    let license = layer_text(store, manifest, MEDIA_TYPE_LICENSE).join("\n");
    let params: kiln_api::AnyMap = layer_text(store, manifest, MEDIA_TYPE_PARAMS)
        .first()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
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
    if let Some(digest) = manifest
        .layers_of(MEDIA_TYPE_MODEL)
        .next()
        .and_then(|l| l.digest().ok())
    {
        model_info = gguf_info(store, &digest, request.verbose);
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
fn gguf_info(store: &Store, digest: &Digest, verbose: bool) -> kiln_api::AnyMap {
    let mut info = kiln_api::AnyMap::new();
    // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
    let Ok(file) = (unsafe { GgufFile::map(store.blob_path(digest)) }) else {
        return info;
    };
    let Ok(gguf) = file.parse(&Limits::default()) else {
        return info;
    };
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
    info
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

/// `/api/delete`.
pub fn delete(store: &Store, request: &DeleteRequest) -> Result<(), ManageError> {
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
