//! The commands against a running server (`--host`), as the `ollama` command talks to one: the
//! same requests, NDJSON progress streams and `{"error": …}` bodies.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_api::{
    CopyRequest, CreateRequest, DeleteRequest, ListResponse, ProgressResponse, PullRequest,
    PushRequest, ShowRequest, ShowResponse, Wire, to_go_json,
};

use crate::CliError;
use crate::progress::Progress;

/// A server's base URL and an HTTP client for it.
pub(crate) struct Remote {
    base: String,
    http: reqwest::blocking::Client,
}

/// The URL a client connects to for `host`, by Ollama's rules (`envconfig.Host`, then
/// `ConnectableHost`): no scheme means http on port 11434 (`ollama.com` means https on 443),
/// `http://` and `https://` default to ports 80 and 443, a missing host is 127.0.0.1, and an
/// unspecified bind address (`0.0.0.0`, `::`) becomes loopback.
pub(crate) fn base_url(host: &str) -> String {
    let s = host.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let (scheme, hostport, default_port) = match s.split_once("://") {
        None if s == "ollama.com" => ("https", "ollama.com:443", "443"),
        None => ("http", s, "11434"),
        Some(("http", rest)) => ("http", rest, "80"),
        Some(("https", rest)) => ("https", rest, "443"),
        Some((scheme, rest)) => (scheme, rest, "11434"),
    };
    let (hostport, path) = hostport.split_once('/').unwrap_or((hostport, ""));
    let (mut host, mut port) = match kiln_go::net::split_host_port(hostport) {
        Some((h, p)) => (h.to_owned(), p.to_owned()),
        None => {
            let bare = hostport.trim_start_matches('[').trim_end_matches(']');
            let host = if bare.parse::<std::net::IpAddr>().is_ok() || !hostport.is_empty() {
                bare.to_owned()
            } else {
                "127.0.0.1".to_owned()
            };
            (host, default_port.to_owned())
        }
    };
    if !port.parse::<u32>().is_ok_and(|n| n <= 65535) {
        port = default_port.to_owned();
    }
    match host.as_str() {
        "" | "0.0.0.0" => host = "127.0.0.1".into(),
        "::" => host = "::1".into(),
        _ => {}
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{}", path.trim_end_matches('/'))
    };
    format!("{scheme}://{host}:{port}{path}")
}

impl Remote {
    pub(crate) fn new(host: &str) -> Result<Remote, CliError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .map_err(|e| CliError::Remote(e.to_string()))?;
        Ok(Remote {
            base: base_url(host),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, CliError> {
        let response = request
            .send()
            .map_err(|e| CliError::Remote(format!("could not reach {}: {e}", self.base)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().unwrap_or_default();
        Err(CliError::Remote(
            error_text(&body).unwrap_or_else(|| format!("{status}: {}", body.trim())),
        ))
    }

    fn post<T: Wire>(&self, path: &str, body: &T) -> Result<reqwest::blocking::Response, CliError> {
        self.send(
            self.http
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(to_go_json(body)),
        )
    }

    pub(crate) fn list(&self) -> Result<ListResponse, CliError> {
        let response = self.send(self.http.get(self.url("/api/tags")))?;
        parse(&response.bytes().map_err(read_error)?)
    }

    pub(crate) fn show(&self, request: &ShowRequest) -> Result<ShowResponse, CliError> {
        let response = self.post("/api/show", request)?;
        parse(&response.bytes().map_err(read_error)?)
    }

    pub(crate) fn copy(&self, request: &CopyRequest) -> Result<(), CliError> {
        self.post("/api/copy", request).map(drop)
    }

    pub(crate) fn delete(&self, request: &DeleteRequest) -> Result<(), CliError> {
        self.send(
            self.http
                .delete(self.url("/api/delete"))
                .header("content-type", "application/json")
                .body(to_go_json(request)),
        )
        .map(drop)
    }

    pub(crate) fn create(
        &self,
        request: &CreateRequest,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        self.stream("/api/create", request, progress)
    }

    /// `POST /api/blobs/DIGEST` with the file's bytes, unless `HEAD` says the server has it;
    /// the bytes sent (or the whole size, when skipped) are added to `sent`.
    pub(crate) fn create_blob(
        &self,
        digest: &str,
        path: &std::path::Path,
        sent: &Arc<AtomicU64>,
    ) -> Result<(), CliError> {
        let url = self.url(&format!("/api/blobs/{digest}"));
        if self
            .http
            .head(&url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            if let Ok(meta) = std::fs::metadata(path) {
                sent.fetch_add(meta.len(), Ordering::Relaxed);
            }
            return Ok(());
        }
        let file = std::fs::File::open(path).map_err(|source| CliError::Io {
            path: path.to_owned(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| CliError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        let counted = Counted {
            inner: file,
            sent: sent.clone(),
        };
        let body = reqwest::blocking::Body::sized(counted, len);
        self.send(self.http.post(url).body(body)).map(drop)
    }

    pub(crate) fn pull(
        &self,
        request: &PullRequest,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        self.stream("/api/pull", request, progress)
    }

    pub(crate) fn push(
        &self,
        request: &PushRequest,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        self.stream("/api/push", request, progress)
    }

    /// A streamed request: each NDJSON line shown as it arrives; an `{"error": …}` line ends it.
    fn stream<T: Wire>(
        &self,
        path: &str,
        body: &T,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        let response = self.post(path, body)?;
        for line in std::io::BufReader::new(response).lines() {
            let line = line.map_err(|e| CliError::Remote(format!("reading the response: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(message) = error_text(&line) {
                return Err(CliError::Remote(message));
            }
            let p: ProgressResponse = parse(line.as_bytes())?;
            let _ = progress.line(&p);
        }
        Ok(())
    }
}

/// A reader that adds the bytes read to a shared counter (an upload's progress).
struct Counted<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn read_error(e: reqwest::Error) -> CliError {
    CliError::Remote(format!("reading the response: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CliError> {
    serde_json::from_slice(bytes)
        .map_err(|e| CliError::Remote(format!("unexpected response from the server: {e}")))
}

/// The message of an `{"error": "…"}` body.
fn error_text(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Ollama's envconfig.Host reads OLLAMA_HOST.
    #[test]
    fn hosts_as_ollama_reads_them() {
        for (given, want) in [
            ("", "http://127.0.0.1:11434"),
            ("1.2.3.4", "http://1.2.3.4:11434"),
            (":1234", "http://127.0.0.1:1234"),
            ("0.0.0.0", "http://127.0.0.1:11434"),
            ("[::]:8080", "http://[::1]:8080"),
            ("example.com:1234", "http://example.com:1234"),
            ("example.com", "http://example.com:11434"),
            ("ollama.com", "https://ollama.com:443"),
            ("https://example.com", "https://example.com:443"),
            ("http://example.com", "http://example.com:80"),
            ("http://example.com/path/", "http://example.com:80/path"),
            ("example.com:99999", "http://example.com:11434"),
            ("\"127.0.0.1:5000\"", "http://127.0.0.1:5000"),
        ] {
            assert_eq!(base_url(given), want, "{given:?}");
        }
    }
}
