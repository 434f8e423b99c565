//! Remote models: a `from` with Ollama's `:cloud` source suffix, or a `remote_host`, creates a
//! model that is only a config pointing at another server (how Ollama stores cloud models).
//! kiln stores them exactly as Ollama does; it does not proxy inference.

use kiln_go::net::{join_host_port, split_host_port};

/// Ollama's default cloud host, written into cloud models' configs.
pub const CLOUD_HOST: &str = "https://ollama.com:443";

/// Where a `from` reference asks the model to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No suffix.
    Unspecified,
    /// `:local`.
    Local,
    /// `:cloud`, or a tag ending in `-cloud`.
    Cloud,
}

/// Ollama's `modelref.ParseRef`: strips a `:cloud`/`:local` suffix (or a tag's `-cloud` ending).
/// `None` for an empty reference or two suffixes.
pub fn parse_model_ref(raw: &str) -> Option<(String, Source)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let (base, source) = split_source_suffix(raw);
    if source != Source::Unspecified && split_source_suffix(&base).1 != Source::Unspecified {
        return None;
    }
    Some((base, source))
}

fn split_source_suffix(raw: &str) -> (String, Source) {
    if let Some(idx) = raw.rfind(':') {
        let suffix_raw = raw[idx + 1..].trim();
        let suffix = suffix_raw.to_ascii_lowercase();
        match suffix.as_str() {
            "cloud" => return (raw[..idx].to_owned(), Source::Cloud),
            "local" => return (raw[..idx].to_owned(), Source::Local),
            _ => {}
        }
        if !suffix_raw.contains('/') && suffix.ends_with("-cloud") {
            let tag = &suffix_raw[..suffix_raw.len() - "-cloud".len()];
            return (format!("{}{tag}", &raw[..=idx]), Source::Cloud);
        }
    }
    (raw.to_owned(), Source::Unspecified)
}

/// Ollama's `remoteURL`: normalizes a remote host to `scheme://host:port[/path]`, port 11434 by
/// default, `ollama.com` as `https://ollama.com:443`.
pub fn remote_url(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Ok(format!(
            "http://localhost:11434{}",
            kiln_go::path::clean(raw)
        ));
    }
    let mut raw = raw.to_owned();
    if !raw.contains("://") {
        raw = format!("http://{raw}");
    }
    if raw == "http://ollama.com" {
        raw = "https://ollama.com:443".into();
    }
    let (scheme, rest) = raw.split_once("://").expect("added above");
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(format!("parse error: missing protocol scheme in {raw:?}"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, mut host) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    // url.Parse rejects a non-numeric port.
    let port_part = if host.starts_with('[') {
        host.split_once(']')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default()
    } else {
        host.rfind(':')
            .map(|i| host[i..].to_owned())
            .unwrap_or_default()
    };
    if let Some(port) = port_part.strip_prefix(':')
        && !port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "parse error: invalid port {port_part:?} after host"
        ));
    } else if !port_part.is_empty() && !port_part.starts_with(':') {
        return Err(format!("parse error: invalid host {host:?}"));
    }
    if host.is_empty() {
        host = "localhost".into();
    }
    host = match split_host_port(&host) {
        Some((h, p)) => join_host_port(h, p),
        None => join_host_port(host.trim_start_matches('[').trim_end_matches(']'), "11434"),
    };
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, suffix) = tail.split_at(path_end);
    let mut path = if path.is_empty() {
        String::new()
    } else {
        kiln_go::path::clean(path)
    };
    if path == "/" {
        path.clear();
    }
    Ok(format!("{scheme}://{userinfo}{host}{path}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ollama's TestRemoteURL and TestRemoteURL_Idempotent cases (server/create_test.go).
    #[test]
    fn remote_urls_normalize_as_ollama() {
        for (input, expected) in [
            ("/foo/bar", Some("http://localhost:11434/foo/bar")),
            ("/foo/../bar", Some("http://localhost:11434/bar")),
            ("/", Some("http://localhost:11434/")),
            ("example.com", Some("http://example.com:11434")),
            ("example.com:8080", Some("http://example.com:8080")),
            (
                "https://example.com:8080/path",
                Some("https://example.com:8080/path"),
            ),
            (
                "https://example.com:8080/path/../other",
                Some("https://example.com:8080/other"),
            ),
            ("ollama.com", Some("https://ollama.com:443")),
            ("http://ollama.com", Some("https://ollama.com:443")),
            ("http://example.com", Some("http://example.com:11434")),
            ("http://example.com/", Some("http://example.com:11434")),
            ("http://[::1]:namedport", None),
            ("", Some("http://localhost:11434")),
            ("http://localhost", Some("http://localhost:11434")),
            ("/a/b/../../c/./d", Some("http://localhost:11434/c/d")),
        ] {
            assert_eq!(remote_url(input).ok().as_deref(), expected, "{input:?}");
        }
        for input in [
            "/foo/bar",
            "example.com",
            "https://example.com:8080/path",
            "ollama.com",
            "http://localhost:11434",
        ] {
            let once = remote_url(input).unwrap();
            assert_eq!(remote_url(&once).unwrap(), once, "{input}");
        }
    }

    /// Ollama's modelref cases.
    #[test]
    fn model_refs_parse_their_source_suffix() {
        let parse = |s: &str| parse_model_ref(s);
        assert_eq!(
            parse("gpt-oss:20b:cloud"),
            Some(("gpt-oss:20b".into(), Source::Cloud))
        );
        assert_eq!(
            parse("gpt-oss:20b-cloud"),
            Some(("gpt-oss:20b".into(), Source::Cloud))
        );
        assert_eq!(
            parse("qwen3:8b:LOCAL"),
            Some(("qwen3:8b".into(), Source::Local))
        );
        assert_eq!(
            parse(" llama3 "),
            Some(("llama3".into(), Source::Unspecified))
        );
        assert_eq!(
            parse("registry.example.com:5000/m"),
            Some(("registry.example.com:5000/m".into(), Source::Unspecified))
        );
        assert_eq!(parse("m:local:cloud"), None);
        assert_eq!(parse("  "), None);
    }
}
