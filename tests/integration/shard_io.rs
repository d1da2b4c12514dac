//! `--shard-io`: the shards' I/O backend, chosen where the host starts. Under a seccomp filter
//! that refuses io_uring (Docker's and containerd's default profiles) `auto` falls back to
//! epoll with one warning and serves on every shard; `io-uring` refuses to start, with one
//! line and before anything else (no managed NATS); `epoll` serves without probing.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;

use crate::support::rpc::{lab_with, Lab, EVENT_TIMEOUT};
use crate::support::seccomp::BLOCK_IO_URING_ENV;
use crate::support::{eventually, host_binary, signed_echo, unique_lattice, ActorSpec, HostOptions, Nats};

/// A counter `name=N` of a shard's counters line.
fn counter(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Echo on every shard: 32 calls in flight at once, each answered with its payload, and both
/// shards' counters showing served invocations.
async fn serves_echo_on_every_shard(lab: &mut Lab) {
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 2).await;
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..32u32 {
        let payload = format!("payload-{i}").into_bytes();
        let (lab, key) = (&*lab, echo.key.clone());
        pending.push(async move {
            (
                payload.clone(),
                lab.call(&key, "HttpServer.HandleRequest", &payload).await,
            )
        });
    }
    while let Some((payload, result)) = pending.next().await {
        assert_eq!(result.expect("echo served"), payload);
    }
    for shard in ["shard-0", "shard-1"] {
        eventually(EVENT_TIMEOUT, &format!("{shard} served some"), || async {
            lab.shard_counters(shard).filter(|line| counter(line, "served") > 0)
        })
        .await;
    }
}

#[tokio::test]
async fn auto_falls_back_to_epoll_where_io_uring_is_blocked_and_says_why() {
    let options = HostOptions::new(&unique_lattice("ioauto"))
        .arg("--heartbeat-interval-ms", "500")
        .env(BLOCK_IO_URING_ENV, "1");
    let mut lab = Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await;
    let log = lab.host.stderr();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring is not available"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{log}");
    for words in [
        "io_uring_setup failed",
        "seccomp",
        "epoll backend",
        "io_uring_register",
        "kernel.io_uring_disabled=0",
    ] {
        assert!(
            warnings[0].contains(words),
            "the warning says `{words}`: {}",
            warnings[0]
        );
    }
    assert!(!log.contains("panicked"), "{log}");
    serves_echo_on_every_shard(&mut lab).await;
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
    serves_echo_on_every_shard(&mut lab).await;
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
