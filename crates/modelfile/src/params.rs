//! PARAMETER values typed as Ollama types them (`api.FormatParams` over the fields of
//! `api.Options`): an unknown name is an error, numbers and booleans parse with Go's rules, `stop`
//! collects every occurrence.

use serde_json::Value;

/// How a parameter's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterKind {
    /// Go's `strconv.ParseInt(s, 10, 64)`.
    Int,
    /// Go's `strconv.ParseFloat(s, 32)`, kept as `f32`.
    Float,
    /// Go's `strconv.ParseBool`.
    Bool,
    /// A list of strings, one element per PARAMETER line.
    List,
}

/// Every parameter a Modelfile may set, with its type: the JSON names of Ollama's `api.Options`
/// (its runner fields first, in declaration order).
pub const PARAMETERS: &[(&str, ParameterKind)] = &[
    ("num_ctx", ParameterKind::Int),
    ("num_batch", ParameterKind::Int),
    ("num_gpu", ParameterKind::Int),
    ("main_gpu", ParameterKind::Int),
    ("use_mmap", ParameterKind::Bool),
    ("num_thread", ParameterKind::Int),
    ("draft_num_predict", ParameterKind::Int),
    ("num_keep", ParameterKind::Int),
    ("seed", ParameterKind::Int),
    ("num_predict", ParameterKind::Int),
    ("top_k", ParameterKind::Int),
    ("top_p", ParameterKind::Float),
    ("min_p", ParameterKind::Float),
    ("typical_p", ParameterKind::Float),
    ("repeat_last_n", ParameterKind::Int),
    ("temperature", ParameterKind::Float),
    ("repeat_penalty", ParameterKind::Float),
    ("presence_penalty", ParameterKind::Float),
    ("frequency_penalty", ParameterKind::Float),
    ("stop", ParameterKind::List),
];

/// Parameters Ollama once had: a Modelfile that sets one gets a warning and the line is ignored.
pub const DEPRECATED_PARAMETERS: &[&str] = &[
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
];

/// Why a PARAMETER line was refused; the texts are Ollama's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParameterError {
    /// Not a parameter Ollama knows.
    #[error("unknown parameter '{0}'")]
    Unknown(String),
    /// Not a decimal integer in range.
    #[error("invalid int value [{0}]")]
    InvalidInt(String),
    /// Not a float that fits an `f32`.
    #[error("invalid float value [{0}]")]
    InvalidFloat(String),
    /// Not one of Go's boolean spellings.
    #[error("invalid bool value [{0}]")]
    InvalidBool(String),
    /// NaN or infinity, which JSON cannot carry (Go's encoder refuses the request).
    #[error("json: unsupported value: {0}")]
    NotFinite(String),
}

/// The type of a parameter, `None` when Ollama does not know it.
pub fn parameter_kind(name: &str) -> Option<ParameterKind> {
    PARAMETERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, kind)| *kind)
}

/// The JSON value of one PARAMETER line (a one-element array for a list).
pub fn parameter_value(name: &str, text: &str) -> Result<Value, ParameterError> {
    let kind = parameter_kind(name).ok_or_else(|| ParameterError::Unknown(name.to_owned()))?;
    match kind {
        ParameterKind::Int => kiln_go::strconv::parse_int_base10(text)
            .map(Value::from)
            .ok_or_else(|| ParameterError::InvalidInt(text.to_owned())),
        ParameterKind::Float => {
            let v = kiln_go::strconv::parse_float32_decimal(text)
                .ok_or_else(|| ParameterError::InvalidFloat(text.to_owned()))?;
            if !v.is_finite() {
                let go = if v.is_nan() {
                    "NaN"
                } else if v > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                return Err(ParameterError::NotFinite(go.to_owned()));
            }
            Ok(kiln_api::f32_value(v))
        }
        ParameterKind::Bool => kiln_go::strconv::parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| ParameterError::InvalidBool(text.to_owned())),
        ParameterKind::List => Ok(Value::Array(vec![Value::String(text.to_owned())])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_errors_as_ollama() {
        assert_eq!(
            parameter_value("temperature", "0.7").unwrap(),
            serde_json::json!(0.7)
        );
        assert_eq!(
            parameter_value("num_ctx", "4096").unwrap(),
            serde_json::json!(4096)
        );
        assert_eq!(
            parameter_value("use_mmap", "F").unwrap(),
            serde_json::json!(false)
        );
        assert_eq!(
            parameter_value("stop", "</s>").unwrap(),
            serde_json::json!(["</s>"])
        );
        let e = |n, v| parameter_value(n, v).unwrap_err().to_string();
        assert_eq!(e("numa", "true"), "unknown parameter 'numa'");
        assert_eq!(e("top_k", "1.5"), "invalid int value [1.5]");
        assert_eq!(e("top_p", "high"), "invalid float value [high]");
        assert_eq!(e("use_mmap", "yes"), "invalid bool value [yes]");
        assert_eq!(e("temperature", "NaN"), "json: unsupported value: NaN");
    }
}
