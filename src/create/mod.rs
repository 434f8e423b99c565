//! Ollama's `/api/create`, on a [`kiln_store::Store`]: resolve the source (`from` a local model or
//! uploaded `files`), quantize or validate the GGUF through [`crate::quantize`], add the template,
//! system, license, parameters and messages layers and the config blob, then write the manifest —
//! streaming the status lines Ollama streams, with its error messages and HTTP codes.
//!
//! The store only changes by complete blobs first and the manifest last; a failed or cancelled
//! create removes the blobs it added that nothing references, leaving the store as it was.

mod models;
mod remote;
mod transfer;

#[cfg(test)]
mod ollama_fixtures;
#[cfg(test)]
mod test_support;

pub use models::{ManageError, copy, delete, list, show};
pub(crate) use remote::clean_path as go_clean_path;
pub use remote::{CLOUD_HOST, Source, parse_model_ref, remote_url};
pub use transfer::{Repair, Transfer, TransferError};

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use kiln_api::{AnyMap, CreateRequest, ProgressResponse};
use kiln_gguf::{GgufFile, Limits};
use kiln_registry::{Client, ClientOptions, PullOptions, RegistryError};
use kiln_store::{
    CONFIG_MEDIA_TYPE, Digest, Layer, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE, Manifest, ModelConfig, ModelName, Store, StoreError,
};

use crate::convert::{Conversion, ConvertError, ModelFolder};
use crate::quantize::{
    FileType, QuantizeError, QuantizeEvent, QuantizeOptions, SourceModel, UnknownFileType,
    parse_split_file_name, quantize_parts,
};
use crate::template;

/// Ollama's media type for a draft (speculative decoding) model layer.
pub const MEDIA_TYPE_DRAFT: &str = "application/vnd.ollama.image.draft";

/// Shards of one split GGUF upload, in order of first appearance: (group key, split.count,
/// (split.no, layer) per shard).
type ShardGroup = (String, u64, Vec<(u64, Pending)>);

/// A model-like layer to validate or quantize.
struct ModelSlot {
    /// Its index in the layer list.
    index: usize,
    /// Whether Ollama rewrites it through llama-quantize's COPY even without a quantize type.
    rewrite: bool,
    /// The blobs of a split GGUF, in part order (empty for one file).
    parts: Vec<Digest>,
    /// A draft model (`draft_files`), quantized by `draft_quantize`.
    draft: bool,
    /// A Hugging Face folder, converted as it is quantized (the layer has no blob until then).
    folder: Option<ModelFolder>,
}

/// A model layer found in `files`: its pending layer, the blobs of a split GGUF in part order
/// (empty for one file), and the folder a safetensors upload is converted from.
struct Staged {
    pending: Pending,
    parts: Vec<Digest>,
    folder: Option<ModelFolder>,
}

impl Staged {
    fn layer(pending: Pending) -> Staged {
        Staged {
            pending,
            parts: Vec::new(),
            folder: None,
        }
    }
}

/// A model slot's input, ready to plan and quantize: mapped blobs, or a planned conversion and
/// the header of the GGUF it makes.
enum Loaded<'f> {
    Blobs(Vec<GgufFile>),
    Converted(Conversion<'f>, Vec<u8>),
}

impl Loaded<'_> {
    fn parts(&self, limits: &Limits) -> Result<Vec<kiln_gguf::Gguf<'_>>, CreateError> {
        match self {
            Loaded::Blobs(files) => parse_all(files, limits),
            Loaded::Converted(_, header) => {
                Ok(vec![kiln_gguf::Gguf::parse_header(header, limits)?])
            }
        }
    }
}

