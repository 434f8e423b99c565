//! Where a model lives in its registry: Ollama's `Name.BaseURL()` and the distribution API paths.

use kiln_store::{Digest, ModelName};

/// A model in a registry: its name decides the host (`registry.ollama.ai` by default) and the
/// repository (`namespace/model`); `insecure` switches the scheme to plain HTTP.
///
/// Ollama's server drops a `scheme://` prefix from the name before it pulls or pushes (it calls
/// `PullModel(name.DisplayShortest())`), so only `insecure` chooses HTTP; kiln does the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    name: ModelName,
    insecure: bool,
}

impl Remote {
    /// The registry location of `name`.
    pub fn new(name: ModelName, insecure: bool) -> Remote {
        Remote { name, insecure }
    }

    /// The model's name.
    pub fn name(&self) -> &ModelName {
        &self.name
    }

    /// Whether plain HTTP is used.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// `host[:port]` of the registry.
    pub fn host(&self) -> &str {
        self.name.host()
    }

    /// `namespace/model` (Ollama's `DisplayNamespaceModel`).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.name.namespace(), self.name.model())
    }

    /// `https://host` or, when insecure, `http://host`.
    pub fn base_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.name.host())
    }

    /// `…/v2/<namespace>/<model>/manifests/<tag>`. Name parts are restricted to
    /// `[A-Za-z0-9_.:-]`, so they need no escaping.
    pub fn manifest_url(&self) -> String {
        format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(),
            self.repository(),
            self.name.tag()
        )
    }

    /// `…/v2/<namespace>/<model>/blobs/sha256:<hex>`.
    pub fn blob_url(&self, digest: &Digest) -> String {
        format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(),
            self.repository()
        )
    }

    /// `…/v2/<namespace>/<model>/blobs/uploads/`, where an upload session starts.
    pub fn upload_url(&self) -> String {
        format!(
            "{}/v2/{}/blobs/uploads/",
            self.base_url(),
            self.repository()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_ollamas_base_url_and_distribution_paths() {
        let name = ModelName::parse("llama3.2").unwrap();
        let r = Remote::new(name, false);
        assert_eq!(
            r.manifest_url(),
            "https://registry.ollama.ai/v2/library/llama3.2/manifests/latest"
        );
        let name = ModelName::parse("127.0.0.1:5000/team/m:v1").unwrap();
        let r = Remote::new(name, true);
        assert_eq!(r.host(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/m");
        assert_eq!(
            r.manifest_url(),
            "http://127.0.0.1:5000/v2/team/m/manifests/v1"
        );
        let d = Digest::of(b"x");
        assert_eq!(
            r.blob_url(&d),
            format!("http://127.0.0.1:5000/v2/team/m/blobs/sha256:{}", d.hex())
        );
        assert_eq!(
            r.upload_url(),
            "http://127.0.0.1:5000/v2/team/m/blobs/uploads/"
        );
    }

    #[test]
    fn a_scheme_in_the_name_is_dropped_as_ollamas_server_drops_it() {
        let name = ModelName::parse("http://example.com/ns/m:t").unwrap();
        let r = Remote::new(name, false);
        assert_eq!(r.manifest_url(), "https://example.com/v2/ns/m/manifests/t");
    }
}
