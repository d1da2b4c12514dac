//! A managed local `nats-server -js` for the one-command run: started on a free loopback port
//! with a temporary store when no NATS address was given and nothing listens on
//! 127.0.0.1:4222; stopped (and its store removed) when the host exits.
//!
//! Control plane. The child gets `PR_SET_PDEATHSIG` so it dies with the host even when the
//! host is killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncBufReadExt;

use crate::config::MANAGED_NATS_START_TIMEOUT_MS;

/// Oldest nats-server whose JetStream KV works with async-nats 0.51 (TOOLCHAIN.md).
pub const NATS_SERVER_VERSION_MIN: (u32, u32) = (2, 10);
/// The conventional NATS address probed before starting our own.
pub const LOCAL_NATS_ADDR: &str = "127.0.0.1:4222";

/// Is something accepting TCP connections at `addr`?
pub async fn listening(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// A running managed nats-server.
pub struct ManagedNats {
    child: tokio::process::Child,
    pub port: u16,
    store_dir: PathBuf,
}

fn find_binary(given: Option<&str>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .context(
            "no NATS address was given, nothing listens on 127.0.0.1:4222, and no nats-server binary \
                  was found on PATH or in SHARDHOST_NATS_SERVER (run scripts/setup)",
        )
}

/// Parse `nats-server: v2.15.1` (or `v2.10.0-beta`) into (major, minor).
pub fn parse_version(output: &str) -> Option<(u32, u32)> {
    let v = output.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

async fn check_version(bin: &Path) -> Result<()> {
    let out = tokio::process::Command::new(bin)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_version(&text) {
        Some(v) if v >= NATS_SERVER_VERSION_MIN => Ok(()),
        Some((major, minor)) => bail!(
            "{} is nats-server {major}.{minor}; JetStream KV needs ≥ {}.{} (run scripts/setup)",
            bin.display(),
            NATS_SERVER_VERSION_MIN.0,
            NATS_SERVER_VERSION_MIN.1
        ),
        None => bail!("cannot read the version of {} from {text:?}", bin.display()),
    }
}

fn free_loopback_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

impl ManagedNats {
    /// Start nats-server with JetStream and wait until it accepts connections.
    pub async fn start(binary: Option<&str>) -> Result<ManagedNats> {
        let bin = find_binary(binary)?;
        check_version(&bin).await?;
        let port = free_loopback_port()?;
        let store_dir = std::env::temp_dir().join(format!("shardhost-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store_dir).with_context(|| format!("create {}", store_dir.display()))?;
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a terminal's Ctrl-C reaches the host, which stops
            // gracefully (publishing host_stopped) before it stops the server.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("start {}", bin.display()))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "nats_server", "{line}");
                }
            });
        }
        let mut nats = ManagedNats { child, port, store_dir };
        nats.wait_ready().await?;
        tracing::warn!(port, bin = %bin.display(), "no NATS given: started a managed nats-server with JetStream on 127.0.0.1:{port}");
        Ok(nats)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(MANAGED_NATS_START_TIMEOUT_MS);
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("managed nats-server exited at start ({status}); run with RUST_LOG=nats_server=debug to see why");
            }
            if listening(&addr).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("managed nats-server did not listen on {addr} within {MANAGED_NATS_START_TIMEOUT_MS} ms")
    }

    /// Stop the server and remove its store.
    pub async fn stop(mut self) {
        if let Err(e) = self.child.start_kill() {
            tracing::warn!(error = %e, "cannot signal managed nats-server");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        if let Err(e) = std::fs::remove_dir_all(&self.store_dir) {
            tracing::debug!(error = %e, dir = %self.store_dir.display(), "cannot remove managed NATS store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("nats-server: v2.10.0-beta.1"), Some((2, 10)));
        assert_eq!(parse_version("garbage"), None);
        assert!((2, 9) < NATS_SERVER_VERSION_MIN && (2, 10) >= NATS_SERVER_VERSION_MIN);
    }
}