/// Why a create failed: `Display` is Ollama's message, [`CreateError::status`] its HTTP code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A `files` key that is not a clean relative path.
    #[error("file path must be relative")]
    FilePath,
    /// An empty or malformed digest.
    #[error("invalid digest format")]
    InvalidDigest,
    /// `draft_quantize` without draft files.
    #[error("--draft-quantize requires a DRAFT model")]
    DraftQuantizeWithoutDraft,
    /// The model (or `from`) name is not valid.
    #[error("invalid model name")]
    InvalidModelName,
    /// Neither `from` nor `files`.
    #[error("neither 'from' or 'files' was specified")]
    NeitherFromNorFiles,
    /// No file could be recognised.
    #[error("unknown type")]
    UnknownType,
    /// A file announced as GGUF that is not.
    #[error("supplied file was not in GGUF format")]
    NotGguf,
    /// More than one adapter.
    #[error("only one adapter is currently supported")]
    OnlyOneAdapter,
    /// The source model was not in the store and pulling it failed (Ollama's pull errors).
    #[error(transparent)]
    Pull(#[from] RegistryError),
    /// An uploaded blob that is not in the store.
    #[error("open {0}: no such file or directory")]
    MissingBlob(String),
    /// A quantization type kiln does not support.
    #[error(transparent)]
    UnsupportedQuantization(#[from] UnknownFileType),
    /// Quantizing a model that is already quantized.
    #[error("quantization is only supported for F16, BF16 and F32 models")]
    AlreadyQuantized,
    /// A license of the wrong JSON type.
    #[error("{0}")]
    License(String),
    /// Safetensors inputs kiln does not convert yet (adapters, drafts).
    #[error("kiln cannot convert {0} yet; upload a GGUF file")]
    Unsupported(String),
    /// The model file could not be parsed.
    #[error("{0}")]
    Gguf(#[from] kiln_gguf::GgufError),
    /// Quantization failed.
    #[error("{0}")]
    Quantize(#[from] QuantizeError),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A `draft_files` problem (Ollama answers all of them with 400).
    #[error("{0}")]
    Draft(Box<CreateError>),
    /// `draft_quantize` on a draft model that is already quantized.
    #[error("draft quantization requires an unquantized draft model, got {0}")]
    DraftAlreadyQuantized(String),
    /// Shards of a split GGUF that do not fit together (Ollama's messages).
    #[error("{0}")]
    Split(String),
    /// A `remote_host` that is not a URL.
    #[error("bad remote")]
    BadRemote,
    /// Draft files for a remote model.
    #[error("DRAFT cannot be used with remote models")]
    RemoteDraft,
    /// A bad `info` field.
    #[error("{0}")]
    Info(String),
    /// The models directory cannot hold the new model (checked before quantizing, from the
    /// output's exact size).
    #[error(
        "not enough disk space in {dir}: the new model needs {needed} bytes, {available} are available"
    )]
    NoSpace {
        /// The blobs directory.
        dir: String,
        /// Size of the file that would be written.
        needed: u64,
        /// Free bytes there.
        available: u64,
    },
    /// A `template` Go's parser rejects (checked before any quantization starts).
    #[error("template error: {0}")]
    BadTemplate(#[from] template::TemplateError),
    /// A safetensors model folder that could not be converted.
    #[error("{0}")]
    Convert(#[from] ConvertError),
    /// The client went away.
    #[error("create cancelled")]
    Cancelled,
}

impl CreateError {
    /// The HTTP status Ollama answers with.
    pub fn status(&self) -> u16 {
        match self {
            CreateError::FilePath
            | CreateError::InvalidDigest
            | CreateError::DraftQuantizeWithoutDraft
            | CreateError::InvalidModelName
            | CreateError::NeitherFromNorFiles
            | CreateError::UnknownType
            | CreateError::NotGguf
            | CreateError::OnlyOneAdapter
            | CreateError::Draft(_)
            | CreateError::Info(_)
            | CreateError::BadRemote
            | CreateError::RemoteDraft
            | CreateError::BadTemplate(_)
            | CreateError::Unsupported(_) => 400,
            CreateError::Pull(e) => e.status(),
            CreateError::Cancelled => 499,
            _ => 500,
        }
    }
}

/// Go's `fs.ValidPath`: relative, no empty, `.` or `..` elements.
fn valid_path(p: &str) -> bool {
    p == "." || (!p.is_empty() && p.split('/').all(|e| !e.is_empty() && e != "." && e != ".."))
}

/// A checked request, ready to run: the part of a create that answers before streaming starts.
pub struct Prepared {
    request: CreateRequest,
    name: ModelName,
}

impl Prepared {
    /// The resolved model name.
    pub fn name(&self) -> &ModelName {
        &self.name
    }
}

/// Runs creates, pulls and pushes against one store.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    threads: usize,
    /// How the registry client is made, when the first pull or push needs it.
    registry_options: ClientOptions,
    /// The registry client, made once and shared by clones (it keeps the tokens it was given).
    registry: Arc<OnceLock<Client>>,
    /// Keep blobs a re-pulled model no longer uses (`OLLAMA_NOPRUNE`).
    no_prune: bool,
    /// Bounds on every GGUF the engine parses (uploads, pulled and existing models).
    limits: Limits,
}

/// Ollama's `FileType.String()` for a `general.file_type` value (0 reads as unknown, as in Ollama).
fn file_type_name(ft: Option<u32>) -> String {
    match ft.filter(|&n| n > 0).and_then(FileType::from_llama_ftype) {
        Some(f) => f.name().to_owned(),
        None => "unknown".to_owned(),
    }
}

/// Ollama's `format.HumanNumber` (parameter sizes such as "8.0B", "494.03M").
fn human_number(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        let v = f / 1e9;
        if v == v.floor() {
            format!("{v:.0}B")
        } else {
            format!("{v:.1}B")
        }
    } else if n >= 1_000_000 {
        let v = f / 1e6;
        if v == v.floor() {
            format!("{v:.0}M")
        } else {
            format!("{v:.2}M")
        }
    } else if n >= 1_000 {
        format!("{:.0}K", f / 1e3)
    } else {
        n.to_string()
    }
}

/// A layer on its way into the manifest, with the status line Ollama streams for it.
struct Pending {
    layer: Layer,
    status: String,
}

impl Engine {
    /// An engine over `store`, quantizing with all available cores.
    pub fn new(store: Store) -> Engine {
        Engine {
            store,
            threads: 0,
            registry_options: ClientOptions::default(),
            registry: Arc::new(OnceLock::new()),
            no_prune: false,
            limits: Limits::default(),
        }
    }

    /// Sets the bounds on the GGUF files a create reads (counts, string and array lengths,
    /// nesting, allocation); a file beyond them is refused before anything is allocated for it.
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.limits = limits;
        self
    }

    /// Sets how the registry client for pulls and pushes is made (credentials, retries,
    /// plain-HTTP hosts, …).
    pub fn with_registry_options(mut self, options: ClientOptions) -> Engine {
        self.registry_options = options;
        self.registry = Arc::new(OnceLock::new());
        self
    }

    /// Keeps the blobs of a model's previous version when a pull replaces it
    /// (Ollama's `OLLAMA_NOPRUNE`).
    pub fn with_no_prune(mut self, no_prune: bool) -> Engine {
        self.no_prune = no_prune;
        self
    }

    /// The registry client, made on first use.
    fn registry_client(&self) -> Result<&Client, RegistryError> {
        if let Some(c) = self.registry.get() {
            return Ok(c);
        }
        let client = Client::new(self.registry_options.clone())?;
        Ok(self.registry.get_or_init(|| client))
    }

    /// Sets the quantization thread count (0 = all cores).
    pub fn with_threads(mut self, threads: usize) -> Engine {
        self.threads = threads;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The checks Ollama makes before it starts streaming (their errors are plain JSON responses).
    pub fn prepare(&self, request: CreateRequest) -> Result<Prepared, CreateError> {
        for (path, digest) in request.files.iter().chain(&request.draft_files).flatten() {
            if !valid_path(path) {
                return Err(CreateError::FilePath);
            }
            if digest.is_empty() {
                return Err(CreateError::InvalidDigest);
            }
        }
        if !request.draft_quantize.is_empty()
            && request.draft_files.as_ref().is_none_or(|f| f.is_empty())
        {
            return Err(CreateError::DraftQuantizeWithoutDraft);
        }
        if request.adapters.iter().flatten().any(|(_, d)| d.is_empty()) {
            return Err(CreateError::InvalidDigest);
        }
        let name =
            ModelName::parse(request.model_name()).map_err(|_| CreateError::InvalidModelName)?;
        let name = self.store.existing_name(&name)?;
        Ok(Prepared { request, name })
    }

    /// Runs a prepared create, reporting progress to `sink`; `ControlFlow::Break` cancels it.
    pub fn run(
        &self,
        prepared: Prepared,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    ) -> Result<(), CreateError> {
        self.run_cancellable(prepared, sink, &|| false)
    }

    /// [`run`](Self::run), also asking `cancelled` between chunks of rows while it quantizes, so
    /// a client that goes away (or a shutdown) stops a long tensor within one chunk rather than
    /// at the next progress line, which Ollama's per-tensor figures make seconds apart.
    pub fn run_cancellable(
        &self,
        prepared: Prepared,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), CreateError> {
        let mut created: Vec<Digest> = Vec::new();
        let old = self.store.manifest(&prepared.name).ok();
        let result = self.build(&prepared, sink, cancelled, &mut created);
        match result {
            Ok(()) => {
                if let Some(old) = old {
                    self.remove_unused(
                        old.manifest.digests().filter_map(|d| Digest::parse(d).ok()),
                    );
                }
                // The model is written: a client gone at this last line does not undo that, so
                // the outcome is success, not a cancellation.
                let _ = sink(ProgressResponse::status("success"));
                Ok(())
            }
            Err(e) => {
                self.remove_unused(created.into_iter());
                Err(e)
            }
        }
    }

    /// Convenience: [`prepare`](Self::prepare) then [`run`](Self::run).
    pub fn create(
        &self,
        request: CreateRequest,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    ) -> Result<(), CreateError> {
        let prepared = self.prepare(request)?;
        self.run(prepared, sink)
    }

    /// Removes the given blobs unless a manifest still references them (best effort: a failure
    /// here leaves only unreferenced blobs, which `Store::prune` collects).
    fn remove_unused(&self, digests: impl Iterator<Item = Digest>) {
        let _ = self.store.remove_unreferenced(digests);
    }

    fn new_layer(
        &self,
        bytes: &[u8],
        media_type: &str,
        created: &mut Vec<Digest>,
    ) -> Result<Pending, CreateError> {
        let stored = self.store.write_blob(bytes, None)?;
        if stored.created {
            created.push(stored.digest);
        }
        Ok(Pending {
            layer: Layer::new(media_type, stored.digest, stored.size),
            status: format!(
                "{} {}",
                if stored.created {
                    "creating new layer"
                } else {
                    "using existing layer"
                },
                stored.digest
            ),
        })
    }

    /// Builds and stores the model.
    fn build(
        &self,
        prepared: &Prepared,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
        cancelled: &dyn Fn() -> bool,
        created: &mut Vec<Digest>,
    ) -> Result<(), CreateError> {
        let req = &prepared.request;
        let _guard = self.store.create_guard()?;
        let mut config = ModelConfig::new();
        config.renderer = req.renderer.clone();
        config.parser = req.parser.clone();
        config.requires = req.requires.clone();
        let mut layers: Vec<Pending> = Vec::new();
        let mut models: Vec<ModelSlot> = Vec::new();
        // Projector GGUFs uploaded in `files` (Ollama may rewrite their metadata).
        let mut uploaded_projectors: Vec<usize> = Vec::new();

        let mut remote = false;
        if !req.from.is_empty() {
            let (base, source) = parse_model_ref(&req.from).ok_or(CreateError::InvalidModelName)?;
            ModelName::parse(&base).map_err(|_| CreateError::InvalidModelName)?;
            let remote_host = match (req.remote_host.as_str(), source) {
                ("", Source::Cloud) => CLOUD_HOST,
                (host, _) => host,
            };
            if !remote_host.is_empty() {
                config.remote_host = remote_url(remote_host).map_err(|_| CreateError::BadRemote)?;
                config.remote_model = base;
                remote = true;
            }
        }
        if remote {
            // A remote model is its config (and any text layers); nothing is read locally.
        } else if !req.from.is_empty() {
            let (base, _) = parse_model_ref(&req.from).ok_or(CreateError::InvalidModelName)?;
            let from = ModelName::parse(&base).map_err(|_| CreateError::InvalidModelName)?;
            let source = match self.store.manifest(&from) {
                // Ollama pulls a `from` that is not local, then reads it again.
                Err(StoreError::ModelNotFound { .. }) => {
                    let client = self.registry_client()?;
                    let options = PullOptions {
                        insecure: false,
                        no_prune: self.no_prune,
                    };
                    kiln_registry::pull(client, &self.store, &from, &options, sink)?;
                    self.store.manifest(&from)?
                }
                other => other?,
            };
            if let Ok(base) = self.read_config(&source.manifest) {
                config.renderer = or(&config.renderer, &base.renderer);
                config.parser = or(&config.parser, &base.parser);
                config.requires = or(&config.requires, &base.requires);
                config.model_format = or(&config.model_format, &base.model_format);
                if config.capabilities.is_empty() {
                    config.capabilities = base.capabilities;
                }
            }
            for l in &source.manifest.layers {
                let digest = Digest::parse(&l.digest).map_err(|_| CreateError::InvalidDigest)?;
                let size = self.store.blob_size(&digest)?;
                let mut layer = Layer::new(l.media_type.clone(), digest, size);
                layer.from = from.display_shortest();
                layer.name = l.name.clone();
                if l.media_type == MEDIA_TYPE_MODEL {
                    models.push(ModelSlot {
                        index: layers.len(),
                        rewrite: false,
                        parts: Vec::new(),
                        draft: false,
                        folder: None,
                    });
                }
                layers.push(Pending {
                    layer,
                    status: format!("using existing layer {digest}"),
                });
            }
        } else if let Some(files) = &req.files {
            for staged in self.gguf_layers(files, None, sink, created)? {
                if staged.pending.layer.media_type == MEDIA_TYPE_PROJECTOR {
                    uploaded_projectors.push(layers.len());
                }
                if staged.pending.layer.media_type == MEDIA_TYPE_MODEL {
                    models.push(ModelSlot {
                        index: layers.len(),
                        rewrite: true,
                        parts: staged.parts,
                        draft: false,
                        folder: staged.folder,
                    });
                }
                layers.push(staged.pending);
            }
            if layers
                .iter()
                .filter(|p| p.layer.media_type == MEDIA_TYPE_ADAPTER)
                .count()
                > 1
            {
                return Err(CreateError::OnlyOneAdapter);
            }
        } else {
            return Err(CreateError::NeitherFromNorFiles);
        }

        if remote && req.draft_files.as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(CreateError::RemoteDraft);
        }
        if let Some(adapters) = req.adapters.as_ref().filter(|_| !remote) {
            if adapters.len() > 1 {
                return Err(CreateError::OnlyOneAdapter);
            }
            for (path, digest) in adapters {
                if !valid_path(path) {
                    return Err(CreateError::FilePath);
                }
                let d = Digest::parse(digest).map_err(|_| CreateError::InvalidDigest)?;
                let blob = self.store.blob_path(&d);
                if !blob.is_file() {
                    return Err(CreateError::MissingBlob(blob.display().to_string()));
                }
                if !has_gguf_magic(&blob) {
                    return Err(if path.ends_with(".safetensors") {
                        CreateError::Unsupported("safetensors adapters".into())
                    } else {
                        CreateError::NotGguf
                    });
                }
                emit(sink, ProgressResponse::status("parsing GGUF"))?;
                let file = self.map_blob(&d)?;
                let chat_template = chat_template_of(&file.parse(&self.limits)?);
                let mut layer = Layer::new(MEDIA_TYPE_ADAPTER, d, self.store.blob_size(&d)?);
                layer.from = path.clone();
                layers.push(Pending {
                    layer,
                    status: format!("using existing layer {d}"),
                });
                let detected = self.detected_template_layers(chat_template.as_deref(), created)?;
                layers.extend(detected);
            }
        }

        if let Some(draft_files) = req.draft_files.as_ref().filter(|_| !remote) {
            let drafts = self
                .gguf_layers(draft_files, Some(MEDIA_TYPE_DRAFT), sink, created)
                .map_err(|e| match e {
                    // A cancellation is not a bad draft, and a failing disk is not the client's
                    // fault: only the request's own problems become Ollama's draft 400s.
                    CreateError::Cancelled
                    | CreateError::Store(_)
                    | CreateError::NoSpace { .. } => e,
                    other => CreateError::Draft(Box::new(other)),
                })?;
            for staged in drafts {
                models.push(ModelSlot {
                    index: layers.len(),
                    rewrite: !staged.parts.is_empty(),
                    parts: staged.parts,
                    draft: true,
                    folder: staged.folder,
                });
                layers.push(staged.pending);
            }
        }
        if let Some(info) = &req.info {
            apply_info(&mut config, info)?;
        }

        // The request's parameters, which a model's architecture may add stop words to.
        let mut parameters = req.parameters.clone().unwrap_or_default();
        let quantize = req.quantize_type().to_ascii_uppercase();
        let draft_quantize = req.draft_quantize.to_ascii_uppercase();
        // Ollama refuses a bad quantize request, then a bad template, each only once it gets
        // there (after minutes of quantizing, for the template); both are checked here, in that
        // order, before any work starts.
        let mut planned = Vec::with_capacity(models.len());
        for slot in models {
            let wanted = if slot.draft {
                &draft_quantize
            } else {
                &quantize
            };
            let loaded = self.load(&slot, &layers)?;
            let parts = loaded.parts(&self.limits)?;
            let model = SourceModel::new(&parts).map_err(QuantizeError::from)?;
            let job = plan_job(&slot, &model, wanted)?;
            planned.push((slot, job));
        }
        if !req.template.is_empty() {
            template::check(&req.template)?;
        }
        for (slot, job) in planned {
            let index = slot.index;
            let loaded = self.load(&slot, &layers)?;
            let parts = loaded.parts(&self.limits)?;
            let model = SourceModel::new(&parts).map_err(QuantizeError::from)?;
            if let (None, Loaded::Converted(conversion, _)) = (&job, &loaded) {
                // Kept as converted (the quantize type is the conversion's own): written now.
                let stored = self.write_conversion(conversion, sink)?;
                if stored.created {
                    created.push(stored.digest);
                }
                let layer = Layer::new(MEDIA_TYPE_MODEL, stored.digest, stored.size);
                layers[index] = Pending {
                    layer,
                    status: format!("using existing layer {}", stored.digest),
                };
            }
            if let Some((ftype, status)) = job {
                // Ollama's figures: llama-quantize's "[i/n]" tensor counter scaled to the first
                // file's tensor bytes, then to the layer size over its size past the header.
                let size = layers[index].layer.size;
                let first_tensor_bytes: u64 = parts[0]
                    .tensors()
                    .iter()
                    .map(|t| t.n_bytes().unwrap_or(t.data().len() as u64))
                    .sum();
                let past_header = (size.max(0) as u64)
                    .saturating_sub(parts[0].data_offset())
                    .max(1);
                let mut reported = 0u64;
                let mut progress = |e: &QuantizeEvent<'_>| match *e {
                    QuantizeEvent::Tensor { index, count, .. } => {
                        let done = first_tensor_bytes * (index as u64 + 1) / count.max(1) as u64;
                        if done <= reported {
                            return ControlFlow::Continue(());
                        }
                        reported = done;
                        let fraction = done as f32 / past_header as f32;
                        sink(ProgressResponse {
                            status: status.clone(),
                            digest: "0000000000000000000".into(),
                            total: size,
                            completed: (fraction * size as f32) as i64,
                        })
                    }
                    QuantizeEvent::Bytes { .. } if cancelled() => ControlFlow::Break(()),
                    QuantizeEvent::Bytes { .. } => ControlFlow::Continue(()),
                };
                let options = QuantizeOptions {
                    threads: self.threads,
                    allow_requantize: true,
                    ollama_overrides: true,
                    keep_embedded_tensors: true,
                    ..Default::default()
                };
                let needed = crate::quantize::output_size(&model, ftype, &options)?;
                check_space(needed, self.store.available_bytes()?, &self.store)?;
                let mut writer = self.store.blob_writer()?;
                let quantized = match &loaded {
                    Loaded::Blobs(_) => {
                        quantize_parts(&parts, &mut writer, ftype, &options, &mut progress)
                    }
                    // One pass: the converted GGUF is never written.
                    Loaded::Converted(conversion, _) => crate::quantize::quantize_conversion(
                        conversion,
                        &mut writer,
                        ftype,
                        &options,
                        &mut progress,
                    ),
                };
                match quantized {
                    Err(QuantizeError::Cancelled) => return Err(CreateError::Cancelled),
                    Err(QuantizeError::Convert(e)) => return Err(CreateError::Convert(*e)),
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                emit(sink, ProgressResponse::status("verifying conversion"))?;
                let stored = writer.commit()?;
                if stored.created {
                    created.push(stored.digest);
                }
                // A rewritten layer is a new layer (Ollama's `manifest.NewLayer`): it has no
                // `from`.
                let media_type = layers[index].layer.media_type.clone();
                let layer = Layer::new(media_type, stored.digest, stored.size);
                let verb = if stored.created {
                    "creating new layer"
                } else {
                    "using existing layer"
                };
                layers[index] = Pending {
                    layer,
                    status: format!("{verb} {}", stored.digest),
                };
            }
            if slot.draft {
                config.draft = Some(serde_json::json!({
                    "model_format": "gguf",
                    "architecture": model.metadata().architecture().unwrap_or(""),
                }));
            } else {
                self.describe_model(&mut config, index, &layers, &mut parameters)?;
            }
        }

        for index in uploaded_projectors {
            self.add_default_projector_type(&mut layers[index], sink, created)?;
        }

        if !req.template.is_empty() {
            layers.retain(|p| p.layer.media_type != MEDIA_TYPE_TEMPLATE);
            layers.push(self.new_layer(req.template.as_bytes(), MEDIA_TYPE_TEMPLATE, created)?);
        }
        if !req.system.is_empty() {
            layers.retain(|p| p.layer.media_type != MEDIA_TYPE_SYSTEM);
            layers.push(self.new_layer(req.system.as_bytes(), MEDIA_TYPE_SYSTEM, created)?);
        }
        for license in req
            .licenses()
            .map_err(|e| CreateError::License(e.to_string()))?
        {
            layers.push(self.new_layer(license.as_bytes(), MEDIA_TYPE_LICENSE, created)?);
        }
        self.set_parameters(&mut layers, parameters, created)?;
        if !req.messages.is_empty() {
            layers.retain(|p| p.layer.media_type != MEDIA_TYPE_MESSAGES);
            let bytes = kiln_api::try_to_go_json_line(&req.messages)
                .map_err(|e| CreateError::License(e.to_string()))?;
            layers.push(self.new_layer(&bytes, MEDIA_TYPE_MESSAGES, created)?);
        }

        let config_blob = self.store.write_blob(&config.to_bytes()[..], None)?;
        if config_blob.created {
            created.push(config_blob.digest);
        }
        for p in &layers {
            emit(sink, ProgressResponse::status(p.status.clone()))?;
        }
        emit(sink, ProgressResponse::status("writing manifest"))?;
        let manifest = Manifest::new(
            Layer::new(CONFIG_MEDIA_TYPE, config_blob.digest, config_blob.size),
            layers.into_iter().map(|p| p.layer).collect(),
        );
        self.store.write_manifest(&prepared.name, &manifest)?;
        Ok(())
    }

    /// Ollama's safetensors `files`: the folder they make is converted to the F16 GGUF Ollama's
    /// converter writes (status `converting model`), which then goes through the same
    /// validation or quantization as an uploaded GGUF. The conversion runs inside that
    /// quantization, so the converted GGUF is never stored; the layer gets its blob then.
    fn converted_layers(
        &self,
        files: &BTreeMap<String, String>,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
        created: &mut Vec<Digest>,
    ) -> Result<Vec<Staged>, CreateError> {
        let mut paths = BTreeMap::new();
        for (path, digest) in files {
            let d = Digest::parse(digest).map_err(|_| CreateError::InvalidDigest)?;
            let blob = self.store.blob_path(&d);
            if !blob.is_file() {
                return Err(CreateError::MissingBlob(blob.display().to_string()));
            }
            paths.insert(path.clone(), blob);
        }
        emit(sink, ProgressResponse::status("converting model"))?;
        // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
        let folder = unsafe { ModelFolder::map_files(paths) }?;
        let conversion = Conversion::plan(&folder)?;
        let header = conversion.header()?;
        let chat_template =
            chat_template_of(&kiln_gguf::Gguf::parse_header(&header, &self.limits)?);
        let layer = Layer {
            media_type: MEDIA_TYPE_MODEL.to_owned(),
            size: conversion.output_len()? as i64,
            ..Layer::default()
        };
        drop(conversion);
        let mut out = vec![Staged {
            pending: Pending {
                layer,
                status: String::new(),
            },
            parts: Vec::new(),
            folder: Some(folder),
        }];
        for pending in self.detected_template_layers(chat_template.as_deref(), created)? {
            out.push(Staged::layer(pending));
        }
        Ok(out)
    }

    /// Ollama's `addDefaultLlavaProjectorType`: an uploaded LLaVA-style CLIP projector
    /// (`clip` with a vision encoder) that names no projector type gets `clip.projector_type =
    /// "mlp"`, the file rewritten as Ollama's GGUF writer writes it (keys sorted, tensors in
    /// its order, bytes unchanged), with status `updating GGUF projector metadata`.
    fn add_default_projector_type(
        &self,
        pending: &mut Pending,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
        created: &mut Vec<Digest>,
    ) -> Result<(), CreateError> {
        let digest = pending
            .layer
            .digest()
            .map_err(|_| CreateError::InvalidDigest)?;
        let file = self.map_blob(&digest)?;
        let gguf = file.parse(&self.limits)?;
        let md = gguf.metadata();
        let needs_type = md.architecture().unwrap_or("") == "clip"
            && md.get_bool("clip.has_vision_encoder").unwrap_or(false)
            && md.get("clip.projector_type").is_none()
            && md.get("clip.vision.projector_type").is_none();
        if !needs_type {
            return Ok(());
        }
        emit(
            sink,
            ProgressResponse::status("updating GGUF projector metadata"),
        )?;
        let mut metadata = md.to_vec();
        metadata.push(("clip.projector_type", kiln_gguf::Value::string("mlp")));
        metadata.sort_by(|a, b| a.0.cmp(b.0));
        let mut tensors: Vec<_> = gguf.tensors().iter().collect();
        tensors.sort_by(|a, b| crate::convert::ollama_tensor_order(a.name(), b.name()));
        let specs: Vec<_> = tensors
            .iter()
            .map(|t| kiln_gguf::TensorSpec::new(t.name(), t.ggml_type(), t.dims().to_vec()))
            .collect();
        let mut blob = self.store.blob_writer()?;
        let mut writer =
            kiln_gguf::Writer::new(&mut blob, &metadata, &specs).map_err(QuantizeError::from)?;
        for t in &tensors {
            writer
                .write_tensor_data(t.data())
                .map_err(QuantizeError::from)?;
        }
        writer.finish().map_err(QuantizeError::from)?;
        let stored = blob.commit()?;
        if stored.created {
            created.push(stored.digest);
        }
        let layer = Layer::new(MEDIA_TYPE_PROJECTOR, stored.digest, stored.size);
        let verb = if stored.created {
            "creating new layer"
        } else {
            "using existing layer"
        };
        *pending = Pending {
            layer,
            status: format!("{verb} {}", stored.digest),
        };
        Ok(())
    }

    /// Writes a conversion as it is (a folder whose quantize type is the converted one) to a
    /// blob, with `converting model` byte progress.
    fn write_conversion(
        &self,
        conversion: &Conversion<'_>,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    ) -> Result<kiln_store::StoredBlob, CreateError> {
        check_space(
            conversion.output_len()?,
            self.store.available_bytes()?,
            &self.store,
        )?;
        let mut writer = self.store.blob_writer()?;
        let mut progress = |done: u64, total: u64| {
            sink(ProgressResponse {
                status: "converting model".into(),
                digest: String::new(),
                total: total as i64,
                completed: done as i64,
            })
        };
        match conversion.write_with_progress(&mut writer, &mut progress) {
            Err(ConvertError::Cancelled) => return Err(CreateError::Cancelled),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        Ok(writer.commit()?)
    }

    /// Ollama's GGUF `files` handling: detect the kind, parse every file (each one must be a GGUF
    /// blob in the store), take the media type from its metadata (or `media_type` for drafts),
    /// and merge the shards of split GGUFs into their first shard's layer. Returns each layer
    /// with its split parts' blobs in part order (empty when not split).
    fn gguf_layers(
        &self,
        files: &BTreeMap<String, String>,
        media_type: Option<&'static str>,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
        created: &mut Vec<Digest>,
    ) -> Result<Vec<Staged>, CreateError> {
        let mut is_gguf = false;
        for (path, digest) in files {
            if path.ends_with(".safetensors") {
                if media_type.is_some() {
                    // Ollama converts only Qwen 3.5 multi-token-prediction drafts.
                    return Err(CreateError::Unsupported("safetensors draft models".into()));
                }
                return self.converted_layers(files, sink, created);
            }
            if path.ends_with(".gguf") {
                is_gguf = true;
                break;
            }
            let Ok(d) = Digest::parse(digest) else {
                break;
            };
            if has_gguf_magic(&self.store.blob_path(&d)) {
                is_gguf = true;
                break;
            }
        }
        if !is_gguf {
            return Err(CreateError::UnknownType);
        }
        let mut single = Vec::new();
        let mut groups: Vec<ShardGroup> = Vec::new();
        let mut chat_templates: Vec<(Digest, Option<String>)> = Vec::new();
        for (path, digest) in files {
            emit(sink, ProgressResponse::status("parsing GGUF"))?;
            let d = Digest::parse(digest).map_err(|_| CreateError::InvalidDigest)?;
            let blob = self.store.blob_path(&d);
            if !blob.is_file() {
                return Err(CreateError::MissingBlob(blob.display().to_string()));
            }
            if !has_gguf_magic(&blob) {
                return Err(CreateError::NotGguf);
            }
            let file = self.map_blob(&d)?;
            let gguf = file.parse(&self.limits)?;
            if media_type.is_none() {
                chat_templates.push((d, chat_template_of(&gguf)));
            }
            let media = match media_type {
                Some(m) => m,
                None => media_type_of(&gguf),
            };
            let mut layer = Layer::new(media, d, self.store.blob_size(&d)?);
            layer.from = path.clone();
            let pending = Pending {
                layer,
                status: format!("using existing layer {d}"),
            };
            match split_shard(&gguf, path)? {
                None => single.push(pending),
                Some((prefix, no, count)) => {
                    let key = format!("{media}:{prefix}:{count}");
                    match groups.iter_mut().find(|(k, _, _)| *k == key) {
                        Some((_, _, shards)) => shards.push((no, pending)),
                        None => groups.push((key, count, vec![(no, pending)])),
                    }
                }
            }
        }
        let mut out: Vec<Staged> = single.into_iter().map(Staged::layer).collect();
        for (_, count, shards) in groups {
            if shards.len() as u64 != count {
                return Err(CreateError::Split(format!(
                    "split GGUF {:?} has {} shards, expected {count}",
                    shards[0].1.layer.from,
                    shards.len()
                )));
            }
            let mut by_index: Vec<Option<Pending>> = (0..count).map(|_| None).collect();
            for (no, pending) in shards {
                if no >= count {
                    return Err(CreateError::Split(format!(
                        "split GGUF {:?} has invalid shard index {no}",
                        pending.layer.from
                    )));
                }
                if by_index[no as usize].replace(pending).is_some() {
                    return Err(CreateError::Split(format!(
                        "split GGUF has duplicate shard index {no}"
                    )));
                }
            }
            let mut digests = Vec::new();
            for shard in by_index.iter() {
                let Some(shard) = shard else {
                    return Err(CreateError::Split(
                        "split GGUF is missing first shard".into(),
                    ));
                };
                digests.push(
                    shard
                        .layer
                        .digest()
                        .map_err(|_| CreateError::InvalidDigest)?,
                );
            }
            let primary = by_index.swap_remove(0).expect("checked above");
            out.push(Staged {
                pending: primary,
                parts: digests,
                folder: None,
            });
        }
        // Ollama matches each resulting layer's chat template (a split model's from its first
        // shard) and appends the detected template layers after all of them.
        let mut detected = Vec::new();
        for staged in &out {
            let digest = staged
                .pending
                .layer
                .digest()
                .map_err(|_| CreateError::InvalidDigest)?;
            let template = chat_templates
                .iter()
                .find(|(d, _)| *d == digest)
                .and_then(|(_, t)| t.as_deref());
            detected.extend(self.detected_template_layers(template, created)?);
        }
        out.extend(detected.into_iter().map(Staged::layer));
        Ok(out)
    }

    /// The layers Ollama adds for a GGUF whose `tokenizer.chat_template` matches one of its
    /// built-in templates: the Go template (with its own status line) and its stop words.
    fn detected_template_layers(
        &self,
        chat_template: Option<&str>,
        created: &mut Vec<Digest>,
    ) -> Result<Vec<Pending>, CreateError> {
        let Some(named) = chat_template.and_then(template::detect) else {
            return Ok(Vec::new());
        };
        let mut layer = self.new_layer(named.template.as_bytes(), MEDIA_TYPE_TEMPLATE, created)?;
        layer.status = format!("using autodetected template {}", named.name);
        let mut layers = vec![layer];
        if let Some(params) = &named.params {
            layers.push(self.new_layer(params, MEDIA_TYPE_PARAMS, created)?);
        }
        Ok(layers)
    }

    /// A model slot's input: its folder's conversion, or its mapped blobs.
    fn load<'s>(&self, slot: &'s ModelSlot, layers: &[Pending]) -> Result<Loaded<'s>, CreateError> {
        Ok(match &slot.folder {
            Some(folder) => {
                let conversion = Conversion::plan(folder)?;
                let header = conversion.header()?;
                Loaded::Converted(conversion, header)
            }
            None => Loaded::Blobs(self.slot_files(slot, layers)?),
        })
    }

    /// The mapped blobs of a model slot, in part order.
    fn slot_files(
        &self,
        slot: &ModelSlot,
        layers: &[Pending],
    ) -> Result<Vec<GgufFile>, CreateError> {
        let digests = if slot.parts.is_empty() {
            vec![
                layers[slot.index]
                    .layer
                    .digest()
                    .map_err(|_| CreateError::InvalidDigest)?,
            ]
        } else {
            slot.parts.clone()
        };
        Ok(digests
            .iter()
            .map(|d| self.map_blob(d))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Memory-maps a blob for parsing.
    fn map_blob(&self, digest: &Digest) -> Result<GgufFile, StoreError> {
        let path = self.store.blob_path(digest);
        // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
        unsafe { GgufFile::map(&path) }.map_err(|source| StoreError::Io { path, source })
    }

    fn read_config(&self, manifest: &Manifest) -> Result<ModelConfig, CreateError> {
        let digest = manifest
            .config
            .digest()
            .map_err(|_| CreateError::InvalidDigest)?;
        let bytes = std::fs::read(self.store.blob_path(&digest)).map_err(|e| StoreError::Io {
            path: self.store.blob_path(&digest),
            source: e,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CreateError::License(e.to_string()))
    }

    /// Fills the config fields Ollama derives from the model layer, and the renderer, parser
    /// and stop words it picks by architecture when the request names none.
    fn describe_model(
        &self,
        config: &mut ModelConfig,
        index: usize,
        layers: &[Pending],
        parameters: &mut AnyMap,
    ) -> Result<(), CreateError> {
        let digest = layers[index]
            .layer
            .digest()
            .map_err(|_| CreateError::InvalidDigest)?;
        let file = self.map_blob(&digest)?;
        let gguf = file.parse(&self.limits)?;
        let md = gguf.metadata();
        let arch = md.architecture().unwrap_or("").to_owned();
        // Ollama's GGUF decoder sets general.parameter_count to the tensors' element count.
        let params: u64 = gguf.tensors().iter().map(|t| t.n_elements()).sum();
        config.model_format = or(&config.model_format, "gguf");
        config.model_family = or(&config.model_family, &arch);
        config.model_type = or(&config.model_type, &human_number(params));
        config.file_type = or(
            &config.file_type,
            &file_type_name(md.file_type().ok().flatten()),
        );
        if (config.renderer.is_empty() || config.parser.is_empty())
            && let Some((renderer, parser, stop)) = architecture_defaults(&arch)
        {
            config.renderer = or(&config.renderer, renderer);
            config.parser = or(&config.parser, parser);
            if let Some(stop) = stop {
                parameters
                    .entry("stop".to_owned())
                    .or_insert_with(|| serde_json::json!(stop));
            }
        }
        config
            .model_families
            .get_or_insert_with(Vec::new)
            .push(arch);
        Ok(())
    }

    /// Ollama's `setParameters`: request values win, existing ones fill in, re-encoded as one
    /// params layer at the end.
    fn set_parameters(
        &self,
        layers: &mut Vec<Pending>,
        mut params: AnyMap,
        created: &mut Vec<Digest>,
    ) -> Result<(), CreateError> {
        for p in layers
            .iter()
            .filter(|p| p.layer.media_type == MEDIA_TYPE_PARAMS)
        {
            let digest = p.layer.digest().map_err(|_| CreateError::InvalidDigest)?;
            let bytes =
                std::fs::read(self.store.blob_path(&digest)).map_err(|e| StoreError::Io {
                    path: self.store.blob_path(&digest),
                    source: e,
                })?;
            let existing: BTreeMap<String, serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| CreateError::License(e.to_string()))?;
            for (k, v) in existing {
                params.entry(k).or_insert(v);
            }
        }
        if params.is_empty() {
            return Ok(());
        }
        layers.retain(|p| p.layer.media_type != MEDIA_TYPE_PARAMS);
        let bytes = kiln_api::try_to_go_json_line(&params)
            .map_err(|e| CreateError::License(e.to_string()))?;
        layers.push(self.new_layer(&bytes, MEDIA_TYPE_PARAMS, created)?);
        Ok(())
    }
}

fn parse_all<'f>(
    files: &'f [GgufFile],
    limits: &Limits,
) -> Result<Vec<kiln_gguf::Gguf<'f>>, CreateError> {
    Ok(files
        .iter()
        .map(|f| f.parse(limits))
        .collect::<Result<Vec<_>, _>>()?)
}

