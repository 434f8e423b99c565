//! Ollama's `/api/create`, on a [`kiln_store::Store`]: resolve the source (`from` a local model or
//! uploaded `files`), quantize or validate the GGUF through [`crate::quantize`], add the template,
//! system, license, parameters and messages layers and the config blob, then write the manifest —
//! streaming the status lines Ollama streams, with its error messages and HTTP codes.
//!
//! The store only changes by complete blobs first and the manifest last; a failed or cancelled
//! create removes the blobs it added that nothing references, leaving the store as it was.

mod models;

pub use models::{ManageError, copy, delete, list, show};

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use kiln_api::{AnyMap, CreateRequest, ProgressResponse};
use kiln_gguf::{GgufFile, Limits};
use kiln_store::{
    CONFIG_MEDIA_TYPE, Digest, Layer, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE, Manifest, ModelConfig, ModelName, Store, StoreError,
};

use crate::quantize::{
    FileType, QuantizeError, QuantizeEvent, QuantizeOptions, UnknownFileType, quantize_gguf,
};

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
    /// The source model is not in the store (kiln does not pull from registries).
    #[error(
        "pull model manifest: model '{0}' not found locally and kiln does not pull from registries"
    )]
    SourceNotFound(String),
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
    /// Safetensors and other formats kiln does not convert yet.
    #[error("kiln cannot convert {0} models yet; upload a GGUF file")]
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
            | CreateError::Unsupported(_) => 400,
            CreateError::SourceNotFound(_) => 404,
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

