//! The HTTP side: one client per pull or push, with Ollama's request-and-retry rules.

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::blocking::{Body, Response};
use reqwest::header::{HeaderMap, HeaderValue};

use crate::RegistryError;
use crate::auth::{Challenge, Credentials, OllamaKey, token_url, url_host};

/// Longest error body or token answer kept.
const MAX_SMALL_BODY: u64 = 64 << 10;

/// How a client behaves: who it is, how hard it tries, how much it does at once.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Basic credentials, sent only when a registry or its token realm asks for them. `None`
    /// looks them up per registry host ([`Credentials::from_env`]).
    pub credentials: Option<Credentials>,
    /// Ollama's identity key for signed token requests; `None` reads `~/.ollama/id_ed25519`
    /// when it exists.
    pub key: Option<OllamaKey>,
    /// Attempts per transfer part before giving up (Ollama: 6).
    pub retries: u32,
    /// First pause between attempts; doubled each time (Ollama: 1 s).
    pub backoff: Duration,
    /// Parts of one blob downloaded at once (Ollama: up to 16).
    pub download_streams: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Registries (`host[:port]`, as in a model name) always reached over plain HTTP, as
    /// Docker's `insecure-registries`: a private registry on a trusted network, including the
    /// implicit pull of a create's `from`, where no `insecure` flag can be given.
    pub insecure_hosts: Vec<String>,
}

