//! The one JSON encoder for everything kiln puts on the wire: byte-for-byte what Go's `encoding/json`
//! (v1, as used by Ollama through gin) writes for the same value. The encoder itself is
//! [`kiln_go::json`] (whose documentation gives the rules); this module adds [`Wire`], the types whose
//! encoding cannot fail, and the infallible [`to_go_json`] / [`to_ndjson_line`] over them.

use serde::Serialize;
use serde_json::Value;

pub use kiln_go::json::{f32_value, try_to_go_json, try_to_go_json_line};

/// Types whose Go encoding cannot fail, so the server can encode them without an error path.
///
/// Sealed: implemented for the kiln-api wire types, `serde_json::Value` (whose keys are always
/// strings and whose numbers are always finite), and slices, `Vec`s and string-keyed `BTreeMap`s of
/// these (e.g. a model's messages or parameters blob).
pub trait Wire: Serialize + sealed::Sealed {}

pub(crate) mod sealed {
    /// Keeps [`super::Wire`] closed to types known to serialize infallibly.
    pub trait Sealed {}
}

impl sealed::Sealed for Value {}
impl Wire for Value {}
impl<T: Wire> sealed::Sealed for [T] {}
impl<T: Wire> Wire for [T] {}
impl<T: Wire> sealed::Sealed for Vec<T> {}
impl<T: Wire> Wire for Vec<T> {}
impl<V: Wire> sealed::Sealed for std::collections::BTreeMap<String, V> {}
impl<V: Wire> Wire for std::collections::BTreeMap<String, V> {}

/// Encodes like Go's `json.Marshal` (what gin's `c.JSON` sends): compact, HTML-escaped, no trailing
/// newline.
pub fn to_go_json<T: Wire + ?Sized>(value: &T) -> Vec<u8> {
    match try_to_go_json(value) {
        Ok(bytes) => bytes,
        // Wire types contain only string-keyed maps, strings, integers and finite numbers; writing
        // them into a Vec has no failure path.
        Err(e) => unreachable!("kiln-api wire type failed to serialize: {e}"),
    }
}

/// Encodes one NDJSON line like Go's `json.Encoder.Encode` (what Ollama streams): [`to_go_json`]
/// followed by `\n`.
pub fn to_ndjson_line<T: Wire + ?Sized>(value: &T) -> Vec<u8> {
    let mut bytes = to_go_json(value);
    bytes.push(b'\n');
    bytes
}
