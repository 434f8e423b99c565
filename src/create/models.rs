//! The model-management endpoints around create: list (`/api/tags`), show, copy and delete.

use super::capabilities::{
    ListGguf, ModelGguf, ProjectorGguf, ShowModel, list_capabilities, scan_list_gguf,
};
use super::config::file_type_name;
use super::safetensors_show;
use crate::template::GoTemplate;
use kiln_api::{
    CopyRequest, DeleteRequest, ListModelResponse, ListResponse, ModelDetails, ShowRequest,
    ShowResponse, Timestamp,
};
use kiln_gguf::{GgufFile, Limits, Value};
use kiln_go::fmt::{format_sharp_v, format_v};
use kiln_store::{
    Digest, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_JSON, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_TENSOR, Manifest, ModelConfig, ModelName,
    Store, StoreError, StoredManifest,
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

    /// Opens a blob to read part of it.
    fn open(
        &self,
        what: &'static str,
        layer: &kiln_store::Layer,
    ) -> Result<std::fs::File, ManageError> {
        let digest = layer
            .digest()
            .map_err(|e| self.corrupt(what, &layer.digest, e))?;
        std::fs::File::open(self.store.blob_path(&digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ManageError::MissingBlob {
                model: self.model.clone(),
                what,
                digest: layer.digest.clone(),
            },
            _ => self.corrupt(what, &layer.digest, e),
        })
    }

    /// A safetensors model's `config.json` (Ollama's `ReadConfigJSON`: the first JSON layer of
    /// that name); `None` when the manifest has none.
    fn hf_config(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<safetensors_show::HfConfig>, ManageError> {
        let Some(layer) = manifest
            .layers_of(MEDIA_TYPE_JSON)
            .find(|l| l.name == "config.json")
        else {
            return Ok(None);
        };
        let bytes = self.bytes("config.json", layer)?;
        safetensors_show::HfConfig::parse(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt("config.json", &layer.digest, e))
    }

    /// The tensor layers' headers, read once (into `cache`) and only when asked for.
    fn tensor_headers<'m, 'c>(
        &self,
        manifest: &'m Manifest,
        cache: &'c mut Option<TensorHeaders<'m>>,
    ) -> Result<&'c TensorHeaders<'m>, ManageError> {
        if cache.is_none() {
            let headers = manifest
                .layers_of(MEDIA_TYPE_TENSOR)
                .map(|layer| {
                    let blob = self.open("tensor", layer)?;
                    let header = safetensors_show::parse_header(blob)
                        .map_err(|e| self.corrupt("tensor", &layer.digest, e))?;
                    Ok((layer, header))
                })
                .collect::<Result<_, ManageError>>()?;
            *cache = Some(headers);
        }
        Ok(cache.get_or_insert_with(Vec::new))
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

/// `/api/tags`: every model, newest first, as Ollama's model list summarises each
/// (server/model_list_cache.go): details from the config, filled in from a quick scan of the
/// model GGUF (context and embedding lengths, the file type when the config has none), and
/// capabilities; the last template layer, under either of its names (model_list_cache.go:451),
/// is the template. A safetensors model has no model GGUF: its details are its config's, its
/// capabilities its config's and its template's, less what Ollama's MLX runner cannot serve
/// (model_list_cache.go:399). A model whose config or template blob cannot be read is left out,
/// as Ollama leaves it out.
pub fn list(store: &Store) -> Result<ListResponse, ManageError> {
    let models = store
        .list()?
        .into_iter()
        .filter_map(|m: StoredManifest| list_entry(store, &m))
        .collect();
    Ok(ListResponse { models })
}

/// Ollama's `buildModelListSummary`; `None` where it fails.
fn list_entry(store: &Store, m: &StoredManifest) -> Option<ListModelResponse> {
    let config: ModelConfig = if m.manifest.config.digest.is_empty() {
        ModelConfig::default()
    } else {
        let digest = m.manifest.config.digest().ok()?;
        serde_json::from_slice(&std::fs::read(store.blob_path(&digest)).ok()?).ok()?
    };
    let mut details = details(&config);
    let mut model_layer = None;
    let mut projectors = 0;
    let mut template = None;
    for layer in &m.manifest.layers {
        match layer.media_type.as_str() {
            MEDIA_TYPE_MODEL => {
                model_layer = Some(layer.digest().ok()?);
                details.parent_model = layer.from.clone();
            }
            MEDIA_TYPE_PROJECTOR => projectors += 1,
            media_type if is_template_layer(media_type) => {
                let bytes = std::fs::read(store.blob_path(&layer.digest().ok()?)).ok()?;
                template = Some(GoTemplate::parse(&String::from_utf8_lossy(&bytes)).ok()?);
            }
            _ => {}
        }
    }
    let template = match template {
        Some(t) => t,
        None => default_template(),
    };
    let remote = !config.remote_host.is_empty() || !config.remote_model.is_empty();
    let scan = model_layer
        .filter(|_| !remote)
        .and_then(|digest| list_scan(store, &digest));
    if let Some(scan) = &scan {
        if details.context_length == 0 {
            details.context_length = scan.context_length;
        }
        if details.embedding_length == 0 {
            details.embedding_length = scan.embedding_length;
        }
        if let Some(name) = &scan.file_type
            && is_unknown_quantization(&details.quantization_level)
            && !is_unknown_quantization(name)
        {
            details.quantization_level = name.clone();
        }
    }
    Some(ListModelResponse {
        name: m.name.display_shortest(),
        model: m.name.display_shortest(),
        modified_at: Timestamp::from_system_time(m.modified),
        size: m.manifest.size(),
        digest: m.digest.hex(),
        capabilities: list_capabilities(&config, scan.as_ref(), &template, projectors),
        details,
        remote_model: config.remote_model.clone(),
        remote_host: config.remote_host.clone(),
    })
}

/// The `/api/tags` header scan of a model blob; `None` when it is not a GGUF kiln can read or
/// Ollama's scan would fail on it.
fn list_scan(store: &Store, digest: &Digest) -> Option<ListGguf> {
    // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
    let file = unsafe { GgufFile::map(store.blob_path(digest)) }.ok()?;
    let gguf = file.parse(&Limits::default()).ok()?;
    scan_list_gguf(gguf.metadata().iter(), |n| file_type_name(Some(n))).ok()
}

/// Ollama's `isUnknownQuantization`.
fn is_unknown_quantization(name: &str) -> bool {
    name.is_empty() || name == "unknown"
}

/// Whether a layer is a template: `application/vnd.ollama.image.template`, or its legacy name
/// `application/vnd.ollama.image.prompt`, which Ollama reads the same way (server/images.go:741,
/// server/model_list_cache.go:451).
fn is_template_layer(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_TEMPLATE || media_type == MEDIA_TYPE_PROMPT
}

/// `/api/show`, as Ollama's `GetModelInfo` (server/routes.go:1396) answers it: details, the
/// layers' text, capabilities, and then the model's metadata by its kind — a remote model's from
/// its config; a safetensors LLM's from its `config.json` and tensor headers (routes.go:1429,
/// 1540); an image generation model's only its tensors (routes.go:1554); otherwise the model
/// GGUF's metadata and tensors and the first projector's metadata (routes.go:1567).
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
    // server/images.go: `IsMLX` and `isGGUF`. Only a GGUF-format model's model layer is opened
    // for its chat template and capabilities.
    let safetensors = config.model_format == "safetensors";
    let gguf_format = config.model_format.is_empty() || config.model_format == "gguf";
    // GetModel reads and parses every template layer, under either name; the last one is the
    // model's template (a template Ollama cannot parse fails the request).
    let mut go_template = None;
    for layer in manifest
        .layers
        .iter()
        .filter(|l| is_template_layer(&l.media_type))
    {
        let what = if layer.media_type == MEDIA_TYPE_PROMPT {
            "prompt"
        } else {
            "template"
        };
        let text = String::from_utf8(reader.bytes(what, layer)?)
            .map_err(|_| reader.corrupt(what, &layer.digest, "not UTF-8 text"))?;
        go_template =
            Some(GoTemplate::parse(&text).map_err(|e| reader.corrupt(what, &layer.digest, e))?);
    }
    let default_template = default_template();
    let template = go_template.as_ref().unwrap_or(&default_template);
    // Every system layer is read (a bad one is an error) and the last one wins, as in Ollama's
    // GetModel (server/images.go: each layer assigns m.System).
    let system = reader
        .texts(manifest, MEDIA_TYPE_SYSTEM, "system")?
        .pop()
        .unwrap_or_default();
    let licenses = reader.texts(manifest, MEDIA_TYPE_LICENSE, "license")?;
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
                .map(|i| format!("{k:<30} {}", format_sharp_v(i)))
                .collect::<Vec<_>>(),
            other => vec![format!("{k:<30} {}", format_sharp_v(other))],
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut model_info = kiln_api::AnyMap::new();
    let remote = !config.remote_host.is_empty();
    let mut details = details(&config);
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
    let blob_digest = |what: &'static str, layer: &kiln_store::Layer| {
        let digest = layer
            .digest()
            .map_err(|e| reader.corrupt(what, &layer.digest, e))?;
        if !store.has_blob(&digest) {
            return Err(ManageError::MissingBlob {
                model: reader.model.clone(),
                what,
                digest: layer.digest.clone(),
            });
        }
        Ok(digest)
    };
    let read_model = |layer: &kiln_store::Layer| {
        let digest = blob_digest("model", layer)?;
        gguf_info(store, &digest, request.verbose)
            .map_err(|e| reader.corrupt("model", &layer.digest, e))
    };
    // GetModel keeps the last model layer as the model (and its `from` as the parent model).
    let model_layer = manifest.layers_of(MEDIA_TYPE_MODEL).last();
    if let Some(layer) = model_layer {
        details.parent_model = layer.from.clone();
    }
    let mut model_gguf = match model_layer {
        Some(layer) if gguf_format => Some(read_model(layer)?),
        _ => None,
    };
    let mut projector_ggufs = Vec::new();
    let mut projector_info = kiln_api::AnyMap::new();
    let projectors: Vec<&kiln_store::Layer> = manifest.layers_of(MEDIA_TYPE_PROJECTOR).collect();
    for (i, layer) in projectors.iter().enumerate() {
        let digest = blob_digest("projector", layer)?;
        let gguf = gguf_info(store, &digest, request.verbose)
            .map_err(|e| reader.corrupt("projector", &layer.digest, e))?;
        projector_ggufs.push(ProjectorGguf {
            has_audio_encoder: gguf.has_audio_encoder,
            vision_projector_type: gguf.vision_projector_type.clone(),
        });
        if i == 0 {
            // The first projector's metadata, as it is stored (nothing removed).
            projector_info = gguf.info;
            if let Some(chat) = gguf.chat_template {
                projector_info.insert("tokenizer.chat_template".into(), chat.into());
            }
            if let Some(name) = gguf.name {
                projector_info.insert("general.name".into(), name.into());
            }
        }
    }
    let view = ShowModel {
        config: &config,
        go_template: go_template.as_ref(),
        template,
        model: model_gguf.as_ref().map(|g| ModelGguf {
            arch: &g.arch,
            chat_template: g.chat_template.as_deref().unwrap_or_default(),
            arch_keys: &g.arch_keys,
        }),
        projectors: &projector_ggufs,
    };
    let capabilities = view.capabilities();
    let template_shown = view.template_shown();
    // A safetensors LLM: details and model_info from config.json and the tensor headers.
    let safetensors_llm = safetensors && config.capabilities.iter().any(|c| c == "completion");
    let mut tensor_headers = None;
    let mut safetensors_info = None;
    if safetensors_llm {
        if let Some(hf) = reader.hf_config(manifest)? {
            let info = safetensors_llm_info(&reader, manifest, &hf, &mut tensor_headers)?;
            if let Some(arch) = info.get("general.architecture").and_then(|v| v.as_str())
                && !arch.is_empty()
            {
                details.family = arch.to_owned();
            }
            if let Some(n) = info.get("general.parameter_count").and_then(|v| v.as_i64())
                && n > 0
            {
                details.parameter_size = kiln_go::format::human_number(n as u64);
            }
            safetensors_info = Some((info, hf));
        }
        // "Older manifests may not have file_type populated for safetensors models."
        if details.quantization_level.is_empty() {
            let headers = reader.tensor_headers(manifest, &mut tensor_headers)?;
            let quant = safetensors_show::lowest_precision_quant(
                headers.iter().flat_map(|(_, h)| h.iter()),
            );
            details.quantization_level = match (quant, &safetensors_info) {
                (Some(quant), _) => quant,
                (None, Some((_, hf))) => hf.torch_dtype.clone(),
                (None, None) => String::new(),
            };
        }
    }
    let messages: Vec<kiln_api::Message> = match manifest.layers_of(MEDIA_TYPE_MESSAGES).next() {
        Some(layer) => serde_json::from_slice(&reader.bytes("messages", layer)?)
            .map_err(|e| reader.corrupt("messages", &layer.digest, e))?,
        None => Vec::new(),
    };
    let modelfile = show_modelfile(ModelfileParts {
        store,
        manifest,
        name: &name,
        template: template.as_str(),
        system: &system,
        config: &config,
        params: &params,
        licenses: &licenses,
        messages: &messages,
        safetensors,
    });
    let mut response = ShowResponse {
        license: licenses.join("\n"),
        modelfile,
        parameters,
        template: template.as_str().to_owned(),
        system,
        messages,
        tensors: Vec::new(),
        projector_info: kiln_api::AnyMap::new(),
        renderer: config.renderer.clone(),
        parser: config.parser.clone(),
        details,
        model_info,
        capabilities,
        remote_model: config.remote_model.clone(),
        remote_host: config.remote_host.clone(),
        modified_at: Timestamp::from_system_time(stored.modified),
        requires: config.requires.clone(),
    };
    // A remote model: nothing more to read.
    if remote && !config.remote_model.is_empty() {
        return Ok(response);
    }
    if safetensors_llm {
        if let Some((info, _)) = safetensors_info {
            response.model_info = info;
        }
        if request.verbose {
            response.tensors = safetensors_tensors(&reader, manifest, &mut tensor_headers)?;
        }
        return Ok(response);
    }
    // "Image generation models are stored as safetensors tensor layers with no GGUF model
    // layer to introspect."
    if response.capabilities.iter().any(|c| c == "image") {
        if request.verbose {
            response.tensors = safetensors_tensors(&reader, manifest, &mut tensor_headers)?;
        }
        return Ok(response);
    }
    // Everything else is answered from the model GGUF, which must be there (Ollama: "model
    // '…' not found" when the manifest has no model layer).
    let gguf = match (model_gguf.take(), model_layer) {
        (Some(gguf), _) => gguf,
        (None, Some(layer)) => read_model(layer)?,
        (None, None) => return Err(ManageError::NotFound(name.display_shortest())),
    };
    response.template = template_shown;
    if is_unknown_quantization(&response.details.quantization_level) {
        let name = file_type_name(gguf.file_type);
        if !is_unknown_quantization(&name) {
            response.details.quantization_level = name;
        }
    }
    response.model_info = gguf.info;
    response.tensors = gguf.tensors;
    response.projector_info = projector_info;
    Ok(response)
}

/// x/server/show.go `GetSafetensorsLLMInfo`: `model_info` estimated from `config.json` and the
/// tensor layers' sizes, with the parameter count taken from the tensor headers when it can be.
fn safetensors_llm_info<'m>(
    reader: &ShowReader<'_>,
    manifest: &'m Manifest,
    hf: &safetensors_show::HfConfig,
    headers: &mut Option<TensorHeaders<'m>>,
) -> Result<kiln_api::AnyMap, ManageError> {
    let tensor_layers = manifest.layers_of(MEDIA_TYPE_TENSOR);
    let (bytes, count) = tensor_layers.fold((0i64, 0i64), |(bytes, count), l| {
        (bytes.wrapping_add(l.size), count + 1)
    });
    let mut info = hf.model_info(bytes, count);
    let tensors = safetensors_tensors(reader, manifest, headers)?;
    if let Some(n) = safetensors_show::parameter_count(&tensors)
        && n > 0
    {
        info.insert("general.parameter_count".into(), n.into());
    }
    Ok(info)
}

