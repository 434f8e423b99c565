//! kiln-gguf: GGUF v2/v3 reader (zero-copy, bounded by Limits) and streaming writer.
