//! Go's `strconv` package: number and boolean parsing, float formatting, quoting and unquoting, and
//! the printability tests quoting depends on.

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

/// Go's `strconv.FormatFloat(x, 'g', -1, 64)` (also `%v` of a `float64`): the shortest digits that
/// round-trip, in exponent form (`1e+06`, `1e-05`) when the decimal exponent is below -4 or at
/// least 6.
pub fn format_float_g(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Go's `strconv.FormatFloat(x, 'f', -1, 64)`: the shortest digits that round-trip, never in
/// exponent form (`1e21` is `1000000000000000000000`); `NaN`, `+Inf`, `-Inf` as Go spells them.
pub fn format_float_f(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // std's Display is the shortest round-trip digits in plain notation, as Go's 'f' with -1.
        x.to_string()
    }
}

/// Why a number does not parse: Go's `strconv.ErrSyntax` or `strconv.ErrRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// `strconv.ErrSyntax`: not a number of the accepted syntax.
    Syntax,
    /// `strconv.ErrRange`: a number, out of range for the type.
    Range,
}

/// Whether `s` parses as Go's `strconv.ParseInt(s, 0, 64)` or `strconv.ParseUint(s, 0, 64)` (what
/// `text/template` checks a number token with): signed text in `i64` range, unsigned in `u64` range.
pub fn parse_int_or_uint_base0(s: &str) -> Result<(), NumError> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let value = parse_uint_base0(digits)?;
    let limit = if s.starts_with(['+', '-']) {
        if negative {
            1u64 << 63
        } else {
            (1u64 << 63) - 1
        }
    } else {
        u64::MAX
    };
    if value > limit {
        return Err(NumError::Range);
    }
    Ok(())
}

/// Go's `strconv.ParseUint(s, 0, 64)`: base from the prefix (`0x`, `0o`, `0b`, a leading `0` for
/// octal, else decimal), digit underscores where Go syntax allows them.
pub fn parse_uint_base0(s: &str) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let lower = s.to_ascii_lowercase();
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() && base != 8 {
        return Err(NumError::Syntax);
    }
    let mut value: u64 = 0;
    let mut any = false;
    for b in digits.bytes() {
        if b == b'_' {
            continue;
        }
        let d = (b as char).to_digit(base).ok_or(NumError::Syntax)?;
        any = true;
        value = value
            .checked_mul(base as u64)
            .and_then(|v| v.checked_add(d as u64))
            .ok_or(NumError::Range)?;
    }
    if !any && base != 8 {
        return Err(NumError::Syntax);
    }
    if s.contains('_') && !underscores_ok(s) {
        return Err(NumError::Syntax);
    }
    Ok(value)
}

/// Go's `underscoreOK`: underscores only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let mut hex = false;
    if b.len() - i >= 2 && b[i] == b'0' && matches!(b[i + 1] | 0x20, b'b' | b'o' | b'x') {
        hex = b[i + 1] | 0x20 == b'x';
        i += 2;
        saw = b'0';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseFloat(s, 64)` when it succeeds with a finite result, for the number syntax
/// Go's `text/template` lexer produces: decimal and hexadecimal (`0x1p-2`) floats, digit
/// underscores. Unlike [`parse_float32_decimal`] it does not read `Inf`/`NaN` (Go would, but they are
/// not finite) and it does read hexadecimal and underscores.
pub fn parse_float64_finite(s: &str) -> Option<f64> {
    if s.contains('_') && !underscores_ok(s) {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (sign, body) = match clean.as_bytes().first() {
        Some(b'+') => (1.0, &clean[1..]),
        Some(b'-') => (-1.0, &clean[1..]),
        _ => (1.0, clean.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        let (mantissa, exponent) = hex.split_once('p')?;
        let exponent: i32 = exponent.parse().ok()?;
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut value = 0f64;
        for c in int.chars().chain(frac.chars()) {
            value = value * 16.0 + c.to_digit(16)? as f64;
        }
        let scale = exponent.checked_sub(4 * frac.len() as i32)?;
        let v = value * 2f64.powi(scale);
        return v.is_finite().then_some(sign * v);
    }
    // Decimal: digits, optional fraction, optional exponent; no other forms reach here.
    let valid = {
        let (mantissa, exponent) = match lower.split_once('e') {
            Some((m, e)) => (m, Some(e)),
            None => (lower.as_str(), None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        let exponent_ok = exponent.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits_ok(e)
        });
        (!int.is_empty() || !frac.is_empty()) && digits_ok(int) && digits_ok(frac) && exponent_ok
    };
    if !valid {
        return None;
    }
    let v: f64 = lower.parse().ok()?;
    v.is_finite().then_some(sign * v)
}

/// Go's `strconv.Unquote` for `"…"`, `` `…` `` and `'…'` literals.
pub fn unquote(s: &str) -> Result<String, &'static str> {
    const SYNTAX: &str = "invalid syntax";
    let b = s.as_bytes();
    if b.len() < 2 {
        return Err(SYNTAX);
    }
    let quote = b[0];
    if b[b.len() - 1] != quote {
        return Err(SYNTAX);
    }
    let body = &s[1..s.len() - 1];
    match quote {
        b'`' => {
            if body.contains('`') {
                return Err(SYNTAX);
            }
            Ok(body.replace('\r', ""))
        }
        b'"' | b'\'' => {
            let quote = quote as char;
            if body.contains('\n') {
                return Err(SYNTAX);
            }
            let mut out = String::new();
            let mut rest = body;
            while !rest.is_empty() {
                let (c, tail) = unquote_char(rest, quote)?;
                out.push_str(&c);
                rest = tail;
                if quote == '\'' && !rest.is_empty() {
                    return Err(SYNTAX);
                }
            }
            if quote == '\'' && out.is_empty() {
                return Err(SYNTAX);
            }
            Ok(out)
        }
        _ => Err(SYNTAX),
    }
}

