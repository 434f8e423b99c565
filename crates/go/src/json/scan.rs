//! A syntax checker with the states and messages of Go's `encoding/json` scanner, to run over a raw
//! body before parsing, so a malformed request gets Go's exact 400 text
//! (`invalid character 'm' looking for beginning of object key string`, `unexpected EOF`).
//!
//! Like `json.Decoder.Decode`, it stops at the end of the first value and never looks further.
//! Iterative (explicit stack), so hostile nesting cannot overflow the call stack.

/// Go's `maxNestingDepth`.
const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    InString,
    InStringEsc,
    InStringEscU(u8),
    Neg,
    Int1,
    Int0,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    Literal(&'static [u8], usize, &'static str),
}

/// Where the first JSON value ends (exclusive), or Go's error text. Input that is empty or only
/// whitespace yields `Ok(None)` (Go's `io.EOF`).
pub fn first_value(bytes: &[u8]) -> Result<Option<usize>, String> {
    let mut stack: Vec<Ctx> = Vec::new();
    let mut state = State::BeginValue;
    let mut started = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        // Each step may re-dispatch the same byte to another state (Go's `return stateX(s, c)`).
        loop {
            match state {
                State::BeginValue => {
                    if is_space(c) {
                        break;
                    }
                    started = true;
                    state = match c {
                        b'{' => {
                            push(&mut stack, Ctx::ObjectKey, c)?;
                            State::BeginStringOrEmpty
                        }
                        b'[' => {
                            push(&mut stack, Ctx::ArrayValue, c)?;
                            State::BeginValueOrEmpty
                        }
                        b'"' => State::InString,
                        b'-' => State::Neg,
                        b'0' => State::Int0,
                        b'1'..=b'9' => State::Int1,
                        b't' => State::Literal(b"true", 1, "true"),
                        b'f' => State::Literal(b"false", 1, "false"),
                        b'n' => State::Literal(b"null", 1, "null"),
                        _ => return Err(invalid(c, "looking for beginning of value")),
                    };
                    break;
                }
                State::BeginValueOrEmpty => {
                    if is_space(c) {
                        break;
                    }
                    if c == b']' {
                        state = State::EndValue;
                    } else {
                        state = State::BeginValue;
                    }
                    continue;
                }
                State::BeginStringOrEmpty => {
                    if is_space(c) {
                        break;
                    }
                    if c == b'}' {
                        if let Some(top) = stack.last_mut() {
                            *top = Ctx::ObjectValue;
                        }
                        state = State::EndValue;
                    } else {
                        state = State::BeginString;
                    }
                    continue;
                }
                State::BeginString => {
                    if is_space(c) {
                        break;
                    }
                    if c == b'"' {
                        state = State::InString;
                        break;
                    }
                    return Err(invalid(c, "looking for beginning of object key string"));
                }
                State::EndValue => {
                    let Some(&top) = stack.last() else {
                        // The top-level value is complete; Go reads no further.
                        return Ok(Some(i - 1));
                    };
                    if is_space(c) {
                        break;
                    }
                    match (top, c) {
                        (Ctx::ObjectKey, b':') => {
                            if let Some(t) = stack.last_mut() {
                                *t = Ctx::ObjectValue;
                            }
                            state = State::BeginValue;
                        }
                        (Ctx::ObjectKey, _) => return Err(invalid(c, "after object key")),
                        (Ctx::ObjectValue, b',') => {
                            if let Some(t) = stack.last_mut() {
                                *t = Ctx::ObjectKey;
                            }
                            state = State::BeginString;
                        }
                        (Ctx::ObjectValue, b'}') | (Ctx::ArrayValue, b']') => {
                            stack.pop();
                            if stack.is_empty() {
                                // Go completes an object/array without reading another byte.
                                return Ok(Some(i));
                            }
                            state = State::EndValue;
                        }
                        (Ctx::ObjectValue, _) => {
                            return Err(invalid(c, "after object key:value pair"));
                        }
                        (Ctx::ArrayValue, b',') => state = State::BeginValue,
                        (Ctx::ArrayValue, _) => return Err(invalid(c, "after array element")),
                    }
                    break;
                }
                State::InString => {
                    match c {
                        b'"' => state = State::EndValue,
                        b'\\' => state = State::InStringEsc,
                        c if c < 0x20 => return Err(invalid(c, "in string literal")),
                        _ => {}
                    }
                    break;
                }
                State::InStringEsc => {
                    state = match c {
                        b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => State::InString,
                        b'u' => State::InStringEscU(0),
                        _ => return Err(invalid(c, "in string escape code")),
                    };
                    break;
                }
                State::InStringEscU(n) => {
                    if !c.is_ascii_hexdigit() {
                        return Err(invalid(c, "in \\u hexadecimal character escape"));
                    }
                    state = if n == 3 {
                        State::InString
                    } else {
                        State::InStringEscU(n + 1)
                    };
                    break;
                }
                State::Neg => {
                    state = match c {
                        b'0' => State::Int0,
                        b'1'..=b'9' => State::Int1,
                        _ => return Err(invalid(c, "in numeric literal")),
                    };
                    break;
                }
                State::Int1 => {
                    if c.is_ascii_digit() {
                        break;
                    }
                    state = State::Int0;
                    continue;
                }
                State::Int0 => {
                    match c {
                        b'.' => state = State::Dot,
                        b'e' | b'E' => state = State::E,
                        _ => {
                            state = State::EndValue;
                            continue;
                        }
                    }
                    break;
                }
                State::Dot => {
                    if c.is_ascii_digit() {
                        state = State::Dot0;
                        break;
                    }
                    return Err(invalid(c, "after decimal point in numeric literal"));
                }
                State::Dot0 => {
                    match c {
                        b'0'..=b'9' => {}
                        b'e' | b'E' => state = State::E,
                        _ => {
                            state = State::EndValue;
                            continue;
                        }
                    }
                    break;
                }
                State::E => {
                    if c == b'+' || c == b'-' {
                        state = State::ESign;
                        break;
                    }
                    state = State::ESign;
                    continue;
                }
                State::ESign => {
                    if c.is_ascii_digit() {
                        state = State::E0;
                        break;
                    }
                    return Err(invalid(c, "in exponent of numeric literal"));
                }
                State::E0 => {
                    if c.is_ascii_digit() {
                        break;
                    }
                    state = State::EndValue;
                    continue;
                }
                State::Literal(word, at, name) => {
                    if c != word[at] {
                        return Err(invalid(
                            c,
                            &format!("in literal {name} (expecting {})", quote_char(word[at])),
                        ));
                    }
                    state = if at + 1 == word.len() {
                        State::EndValue
                    } else {
                        State::Literal(word, at + 1, name)
                    };
                    break;
                }
            }
        }
    }
    // End of input: Go feeds one space to see whether the value is complete.
    if !started {
        return Ok(None);
    }
    let complete = stack.is_empty()
        && matches!(
            state,
            State::EndValue | State::Int0 | State::Int1 | State::Dot0 | State::E0
        );
    if complete {
        Ok(Some(bytes.len()))
    } else {
        Err("unexpected EOF".to_owned())
    }
}

