//! Registry authentication: `WWW-Authenticate` challenges, Basic credentials, bearer tokens, and
//! Ollama's ed25519-signed token request.
//!
//! Credentials are only ever sent in answer to a challenge: Basic ones to the registry that asked
//! for them or to the token realm it names; the ed25519 signature (which identifies the user to
//! ollama.com) only to a realm on the registry's own host, as Ollama's `getAuthorizationToken`
//! insists.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use kiln_go::url::query_escape;
use sha2::{Digest as _, Sha256};

use crate::RegistryError;

/// Longest key file or docker config kiln reads.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="…",service="…",scope="…"`: fetch a token from the realm.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: String,
        /// Space-separated scopes.
        scope: String,
    },
    /// `Basic realm="…"`: send credentials with each request.
    Basic,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value. Bearer parameters are read as Ollama's `getValue`
    /// reads them (a quoted value ends at a `"` followed by a comma or the end).
    pub fn parse(header: &str) -> Challenge {
        let trimmed = header.trim_start();
        if trimmed.len() >= 5 && trimmed[..5].eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        let rest = header.strip_prefix("Bearer ").unwrap_or(header);
        Challenge::Bearer {
            realm: challenge_value(rest, "realm"),
            service: challenge_value(rest, "service"),
            scope: challenge_value(rest, "scope"),
        }
    }
}

/// Ollama's `getValue`: the text after `key="` up to a quote that ends the value.
fn challenge_value(header: &str, key: &str) -> String {
    let needle = format!("{key}=");
    let Some(start) = header.find(&needle) else {
        return String::new();
    };
    let start = start + needle.len() + 1;
    let bytes = header.as_bytes();
    if start > bytes.len() {
        return String::new();
    }
    let mut end = start;
    while end < bytes.len() {
        if bytes[end] == b'"' && (end + 1 >= bytes.len() || bytes[end + 1] == b',') {
            break;
        }
        end += 1;
    }
    header.get(start..end).unwrap_or_default().to_owned()
}

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// Credentials for `host` from the environment: `KILN_REGISTRY_USERNAME` and
    /// `KILN_REGISTRY_PASSWORD` when both are set, else the docker-style config file
    /// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, its `auths` entry for `host`).
    pub fn from_env(host: &str) -> Option<Credentials> {
        if let (Ok(username), Ok(password)) = (
            std::env::var("KILN_REGISTRY_USERNAME"),
            std::env::var("KILN_REGISTRY_PASSWORD"),
        ) && !username.is_empty()
        {
            return Some(Credentials { username, password });
        }
        let path = docker_config_path()?;
        Credentials::from_docker_config(&path, host).ok().flatten()
    }

    /// The `auths` entry for `host` in a docker `config.json`: `{"auths": {"host": {"auth":
    /// base64("user:password")}}}` or `username`/`password` fields. Keys may carry a scheme
    /// (`https://host`), as `docker login` writes for some registries.
    pub fn from_docker_config(
        path: &Path,
        host: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let text = read_small(path)?;
        let config: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| RegistryError::Token(format!("{}: {e}", path.display())))?;
        let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
            return Ok(None);
        };
        for (key, entry) in auths {
            let key_host = key
                .strip_prefix("https://")
                .or_else(|| key.strip_prefix("http://"))
                .unwrap_or(key)
                .trim_end_matches('/');
            if key_host != host {
                continue;
            }
            if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
                let decoded = kiln_api::base64::decode(auth).map_err(|_| {
                    RegistryError::Token(format!(
                        "{}: auth for {host} is not base64",
                        path.display()
                    ))
                })?;
                let decoded = String::from_utf8_lossy(&decoded);
                if let Some((u, p)) = decoded.split_once(':') {
                    return Ok(Some(Credentials {
                        username: u.to_owned(),
                        password: p.to_owned(),
                    }));
                }
            }
            let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            if let (Some(username), Some(password)) = (field("username"), field("password")) {
                return Ok(Some(Credentials { username, password }));
            }
        }
        Ok(None)
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

