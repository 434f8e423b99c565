//! Ordered metadata with typed accessors, and tensor infos.

use std::collections::HashMap;

use crate::error::MetadataError;
use crate::value::{Array, Value, ValueType};
use crate::{GgmlType, MAX_DIMS};

/// Metadata entries in file order, with lookup by key.
#[derive(Debug, Clone, Default)]
pub struct Metadata<'a> {
    pub(crate) entries: Vec<(&'a str, Value<'a>)>,
    pub(crate) index: HashMap<&'a str, usize>,
}

impl<'a> Metadata<'a> {
    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a str, &Value<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value<'a>, MetadataError> {
        self.get(key).ok_or_else(|| MetadataError::Missing {
            key: key.to_owned(),
        })
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        f: impl Fn(&Value<'a>) -> Option<T>,
    ) -> Result<T, MetadataError> {
        let value = self.require(key)?;
        f(value).ok_or_else(|| MetadataError::WrongType {
            key: key.to_owned(),
            expected,
            found: value.value_type(),
        })
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, MetadataError> {
        let value = self.require(key)?;
        value.as_str().ok_or_else(|| MetadataError::WrongType {
            key: key.to_owned(),
            expected: "string",
            found: value.value_type(),
        })
    }

    /// An integer value that fits in u32 (any integer type is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32, MetadataError> {
        self.typed(key, "integer in u32 range", Value::as_u32)
    }

    /// A non-negative integer value (any integer type is accepted).
    pub fn get_u64(&self, key: &str) -> Result<u64, MetadataError> {
        self.typed(key, "non-negative integer", Value::as_u64)
    }

    /// A float value (F32 or F64).
    pub fn get_f64(&self, key: &str) -> Result<f64, MetadataError> {
        self.typed(key, "float", Value::as_f64)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, MetadataError> {
        self.typed(key, "bool", Value::as_bool)
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&Array<'a>, MetadataError> {
        let value = self.require(key)?;
        value.as_array().ok_or_else(|| MetadataError::WrongType {
            key: key.to_owned(),
            expected: "array",
            found: value.value_type(),
        })
    }

    fn optional<T>(r: Result<T, MetadataError>) -> Result<Option<T>, MetadataError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(MetadataError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `general.architecture` ("llama", "qwen2", …).
    pub fn architecture(&self) -> Result<&str, MetadataError> {
        self.get_str("general.architecture")
    }

    /// `general.name`, if present.
    pub fn name(&self) -> Result<Option<&str>, MetadataError> {
        Self::optional(self.get_str("general.name"))
    }

    /// `general.file_type` (a `llama_ftype` number), if present.
    pub fn file_type(&self) -> Result<Option<u32>, MetadataError> {
        Self::optional(self.get_u32("general.file_type"))
    }

    /// `general.quantization_version`, if present.
    pub fn quantization_version(&self) -> Result<Option<u32>, MetadataError> {
        Self::optional(self.get_u32("general.quantization_version"))
    }

    /// `{arch}.{suffix}` as an integer, if present (e.g. `arch_u64("block_count")`).
    pub fn arch_u64(&self, suffix: &str) -> Result<Option<u64>, MetadataError> {
        let key = format!("{}.{suffix}", self.architecture()?);
        Self::optional(self.get_u64(&key))
    }

    /// `{arch}.block_count`: the number of transformer layers.
    pub fn block_count(&self) -> Result<u64, MetadataError> {
        let key = format!("{}.block_count", self.architecture()?);
        self.get_u64(&key)
    }

    /// `{arch}.context_length`, if present.
    pub fn context_length(&self) -> Result<Option<u64>, MetadataError> {
        self.arch_u64("context_length")
    }

    /// `{arch}.embedding_length`, if present.
    pub fn embedding_length(&self) -> Result<Option<u64>, MetadataError> {
        self.arch_u64("embedding_length")
    }

    /// `{arch}.attention.head_count`, if present as a single integer.
    pub fn head_count(&self) -> Result<Option<u64>, MetadataError> {
        self.arch_u64("attention.head_count")
    }

    /// `{arch}.attention.head_count_kv`, if present as a single integer.
    pub fn head_count_kv(&self) -> Result<Option<u64>, MetadataError> {
        self.arch_u64("attention.head_count_kv")
    }

    /// `{arch}.expert_count`, if present.
    pub fn expert_count(&self) -> Result<Option<u64>, MetadataError> {
        self.arch_u64("expert_count")
    }

    /// `tokenizer.ggml.tokens`, if present.
    pub fn tokenizer_tokens(&self) -> Result<Option<&Array<'a>>, MetadataError> {
        Self::optional(self.get_array("tokenizer.ggml.tokens"))
    }

    /// `tokenizer.ggml.scores`, if present.
    pub fn tokenizer_scores(&self) -> Result<Option<&Array<'a>>, MetadataError> {
        Self::optional(self.get_array("tokenizer.ggml.scores"))
    }