fn push(stack: &mut Vec<Ctx>, ctx: Ctx, c: u8) -> Result<(), String> {
    stack.push(ctx);
    if stack.len() > MAX_DEPTH {
        return Err(invalid(c, "exceeded max depth"));
    }
    Ok(())
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(c))
}

/// Go's `quoteChar`: the byte as a rune, quoted like `strconv.Quote` but with single quotes.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        b'\\' => r"'\\'".to_owned(),
        0x07 => r"'\a'".to_owned(),
        0x08 => r"'\b'".to_owned(),
        0x0c => r"'\f'".to_owned(),
        b'\n' => r"'\n'".to_owned(),
        b'\r' => r"'\r'".to_owned(),
        b'\t' => r"'\t'".to_owned(),
        0x0b => r"'\v'".to_owned(),
        0x00..=0x1f | 0x7f => format!(r"'\x{c:02x}'"),
        // U+0080..U+009F (controls), U+00A0 (no-break space) and U+00AD (soft hyphen) are not
        // printable for strconv.
        0x80..=0xa0 | 0xad => format!(r"'\u{c:04x}'"),
        _ => format!("'{}'", char::from(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        first_value(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn value_ends() {
        assert_eq!(first_value(b"  "), Ok(None));
        assert_eq!(first_value(b""), Ok(None));
        assert_eq!(first_value(b"{}x"), Ok(Some(2)));
        assert_eq!(first_value(b" [1, {\"a\":[]}] junk"), Ok(Some(14)));
        assert_eq!(first_value(b"123"), Ok(Some(3)));
        assert_eq!(first_value(b"-1.5e+3 x"), Ok(Some(7)));
        assert_eq!(first_value(b"null"), Ok(Some(4)));
        assert_eq!(first_value(b"\"a\\u00e9\\n\""), Ok(Some(11)));
    }

    #[test]
    fn go_messages() {
        assert_eq!(err("{"), "unexpected EOF");
        assert_eq!(err("{\"model\":"), "unexpected EOF");
        assert_eq!(err("-"), "unexpected EOF");
        assert_eq!(
            err("{model}"),
            "invalid character 'm' looking for beginning of object key string"
        );
        assert_eq!(
            err("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(err("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            err("{\"a\":1 \"b\":2}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(err("[1 2]"), "invalid character '2' after array element");
        assert_eq!(err("\"a\nb\""), r"invalid character '\n' in string literal");
        assert_eq!(
            err(r#""\x""#),
            "invalid character 'x' in string escape code"
        );
        assert_eq!(
            err(r#""\u12G4""#),
            r"invalid character 'G' in \u hexadecimal character escape"
        );
        assert_eq!(
            err("tru "),
            "invalid character ' ' in literal true (expecting 'e')"
        );
        assert_eq!(err("nul"), "unexpected EOF");
        assert_eq!(err("-a"), "invalid character 'a' in numeric literal");
        assert_eq!(
            err("1.e5"),
            "invalid character 'e' after decimal point in numeric literal"
        );
        assert_eq!(
            err("1e+x"),
            "invalid character 'x' in exponent of numeric literal"
        );
        assert_eq!(
            err("{'a':1}"),
            r"invalid character '\'' looking for beginning of object key string"
        );
        assert_eq!(
            first_value(b"\xff").unwrap_err(),
            "invalid character 'ÿ' looking for beginning of value"
        );
        assert_eq!(
            first_value(b"[1,]").unwrap_err(),
            "invalid character ']' looking for beginning of value"
        );
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(err(&deep), "invalid character '[' exceeded max depth");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// On JSON-ish noise, the scanner and serde_json agree on what is one well-formed value.
        /// (The alphabet has no `d`, so no surrogate escapes; numbers beyond f64 are excused.)
        #[test]
        fn agrees_with_serde_json(s in "[\\[\\]{}:,\" \\\\/0-9.eE+\\-tlrufnasbc\n]{0,16}") {
            let serde_ok = serde_json::from_str::<serde_json::Value>(&s).is_ok();
            match first_value(s.as_bytes()) {
                Ok(Some(end)) => {
                    let rest_is_space = s.as_bytes()[end..].iter().all(|c| is_space(*c));
                    if serde_ok {
                        proptest::prop_assert!(rest_is_space);
                    }
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&s[..end]) {
                        proptest::prop_assert!(e.to_string().contains("out of range"), "{s:?}: {e}");
                    }
                }
                Ok(None) | Err(_) => proptest::prop_assert!(!serde_ok, "{s:?}"),
            }
        }
    }
}