/// x/server/show.go `GetSafetensorsTensorInfo`.
fn safetensors_tensors<'m>(
    reader: &ShowReader<'_>,
    manifest: &'m Manifest,
    headers: &mut Option<TensorHeaders<'m>>,
) -> Result<Vec<kiln_api::Tensor>, ManageError> {
    let headers = reader.tensor_headers(manifest, headers)?;
    Ok(safetensors_show::tensor_list(
        headers.iter().map(|(l, h)| (l.name.as_str(), h.as_slice())),
    ))
}

/// Every tensor layer with its blob's parsed header, in manifest order.
type TensorHeaders<'m> = Vec<(&'m kiln_store::Layer, Vec<safetensors_show::HeaderTensor>)>;

/// The template a model without a template layer is shown (and run) with: Ollama's
/// `template.DefaultTemplate`.
pub const DEFAULT_TEMPLATE: &str = "{{ .Prompt }}";

/// [`DEFAULT_TEMPLATE`], parsed.
fn default_template() -> GoTemplate {
    GoTemplate::parse(DEFAULT_TEMPLATE).expect("the default template parses")
}

struct ModelfileParts<'a> {
    store: &'a Store,
    manifest: &'a Manifest,
    name: &'a ModelName,
    template: &'a str,
    system: &'a str,
    config: &'a ModelConfig,
    params: &'a kiln_api::AnyMap,
    licenses: &'a [String],
    messages: &'a [kiln_api::Message],
    /// A safetensors model: Ollama's `IsMLX` header (server/routes.go:1523).
    safetensors: bool,
}