/// What a model slot needs: a file type to write and its status line, or nothing (kept as
/// uploaded). Errors are Ollama's refusals of the `quantize` / `draft_quantize` value.
fn plan_job(
    slot: &ModelSlot,
    model: &SourceModel<'_, '_>,
    wanted: &str,
) -> Result<Option<(FileType, String)>, CreateError> {
    let source_ft = model.metadata().file_type().ok().flatten();
    let source_name = file_type_name(source_ft);
    // Ollama makes a model converted from FP8 weights Q8_0 when no type is asked for, rather
    // than keep the BF16 they were decoded to.
    let wanted = if wanted.is_empty()
        && !slot.draft
        && from_fp8(model.metadata())
        && matches!(source_name.as_str(), "F16" | "BF16" | "F32")
    {
        "Q8_0"
    } else {
        wanted
    };
    if wanted.is_empty() {
        // Ollama validates through llama-quantize's COPY only what llama.cpp's text loader
        // can read: a model with embedded (vision, audio, …) tensors is kept as it is.
        let embedded = model
            .tensors()
            .iter()
            .any(|t| crate::quantize::is_embedded_tensor(t.name()));
        return Ok((slot.rewrite && !embedded)
            .then(|| (FileType::Copy, "validating GGUF model".to_owned())));
    }
    let want: FileType = wanted.parse()?;
    let source_quantized = source_ft
        .and_then(FileType::from_llama_ftype)
        .and_then(|f| f.default_tensor_type())
        .is_some_and(|t| t.is_quantized());
    if slot.draft && source_quantized {
        return Err(CreateError::DraftAlreadyQuantized(source_name));
    }
    if !matches!(source_name.as_str(), "F16" | "BF16" | "F32") {
        return Err(CreateError::AlreadyQuantized);
    }
    Ok((want.llama_ftype() != source_ft)
        .then(|| (want, format!("quantizing {source_name} model to {wanted}"))))
}

