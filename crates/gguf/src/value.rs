//! GGUF metadata values: borrowed from the file when read, owned when built by hand.

use std::borrow::Cow;
use std::fmt;

/// The type tag of a GGUF metadata value (`gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type with this on-disk id.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        match self {
            Self::U8 => 0,
            Self::I8 => 1,
            Self::U16 => 2,
            Self::I16 => 3,
            Self::U32 => 4,
            Self::I32 => 5,
            Self::F32 => 6,
            Self::Bool => 7,
            Self::String => 8,
            Self::Array => 9,
            Self::U64 => 10,
            Self::I64 => 11,
            Self::F64 => 12,
        }
    }

    /// Encoded size of a scalar of this type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }
}

/// A metadata value. `'a` is the lifetime of the parsed file; hand-built values are `Value<'static>`.
#[derive(Clone)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(Cow<'a, str>),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous array of metadata values.
///
/// Arrays read from a file stay as the validated encoded bytes (no per-element allocation, so a
/// 256k-entry vocabulary costs nothing to parse or to copy into a new file) and decode on iteration.
#[derive(Clone)]
pub struct Array<'a> {
    repr: ArrayRepr<'a>,
}

#[derive(Clone)]
enum ArrayRepr<'a> {
    /// Already-validated encoded elements of one type.
    Encoded {
        elem: ValueType,
        len: usize,
        bytes: &'a [u8],
    },
    /// Elements built by hand; the writer checks they all have `elem`'s type.
    Owned {
        elem: ValueType,
        values: Vec<Value<'a>>,
    },
}

impl<'a> Array<'a> {
    /// An array of hand-built values, all of type `elem` (checked when written).
    pub fn new(elem: ValueType, values: Vec<Value<'a>>) -> Self {
        Array {
            repr: ArrayRepr::Owned { elem, values },
        }
    }

    /// Wraps encoded elements the parser has validated.
    pub(crate) fn encoded(elem: ValueType, len: usize, bytes: &'a [u8]) -> Self {
        Array {
            repr: ArrayRepr::Encoded { elem, len, bytes },
        }
    }

    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match &self.repr {
            ArrayRepr::Encoded { elem, .. } | ArrayRepr::Owned { elem, .. } => *elem,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.repr {
            ArrayRepr::Encoded { len, .. } => *len,
            ArrayRepr::Owned { values, .. } => values.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, decoded one at a time.
    pub fn iter(&self) -> ArrayIter<'_, 'a> {
        match &self.repr {
            ArrayRepr::Encoded { elem, len, bytes } => ArrayIter(IterRepr::Encoded {
                elem: *elem,
                remaining: *len,
                bytes,
            }),
            ArrayRepr::Owned { values, .. } => ArrayIter(IterRepr::Owned(values.iter())),
        }
    }

    /// The encoded element bytes, when the array came from a file (lets the writer copy it as is).
    pub(crate) fn encoded_bytes(&self) -> Option<&'a [u8]> {
        match &self.repr {
            ArrayRepr::Encoded { bytes, .. } => Some(bytes),
            ArrayRepr::Owned { .. } => None,
        }
    }

    /// Elements as string slices, if this is an array of strings.
    pub fn strings(&self) -> Option<impl Iterator<Item = Cow<'_, str>> + '_> {
        (self.element_type() == ValueType::String).then(|| {
            self.iter().map(|v| match v {
                Value::String(s) => s,
                _ => Cow::Borrowed(""),
            })
        })
    }

    /// Copies the array into owned values.
    pub fn into_owned(self) -> Array<'static> {
        let elem = self.element_type();
        Array::new(elem, self.iter().map(Value::into_owned).collect())
    }
}

/// Iterator over an [`Array`]'s elements. Made only by [`Array::iter`], so the encoded bytes it
/// decodes are always ones the parser validated: it cannot be built over arbitrary bytes.
///
/// ```compile_fail
/// // The representation is private: safe code cannot point the decoder at unchecked bytes.
/// let it = kiln_gguf::ArrayIter::Encoded {
///     elem: kiln_gguf::ValueType::String,
///     remaining: 1,
///     bytes: &[255; 8],
/// };
/// ```
pub struct ArrayIter<'s, 'a>(IterRepr<'s, 'a>);

