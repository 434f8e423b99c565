//! `config.json`, read with Go's `encoding/json` rules ([`Config`]).

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{ConvertError, ConvertLimits};

/// `config.json`, with Go's `encoding/json` rules for the fields the converters read: a number
/// field must be a literal of its Go type, a missing or null field reads as zero.
pub(crate) struct Config {
    fields: BTreeMap<String, Box<RawValue>>,
    /// Bounds every count read from the config is checked against before it is generated.
    max_generated: u64,
}

impl Config {
    pub(super) fn parse(bytes: &[u8], limits: &ConvertLimits) -> Result<Config, ConvertError> {
        let bytes = replace_non_finite(bytes);
        let fields = serde_json::from_slice(&bytes).map_err(|e| ConvertError::Json {
            file: "config.json".into(),
            message: e.to_string(),
        })?;
        Ok(Config {
            fields,
            max_generated: limits.max_generated_items,
        })
    }

    /// `count` (implied by this config) as a length, or [`ConvertError::TooMany`] over the
    /// folder's [`ConvertLimits::max_generated_items`].
    pub(crate) fn generated(&self, what: &'static str, count: u64) -> Result<usize, ConvertError> {
        if count > self.max_generated {
            return Err(ConvertError::TooMany {
                what,
                count,
                limit: self.max_generated,
            });
        }
        Ok(count as usize)
    }

    fn bad(key: &str, raw: &str, ty: &str) -> ConvertError {
        ConvertError::Json {
            file: "config.json".into(),
            message: format!("cannot unmarshal {raw} into field {key} of type {ty}"),
        }
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(|r| r.get().trim())
            .filter(|r| *r != "null")
    }

    /// A `uint32` field (0 when absent).
    pub fn u32(&self, key: &str) -> Result<u32, ConvertError> {
        match self.raw(key) {
            None => Ok(0),
            Some(raw) => raw.parse().map_err(|_| Self::bad(key, raw, "uint32")),
        }
    }

    /// A `float32` field (0 when absent), rounded once from its decimal text as Go does.
    pub fn f32(&self, key: &str) -> Result<f32, ConvertError> {
        match self.raw(key) {
            None => Ok(0.0),
            Some(raw)
                if raw.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
            {
                raw.parse().map_err(|_| Self::bad(key, raw, "float32"))
            }
            Some(raw) => Err(Self::bad(key, raw, "float32")),
        }
    }

    pub(super) fn strings(&self, key: &str) -> Result<Vec<String>, ConvertError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str::<Vec<Option<String>>>(raw)
                .map(|v| v.into_iter().map(Option::unwrap_or_default).collect())
                .map_err(|_| Self::bad(key, raw, "[]string")),
        }
    }

    /// The first of these fields that is set (Go's `cmp.Or`); every one must be well-typed, as
    /// Go decodes them all.
    fn first_set<T: Copy + Default + PartialEq>(
        &self,
        keys: &[&str],
        read: fn(&Config, &str) -> Result<T, ConvertError>,
    ) -> Result<T, ConvertError> {
        let mut first = T::default();
        for key in keys {
            let v = read(self, key)?;
            if first == T::default() {
                first = v;
            }
        }
        Ok(first)
    }

    /// [`first_set`](Self::first_set) for `uint32` fields.
    pub fn first_u32(&self, keys: &[&str]) -> Result<u32, ConvertError> {
        self.first_set(keys, Config::u32)
    }

    /// [`first_set`](Self::first_set) for `float32` fields.
    pub fn first_f32(&self, keys: &[&str]) -> Result<f32, ConvertError> {
        self.first_set(keys, Config::f32)
    }

    /// A `string` field ("" when absent).
    pub fn string(&self, key: &str) -> Result<String, ConvertError> {
        match self.raw(key) {
            None => Ok(String::new()),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "string")),
        }
    }

    /// An `int` field (0 when absent).
    pub fn i32(&self, key: &str) -> Result<i32, ConvertError> {
        match self.raw(key) {
            None => Ok(0),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "int")),
        }
    }

    /// The object's keys, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// A `bool` field (false when absent).
    pub fn bool(&self, key: &str) -> Result<bool, ConvertError> {
        match self.raw(key) {
            None => Ok(false),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "bool")),
        }
    }

    /// Whether the field is present and not null.
    pub fn contains(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// A `[]float32` field (empty when absent), each element rounded once from its text as Go
    /// does (a null element reads as zero).
    pub fn f32s(&self, key: &str) -> Result<Vec<f32>, ConvertError> {
        let Some(raw) = self.raw(key) else {
            return Ok(Vec::new());
        };
        let bad = || Self::bad(key, raw, "[]float32");
        let items: Vec<Option<Box<RawValue>>> = serde_json::from_str(raw).map_err(|_| bad())?;
        items
            .iter()
            .map(|item| match item.as_deref().map(|r| r.get().trim()) {
                None => Ok(0.0),
                Some(text)
                    if text
                        .starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
                {
                    text.parse().map_err(|_| bad())
                }
                Some(_) => Err(bad()),
            })
            .collect()
    }

    /// An `[]int32` field (empty when absent).
    pub fn i32s(&self, key: &str) -> Result<Vec<i32>, ConvertError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "[]int32")),
        }
    }

    /// A nested object (empty when absent or null).
    pub fn object(&self, key: &str) -> Result<Config, ConvertError> {
        match self.raw(key) {
            None => Ok(Config {
                fields: BTreeMap::new(),
                max_generated: self.max_generated,
            }),
            Some(raw) => Ok(Config {
                fields: serde_json::from_str(raw).map_err(|_| Self::bad(key, raw, "struct"))?,
                max_generated: self.max_generated,
            }),
        }
    }

    /// `vocab_size`, or `text_config.vocab_size` (Go's `cmp.Or`).
    pub(super) fn vocab_size(&self) -> Result<u32, ConvertError> {
        let own = self.u32("vocab_size")?;
        if own != 0 {
            return Ok(own);
        }
        self.object("text_config")?.u32("vocab_size")
    }
}