impl ClientOptions {
    /// The hosts listed in `KILN_INSECURE_REGISTRIES` (comma-separated `host[:port]`), for
    /// [`ClientOptions::insecure_hosts`].
    pub fn insecure_hosts_from_env() -> Vec<String> {
        std::env::var("KILN_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            key: None,
            retries: 6,
            backoff: Duration::from_secs(1),
            download_streams: 8,
            connect_timeout: Duration::from_secs(30),
            user_agent: format!(
                "kiln/{} ({} {})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            insecure_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Authorization {
    None,
    Bearer(String),
    Basic,
}

/// A registry client. Cheap to share between threads; remembers the token it was given.
#[derive(Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    options: ClientOptions,
    key: Option<OllamaKey>,
    auth: Mutex<Authorization>,
}

/// One request to make, possibly more than once (after an auth challenge or a failure).
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: HeaderMap,
    /// Builds the body afresh for each attempt.
    pub body: Option<&'a (dyn Fn() -> Result<Body, RegistryError> + Sync)>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, url: &'a str) -> Call<'a> {
        Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Call<'a> {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

impl Client {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Result<Client, RegistryError> {
        let http = reqwest::blocking::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .timeout(None)
            .build()
            .map_err(|source| RegistryError::Http {
                url: String::new(),
                source,
            })?;
        let key = options.key.clone().or_else(OllamaKey::from_home);
        Ok(Client {
            http,
            options,
            key,
            auth: Mutex::new(Authorization::None),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Whether `host` is reached over plain HTTP even without `insecure`
    /// ([`ClientOptions::insecure_hosts`]; compared case-insensitively, as hosts are).
    pub fn plain_http(&self, host: &str) -> bool {
        self.options
            .insecure_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    fn credentials_for(&self, host: &str) -> Option<Credentials> {
        self.options
            .credentials
            .clone()
            .or_else(|| Credentials::from_env(host))
    }

    fn current_auth(&self) -> Authorization {
        self.auth
            .lock()
            .map(|a| a.clone())
            .unwrap_or(Authorization::None)
    }

    fn authorize(
        &self,
        rb: reqwest::blocking::RequestBuilder,
        host: &str,
    ) -> reqwest::blocking::RequestBuilder {
        match self.current_auth() {
            Authorization::None => rb,
            Authorization::Bearer(t) => rb.bearer_auth(t),
            Authorization::Basic => match self.credentials_for(host) {
                Some(c) => rb.basic_auth(c.username, Some(c.password)),
                None => rb,
            },
        }
    }

    /// Sends once, with the current authorization; no status handling.
    pub(crate) fn send_once(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let host = url_host(call.url).to_owned();
        let mut rb = self
            .http
            .request(call.method.clone(), call.url)
            .headers(call.headers.clone());
        rb = self.authorize(rb, &host);
        if let Some(body) = call.body {
            rb = rb.body(body()?);
        }
        rb.send().map_err(|source| RegistryError::Http {
            url: call.url.to_owned(),
            source,
        })
    }

    /// Ollama's `makeRequestWithRetry`: at most two attempts; a 401 answers the challenge and
    /// tries again; 404 is [`RegistryError::NotFound`]; any other status ≥ 400 is
    /// [`RegistryError::Status`] with the body.
    pub(crate) fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        for _ in 0..2 {
            let resp = self.send_once(call)?;
            let status = resp.status().as_u16();
            match status {
                401 => {
                    let challenge = resp
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    self.answer(&Challenge::parse(&challenge), call.url)?;
                }
                404 => {
                    return Err(RegistryError::NotFound {
                        url: call.url.to_owned(),
                    });
                }
                s if s >= 400 => return Err(status_error(resp, call.url)),
                _ => return Ok(resp),
            }
        }
        Err(RegistryError::Unauthorized {
            url: call.url.to_owned(),
        })
    }

    /// Answers an auth challenge from a request to `url`: remembers Basic, or fetches a token.
    pub(crate) fn answer(&self, challenge: &Challenge, url: &str) -> Result<(), RegistryError> {
        let host = url_host(url);
        let auth = match challenge {
            Challenge::Basic => {
                if self.credentials_for(host).is_none() {
                    return Err(RegistryError::Unauthorized {
                        url: url.to_owned(),
                    });
                }
                Authorization::Basic
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => Authorization::Bearer(self.token(realm, service, scope, host)?),
        };
        if let Ok(mut a) = self.auth.lock() {
            *a = auth;
        }
        Ok(())
    }

    fn token(
        &self,
        realm: &str,
        service: &str,
        scope: &str,
        host: &str,
    ) -> Result<String, RegistryError> {
        if !realm.starts_with("http://") && !realm.starts_with("https://") {
            return Err(RegistryError::Token(format!(
                "token realm {realm:?} is not an http(s) URL"
            )));
        }
        let realm_host = url_host(realm);
        // The signature identifies the user: only a realm on the registry's own host gets it.
        let signer = self.key.as_ref().filter(|_| realm_host == host);
        let url = match signer {
            Some(_) => {
                let ts = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                token_url(realm, service, scope, Some((ts, &nonce())))
            }
            None => token_url(realm, service, scope, None),
        };
        let mut rb = self.http.get(&url);
        if let Some(key) = signer {
            rb = rb.header(reqwest::header::AUTHORIZATION, key.sign_token_request(&url));
        } else if let Some(c) = self.credentials_for(host) {
            rb = rb.basic_auth(c.username, Some(c.password));
        }
        let resp = rb.send().map_err(|source| RegistryError::Http {
            url: url.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, &url, "token response")?;
        if status >= 400 {
            return Err(RegistryError::Token(if body.is_empty() {
                format!("{status}")
            } else {
                format!("{status}: {}", String::from_utf8_lossy(&body))
            }));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Token(format!("token response from {url}: {e}")))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::Token(format!("token response from {url} has no token")))
    }
}

/// A random URL-safe nonce (Ollama: 16 random bytes, base64url without padding). Read from
/// the OS; a clock-derived value stands in if that fails (a nonce need only be fresh).
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&t.to_le_bytes());
    }
    kiln_api::base64::encode(&bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Reads at most [`MAX_SMALL_BODY`] bytes of a body.
pub(crate) fn read_limited(
    resp: Response,
    url: &str,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    read_up_to(resp, url, what, MAX_SMALL_BODY)
}

pub(crate) fn read_up_to(
    resp: Response,
    url: &str,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Io {
            path: url.into(),
            source: e,
        })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what,
            url: url.to_owned(),
            limit,
        });
    }
    Ok(out)
}

fn status_error(resp: Response, url: &str) -> RegistryError {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let _ = resp.take(MAX_SMALL_BODY).read_to_end(&mut body);
    RegistryError::Status {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        url: url.to_owned(),
    }
}

/// Resolves a `Location` header against the URL that returned it.
pub(crate) fn resolve_location(base: &str, location: &str) -> Result<String, RegistryError> {
    let base = reqwest::Url::parse(base).map_err(|_| RegistryError::BadUrl(base.to_owned()))?;
    base.join(location)
        .map(|u| u.to_string())
        .map_err(|_| RegistryError::BadUrl(location.to_owned()))
}
