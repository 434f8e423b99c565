//! The streaming writer: header, metadata and tensor infos up front, then tensor data in order.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;

use crate::error::WriteError;
use crate::metadata::element_count;
use crate::value::{Value, ValueType};
use crate::{DEFAULT_ALIGNMENT, GgmlType, MAGIC, MAX_DIMS};

/// What the writer needs to know about a tensor before its data arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec<'a> {
    /// Tensor name.
    pub name: Cow<'a, str>,
    /// Element type (must be one whose size is known).
    pub ggml_type: GgmlType,
    /// Dimensions, `ne[0]` first; written exactly as given (0–4 of them).
    pub dims: Vec<u64>,
}

impl<'a> TensorSpec<'a> {
    /// A tensor spec.
    pub fn new(
        name: impl Into<Cow<'a, str>>,
        ggml_type: GgmlType,
        dims: impl Into<Vec<u64>>,
    ) -> Self {
        TensorSpec {
            name: name.into(),
            ggml_type,
            dims: dims.into(),
        }
    }

    /// Size of the tensor's data in bytes.
    pub fn n_bytes(&self) -> Result<u64, WriteError> {
        if self.dims.len() > MAX_DIMS {
            return Err(self.bad_shape("more than 4 dimensions"));
        }
        let n = element_count(&self.dims).map_err(|reason| self.bad_shape(reason))?;
        let block = self
            .ggml_type
            .block_size()
            .ok_or_else(|| WriteError::UnknownType {
                name: self.name.to_string(),
                ty: self.ggml_type,
            })?;
        if self.dims.first().copied().unwrap_or(1) % block != 0 {
            return Err(self.bad_shape("row length is not a multiple of the block size"));
        }
        self.ggml_type
            .bytes_for(n)
            .ok_or_else(|| self.bad_shape("byte size overflows"))
    }

    fn bad_shape(&self, reason: &'static str) -> WriteError {
        WriteError::BadShape {
            name: self.name.to_string(),
            dims: self.dims.clone(),
            reason,
        }
    }
}

/// Where everything goes in a file, computed before any byte is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The data alignment.
    pub alignment: u64,
    /// Absolute offset of the data section (header, metadata and infos, padded).
    pub data_offset: u64,
    /// Each tensor's offset relative to the data section.
    pub offsets: Vec<u64>,
    /// Each tensor's size in bytes (without padding).
    pub sizes: Vec<u64>,
    /// Total file size.
    pub file_len: u64,
}

