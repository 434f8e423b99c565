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
//! [`CreateSink`] and stops at the next chunk of rows once its [`Cancel`] token fires. Ollama's
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

mod error;
mod event;
mod job;
mod layers;
mod status;

pub use error::CreateError;
pub use event::{CreateSink, Event};
pub use job::{BlobRef, CreateJob, CreateJobBuilder, JobFiles, ModelSource, Quantize};
use layers::{chat_template_of, has_gguf_magic};
pub use models::{ManageError, copy, delete, list, show};
pub use remote::{CLOUD_HOST, Source, parse_model_ref, remote_url};
pub use status::HttpStatus;
pub use transfer::{Repair, Transfer, TransferError};

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use kiln_api::{AnyMap, CreateRequest, ProgressResponse};

use crate::Cancel;
use kiln_gguf::{GgufFile, Limits};
use kiln_go::format::human_number;
use kiln_go::path::valid_path;
use kiln_registry::{Client, ClientOptions, PullOptions, RegistryError};
use kiln_store::{
    CONFIG_MEDIA_TYPE, Digest, Layer, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE, Manifest, ModelConfig, ModelName, Store, StoreError,
};

use crate::convert::{Conversion, ModelFolder};
use crate::quantize::{
    FileType, QuantizeError, QuantizeEvent, QuantizeOptions, SourceModel, quantize_parts,
};
use crate::template;

/// Ollama's media type for a draft (speculative decoding) model layer.
pub const MEDIA_TYPE_DRAFT: &str = "application/vnd.ollama.image.draft";

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
    /// Bounds on what an uploaded Hugging Face folder can make the converter read or generate.
    convert_limits: crate::convert::ConvertLimits,
}

/// The file types Ollama names (`fs/ggml.FileType.String`) that kiln does not write, by
/// `general.file_type` number; the others are named as [`FileType::name`] names them.
const OTHER_OLLAMA_FILE_TYPES: [(u32, &str); 13] = [
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (31, "IQ1_M"),
    (39, "NVFP4"),
    (40, "Q1_0"),
];

