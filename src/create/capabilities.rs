//! The capabilities Ollama reports for a stored model (`show`: server/images.go
//! `Model.Capabilities`; `/api/tags`: server/model_list_cache.go), and which template `show`
//! answers with. The two endpoints derive them differently (order, what a GGUF contributes,
//! when a Go template counts), and each is followed as written. Ollama's `OLLAMA_GO_TEMPLATE`
//! override is not read: its default (a model's Go template is used unless the GGUF's chat
//! template is preferred) is what is reproduced.

use kiln_store::ModelConfig;

use crate::template::GoTemplate;

/// What a built-in Ollama response parser (model/parsers `ParserForName`) supports: tools,
/// thinking. `None` for a name Ollama has no parser for.
pub(crate) fn parser_support(name: &str) -> Option<(bool, bool)> {
    Some(match name {
        "qwen3" | "qwen3-coder" | "qwen3-vl-instruct" | "ministral" | "olmo3" | "functiongemma"
        | "gemma4-no-thinking" | "glm-ocr" | "lfm2" => (true, false),
        "qwen3-thinking" | "qwen3.5" | "ornith" | "qwen3-vl-thinking" | "harmony" | "cogito"
        | "deepseek3" | "nemotron-3-nano" | "nemotron-3.5-nano" | "glm-4.7" | "gemma4"
        | "lfm2-thinking" | "laguna" | "poolside-v1" | "cohere" | "glimmer" => (true, true),
        "olmo3-think" => (false, true),
        "passthrough" => (false, false),
        _ => return None,
    })
}

/// A GGUF Jinja chat template's capabilities (`chatTemplateCapabilities`): tools, thinking.
pub(crate) fn chat_template_capabilities(chat: &str) -> Vec<&'static str> {
    let mut capabilities = Vec::new();
    if chat.is_empty() {
        return capabilities;
    }
    if chat_template_has_tools(chat) {
        capabilities.push("tools");
    }
    if chat_template_thinks(chat) {
        capabilities.push("thinking");
    }
    capabilities
}

fn chat_template_has_tools(chat: &str) -> bool {
    chat.contains("tools") || chat.contains("tool_call")
}

fn chat_template_thinks(chat: &str) -> bool {
    if chat.contains("<think>") && chat.contains("</think>") {
        return true;
    }
    (chat.contains("content.split('</think>')") || chat.contains("content.split(\"</think>\")"))
        && !chat.contains("reasoning_content")
        && !chat.contains("<SPECIAL_12>")
}

/// `chatTemplateHasToolRoundTrip`: the chat template calls tools and shows their results.
fn chat_template_has_tool_round_trip(chat: &str) -> bool {
    if !chat_template_has_tools(chat) {
        return false;
    }
    let calls = chat.contains("tool_calls") || chat.contains("assistant_tool_call");
    calls
        && [
            "tool_response",
            "tool_results",
            "role'] == 'tool'",
            "role'] == \"tool\"",
            "role\"] == 'tool'",
            "role\"] == \"tool\"",
            "message.role == 'tool'",
            "message.role == \"tool\"",
            "ipython",
        ]
        .iter()
        .any(|s| chat.contains(s))
}

fn is_gptoss(config: &ModelConfig) -> bool {
    matches!(config.model_family.as_str(), "gptoss" | "gpt-oss")
}

fn is_gemma4_renderer(renderer: &str) -> bool {
    matches!(renderer, "gemma4" | "gemma4-small" | "gemma4-large")
}

fn is_nemotron3_nano_safetensors(config: &ModelConfig) -> bool {
    config.model_format == "safetensors"
        && (config.parser == "nemotron-3-nano"
            || config.renderer == "nemotron-3-nano"
            || config.model_family == "nemotron_h_omni"
            || has_family(config, "nemotron_h_omni"))
}

fn has_family(config: &ModelConfig, family: &str) -> bool {
    config
        .model_families
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == family))
}

fn push(capabilities: &mut Vec<String>, c: &str) {
    if !c.is_empty() && !capabilities.iter().any(|x| x == c) {
        capabilities.push(c.to_owned());
    }
}

/// What `show` reads from the model GGUF (the last model layer).
pub(crate) struct ModelGguf<'a> {
    /// `general.architecture`.
    pub arch: &'a str,
    /// `tokenizer.chat_template`, `""` when absent.
    pub chat_template: &'a str,
    /// The keys under `{arch}.`, without the prefix.
    pub arch_keys: &'a [String],
}

