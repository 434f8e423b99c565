//! Prompt templates: Ollama's built-in chat templates (matched against a GGUF's Jinja
//! `tokenizer.chat_template`) and the Go `text/template` syntax check Ollama applies to a
//! template before storing it.

pub mod go_syntax;
mod named;

pub use named::{NamedTemplate, detect};

/// The functions Ollama defines for its templates, besides Go's built-ins.
pub const OLLAMA_FUNCS: &[&str] = &["json", "currentDate", "yesterdayDate", "toTypeScriptType"];

/// Why Ollama would refuse a template; `Display` is the text after `template error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Go's parser rejects it (`template: :LINE: …`).
    #[error("{0}")]
    Syntax(#[from] go_syntax::SyntaxError),
    /// A `{{template "name"}}` without a pipeline, which Ollama's variable scan refuses.
    #[error("undefined template specified")]
    TemplateWithoutPipeline,
}

/// Ollama's `template.Parse` checks: Go's parser with Ollama's functions, then its scan of
/// the parsed nodes.
pub fn check(template: &str) -> Result<(), TemplateError> {
    let parsed = go_syntax::parse(template, OLLAMA_FUNCS)?;
    if parsed.template_without_pipeline {
        return Err(TemplateError::TemplateWithoutPipeline);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case of the golden file (made by Go's own parser through
    /// scripts/oracle/gen_go_template_golden.py) gives Go's verdict and error text.
    #[test]
    fn go_parser_golden_cases_match() {
        let golden = include_str!("testdata/go-parse-golden.jsonl");
        let mut lines = golden.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert!(header["go"].as_str().unwrap().starts_with("go1."));
        let (mut count, mut mismatches) = (0, Vec::new());
        for line in lines {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let template = case["template"].as_str().unwrap();
            let expected = case["error"].as_str().map(str::to_owned);
            let got = check(template).err().map(|e| e.to_string());
            if got != expected {
                mismatches.push(format!(
                    "{template:?}\n  go:   {expected:?}\n  kiln: {got:?}"
                ));
            }
            count += 1;
        }
        assert!(count > 2000, "only {count} cases");
        assert!(
            mismatches.is_empty(),
            "{} of {count} differ:\n{}",
            mismatches.len(),
            mismatches
                .iter()
                .take(30)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
