//! Errors for reading and writing GGUF.

use crate::{GgmlType, ValueType};
use thiserror::Error;

/// Why a byte slice is not an acceptable GGUF file. Offsets are byte positions in the input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GgufError {
    /// The file does not start with "GGUF".
    #[error("not a GGUF file: magic at offset 0 is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// A GGUF version this crate does not read.
    #[error(
        "unsupported GGUF version {version} at offset 4 (supported: 2 and 3; version 1 is obsolete)"
    )]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// A big-endian GGUF file (its version reads as a byte-swapped 2 or 3).
    #[error("big-endian GGUF (version {version} byte-swapped) is not supported")]
    BigEndian {
        /// The byte-swapped version.
        version: u32,
    },
    /// The file ends before a field it declares.
    #[error(
        "file truncated: {what} at offset {offset} needs {needed} bytes, only {available} remain"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A declared count or length beyond the configured [`Limits`](crate::Limits).
    #[error("{what} at offset {offset} is {value}, over the limit of {limit}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// Where the count was read.
        offset: u64,
        /// The declared value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A string that is not UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// What kind of string.
        what: &'static str,
        /// Where its bytes start.
        offset: u64,
    },
    /// A metadata value type id outside 0..=12.
    #[error("unknown metadata value type {id} at offset {offset}")]
    UnknownValueType {
        /// The type id.
        id: u32,
        /// Where it was read.
        offset: u64,
    },
    /// A bool byte other than 0 or 1.
    #[error("invalid bool byte {value:#04x} at offset {offset}")]
    InvalidBool {
        /// The byte.
        value: u8,
        /// Where.
        offset: u64,
    },
    /// Arrays nested deeper than the limit.
    #[error("arrays nested deeper than {limit} levels at offset {offset}")]
    NestingTooDeep {
        /// Where the innermost array starts.
        offset: u64,
        /// The depth limit.
        limit: u32,
    },
    /// A metadata key of length zero.
    #[error("empty metadata key at offset {offset}")]
    EmptyKey {
        /// Where.
        offset: u64,
    },
    /// The same key twice.
    #[error("duplicate metadata key {key:?} at offset {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second occurrence starts.
        offset: u64,
    },
    /// `general.alignment` that is not a u32.
    #[error("general.alignment must be a u32, found {found:?}")]
    AlignmentType {
        /// The type found.
        found: ValueType,
    },
    /// `general.alignment` that is zero or not a power of two.
    #[error("general.alignment must be a non-zero power of two, found {value}")]
    AlignmentValue {
        /// The value found.
        value: u64,
    },
    /// The same tensor name twice.
    #[error("duplicate tensor name {name:?} at offset {offset}")]
    DuplicateTensor {
        /// The name.
        name: String,
        /// Where the second occurrence starts.
        offset: u64,
    },
    /// More than 4 dimensions.
    #[error("tensor {name:?} declares {n_dims} dimensions (at most 4) at offset {offset}")]
    TooManyDims {
        /// Tensor name.
        name: String,
        /// Declared count.
        n_dims: u32,
        /// Where.
        offset: u64,
    },
    /// A dimension that is negative as ggml's int64, or a product of dimensions that overflows.
    #[error("tensor {name:?} has invalid shape {dims:?}: {reason}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// The dimensions.
        dims: Vec<u64>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A row length that is not a whole number of the type's blocks.
    #[error("tensor {name:?}: row length {ne0} is not a multiple of {ty}'s block size {block}")]
    PartialBlock {
        /// Tensor name.
        name: String,
        /// The row length.
        ne0: u64,
        /// The type.
        ty: GgmlType,
        /// Its block size.
        block: u64,
    },
    /// A tensor offset that is not a multiple of the alignment.
    #[error("tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// Tensor name.
        name: String,
        /// The relative data offset.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Tensor data that does not lie inside the file.
    #[error("tensor {name:?}: data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    OutOfBounds {
        /// Tensor name.
        name: String,
        /// Absolute start.
        start: u64,
        /// Absolute end.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors whose data overlap.
    #[error("tensors {first:?} and {second:?} overlap at absolute offset {offset}")]
    Overlap {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
        /// Where the second starts.
        offset: u64,
    },
    /// A header parsed without its data ([`Gguf::parse_header`](crate::Gguf::parse_header))
    /// names a tensor type whose size this crate does not know, so its extent is unknown.
    #[error("tensor {name:?}: type {ty} has no known size, so a header alone cannot place it")]
    UnknownTensorSize {
        /// Tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
}

/// A typed metadata lookup that failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The key is absent.
    #[error("metadata key {key:?} is missing")]
    Missing {
        /// The key.
        key: String,
    },
    /// The key holds a value of another type (or out of range).
    #[error("metadata key {key:?} holds {found:?}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// The type found.
        found: ValueType,
    },
}

/// Why a GGUF file could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The output failed.
    #[error("I/O error writing GGUF: {0}")]
    Io(#[from] std::io::Error),
    /// A tensor type whose size this crate does not know, so offsets cannot be computed.
    #[error("tensor {name:?} has type {ty}, whose size is unknown")]
    UnknownType {
        /// Tensor name.
        name: String,
        /// The type.
        ty: GgmlType,
    },
    /// An invalid tensor shape.
    #[error("tensor {name:?} has invalid shape {dims:?}: {reason}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// The dimensions.
        dims: Vec<u64>,
        /// What is wrong.
        reason: &'static str,
    },
    /// The same key or tensor name twice.
    #[error("duplicate {what} {name:?}")]
    Duplicate {
        /// "metadata key" or "tensor name".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// An array whose elements are not all of its declared type.
    #[error("metadata key {key:?}: array declared as {declared:?} holds a {found:?}")]
    MixedArray {
        /// The key.
        key: String,
        /// Declared element type.
        declared: ValueType,
        /// Offending element type.
        found: ValueType,
    },
    /// A `general.alignment` entry that is not a u32 power of two.
    #[error("general.alignment must be a non-zero power-of-two u32")]
    BadAlignment,
    /// More tensor data than the declared sizes.
    #[error("{extra} bytes more than declared for tensor {name:?} ({expected} bytes)")]
    TooMuchData {
        /// The tensor being written.
        name: String,
        /// Its declared size.
        expected: u64,
        /// Bytes beyond it.
        extra: u64,
    },
    /// More data after every tensor is complete.
    #[error("tensor data written after the last tensor was complete")]
    NoTensorLeft,
    /// `finish` before every tensor was written.
    #[error("tensor {name:?} is incomplete: {written} of {expected} bytes written")]
    Incomplete {
        /// The first incomplete tensor.
        name: String,
        /// Bytes written.
        written: u64,
        /// Bytes declared.
        expected: u64,
    },
}
