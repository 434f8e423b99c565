//! The engine: one store, its limits and threads, the registry client made on first use; it
//! turns requests into jobs and runs them.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use kiln_api::{CreateRequest, ProgressResponse};
use kiln_gguf::{GgufFile, Limits};
use kiln_registry::{Client, ClientOptions, RegistryError};
use kiln_store::{Digest, Layer, Store, StoreError, StoreGuard};

use super::{CreateError, CreateJob, CreateSink, Event, Pending};
use crate::Cancel;

/// Runs creates, pulls and pushes against one store.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(super) store: Store,
    pub(super) threads: usize,
    /// How the registry client is made, when the first pull or push needs it.
    pub(super) registry_options: ClientOptions,
    /// The registry client, made once and shared by clones (it keeps the tokens it was given).
    pub(super) registry: Arc<OnceLock<Client>>,
    /// Keep blobs a re-pulled model no longer uses (`OLLAMA_NOPRUNE`).
    pub(super) no_prune: bool,
    /// Bounds on every GGUF the engine parses (uploads, pulled and existing models).
    pub(super) limits: Limits,
    /// Bounds on what an uploaded Hugging Face folder can make the converter read or generate.
    pub(super) convert_limits: crate::convert::ConvertLimits,
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
    pub(super) fn registry_client(&self) -> Result<&Client, RegistryError> {
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
        self.run_inner(job, sink, cancel, None)
    }

    /// [`run`](Self::run) for a caller that already holds a [`Store::create_guard`] (it stored
    /// the job's input blobs itself, and a gc must not take them before the manifest refers to
    /// them): the engine releases `guard` once the model is built, before it removes blobs under
    /// the exclusive lock, which would otherwise wait for that guard forever.
    pub fn run_holding(
        &self,
        job: CreateJob,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
        guard: StoreGuard,
    ) -> Result<(), CreateError> {
        self.run_inner(job, sink, cancel, Some(guard))
    }

    fn run_inner(
        &self,
        job: CreateJob,
        sink: &mut dyn CreateSink,
        cancel: &Cancel,
        guard: Option<StoreGuard>,
    ) -> Result<(), CreateError> {
        let name = self.store.existing_name(&job.name)?;
        let mut created: Vec<Digest> = Vec::new();
        let old = self.store.manifest(&name).ok();
        let result = self.build(&job, &name, sink, cancel, &mut created);
        drop(guard);
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
    pub(super) fn remove_unused(&self, digests: impl Iterator<Item = Digest>) {
        let _ = self.store.remove_unreferenced(digests);
    }

    pub(super) fn new_layer(
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

    /// Memory-maps a blob for parsing.
    pub(super) fn map_blob(&self, digest: &Digest) -> Result<GgufFile, StoreError> {
        let path = self.store.blob_path(digest);
        // SAFETY: blobs are content-addressed and written once; nothing modifies them in place.
        unsafe { GgufFile::map(&path) }.map_err(|source| StoreError::Io { path, source })
    }
}
