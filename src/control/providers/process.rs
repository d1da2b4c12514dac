//! Provider processes: the extracted binary in the cache (PROTOCOL §8.1), and spawning it the
//! way the 0.x hosts did (§8.2) — cleared environment, one HostData line on stdin, stdout and
//! stderr into the host log tagged with the provider — plus what wasmCloud hosts did not do:
//! its own process group, and a parent-death signal so no provider outlives the host.
//!
//! Control plane (tokio). Blocking file work runs in [`install_binary`], which callers run on
//! a blocking thread.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::lattice::hex_upper;

/// Environment variables a provider inherits; everything else is cleared (as the Rust host).
pub const PROVIDER_ENV_KEPT: [&str; 3] = ["OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "RUST_LOG"];
/// Longest line of provider output logged as one record (longer lines are cut).
pub const PROVIDER_LOG_LINE_BYTES_MAX: usize = 16 << 10;

/// `normalize` of PROTOCOL §8.1: lowercase, every non-alphanumeric character becomes `_`.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `{root}/wasmcloudcache/{provider_key}/{revision}/{contract}_{link}` (PROTOCOL §8.1). The key
/// and revision are checked values (a `V…` key, an integer), so the path stays under `root`.
pub fn binary_path(root: &Path, provider_key: &str, revision: i64, contract_id: &str, link_name: &str) -> PathBuf {
    root.join("wasmcloudcache")
        .join(normalize(provider_key))
        .join(revision.to_string())
        .join(format!("{}_{}", normalize(contract_id), normalize(link_name)))
}

/// Write `binary` to `path` with mode 0755, unless a file with the same SHA-256 is there
/// already (then it is reused as is). Written to a temporary name and renamed, so a running
/// provider keeps its own inode and a reader never sees half a file. Blocking.
pub fn install_binary(path: &Path, binary: &[u8], binary_hash: &str) -> Result<bool> {
    if let Ok(existing) = std::fs::read(path) {
        if hex_upper(&Sha256::digest(&existing)).eq_ignore_ascii_case(binary_hash) {
            return Ok(false);
        }
        tracing::warn!(path = %path.display(), "cached provider binary differs from the archive; replacing it");
    }
    let dir = path.parent().context("provider binary path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(binary)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write provider binary {}", path.display()));
    }
    Ok(true)
}

/// A running provider process.
pub struct ProviderProcess {
    pub child: tokio::process::Child,
    /// Process id, which is also its process group id.
    pub pid: u32,
}

impl ProviderProcess {
    /// SIGKILL the whole process group (the provider and anything it started). Idempotent.
    pub fn kill_group(&self) {
        let Ok(pgid) = i32::try_from(self.pid) else { return };
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Spawn `path` with the cleared environment, write `stdin_line` to its stdin and close it, and
/// forward its output to the log as `tag` (provider key and link name).
pub async fn spawn(path: &Path, stdin_line: &str, tag: &str) -> Result<ProviderProcess> {
    let mut command = tokio::process::Command::new(path);
    command
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for key in PROVIDER_ENV_KEPT {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it allocates nothing and touches no shared state.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start provider binary {}", path.display()))?;
    let pid = child.id().context("provider exited before it could be tracked")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A provider that exits at once closes the pipe: that shows as its exit, not here.
        if let Err(e) = stdin.write_all(stdin_line.as_bytes()).await {
            tracing::warn!(provider = tag, error = %e, "cannot write HostData to the provider's stdin");
        }
        drop(stdin);
    }
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, tag.to_string(), "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, tag.to_string(), "stderr"));
    }
    Ok(ProviderProcess { child, pid })
}

async fn forward_lines(stream: impl tokio::io::AsyncRead + Unpin, tag: String, which: &'static str) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                line.truncate(PROVIDER_LOG_LINE_BYTES_MAX);
                let text = String::from_utf8_lossy(&line);
                tracing::info!(provider = %tag, stream = which, "{}", text.trim_end());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_protocol_layout() {
        let path = binary_path(Path::new("/tmp/x"), "VABC", 3, "wasmcloud:keyvalue", "Default Link");
        assert_eq!(
            path,
            Path::new("/tmp/x/wasmcloudcache/vabc/3/wasmcloud_keyvalue_default_link")
        );
        // Nothing in a key or link name can climb out of the cache.
        let hostile = binary_path(Path::new("/c"), "../../etc", 1, "a/b", "..");
        assert!(hostile.starts_with("/c/wasmcloudcache"));
        assert!(!hostile.to_string_lossy().contains(".."));
    }

    #[test]
    fn install_writes_once_and_repairs_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/bin");
        let binary = b"#!/bin/sh\nexit 0\n";
        let hash = hex_upper(&Sha256::digest(binary));
        assert!(install_binary(&path, binary, &hash).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(!install_binary(&path, binary, &hash).unwrap(), "reused");
        std::fs::write(&path, b"tampered").unwrap();
        assert!(install_binary(&path, binary, &hash).unwrap(), "rewritten");
        assert_eq!(std::fs::read(&path).unwrap(), binary);
    }

    #[tokio::test]
    async fn spawned_process_gets_stdin_and_a_clear_environment() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("p.sh");
        let out = dir.path().join("out");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nread line\necho \"$line|$HOME|$RUST_LOG\" > {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut process = spawn(&script, "hello\r\n", "test").await.unwrap();
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), process.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(written.starts_with("hello"), "{written}");
        // HOME is not passed on (the line is `hello\r|$HOME|$RUST_LOG`).
        assert!(written.contains("|"), "{written}");
        assert_eq!(written.split('|').nth(1), Some(""), "HOME leaked: {written}");
    }
}
