//! The layers a create's `files` make: uploaded GGUFs (split ones merged), projectors,
//! adapters, a Hugging Face folder to convert, and the chat templates Ollama detects in them.

use std::collections::BTreeMap;

use kiln_store::{
    Digest, Layer, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_TEMPLATE,
};

use super::shards::{ShardGroup, merge_shards, split_shard};
use super::step::check_space;
use super::{CreateError, CreateSink, Engine, Event, JobFiles, Pending, emit};
use crate::Cancel;
use crate::convert::{Conversion, ConvertError, ModelFolder};
use crate::quantize::QuantizeError;
use crate::template;

/// A model layer found in `files`: its pending layer, the blobs of a split GGUF in part order
/// (empty for one file), and the folder a safetensors upload is converted from.
pub(super) struct Staged {
    pub(super) pending: Pending,
    pub(super) parts: Vec<Digest>,
    pub(super) folder: Option<ModelFolder>,
}

impl Staged {
    pub(super) fn layer(pending: Pending) -> Staged {
        Staged {
            pending,
            parts: Vec::new(),
            folder: None,
        }
    }
}

impl Engine {
    /// Ollama's safetensors `files`: the folder they make is converted to the F16 GGUF Ollama's
    /// converter writes (status `converting model`), which then goes through the same
    /// validation or quantization as an uploaded GGUF. The conversion runs inside that
    /// quantization, so the converted GGUF is never stored; the layer gets its blob then. A
    /// vision tower Ollama writes to its own projector GGUF is stored now, as a projector
    /// layer after the model's (Ollama's order), never quantized.
    pub(super) fn converted_layers(
        &self,
        files: &JobFiles,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
        created: &mut Vec<Digest>,
    ) -> Result<Vec<Staged>, CreateError> {
        let mut paths = BTreeMap::new();
        for (path, blob) in files {
            let d = blob.digest()?;
            let blob = self.store.blob_path(&d);
            if !blob.is_file() {
                return Err(CreateError::MissingBlob(blob.display().to_string()));
            }
            paths.insert(path.clone(), blob);
        }
        emit(
            sink,
            Event::Converting {
                written: 0,
                total: 0,
            },
        )?;
        // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
        let folder = unsafe { ModelFolder::map_files(paths) }?.with_limits(self.convert_limits);
        let conversion = Conversion::plan(&folder)?;
        let header = conversion.header()?;
        let chat_template =
            chat_template_of(&kiln_gguf::Gguf::parse_header(&header, &self.limits)?);
        let layer = Layer {
            media_type: MEDIA_TYPE_MODEL.to_owned(),
            size: conversion.output_len()? as i64,
            ..Layer::default()
        };
        let projector = match conversion.projector() {
            None => None,
            Some(projector) => {
                // Written whole as Ollama writes it: no progress of its own.
                let stored =
                    self.write_conversion(projector, &mut crate::progress::NoProgress, cancel)?;
                if stored.created {
                    created.push(stored.digest);
                }
                let layer = Layer::new(MEDIA_TYPE_PROJECTOR, stored.digest, stored.size);
                Some(Pending::stored(layer, stored.created))
            }
        };
        drop(conversion);
        let mut out = vec![Staged {
            // Replaced once the conversion is written or quantized.
            pending: Pending::existing(layer),
            parts: Vec::new(),
            folder: Some(folder),
        }];
        out.extend(projector.map(Staged::layer));
        for pending in self.detected_template_layers(chat_template.as_deref(), created)? {
            out.push(Staged::layer(pending));
        }
        Ok(out)
    }

    /// Ollama's `addDefaultLlavaProjectorType`: an uploaded LLaVA-style CLIP projector
    /// (`clip` with a vision encoder) that names no projector type gets `clip.projector_type =
    /// "mlp"`, the file rewritten as Ollama's GGUF writer writes it (keys sorted, tensors in
    /// its order, bytes unchanged), with status `updating GGUF projector metadata`.
    pub(super) fn add_default_projector_type(
        &self,
        pending: &mut Pending,
        sink: &mut dyn CreateSink,
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
        emit(sink, Event::UpdatingProjector)?;
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
        *pending = Pending::stored(layer, stored.created);
        Ok(())
    }

    /// Writes a conversion as it is (a folder whose quantize type is the converted one) to a
    /// blob, with `converting model` byte progress, stopping within a chunk when `cancel` fires.
    pub(super) fn write_conversion(
        &self,
        conversion: &Conversion<'_>,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
    ) -> Result<kiln_store::StoredBlob, CreateError> {
        check_space(
            conversion.output_len()?,
            self.store.available_bytes()?,
            &self.store,
        )?;
        let mut writer = self.store.blob_writer()?;
        let mut progress = |p: &crate::convert::ConvertProgress| {
            sink.event(&Event::Converting {
                written: p.written,
                total: p.total,
            })
        };
        match conversion.write_with_progress(&mut writer, &mut cancel.guard(&mut progress)) {
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
    pub(super) fn gguf_layers(
        &self,
        files: &JobFiles,
        media_type: Option<&'static str>,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
        created: &mut Vec<Digest>,
    ) -> Result<Vec<Staged>, CreateError> {
        let mut is_gguf = false;
        for (path, blob) in files {
            if path.ends_with(".safetensors") {
                if media_type.is_some() {
                    // Ollama converts only Qwen 3.5 multi-token-prediction drafts.
                    return Err(CreateError::Unsupported("safetensors draft models".into()));
                }
                return self.converted_layers(files, sink, cancel, created);
            }
            if path.ends_with(".gguf") {
                is_gguf = true;
                break;
            }
            let Some(d) = blob.as_digest() else {
                break;
            };
            if has_gguf_magic(&self.store.blob_path(d)) {
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
        for (path, blob) in files {
            emit(sink, Event::ParsingGguf)?;
            let d = blob.digest()?;
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
            let pending = Pending::existing(layer);
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
        out.extend(merge_shards(groups)?);
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
    pub(super) fn detected_template_layers(
        &self,
        chat_template: Option<&str>,
        created: &mut Vec<Digest>,
    ) -> Result<Vec<Pending>, CreateError> {
        let Some(named) = chat_template.and_then(template::detect) else {
            return Ok(Vec::new());
        };
        let mut layer = self.new_layer(named.template.as_bytes(), MEDIA_TYPE_TEMPLATE, created)?;
        layer.detected_template = Some(named.name.to_string());
        let mut layers = vec![layer];
        if let Some(params) = &named.params {
            layers.push(self.new_layer(params, MEDIA_TYPE_PARAMS, created)?);
        }
        Ok(layers)
    }
}

/// A GGUF's Jinja chat template, when it has one as a string (as Ollama reads it).
pub(super) fn chat_template_of(gguf: &kiln_gguf::Gguf<'_>) -> Option<String> {
    match gguf.metadata().get("tokenizer.chat_template") {
        Some(kiln_gguf::Value::String(s)) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

/// Ollama's media type for an uploaded GGUF: adapter, projector or model.
pub(super) fn media_type_of(gguf: &kiln_gguf::Gguf<'_>) -> &'static str {
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

/// Whether a file starts with the GGUF magic (reads 4 bytes, never the whole blob).
pub(super) fn has_gguf_magic(path: &std::path::Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"GGUF"
}
