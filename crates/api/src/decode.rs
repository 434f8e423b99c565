//! Request decoding with the semantics of Go's `encoding/json` (v1) as Ollama's handlers use it
//! through gin's `ShouldBindJSON` (`json.NewDecoder(body).Decode(&req)`):
//!
//! * an empty or all-whitespace body is [`DecodeError::Empty`] (Ollama: `missing request body`);
//! * only the first JSON value is read, anything after it is ignored; `null` gives the zero request;
//! * keys match struct fields exactly, else case-insensitively (Go's Unicode simple folding, so
//!   `MODEL` and even `ſystem` match); unknown keys are ignored; a repeated key overwrites (maps merge);
//! * `null` leaves a string/bool field unchanged and resets a map, slice or `stream` to nil;
//! * numbers in `any` positions are `float64` (integers beyond 2^53 lose precision exactly as in Go);
//! * a value of the wrong type does not stop decoding, but the first one is reported with Go's text,
//!   e.g. `json: cannot unmarshal string into Go struct field CreateRequest.stream of type bool`;
//! * invalid UTF-8 becomes U+FFFD per bad byte instead of failing.
//!
//! * syntax errors carry Go's scanner text (`invalid character 'm' looking for beginning of object key
//!   string`, `unexpected EOF`).
//!
//! Known differences: nesting deeper than 128 levels is rejected with serde_json's message (Go allows
//! 10000); lone surrogate escapes are rejected (Go substitutes U+FFFD); numbers beyond the `f64` range
//! are rejected as syntax errors (Go reports a type error); a JSON array of numbers is not accepted as
//! image bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::types::{
    AnyMap, CopyRequest, CreateRequest, DeleteRequest, ImageData, License, Message, PullRequest,
    PushRequest, ShowRequest, ToolCall, ToolCallArguments, ToolCallFunction,
};
use kiln_go::json::{float64_number, format_float, lossy_utf8, match_field};

/// Why a request body could not be decoded. Display is the message Ollama returns with status 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body was empty or only whitespace.
    #[error("missing request body")]
    Empty,
    /// The body is not well-formed JSON (`unexpected EOF` when it is truncated).
    #[error("{0}")]
    Syntax(String),
    /// A value has the wrong JSON type for its field.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// An image is not valid padded base64; the offset of the bad input byte.
    #[error("illegal base64 data at input byte {0}")]
    Base64(usize),
}

/// Go's `*json.UnmarshalTypeError`, with the same message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    value: String,
    go_type: String,
    context: Option<(String, String)>,
}

impl TypeError {
    /// The JSON kind found: `string`, `number`, `bool`, `array`, `object` (or `number 1.5`).
    pub fn value(&self) -> &str {
        &self.value
    }
    /// The Go type that was expected, e.g. `map[string]string`.
    pub fn go_type(&self) -> &str {
        &self.go_type
    }
    /// The dotted JSON path of the field, e.g. `messages.role`, if inside a struct.
    pub fn field(&self) -> Option<&str> {
        self.context.as_ref().map(|(_, f)| f.as_str())
    }
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some((strukt, field)) => write!(
                f,
                "json: cannot unmarshal {} into Go struct field {strukt}.{field} of type {}",
                self.value, self.go_type
            ),
            None => write!(
                f,
                "json: cannot unmarshal {} into Go value of type {}",
                self.value, self.go_type
            ),
        }
    }
}

impl std::error::Error for TypeError {}

/// Request bodies that decode with Go's rules.
pub trait Request: Sized + crate::json::sealed::Sealed {
    /// Builds the request from a parsed body.
    #[doc(hidden)]
    fn from_go_value(v: GoValue) -> Result<Self, DecodeError>;
}

/// Decodes an HTTP request body exactly as Ollama's handler would (see the module docs).
pub fn decode_request<T: Request>(body: &[u8]) -> Result<T, DecodeError> {
    let end = match kiln_go::json::first_value(body) {
        Ok(Some(end)) => end,
        Ok(None) => return Err(DecodeError::Empty),
        Err(msg) => return Err(DecodeError::Syntax(msg)),
    };
    let text = lossy_utf8(&body[..end]);
    match serde_json::from_str::<GoValue>(&text) {
        Ok(v) => T::from_go_value(v),
        // Only what Go's syntax check accepts reaches here: deep nesting, lone surrogates, huge
        // numbers.
        Err(e) => Err(DecodeError::Syntax(e.to_string())),
    }
}