/// `show`'s `modelfile`: the header, then Ollama's `Model.String()` — FROM the model blob, ADAPTER
/// and DRAFT blobs, FROM each projector, TEMPLATE (the default one when the model has none),
/// SYSTEM, RENDERER, PARSER, one PARAMETER per value (list elements one each; Go's map order is
/// random, kiln's is by name), LICENSE and MESSAGE lines, quoted as Ollama's formatter quotes.
fn show_modelfile(parts: ModelfileParts<'_>) -> String {
    use kiln_modelfile::{Command, Modelfile};
    let ModelfileParts {
        store,
        manifest,
        name,
        template,
        system,
        config,
        params,
        licenses,
        messages,
        safetensors,
    } = parts;
    let blob_paths = |media_type: &str| -> Vec<String> {
        manifest
            .layers_of(media_type)
            .filter_map(|l| l.digest().ok())
            .map(|d| store.blob_path(&d).display().to_string())
            .collect()
    };
    let mut commands = Vec::new();
    // GetModel keeps the last model layer as the model and the last draft layer as the draft.
    let model = blob_paths(MEDIA_TYPE_MODEL).pop().unwrap_or_default();
    commands.push(Command::new("model", model));
    for adapter in blob_paths(MEDIA_TYPE_ADAPTER) {
        commands.push(Command::new("adapter", adapter));
    }
    if let Some(draft) = blob_paths(crate::create::MEDIA_TYPE_DRAFT).pop() {
        commands.push(Command::new("draft", draft));
    }
    for projector in blob_paths(MEDIA_TYPE_PROJECTOR) {
        commands.push(Command::new("model", projector));
    }
    commands.push(Command::new("template", template));
    for (key, value) in [
        ("system", system),
        ("renderer", config.renderer.as_str()),
        ("parser", config.parser.as_str()),
    ] {
        if !value.is_empty() {
            commands.push(Command::new(key, value));
        }
    }
    for (key, value) in params {
        match value {
            serde_json::Value::Array(items) => {
                for item in items {
                    commands.push(Command::new(key, format_v(item)));
                }
            }
            other => commands.push(Command::new(key, format_v(other))),
        }
    }
    for license in licenses {
        commands.push(Command::new("license", license));
    }
    for m in messages {
        commands.push(Command::new(
            "message",
            format!("{}: {}", m.role, m.content),
        ));
    }
    let body = Modelfile { commands }.to_string();
    let short = name.display_shortest();
    if safetensors {
        // A safetensors model is recreated from its name: its FROM line (the empty model path)
        // is replaced by one naming the model, with no hint above it.
        let rest = body.split_once('\n').map_or("", |(_, rest)| rest);
        format!("# Modelfile generated by \"ollama show\"\nFROM {short}\n{rest}")
    } else {
        format!(
            "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {short}\n\n{body}"
        )
    }
}

