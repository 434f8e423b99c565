//! kiln-quant's integration tests, one binary: the committed ggml golden vectors, and the
//! differential comparison with the real ggml plus properties.

mod golden;
mod quant;
