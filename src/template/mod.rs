//! Prompt templates: Ollama's built-in chat templates (matched against a GGUF's Jinja
//! `tokenizer.chat_template`) and the Go `text/template` syntax check Ollama applies to a
//! template before storing it.

mod named;

pub use named::{NamedTemplate, detect};
