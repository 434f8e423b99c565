//! Model names exactly as Ollama parses them (`types/model/name.go`).

use std::fmt;
use std::str::FromStr;

/// The registry host a name gets when it has none.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace a name gets when it has none.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag a name gets when it has none.
pub const DEFAULT_TAG: &str = "latest";
const MISSING: &str = "!MISSING!";

/// A fully qualified model name: `host/namespace/model:tag`.
///
/// Every part is checked against Ollama's character and length rules, which also guarantees that
/// none can name a path outside the manifests directory (no separators, no `.`/`..` parts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

/// A name that is not a valid, fully qualified Ollama model name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model name")]
pub struct InvalidName {
    /// The text that was parsed.
    pub input: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

fn valid_part(kind: Part, s: &str) -> bool {
    let max = if kind == Part::Host { 350 } else { 80 };
    if s.is_empty() || s.len() > max {
        return false;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    s.bytes().enumerate().all(|(i, c)| match c {
        _ if i == 0 => word(c),
        b'_' | b'-' => true,
        b'.' => kind != Part::Namespace,
        b':' => kind == Part::Host,
        _ => word(c),
    })
}

/// Splits at the last `sep`; a side left empty becomes Ollama's `!MISSING!` marker (invalid).
fn cut_last(s: &str, sep: char) -> Option<(&str, &str)> {
    let i = s.rfind(sep)?;
    let (before, after) = (&s[..i], &s[i + sep.len_utf8()..]);
    Some((
        if before.is_empty() { MISSING } else { before },
        if after.is_empty() { MISSING } else { after },
    ))
}

impl ModelName {
    /// Parses like Ollama's `ParseName`: missing host, namespace and tag get their defaults
    /// (`registry.ollama.ai`, `library`, `latest`); a `scheme://` prefix on the host is dropped.
    pub fn parse(s: &str) -> Result<ModelName, InvalidName> {
        let (mut host, mut namespace, mut tag) = ("", "", "");
        let mut rest = s;
        if rest.rfind(':').map(|i| i as isize).unwrap_or(-1)
            > rest.rfind('/').map(|i| i as isize).unwrap_or(-1)
            && let Some((before, after)) = cut_last(rest, ':')
        {
            rest = before;
            tag = after;
        }
        let model;
        match cut_last(rest, '/') {
            None => model = rest,
            Some((before, after)) => {
                model = after;
                match cut_last(before, '/') {
                    None => namespace = before,
                    Some((h, ns)) => {
                        namespace = ns;
                        host = h.split_once("://").map_or(h, |(_, host)| host);
                    }
                }
            }
        }
        let or = |part: &str, default: &str| {
            if part.is_empty() {
                default.to_owned()
            } else {
                part.to_owned()
            }
        };
        let name = ModelName {
            host: or(host, DEFAULT_HOST),
            namespace: or(namespace, DEFAULT_NAMESPACE),
            model: model.to_owned(),
            tag: or(tag, DEFAULT_TAG),
        };
        if name.is_valid() {
            Ok(name)
        } else {
            Err(InvalidName {
                input: s.to_owned(),
            })
        }
    }

    /// Parses without defaults (Ollama's `ParseNameBare` + `IsValid`): only a fully written
    /// `host/namespace/model:tag` is accepted. This is the form manifest paths are checked with.
    pub fn parse_qualified(s: &str) -> Result<ModelName, InvalidName> {
        let defaulted = ModelName::parse(s)?;
        // With no defaults, every part must have been present in `s` itself.
        if defaulted.to_string() == s
            || s.split_once("://")
                .is_some_and(|(_, rest)| defaulted.to_string() == rest)
        {
            Ok(defaulted)
        } else {
            Err(InvalidName {
                input: s.to_owned(),
            })
        }
    }

    fn is_valid(&self) -> bool {
        valid_part(Part::Host, &self.host)
            && valid_part(Part::Namespace, &self.namespace)
            && valid_part(Part::Model, &self.model)
            && valid_part(Part::Tag, &self.tag)
    }

    /// Builds a name from its four parts, each checked.
    pub fn from_parts(
        host: &str,
        namespace: &str,
        model: &str,
        tag: &str,
    ) -> Result<ModelName, InvalidName> {
        let name = ModelName {
            host: host.into(),
            namespace: namespace.into(),
            model: model.into(),
            tag: tag.into(),
        };
        if name.is_valid() {
            Ok(name)
        } else {
            Err(InvalidName {
                input: name.to_string(),
            })
        }
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The shortest form Ollama shows (`llama3:latest`, `me/llama3:q4`, `host/ns/m:t`), as in
    /// `ollama list` and the `name`/`model` fields of `/api/tags`.
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// The four path components under `manifests/`.
    pub fn path_parts(&self) -> [&str; 4] {
        [&self.host, &self.namespace, &self.model, &self.tag]
    }

    /// Whether the names are equal ignoring ASCII case (Ollama's `EqualFold`).
    pub fn eq_ignore_case(&self, other: &ModelName) -> bool {
        self.path_parts()
            .iter()
            .zip(other.path_parts())
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// Replaces each part by the spelling of a part equal to it ignoring case, from `existing`
    /// (Ollama's `getExistingName`, made deterministic: the first match in `existing` wins).
    pub fn with_existing_spelling<'a>(
        &self,
        existing: impl IntoIterator<Item = &'a ModelName>,
    ) -> ModelName {
        let mut out = self.clone();
        let mut done = [false; 4];
        for e in existing {
            let parts = [&e.host, &e.namespace, &e.model, &e.tag];
            let targets = [
                &mut out.host,
                &mut out.namespace,
                &mut out.model,
                &mut out.tag,
            ];
            for (i, (target, part)) in targets.into_iter().zip(parts).enumerate() {
                if !done[i] && target.eq_ignore_ascii_case(part) {
                    target.clone_from(part);
                    done[i] = true;
                }
            }
        }
        out
    }
}

impl fmt::Display for ModelName {
    /// `host/namespace/model:tag`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }
}

impl FromStr for ModelName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelName::parse(s)
    }
}
