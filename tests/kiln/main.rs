//! The root crate's integration tests, one binary: conversion against Ollama's converter and
//! llama.cpp's, whole-model quantization against llama.cpp, and the reference server driven by
//! the official clients.

mod convert;
mod model_quant;
mod server;
