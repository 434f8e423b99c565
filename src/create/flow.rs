//! The create flow, in Ollama's order: the source (a `from` model, pulled if need be, or the
//! uploaded files), adapters and drafts, each model layer's validation or quantization, then the
//! template, system, license, parameters and messages layers, the config blob and the manifest.

use std::ops::ControlFlow;

use kiln_gguf::{GgufFile, Limits};
use kiln_go::path::valid_path;
use kiln_registry::PullOptions;
use kiln_store::{
    CONFIG_MEDIA_TYPE, Digest, Layer, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE, Manifest,
    ModelConfig, ModelName, StoreError,
};

use super::config::{apply_info, or};
use super::layers::{chat_template_of, has_gguf_magic};
use super::step::{check_space, plan_job};
use super::{
    CLOUD_HOST, CreateError, CreateJob, CreateSink, Engine, Event, MEDIA_TYPE_DRAFT, ModelSource,
    Pending, Source, emit, parse_model_ref, remote_url,
};
use crate::Cancel;
use crate::convert::{Conversion, ModelFolder};
use crate::quantize::{QuantizeError, QuantizeEvent, QuantizeOptions, SourceModel, quantize_parts};
use crate::template;

/// A model-like layer to validate or quantize.
pub(super) struct ModelSlot {
    /// Its index in the layer list.
    pub(super) index: usize,
    /// Whether Ollama rewrites it through llama-quantize's COPY even without a quantize type.
    pub(super) rewrite: bool,
    /// The blobs of a split GGUF, in part order (empty for one file).
    pub(super) parts: Vec<Digest>,
    /// A draft model (`draft_files`), quantized by `draft_quantize`.
    pub(super) draft: bool,
    /// A Hugging Face folder, converted as it is quantized (the layer has no blob until then).
    pub(super) folder: Option<ModelFolder>,
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

impl Engine {
    /// Builds and stores the model.
    pub(super) fn build(
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
            for staged in self.gguf_layers(files, None, sink, cancel, created)? {
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
                .gguf_layers(draft_files, Some(MEDIA_TYPE_DRAFT), sink, cancel, created)
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
                let ftype = step.to;
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
