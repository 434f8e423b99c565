//! The zero-copy parser.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::GgufError;
use crate::value::{Array, Value, ValueType};
use crate::{GgmlType, Limits, Metadata, TensorInfo};

/// GGUF's magic bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor has.
pub const MAX_DIMS: usize = 4;

/// The smallest possible encoding of one metadata entry (1-byte key, type, 1-byte value): used to
/// refuse impossible counts before allocating.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// The smallest possible tensor info (1-byte name, 0 dims, type, offset).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 4 + 8;

/// A parsed GGUF file borrowing from the input bytes.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    pub(crate) version: u32,
    pub(crate) metadata: Metadata<'a>,
    pub(crate) tensors: Vec<TensorInfo<'a>>,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
    pub(crate) bytes: &'a [u8],
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what,
                offset: self.offset(),
                needed: n,
                available: self.remaining(),
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string, bounded by `max_len`.
    fn string(&mut self, max_len: u64, what: &'static str) -> Result<&'a str, GgufError> {
        let at = self.offset();
        let len = self.u64(what)?;
        if len > max_len {
            return Err(GgufError::LimitExceeded {
                what: "string length",
                offset: at,
                value: len,
                limit: max_len,
            });
        }
        let start = self.offset();
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
            what,
            offset: start,
        })
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let at = self.offset();
        let id = self.u32("value type")?;
        ValueType::from_id(id).ok_or(GgufError::UnknownValueType { id, offset: at })
    }

    /// Reads one value of type `ty`; arrays are validated and kept encoded.
    fn value(
        &mut self,
        ty: ValueType,
        limits: &Limits,
        depth: u32,
    ) -> Result<Value<'a>, GgufError> {
        Ok(match ty {
            ValueType::String => Value::String(Cow::Borrowed(
                self.string(limits.max_string_len, "string value")?,
            )),
            ValueType::Array => {
                let start_offset = self.offset();
                if depth >= limits.max_depth {
                    return Err(GgufError::NestingTooDeep {
                        offset: start_offset,
                        limit: limits.max_depth,
                    });
                }
                let elem = self.value_type()?;
                let len_at = self.offset();
                let len = self.u64("array length")?;
                if len > limits.max_array_len {
                    return Err(GgufError::LimitExceeded {
                        what: "array length",
                        offset: len_at,
                        value: len,
                        limit: limits.max_array_len,
                    });
                }
                let start = self.pos;
                match elem.fixed_size() {
                    Some(size) => {
                        let total =
                            len.checked_mul(size as u64)
                                .ok_or(GgufError::LimitExceeded {
                                    what: "array byte size",
                                    offset: len_at,
                                    value: len,
                                    limit: limits.max_array_len,
                                })?;
                        let body_at = self.offset();
                        let body = self.take(total, "array elements")?;
                        if elem == ValueType::Bool
                            && let Some(i) = body.iter().position(|&b| b > 1)
                        {
                            return Err(GgufError::InvalidBool {
                                value: body[i],
                                offset: body_at + i as u64,
                            });
                        }
                    }
                    None => {
                        // Each string or nested array needs at least 8 (resp. 12) bytes: refuse
                        // impossible counts up front rather than after a long walk.
                        let min = if elem == ValueType::String { 8 } else { 12 };
                        if len > self.remaining() / min {
                            return Err(GgufError::Truncated {
                                what: "array elements",
                                offset: self.offset(),
                                needed: len.saturating_mul(min),
                                available: self.remaining(),
                            });
                        }
                        for _ in 0..len {
                            self.value(elem, limits, depth + 1)?;
                        }
                    }
                }
                Value::Array(Array::encoded(
                    elem,
                    len as usize,
                    &self.bytes[start..self.pos],
                ))
            }
            ValueType::Bool => {
                let at = self.offset();
                match self.array::<1>("bool value")?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    value => return Err(GgufError::InvalidBool { value, offset: at }),
                }
            }
            _ => {
                let size = ty.fixed_size().unwrap_or(0) as u64;
                let bytes = self.take(size, "scalar value")?;
                decode_validated(ty, bytes).0
            }
        })
    }
}

