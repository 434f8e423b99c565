//! Go's `encoding/json` (v1, as used by Ollama through gin): the one JSON encoder for everything kiln
//! puts on the wire, byte-for-byte what Go writes for the same value.
//!
//! serde's derive already gives Go's struct-field order (declaration order) and serde_json's
//! `Value` maps are `BTreeMap`s, i.e. sorted by key bytes like Go's map encoding. What is left to
//! match is done by a custom [`serde_json::ser::Formatter`]:
//!
//! * **HTML escaping.** Go writes `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`, and always writes
//!   U+2028 / U+2029 as `\u2028` / `\u2029`. serde_json hands every run of string bytes that it does
//!   not escape itself to `write_string_fragment` — for object keys as well as values — so escaping
//!   there touches string contents only and can never alter JSON structure. (A byte-level replace over
//!   the finished output would also be sound, because none of these characters can occur outside a
//!   string in JSON, but doing it in the formatter needs no second pass.) serde_json's own escapes
//!   (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, lowercase `\u00xx`) already equal Go's (Go ≥ 1.22).
//! * **Floats.** Go prints the shortest round-trip digits, in plain notation when
//!   `1e-6 <= |x| < 1e21` (`0.00001`, `500000`) and otherwise as `1e-7` / `1e+21`; serde_json (ryu)
//!   would print `1e-5` and `500000.0`. Non-finite floats, which Go refuses to encode, become `null`.
//!
//! Besides the encoder: [`first_value`], Go's JSON scanner (syntax errors with Go's texts), and the
//! decoding rules Go applies on the way in ([`lossy_utf8`], [`float64_number`], [`match_field`]).

mod decode;
mod scan;

pub use decode::{float64_number, lossy_utf8, match_field};
pub use scan::first_value;

use std::io;

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::Formatter;

/// Encodes like Go's `json.Marshal` (what gin's `c.JSON` sends): compact, HTML-escaped, no trailing
/// newline. For any serializable value, e.g. on-disk manifests and config blobs. Fails only where
/// serde_json would (a non-string map key, a custom error).
pub fn try_to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// [`try_to_go_json`] plus the trailing `\n` that Go's `json.Encoder` appends (manifests, blobs).
pub fn try_to_go_json_line<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = try_to_go_json(value)?;
    out.push(b'\n');
    Ok(out)
}

/// A JSON number holding a GGUF `float32` so that [`try_to_go_json`] prints it as Go prints a `float32`
/// (`1e-5f32` → `0.00001`, not the widened `0.000009999999747378752`).
///
/// It takes the shortest decimal that round-trips as `f32` and stores the `f64` nearest to it, whose
/// shortest `f64` digits are the same. Non-finite values become `null`.
pub fn f32_value(v: f32) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    let shortest = format!("{v:e}");
    match shortest.parse::<f64>() {
        Ok(wide) => serde_json::Number::from_f64(wide).map_or(Value::Null, Value::Number),
        Err(_) => Value::Null,
    }
}

/// serde_json formatter with Go's string escaping and float layout.
#[derive(Clone, Copy, Debug, Default)]
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let escape: &[u8] = match ch {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape)?;
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(format_float(value, false).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        writer.write_all(format_float(f64::from(value), true).as_bytes())
    }
}

/// Go's `encoding/json` float text (`floatEncoder.encode`): shortest round-trip digits for the given width, `%f` layout for
/// `1e-6 <= |x| < 1e21`, otherwise `%e` layout with the exponent's leading zero dropped when negative.
pub fn format_float(value: f64, is_f32: bool) -> String {
    if !value.is_finite() {
        return "null".to_owned();
    }
    // Shortest round-trip digits, from std's formatter (Grisu with Dragon fallback).
    let sci = if is_f32 {
        format!("{:e}", value as f32)
    } else {
        format!("{value:e}")
    };
    let (negative, body) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = body.split_once('e').unwrap_or((body, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();

    let abs = value.abs();
    let exponential = if abs == 0.0 {
        false
    } else if is_f32 {
        let a = abs as f32;
        !(1e-6..1e21).contains(&a)
    } else {
        !(1e-6..1e21).contains(&abs)
    };

    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if exponential {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        if exp < 0 {
            out.push('-');
            out.push_str(&(-exp).to_string());
        } else {
            out.push('+');
            out.push_str(&format!("{exp:02}"));
        }
    } else {
        // The decimal point sits after `exp + 1` digits.
        let point = exp + 1;
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_layout_matches_go_rules() {
        // Expected strings follow Go's strconv.AppendFloat('f'/'e', -1) plus encoding/json's rules.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (500000.0, "500000"),
            (0.7, "0.7"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.2345e300, "1.2345e+300"),
            (-123.456, "-123.456"),
            (12345678901234567890.0, "12345678901234567000"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(*v, false), *want, "{v:e}");
        }
        assert_eq!(format_float(f64::from(1e-5f32), true), "0.00001");
        assert_eq!(format_float(f64::from(0.1f32), true), "0.1");
        assert_eq!(format_float(f64::NAN, false), "null");
    }
}