/// What `show` reads from one projector layer's GGUF.
pub(crate) struct ProjectorGguf {
    /// Some `has_audio_encoder` key is true.
    pub has_audio_encoder: bool,
    /// `{arch}.vision.projector_type`.
    pub vision_projector_type: Option<String>,
}

/// A stored model as Ollama's `GetModel` sees it for capabilities and template selection.
pub(crate) struct ShowModel<'a> {
    /// The config blob.
    pub config: &'a ModelConfig,
    /// The template layer's template (`HasGoTemplate` when present).
    pub go_template: Option<&'a GoTemplate>,
    /// The template the model runs with: the layer's, else `{{ .Prompt }}`.
    pub template: &'a GoTemplate,
    /// The model GGUF, when there is a model layer.
    pub model: Option<ModelGguf<'a>>,
    /// Every projector layer.
    pub projectors: &'a [ProjectorGguf],
}

impl ShowModel<'_> {
    fn chat_template(&self) -> &str {
        self.model.as_ref().map_or("", |m| m.chat_template)
    }

    /// `shouldUseHarmony`: a gpt-oss model whose template has harmony's tags.
    fn uses_harmony(&self) -> bool {
        is_gptoss(self.config)
            && self.template.as_str().contains("<|start|>")
            && self.template.as_str().contains("<|end|>")
    }

    /// `GetModel`'s `PreferChatTemplate`: the GGUF's chat template wins over the Go template
    /// when it offers more (without losing a tool round trip) or the same tools with a round
    /// trip the Go template lacks.
    fn prefers_chat_template(&self) -> bool {
        let Some(go) = self.go_template else {
            return false;
        };
        let chat = self.chat_template();
        if chat.is_empty()
            || !self.config.renderer.is_empty()
            || !self.config.parser.is_empty()
            || self.uses_harmony()
        {
            return false;
        }
        let chat_caps = chat_template_capabilities(chat);
        let go_caps = go.capabilities();
        if chat_caps.len() > go_caps.len() {
            return !go.has_tool_round_trip() || chat_template_has_tool_round_trip(chat);
        }
        let same =
            chat_caps.len() == go_caps.len() && chat_caps.iter().all(|c| go_caps.contains(c));
        if !same || !chat_caps.contains(&"tools") || !go_caps.contains(&"tools") {
            return false;
        }
        chat_template_has_tool_round_trip(chat) && !go.has_tool_round_trip()
    }

    /// `shouldUseGoTemplate`.
    fn uses_go_template(&self) -> bool {
        self.go_template.is_some() && !self.prefers_chat_template()
    }

    /// `usesOllamaRenderedChat`: Ollama renders the prompt itself rather than llama.cpp's
    /// Jinja.
    fn rendered_by_ollama(&self) -> bool {
        !self.config.renderer.is_empty()
            || !self.config.parser.is_empty()
            || self.uses_harmony()
            || self.uses_go_template()
    }

    /// `selectedModelTemplate`: the GGUF's chat template when llama.cpp renders the chat with
    /// it, else the Go template.
    pub(crate) fn template_shown(&self) -> String {
        let chat = self.chat_template();
        if !chat.is_empty() && !self.rendered_by_ollama() {
            return chat.to_owned();
        }
        self.template.as_str().to_owned()
    }

    /// `Model.Capabilities()`: config, GGUF, projectors, Go template, parser, model family,
    /// then what Ollama's runners cannot serve removed.
    pub(crate) fn capabilities(&self) -> Vec<String> {
        let mut caps = Vec::new();
        for c in &self.config.capabilities {
            push(&mut caps, c);
        }
        let mut arch = "";
        if let Some(model) = &self.model {
            arch = model.arch;
            if !self.rendered_by_ollama() {
                for c in chat_template_capabilities(model.chat_template) {
                    push(&mut caps, c);
                }
            }
            let has = |key: &str| model.arch_keys.iter().any(|k| k == key);
            push(
                &mut caps,
                if has("pooling_type") {
                    "embedding"
                } else {
                    "completion"
                },
            );
            if has("vision.block_count") {
                push(&mut caps, "vision");
            }
            if has("audio.block_count") {
                push(&mut caps, "audio");
            }
        }
        if !self.projectors.is_empty() {
            push(&mut caps, "vision");
        }
        for p in self.projectors {
            if p.has_audio_encoder && p.vision_projector_type.as_deref() != Some("gemma3nv") {
                push(&mut caps, "audio");
            }
        }
        if self.go_template.is_none() || self.uses_go_template() {
            for c in self.template.capabilities() {
                push(&mut caps, c);
            }
        }
        if let Some((tools, thinking)) = parser_support(&self.config.parser) {
            if tools {
                push(&mut caps, "tools");
            }
            if thinking {
                push(&mut caps, "thinking");
            }
        }
        if is_gptoss(self.config) {
            push(&mut caps, "thinking");
        }
        let config = self.config;
        let gemma4_safetensors =
            is_gemma4_renderer(&config.renderer) && config.model_format == "safetensors";
        let suppress_audio = gemma4_safetensors
            || (config.model_format == "safetensors" && config.renderer == "glimmer")
            || is_nemotron3_nano_safetensors(config)
            || arch == "nemotron_h_omni"
            || config.model_family == "nemotron_h_omni"
            || has_family(config, "nemotron_h_omni");
        if suppress_audio {
            caps.retain(|c| c != "audio");
        }
        if gemma4_safetensors || is_nemotron3_nano_safetensors(config) {
            caps.retain(|c| c != "vision");
        }
        caps
    }
}

