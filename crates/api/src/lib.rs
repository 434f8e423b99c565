//! kiln-api: Serde types of the Ollama model-management API.