/// Runs creates against one store.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    threads: usize,
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
        Engine { store, threads: 0 }
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
        let mut created: Vec<Digest> = Vec::new();
        let old = self.store.manifest(&prepared.name).ok();
        let result = self.build(&prepared, sink, &mut created);
        match result {
            Ok(()) => {
                if let Some(old) = old {
                    self.remove_unused(
                        old.manifest.digests().filter_map(|d| Digest::parse(d).ok()),
                    );
                }
                emit(sink, ProgressResponse::status("success"))
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

    fn build(
        &self,
        prepared: &Prepared,
        sink: &mut dyn FnMut(ProgressResponse) -> ControlFlow<()>,
        created: &mut Vec<Digest>,
    ) -> Result<(), CreateError> {
        let req = &prepared.request;
        let _guard = self.store.create_guard()?;
        let mut config = ModelConfig::new();
        config.renderer = req.renderer.clone();
        config.parser = req.parser.clone();
        config.requires = req.requires.clone();
        let mut layers: Vec<Pending> = Vec::new();
        // (index in `layers`, whether Ollama rewrites it through llama-quantize's COPY)
        let mut models: Vec<(usize, bool)> = Vec::new();

        if !req.from.is_empty() {
            let from =
                ModelName::parse(req.from.trim()).map_err(|_| CreateError::InvalidModelName)?;
            let source = self.store.manifest(&from).map_err(|e| match e {
                StoreError::ModelNotFound { .. } => {
                    CreateError::SourceNotFound(from.display_shortest())
                }
                other => other.into(),
            })?;
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
                    models.push((layers.len(), false));
                }
                layers.push(Pending {
                    layer,
                    status: format!("using existing layer {digest}"),
                });
            }
        } else if let Some(files) = &req.files {
            let mut ggufs = Vec::new();
            for (path, digest) in files {
                if path.ends_with(".safetensors") {
                    return Err(CreateError::Unsupported("safetensors".into()));
                }
                let d = Digest::parse(digest).map_err(|_| CreateError::InvalidDigest)?;
                let blob = self.store.blob_path(&d);
                let is_gguf = path.ends_with(".gguf") || has_gguf_magic(&blob);
                if is_gguf {
                    ggufs.push((path.clone(), d));
                }
            }
            if ggufs.is_empty() {
                return Err(CreateError::UnknownType);
            }
            for (path, digest) in ggufs {
                emit(sink, ProgressResponse::status("parsing GGUF"))?;
                let blob = self.store.blob_path(&digest);
                if !blob.is_file() {
                    return Err(CreateError::MissingBlob(blob.display().to_string()));
                }
                let magic_ok = has_gguf_magic(&blob);
                if !magic_ok {
                    return Err(CreateError::NotGguf);
                }
                let media_type = self.media_type_of(&digest)?;
                let mut layer = Layer::new(media_type, digest, self.store.blob_size(&digest)?);
                layer.from = path;
                if media_type == MEDIA_TYPE_MODEL {
                    models.push((layers.len(), true));
                }
                layers.push(Pending {
                    layer,
                    status: format!("using existing layer {digest}"),
                });
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

        if let Some(adapters) = &req.adapters {
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
                        CreateError::Unsupported("safetensors".into())
                    } else {
                        CreateError::NotGguf
                    });
                }
                emit(sink, ProgressResponse::status("parsing GGUF"))?;
                let mut layer = Layer::new(MEDIA_TYPE_ADAPTER, d, self.store.blob_size(&d)?);
                layer.from = path.clone();
                layers.push(Pending {
                    layer,
                    status: format!("using existing layer {d}"),
                });
            }
        }

        let quantize = req.quantize_type().to_ascii_uppercase();
        for (index, rewrite) in models {
            let digest = layers[index]
                .layer
                .digest()
                .map_err(|_| CreateError::InvalidDigest)?;
            let file = self.map_blob(&digest)?;
            let gguf = file.parse(&Limits::default())?;
            let source_ft = gguf.metadata().file_type().ok().flatten();
            let source_name = file_type_name(source_ft);
            let job = if quantize.is_empty() {
                rewrite.then(|| (FileType::Copy, "validating GGUF model".to_owned()))
            } else {
                let want: FileType = quantize.parse()?;
                if !matches!(source_name.as_str(), "F16" | "BF16" | "F32") {
                    return Err(CreateError::AlreadyQuantized);
                }
                (want.llama_ftype() != source_ft).then(|| {
                    (
                        want,
                        format!("quantizing {source_name} model to {quantize}"),
                    )
                })
            };
            if let Some((ftype, status)) = job {
                let total = layers[index].layer.size;
                let tensor_bytes = gguf
                    .tensors()
                    .iter()
                    .map(|t| t.data().len() as u64)
                    .sum::<u64>()
                    .max(1);
                let mut progress = |e: &QuantizeEvent<'_>| match *e {
                    QuantizeEvent::Bytes { done, .. } => {
                        let completed = (done as f32 / tensor_bytes as f32 * total as f32) as i64;
                        sink(ProgressResponse {
                            status: status.clone(),
                            digest: "0000000000000000000".into(),
                            total,
                            completed,
                        })
                    }
                    QuantizeEvent::Tensor { .. } => ControlFlow::Continue(()),
                };
                let options = QuantizeOptions {
                    threads: self.threads,
                    allow_requantize: true,
                    ollama_overrides: true,
                    ..Default::default()
                };
                let mut writer = self.store.blob_writer()?;
                match quantize_gguf(&gguf, &mut writer, ftype, &options, &mut progress) {
                    Err(QuantizeError::Cancelled) => return Err(CreateError::Cancelled),
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                emit(sink, ProgressResponse::status("verifying conversion"))?;
                let stored = writer.commit()?;
                if stored.created {
                    created.push(stored.digest);
                }
                let from = std::mem::take(&mut layers[index].layer.from);
                let mut layer = Layer::new(MEDIA_TYPE_MODEL, stored.digest, stored.size);
                layer.from = from;
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
            self.describe_model(&mut config, index, &layers)?;
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
        self.set_parameters(
            &mut layers,
            req.parameters.clone().unwrap_or_default(),
            created,
        )?;
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

    /// Ollama's media type for an uploaded GGUF: adapter, projector or model.
    fn media_type_of(&self, digest: &Digest) -> Result<&'static str, CreateError> {
        let file = self.map_blob(digest)?;
        let gguf = file.parse(&Limits::default())?;
        let md = gguf.metadata();
        let general_type = md.get_str("general.type").unwrap_or("");
        let arch = md.architecture().unwrap_or("");
        let block_count = md.arch_u64("block_count").ok().flatten().unwrap_or(0);
        let vision_blocks = md
            .get_u64(&format!("{arch}.vision.block_count"))
            .unwrap_or(0);
        let has_encoder = |k: &str| md.get_bool(&format!("{arch}.{k}")).unwrap_or(false);
        Ok(if general_type == "adapter" {
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
        })
    }

    /// Fills the config fields Ollama derives from the model layer.
    fn describe_model(
        &self,
        config: &mut ModelConfig,
        index: usize,
        layers: &[Pending],
    ) -> Result<(), CreateError> {
        let digest = layers[index]
            .layer
            .digest()
            .map_err(|_| CreateError::InvalidDigest)?;
        let file = self.map_blob(&digest)?;
        let gguf = file.parse(&Limits::default())?;
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

    fn blobs(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(store.root().join("blobs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_cancelled_create_leaves_the_store_as_it_was() {
        let dir = std::env::temp_dir().join(format!("kiln-engine-cancel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
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
        let before = blobs(&store);
        let names_before = store.names().unwrap();

        // Cancel at each point a client could go away: after the first, second, … progress line.
        for stop_after in 0..4 {
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
            assert!(matches!(result, Err(CreateError::Cancelled)), "{result:?}");
            assert_eq!(blobs(&store), before, "cancelled after {stop_after} lines");
            assert_eq!(store.names().unwrap(), names_before);
        }
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
        assert_eq!(blobs(&store), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_errors_use_ollamas_messages_and_codes() {
        let dir = std::env::temp_dir().join(format!("kiln-engine-errors-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::new(Store::open(&dir).unwrap());
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