/// What `/api/tags` reads from a model GGUF: Ollama's header scan, which stops at the first
/// `tokenizer.` key after `general.architecture` (so it never walks the vocabulary), and fails
/// as a whole on a value of an unexpected type.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ListGguf {
    /// `vision`/`audio` in key order, then `embedding` or `completion`.
    pub capabilities: Vec<String>,
    /// `{arch}.context_length`.
    pub context_length: i64,
    /// `{arch}.embedding_length`.
    pub embedding_length: i64,
    /// `general.file_type` as Ollama names it.
    pub file_type: Option<String>,
}

/// Why the `/api/tags` scan gives up on a GGUF (Ollama then lists the model without it).
#[derive(Debug)]
pub(crate) struct ListScanFailed;

/// Ollama's `readModelListGGUF` over the metadata in file order.
pub(crate) fn scan_list_gguf<'k, 'v, 'd: 'v>(
    metadata: impl IntoIterator<Item = (&'k str, &'v kiln_gguf::Value<'d>)>,
    file_type_name: impl Fn(u32) -> String,
) -> Result<ListGguf, ListScanFailed> {
    use kiln_gguf::Value;
    let integer = |v: &Value<'_>| -> Result<i64, ListScanFailed> {
        match v {
            Value::U8(_)
            | Value::I8(_)
            | Value::U16(_)
            | Value::I16(_)
            | Value::U32(_)
            | Value::I32(_)
            | Value::U64(_)
            | Value::I64(_) => Ok(v
                .as_i64()
                .or_else(|| v.as_u64().map(|u| u as i64))
                .unwrap_or_default()),
            _ => Err(ListScanFailed),
        }
    };
    let mut out = ListGguf::default();
    let mut arch = String::new();
    let mut pooling = false;
    for (key, value) in metadata {
        if key == "general.architecture" {
            match value {
                Value::String(s) => arch = s.to_string(),
                _ => return Err(ListScanFailed),
            }
            continue;
        }
        if key == "general.file_type" {
            let n = integer(value)?;
            out.file_type = Some(file_type_name(n as u32));
            continue;
        }
        if !arch.is_empty() && key.starts_with("tokenizer.") {
            break;
        }
        let Some(rest) = key
            .strip_prefix(arch.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .filter(|_| !arch.is_empty())
        else {
            continue;
        };
        match rest {
            "pooling_type" => pooling = true,
            "vision.block_count" => push(&mut out.capabilities, "vision"),
            "audio.block_count" => push(&mut out.capabilities, "audio"),
            "context_length" => out.context_length = integer(value)?,
            "embedding_length" => out.embedding_length = integer(value)?,
            _ => {}
        }
    }
    push(
        &mut out.capabilities,
        if pooling { "embedding" } else { "completion" },
    );
    Ok(out)
}

/// `buildModelListSummary`'s capabilities: the GGUF scan's, the config's, the template's tools
/// (or the parser's), insert, thinking (tags, gpt-oss or the parser), vision from projectors,
/// then what Ollama's runners cannot serve removed.
pub(crate) fn list_capabilities(
    config: &ModelConfig,
    gguf: Option<&ListGguf>,
    template: &GoTemplate,
    projectors: usize,
) -> Vec<String> {
    let mut caps = Vec::new();
    if let Some(gguf) = gguf {
        for c in &gguf.capabilities {
            push(&mut caps, c);
        }
    }
    for c in &config.capabilities {
        push(&mut caps, c);
    }
    let parser = parser_support(&config.parser);
    if template.vars().iter().any(|v| v == "tools") || parser.is_some_and(|(tools, _)| tools) {
        push(&mut caps, "tools");
    }
    if template.vars().iter().any(|v| v == "suffix") {
        push(&mut caps, "insert");
    }
    let (opening, closing) = template.thinking_tags();
    let tags = !opening.is_empty() && !closing.is_empty();
    if tags || is_gptoss(config) || parser.is_some_and(|(_, thinking)| thinking) {
        push(&mut caps, "thinking");
    }
    if projectors > 0 {
        push(&mut caps, "vision");
    }
    if config.model_format == "safetensors"
        && (is_gemma4_renderer(&config.renderer) || is_nemotron3_nano_safetensors(config))
    {
        caps.retain(|c| c != "vision" && c != "audio");
    }
    if config.model_format == "safetensors" && config.renderer == "glimmer" {
        caps.retain(|c| c != "audio");
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        ModelConfig::default()
    }

    fn go(text: &str) -> GoTemplate {
        GoTemplate::parse(text).unwrap()
    }

    const QWEN_CHAT: &str = "{% for message in messages %}{% if message.role == 'tool' %}\
        <tool_response>{{ message.content }}</tool_response>{% endif %}{% if message.tool_calls %}\
        <tool_call>{% endif %}{% endfor %}{% if tools %}{{ tools }}{% endif %}<think>\n\n</think>";

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    /// server/images.go: a GGUF chat template counts only when Ollama does not render the chat
    /// itself; a plain Go template (`{{ .Prompt }}`-style, fewer capabilities) gives way to a
    /// richer chat template, which `show` then answers as the template.
    #[test]
    fn chat_template_is_preferred_when_richer() {
        let keys = keys(&["context_length"]);
        let plain = go("{{ .System }} {{ .Prompt }}");
        let default = go("{{ .Prompt }}");
        let cfg = config();
        let model = ShowModel {
            config: &cfg,
            go_template: Some(&plain),
            template: &plain,
            model: Some(ModelGguf {
                arch: "qwen2",
                chat_template: QWEN_CHAT,
                arch_keys: &keys,
            }),
            projectors: &[],
        };
        assert!(model.prefers_chat_template());
        assert_eq!(model.capabilities(), ["tools", "thinking", "completion"]);
        assert_eq!(model.template_shown(), QWEN_CHAT);
        // Without a template layer the chat template is used as well.
        let bare = ShowModel {
            go_template: None,
            template: &default,
            ..model
        };
        assert_eq!(bare.capabilities(), ["tools", "thinking", "completion"]);
        assert_eq!(bare.template_shown(), QWEN_CHAT);
        // A renderer means Ollama renders: the chat template's capabilities do not count.
        let rendered = ModelConfig {
            renderer: "qwen3-coder".into(),
            parser: "qwen3-coder".into(),
            ..config()
        };
        let model = ShowModel {
            config: &rendered,
            ..bare
        };
        assert_eq!(model.capabilities(), ["completion", "tools"]);
        assert_eq!(model.template_shown(), "{{ .Prompt }}");
    }

    /// A Go template with tools, tool calls and results keeps its place over a chat template
    /// with the same capabilities; its own tools/insert/thinking are reported.
    #[test]
    fn a_go_template_with_a_round_trip_is_kept() {
        let keys = keys(&[]);
        let rich = go(
            "{{ range $i, $m := .Messages }}{{ if eq .Role \"tool\" }}{{ .Content }}{{ end }}\
             {{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .ToolCalls }}{{ end }}\
             {{ .Tools }}{{ .Suffix }}",
        );
        let cfg = config();
        let model = ShowModel {
            config: &cfg,
            go_template: Some(&rich),
            template: &rich,
            model: Some(ModelGguf {
                arch: "llama",
                chat_template: QWEN_CHAT,
                arch_keys: &keys,
            }),
            projectors: &[],
        };
        assert!(!model.prefers_chat_template());
        assert_eq!(
            model.capabilities(),
            ["completion", "tools", "insert", "thinking"]
        );
        assert_eq!(model.template_shown(), rich.as_str());
    }

    #[test]
    fn list_scan_stops_at_the_tokenizer_and_fails_on_odd_types() {
        use kiln_gguf::Value;
        let name = |n: u32| format!("ft{n}");
        let scan = scan_list_gguf(
            [
                ("llama.context_length", Value::U32(99)), // before the architecture: unseen
                ("general.architecture", Value::String("llama".into())),
                ("llama.vision.block_count", Value::U32(2)),
                ("llama.embedding_length", Value::U64(64)),
                ("general.file_type", Value::U32(15)),
                ("tokenizer.ggml.model", Value::String("gpt2".into())),
                ("llama.context_length", Value::U32(4096)), // after the tokenizer: unseen
                ("llama.pooling_type", Value::U32(1)),
            ]
            .iter()
            .map(|(k, v)| (*k, v)),
            name,
        )
        .unwrap();
        assert_eq!(
            scan,
            ListGguf {
                capabilities: keys(&["vision", "completion"]),
                context_length: 0,
                embedding_length: 64,
                file_type: Some("ft15".into()),
            }
        );
        assert!(
            scan_list_gguf(
                [
                    ("general.architecture", Value::String("llama".into())),
                    ("llama.context_length", Value::F32(1.0)),
                ]
                .iter()
                .map(|(k, v)| (*k, v)),
                name,
            )
            .is_err()
        );
    }

    #[test]
    fn list_capabilities_follow_the_summary_order() {
        let gguf = ListGguf {
            capabilities: keys(&["completion"]),
            ..Default::default()
        };
        let cfg = ModelConfig {
            parser: "olmo3-think".into(),
            capabilities: keys(&["vision"]),
            ..config()
        };
        assert_eq!(
            list_capabilities(&cfg, Some(&gguf), &go("{{ .Suffix }}"), 1),
            ["completion", "vision", "insert", "thinking"]
        );
        let gptoss = ModelConfig {
            model_family: "gptoss".into(),
            ..config()
        };
        assert_eq!(
            list_capabilities(&gptoss, None, &go("{{ .Tools }}"), 0),
            ["tools", "thinking"]
        );
    }

    /// server/images_test.go's safetensors cases of TestModelCapabilities (:521-566) and
    /// server/glimmer_images_test.go: a safetensors model has no GGUF to read (only a
    /// GGUF-format model layer is opened, images.go:148), so its capabilities are its config's,
    /// its template's and its parser's, less what the MLX runner cannot serve (images.go:475-516).
    /// Go's test compares the first four as sets; the glimmer one in order.
    #[test]
    fn safetensors_models_keep_what_the_mlx_runner_serves() {
        let chat = go("{{ .prompt }}");
        let safetensors = |renderer: &str, parser: &str, caps: &[&str]| ModelConfig {
            model_format: "safetensors".into(),
            renderer: renderer.into(),
            parser: parser.into(),
            capabilities: keys(caps),
            ..config()
        };
        let caps_of = |cfg: &ModelConfig, template: Option<&GoTemplate>| {
            let default = go("{{ .Prompt }}");
            ShowModel {
                config: cfg,
                go_template: template,
                template: template.unwrap_or(&default),
                model: None,
                projectors: &[],
            }
            .capabilities()
        };
        let nemotron = safetensors(
            "nemotron-3-nano",
            "nemotron-3-nano",
            &["completion", "vision", "audio"],
        );
        assert_eq!(
            caps_of(&nemotron, Some(&chat)),
            ["completion", "tools", "thinking"]
        );
        for renderer in ["gemma4-small", "gemma4-large", "gemma4"] {
            let gemma4 = safetensors(renderer, "", &["vision", "audio"]);
            assert!(caps_of(&gemma4, Some(&chat)).is_empty(), "{renderer}");
        }
        let glimmer = safetensors("glimmer", "glimmer", &["completion", "vision", "audio"]);
        assert_eq!(
            caps_of(&glimmer, None),
            ["completion", "vision", "tools", "thinking"]
        );
        // TestModelListCacheSuppressesNemotronSafetensorsMedia: /api/tags filters the same way.
        let listed = ModelConfig {
            capabilities: keys(&["completion", "tools", "thinking", "vision", "audio"]),
            ..safetensors("nemotron-3-nano", "nemotron-3-nano", &[])
        };
        assert_eq!(
            list_capabilities(&listed, None, &go("{{ .Prompt }}"), 0),
            ["completion", "tools", "thinking"]
        );
    }
}