/// Decodes one element from bytes the parser has already validated; returns it and its length.
pub(crate) fn decode_validated(ty: ValueType, bytes: &[u8]) -> (Value<'_>, usize) {
    fn le<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&b[..N]);
        out
    }
    match ty {
        ValueType::U8 => (Value::U8(bytes[0]), 1),
        ValueType::I8 => (Value::I8(bytes[0] as i8), 1),
        ValueType::Bool => (Value::Bool(bytes[0] != 0), 1),
        ValueType::U16 => (Value::U16(u16::from_le_bytes(le(bytes))), 2),
        ValueType::I16 => (Value::I16(i16::from_le_bytes(le(bytes))), 2),
        ValueType::U32 => (Value::U32(u32::from_le_bytes(le(bytes))), 4),
        ValueType::I32 => (Value::I32(i32::from_le_bytes(le(bytes))), 4),
        ValueType::F32 => (Value::F32(f32::from_le_bytes(le(bytes))), 4),
        ValueType::U64 => (Value::U64(u64::from_le_bytes(le(bytes))), 8),
        ValueType::I64 => (Value::I64(i64::from_le_bytes(le(bytes))), 8),
        ValueType::F64 => (Value::F64(f64::from_le_bytes(le(bytes))), 8),
        ValueType::String => {
            let len = u64::from_le_bytes(le(bytes)) as usize;
            let text = std::str::from_utf8(&bytes[8..8 + len]).unwrap_or_default();
            (Value::String(Cow::Borrowed(text)), 8 + len)
        }
        ValueType::Array => {
            let elem = ValueType::from_id(u32::from_le_bytes(le(bytes))).unwrap_or(ValueType::U8);
            let len = u64::from_le_bytes(le(&bytes[4..])) as usize;
            let mut used = 12;
            match elem.fixed_size() {
                Some(size) => used += len * size,
                None => {
                    for _ in 0..len {
                        used += decode_validated(elem, &bytes[used..]).1;
                    }
                }
            }
            (
                Value::Array(Array::encoded(elem, len, &bytes[12..used])),
                used,
            )
        }
    }
}

fn check_count(
    cursor: &Cursor<'_>,
    at: u64,
    what: &'static str,
    count: u64,
    limit: u64,
    min_bytes_each: u64,
) -> Result<(), GgufError> {
    if count > limit {
        return Err(GgufError::LimitExceeded {
            what,
            offset: at,
            value: count,
            limit,
        });
    }
    if count > cursor.remaining() / min_bytes_each {
        return Err(GgufError::Truncated {
            what,
            offset: at,
            needed: count.saturating_mul(min_bytes_each),
            available: cursor.remaining(),
        });
    }
    Ok(())
}