impl Layout {
    /// Computes the layout of a file with this metadata and these tensors, in this order.
    pub fn compute<K: AsRef<str>>(
        metadata: &[(K, Value<'_>)],
        tensors: &[TensorSpec<'_>],
    ) -> Result<Layout, WriteError> {
        Ok(encode_header(metadata, tensors)?.1)
    }

    /// The header bytes such a file starts with (magic, metadata, tensor infos; without the
    /// padding up to [`data_offset`](Self::data_offset)), with its layout: what
    /// [`Gguf::parse_header`](crate::Gguf::parse_header) reads before any data exists.
    pub fn header<K: AsRef<str>>(
        metadata: &[(K, Value<'_>)],
        tensors: &[TensorSpec<'_>],
    ) -> Result<(Vec<u8>, Layout), WriteError> {
        encode_header(metadata, tensors)
    }
}

fn alignment_of<K: AsRef<str>>(metadata: &[(K, Value<'_>)]) -> Result<u64, WriteError> {
    match metadata
        .iter()
        .find(|(k, _)| k.as_ref() == "general.alignment")
    {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, Value::U32(a))) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(_) => Err(WriteError::BadAlignment),
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, key: &str, value: &Value<'_>) -> Result<(), WriteError> {
    match value {
        Value::U8(v) => buf.push(*v),
        Value::I8(v) => buf.push(*v as u8),
        Value::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => buf.push(u8::from(*v)),
        Value::String(s) => put_str(buf, s),
        Value::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Array(a) => {
            let elem = a.element_type();
            buf.extend_from_slice(&elem.id().to_le_bytes());
            buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
            if let Some(bytes) = a.encoded_bytes() {
                buf.extend_from_slice(bytes);
            } else {
                for item in a.iter() {
                    if item.value_type() != elem {
                        return Err(WriteError::MixedArray {
                            key: key.to_owned(),
                            declared: elem,
                            found: item.value_type(),
                        });
                    }
                    put_value(buf, key, &item)?;
                }
            }
        }
    }
    Ok(())
}

/// Encodes everything before the data section (without the final padding) and computes the layout.
fn encode_header<K: AsRef<str>>(
    metadata: &[(K, Value<'_>)],
    tensors: &[TensorSpec<'_>],
) -> Result<(Vec<u8>, Layout), WriteError> {
    let alignment = alignment_of(metadata)?;
    let mut buf = Vec::new();
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&3u32.to_le_bytes());
    buf.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    let mut keys = HashSet::with_capacity(metadata.len());
    for (key, value) in metadata {
        let key = key.as_ref();
        if !keys.insert(key) {
            return Err(WriteError::Duplicate {
                what: "metadata key",
                name: key.to_owned(),
            });
        }
        put_str(&mut buf, key);
        buf.extend_from_slice(&value.value_type().id().to_le_bytes());
        put_value(&mut buf, key, value)?;
    }
    let mut names = HashSet::with_capacity(tensors.len());
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut next: u64 = 0;
    let overflow = || WriteError::BadShape {
        name: String::new(),
        dims: vec![],
        reason: "file size overflows",
    };
    for t in tensors {
        if !names.insert(t.name.as_ref()) {
            return Err(WriteError::Duplicate {
                what: "tensor name",
                name: t.name.to_string(),
            });
        }
        let size = t.n_bytes()?;
        put_str(&mut buf, &t.name);
        buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            buf.extend_from_slice(&d.to_le_bytes());
        }
        buf.extend_from_slice(&t.ggml_type.0.to_le_bytes());
        buf.extend_from_slice(&next.to_le_bytes());
        offsets.push(next);
        sizes.push(size);
        next = next
            .checked_add(size)
            .and_then(|n| n.checked_next_multiple_of(alignment))
            .ok_or_else(overflow)?;
    }
    // The padding up to the data section is not part of `buf`: the writer streams it, so a huge
    // (but legal) alignment never turns into a huge allocation.
    let data_offset = (buf.len() as u64).next_multiple_of(alignment);
    let file_len = data_offset.checked_add(next).ok_or_else(overflow)?;
    Ok((
        buf,
        Layout {
            alignment,
            data_offset,
            offsets,
            sizes,
            file_len,
        },
    ))
}

/// Writes a GGUF v3 file as a stream: tensor data arrives one piece at a time, in declared order.
///
/// The whole model never needs to be in memory: each tensor can be fed in as many pieces as the
/// caller likes, and the writer inserts the zero padding between tensors.
pub struct Writer<W: Write> {
    out: W,
    layout: Layout,
    names: Vec<String>,
    current: usize,
    written: u64,
}

const ZEROS: [u8; 256] = [0; 256];

fn write_zeros<W: Write>(out: &mut W, mut n: u64) -> std::io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

impl<W: Write> Writer<W> {
    /// Writes the header, metadata and tensor infos; tensor data follows through
    /// [`write_tensor_data`](Self::write_tensor_data). The alignment is `general.alignment` if the
    /// metadata has it (a power-of-two u32), else 32.
    pub fn new<K: AsRef<str>>(
        mut out: W,
        metadata: &[(K, Value<'_>)],
        tensors: &[TensorSpec<'_>],
    ) -> Result<Self, WriteError> {
        let (header, layout) = encode_header(metadata, tensors)?;
        out.write_all(&header)?;
        write_zeros(&mut out, layout.data_offset - header.len() as u64)?;
        let mut writer = Writer {
            out,
            layout,
            names: tensors.iter().map(|t| t.name.to_string()).collect(),
            current: 0,
            written: 0,
        };
        writer.skip_empty()?;
        Ok(writer)
    }

    /// The file's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Index of the tensor whose data is expected next (= number of tensors complete).
    pub fn current_tensor(&self) -> usize {
        self.current
    }

    fn skip_empty(&mut self) -> std::io::Result<()> {
        while self.current < self.layout.sizes.len()
            && self.written == self.layout.sizes[self.current]
        {
            let size = self.layout.sizes[self.current];
            write_zeros(
                &mut self.out,
                size.next_multiple_of(self.layout.alignment) - size,
            )?;
            self.current += 1;
            self.written = 0;
        }
        Ok(())
    }

    /// Appends `bytes` to the current tensor's data. A piece may not run past the end of the
    /// current tensor; once a tensor is complete its padding is written and the next one begins.
    pub fn write_tensor_data(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let Some(&size) = self.layout.sizes.get(self.current) else {
            return Err(WriteError::NoTensorLeft);
        };
        let room = size - self.written;
        if bytes.len() as u64 > room {
            return Err(WriteError::TooMuchData {
                name: self.names[self.current].clone(),
                expected: size,
                extra: bytes.len() as u64 - room,
            });
        }
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        self.skip_empty()?;
        Ok(())
    }

    /// Checks every tensor is complete, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if let Some(&expected) = self.layout.sizes.get(self.current) {
            return Err(WriteError::Incomplete {
                name: self.names[self.current].clone(),
                written: self.written,
                expected,
            });
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl ValueType {
    /// Whether values of this type are arrays.
    pub fn is_array(self) -> bool {
        self == ValueType::Array
    }
}