/// A parsed JSON value that keeps object keys in document order, so duplicate and case-folded keys
/// resolve the way Go's streaming decoder resolves them.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq)]
pub enum GoValue {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// A number as serde_json parsed it.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<GoValue>),
    /// An object, keys in document order, duplicates kept.
    Object(Vec<(String, GoValue)>),
}

impl GoValue {
    fn kind(&self) -> &'static str {
        match self {
            GoValue::Null => "null",
            GoValue::Bool(_) => "bool",
            GoValue::Number(_) => "number",
            GoValue::String(_) => "string",
            GoValue::Array(_) => "array",
            GoValue::Object(_) => "object",
        }
    }

    /// The value as Go's `any` holds it, re-encoded: last duplicate key wins, numbers are `float64`.
    fn into_any(self) -> Value {
        match self {
            GoValue::Null => Value::Null,
            GoValue::Bool(b) => Value::Bool(b),
            GoValue::Number(n) => float64_number(&n),
            GoValue::String(s) => Value::String(s),
            GoValue::Array(items) => Value::Array(items.into_iter().map(Self::into_any).collect()),
            GoValue::Object(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k, v.into_any());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for GoValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GoValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<GoValue, E> {
                Ok(GoValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<GoValue, E> {
                Ok(GoValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<GoValue, D::Error> {
                GoValue::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<GoValue, E> {
                Ok(GoValue::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<GoValue, E> {
                Ok(GoValue::Number(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<GoValue, E> {
                Ok(GoValue::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<GoValue, E> {
                Number::from_f64(n)
                    .map(GoValue::Number)
                    .ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<GoValue, E> {
                Ok(GoValue::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<GoValue, E> {
                Ok(GoValue::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GoValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(GoValue::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoValue, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, GoValue>()? {
                    entries.push((k, v));
                }
                Ok(GoValue::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// One field of a Go struct: its JSON name and what decodes its value into the struct.
type Field<T> = (
    &'static str,
    fn(&mut Dec, GoValue, &mut T) -> Result<(), DecodeError>,
);

/// A Go struct's field table, written once as `"name" => decoding` pairs in Go's field order
/// (`dec`, `v` and `r` name the decoder, the value and the struct being filled), so a name can
/// never drift from the code that decodes it.
macro_rules! go_fields {
    ($t:ty, |$dec:ident, $v:ident, $r:ident| { $($name:literal => $body:expr),+ $(,)? }) => {
        &[$((
            $name,
            |$dec: &mut Dec, $v: GoValue, $r: &mut $t| -> Result<(), DecodeError> {
                let _ = &$dec; // not every field's decoding needs the decoder
                $body;
                Ok(())
            },
        )),+]
    };
}

/// Decoder state: the error context (innermost struct, JSON field path) and the first saved error.
struct Dec {
    strukt: Option<&'static str>,
    stack: Vec<&'static str>,
    saved: Option<DecodeError>,
}

impl Dec {
    fn new() -> Self {
        Dec {
            strukt: None,
            stack: Vec::new(),
            saved: None,
        }
    }

    fn save(&mut self, err: DecodeError) {
        if self.saved.is_none() {
            self.saved = Some(err);
        }
    }

    fn type_error(&self, value: impl Into<String>, go_type: &str) -> TypeError {
        let context = if self.strukt.is_some() || !self.stack.is_empty() {
            Some((
                self.strukt.unwrap_or_default().to_owned(),
                self.stack.join("."),
            ))
        } else {
            None
        };
        TypeError {
            value: value.into(),
            go_type: go_type.to_owned(),
            context,
        }
    }

    fn mismatch(&mut self, v: &GoValue, go_type: &str) {
        let e = self.type_error(v.kind(), go_type);
        self.save(e.into());
    }

    /// Decodes a Go struct through its field table: `null` is a no-op, a non-object is a type
    /// error, and each known key (matched as Go matches it) is decoded into `target` by its
    /// field's entry, with the context pointing at that field.
    fn object<T>(
        &mut self,
        v: GoValue,
        strukt: &'static str,
        go_type: &str,
        fields: &[Field<T>],
        target: &mut T,
    ) -> Result<(), DecodeError> {
        match v {
            GoValue::Null => Ok(()),
            GoValue::Object(entries) => {
                for (key, value) in entries {
                    let Some(i) = match_field(fields.iter().map(|f| f.0), &key) else {
                        continue;
                    };
                    let (name, decode) = fields[i];
                    let outer = self.strukt.replace(strukt);
                    self.stack.push(name);
                    decode(self, value, target)?;
                    self.stack.pop();
                    self.strukt = outer;
                }
                Ok(())
            }
            other => {
                self.mismatch(&other, go_type);
                Ok(())
            }
        }
    }

    fn string(&mut self, v: GoValue, slot: &mut String) {
        match v {
            GoValue::Null => {}
            GoValue::String(s) => *slot = s,
            other => self.mismatch(&other, "string"),
        }
    }

    fn boolean(&mut self, v: GoValue, slot: &mut bool) {
        match v {
            GoValue::Null => {}
            GoValue::Bool(b) => *slot = b,
            other => self.mismatch(&other, "bool"),
        }
    }

    fn opt_bool(&mut self, v: GoValue, slot: &mut Option<bool>) {
        match v {
            GoValue::Null => *slot = None,
            GoValue::Bool(b) => *slot = Some(b),
            other => self.mismatch(&other, "bool"),
        }
    }

    fn int(&mut self, v: GoValue, slot: &mut i64) {
        match v {
            GoValue::Null => {}
            GoValue::Number(n) => match n.as_i64() {
                Some(i) => *slot = i,
                None => {
                    let text = match n.as_u64() {
                        Some(u) => u.to_string(),
                        None => format_float(n.as_f64().unwrap_or(0.0), false),
                    };
                    let e = self.type_error(format!("number {text}"), "int");
                    self.save(e.into());
                }
            },
            other => self.mismatch(&other, "int"),
        }
    }

    fn string_map(&mut self, v: GoValue, slot: &mut Option<BTreeMap<String, String>>) {
        match v {
            GoValue::Null => *slot = None,
            GoValue::Object(entries) => {
                let map = slot.get_or_insert_with(BTreeMap::new);
                for (k, value) in entries {
                    let mut s = String::new();
                    self.string(value, &mut s);
                    map.insert(k, s);
                }
            }
            other => self.mismatch(&other, "map[string]string"),
        }
    }

    fn any_map(&mut self, v: GoValue, slot: &mut Option<AnyMap>) {
        match v {
            GoValue::Null => *slot = None,
            GoValue::Object(entries) => {
                let map = slot.get_or_insert_with(BTreeMap::new);
                for (k, value) in entries {
                    map.insert(k, value.into_any());
                }
            }
            other => self.mismatch(&other, "map[string]interface {}"),
        }
    }

    fn finish<T>(self, value: T) -> Result<T, DecodeError> {
        match self.saved {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

fn license_from(v: GoValue) -> Option<License> {
    match v {
        GoValue::Null => None,
        GoValue::String(s) => Some(License::Text(s)),
        GoValue::Array(items)
            if items
                .iter()
                .all(|i| matches!(i, GoValue::String(_) | GoValue::Null)) =>
        {
            Some(License::List(
                items
                    .into_iter()
                    .map(|i| match i {
                        GoValue::String(s) => s,
                        _ => String::new(),
                    })
                    .collect(),
            ))
        }
        other => Some(License::Other(other.into_any())),
    }
}

const CREATE_FIELDS: &[Field<CreateRequest>] = go_fields!(CreateRequest, |dec, v, r| {
    "model" => dec.string(v, &mut r.model),
    "stream" => dec.opt_bool(v, &mut r.stream),
    "quantize" => dec.string(v, &mut r.quantize),
    "draft_quantize" => dec.string(v, &mut r.draft_quantize),
    "from" => dec.string(v, &mut r.from),
    "remote_host" => dec.string(v, &mut r.remote_host),
    "files" => dec.string_map(v, &mut r.files),
    "draft_files" => dec.string_map(v, &mut r.draft_files),
    "adapters" => dec.string_map(v, &mut r.adapters),
    "template" => dec.string(v, &mut r.template),
    "license" => r.license = license_from(v),
    "system" => dec.string(v, &mut r.system),
    "parameters" => dec.any_map(v, &mut r.parameters),
    "messages" => messages(dec, v, &mut r.messages)?,
    "renderer" => dec.string(v, &mut r.renderer),
    "parser" => dec.string(v, &mut r.parser),
    "requires" => dec.string(v, &mut r.requires),
    "info" => dec.any_map(v, &mut r.info),
    "name" => dec.string(v, &mut r.name),
    "quantization" => dec.string(v, &mut r.quantization),
});

impl Request for CreateRequest {
    fn from_go_value(v: GoValue) -> Result<Self, DecodeError> {
        let mut r = CreateRequest::default();
        let mut dec = Dec::new();
        dec.object(
            v,
            "CreateRequest",
            "api.CreateRequest",
            CREATE_FIELDS,
            &mut r,
        )?;
        dec.finish(r)
    }
}

/// `[]api.Message`: each element goes through Message's own `UnmarshalJSON`, whose errors abort the
/// whole decode and are re-labelled with the outer struct and path (Go's `addErrorContext`).
fn messages(dec: &mut Dec, v: GoValue, slot: &mut Vec<Message>) -> Result<(), DecodeError> {
    match v {
        GoValue::Null => slot.clear(),
        GoValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match decode_message(item) {
                    Ok(m) => out.push(m),
                    Err(DecodeError::Type(mut e)) => {
                        let mut field = dec.stack.join(".");
                        if let Some((_, inner)) = &e.context
                            && !inner.is_empty()
                        {
                            field.push('.');
                            field.push_str(inner);
                        }
                        e.context = Some((dec.strukt.unwrap_or_default().to_owned(), field));
                        return Err(e.into());
                    }
                    Err(other) => return Err(other),
                }
            }
            *slot = out;
        }
        other => dec.mismatch(&other, "[]api.Message"),
    }
    Ok(())
}

const MESSAGE_FIELDS: &[Field<Message>] = go_fields!(Message, |dec, v, m| {
    "role" => dec.string(v, &mut m.role),
    "content" => dec.string(v, &mut m.content),
    "thinking" => dec.string(v, &mut m.thinking),
    "images" => images(dec, v, &mut m.images),
    "tool_calls" => tool_calls(dec, v, &mut m.tool_calls)?,
    "tool_name" => dec.string(v, &mut m.tool_name),
    "tool_call_id" => dec.string(v, &mut m.tool_call_id),
});

/// One message, as Go's `Message.UnmarshalJSON` decodes it (through a local `Alias` type, which names
/// the struct in its errors) and then lower-cases `role`.
fn decode_message(v: GoValue) -> Result<Message, DecodeError> {
    let mut m = Message::default();
    let mut dec = Dec::new();
    dec.object(v, "Alias", "api.Alias", MESSAGE_FIELDS, &mut m)?;
    m.role = kiln_go::strings::to_lower(&m.role);
    dec.finish(m)
}

fn images(dec: &mut Dec, v: GoValue, slot: &mut Vec<ImageData>) {
    match v {
        GoValue::Null => slot.clear(),
        GoValue::Array(items) => {
            slot.clear();
            for item in items {
                match item {
                    GoValue::Null => slot.push(ImageData::default()),
                    GoValue::String(s) => match crate::base64::decode(&s) {
                        Ok(bytes) => slot.push(ImageData(bytes)),
                        Err(at) => {
                            dec.save(DecodeError::Base64(at));
                            slot.push(ImageData::default());
                        }
                    },
                    other => dec.mismatch(&other, "api.ImageData"),
                }
            }
        }
        other => dec.mismatch(&other, "[]api.ImageData"),
    }
}

const TOOL_CALL_FIELDS: &[Field<ToolCall>] = go_fields!(ToolCall, |dec, v, call| {
    "id" => dec.string(v, &mut call.id),
    "function" => dec.object(
        v,
        "ToolCallFunction",
        "api.ToolCallFunction",
        TOOL_CALL_FUNCTION_FIELDS,
        &mut call.function,
    )?,
});

const TOOL_CALL_FUNCTION_FIELDS: &[Field<ToolCallFunction>] = go_fields!(ToolCallFunction, |dec, v, f| {
    "index" => dec.int(v, &mut f.index),
    "name" => dec.string(v, &mut f.name),
    "arguments" => arguments(dec, v, &mut f.arguments),
});

fn tool_calls(dec: &mut Dec, v: GoValue, slot: &mut Vec<ToolCall>) -> Result<(), DecodeError> {
    match v {
        GoValue::Null => slot.clear(),
        GoValue::Array(items) => {
            slot.clear();
            for item in items {
                let mut call = ToolCall::default();
                dec.object(
                    item,
                    "ToolCall",
                    "api.ToolCall",
                    TOOL_CALL_FIELDS,
                    &mut call,
                )?;
                slot.push(call);
            }
        }
        other => dec.mismatch(&other, "[]api.ToolCall"),
    }
    Ok(())
}

fn arguments(dec: &mut Dec, v: GoValue, slot: &mut ToolCallArguments) {
    match v {
        GoValue::Null => {}
        GoValue::Object(entries) => {
            *slot = ToolCallArguments::default();
            for (k, v) in entries {
                slot.insert(k, v.into_any());
            }
        }
        other => dec.mismatch(&other, "api.ToolCallFunctionArguments"),
    }
}

const SHOW_FIELDS: &[Field<ShowRequest>] = go_fields!(ShowRequest, |dec, v, r| {
    "model" => dec.string(v, &mut r.model),
    "system" => dec.string(v, &mut r.system),
    "template" => dec.string(v, &mut r.template),
    "verbose" => dec.boolean(v, &mut r.verbose),
    "options" => dec.any_map(v, &mut r.options),
    "name" => dec.string(v, &mut r.name),
});

impl Request for ShowRequest {
    fn from_go_value(v: GoValue) -> Result<Self, DecodeError> {
        let mut r = ShowRequest::default();
        let mut dec = Dec::new();
        dec.object(v, "ShowRequest", "api.ShowRequest", SHOW_FIELDS, &mut r)?;
        dec.finish(r)
    }
}

const COPY_FIELDS: &[Field<CopyRequest>] = go_fields!(CopyRequest, |dec, v, r| {
    "source" => dec.string(v, &mut r.source),
    "destination" => dec.string(v, &mut r.destination),
});

impl Request for CopyRequest {
    fn from_go_value(v: GoValue) -> Result<Self, DecodeError> {
        let mut r = CopyRequest::default();
        let mut dec = Dec::new();
        dec.object(v, "CopyRequest", "api.CopyRequest", COPY_FIELDS, &mut r)?;
        dec.finish(r)
    }
}

const DELETE_FIELDS: &[Field<DeleteRequest>] = go_fields!(DeleteRequest, |dec, v, r| {
    "model" => dec.string(v, &mut r.model),
    "name" => dec.string(v, &mut r.name),
});

impl Request for DeleteRequest {
    fn from_go_value(v: GoValue) -> Result<Self, DecodeError> {
        let mut r = DeleteRequest::default();
        let mut dec = Dec::new();
        dec.object(
            v,
            "DeleteRequest",
            "api.DeleteRequest",
            DELETE_FIELDS,
            &mut r,
        )?;
        dec.finish(r)
    }
}

/// Pull and push requests share Go's field layout (`api.PullRequest`, `api.PushRequest`).
macro_rules! registry_request {
    ($t:ident, $go:literal) => {
        impl Request for $t {
            fn from_go_value(v: GoValue) -> Result<Self, DecodeError> {
                let mut r = $t::default();
                let mut dec = Dec::new();
                let fields: &[Field<$t>] = go_fields!($t, |dec, v, r| {
                    "model" => dec.string(v, &mut r.model),
                    "insecure" => dec.boolean(v, &mut r.insecure),
                    "username" => dec.string(v, &mut r.username),
                    "password" => dec.string(v, &mut r.password),
                    "stream" => dec.opt_bool(v, &mut r.stream),
                    "name" => dec.string(v, &mut r.name),
                });
                dec.object(v, stringify!($t), $go, fields, &mut r)?;
                dec.finish(r)
            }
        }
    };
}

registry_request!(PullRequest, "api.PullRequest");
registry_request!(PushRequest, "api.PushRequest");

impl Request for Message {
    fn from_go_value(v: GoValue) -> Result<Self, DecodeError> {
        decode_message(v)
    }
}

/// serde entry points with the same Go semantics, so `serde_json::from_slice` agrees with
/// [`decode_request`] (errors carry the same text).
macro_rules! go_deserialize {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = GoValue::deserialize(d)?;
                <$t as Request>::from_go_value(v).map_err(de::Error::custom)
            }
        }
    )*};
}

go_deserialize!(
    CreateRequest,
    ShowRequest,
    CopyRequest,
    DeleteRequest,
    PullRequest,
    PushRequest,
    Message
);
