//! The rules Go's `encoding/json` decoder applies that do not depend on the target type: invalid
//! UTF-8, numbers held as `any`, and struct-field lookup by key.

use std::borrow::Cow;

use serde_json::{Number, Value};

/// Replaces each byte of an invalid UTF-8 sequence with U+FFFD, as Go's decoder does.
pub fn lossy_utf8(mut bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return Cow::Owned(out);
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // The prefix was just validated.
                out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                let bad = e.error_len().unwrap_or(bytes.len() - valid);
                for _ in 0..bad {
                    out.push('\u{FFFD}');
                }
                bytes = &bytes[valid + bad..];
            }
        }
    }
}

const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// What a JSON number becomes after a round trip through Go's `float64` (a number decoded into
/// `any`): integers within ±2^53 stay integers (same text either way), everything else is an `f64`
/// that [`super::try_to_go_json`] prints the way Go does.
pub fn float64_number(n: &Number) -> Value {
    let f = n.as_f64().unwrap_or(0.0);
    let integral = f.is_finite() && f.trunc() == f && f.abs() <= EXACT_F64_INT;
    if integral && !(f == 0.0 && f.is_sign_negative()) {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// Go's field lookup: exact name first, then a case-insensitive match under Unicode simple folding.
/// For lowercase ASCII field names (as every field table here has), where the only non-ASCII runes
/// that fold onto ASCII letters are U+212A KELVIN SIGN (k) and U+017F LATIN SMALL LETTER LONG S (s).
/// `fields` are the struct's JSON names in field order; the answer is an index into them.
pub fn match_field<'a>(
    fields: impl IntoIterator<Item = &'a str, IntoIter: Clone>,
    key: &str,
) -> Option<usize> {
    let mut fields = fields.into_iter();
    if let Some(i) = fields.clone().position(|f| f == key) {
        return Some(i);
    }
    fields.position(|f| {
        let mut want = f.bytes();
        for c in key.chars() {
            let folded = match c {
                '\u{212A}' => b'K',
                '\u{017F}' => b'S',
                c if c.is_ascii() => (c as u8).to_ascii_uppercase(),
                _ => return false,
            };
            match want.next() {
                Some(w) if w.to_ascii_uppercase() == folded => {}
                _ => return false,
            }
        }
        want.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_matching() {
        let f = ["model", "system", "stream"];
        assert_eq!(match_field(f, "model"), Some(0));
        assert_eq!(match_field(f, "MODEL"), Some(0));
        assert_eq!(match_field(f, "Model"), Some(0));
        assert_eq!(match_field(f, "\u{17F}ystem"), Some(1));
        assert_eq!(match_field(f, "modelx"), None);
        assert_eq!(match_field(f, "mode"), None);
        assert_eq!(match_field(f, "modél"), None);
    }

    #[test]
    fn lossy_is_per_byte() {
        assert_eq!(lossy_utf8(b"a\xE2\x82b"), "a\u{FFFD}\u{FFFD}b");
        assert_eq!(lossy_utf8(b"\xFF"), "\u{FFFD}");
        assert_eq!(lossy_utf8(b"ok"), "ok");
    }
}
