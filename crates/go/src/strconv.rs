//! Go's `strconv` package: the parsing rules Ollama applies to text it types, and the printability
//! test its quoting depends on.

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign and decimal digits (no underscores, no
/// spaces), in `i64` range; `None` where Go returns an error.
pub fn parse_int_base10(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`; `None` for
/// anything else (Go's error).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseFloat(s, 32)` for decimal text: Go's spellings of infinity and NaN, and an error
/// (not infinity) when a finite number is out of `f32` range. Hexadecimal floats and digit
/// underscores, which Go also reads, are refused.
pub fn parse_float32_decimal(s: &str) -> Option<f32> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        if lower == "nan" && body.len() != s.len() {
            return None; // Go reads no sign on NaN
        }
        return s.parse().ok();
    }
    // Rust also reads these words; anything else must be plain decimal digits, a point, an exponent.
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let v: f32 = s.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space; not
/// controls, other spaces, format characters, surrogates or private use. (Unassigned code points,
/// which Go also drops, are kept: which ones are unassigned depends on the Unicode version.)
///
/// The Modelfile parser keeps only these characters, as Ollama's does.
pub fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    let u = u32::from(c);
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
    let noncharacter = matches!(u, 0xFDD0..=0xFDEF) || u & 0xFFFE == 0xFFFE;
    !(c.is_control() || c.is_whitespace() || format || private || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_number_rules() {
        assert_eq!(parse_int_base10("+7"), Some(7));
        assert_eq!(parse_int_base10("-0"), Some(0));
        assert_eq!(parse_int_base10("1_000"), None);
        assert_eq!(parse_int_base10("9223372036854775808"), None);
        assert_eq!(parse_int_base10(" 1"), None);
        assert_eq!(
            parse_float32_decimal("1e39"),
            None,
            "out of f32 range is Go's ErrRange"
        );
        assert_eq!(parse_float32_decimal(".5"), Some(0.5));
        assert_eq!(parse_float32_decimal("5."), Some(5.0));
        assert_eq!(parse_float32_decimal("+Inf"), Some(f32::INFINITY));
        assert_eq!(parse_float32_decimal("-nan"), None);
        assert_eq!(parse_float32_decimal("0x1p-2"), None);
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