impl<'a> Gguf<'a> {
    /// Parses and validates a GGUF v2 or v3 file held in `bytes`.
    ///
    /// Nothing is copied: strings, arrays and tensor data borrow from `bytes`. Every declared count
    /// is checked against `limits` and against the bytes that remain before anything is allocated.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Gguf<'a>, GgufError> {
        Gguf::parse_with(bytes, limits, true)
    }

    /// Parses the header alone (magic, metadata, tensor infos) of a GGUF whose data section is
    /// not in `bytes`, such as a file about to be produced tensor by tensor (the header
    /// [`Layout::header`](crate::Layout::header) encodes). The same checks as [`parse`](Self::parse)
    /// apply, and tensors may not overlap one another, but no tensor has data: every
    /// [`TensorInfo::data`] is empty, and [`TensorInfo::n_bytes`] is the size it will have. A tensor
    /// type of unknown size is refused, since nothing bounds it.
    pub fn parse_header(bytes: &'a [u8], limits: &Limits) -> Result<Gguf<'a>, GgufError> {
        Gguf::parse_with(bytes, limits, false)
    }

    fn parse_with(
        bytes: &'a [u8],
        limits: &Limits,
        with_data: bool,
    ) -> Result<Gguf<'a>, GgufError> {
        let mut cur = Cursor { bytes, pos: 0 };
        let magic = bytes.get(..4).unwrap_or(bytes);
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                found: magic.to_vec(),
            });
        }
        cur.pos = 4;
        let version = cur.u32("version")?;
        if version != 2 && version != 3 {
            let swapped = version.swap_bytes();
            if swapped == 2 || swapped == 3 {
                return Err(GgufError::BigEndian { version: swapped });
            }
            return Err(GgufError::UnsupportedVersion { version });
        }
        let tensors_at = cur.offset();
        let n_tensors = cur.u64("tensor count")?;
        let kv_at = cur.offset();
        let n_kv = cur.u64("metadata count")?;
        check_count(
            &cur,
            tensors_at,
            "tensor count",
            n_tensors,
            limits.max_tensors,
            MIN_TENSOR_INFO_BYTES,
        )?;
        check_count(
            &cur,
            kv_at,
            "metadata count",
            n_kv,
            limits.max_metadata,
            MIN_KV_BYTES,
        )?;

        let entry_bytes = std::mem::size_of::<(&str, Value<'_>)>() as u64
            + 2 * std::mem::size_of::<(&str, usize)>() as u64;
        let tensor_bytes = std::mem::size_of::<TensorInfo<'_>>() as u64
            + 2 * std::mem::size_of::<(&str, usize)>() as u64;
        let planned = n_kv * entry_bytes + n_tensors * tensor_bytes;
        if planned > limits.max_alloc {
            return Err(GgufError::LimitExceeded {
                what: "allocation for metadata and tensor tables",
                offset: tensors_at,
                value: planned,
                limit: limits.max_alloc,
            });
        }

        let mut entries = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key_at = cur.offset();
            let key = cur.string(limits.max_string_len, "metadata key")?;
            if key.is_empty() {
                return Err(GgufError::EmptyKey { offset: key_at });
            }
            let ty = cur.value_type()?;
            let value = cur.value(ty, limits, 0)?;
            if index.insert(key, entries.len()).is_some() {
                return Err(GgufError::DuplicateKey {
                    key: key.to_owned(),
                    offset: key_at,
                });
            }
            entries.push((key, value));
        }
        let metadata = Metadata { entries, index };

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(Value::U32(a)) => {
                return Err(GgufError::AlignmentValue {
                    value: u64::from(*a),
                });
            }
            Some(other) => {
                return Err(GgufError::AlignmentType {
                    found: other.value_type(),
                });
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let info_at = cur.offset();
            let name = cur.string(limits.max_string_len, "tensor name")?;
            let dims_at = cur.offset();
            let n_dims = cur.u32("dimension count")?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::TooManyDims {
                    name: name.to_owned(),
                    n_dims,
                    offset: dims_at,
                });
            }
            let mut dims = [1u64; MAX_DIMS];
            for d in dims.iter_mut().take(n_dims as usize) {
                *d = cur.u64("dimension")?;
            }
            let ggml_type = GgmlType(cur.u32("tensor type")?);
            let offset = cur.u64("tensor offset")?;
            if let Some(block) = ggml_type.block_size()
                && dims[0] % block != 0
            {
                return Err(GgufError::PartialBlock {
                    name: name.to_owned(),
                    ne0: dims[0],
                    ty: ggml_type,
                    block,
                });
            }
            if names.insert(name, tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor {
                    name: name.to_owned(),
                    offset: info_at,
                });
            }
            let info = TensorInfo::new(name, n_dims as usize, dims, ggml_type, offset).map_err(
                |reason| GgufError::BadShape {
                    name: name.to_owned(),
                    dims: dims[..n_dims as usize].to_vec(),
                    reason,
                },
            )?;
            if offset % alignment != 0 {
                return Err(GgufError::Misaligned {
                    name: name.to_owned(),
                    offset,
                    alignment,
                });
            }
            tensors.push(info);
        }

        let data_offset = cur.offset().next_multiple_of(alignment);
        if with_data {
            attach_data(&mut tensors, bytes, data_offset, bytes.len() as u64)?;
        } else {
            check_extents(&tensors, data_offset)?;
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata, in file order.
    pub fn metadata(&self) -> &Metadata<'a> {
        &self.metadata
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The data alignment (from `general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole input.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Checks every tensor's data lies in the file without overlap, and borrows it.
///
/// A tensor of an unknown type has no computable size; it is given the span up to the next
/// tensor's start (or the end of the file), so it can still be reported and copied.
/// [`attach_data`]'s checks for a header without its data: every tensor has a known size, its
/// end is representable, and no tensor starts inside another.
fn check_extents(tensors: &[TensorInfo<'_>], data_offset: u64) -> Result<(), GgufError> {
    let mut extents = Vec::with_capacity(tensors.len());
    for t in tensors {
        let size = t.n_bytes.ok_or_else(|| GgufError::UnknownTensorSize {
            name: t.name.to_owned(),
            ty: t.ggml_type,
        })?;
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(size));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(GgufError::OutOfBounds {
                name: t.name.to_owned(),
                start: start.unwrap_or(u64::MAX),
                end: u64::MAX,
                file_len: u64::MAX,
            });
        };
        extents.push((start, end, t.name));
    }
    extents.sort_unstable();
    for pair in extents.windows(2) {
        let ((_, end, first), (next, _, second)) = (pair[0], pair[1]);
        if next < end {
            return Err(GgufError::Overlap {
                first: first.to_owned(),
                second: second.to_owned(),
                offset: next,
            });
        }
    }
    Ok(())
}

fn attach_data<'a>(
    tensors: &mut [TensorInfo<'a>],
    bytes: &'a [u8],
    data_offset: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for (k, &i) in order.iter().enumerate() {
        let t = &tensors[i];
        let start = data_offset.checked_add(t.offset);
        let next_start = order
            .get(k + 1)
            .map(|&j| data_offset.saturating_add(tensors[j].offset));
        let end = match (start, t.n_bytes) {
            (Some(s), Some(n)) => s.checked_add(n),
            (Some(_), None) => Some(next_start.unwrap_or(file_len).min(file_len)),
            (None, _) => None,
        };
        let (Some(start), Some(end)) = (start, end) else {
            return Err(GgufError::OutOfBounds {
                name: t.name.to_owned(),
                start: start.unwrap_or(u64::MAX),
                end: u64::MAX,
                file_len,
            });
        };
        if end > file_len || start > end {
            return Err(GgufError::OutOfBounds {
                name: t.name.to_owned(),
                start,
                end,
                file_len,
            });
        }
        if let Some(next) = next_start
            && next < end
        {
            let j = order[k + 1];
            return Err(GgufError::Overlap {
                first: t.name.to_owned(),
                second: tensors[j].name.to_owned(),
                offset: next,
            });
        }
        let data = &bytes[start as usize..end as usize];
        tensors[i].data = data;
    }
    Ok(())
}
