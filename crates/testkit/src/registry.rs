//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry
//! 2.8) started on loopback with its own storage, killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// `KILN_DOCKER_REGISTRY`, else `docker-registry` on PATH.
pub fn registry_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_DOCKER_REGISTRY") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker-registry"))
        .find(|p| p.is_file())
}

/// Whether missing references fail the registry tests (CI) instead of skipping them:
/// `KILN_REQUIRE_ORACLE=1` (where [`crate::oracle_python`] takes any value).
pub fn required() -> bool {
    std::env::var("KILN_REQUIRE_ORACLE").is_ok_and(|v| v == "1")
}

/// A loopback port nothing listens on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _dir: TempDir,
}

impl Registry {
    /// `htpasswd`: a file of `user:bcrypt` lines, for Basic auth.
    pub fn start(htpasswd: Option<&Path>) -> Option<Registry> {
        let bin = registry_binary()?;
        let dir = TempDir::new("registry");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth = htpasswd.map_or(String::new(), |p| {
            format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                p.display()
            )
        });
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            dir.0.join("data").display()
        );
        let config_path = dir.0.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let r = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }
}

impl Registry {
    /// [`Registry::start`], or `None` with a skip note when docker-registry is not installed;
    /// a failure instead when the references are required.
    pub fn start_or_skip(htpasswd: Option<&Path>) -> Option<Registry> {
        let r = Registry::start(htpasswd);
        if r.is_none() {
            assert!(
                !required(),
                "docker-registry is required (KILN_REQUIRE_ORACLE=1) but not found: run scripts/setup-registry.sh"
            );
            eprintln!("skipping: docker-registry not installed (scripts/setup-registry.sh)");
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