/// Go's `strconv.UnquoteChar`: the first (possibly escaped) character of `s` and the rest.
/// `\xNN` and octal escapes give raw bytes in Go; here they are kept as U+00NN, which is
/// enough for validity checks and for telling template names apart.
pub fn unquote_char(s: &str, quote: char) -> Result<(String, &str), &'static str> {
    const SYNTAX: &str = "invalid syntax";
    let mut chars = s.chars();
    let c = chars.next().ok_or(SYNTAX)?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(SYNTAX);
    }
    if c != '\\' {
        return Ok((c.to_string(), chars.as_str()));
    }
    let e = chars.next().ok_or(SYNTAX)?;
    let rest = chars.as_str();
    let simple = match e {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        '\'' | '"' if e == quote => Some(e),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok((c.to_string(), rest));
    }
    let hex = |n: usize| -> Result<(u32, &str), &'static str> {
        if rest.len() < n || !rest.is_char_boundary(n) {
            return Err(SYNTAX);
        }
        let (digits, tail) = rest.split_at(n);
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SYNTAX);
        }
        Ok((u32::from_str_radix(digits, 16).map_err(|_| SYNTAX)?, tail))
    };
    match e {
        'x' => {
            let (v, tail) = hex(2)?;
            Ok((char::from_u32(v).ok_or(SYNTAX)?.to_string(), tail))
        }
        'u' | 'U' => {
            let (v, tail) = hex(if e == 'u' { 4 } else { 8 })?;
            let c = char::from_u32(v).ok_or(SYNTAX)?;
            Ok((c.to_string(), tail))
        }
        '0'..='7' => {
            if rest.len() < 2 || !rest.is_char_boundary(2) {
                return Err(SYNTAX);
            }
            let (digits, tail) = rest.split_at(2);
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(SYNTAX);
            }
            let v = (e as u32 - '0' as u32) * 64 + u32::from_str_radix(digits, 8).unwrap_or(0);
            if v > 255 {
                return Err(SYNTAX);
            }
            Ok((char::from_u32(v).ok_or(SYNTAX)?.to_string(), tail))
        }
        _ => Err(SYNTAX),
    }
}

/// Go's `strconv.Quote` (and `%q` of a string), with printability judged by [`is_print_approx`].
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print_approx(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint` (letters, marks, numbers, punctuation, symbols
/// and the ASCII space): Rust has no Unicode categories, so controls, non-ASCII spaces and the
/// common invisible format characters are what is excluded.
///
/// This is what `text/template` error messages are quoted with ([`quote`], `%#U`). It differs from
/// [`is_print`], which excludes more (every format character, private use in all planes,
/// noncharacters) but keeps U+2065; they are kept apart so neither caller's output changes.
pub fn is_print_approx(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c as u32, 0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
            | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF))
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

    #[test]
    fn quoting_follows_go() {
        assert_eq!(
            quote("a\"b\\\n\t\u{7}é\u{200b}"),
            "\"a\\\"b\\\\\\n\\t\\aé\\u200b\""
        );
        assert_eq!(unquote(r#""a\x41\101\u00e9""#).unwrap(), "aAAé");
        assert!(unquote(r#""\'""#).is_err());
        assert!(unquote("'ab'").is_err());
        assert_eq!(unquote("`a\rb`").unwrap(), "ab");
    }

    #[test]
    fn f_format_is_plain() {
        assert_eq!(format_float_f(1e21), "1000000000000000000000");
        assert_eq!(format_float_f(1e-7), "0.0000001");
        assert_eq!(format_float_f(0.1), "0.1");
        assert_eq!(format_float_f(-2.5), "-2.5");
        assert_eq!(format_float_f(f64::NEG_INFINITY), "-Inf");
    }

    /// Values Go's `fmt.Sprint(float64)` prints (from the `fmt` and `strconv` documentation's rules).
    #[test]
    fn go_percent_v_of_float64() {
        for (x, go) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.7, "0.7"),
            (4096.0, "4096"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (1.5e-300, "1.5e-300"),
        ] {
            assert_eq!(format_float_g(x), go, "{x}");
        }
    }
}