fn read_small(path: &Path) -> Result<Vec<u8>, RegistryError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(RegistryError::io(path))?;
    let mut out = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(RegistryError::io(path))?;
    if out.len() as u64 > MAX_CONFIG_BYTES {
        return Err(RegistryError::TooLarge {
            what: "file",
            url: path.display().to_string(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    Ok(out)
}

/// Ollama's identity key (`~/.ollama/id_ed25519`, an unencrypted OpenSSH ed25519 key), which
/// signs token requests to ollama.com.
#[derive(Clone)]
pub struct OllamaKey {
    key: SigningKey,
}

impl std::fmt::Debug for OllamaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaKey")
            .field("public", &self.public_key_base64())
            .finish()
    }
}

impl OllamaKey {
    /// `~/.ollama/id_ed25519`, when it exists and parses.
    pub fn from_home() -> Option<OllamaKey> {
        let home = std::env::var_os("HOME")?;
        let path = PathBuf::from(home).join(".ollama").join("id_ed25519");
        OllamaKey::from_file(&path).ok()
    }

    /// Reads an OpenSSH private key file.
    pub fn from_file(path: &Path) -> Result<OllamaKey, RegistryError> {
        let text = read_small(path)?;
        OllamaKey::from_openssh(&String::from_utf8_lossy(&text))
            .map_err(|why| RegistryError::Token(format!("{}: {why}", path.display())))
    }

    /// Parses the `-----BEGIN OPENSSH PRIVATE KEY-----` format (unencrypted ed25519 only,
    /// which is what Ollama generates).
    pub fn from_openssh(text: &str) -> Result<OllamaKey, String> {
        let body: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN OPENSSH PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END OPENSSH PRIVATE KEY-----")
            .collect();
        let blob = kiln_api::base64::decode(&body).map_err(|_| "not an OpenSSH private key")?;
        let mut r = SshReader(&blob);
        if r.take(15)? != b"openssh-key-v1\0" {
            return Err("not an OpenSSH private key".into());
        }
        let (cipher, kdf) = (r.string()?, r.string()?);
        if cipher != b"none" || kdf != b"none" {
            return Err("encrypted keys are not supported".into());
        }
        r.string()?; // kdf options
        if r.u32()? != 1 {
            return Err("expected exactly one key".into());
        }
        r.string()?; // public key blob, repeated in the private section
        let mut private = SshReader(r.string()?);
        if private.u32()? != private.u32()? {
            return Err("corrupt private section (check words differ)".into());
        }
        if private.string()? != b"ssh-ed25519" {
            return Err("not an ed25519 key".into());
        }
        let public = private.string()?;
        let secret = private.string()?;
        if public.len() != 32 || secret.len() != 64 || &secret[32..] != public {
            return Err("malformed ed25519 key".into());
        }
        let seed: [u8; 32] = secret[..32]
            .try_into()
            .map_err(|_| "malformed ed25519 key")?;
        Ok(OllamaKey {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The public key as the second field of an `authorized_keys` line: base64 of the SSH wire
    /// encoding (`string "ssh-ed25519", string key`).
    pub fn public_key_base64(&self) -> String {
        let mut wire = Vec::with_capacity(51);
        for part in [&b"ssh-ed25519"[..], self.key.verifying_key().as_bytes()] {
            wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
            wire.extend_from_slice(part);
        }
        kiln_api::base64::encode(&wire)
    }

    /// Ollama's `auth.Sign`: `<public key>:<base64 signature>` over `data`.
    pub fn sign(&self, data: &[u8]) -> String {
        let signature = self.key.sign(data);
        format!(
            "{}:{}",
            self.public_key_base64(),
            kiln_api::base64::encode(&signature.to_bytes())
        )
    }

    /// The `Authorization` value Ollama sends with a token request to `url` (the full realm URL
    /// with its query): a signature over `GET,<url>,<base64 of the hex sha256 of an empty body>`.
    pub fn sign_token_request(&self, url: &str) -> String {
        let empty = hex(&Sha256::digest(b""));
        let data = format!("GET,{url},{}", kiln_api::base64::encode(empty.as_bytes()));
        self.sign(data.as_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct SshReader<'a>(&'a [u8]);

impl<'a> SshReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated OpenSSH key".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The token request URL Ollama builds from a challenge (`registryChallenge.URL`): the realm's
/// own query plus `service`, each `scope`, `ts` and `nonce`, encoded as Go's `url.Values.Encode`
/// does (keys sorted, values in insertion order). `ts`/`nonce` are only added when signing.
pub(crate) fn token_url(
    realm: &str,
    service: &str,
    scope: &str,
    signed: Option<(u64, &str)>,
) -> String {
    let (base, query) = realm.split_once('?').unwrap_or((realm, ""));
    let mut values: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let mut added = vec![("service".to_owned(), service.to_owned())];
    for s in scope.split(' ') {
        added.push(("scope".to_owned(), s.to_owned()));
    }
    if let Some((ts, nonce)) = signed {
        added.push(("ts".to_owned(), ts.to_string()));
        added.push(("nonce".to_owned(), nonce.to_owned()));
    }
    values.extend(
        added
            .into_iter()
            .map(|(k, v)| (query_escape(&k), query_escape(&v))),
    );
    // A stable sort by key keeps each key's values in the order they were added, as Go does.
    values.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded: Vec<String> = values
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{base}?{}", encoded.join("&"))
}

/// `host[:port]` of an absolute URL.
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_as_ollamas_get_value() {
        let c = Challenge::parse(
            r#"Bearer realm="https://ollama.com:443/token",service="ollama.com",scope="repository:library/x:pull""#,
        );
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://ollama.com:443/token".into(),
                service: "ollama.com".into(),
                scope: "repository:library/x:pull".into()
            }
        );
        // A quote not followed by a comma does not end the value (Go's loop).
        assert_eq!(challenge_value(r#"realm="a"b",x="y""#, "realm"), r#"a"b"#);
        assert_eq!(challenge_value(r#"realm="#, "realm"), "");
        assert_eq!(challenge_value("nothing", "realm"), "");
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry""#),
            Challenge::Basic
        );
    }

    #[test]
    fn token_urls_are_encoded_as_go_url_values() {
        let u = token_url(
            "http://h:1/token?a=1",
            "svc",
            "repository:ns/m:pull,push repository:ns/n:pull",
            None,
        );
        assert_eq!(
            u,
            "http://h:1/token?a=1&scope=repository%3Ans%2Fm%3Apull%2Cpush&scope=repository%3Ans%2Fn%3Apull&service=svc"
        );
        let u = token_url(
            "https://ollama.com/token",
            "ollama.com",
            "s",
            Some((17, "n-_")),
        );
        assert_eq!(
            u,
            "https://ollama.com/token?nonce=n-_&scope=s&service=ollama.com&ts=17"
        );
        assert_eq!(url_host("http://127.0.0.1:5000/token?x"), "127.0.0.1:5000");
        assert_eq!(url_host("https://ollama.com"), "ollama.com");
    }

    #[test]
    fn docker_config_auths_by_host() {
        let dir = std::env::temp_dir().join(format!("kiln-docker-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        let auth = kiln_api::base64::encode(b"alice:s3cret:with:colons");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://reg.example:5000/":{{"auth":"{auth}"}},"other":{{"username":"u","password":"p"}}}}}}"#
            ),
        )
        .unwrap();
        let c = Credentials::from_docker_config(&path, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret:with:colons")
        );
        let c = Credentials::from_docker_config(&path, "other")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "u");
        assert!(
            Credentials::from_docker_config(&path, "nope")
                .unwrap()
                .is_none()
        );
        assert!(!format!("{c:?}").contains('p') || !format!("{c:?}").contains("\"p\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_key_files_are_errors_not_panics() {
        for text in [
            "",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA/////w==\n-----END OPENSSH PRIVATE KEY-----",
        ] {
            assert!(OllamaKey::from_openssh(text).is_err(), "{text:?}");
        }
    }
}
