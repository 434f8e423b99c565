//! Whole-model quantization: llama.cpp's per-tensor type policy and a streaming pipeline.