    /// `tokenizer.ggml.token_type`, if present.
    pub fn tokenizer_token_types(&self) -> Result<Option<&Array<'a>>, MetadataError> {
        Self::optional(self.get_array("tokenizer.ggml.token_type"))
    }

    /// `tokenizer.ggml.merges`, if present.
    pub fn tokenizer_merges(&self) -> Result<Option<&Array<'a>>, MetadataError> {
        Self::optional(self.get_array("tokenizer.ggml.merges"))
    }

    /// Entries in file order as a vector of pairs, e.g. to edit and hand to the [`Writer`](crate::Writer).
    pub fn to_vec(&self) -> Vec<(&'a str, Value<'a>)> {
        self.entries.clone()
    }
}

/// One tensor's info and its data, borrowed from the file.
#[derive(Debug, Clone)]
pub struct TensorInfo<'a> {
    pub(crate) name: &'a str,
    pub(crate) n_dims: usize,
    pub(crate) dims: [u64; MAX_DIMS],
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_elements: u64,
    pub(crate) n_bytes: Option<u64>,
    pub(crate) data: &'a [u8],
}

impl<'a> TensorInfo<'a> {
    pub(crate) fn new(
        name: &'a str,
        n_dims: usize,
        dims: [u64; MAX_DIMS],
        ggml_type: GgmlType,
        offset: u64,
    ) -> Result<Self, &'static str> {
        let n_elements = element_count(&dims[..n_dims])?;
        let n_bytes = match ggml_type.block_size() {
            None => None,
            Some(_) => Some(
                ggml_type
                    .bytes_for(n_elements)
                    .ok_or("byte size overflows")?,
            ),
        };
        Ok(TensorInfo {
            name,
            n_dims,
            dims,
            ggml_type,
            offset,
            n_elements,
            n_bytes,
            data: &[],
        })
    }

    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// The dimensions as stored (`ne[0]` first: the row length).
    pub fn dims(&self) -> &[u64] {
        &self.dims[..self.n_dims]
    }

    /// The number of dimensions as ggml counts them (`ggml_n_dims`): trailing 1s do not count, so
    /// a `[64, 1]` tensor is 1-D. llama.cpp decides what to quantize, and writes shapes, by this
    /// count, not by the count stored in the file.
    pub fn ggml_n_dims(&self) -> usize {
        (1..MAX_DIMS)
            .rev()
            .find(|&d| self.dims[d] != 1)
            .map_or(1, |d| d + 1)
    }

    /// The dimensions padded with 1s to four, as ggml's `ne`.
    pub fn ne(&self) -> [u64; MAX_DIMS] {
        self.dims
    }

    /// Offset of the data relative to the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Size of the data in bytes; `None` for a type this crate does not know.
    pub fn n_bytes(&self) -> Option<u64> {
        self.n_bytes
    }

    /// The tensor's bytes. For an unknown type, the span up to the next tensor (or end of file).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// The product of dimensions, refused if any dimension or the product exceeds ggml's int64.
pub(crate) fn element_count(dims: &[u64]) -> Result<u64, &'static str> {
    let mut n: u64 = 1;
    for &d in dims {
        if d > i64::MAX as u64 {
            return Err("dimension exceeds int64");
        }
        n = n
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or("element count overflows int64")?;
    }
    Ok(n)
}

impl ValueType {
    /// A short lowercase name for display ("u32", "string", "array", …).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }
}