enum IterRepr<'s, 'a> {
    /// Elements still in the file's encoding (validated by the parser).
    Encoded {
        elem: ValueType,
        remaining: usize,
        bytes: &'a [u8],
    },
    /// Elements built in memory.
    Owned(std::slice::Iter<'s, Value<'a>>),
}

impl<'a> Iterator for ArrayIter<'_, 'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        match &mut self.0 {
            IterRepr::Owned(it) => it.next().cloned(),
            IterRepr::Encoded {
                elem,
                remaining,
                bytes,
            } => {
                if *remaining == 0 {
                    return None;
                }
                *remaining -= 1;
                // The parser validated these bytes, so decoding cannot fail.
                let (value, used) = crate::read::decode_validated(*elem, bytes);
                *bytes = &bytes[used..];
                Some(value)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Owned(it) => it.size_hint(),
            IterRepr::Encoded { remaining, .. } => (*remaining, Some(*remaining)),
        }
    }
}

impl<'a> Value<'a> {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A string value borrowed from `s`.
    pub fn string(s: impl Into<Cow<'a, str>>) -> Self {
        Value::String(s.into())
    }

    /// Copies borrowed data so the value outlives the file it came from.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::U8(v) => Value::U8(v),
            Value::I8(v) => Value::I8(v),
            Value::U16(v) => Value::U16(v),
            Value::I16(v) => Value::I16(v),
            Value::U32(v) => Value::U32(v),
            Value::I32(v) => Value::I32(v),
            Value::F32(v) => Value::F32(v),
            Value::Bool(v) => Value::Bool(v),
            Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
            Value::Array(a) => Value::Array(a.into_owned()),
            Value::U64(v) => Value::U64(v),
            Value::I64(v) => Value::I64(v),
            Value::F64(v) => Value::F64(v),
        }
    }

    /// The value as an unsigned integer, from any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a `u32`, from any integer type holding a value in range.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// The value as a signed integer, from any integer type holding a value in range.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, from F32 or F64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&Array<'a>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl PartialEq for Array<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.element_type() == other.element_type()
            && self.len() == other.len()
            && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// Equality is exact: same type tag and same bits (so NaN equals the same NaN, and -0.0 ≠ 0.0),
/// which is what a lossless round trip needs.
impl PartialEq for Value<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::U8(a), Value::U8(b)) => a == b,
            (Value::I8(a), Value::I8(b)) => a == b,
            (Value::U16(a), Value::U16(b)) => a == b,
            (Value::I16(a), Value::I16(b)) => a == b,
            (Value::U32(a), Value::U32(b)) => a == b,
            (Value::I32(a), Value::I32(b)) => a == b,
            (Value::F32(a), Value::F32(b)) => a.to_bits() == b.to_bits(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::U64(a), Value::U64(b)) => a == b,
            (Value::I64(a), Value::I64(b)) => a == b,
            (Value::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

impl fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "U8({v})"),
            Value::I8(v) => write!(f, "I8({v})"),
            Value::U16(v) => write!(f, "U16({v})"),
            Value::I16(v) => write!(f, "I16({v})"),
            Value::U32(v) => write!(f, "U32({v})"),
            Value::I32(v) => write!(f, "I32({v})"),
            Value::F32(v) => write!(f, "F32({v:?})"),
            Value::Bool(v) => write!(f, "Bool({v})"),
            Value::String(v) => write!(f, "String({v:?})"),
            Value::Array(a) => write!(f, "Array<{:?}>{a:?}", a.element_type()),
            Value::U64(v) => write!(f, "U64({v})"),
            Value::I64(v) => write!(f, "I64({v})"),
            Value::F64(v) => write!(f, "F64({v:?})"),
        }
    }
}
