//! kiln-api's integration tests, one binary: encoding, Ollama's golden bytes, the official Python
//! client against kiln's types, and request decoding.

mod encoding;
mod golden;
mod python_client;
mod requests;
