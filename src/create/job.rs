//! What a create makes, typed: [`CreateJob`], built by an embedder with [`CreateJobBuilder`]
//! (file types and digests, not strings) or from Ollama's wire request by
//! [`Engine::prepare`](super::Engine::prepare).
//!
//! The wire can say things the types cannot (a quantize name kiln does not know, a malformed
//! digest, a license of the wrong JSON type). Ollama refuses those only when its create reaches
//! them, after other checks and progress lines, so a job made from a request keeps them and the
//! engine refuses them at the same point; a builder cannot make them.

use std::collections::BTreeMap;

use kiln_api::{AnyMap, CreateRequest, Message};
use kiln_store::{Digest, ModelName};

use kiln_go::path::valid_path;

use super::CreateError;
use crate::quantize::{FileType, UnknownFileType};

/// The blob behind one file of a job: a digest, or (from the wire) the text that was sent,
/// refused as `invalid digest format` where Ollama refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef(Result<Digest, String>);

impl BlobRef {
    /// The digest, or Ollama's `invalid digest format`.
    pub fn digest(&self) -> Result<Digest, CreateError> {
        self.0.clone().map_err(|_| CreateError::InvalidDigest)
    }

    /// The digest when the reference is one.
    pub fn as_digest(&self) -> Option<&Digest> {
        self.0.as_ref().ok()
    }

    fn from_wire(text: &str) -> BlobRef {
        BlobRef(Digest::parse(text).map_err(|_| text.to_owned()))
    }

    /// Whether the wire sent nothing at all (refused before streaming starts).
    fn is_empty(&self) -> bool {
        matches!(&self.0, Err(text) if text.is_empty())
    }
}

impl From<Digest> for BlobRef {
    fn from(digest: Digest) -> BlobRef {
        BlobRef(Ok(digest))
    }
}

/// The files of a job by their name in the model folder (`model.gguf`, `config.json`, …), in
/// name order as Ollama walks them.
pub type JobFiles = BTreeMap<String, BlobRef>;

/// A quantization a job asks for: a [`FileType`], named as it was asked (llama-quantize's
/// aliases, such as `Q4_K`, appear in the status line as written).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantize {
    spelled: String,
    parsed: Result<FileType, UnknownFileType>,
}

impl Quantize {
    /// The file type, or Ollama's `unsupported quantization type …` for a name kiln does not
    /// know.
    pub fn file_type(&self) -> Result<FileType, CreateError> {
        self.parsed.clone().map_err(CreateError::from)
    }

    /// The name as asked, upper-cased (Ollama's status line uses it).
    pub fn spelled(&self) -> &str {
        &self.spelled
    }

    /// A wire value (`quantize` or `draft_quantize`): none when empty.
    fn from_wire(text: &str) -> Option<Quantize> {
        (!text.is_empty()).then(|| Quantize {
            spelled: text.to_ascii_uppercase(),
            parsed: text.parse(),
        })
    }
}

impl From<FileType> for Quantize {
    fn from(ftype: FileType) -> Quantize {
        Quantize {
            spelled: ftype.name().to_owned(),
            parsed: Ok(ftype),
        }
    }
}

/// Where a job's model comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// Another model: local, pulled first when it is not, or remote (a config that names an
    /// upstream host and model, nothing stored locally).
    From {
        /// The model reference (`llama3.2`, `host/ns/name:tag`, `name:cloud`, …).
        model: String,
        /// The upstream host of a remote model (empty: local, or `:cloud`'s default).
        remote_host: String,
    },
    /// Uploaded blobs: a GGUF (possibly split), projectors and adapters, or a Hugging Face
    /// folder to convert. An empty set is Ollama's `unknown type`.
    Files(JobFiles),
    /// Neither (Ollama's `neither 'from' or 'files' was specified`).
    Nothing,
}

/// A create, ready to run with [`Engine::run`](super::Engine::run).
#[derive(Clone, Debug, PartialEq)]
pub struct CreateJob {
    pub(super) name: ModelName,
    pub(super) source: ModelSource,
    pub(super) draft_files: Option<JobFiles>,
    pub(super) adapters: Option<JobFiles>,
    pub(super) quantize: Option<Quantize>,
    pub(super) draft_quantize: Option<Quantize>,
    pub(super) template: String,
    pub(super) system: String,
    pub(super) licenses: Result<Vec<String>, String>,
    pub(super) parameters: Option<AnyMap>,
    pub(super) messages: Vec<Message>,
    pub(super) renderer: String,
    pub(super) parser: String,
    pub(super) requires: String,
    pub(super) info: Option<AnyMap>,
}

impl CreateJob {
    /// A job that makes `name`; say where the model comes from with
    /// [`from_model`](CreateJobBuilder::from_model) or [`file`](CreateJobBuilder::file).
    pub fn builder(name: ModelName) -> CreateJobBuilder {
        CreateJobBuilder {
            job: CreateJob {
                name,
                source: ModelSource::Nothing,
                draft_files: None,
                adapters: None,
                quantize: None,
                draft_quantize: None,
                template: String::new(),
                system: String::new(),
                licenses: Ok(Vec::new()),
                parameters: None,
                messages: Vec::new(),
                renderer: String::new(),
                parser: String::new(),
                requires: String::new(),
                info: None,
            },
        }
    }