/// Ollama's `hasSourceFP8Tensors`: the model says it was converted from FP8 weights.
fn from_fp8(md: &kiln_gguf::Metadata<'_>) -> bool {
    let arch = md.architecture().unwrap_or("");
    md.get_str(&format!("{arch}.source_quantization")) == Ok("hf_fp8")
        && md
            .get_array(&format!("{arch}.source_fp8_tensors"))
            .is_ok_and(|a| !a.is_empty())
}

/// The renderer, parser and stop words Ollama's create gives a model of this architecture when
/// the request does not name them (server/create.go's architecture switch).
fn architecture_defaults(
    arch: &str,
) -> Option<(&'static str, &'static str, Option<&'static [&'static str]>)> {
    match arch {
        // Stored as the legacy name; Ollama resolves it to gemma4-small or -large at run time.
        "gemma4" => Some(("gemma4", "gemma4", Some(&["<turn|>"]))),
        "laguna" => Some(("laguna", "laguna", None)),
        "nemotron_h" | "nemotron_h_moe" | "nemotron_h_omni" => {
            Some(("nemotron-3-nano", "nemotron-3-nano", None))
        }
        _ => None,
    }
}

/// Refuses a write of `needed` bytes when fewer are `available` (Ollama starts anyway and fails
/// with ENOSPC part-way, after minutes of work).
fn check_space(needed: u64, available: u64, store: &Store) -> Result<(), CreateError> {
    if needed > available {
        return Err(CreateError::NoSpace {
            dir: store.root().join("blobs").display().to_string(),
            needed,
            available,
        });
    }
    Ok(())
}

