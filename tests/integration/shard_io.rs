//! `--shard-io`: the shards' I/O backend, chosen where the host starts. Under a seccomp filter
//! that refuses io_uring (Docker's and containerd's default profiles) `auto` falls back to
//! epoll with one warning and serves on every shard; `io-uring` refuses to start, with one
//! line and before anything else (no managed NATS); `epoll` serves without probing.

use std::process::Stdio;
use std::time::Duration;

use crate::support::rpc::{lab_with, Lab};
use crate::support::seccomp::{BLOCK_IO_URING_ENV, MEMLOCK_KIB_ENV};
use crate::support::{host_binary, unique_lattice, HostOptions, Nats};

/// A host started with `options` falls back to epoll, says why in one warning line holding
/// each of `words`, does not panic, and serves echo on every shard.
async fn falls_back_to_epoll(options: HostOptions, words: &[&str]) {
    let mut lab = Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await;
    let log = lab.host.stderr();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring is not available"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{log}");
    for words in words {
        assert!(
            warnings[0].contains(words),
            "the warning says `{words}`: {}",
            warnings[0]
        );
    }
    assert!(!log.contains("panicked"), "{log}");
    lab.serves_echo_on_every_shard().await;
}

#[tokio::test]
async fn auto_falls_back_to_epoll_where_io_uring_is_blocked_and_says_why() {
    let options = HostOptions::new(&unique_lattice("ioauto"))
        .arg("--heartbeat-interval-ms", "500")
        .env(BLOCK_IO_URING_ENV, "1");
    let words = [
        "io_uring_setup failed",
        "seccomp",
        "epoll backend",
        "io_uring_register",
        "kernel.io_uring_disabled=0",
    ];
    falls_back_to_epoll(options, &words).await;
}

#[tokio::test]
async fn too_little_locked_memory_for_io_uring_falls_back_to_epoll_and_says_how_to_raise_it() {
    // Docker's default `--ulimit memlock` in many setups; glommio needs 512 KiB.
    let options = HostOptions::new(&unique_lattice("iomemlock"))
        .arg("--heartbeat-interval-ms", "500")
        .env(MEMLOCK_KIB_ENV, "64")
        // The limit is what stops io_uring here, also in CI's leg that blocks its system calls.
        .env(BLOCK_IO_URING_ENV, "0");
    let words = [
        "RLIMIT_MEMLOCK is 64 KiB",
        "512 KiB",
        "--ulimit memlock",
        "epoll backend",
    ];
    falls_back_to_epoll(options, &words).await;
}

#[tokio::test]
async fn epoll_asked_for_serves_on_every_shard() {
    let mut lab = lab_with("ioepoll", &[("--shard-io", "epoll")]).await;
    let log = lab.host.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("shard I/O backend") && l.contains("backend=epoll")),
        "{log}"
    );
    lab.serves_echo_on_every_shard().await;
}

#[tokio::test]
async fn io_uring_demanded_where_it_is_blocked_stops_the_start_with_one_line() {
    // No NATS address: a host that got further would start a managed nats-server first.
    let mut std_command = std::process::Command::new(host_binary());
    crate::support::seccomp::block_io_uring(&mut std_command);
    std_command
        .args(["--shard-io", "io-uring"])
        .env_remove("SHARDHOST_SHARD_IO");
    std_command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = tokio::process::Command::from(std_command)
        .spawn()
        .expect("spawn shardhost");
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the host exits at once")
        .expect("host output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit 1; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{stderr}");
    for words in [
        "--shard-io io-uring",
        "io_uring is not available",
        "seccomp",
        "--shard-io epoll",
    ] {
        assert!(lines[0].contains(words), "the line says `{words}`: {}", lines[0]);
    }
    assert!(!stderr.contains("nats-server"), "no managed NATS was started: {stderr}");
}