    /// Ollama's request as a job, with the checks Ollama makes before it starts streaming
    /// (their errors are plain JSON responses); what Ollama checks later stays in the job.
    pub fn from_request(request: CreateRequest) -> Result<CreateJob, CreateError> {
        let files = |map: &Option<BTreeMap<String, String>>| {
            map.as_ref().map(|m| {
                m.iter()
                    .map(|(path, digest)| (path.clone(), BlobRef::from_wire(digest)))
                    .collect::<JobFiles>()
            })
        };
        let uploaded = files(&request.files);
        let draft_files = files(&request.draft_files);
        let adapters = files(&request.adapters);
        let draft_quantize = Quantize::from_wire(&request.draft_quantize);
        // Ollama checks the uploaded paths (even when `from` wins), then the name.
        check(
            uploaded.as_ref(),
            draft_files.as_ref(),
            draft_quantize.is_some(),
            adapters.as_ref(),
        )?;
        let name =
            ModelName::parse(request.model_name()).map_err(|_| CreateError::InvalidModelName)?;
        let source = match (request.from.is_empty(), uploaded) {
            (false, _) => ModelSource::From {
                model: request.from.clone(),
                remote_host: request.remote_host.clone(),
            },
            (true, Some(files)) => ModelSource::Files(files),
            (true, None) => ModelSource::Nothing,
        };
        Ok(CreateJob {
            name,
            source,
            draft_files,
            adapters,
            quantize: Quantize::from_wire(request.quantize_type()),
            draft_quantize,
            licenses: request.licenses().map_err(|e| e.to_string()),
            template: request.template,
            system: request.system,
            parameters: request.parameters,
            messages: request.messages,
            renderer: request.renderer,
            parser: request.parser,
            requires: request.requires,
            info: request.info,
        })
    }

    /// The model the job makes.
    pub fn name(&self) -> &ModelName {
        &self.name
    }

    /// Where its model comes from.
    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    /// The quantization asked for the model, if any.
    pub fn quantize(&self) -> Option<&Quantize> {
        self.quantize.as_ref()
    }
}

/// Builds a [`CreateJob`]; [`build`](Self::build) makes Ollama's checks.
#[derive(Clone, Debug)]
pub struct CreateJobBuilder {
    job: CreateJob,
}

impl CreateJobBuilder {
    /// Makes the model from another one (local, else pulled from its registry).
    pub fn from_model(mut self, model: impl Into<String>) -> Self {
        self.job.source = ModelSource::From {
            model: model.into(),
            remote_host: String::new(),
        };
        self
    }

    /// Makes a remote model: `model` served by the Ollama at `host` (only a config is stored).
    pub fn remote(mut self, model: impl Into<String>, host: impl Into<String>) -> Self {
        self.job.source = ModelSource::From {
            model: model.into(),
            remote_host: host.into(),
        };
        self
    }

    /// Adds an uploaded file (a GGUF, a split GGUF's shard, a projector, or one file of a Hugging
    /// Face folder), by its name in the folder and the blob that holds it.
    pub fn file(mut self, path: impl Into<String>, digest: Digest) -> Self {
        if !matches!(self.job.source, ModelSource::Files(_)) {
            self.job.source = ModelSource::Files(JobFiles::new());
        }
        if let ModelSource::Files(files) = &mut self.job.source {
            files.insert(path.into(), digest.into());
        }
        self
    }

    /// Adds a file of the draft (speculative decoding) model.
    pub fn draft_file(mut self, path: impl Into<String>, digest: Digest) -> Self {
        self.job
            .draft_files
            .get_or_insert_with(JobFiles::new)
            .insert(path.into(), digest.into());
        self
    }

    /// Adds a LoRA adapter (Ollama takes one).
    pub fn adapter(mut self, path: impl Into<String>, digest: Digest) -> Self {
        self.job
            .adapters
            .get_or_insert_with(JobFiles::new)
            .insert(path.into(), digest.into());
        self
    }

    /// Quantizes the model to `ftype` (F16, BF16 and F32 sources only, as Ollama).
    pub fn quantize(mut self, ftype: FileType) -> Self {
        self.job.quantize = Some(ftype.into());
        self
    }

    /// Quantizes the draft model to `ftype`.
    pub fn draft_quantize(mut self, ftype: FileType) -> Self {
        self.job.draft_quantize = Some(ftype.into());
        self
    }

