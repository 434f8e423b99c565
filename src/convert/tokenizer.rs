//! Hugging Face tokenizer files → the vocabulary, merges and special tokens a GGUF carries, read
//! as Ollama's converter reads them (`tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{ConvertError, ModelFolder, parse_json as json, sentencepiece};

/// GGUF token types (llama.cpp's `llama_token_type`).
pub(crate) const TOKEN_NORMAL: i32 = 1;
pub(crate) const TOKEN_CONTROL: i32 = 3;
pub(crate) const TOKEN_USER_DEFINED: i32 = 4;

/// The vocabulary, one entry per token id in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Vocabulary {
    pub model: String,
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
}

/// A special token (`bos`, `eos`, …) found in `tokenizer_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Special {
    pub kind: &'static str,
    pub id: i64,
    pub add_token: Option<bool>,
    /// From `generation_config.json` when it lists several ids.
    pub ids: Vec<i32>,
}

impl Special {
    /// The word in the GGUF key (`tokenizer.ggml.<key>_token_id`); "seperator" is llama.cpp's
    /// spelling.
    pub fn key(&self) -> &'static str {
        match self.kind {
            "unk" => "unknown",
            "sep" => "seperator",
            "pad" => "padding",
            other => other,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tokenizer {
    pub vocab: Vocabulary,
    pub special: Vec<Special>,
    pub merges: Vec<String>,
    pub pre: String,
    pub template: String,
}

#[derive(Deserialize, Default)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Option<Vec<AddedToken>>,
    #[serde(default)]
    model: Option<TokenizerModel>,
    #[serde(default)]
    pre_tokenizer: Option<PreTokenizer>,
}

#[derive(Deserialize, Clone)]
struct AddedToken {
    #[serde(default)]
    id: i64,
    #[serde(default)]
    content: String,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize, Default)]
struct TokenizerModel {
    #[serde(default)]
    vocab: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    merges: Option<Box<RawValue>>,
}

#[derive(Deserialize, Default)]
struct PreTokenizer {
    #[serde(default)]
    pretokenizers: Option<Vec<PreTokenizerStep>>,
}

#[derive(Deserialize, Default)]
struct PreTokenizerStep {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    pattern: Option<Pattern>,
}

#[derive(Deserialize, Default)]
struct Pattern {
    #[serde(default, rename = "Regex")]
    regex: String,
}

/// Pre-tokenizer names Ollama recognises by the SHA-256 of their `Split` regexes.
const KNOWN_PRE_TOKENIZERS: [(&str, &str); 6] = [
    (
        "d98f9631be1e9607a9848c26c1f9eac1aa9fc21ac6ba82a2fc0741af9780a48f",
        "llama-bpe",
    ),
    (
        "03df5c5863ad70781dcfdef491ead25140f895fe8010964be0daefe27be32b02",
        "deepseek-llm",
    ),
    (
        "21cde974d587f0d54dc8d56b183cc1e6239600172035c68fbd6d4b9f8da0576e",
        "deepseek-coder",
    ),
    (
        "1ff7f41064896984db5d1bb6ff64fa4bc29007d08c1b439e505b7392777a319e",
        "qwen2",
    ),
    (
        "00431aed57e696b747435f734d1e3b9b1bfd931a121fb5cac7129e97c181e9ba",
        "qwen35",
    ),
    (
        "b92c0824a58e1d8dc3221cf3e12c433c3a86f57e46d57229993489f0798e7702",
        "laguna",
    ),
];

