//! kiln-store: The Ollama models directory: names, digests, blobs, manifests, config blobs.