/// Ollama's `sanitizeNonFiniteJSON`: bare `NaN`, `Infinity` and `-Infinity` tokens outside strings
/// become `0`, so configs that Python's json wrote still parse.
fn replace_non_finite(input: &[u8]) -> Vec<u8> {
    let before = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b':' | b',' | b'[');
    let after = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}');
    let mut out = Vec::with_capacity(input.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    'outer: while i < input.len() {
        let c = input[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else {
            for token in [&b"-Infinity"[..], b"Infinity", b"NaN"] {
                let end = i + token.len();
                if input.get(i..end) == Some(token)
                    && (i == 0 || before(input[i - 1]))
                    && input.get(end).is_none_or(|&b| after(b))
                {
                    out.push(b'0');
                    i = end;
                    continue 'outer;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{Conversion, MAX_GENERATED_ITEMS, test_folder};

    #[test]
    fn non_finite_tokens_outside_strings_become_zero() {
        let input = br#"{"a": NaN, "b": [-Infinity,Infinity], "c": "NaN", "d": NaNx}"#;
        assert_eq!(
            String::from_utf8(replace_non_finite(input)).unwrap(),
            r#"{"a": 0, "b": [0,0], "c": "NaN", "d": NaNx}"#
        );
    }

    #[test]
    fn config_fields_follow_gos_types() {
        let c = Config::parse(
            br#"{"a": 384, "b": 1e-12, "c": -1, "d": 1.5, "e": null, "f": "x",
                                   "text_config": {"vocab_size": 7}}"#,
            &ConvertLimits::default(),
        )
        .unwrap();
        assert_eq!(c.u32("a").unwrap(), 384);
        assert_eq!(c.f32("b").unwrap(), 1e-12);
        assert_eq!(c.u32("e").unwrap(), 0);
        assert_eq!(c.u32("missing").unwrap(), 0);
        assert!(c.u32("c").is_err() && c.u32("d").is_err() && c.f32("f").is_err());
        assert_eq!(c.vocab_size().unwrap(), 7);
    }

    #[test]
    fn counts_from_config_cannot_exhaust_memory() {
        let folder = |config: &str| test_folder(config, &[("x.weight", "F32", &[1], &[0; 4])]);
        let too_many = |config: &str| match Conversion::plan(&folder(config)) {
            Err(ConvertError::TooMany { what, count, .. }) => (what, count),
            other => panic!("{:?}", other.err()),
        };
        assert_eq!(
            too_many(r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 4294967295}"#),
            ("vocabulary entries", 4294967295)
        );
        assert_eq!(
            too_many(
                r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4294967295,
                    "num_attention_heads": 1, "rope_theta": 10000,
                    "rope_scaling": {"rope_type": "llama3"}}"#
            ),
            ("rope frequency factors", 2147483648)
        );
        assert_eq!(
            too_many(
                r#"{"architectures": ["Gemma3ForCausalLM"], "num_hidden_layers": 4294967295,
                    "sliding_window_pattern": 6}"#
            ),
            ("sliding-window layer flags", 4294967295)
        );
        // At the limit itself, padding goes ahead.
        let limit = MAX_GENERATED_ITEMS;
        let at_limit = folder(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], "vocab_size": {limit}}}"#
        ));
        assert!(Conversion::plan(&at_limit).is_ok());
    }
}