/// A GGUF's Jinja chat template, when it has one as a string (as Ollama reads it).
fn chat_template_of(gguf: &kiln_gguf::Gguf<'_>) -> Option<String> {
    match gguf.metadata().get("tokenizer.chat_template") {
        Some(kiln_gguf::Value::String(s)) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

/// Ollama's media type for an uploaded GGUF: adapter, projector or model.
fn media_type_of(gguf: &kiln_gguf::Gguf<'_>) -> &'static str {
    let md = gguf.metadata();
    let general_type = md.get_str("general.type").unwrap_or("");
    let arch = md.architecture().unwrap_or("");
    let block_count = md.arch_u64("block_count").ok().flatten().unwrap_or(0);
    let vision_blocks = md
        .get_u64(&format!("{arch}.vision.block_count"))
        .unwrap_or(0);
    let has_encoder = |k: &str| md.get_bool(&format!("{arch}.{k}")).unwrap_or(false);
    if general_type == "adapter" {
        MEDIA_TYPE_ADAPTER
    } else if general_type == "projector"
        || general_type == "mmproj"
        || (block_count == 0 && vision_blocks > 0)
        || (arch == "clip"
            && block_count == 0
            && (has_encoder("has_vision_encoder") || has_encoder("has_audio_encoder")))
    {
        MEDIA_TYPE_PROJECTOR
    } else {
        MEDIA_TYPE_MODEL
    }
}

/// A split-GGUF key read as Ollama reads it: `split.KEY` or `ARCH.split.KEY`, any integer type
/// holding a `u16`.
fn split_value(gguf: &kiln_gguf::Gguf<'_>, key: &str) -> Option<u64> {
    let md = gguf.metadata();
    let arch = md.architecture().unwrap_or("");
    [format!("split.{key}"), format!("{arch}.split.{key}")]
        .iter()
        .find_map(|k| md.get(k)?.as_u64())
        .filter(|&v| v <= u16::MAX as u64)
}

/// Whether an uploaded GGUF is one shard of a split model: `(name prefix, split.no, split.count)`,
/// with Ollama's checks that the file name (`NAME-0000i-of-0000N.gguf`) agrees with the metadata.
fn split_shard(
    gguf: &kiln_gguf::Gguf<'_>,
    path: &str,
) -> Result<Option<(String, u64, u64)>, CreateError> {
    let Some(count) = split_value(gguf, "count").filter(|&c| c > 1) else {
        return Ok(None);
    };
    let base = path.rsplit('/').next().unwrap_or(path);
    let Some((prefix, index, name_count)) = parse_split_file_name(base) else {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} must use llama.cpp split filename pattern"
        )));
    };
    if name_count != count {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} filename count {name_count} does not match metadata count {count}"
        )));
    }
    let Some(no) = split_value(gguf, "no") else {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} is missing split.no metadata"
        )));
    };
    if no != index {
        return Err(CreateError::Split(format!(
            "split GGUF {path:?} filename index {index} does not match metadata index {no}"
        )));
    }
    Ok(Some((prefix.to_owned(), no, count)))
}

/// Ollama's undocumented `info` overrides of config fields, with its checks and messages.
fn apply_info(config: &mut ModelConfig, info: &AnyMap) -> Result<(), CreateError> {
    use serde_json::Value as Json;
    if let Some(Json::Array(caps)) = info.get("capabilities") {
        // Go leaves a non-string entry as "" in the appended list.
        config
            .capabilities
            .extend(caps.iter().map(|c| c.as_str().unwrap_or("").to_owned()));
    }
    let string = |key: &str| match info.get(key) {
        None => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(CreateError::Info(format!(
            "info field {key:?} must be a string"
        ))),
    };
    let integer = |key: &str| match info.get(key) {
        None => Ok(0i64),
        Some(Json::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v.is_nan() || v < 0.0 || v.trunc() != v || v > i64::MAX as f64 {
                Err(CreateError::Info(format!(
                    "info field {key:?} must be a non-negative integer"
                )))
            } else {
                Ok(v as i64)
            }
        }
        Some(_) => Err(CreateError::Info(format!(
            "info field {key:?} must be a number"
        ))),
    };
    config.model_family = string("model_family")?;
    if !config.model_family.is_empty() {
        config.model_families = Some(vec![config.model_family.clone()]);
    }
    config.base_name = string("base_name")?;
    config.file_type = string("quantization_level")?;
    config.model_type = string("parameter_size")?;
    config.context_length = integer("context_length")?;
    config.embedding_length = integer("embedding_length")?;
    Ok(())
}

/// Whether a file starts with the GGUF magic (reads 4 bytes, never the whole blob).
fn has_gguf_magic(path: &std::path::Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"GGUF"
}

fn or(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        a.to_owned()
    }
}