/// Reads the tokenizer files of `folder`; `special_kinds` are the special tokens the
/// architecture looks for, in the order their keys are written.
pub(crate) fn parse(
    folder: &ModelFolder,
    special_kinds: &[&'static str],
) -> Result<Tokenizer, ConvertError> {
    let parsed: Option<TokenizerJson> = match folder.read("tokenizer.json")? {
        Some(bytes) => Some(json("tokenizer.json", bytes)?),
        None => None,
    };
    // Ollama takes the vocabulary from tokenizer.model when there is one.
    let vocab = if let Some(bytes) = folder.read_binary("tokenizer.model") {
        sentencepiece_vocabulary(folder, bytes)?
    } else {
        match &parsed {
            Some(parsed) => json_vocabulary(parsed),
            None => return Err(ConvertError::UnknownTokenizer),
        }
    };
    let parsed = parsed.unwrap_or_default();
    let added = parsed.added_tokens.unwrap_or_default();
    let model = parsed.model.unwrap_or_default();

    let merges = match model.merges {
        None => Vec::new(),
        Some(raw) => {
            if let Ok(list) = serde_json::from_str::<Option<Vec<String>>>(raw.get()) {
                list.unwrap_or_default()
            } else {
                match serde_json::from_str::<Vec<Vec<String>>>(raw.get()) {
                    Ok(pairs) => pairs.into_iter().map(|p| p.join(" ")).collect(),
                    Err(e) => return Err(ConvertError::Merges(e.to_string())),
                }
            }
        }
    };

    let mut hasher = Sha256::new();
    for step in parsed
        .pre_tokenizer
        .and_then(|p| p.pretokenizers)
        .unwrap_or_default()
    {
        if let (true, Some(pattern)) = (step.kind == "Split", step.pattern) {
            hasher.update(pattern.regex.as_bytes());
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pre = KNOWN_PRE_TOKENIZERS
        .iter()
        .find(|(d, _)| *d == digest)
        .map_or("default", |(_, name)| name)
        .to_owned();

    let mut tokenizer = Tokenizer {
        vocab,
        special: Vec::new(),
        merges,
        pre,
        template: String::new(),
    };

    if let Some(bytes) = folder.read("tokenizer_config.json")? {
        let config: BTreeMap<String, Box<RawValue>> = json("tokenizer_config.json", bytes)?;
        if let Some(raw) = config.get("chat_template") {
            tokenizer.template = chat_template(raw.get())?;
        }
        // Later entries win, as in Go's map.
        let by_content: BTreeMap<&str, i64> =
            added.iter().map(|t| (t.content.as_str(), t.id)).collect();
        for &kind in special_kinds {
            let add_token = match config.get(&format!("add_{kind}_token")) {
                None => None,
                Some(raw) => Some(
                    serde_json::from_str::<Option<bool>>(raw.get())
                        .map_err(|e| ConvertError::Json {
                            file: "tokenizer_config.json".into(),
                            message: format!("add_{kind}_token: {e}"),
                        })?
                        .unwrap_or(false),
                ),
            };
            let content = match config.get(&format!("{kind}_token")) {
                None => String::new(),
                Some(raw) => match token_content(raw.get()) {
                    Some(c) => c,
                    None => continue,
                },
            };
            if let Some(&id) = by_content.get(content.as_str()) {
                tokenizer.special.push(Special {
                    kind,
                    id,
                    add_token,
                    ids: Vec::new(),
                });
            }
        }
    }

    if let Some(bytes) = folder.read("generation_config.json")? {
        let config: BTreeMap<String, Box<RawValue>> = json("generation_config.json", bytes)?;
        for &kind in special_kinds {
            let Some(raw) = config.get(&format!("{kind}_token_id")) else {
                continue;
            };
            // A single id keeps the one from tokenizer_config.json.
            let Ok(ids) = serde_json::from_str::<Option<Vec<i32>>>(raw.get()) else {
                continue;
            };
            if let Some(s) = tokenizer.special.iter_mut().find(|s| s.kind == kind) {
                s.ids = ids.unwrap_or_default();
            }
        }
    }
    Ok(tokenizer)
}

/// A `tokenizer.json` vocabulary: its model's vocabulary with the added tokens over it, in id
/// order, scored by id.
fn json_vocabulary(parsed: &TokenizerJson) -> Vocabulary {
    let mut by_id: BTreeMap<i64, (String, i32)> = BTreeMap::new();
    if let Some(vocab) = parsed.model.as_ref().and_then(|m| m.vocab.as_ref()) {
        for (content, &id) in vocab {
            by_id.insert(id, (content.clone(), TOKEN_NORMAL));
        }
    }
    for t in parsed.added_tokens.iter().flatten() {
        let kind = if t.special {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
        by_id.insert(t.id, (t.content.clone(), kind));
    }
    let mut vocab = Vocabulary {
        model: "gpt2".into(),
        ..Default::default()
    };
    for (id, (content, kind)) in by_id {
        vocab.tokens.push(content);
        // Ollama scores a tokenizer.json vocabulary by token id.
        vocab.scores.push(id as f32);
        vocab.types.push(kind);
    }
    vocab
}

/// Pieces Ollama marks as control tokens because Gemma 3's configs do not.
const GEMMA_CONTROL: [&str; 9] = [
    "<end_of_turn>",
    "<start_of_turn>",
    "<start_function_declaration>",
    "<end_function_declaration>",
    "<start_function_call>",
    "<end_function_call>",
    "<start_function_response>",
    "<end_function_response>",
    "<escape>",
];

/// A SentencePiece vocabulary (Ollama's `parseSentencePiece`): the model's pieces with their
/// scores; unknown, control, unused and byte pieces keep their type, the rest are normal unless
/// `special_tokens_map.json` lists them as additional special tokens; then `added_tokens.json`
/// entries are appended in id order.
fn sentencepiece_vocabulary(
    folder: &ModelFolder,
    bytes: &[u8],
) -> Result<Vocabulary, ConvertError> {
    let mut specials: Vec<String> = Vec::new();
    if let Some(map) = folder.read("special_tokens_map.json")? {
        let map: BTreeMap<String, serde_json::Value> = json("special_tokens_map.json", map)?;
        if let Some(list) = map
            .get("additional_special_tokens")
            .and_then(|v| v.as_array())
        {
            for item in list {
                match item {
                    serde_json::Value::String(s) => specials.push(s.clone()),
                    serde_json::Value::Object(o) => specials.push(
                        o.get("content")
                            .and_then(|c| c.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    _ => {}
                }
            }
        }
    }
    let mut vocab = Vocabulary {
        model: "llama".into(),
        ..Default::default()
    };
    for p in sentencepiece::pieces(bytes)? {
        let kind = match p.kind {
            2 | 3 | 5 | 6 => p.kind,
            _ if GEMMA_CONTROL.contains(&p.piece.as_str()) || specials.contains(&p.piece) => {
                TOKEN_CONTROL
            }
            _ => sentencepiece::NORMAL,
        };
        vocab.tokens.push(p.piece);
        vocab.scores.push(p.score);
        vocab.types.push(kind);
    }
    if let Some(added) = folder.read("added_tokens.json")? {
        let added: BTreeMap<String, i64> = json("added_tokens.json", added)?;
        let mut by_id: Vec<(i64, String)> = added.into_iter().map(|(c, id)| (id, c)).collect();
        by_id.sort();
        for (id, content) in by_id {
            let len = vocab.tokens.len() as i64;
            if (0..len).contains(&id) {
                if vocab.tokens[id as usize] == content {
                    continue;
                }
                return Err(ConvertError::Tokenizer(format!(
                    "token mismatch: {content} != {} at pos [{id}]",
                    vocab.tokens[id as usize]
                )));
            }
            if id != len {
                return Err(ConvertError::Tokenizer(format!(
                    "invalid token id: [{id}] as pos [{len}]"
                )));
            }
            vocab.tokens.push(content);
            vocab.scores.push(-1000.0);
            vocab.types.push(TOKEN_USER_DEFINED);
        }
    }
    Ok(vocab)
}

/// `chat_template` is a string or a list of named templates (the one named "default" is used).
fn chat_template(raw: &str) -> Result<String, ConvertError> {
    #[derive(Deserialize)]
    struct Named {
        #[serde(default)]
        name: String,
        #[serde(default)]
        template: String,
    }
    if let Ok(s) = serde_json::from_str::<Option<String>>(raw) {
        return Ok(s.unwrap_or_default());
    }
    let list: Vec<Named> =
        serde_json::from_str(raw).map_err(|e| ConvertError::ChatTemplate(e.to_string()))?;
    Ok(list
        .into_iter()
        .find(|n| n.name == "default")
        .map(|n| n.template)
        .unwrap_or_default())
}

/// A `<kind>_token` value: a string, or an added-token object with a `content` string. `None`
/// when it is neither (Ollama then skips the token).
fn token_content(raw: &str) -> Option<String> {
    if let Ok(s) = serde_json::from_str::<Option<String>>(raw) {
        return Some(s.unwrap_or_default());
    }
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(raw).ok()?;
    object.get("content")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> ModelFolder {
        ModelFolder::from_bytes(
            files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    const KINDS: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

    #[test]
    fn vocabulary_merges_and_specials_as_ollama_reads_them() {
        let f = folder(&[
            (
                "tokenizer.json",
                r#"{"added_tokens": [{"id": 3, "content": "<s>", "special": true},
                                      {"id": 5, "content": "<extra>", "special": false}],
                    "model": {"vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3, "c": 7},
                              "merges": [["a", "b"], ["ab", "c"]]},
                    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
                        {"type": "ByteLevel"}]}}"#,
            ),
            (
                "tokenizer_config.json",
                r#"{"bos_token": {"content": "<s>", "lstrip": false}, "add_bos_token": true,
                    "eos_token": "<missing>", "pad_token": 5, "chat_template": [{"name": "tool", "template": "t"}, {"name": "default", "template": "d"}]}"#,
            ),
            (
                "generation_config.json",
                r#"{"bos_token_id": [3, 4], "eos_token_id": 9}"#,
            ),
        ]);
        let t = parse(&f, &KINDS).unwrap();
        assert_eq!(t.vocab.tokens, ["a", "b", "ab", "<s>", "<extra>", "c"]);
        assert_eq!(t.vocab.scores, [0.0, 1.0, 2.0, 3.0, 5.0, 7.0]);
        assert_eq!(t.vocab.types, [1, 1, 1, 3, 4, 1]);
        assert_eq!(t.merges, ["a b", "ab c"]);
        // llama.cpp's Llama 3 regex: the digest Ollama maps to "llama-bpe".
        assert_eq!(t.pre, "llama-bpe");
        assert_eq!(t.template, "d");
        assert_eq!(
            t.special,
            [Special {
                kind: "bos",
                id: 3,
                add_token: Some(true),
                ids: vec![3, 4]
            }]
        );
    }

    #[test]
    fn sentencepiece_vocabularies_follow_ollamas_rules() {
        let model = sentencepiece::encode(&[
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("<0x41>", 0.0, 6),
            ("<start_of_turn>", 0.0, 1),
            ("<tool>", -2.0, 1),
            ("<user>", 0.0, 4),
            ("▁a", -1.0, 1),
        ]);
        let with_model = |files: &[(&str, &str)]| {
            let mut map: BTreeMap<String, Vec<u8>> = files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect();
            map.insert("tokenizer.model".into(), model.clone());
            ModelFolder::from_bytes(map)
        };
        let f = with_model(&[
            (
                "special_tokens_map.json",
                r#"{"additional_special_tokens": ["<tool>", {"content": "x"}]}"#,
            ),
            ("added_tokens.json", r#"{"<extra>": 7, "<s>": 1}"#),
        ]);
        let t = parse(&f, &KINDS).unwrap();
        assert_eq!(t.vocab.model, "llama");
        assert_eq!(
            t.vocab.tokens,
            [
                "<unk>",
                "<s>",
                "<0x41>",
                "<start_of_turn>",
                "<tool>",
                "<user>",
                "▁a",
                "<extra>"
            ]
        );
        assert_eq!(
            t.vocab.scores,
            [0.0, 0.0, 0.0, 0.0, -2.0, 0.0, -1.0, -1000.0]
        );
        // Gemma's turn markers and listed specials become control; user-defined becomes normal.
        assert_eq!(t.vocab.types, [2, 3, 6, 3, 3, 1, 1, 4]);
        for (added, message) in [
            (r#"{"<x>": 0}"#, "token mismatch: <x> != <unk> at pos [0]"),
            (r#"{"<x>": 9}"#, "invalid token id: [9] as pos [7]"),
        ] {
            let f = with_model(&[("added_tokens.json", added)]);
            assert_eq!(parse(&f, &KINDS).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn unusual_files_get_ollamas_answers() {
        // No tokenizer at all.
        assert!(matches!(
            parse(&folder(&[]), &KINDS),
            Err(ConvertError::UnknownTokenizer)
        ));
        // Merges as plain strings; no pre-tokenizer is "default".
        let f = folder(&[(
            "tokenizer.json",
            r#"{"model": {"vocab": {"x": 0}, "merges": ["x x"]}, "pre_tokenizer": null}"#,
        )]);
        let t = parse(&f, &KINDS).unwrap();
        assert_eq!(
            (t.merges.as_slice(), t.pre.as_str()),
            (&["x x".to_owned()][..], "default")
        );
        // Merges of the wrong shape.
        let f = folder(&[("tokenizer.json", r#"{"model": {"merges": [1, 2]}}"#)]);
        assert!(matches!(parse(&f, &KINDS), Err(ConvertError::Merges(_))));
        // A chat template that is neither a string nor a list.
        let f = folder(&[
            ("tokenizer.json", "{}"),
            ("tokenizer_config.json", r#"{"chat_template": 5}"#),
        ]);
        assert!(matches!(
            parse(&f, &KINDS),
            Err(ConvertError::ChatTemplate(_))
        ));
        // A Unigram vocabulary (a list) is not a map of ids.
        let f = folder(&[("tokenizer.json", r#"{"model": {"vocab": [["a", 0.0]]}}"#)]);
        assert!(matches!(parse(&f, &KINDS), Err(ConvertError::Json { .. })));
        // A tokenizer.model that is not a protobuf.
        let f = folder(&[("tokenizer.model", "\u{b}"), ("tokenizer.json", "{}")]);
        assert!(matches!(parse(&f, &KINDS), Err(ConvertError::Json { .. })));
    }
}
