//! kiln: the create engine that composes kiln-gguf, kiln-quant, kiln-store and kiln-api.
