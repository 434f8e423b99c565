//! Prompt templates: Ollama's built-in chat templates (matched against a GGUF's Jinja
//! `tokenizer.chat_template`), the Go `text/template` syntax check Ollama applies to a
//! template before storing it, and what Ollama reads from a parsed template (its variables
//! and thinking tags, hence the model's capabilities).

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
    GoTemplate::parse(template).map(|_| ())
}

/// A template as Ollama's `template.Parse` accepts it, with what Ollama reads from it.
#[derive(Debug, Clone)]
pub struct GoTemplate {
    raw: String,
    parsed: go_syntax::Parsed,
    vars: Vec<String>,
}

impl GoTemplate {
    /// Parses `template` as Ollama's `template.Parse` does (the errors of [`check`]).
    pub fn parse(template: &str) -> Result<GoTemplate, TemplateError> {
        let parsed = go_syntax::parse(template, OLLAMA_FUNCS)?;
        let vars = parsed
            .vars()
            .ok_or(TemplateError::TemplateWithoutPipeline)?;
        Ok(GoTemplate {
            raw: template.to_owned(),
            parsed,
            vars,
        })
    }

    /// The template's text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Ollama's `Template.Vars()`: the lower-cased names it refers to, sorted.
    pub fn vars(&self) -> &[String] {
        &self.vars
    }

    fn has_var(&self, name: &str) -> bool {
        self.vars.iter().any(|v| v == name)
    }

    /// Ollama's `thinking.InferTags`: the text around `.Thinking` in a range over messages
    /// (empty strings when there is none).
    pub fn thinking_tags(&self) -> (String, String) {
        self.parsed.thinking_tags()
    }

    /// Ollama's `goTemplateCapabilities`: `tools` when it refers to tools, `insert` when it
    /// refers to a suffix, `thinking` when both thinking tags are found, in that order.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut capabilities = Vec::new();
        if self.has_var("tools") {
            capabilities.push("tools");
        }
        if self.has_var("suffix") {
            capabilities.push("insert");
        }
        let (opening, closing) = self.thinking_tags();
        if !opening.is_empty() && !closing.is_empty() {
            capabilities.push("thinking");
        }
        capabilities
    }

    /// Ollama's `goTemplateHasToolRoundTrip`: it refers to tools and tool calls and shows
    /// tool results back to the model.
    pub fn has_tool_round_trip(&self) -> bool {
        self.has_var("tools")
            && self.has_var("toolcalls")
            && (self.raw.contains("eq .Role \"tool\"")
                || self.raw.contains("tool_response")
                || self.raw.contains("TOOL_RESULTS"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails with the first mismatches of a golden-file comparison, if there are any.
    fn assert_none_differ(count: usize, mismatches: &[String]) {
        assert!(
            mismatches.is_empty(),
            "{} of {count} differ:\n{}",
            mismatches.len(),
            mismatches[..mismatches.len().min(20)].join("\n")
        );
    }

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
        assert_none_differ(count, &mismatches);
    }

    /// Every case of the golden file made by Ollama's own `Parse`, `Vars` and
    /// `thinking.InferTags` (scripts/oracle/gen_go_template_vars_golden.py): kiln's variables
    /// and thinking tags equal them, and Ollama's rejections are rejections here.
    #[test]
    fn ollama_vars_and_thinking_tags_golden_cases_match() {
        let golden = include_str!("testdata/go-vars-golden.jsonl");
        let mut lines = golden.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert!(header["ollama"].as_str().unwrap().len() == 40);
        let (mut count, mut thinking, mut mismatches) = (0, 0, Vec::new());
        for line in lines {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let template = case["template"].as_str().unwrap();
            let expected: Option<(Vec<String>, (String, String))> =
                case["vars"].as_array().map(|vars| {
                    let tags = case["thinking"].as_array().unwrap();
                    (
                        vars.iter()
                            .map(|v| v.as_str().unwrap().to_owned())
                            .collect(),
                        (
                            tags[0].as_str().unwrap().to_owned(),
                            tags[1].as_str().unwrap().to_owned(),
                        ),
                    )
                });
            let got = GoTemplate::parse(template)
                .ok()
                .map(|t| (t.vars().to_vec(), t.thinking_tags()));
            if got != expected {
                mismatches.push(format!(
                    "{template:?}\n  ollama: {expected:?}\n  kiln:   {got:?}"
                ));
            }
            if let Some((_, (open, close))) = &expected {
                thinking += usize::from(!open.is_empty() && !close.is_empty());
            }
            count += 1;
        }
        assert!(
            count > 3000 && thinking > 100,
            "{count} cases, {thinking} thinking"
        );
        assert_none_differ(count, &mismatches);
    }

    /// Ollama's template_test.go TestParse and thinking/template_test.go cases, by hand, and
    /// the capabilities they give.
    #[test]
    fn ollamas_own_cases_give_its_vars_and_capabilities() {
        let t = GoTemplate::parse("{{ .System }} {{ .Prompt }}").unwrap();
        assert_eq!(t.vars(), ["prompt", "response", "system"]);
        assert!(t.capabilities().is_empty());
        let t = GoTemplate::parse(
            "{{ range .Messages }}{{ if eq .Role \"tool\" }}Tool Result: {{ .ToolName }} {{ .Content }}{{ end }}{{ end }}",
        )
        .unwrap();
        assert_eq!(t.vars(), ["content", "messages", "role", "toolname"]);
        let t = GoTemplate::parse(
            "{{- range $i, $_ := .Messages }}{{ if .Thinking }}\n<think>{{ .Thinking }}</think>\n{{ end }}{{ .Tools }}{{ .Suffix }}{{ end }}",
        )
        .unwrap();
        assert_eq!(t.thinking_tags(), ("<think>".into(), "</think>".into()));
        assert_eq!(t.capabilities(), ["tools", "insert", "thinking"]);
        assert!(matches!(
            GoTemplate::parse(r#"{{define "x"}}{{template "x"}}{{end}}{{template "x"}}"#),
            Err(TemplateError::TemplateWithoutPipeline)
        ));
    }
}
