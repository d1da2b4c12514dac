//! A private OCI registry for the tests: Debian's docker-registry 2.8 on 127.0.0.1 (plain HTTP,
//! filesystem storage, optionally htpasswd basic auth), killed on drop.

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Upper bound for docker-registry to answer `GET /v2/`.
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Locates docker-registry: `$SHARDHOST_DOCKER_REGISTRY`, `docker-registry` on `PATH`, then
/// `/usr/bin/docker-registry`.
pub fn docker_registry_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHARDHOST_DOCKER_REGISTRY") {
        return PathBuf::from(path);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("docker-registry");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let debian = PathBuf::from("/usr/bin/docker-registry");
    assert!(
        debian.is_file(),
        "no docker-registry found (looked at $SHARDHOST_DOCKER_REGISTRY, PATH and /usr/bin); run scripts/setup"
    );
    debian
}

/// A private, plain-HTTP OCI registry on 127.0.0.1 with filesystem storage in a temp dir,
/// optionally behind htpasswd basic auth. Killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, as written in refs and in `allowed_insecure`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that wants HTTP basic auth as `user`/`password` for everything.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(basic_auth: Option<(&str, &str)>) -> Registry {
        let binary = docker_registry_binary();
        let dir = tempfile::tempdir().expect("tempdir for the registry");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = basic_auth {
            // docker-registry's htpasswd backend takes bcrypt only; cost 4 keeps the test fast.
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: shardhost-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e} (run scripts/setup)", binary.display()));
        let mut registry = Registry { child, addr, _dir: dir };
        registry.wait_ready();
        registry
    }

    /// Waits (bounded) until `GET /v2/` gets any HTTP answer (200, or 401 behind auth).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + REGISTRY_START_TIMEOUT;
        loop {
            if let Some(status) = http_get_status(&self.addr, "/v2/") {
                if status == 200 || status == 401 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited early ({status}) on {}", self.addr);
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer GET /v2/ on {} within {REGISTRY_START_TIMEOUT:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a plain `GET path` to `addr`, or `None` if nothing answered (bounded:
/// one second per connect, read and write).
pub fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::Write;
    let socket: std::net::SocketAddr = addr.parse().ok()?;
    let limit = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&socket, limit).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    stream.set_write_timeout(Some(limit)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.x NNN"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