/// Ollama's `FileType.String()` for a `general.file_type` value (0 reads as unknown, as in
/// Ollama, and so do numbers it has no name for, such as 4, GPT-OSS's).
fn file_type_name(ft: Option<u32>) -> String {
    let Some(n) = ft.filter(|&n| n > 0) else {
        return "unknown".to_owned();
    };
    FileType::from_llama_ftype(n)
        .map(FileType::name)
        .or_else(|| {
            OTHER_OLLAMA_FILE_TYPES
                .iter()
                .find(|(number, _)| *number == n)
                .map(|(_, name)| *name)
        })
        .unwrap_or("unknown")
        .to_owned()
}

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
            convert_limits: crate::convert::ConvertLimits::default(),
        }
    }

    /// Sets the bounds on the Hugging Face folders a create converts (JSON file sizes, counts a
    /// `config.json` implies); a folder beyond them is refused before anything is generated.
    pub fn with_convert_limits(mut self, limits: crate::convert::ConvertLimits) -> Engine {
        self.convert_limits = limits;
        self
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

    /// Ollama's request as a job, with the checks Ollama makes before it starts streaming (their
    /// errors are plain JSON responses) and the name resolved to an existing model's spelling.
    pub fn prepare(&self, request: CreateRequest) -> Result<CreateJob, CreateError> {
        let mut job = CreateJob::from_request(request)?;
        job.name = self.store.existing_name(&job.name)?;
        Ok(job)
    }

    /// Runs a job, reporting to `sink` (whose `ControlFlow::Break` cancels it) and checking
    /// `cancel` between chunks of rows while it converts and quantizes, so a client that goes
    /// away (or a shutdown) stops a long tensor within one chunk rather than at the next
    /// progress line, which Ollama's per-tensor figures make seconds apart.
    ///
    /// The store changes by complete blobs and then the manifest; a failed or cancelled job
    /// removes the blobs it added that nothing references.
    pub fn run(
        &self,
        job: CreateJob,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
    ) -> Result<(), CreateError> {
        let name = self.store.existing_name(&job.name)?;
        let mut created: Vec<Digest> = Vec::new();
        let old = self.store.manifest(&name).ok();
        let result = self.build(&job, &name, sink, cancel, &mut created);
        match result {
            Ok(()) => {
                if let Some(old) = old {
                    self.remove_unused(
                        old.manifest.digests().filter_map(|d| Digest::parse(d).ok()),
                    );
                }
                // The model is written: a client gone at this last line does not undo that, so
                // the outcome is success, not a cancellation.
                let _ = sink.event(&Event::Success);
                Ok(())
            }
            Err(e) => {
                self.remove_unused(created.into_iter());
                Err(e)
            }
        }
    }

    /// Ollama's request in, its status lines out: [`prepare`](Self::prepare) then
    /// [`run`](Self::run), each event given to `sink` as the line the server would stream.
    pub fn create(
        &self,
        request: CreateRequest,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
    ) -> Result<(), CreateError> {
        let job = self.prepare(request)?;
        self.run(job, &mut |e: &Event| sink(e.into()), &Cancel::new())
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
        Ok(Pending::stored(
            Layer::new(media_type, stored.digest, stored.size),
            stored.created,
        ))
    }

    /// Builds and stores the model.
    fn build(
        &self,
        job: &CreateJob,
        name: &ModelName,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
        created: &mut Vec<Digest>,
    ) -> Result<(), CreateError> {
        let _guard = self.store.create_guard()?;
        let mut config = ModelConfig::new();
        config.renderer = job.renderer.clone();
        config.parser = job.parser.clone();
        config.requires = job.requires.clone();
        let mut layers: Vec<Pending> = Vec::new();
        let mut models: Vec<ModelSlot> = Vec::new();
        // Projector GGUFs uploaded in `files` (Ollama may rewrite their metadata).
        let mut uploaded_projectors: Vec<usize> = Vec::new();

        let mut remote = false;
        if let ModelSource::From { model, remote_host } = &job.source {
            let (base, source) = parse_model_ref(model).ok_or(CreateError::InvalidModelName)?;
            ModelName::parse(&base).map_err(|_| CreateError::InvalidModelName)?;
            let remote_host = match (remote_host.as_str(), source) {
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
        } else if let ModelSource::From { model, .. } = &job.source {
            let (base, _) = parse_model_ref(model).ok_or(CreateError::InvalidModelName)?;
            let from = ModelName::parse(&base).map_err(|_| CreateError::InvalidModelName)?;
            let source = match self.store.manifest(&from) {
                // Ollama pulls a `from` that is not local, then reads it again.
                Err(StoreError::ModelNotFound { .. }) => {
                    let client = self.registry_client()?;
                    let options = PullOptions {
                        insecure: false,
                        no_prune: self.no_prune,
                    };
                    kiln_registry::pull(client, &self.store, &from, &options, &mut |line| {
                        sink.event(&Event::Pulling(line))
                    })?;
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
                layers.push(Pending::existing(layer));
            }
        } else if let ModelSource::Files(files) = &job.source {
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

        if remote && job.draft_files.as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(CreateError::RemoteDraft);
        }
        if let Some(adapters) = job.adapters.as_ref().filter(|_| !remote) {
            if adapters.len() > 1 {
                return Err(CreateError::OnlyOneAdapter);
            }
            for (path, blob) in adapters {
                if !valid_path(path) {
                    return Err(CreateError::FilePath);
                }
                let d = blob.digest()?;
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
                emit(sink, Event::ParsingGguf)?;
                let file = self.map_blob(&d)?;
                let chat_template = chat_template_of(&file.parse(&self.limits)?);
                let mut layer = Layer::new(MEDIA_TYPE_ADAPTER, d, self.store.blob_size(&d)?);
                layer.from = path.clone();
                layers.push(Pending::existing(layer));
                let detected = self.detected_template_layers(chat_template.as_deref(), created)?;
                layers.extend(detected);
            }
        }

        if let Some(draft_files) = job.draft_files.as_ref().filter(|_| !remote) {
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
        if let Some(info) = &job.info {
            apply_info(&mut config, info)?;
        }

        // The request's parameters, which a model's architecture may add stop words to.
        let mut parameters = job.parameters.clone().unwrap_or_default();
        // Ollama refuses a bad quantize request, then a bad template, each only once it gets
        // there (after minutes of quantizing, for the template); both are checked here, in that
        // order, before any work starts.
        let mut planned = Vec::with_capacity(models.len());
        for slot in models {
            let wanted = if slot.draft {
                job.draft_quantize.as_ref()
            } else {
                job.quantize.as_ref()
            };
            let loaded = self.load(&slot, &layers)?;
            let parts = loaded.parts(&self.limits)?;
            let model = SourceModel::new(&parts).map_err(QuantizeError::from)?;
            let step = plan_job(&slot, &model, wanted)?;
            planned.push((slot, step));
        }
        if !job.template.is_empty() {
            template::check(&job.template)?;
        }
        for (slot, step) in planned {
            let index = slot.index;
            let loaded = self.load(&slot, &layers)?;
            let parts = loaded.parts(&self.limits)?;
            let model = SourceModel::new(&parts).map_err(QuantizeError::from)?;
            if let (None, Loaded::Converted(conversion, _)) = (&step, &loaded) {
                // Kept as converted (the quantize type is the conversion's own): written now.
                let stored = self.write_conversion(conversion, sink, cancel)?;
                if stored.created {
                    created.push(stored.digest);
                }
                // Ollama writes the converted blob before it makes the layer: never "new".
                let layer = Layer::new(MEDIA_TYPE_MODEL, stored.digest, stored.size);
                layers[index] = Pending::existing(layer);
            }
            if let Some(step) = step {
                let ftype = step.file_type();
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
                        sink.event(&step.event((fraction * size as f32) as i64, size))
                    }
                    QuantizeEvent::Bytes { .. } | QuantizeEvent::TensorDone { .. }
                        if cancel.is_cancelled() =>
                    {
                        ControlFlow::Break(())
                    }
                    QuantizeEvent::Bytes { .. } | QuantizeEvent::TensorDone { .. } => {
                        ControlFlow::Continue(())
                    }
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
                emit(sink, Event::VerifyingConversion)?;
                let stored = writer.commit()?;
                if stored.created {
                    created.push(stored.digest);
                }
                // A rewritten layer is a new layer (Ollama's `manifest.NewLayer`): it has no
                // `from`.
                let media_type = layers[index].layer.media_type.clone();
                let layer = Layer::new(media_type, stored.digest, stored.size);
                layers[index] = Pending::stored(layer, stored.created);
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

        if !job.template.is_empty() {
            layers.retain(|p| p.layer.media_type != MEDIA_TYPE_TEMPLATE);
            layers.push(self.new_layer(job.template.as_bytes(), MEDIA_TYPE_TEMPLATE, created)?);
        }
        if !job.system.is_empty() {
            layers.retain(|p| p.layer.media_type != MEDIA_TYPE_SYSTEM);
            layers.push(self.new_layer(job.system.as_bytes(), MEDIA_TYPE_SYSTEM, created)?);
        }
        for license in job.licenses.clone().map_err(CreateError::License)? {
            layers.push(self.new_layer(license.as_bytes(), MEDIA_TYPE_LICENSE, created)?);
        }
        self.set_parameters(&mut layers, parameters, created)?;
        if !job.messages.is_empty() {
            layers.retain(|p| p.layer.media_type != MEDIA_TYPE_MESSAGES);
            let bytes = kiln_api::try_to_go_json_line(&job.messages)
                .map_err(|e| CreateError::License(e.to_string()))?;
            layers.push(self.new_layer(&bytes, MEDIA_TYPE_MESSAGES, created)?);
        }

        let config_blob = self.store.write_blob(&config.to_bytes()[..], None)?;
        if config_blob.created {
            created.push(config_blob.digest);
        }
        for p in &layers {
            emit(sink, p.event()?)?;
        }
        emit(sink, Event::WritingManifest)?;
        let manifest = Manifest::new(
            Layer::new(CONFIG_MEDIA_TYPE, config_blob.digest, config_blob.size),
            layers.into_iter().map(|p| p.layer).collect(),
        );
        self.store.write_manifest(name, &manifest)?;
        Ok(())
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

/// What a model slot's quantization writes: the file type, and how its progress reads.
struct Step {
    /// The type to write.
    to: FileType,
    /// The source's file type name, for the `quantizing … model to …` line.
    from: String,
    /// The type as the request spelled it, `None` for llama.cpp's COPY (`validating GGUF model`).
    spelled: Option<String>,
}

impl Step {
    fn file_type(&self) -> FileType {
        self.to
    }

    /// The progress event at `completed` of `total`.
    fn event(&self, completed: i64, total: i64) -> Event {
        match &self.spelled {
            None => Event::Validating { completed, total },
            Some(spelled) => Event::Quantizing {
                from: self.from.clone(),
                to: self.to,
                spelled: spelled.clone(),
                completed,
                total,
            },
        }
    }
}

/// What a model slot needs: a file type to write, or nothing (kept as uploaded). Errors are
/// Ollama's refusals of the `quantize` / `draft_quantize` value.
fn plan_job(
    slot: &ModelSlot,
    model: &SourceModel<'_, '_>,
    wanted: Option<&Quantize>,
) -> Result<Option<Step>, CreateError> {
    let source_ft = model.metadata().file_type().ok().flatten();
    let source_name = file_type_name(source_ft);
    // Ollama makes a model converted from FP8 weights Q8_0 when no type is asked for, rather
    // than keep the BF16 they were decoded to.
    let fp8_default;
    let wanted = if wanted.is_none()
        && !slot.draft
        && from_fp8(model.metadata())
        && matches!(source_name.as_str(), "F16" | "BF16" | "F32")
    {
        fp8_default = Quantize::from(FileType::Q8_0);
        Some(&fp8_default)
    } else {
        wanted
    };
    let Some(wanted) = wanted else {
        // Ollama validates through llama-quantize's COPY only what llama.cpp's text loader
        // can read: a model with embedded (vision, audio, …) tensors is kept as it is.
        let embedded = model
            .tensors()
            .iter()
            .any(|t| crate::quantize::is_embedded_tensor(t.name()));
        return Ok((slot.rewrite && !embedded).then_some(Step {
            to: FileType::Copy,
            from: source_name,
            spelled: None,
        }));
    };
    let want = wanted.file_type()?;
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
    Ok((want.llama_ftype() != source_ft).then(|| Step {
        to: want,
        from: source_name,
        spelled: Some(wanted.spelled().to_owned()),
    }))
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

/// Go's `cmp.Or` of two strings, owned.
fn or(a: &str, b: &str) -> String {
    kiln_go::cmp::or(&[a, b]).to_owned()
}

fn emit(sink: &mut dyn CreateSink, event: Event) -> Result<(), CreateError> {
    match sink.event(&event) {
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
        assert_eq!(file_type_name(Some(15)), "Q4_K_M");
        // Every name Ollama's fs/ggml/type.go gives, by its iota order (F32 = 0 … Q1_0 = 40,
        // with 4-6 and 33-35 removed from GGUF and unnamed).
        let ollama = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "",
            "",
            "",
            "Q8_0",
            "Q5_0",
            "Q5_1",
            "Q2_K",
            "Q3_K_S",
            "Q3_K_M",
            "Q3_K_L",
            "Q4_K_S",
            "Q4_K_M",
            "Q5_K_S",
            "Q5_K_M",
            "Q6_K",
            "IQ2_XXS",
            "IQ2_XS",
            "Q2_K_S",
            "IQ3_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ3_M",
            "IQ2_S",
            "IQ2_M",
            "IQ4_XS",
            "IQ1_M",
            "BF16",
            "",
            "",
            "",
            "TQ1_0",
            "TQ2_0",
            "MXFP4_MOE",
            "NVFP4",
            "Q1_0",
            "",
        ];
        for (n, name) in ollama.iter().enumerate().skip(1) {
            let want = if name.is_empty() { "unknown" } else { name };
            assert_eq!(file_type_name(Some(n as u32)), want, "file type {n}");
        }
        assert_eq!(file_type_name(Some(0)), "unknown");
        assert_eq!(file_type_name(None), "unknown");
    }
}

#[cfg(test)]
mod engine_tests;