/// What `show` reads from a GGUF blob.
struct GgufShow {
    /// `model_info`: the metadata without `general.name` and `tokenizer.chat_template` (Ollama
    /// deletes both), arrays as Ollama decodes them for show.
    info: kiln_api::AnyMap,
    /// The removed `general.name`.
    name: Option<String>,
    /// The removed `tokenizer.chat_template`.
    chat_template: Option<String>,
    /// `general.architecture`.
    arch: String,
    /// `general.file_type`.
    file_type: Option<u32>,
    /// The keys under `{general.architecture}.`, without that prefix (Ollama's `KeyValue` lookups).
    arch_keys: Vec<String>,
    /// Whether some `has_audio_encoder` key is true (a projector with an audio encoder).
    has_audio_encoder: bool,
    /// `{arch}.vision.projector_type` as a string, for a projector.
    vision_projector_type: Option<String>,
    /// Every tensor: name, Ollama's type name (ggml's, upper-cased) and dimensions.
    tensors: Vec<kiln_api::Tensor>,
}

/// A GGUF's metadata as Ollama's `show` decodes it (`getModelData`): without `verbose`, arrays are
/// read with no room for their values, so every non-empty array is `null` and an empty one `[]`;
/// with it, every value. `general.parameter_count` is added when missing.
fn gguf_info(store: &Store, digest: &Digest, verbose: bool) -> Result<GgufShow, String> {
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
    let text = |v: &Value<'_>| match v {
        Value::String(s) => Some(s.to_string()),
        _ => None,
    };
    let arch = gguf
        .metadata()
        .get("general.architecture")
        .and_then(&text)
        .unwrap_or_default();
    let prefix = format!("{arch}.");
    let mut out = GgufShow {
        info: kiln_api::AnyMap::new(),
        name: None,
        chat_template: None,
        arch: arch.clone(),
        file_type: gguf
            .metadata()
            .get("general.file_type")
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok()),
        arch_keys: Vec::new(),
        has_audio_encoder: false,
        vision_projector_type: None,
        tensors: Vec::new(),
    };
    for (k, v) in gguf.metadata().iter() {
        if let Some(rest) = k.strip_prefix(&prefix) {
            out.arch_keys.push(rest.to_owned());
            if rest == "vision.projector_type" {
                out.vision_projector_type = text(v);
            }
        }
        if (k == "has_audio_encoder" || k.ends_with(".has_audio_encoder"))
            && matches!(v, Value::Bool(true))
        {
            out.has_audio_encoder = true;
        }
        match k {
            "general.name" => {
                out.name = text(v);
                continue;
            }
            "tokenizer.chat_template" => {
                out.chat_template = text(v);
                continue;
            }
            _ => {}
        }
        let value = match &v {
            Value::Array(a) if !verbose && !a.is_empty() => serde_json::Value::Null,
            other => json(other),
        };
        info.insert(k.to_owned(), value);
    }
    let parameters: u64 = gguf.tensors().iter().map(|t| t.n_elements()).sum();
    info.entry("general.parameter_count".to_owned())
        .or_insert(serde_json::json!(parameters));
    out.info = info;
    out.tensors = gguf
        .tensors()
        .iter()
        .map(|t| kiln_api::Tensor {
            name: t.name().to_owned(),
            tensor_type: t
                .ggml_type()
                .name()
                .map_or_else(|| "unknown".to_owned(), str::to_ascii_uppercase),
            shape: t.dims().to_vec(),
        })
        .collect();
    Ok(out)
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