    /// The prompt template (Go template syntax, checked before any work starts).
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.job.template = template.into();
        self
    }

    /// The system prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.job.system = system.into();
        self
    }

    /// Adds a license text (one layer each).
    pub fn license(mut self, text: impl Into<String>) -> Self {
        if let Ok(licenses) = &mut self.job.licenses {
            licenses.push(text.into());
        }
        self
    }

    /// Sets a runtime parameter (`num_ctx`, `stop`, …) for the params layer.
    pub fn parameter(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.job
            .parameters
            .get_or_insert_with(AnyMap::new)
            .insert(key.into(), value);
        self
    }

    /// Adds a message of the seed conversation.
    pub fn message(mut self, message: Message) -> Self {
        self.job.messages.push(message);
        self
    }

    /// The renderer recorded in the config (Ollama's built-in prompt renderers).
    pub fn renderer(mut self, renderer: impl Into<String>) -> Self {
        self.job.renderer = renderer.into();
        self
    }

    /// The output parser recorded in the config.
    pub fn parser(mut self, parser: impl Into<String>) -> Self {
        self.job.parser = parser.into();
        self
    }

    /// The minimum Ollama version the model needs.
    pub fn requires(mut self, version: impl Into<String>) -> Self {
        self.job.requires = version.into();
        self
    }

    /// The job, after the checks Ollama makes before it starts (relative file paths, a draft for
    /// a draft quantization).
    pub fn build(self) -> Result<CreateJob, CreateError> {
        let job = self.job;
        let uploaded = match &job.source {
            ModelSource::Files(files) => Some(files),
            _ => None,
        };
        check(
            uploaded,
            job.draft_files.as_ref(),
            job.draft_quantize.is_some(),
            job.adapters.as_ref(),
        )?;
        Ok(job)
    }
}

/// Ollama's pre-stream checks: every uploaded and draft path relative and clean with a
/// digest, a draft for a draft quantization, a digest for every adapter.
fn check(
    uploaded: Option<&JobFiles>,
    draft_files: Option<&JobFiles>,
    draft_quantize: bool,
    adapters: Option<&JobFiles>,
) -> Result<(), CreateError> {
    for (path, blob) in uploaded.into_iter().chain(draft_files).flatten() {
        if !valid_path(path) {
            return Err(CreateError::FilePath);
        }
        if blob.is_empty() {
            return Err(CreateError::InvalidDigest);
        }
    }
    if draft_quantize && draft_files.is_none_or(|f| f.is_empty()) {
        return Err(CreateError::DraftQuantizeWithoutDraft);
    }
    if adapters.into_iter().flatten().any(|(_, b)| b.is_empty()) {
        return Err(CreateError::InvalidDigest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap()
    }

    #[test]
    fn a_built_job_equals_the_request_it_stands_for() {
        let d = digest();
        let built = CreateJob::builder(ModelName::parse("m").unwrap())
            .file("model.gguf", d)
            .quantize(FileType::Q4_K_M)
            .system("be brief")
            .license("MIT")
            .parameter("num_ctx", serde_json::json!(4096))
            .build()
            .unwrap();
        let request = CreateRequest {
            model: "m".into(),
            files: Some(BTreeMap::from([("model.gguf".into(), d.to_string())])),
            quantize: "q4_K_M".into(),
            system: "be brief".into(),
            license: Some(kiln_api::License::Text("MIT".into())),
            parameters: Some(AnyMap::from([("num_ctx".into(), serde_json::json!(4096))])),
            ..Default::default()
        };
        let mut from_wire = CreateJob::from_request(request).unwrap();
        // Only the spelling differs: the wire's is kept for the status line.
        assert_eq!(from_wire.quantize.as_ref().unwrap().spelled(), "Q4_K_M");
        from_wire.quantize = Some(FileType::Q4_K_M.into());
        assert_eq!(built, from_wire);
    }

    #[test]
    fn wire_values_the_types_cannot_hold_fail_where_ollama_fails() {
        let request = CreateRequest {
            model: "m".into(),
            files: Some(BTreeMap::from([("model.gguf".into(), "sha256:zz".into())])),
            quantize: "q4_k".into(),
            draft_quantize: String::new(),
            ..Default::default()
        };
        let job = CreateJob::from_request(request).unwrap();
        let ModelSource::Files(files) = job.source() else {
            panic!("files expected")
        };
        assert_eq!(
            files["model.gguf"].digest().unwrap_err().to_string(),
            "invalid digest format"
        );
        let q = job.quantize().unwrap();
        assert_eq!(
            (q.spelled(), q.file_type().unwrap()),
            ("Q4_K", FileType::Q4_K_M)
        );
        let bad = Quantize::from_wire("q9_x").unwrap();
        assert!(
            bad.file_type()
                .unwrap_err()
                .to_string()
                .starts_with("unsupported quantization type Q9_X")
        );
        assert_eq!(Quantize::from_wire(""), None);
    }

    #[test]
    fn the_builder_makes_ollamas_pre_stream_checks() {
        let name = || ModelName::parse("m").unwrap();
        let err = CreateJob::builder(name())
            .file("../model.gguf", digest())
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "file path must be relative");
        let err = CreateJob::builder(name())
            .file("model.gguf", digest())
            .draft_quantize(FileType::Q8_0)
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "--draft-quantize requires a DRAFT model");
        assert!(
            CreateJob::builder(name())
                .file("model.gguf", digest())
                .draft_file("draft.gguf", digest())
                .draft_quantize(FileType::Q8_0)
                .build()
                .is_ok()
        );
    }
}