fn emit(
    sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    p: ProgressResponse,
) -> Result<(), CreateError> {
    match sink(p) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(CreateError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_that_would_not_fit_is_refused_before_it_starts() {
        let tmp = test_support::TempStore::new("space");
        let store = &tmp.store;
        let available = store.available_bytes().unwrap();
        assert!(available > 0 && available < u64::MAX);
        assert!(check_space(10, 10, store).is_ok());
        let err = check_space(11, 10, store).unwrap_err();
        assert_eq!(err.status(), 500);
        assert_eq!(
            err.to_string(),
            format!(
                "not enough disk space in {}: the new model needs 11 bytes, 10 are available",
                tmp.dir.join("blobs").display()
            )
        );
    }

    #[test]
    fn go_helpers() {
        assert!(valid_path("a.gguf") && valid_path("dir/a.gguf") && valid_path("."));
        assert!(
            !valid_path("/a")
                && !valid_path("a/")
                && !valid_path("../a")
                && !valid_path("a//b")
                && !valid_path("")
        );
        assert_eq!(human_number(0), "0");
        assert_eq!(human_number(8_030_261_248), "8.0B");
        assert_eq!(human_number(7_000_000_000), "7B");
        assert_eq!(human_number(494_032_768), "494.03M");
        assert_eq!(human_number(1_500), "2K");
        assert_eq!(file_type_name(Some(15)), "Q4_K_M");
        assert_eq!(file_type_name(Some(0)), "unknown");
        assert_eq!(file_type_name(None), "unknown");
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;
    use kiln_gguf::{GgmlType, TensorSpec, Value, Writer};

    fn tiny_model() -> Vec<u8> {
        let md = vec![
            ("general.architecture", Value::string("llama")),
            ("general.file_type", Value::U32(1)),
        ];
        let specs = [TensorSpec::new(
            "blk.0.attn_q.weight",
            GgmlType::F16,
            vec![256, 64],
        )];
        let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
        let data: Vec<u8> = (0..256 * 64)
            .flat_map(crate::quantize::f16_for_tests)
            .collect();
        w.write_tensor_data(&data).unwrap();
        w.finish().unwrap()
    }

    /// Ollama picks a renderer, parser and stop words by architecture for the request that names
    /// none (create.go's switch): the request's own values win, field by field.
    #[test]
    fn renderer_parser_and_stop_words_by_architecture() {
        let tmp = test_support::TempStore::new("engine-renderer");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let model_of = |arch: &str| {
            let md = vec![
                ("general.architecture", Value::string(arch.to_owned())),
                ("general.file_type", Value::U32(1)),
            ];
            let specs = [TensorSpec::new(
                "blk.0.attn_q.weight",
                GgmlType::F16,
                vec![256, 2],
            )];
            let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
            w.write_tensor_data(&[0u8; 1024]).unwrap();
            store
                .write_blob(&w.finish().unwrap()[..], None)
                .unwrap()
                .digest
        };
        let create = |tag: &str, digest: Digest, extra: serde_json::Value| {
            let mut request = serde_json::json!({
                "model": tag, "files": {"model.gguf": digest.to_string()}
            });
            request
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let request: CreateRequest = serde_json::from_value(request).unwrap();
            engine
                .create(request, &mut |_| ControlFlow::Continue(()))
                .unwrap();
            let m = store
                .manifest(&ModelName::parse(tag).unwrap())
                .unwrap()
                .manifest;
            let config: serde_json::Value = serde_json::from_slice(
                &std::fs::read(store.blob_path(&m.config.digest().unwrap())).unwrap(),
            )
            .unwrap();
            let params = m
                .layers
                .iter()
                .find(|l| l.media_type == MEDIA_TYPE_PARAMS)
                .map(|l| {
                    serde_json::from_slice::<serde_json::Value>(
                        &std::fs::read(store.blob_path(&l.digest().unwrap())).unwrap(),
                    )
                    .unwrap()
                });
            (config["renderer"].clone(), config["parser"].clone(), params)
        };
        let gemma4 = model_of("gemma4");
        assert_eq!(
            create("g4", gemma4, serde_json::json!({})),
            (
                serde_json::json!("gemma4"),
                serde_json::json!("gemma4"),
                Some(serde_json::json!({"stop": ["<turn|>"]}))
            )
        );
        assert_eq!(
            create(
                "g4b",
                gemma4,
                serde_json::json!({"parser": "mine", "parameters": {"stop": ["x"]}})
            ),
            (
                serde_json::json!("gemma4"),
                serde_json::json!("mine"),
                Some(serde_json::json!({"stop": ["x"]}))
            )
        );
        let (renderer, parser, params) =
            create("nh", model_of("nemotron_h_moe"), serde_json::json!({}));
        assert_eq!(
            (renderer, parser),
            (
                serde_json::json!("nemotron-3-nano"),
                serde_json::json!("nemotron-3-nano")
            )
        );
        assert_eq!(params, None);
        let (renderer, _, params) = create("ll", model_of("llama"), serde_json::json!({}));
        assert!(renderer.is_null() || renderer == "", "{renderer}");
        assert_eq!(params, None);
    }

    /// A model converted from FP8 weights is made Q8_0 when the create asks for no type, as
    /// Ollama's create does; asked for a type, it gets that one.
    #[test]
    fn fp8_conversions_default_to_q8_0() {
        let tmp = test_support::TempStore::new("engine-fp8");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let weight: Vec<u8> = (0..64 * 64).map(|i| (i % 120) as u8).collect();
        let scale: Vec<u8> = [0.01f32].iter().flat_map(|f| f.to_le_bytes()).collect();
        let norm = vec![0u8; 64 * 4];
        let tensors: [(&str, &str, &[u64], &[u8]); 3] = [
            (
                "model.layers.0.mlp.down_proj.weight",
                "F8_E4M3",
                &[64, 64],
                &weight,
            ),
            (
                "model.layers.0.mlp.down_proj.weight_scale_inv",
                "F32",
                &[1, 1],
                &scale,
            ),
            ("model.norm.weight", "F32", &[64], &norm),
        ];
        let config = br#"{"architectures": ["Ministral3ForCausalLM"], "hidden_size": 64,
            "num_attention_heads": 2, "block_count": 1,
            "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}"#;
        let mut files = BTreeMap::new();
        for (name, bytes) in [
            ("config.json", config.to_vec()),
            (
                "tokenizer.json",
                br#"{"model": {"vocab": {"a": 0, "b": 1}}}"#.to_vec(),
            ),
            (
                "model.safetensors",
                crate::convert::safetensors_for_tests(&tensors),
            ),
        ] {
            let digest = store.write_blob(&bytes[..], None).unwrap().digest;
            files.insert(name.to_owned(), digest.to_string());
        }
        for (tag, quantize, file_type, status) in [
            ("fp8", "", 7, "quantizing F16 model to Q8_0"),
            ("fp8-q4", "q4_0", 2, "quantizing F16 model to Q4_0"),
        ] {
            let request = CreateRequest {
                model: tag.into(),
                files: Some(files.clone()),
                quantize: quantize.into(),
                ..Default::default()
            };
            let mut statuses = Vec::new();
            engine
                .create(request, &mut |p| {
                    statuses.push(p.status);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert!(statuses.iter().any(|s| s == status), "{statuses:?}");
            let stored = model_layer(&store, tag, MEDIA_TYPE_MODEL);
            let g = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
            assert_eq!(g.metadata().file_type().unwrap(), Some(file_type));
        }
    }

    /// A LLaVA-style CLIP projector GGUF with its tensors, optionally naming its projector type.
    fn clip_projector(projector_type: Option<&str>) -> Vec<u8> {
        let mut md = vec![
            ("general.architecture", Value::string("clip")),
            ("clip.has_vision_encoder", Value::Bool(true)),
            ("clip.vision.block_count", Value::U32(1)),
            ("general.alignment", Value::U32(32)),
        ];
        if let Some(t) = projector_type {
            md.push(("clip.projector_type", Value::string(t)));
        }
        let specs = [
            TensorSpec::new("v.blk.0.attn_q.weight", GgmlType::F16, vec![32, 2]),
            TensorSpec::new("mm.2.bias", GgmlType::F32, vec![8]),
            TensorSpec::new("mm.0.weight", GgmlType::F16, vec![32, 8]),
        ];
        let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
        for (i, s) in specs.iter().enumerate() {
            let n = s.n_bytes().unwrap() as usize;
            w.write_tensor_data(&(0..n).map(|j| (j * 7 + i) as u8).collect::<Vec<_>>())
                .unwrap();
        }
        w.finish().unwrap()
    }

    /// Ollama's addDefaultLlavaProjectorType: an uploaded projector without a type gets
    /// `clip.projector_type = "mlp"`, rewritten by Ollama's writer (keys sorted, tensors by layer
    /// then name, bytes unchanged); one that names its type is kept as uploaded.
    #[test]
    fn uploaded_projectors_without_a_type_get_llavas_mlp() {
        let tmp = test_support::TempStore::new("engine-projector");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let model = store.write_blob(&tiny_model()[..], None).unwrap().digest;
        for (tag, projector_type) in [("untyped", None), ("typed", Some("ldp"))] {
            let upload = clip_projector(projector_type);
            let projector = store.write_blob(&upload[..], None).unwrap().digest;
            let files = BTreeMap::from([
                ("model.gguf".to_owned(), model.to_string()),
                ("mmproj.gguf".to_owned(), projector.to_string()),
            ]);
            let request = CreateRequest {
                model: tag.into(),
                files: Some(files),
                ..Default::default()
            };
            let mut statuses = Vec::new();
            engine
                .create(request, &mut |p| {
                    statuses.push(p.status);
                    ControlFlow::Continue(())
                })
                .unwrap();
            let updated = statuses
                .iter()
                .any(|s| s == "updating GGUF projector metadata");
            let stored = model_layer(&store, tag, MEDIA_TYPE_PROJECTOR);
            let source = kiln_gguf::Gguf::parse(&upload, &Limits::default()).unwrap();
            let ours = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
            if projector_type.is_some() {
                assert!(!updated, "{statuses:?}");
                assert!(stored == upload, "a typed projector is kept as uploaded");
                continue;
            }
            assert!(updated, "{statuses:?}");
            let keys: Vec<&str> = ours.metadata().iter().map(|(k, _)| k).collect();
            assert_eq!(
                keys,
                [
                    "clip.has_vision_encoder",
                    "clip.projector_type",
                    "clip.vision.block_count",
                    "general.alignment",
                    "general.architecture"
                ]
            );
            assert_eq!(
                ours.metadata().get_str("clip.projector_type").unwrap(),
                "mlp"
            );
            let names: Vec<&str> = ours.tensors().iter().map(|t| t.name()).collect();
            assert_eq!(names, ["mm.0.weight", "mm.2.bias", "v.blk.0.attn_q.weight"]);
            for t in ours.tensors() {
                assert_eq!(t.data(), source.tensor(t.name()).unwrap().data());
            }
        }
    }

    #[test]
    fn a_cancelled_create_leaves_the_store_as_it_was() {
        let tmp = test_support::TempStore::new("engine-cancel");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let model = tiny_model();
        let digest = store.write_blob(&model[..], None).unwrap().digest;
        let mut files = BTreeMap::new();
        files.insert("m.gguf".to_owned(), digest.to_string());
        let request = CreateRequest {
            model: "base".into(),
            files: Some(files),
            ..Default::default()
        };
        engine
            .create(request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let before = tmp.blob_files();
        let names_before = store.names().unwrap();

        // Cancel at each point a client could go away: after the first, second, … progress line,
        // up to the last. Gone at `success`, the model is written and the create succeeded.
        for stop_after in 0.. {
            let request = CreateRequest {
                model: "quantized".into(),
                from: "base".into(),
                quantize: "q8_0".into(),
                system: format!("prompt {stop_after}"),
                ..Default::default()
            };
            let mut seen = 0;
            let result = engine.create(request, &mut |_| {
                seen += 1;
                if seen > stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            if result.is_ok() {
                assert!(stop_after >= 5, "only {stop_after} lines");
                assert!(seen > stop_after, "the last line, success, was refused");
                assert!(
                    store
                        .manifest(&ModelName::parse("quantized").unwrap())
                        .is_ok()
                );
                delete(
                    &store,
                    &kiln_api::DeleteRequest {
                        model: "quantized".into(),
                        ..Default::default()
                    },
                )
                .unwrap();
                break;
            }
            assert!(matches!(result, Err(CreateError::Cancelled)), "{result:?}");
            assert_eq!(
                tmp.blob_files(),
                before,
                "cancelled after {stop_after} lines"
            );
            assert_eq!(store.names().unwrap(), names_before);
        }
        assert_eq!(tmp.blob_files(), before);
        // And an error after blobs were written (a bad license type) also leaves nothing behind.
        let request = CreateRequest {
            model: "broken".into(),
            from: "base".into(),
            system: "new system prompt".into(),
            license: Some(kiln_api::License::Other(serde_json::json!(42))),
            ..Default::default()
        };
        assert!(
            engine
                .create(request, &mut |_| ControlFlow::Continue(()))
                .is_err()
        );
        assert_eq!(tmp.blob_files(), before);
    }

    #[test]
    fn validation_errors_use_ollamas_messages_and_codes() {
        let tmp = test_support::TempStore::new("engine-errors");
        let engine = Engine::new(tmp.store.clone());
        let check = |req: CreateRequest, status: u16, message: &str| {
            let err = engine
                .create(req, &mut |_| ControlFlow::Continue(()))
                .unwrap_err();
            assert_eq!(
                (err.status(), err.to_string()),
                (status, message.to_owned())
            );
        };
        let files = |k: &str, v: &str| Some(BTreeMap::from([(k.to_owned(), v.to_owned())]));
        check(
            CreateRequest {
                model: "m".into(),
                files: files("../x.gguf", "sha256:00"),
                ..Default::default()
            },
            400,
            "file path must be relative",
        );
        check(
            CreateRequest {
                model: "m".into(),
                files: files("x.gguf", ""),
                ..Default::default()
            },
            400,
            "invalid digest format",
        );
        check(
            CreateRequest {
                model: "bad name!".into(),
                ..Default::default()
            },
            400,
            "invalid model name",
        );
        check(
            CreateRequest {
                model: "m".into(),
                ..Default::default()
            },
            400,
            "neither 'from' or 'files' was specified",
        );
        check(
            CreateRequest {
                model: "m".into(),
                files: Some(BTreeMap::new()),
                ..Default::default()
            },
            400,
            "unknown type",
        );
        check(
            CreateRequest {
                model: "m".into(),
                draft_quantize: "q4_K_M".into(),
                ..Default::default()
            },
            400,
            "--draft-quantize requires a DRAFT model",
        );
    }

    /// A 2-layer model as `count` shards the way gguf-py writes them: the first shard holds all
    /// metadata, every shard has split.no/split.count/split.tensors.count.
    fn split_model(count: u16) -> Vec<Vec<u8>> {
        let names: Vec<String> = (0..2)
            .flat_map(|l| {
                ["attn_q", "attn_k", "ffn_up"]
                    .into_iter()
                    .map(move |t| format!("blk.{l}.{t}.weight"))
            })
            .collect();
        let per_part = names.len().div_ceil(count as usize);
        names
            .chunks(per_part)
            .enumerate()
            .map(|(i, chunk)| {
                let mut md = Vec::new();
                if i == 0 {
                    md.push(("general.architecture", Value::string("llama")));
                    md.push(("general.file_type", Value::U32(1)));
                    md.push(("llama.block_count", Value::U32(2)));
                }
                md.push(("split.no", Value::U16(i as u16)));
                md.push(("split.count", Value::U16(count)));
                md.push(("split.tensors.count", Value::I32(names.len() as i32)));
                let specs: Vec<TensorSpec<'_>> = chunk
                    .iter()
                    .map(|n| TensorSpec::new(n.as_str(), GgmlType::F16, vec![256, 32]))
                    .collect();
                let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
                for (k, _) in specs.iter().enumerate() {
                    let data: Vec<u8> = (0..256 * 32)
                        .flat_map(|j| crate::quantize::f16_for_tests(j + 7 * k + 1000 * i))
                        .collect();
                    w.write_tensor_data(&data).unwrap();
                }
                w.finish().unwrap()
            })
            .collect()
    }

    fn collect(
        engine: &Engine,
        request: CreateRequest,
    ) -> (Result<(), CreateError>, Vec<ProgressResponse>) {
        let mut lines = Vec::new();
        let result = engine.create(request, &mut |p| {
            lines.push(p);
            ControlFlow::Continue(())
        });
        (result, lines)
    }

    fn config_of(store: &Store, name: &str) -> serde_json::Value {
        let m = store
            .manifest(&ModelName::parse(name).unwrap())
            .unwrap()
            .manifest;
        let d = m.config.digest().unwrap();
        serde_json::from_slice(&std::fs::read(store.blob_path(&d)).unwrap()).unwrap()
    }

    fn model_layer(store: &Store, name: &str, media_type: &str) -> Vec<u8> {
        let m = store
            .manifest(&ModelName::parse(name).unwrap())
            .unwrap()
            .manifest;
        let layers: Vec<_> = m
            .layers
            .iter()
            .filter(|l| l.media_type == media_type)
            .collect();
        assert_eq!(layers.len(), 1, "{name}: one {media_type} layer");
        std::fs::read(store.blob_path(&layers[0].digest().unwrap())).unwrap()
    }

    #[test]
    fn split_uploads_become_one_merged_model() {
        let tmp = test_support::TempStore::new("engine-split");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(2);
        let shards = split_model(3);
        let digests: Vec<String> = shards
            .iter()
            .map(|b| store.write_blob(&b[..], None).unwrap().digest.to_string())
            .collect();
        let files = |names: &[&str], which: &[usize]| {
            Some(
                names
                    .iter()
                    .zip(which)
                    .map(|(n, &i)| (n.to_string(), digests[i].clone()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let good = [
            "dir/m-00001-of-00003.gguf",
            "dir/m-00002-of-00003.gguf",
            "dir/m-00003-of-00003.gguf",
        ];
        let parsed: Vec<kiln_gguf::Gguf<'_>> = shards
            .iter()
            .map(|b| kiln_gguf::Gguf::parse(b, &Limits::default()).unwrap())
            .collect();
        for (quantize, ftype) in [("", FileType::Copy), ("q8_0", FileType::Q8_0)] {
            let name = format!("split{}", quantize.replace('_', ""));
            let (result, lines) = collect(
                &engine,
                CreateRequest {
                    model: name.clone(),
                    files: files(&good, &[0, 1, 2]),
                    quantize: quantize.into(),
                    ..Default::default()
                },
            );
            result.unwrap();
            let statuses: Vec<&str> = lines.iter().map(|l| l.status.as_str()).collect();
            assert_eq!(statuses.iter().filter(|s| **s == "parsing GGUF").count(), 3);
            let expected_status = if quantize.is_empty() {
                "validating GGUF model"
            } else {
                "quantizing F16 model to Q8_0"
            };
            assert!(statuses.contains(&expected_status), "{statuses:?}");
            let mut merged = Vec::new();
            crate::quantize::quantize_parts(
                &parsed,
                &mut merged,
                ftype,
                &QuantizeOptions {
                    allow_requantize: true,
                    ollama_overrides: true,
                    ..Default::default()
                },
                &mut crate::NoProgress,
            )
            .unwrap();
            let stored = model_layer(&store, &name, MEDIA_TYPE_MODEL);
            assert!(
                stored == merged,
                "{name}: the model layer is the merged model"
            );
            let gguf = kiln_gguf::Gguf::parse(&stored, &Limits::default()).unwrap();
            assert_eq!(gguf.tensors().len(), 6);
            assert!(gguf.metadata().get("split.count").is_none());
            let m = store
                .manifest(&ModelName::parse(&name).unwrap())
                .unwrap()
                .manifest;
            assert_eq!(m.layers.len(), 1);
            // Rewritten through COPY, the layer is a new one (Ollama's manifest.NewLayer): no
            // `from`, so the manifest's bytes (and its ID in `ollama list`) are Ollama's.
            assert_eq!(m.layers[0].from, "");
        }

        let check = |names: &[&str], which: &[usize], message: &str| {
            let (result, _) = collect(
                &engine,
                CreateRequest {
                    model: "bad".into(),
                    files: files(names, which),
                    ..Default::default()
                },
            );
            let err = result.unwrap_err();
            assert_eq!((err.status(), err.to_string()), (500, message.to_owned()));
        };
        check(
            &["m-00001-of-00003.gguf", "m-00002-of-00003.gguf"],
            &[0, 1],
            "split GGUF \"m-00001-of-00003.gguf\" has 2 shards, expected 3",
        );
        check(
            &["a.gguf"],
            &[0],
            "split GGUF \"a.gguf\" must use llama.cpp split filename pattern",
        );
        check(
            &["m-00002-of-00003.gguf"],
            &[0],
            "split GGUF \"m-00002-of-00003.gguf\" filename index 1 does not match metadata index 0",
        );
        check(
            &["m-00001-of-00004.gguf"],
            &[0],
            "split GGUF \"m-00001-of-00004.gguf\" filename count 4 does not match metadata count 3",
        );
    }

    #[test]
    fn progress_counts_tensors_as_ollama_does() {
        let tmp = test_support::TempStore::new("engine-progress");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let shards = split_model(1);
        let digest = store.write_blob(&shards[0][..], None).unwrap();
        let (result, lines) = collect(
            &engine,
            CreateRequest {
                model: "p".into(),
                files: Some(BTreeMap::from([(
                    "p.gguf".to_owned(),
                    digest.digest.to_string(),
                )])),
                quantize: "Q4_K_M".into(),
                ..Default::default()
            },
        );
        result.unwrap();
        let progress: Vec<&ProgressResponse> = lines
            .iter()
            .filter(|l| l.status == "quantizing F16 model to Q4_K_M")
            .collect();
        // One line per tensor start (llama-quantize's "[i/n]"), completed rising to about total.
        assert_eq!(progress.len(), 6);
        let total = digest.size as i64;
        let mut last = 0;
        for p in &progress {
            assert_eq!((p.digest.as_str(), p.total), ("0000000000000000000", total));
            assert!(p.completed > last);
            last = p.completed;
        }
        assert!(
            last <= total && last > total * 99 / 100,
            "{last} of {total}"
        );
    }

    #[test]
    fn info_overrides_config_fields_with_ollamas_checks() {
        let tmp = test_support::TempStore::new("engine-info");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
        let base = |info: serde_json::Value| CreateRequest {
            model: "i".into(),
            files: Some(BTreeMap::from([("i.gguf".to_owned(), digest.to_string())])),
            info: Some(serde_json::from_value(info).unwrap()),
            ..Default::default()
        };
        let (result, _) = collect(
            &engine,
            base(serde_json::json!({
                "capabilities": ["vision", 3, "tools"],
                "model_family": "fam",
                "base_name": "Base",
                "quantization_level": "Q9",
                "parameter_size": "1T",
                "context_length": 8192,
                "embedding_length": 4096.0,
                "unknown": true
            })),
        );
        result.unwrap();
        let config = config_of(&store, "i");
        assert_eq!(
            config["capabilities"],
            serde_json::json!(["vision", "", "tools"])
        );
        assert_eq!(config["model_family"], "fam");
        assert_eq!(
            config["model_families"],
            serde_json::json!(["fam", "llama"])
        );
        assert_eq!(config["base_name"], "Base");
        assert_eq!(config["file_type"], "Q9");
        assert_eq!(config["model_type"], "1T");
        assert_eq!(config["context_length"], 8192);
        assert_eq!(config["embedding_length"], 4096);
        // Without info the GGUF's values fill in.
        let (result, _) = collect(&engine, base(serde_json::json!({})));
        result.unwrap();
        let config = config_of(&store, "i");
        assert_eq!(config["model_family"], "llama");
        assert_eq!(config["file_type"], "F16");
        assert!(config.get("context_length").is_none());

        for (info, message) in [
            (
                serde_json::json!({"model_family": 5}),
                "info field \"model_family\" must be a string",
            ),
            (
                serde_json::json!({"parameter_size": null}),
                "info field \"parameter_size\" must be a string",
            ),
            (
                serde_json::json!({"context_length": "8k"}),
                "info field \"context_length\" must be a number",
            ),
            (
                serde_json::json!({"context_length": -1}),
                "info field \"context_length\" must be a non-negative integer",
            ),
            (
                serde_json::json!({"embedding_length": 1.5}),
                "info field \"embedding_length\" must be a non-negative integer",
            ),
            (
                serde_json::json!({"embedding_length": 1e300}),
                "info field \"embedding_length\" must be a non-negative integer",
            ),
        ] {
            let (result, _) = collect(&engine, base(info));
            let err = result.unwrap_err();
            assert_eq!((err.status(), err.to_string()), (400, message.to_owned()));
        }
    }

    #[test]
    fn draft_models_are_stored_and_quantized_as_ollama_does() {
        let tmp = test_support::TempStore::new("engine-draft");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let model = store.write_blob(&tiny_model()[..], None).unwrap().digest;
        let draft_bytes = split_model(1).remove(0);
        let draft = store.write_blob(&draft_bytes[..], None).unwrap().digest;
        let request = |draft_quantize: &str, draft_digest: Digest| CreateRequest {
            model: "d".into(),
            files: Some(BTreeMap::from([("m.gguf".to_owned(), model.to_string())])),
            draft_files: Some(BTreeMap::from([(
                "draft.gguf".to_owned(),
                draft_digest.to_string(),
            )])),
            draft_quantize: draft_quantize.into(),
            ..Default::default()
        };
        let (result, lines) = collect(&engine, request("q8_0", draft));
        result.unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.status == "quantizing F16 model to Q8_0")
        );
        let stored = model_layer(&store, "d", MEDIA_TYPE_DRAFT);
        let parsed = kiln_gguf::Gguf::parse(&draft_bytes, &Limits::default()).unwrap();
        let mut expected = Vec::new();
        crate::quantize::quantize_gguf(
            &parsed,
            &mut expected,
            FileType::Q8_0,
            &QuantizeOptions {
                allow_requantize: true,
                ollama_overrides: true,
                ..Default::default()
            },
            &mut crate::NoProgress,
        )
        .unwrap();
        assert!(stored == expected, "the draft layer is the quantized draft");
        let config = config_of(&store, "d");
        assert_eq!(
            config["draft"],
            serde_json::json!({"model_format": "gguf", "architecture": "llama"})
        );
        // The main model is not quantized by draft_quantize.
        assert_eq!(config["file_type"], "F16");

        // An already-quantized draft cannot be draft-quantized.
        let quantized = store.write_blob(&expected[..], None).unwrap().digest;
        let (result, _) = collect(&engine, request("q4_K_M", quantized));
        let err = result.unwrap_err();
        assert_eq!(
            (err.status(), err.to_string()),
            (
                500,
                "draft quantization requires an unquantized draft model, got Q8_0".to_owned()
            )
        );
        // A client that goes away at any line of a draft create cancels it: never a 400 for a
        // cancelled draft, and nothing of the model is left.
        let total = collect(&engine, request("q8_0", draft)).1.len();
        let names = store.names().unwrap();
        for stop_after in 0..total {
            let mut seen = 0;
            let result = engine.create(
                CreateRequest {
                    model: "d-cancelled".into(),
                    ..request("q8_0", draft)
                },
                &mut |_| {
                    seen += 1;
                    if seen > stop_after {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            );
            if stop_after + 1 == total {
                // Gone at `success`: the model is written, so the create succeeded.
                result.unwrap();
                assert!(
                    store
                        .manifest(&ModelName::parse("d-cancelled").unwrap())
                        .is_ok()
                );
                break;
            }
            let err = result.unwrap_err();
            assert!(
                matches!(err, CreateError::Cancelled),
                "cancel after {stop_after} lines: {err:?}"
            );
            assert_eq!(store.names().unwrap(), names);
        }
        // Draft problems are 400s.
        let (result, _) = collect(
            &engine,
            CreateRequest {
                model: "d".into(),
                files: Some(BTreeMap::from([("m.gguf".to_owned(), model.to_string())])),
                draft_files: Some(BTreeMap::new()),
                ..Default::default()
            },
        );
        let err = result.unwrap_err();
        assert_eq!(
            (err.status(), err.to_string()),
            (400, "unknown type".to_owned())
        );
    }

    /// A cancel probe that turns true stops a quantization within one chunk of rows of a big
    /// tensor, not at the next tensor, and leaves the store as it was.
    #[test]
    fn cancellation_stops_within_a_chunk_of_rows() {
        let tmp = test_support::TempStore::new("engine-cancel-chunk");
        let store = tmp.store.clone();
        let md = vec![
            ("general.architecture", Value::string("llama")),
            ("general.file_type", Value::U32(1)),
        ];
        // 16 Mi weights in one tensor: several of the quantizer's chunks.
        let specs = [TensorSpec::new(
            "blk.0.ffn_down.weight",
            GgmlType::F16,
            vec![4096, 4096],
        )];
        let mut w = Writer::new(Vec::new(), &md, &specs).unwrap();
        w.write_tensor_data(&vec![0x3c; 4096 * 4096 * 2]).unwrap();
        let digest = store
            .write_blob(&w.finish().unwrap()[..], None)
            .unwrap()
            .digest;
        let engine = Engine::new(store.clone()).with_threads(1);
        let before = tmp.blob_files();
        let asked = std::cell::Cell::new(0);
        let prepared = engine
            .prepare(CreateRequest {
                model: "big".into(),
                files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
                quantize: "q8_0".into(),
                ..Default::default()
            })
            .unwrap();
        let mut lines = Vec::new();
        let result = engine.run_cancellable(
            prepared,
            &mut |p| {
                lines.push(p.status);
                ControlFlow::Continue(())
            },
            &|| {
                asked.set(asked.get() + 1);
                true
            },
        );
        assert!(matches!(result, Err(CreateError::Cancelled)), "{result:?}");
        assert_eq!(asked.get(), 1, "stopped at the first chunk boundary");
        assert_eq!(
            lines.last().map(String::as_str),
            Some("quantizing F16 model to Q8_0")
        );
        assert_eq!(tmp.blob_files(), before);
        assert!(store.names().unwrap().is_empty());
    }

    /// The engine's limits bound what it parses: an upload within the defaults but beyond a
    /// tighter limit is refused before anything is written.
    #[test]
    fn the_engines_limits_bound_the_files_it_reads() {
        let tmp = test_support::TempStore::new("engine-limits");
        let store = tmp.store.clone();
        let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
        let request = || CreateRequest {
            model: "limited".into(),
            files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
            ..Default::default()
        };
        let strict = Engine::new(store.clone()).with_limits(Limits::default().max_metadata(1));
        let before = tmp.blob_files();
        let err = strict
            .create(request(), &mut |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert!(
            matches!(err, CreateError::Gguf(_)),
            "two metadata entries, one allowed: {err:?}"
        );
        assert_eq!(tmp.blob_files(), before);
        assert!(store.names().unwrap().is_empty());
        Engine::new(store.clone())
            .create(request(), &mut |_| ControlFlow::Continue(()))
            .unwrap();
    }

    /// A model whose blobs are damaged is an error from show, naming the blob, never a response
    /// with empty fields.
    #[test]
    fn show_reports_corrupt_and_missing_blobs() {
        let tmp = test_support::TempStore::new("engine-show-corrupt");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone()).with_threads(1);
        let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
        let request = CreateRequest {
            model: "damaged".into(),
            files: Some(BTreeMap::from([("m.gguf".to_owned(), digest.to_string())])),
            system: "You are kiln.".into(),
            ..Default::default()
        };
        engine
            .create(request, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let name = ModelName::parse("damaged").unwrap();
        let manifest = store.manifest(&name).unwrap().manifest;
        let show_it = || {
            show(
                &store,
                &kiln_api::ShowRequest {
                    model: "damaged".into(),
                    ..Default::default()
                },
            )
        };
        let healthy = show_it().unwrap();
        assert_eq!(healthy.system, "You are kiln.");
        assert_eq!(healthy.model_info["general.architecture"], "llama");

        let path_of = |media_type: &str| {
            let layer = manifest.layers_of(media_type).next().unwrap();
            store.blob_path(&layer.digest().unwrap())
        };
        let config_path = store.blob_path(&manifest.config.digest().unwrap());
        let cases = [
            ("config", config_path, &b"{not json"[..]),
            ("model", path_of(MEDIA_TYPE_MODEL), &b"GGUF\x03\0\0\0"[..]),
            ("system", path_of(MEDIA_TYPE_SYSTEM), &b"\xff\xfe"[..]),
        ];
        for (what, path, garbage) in cases {
            let good = std::fs::read(&path).unwrap();
            std::fs::write(&path, garbage).unwrap();
            let err = show_it().unwrap_err();
            assert_eq!(err.status(), 500, "{what}: {err}");
            assert!(
                matches!(&err, ManageError::CorruptBlob { what: w, .. } if *w == what),
                "{what}: {err}"
            );
            assert!(
                err.to_string().starts_with("model 'damaged:latest': "),
                "{err}"
            );
            std::fs::remove_file(&path).unwrap();
            let err = show_it().unwrap_err();
            assert_eq!(err.status(), 404, "{what}: {err}");
            assert!(
                matches!(&err, ManageError::MissingBlob { what: w, .. } if *w == what),
                "{what}: {err}"
            );
            std::fs::write(&path, good).unwrap();
            assert_eq!(show_it().unwrap().system, "You are kiln.");
        }
    }

    /// Ollama's TestCreateAndShowRemoteModel, TestCreateFromCloudSourceSuffix and
    /// TestCreateRemoteModelRejectsDraftFiles, through kiln's engine and show.
    #[test]
    fn remote_models_store_only_their_config() {
        let tmp = test_support::TempStore::new("engine-remote");
        let store = tmp.store.clone();
        let engine = Engine::new(store.clone());
        let info = serde_json::json!({
            "capabilities": ["completion", "tools", "thinking"],
            "model_family": "gptoss",
            "context_length": 131072,
            "embedding_length": 2880,
            "quantization_level": "MXFP4",
            "parameter_size": "20.9B",
        });
        let (result, lines) = collect(
            &engine,
            CreateRequest {
                model: "test".into(),
                from: "bob".into(),
                remote_host: "https://ollama.com".into(),
                info: Some(serde_json::from_value(info).unwrap()),
                ..Default::default()
            },
        );
        result.unwrap();
        assert_eq!(lines.last().unwrap().status, "success");
        let shown = show(
            &store,
            &kiln_api::ShowRequest {
                model: "test".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(shown.details.family, "gptoss");
        assert_eq!(shown.details.families, Some(vec!["gptoss".to_owned()]));
        assert_eq!(shown.details.parameter_size, "20.9B");
        assert_eq!(shown.details.quantization_level, "MXFP4");
        assert_eq!(shown.details.format, "");
        assert_eq!(shown.capabilities, ["completion", "tools", "thinking"]);
        assert_eq!(shown.model_info["gptoss.context_length"], 131072);
        assert_eq!(shown.model_info["gptoss.embedding_length"], 2880);
        assert_eq!(shown.remote_model, "bob");
        assert_eq!(shown.remote_host, "https://ollama.com:11434");
        let manifest = store
            .manifest(&ModelName::parse("test").unwrap())
            .unwrap()
            .manifest;
        assert!(manifest.layers.is_empty());

        let (result, _) = collect(
            &engine,
            CreateRequest {
                model: "test-cloud-from-suffix".into(),
                from: "gpt-oss:20b:cloud".into(),
                info: Some(
                    serde_json::from_value(serde_json::json!({"capabilities": ["completion"]}))
                        .unwrap(),
                ),
                ..Default::default()
            },
        );
        result.unwrap();
        let config = config_of(&store, "test-cloud-from-suffix");
        assert_eq!(config["remote_host"], "https://ollama.com:443");
        assert_eq!(config["remote_model"], "gpt-oss:20b");

        let digest = store.write_blob(&tiny_model()[..], None).unwrap().digest;
        for (request, message) in [
            (
                CreateRequest {
                    model: "test-remote-draft".into(),
                    from: "bob".into(),
                    remote_host: "https://ollama.com".into(),
                    draft_files: Some(BTreeMap::from([(
                        "draft.gguf".to_owned(),
                        digest.to_string(),
                    )])),
                    ..Default::default()
                },
                "DRAFT cannot be used with remote models",
            ),
            (
                CreateRequest {
                    model: "r".into(),
                    from: "bob".into(),
                    remote_host: "http://[::1]:namedport".into(),
                    ..Default::default()
                },
                "bad remote",
            ),
            (
                CreateRequest {
                    model: "r".into(),
                    from: "bob:local:cloud".into(),
                    ..Default::default()
                },
                "invalid model name",
            ),
        ] {
            let (result, _) = collect(&engine, request);
            let err = result.unwrap_err();
            assert_eq!((err.status(), err.to_string()), (400, message.to_owned()));
        }
    }
}
