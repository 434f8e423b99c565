//! Go's `fmt` verbs, for the values Ollama prints with them.

use serde_json::Value;

use crate::strconv::{format_float_g, is_print_approx};

/// A decoded JSON value as Go's `%#v` prints it (Ollama's `show` parameters): strings quoted,
/// everything else as [`format_v`].
///
/// Strings are quoted as JSON quotes them, which is Go's `strconv.Quote` except for control
/// characters other than `\b \f \n \r \t`, DEL and unprintable non-ASCII characters (Go writes
/// `\a`, `\x7f`, `\u200b`; this writes `\u0007`, a raw DEL, a raw U+200B).
pub fn format_sharp_v(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => format_v(other),
    }
}

/// A decoded JSON value as Go's `%v` prints it (`fmt.Sprintf("%v", v)` over `any`): strings bare,
/// numbers as `float64` with `%g`'s shortest form ([`format_float_g`]), `<nil>`, `[a b]`,
/// `map[k:v]` with sorted keys.
pub fn format_v(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), format_float_g),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".to_owned(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(format_v).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", format_v(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// Go's `%#U` of a rune: `U+0041 'A'`, or just `U+0007` for unprintable characters (judged by
/// [`is_print_approx`], as [`crate::strconv::quote`] judges them).
pub fn format_sharp_u(c: char) -> String {
    if is_print_approx(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}
