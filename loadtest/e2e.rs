//! End-to-end tests of `run` and `start-actor` against a real nats-server on 127.0.0.1 and
//! responders written here (the host's data path is not needed): a responder that checks
//! every invocation the way a host does (signature, §3.3 claims) and then echoes, fails, stalls
//! or stays silent on purpose, so each counter of the report is exercised for real.
//!
//! nats-server comes from `SHARDHOST_NATS_SERVER` or `.tools/venv/bin/nats-server` (installed
//! by scripts/setup); without one the tests print why and pass. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt as _;
use serde_json::json;

use shardhost::auth::antiforgery::{check_invocation, decode_invocation_token, AuthError};
use shardhost::wire::invocation::decode_invocation;
use shardhost::wire::response::encode_response;

use crate::ctl::{start_actor, HostTarget, StartActor};
use crate::engine::{run, RunConfig};
use crate::error::LoadtestError;
use crate::pool::Origin;
use crate::schedule::Pacing;

const SERVER_READY_WAIT_MS: u64 = 10_000;
/// Invocations per pool: small, since an Ed25519 signature takes ~15 ms in a debug build.
const TEST_POOL_INVOCATIONS: usize = 16;
/// The responder verifies the signatures of this many distinct tokens (each costs ~15 ms in a
/// debug build) and checks every invocation's claims (hash, URLs, issuer, host id, cheap). The
/// pool test in pool.rs verifies every signature of a pool.
const SIGNATURE_CHECKS_MAX: usize = 4;
const PROBE_ATTEMPTS: u32 = 100;
const PROBE_TIMEOUT_MS: u64 = 100;

/// A nats-server child process, killed on drop.
struct NatsServer {
    child: Child,
    url: String,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SHARDHOST_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server");
    local.exists().then_some(local)
}

/// Start nats-server on a free loopback port, or say why not.
async fn start_nats() -> Option<NatsServer> {
    let Some(bin) = nats_server_bin() else {
        eprintln!("skipping: no nats-server (set SHARDHOST_NATS_SERVER or run scripts/setup)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipping: cannot start {}: {e}", bin.display());
            return None;
        }
    };
    let server = NatsServer {
        child,
        url: format!("127.0.0.1:{port}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SERVER_READY_WAIT_MS);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(server)
}

/// What the test responder does after an invocation passed the anti-forgery checks.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Echo,
    /// Every 10th (from the 3rd) an error reply "boom", every 25th (from the 7th) no reply.
    Mixed,
    /// Echo, but hold the `at`-th message for `stall_ms` first (everything queued behind it
    /// waits too, like a host that stops for a GC pause or a compile).
    StallOnce {
        at: u64,
        stall_ms: u64,
    },
}

const BOOM: &str = "boom";

/// The reply to one request, or `None` for silence. A request that is not a valid signed
/// invocation gets an error reply naming the failed check, as a host would answer.
fn respond(
    payload: &[u8],
    issuers: &HashSet<String>,
    verified_tokens: &mut HashSet<String>,
    behaviour: Behaviour,
    number: u64,
) -> Option<Vec<u8>> {
    let reply = |id: &str, msg: &[u8], error: Option<&str>| {
        let mut out = Vec::new();
        encode_response(&mut out, id, msg, error, msg.len() as u64);
        out
    };
    let inv = match decode_invocation(payload) {
        Ok(inv) => inv,
        Err(e) => return Some(reply("", b"", Some(e.message()))),
    };
    let checked = decode_invocation_token(inv.encoded_claims).and_then(|token| {
        if verified_tokens.len() < SIGNATURE_CHECKS_MAX && !verified_tokens.contains(inv.encoded_claims) {
            let issuer = nkeys::KeyPair::from_public_key(&token.issuer).map_err(|_| AuthError::BadIssuerKey)?;
            issuer
                .verify(token.signed_part.as_bytes(), &token.signature)
                .map_err(|_| AuthError::BadSignature)?;
            verified_tokens.insert(inv.encoded_claims.to_string());
        }
        check_invocation(&inv, &token, issuers, crate::unix_now_secs())
    });
    if let Err(e) = checked {
        return Some(reply(inv.id, b"", Some(e.message())));
    }
    match behaviour {
        Behaviour::Mixed if number % 10 == 3 => Some(reply(inv.id, b"", Some(BOOM))),
        Behaviour::Mixed if number % 25 == 7 => None,
        _ => Some(reply(inv.id, inv.msg, None)),
    }
}

/// Serve `subject` on its own connection until the test ends; returns once it is served.
async fn responder(url: &str, subject: String, issuer: String, behaviour: Behaviour) {
    let client = async_nats::connect(url).await.unwrap();
    let mut requests = client.subscribe(subject.clone()).await.unwrap();
    let issuers: HashSet<String> = [issuer].into();
    let serving = client.clone();
    tokio::spawn(async move {
        let mut number = 0u64;
        let mut verified_tokens = HashSet::new();
        while let Some(message) = requests.next().await {
            number += 1;
            if let Behaviour::StallOnce { at, stall_ms } = behaviour {
                if number == at {
                    tokio::time::sleep(Duration::from_millis(stall_ms)).await;
                }
            }
            let (Some(reply_to), Some(body)) = (
                message.reply.clone(),
                respond(&message.payload, &issuers, &mut verified_tokens, behaviour, number),
            ) else {
                continue;
            };
            let _ = serving.publish(reply_to, body.into()).await;
        }
    });
    // Probe from another connection until the subscription answers (a flush does not wait
    // for the server to have processed the SUB). The probe is not an invocation: it gets an
    // error reply, and it counts as message 1 for `behaviour`.
    let probe = async_nats::connect(url).await.unwrap();
    for _ in 0..PROBE_ATTEMPTS {
        let request = async_nats::Request::new()
            .payload("probe".into())
            .timeout(Some(Duration::from_millis(PROBE_TIMEOUT_MS)));
        if probe.send_request(subject.clone(), request).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("responder on {subject} never answered");
}

fn config(url: &str, lattice: &str, pacing: Pacing) -> RunConfig {
    RunConfig {
        nats_url: url.to_string(),
        lattice: lattice.to_string(),
        actor: nkeys::KeyPair::new_module().public_key(),
        operation: "HttpServer.HandleRequest".to_string(),
        payload_bytes: 100,
        connections: 2,
        pacing,
        duration_ms: 1_000,
        warmup_ms: 200,
        timeout_ms: 150,
        pool_invocations: TEST_POOL_INVOCATIONS,
        origin: Origin::new_provider("wasmcloud:httpserver", "default"),
        host_pid: Some(std::process::id()),
        verify_echo: true,
        raw_subject: None,
        raw_is_messaging: false,
        progress_every: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn closed_loop_counts_every_kind_of_answer() {
    let Some(nats) = start_nats().await else { return };
    let cluster = nkeys::KeyPair::new_cluster();
    let config = config(&nats.url, "closed", Pacing::Closed { in_flight_count: 4 });
    responder(&nats.url, config.subject(), cluster.public_key(), Behaviour::Mixed).await;

    let report = run(&config, &cluster).await.unwrap();
    let c = &report.counts;
    assert!(c.ok > 50, "{c:?}");
    assert!(c.error_replies > 0 && c.timeouts > 0, "{c:?}");
    // Only the deliberate error: every invocation passed the responder's anti-forgery checks
    // and every ok reply carried the payload back.
    assert_eq!(c.error_replies_by_text.keys().collect::<Vec<_>>(), [BOOM], "{c:?}");
    assert_eq!(
        (c.failures, c.no_responders, c.abandoned, c.unsent),
        (0, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.sent, c.ok + c.error_replies + c.timeouts);
    assert!(report.warmup_sent > 0);
    let latency = report.latency_us.as_ref().unwrap();
    assert_eq!(latency.count, c.ok);
    assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    assert!(
        report.cpu_window_secs > 0.5 && report.cpu_window_secs < 3.0,
        "{}",
        report.cpu_window_secs
    );
    assert_eq!(report.window_secs, 1.0);
    // Our own pid stood in for the host: both CPU readings exist.
    assert!(report.host_cpu.is_some() && report.loadgen_cpu.is_some());
    assert!(report.outstanding_cap_waits.is_none());

    let json: serde_json::Value = serde_json::from_str(&crate::engine::report_json(&report)).unwrap();
    assert_eq!(
        json["config"]["pacing"],
        json!({"mode": "closed", "in_flight_count": 4})
    );
    assert_eq!(json["config"]["origin"]["contract_id"], "wasmcloud:httpserver");
    assert_eq!(json["counts"]["ok"], c.ok);
    assert!(json["throughput"]["replies_per_sec"].as_f64().unwrap() > 0.0);
    assert!(json["latency_us"]["p999"].as_u64().is_some());
}

#[tokio::test]
async fn open_loop_keeps_its_schedule() {
    let Some(nats) = start_nats().await else { return };
    let cluster = nkeys::KeyPair::new_cluster();
    let rate = Pacing::Open {
        rate_per_sec: 400.0,
        outstanding_max: 1_000,
    };
    let config = RunConfig {
        warmup_ms: 0,
        timeout_ms: 3_000,
        ..config(&nats.url, "open", rate)
    };
    responder(&nats.url, config.subject(), cluster.public_key(), Behaviour::Echo).await;

    let report = run(&config, &cluster).await.unwrap();
    let c = &report.counts;
    // Exactly the scheduled 400 requests in the 1 s window, all answered.
    assert_eq!((c.sent, c.ok, c.unsent), (400, 400, 0), "{c:?}");
    assert_eq!(report.outstanding_cap_waits, Some(0));
    let lag = report.send_lag_us.as_ref().unwrap();
    assert!(
        lag.p50 < 20_000,
        "sends should leave close to their intended time: {lag:?}"
    );
}

/// The point of the open loop: a 300 ms stall of the responder shows in every request that was
/// due during it, while a closed loop at one in flight sees it once.
#[tokio::test]
async fn open_loop_latency_includes_stalls_closed_loop_hides_them() {
    let Some(nats) = start_nats().await else { return };
    let cluster = nkeys::KeyPair::new_cluster();
    let stall = Behaviour::StallOnce { at: 40, stall_ms: 300 };

    let open = RunConfig {
        warmup_ms: 0,
        timeout_ms: 2_000,
        ..config(
            &nats.url,
            "stallopen",
            Pacing::Open {
                rate_per_sec: 200.0,
                outstanding_max: 1_000,
            },
        )
    };
    responder(&nats.url, open.subject(), cluster.public_key(), stall).await;
    let open_report = run(&open, &cluster).await.unwrap();
    assert_eq!(open_report.counts.ok, 200, "{:?}", open_report.counts);
    let open_p90 = open_report.latency_us.as_ref().unwrap().p90;
    assert!(open_p90 >= 50_000, "open loop p90 {open_p90} µs should show the stall");

    let closed = RunConfig {
        warmup_ms: 0,
        timeout_ms: 2_000,
        ..config(&nats.url, "stallclosed", Pacing::Closed { in_flight_count: 1 })
    };
    responder(&nats.url, closed.subject(), cluster.public_key(), stall).await;
    let closed_report = run(&closed, &cluster).await.unwrap();
    let closed_latency = closed_report.latency_us.as_ref().unwrap();
    assert!(
        closed_latency.max >= 250_000,
        "the stalled request itself: {closed_latency:?}"
    );
    assert!(
        closed_latency.p90 < 50_000,
        "closed loop sees the stall once: {closed_latency:?}"
    );
}

#[tokio::test]
async fn nobody_listening_is_reported_as_no_responders() {
    let Some(nats) = start_nats().await else { return };
    let cluster = nkeys::KeyPair::new_cluster();
    let config = RunConfig {
        duration_ms: 300,
        warmup_ms: 0,
        ..config(&nats.url, "empty", Pacing::Closed { in_flight_count: 2 })
    };
    let report = run(&config, &cluster).await.unwrap();
    let c = &report.counts;
    assert!(c.no_responders > 0, "{c:?}");
    assert_eq!((c.ok, c.error_replies, c.failures), (0, 0, 0), "{c:?}");
    assert!(report.latency_us.is_none());
    assert_eq!(report.host_cpu.as_ref().unwrap().cpu_us_per_invocation, None);

    // A NATS server that is not there is a setup error, not a report.
    let nowhere = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = RunConfig {
        nats_url: format!("127.0.0.1:{nowhere}"),
        ..config
    };
    assert!(matches!(
        run(&config, &cluster).await,
        Err(LoadtestError::Connect { .. })
    ));
}

#[tokio::test]
async fn raw_floor_runs_against_the_built_in_responder_with_zero_errors() {
    let Some(nats) = start_nats().await else { return };
    let cluster = nkeys::KeyPair::new_cluster();
    let subject = "shardhost.loadtest.raw.e2e".to_string();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let url = nats.url.clone();
    let responder_subject = subject.clone();
    let responder = tokio::spawn(async move {
        crate::raw::respond(
            &url,
            &responder_subject,
            Duration::from_secs(30),
            move || {
                let _ = ready_tx.send(());
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("responder ready in time")
        .expect("responder ready");
    let config = RunConfig {
        raw_subject: Some(subject.clone()),
        raw_is_messaging: false,
        ..config(&nats.url, "raw", Pacing::Closed { in_flight_count: 8 })
    };
    assert_eq!(config.subject(), subject);
    let report = run(&config, &cluster).await.unwrap();
    let c = &report.counts;
    assert!(c.ok > 50, "{c:?}");
    assert_eq!(
        (c.error_replies, c.timeouts, c.no_responders, c.failures, c.abandoned),
        (0, 0, 0, 0, 0),
        "{c:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&crate::engine::report_json(&report)).unwrap();
    assert_eq!(json["config"]["scenario"], "raw");
    assert_eq!(json["config"]["subject"], subject.as_str());
    let _ = stop_tx.send(());
    let served = responder.await.unwrap().unwrap();
    // Every request of warm-up and window was answered by the responder.
    assert!(served.replies >= c.sent, "{served:?} vs {c:?}");
    assert_eq!(served.without_reply, 0);
}

/// A fake host on the control interface: answers ping.hosts, acks `la` (or refuses it) and
/// publishes the start events the way shardhost does.
async fn fake_host(url: &str, lattice: &str, host_id: &str, refuse: bool) {
    let client = async_nats::connect(url).await.unwrap();
    let mut ping = client
        .subscribe(format!("wasmbus.ctl.{lattice}.ping.hosts"))
        .await
        .unwrap();
    let mut la = client
        .subscribe(format!("wasmbus.ctl.{lattice}.cmd.{host_id}.la"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let (lattice, host_id) = (lattice.to_string(), host_id.to_string());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(message) = ping.next() => {
                    let reply = json!({ "id": host_id, "uptime_seconds": 1 });
                    publish_reply(&client, &message, reply).await;
                }
                Some(message) = la.next() => {
                    let command: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                    if refuse {
                        publish_reply(&client, &message, json!({"accepted": false, "error": "no room"})).await;
                        continue;
                    }
                    publish_reply(&client, &message, json!({"accepted": true, "error": ""})).await;
                    let event = json!({
                        "specversion": "1.0", "type": "com.wasmcloud.lattice.actors_started",
                        "source": host_id, "data": {
                            "public_key": "MFAKEACTOR", "image_ref": command["actor_ref"],
                            "host_id": host_id, "count": command["count"] }
                    });
                    client.publish(format!("wasmbus.evt.{lattice}"), event.to_string().into()).await.unwrap();
                }
                else => break,
            }
        }
    });
}

async fn publish_reply(client: &Client, message: &async_nats::Message, body: serde_json::Value) {
    if let Some(reply) = message.reply.clone() {
        client.publish(reply, body.to_string().into()).await.unwrap();
    }
}

#[tokio::test]
async fn start_actor_finds_the_host_and_waits_for_the_event() {
    let Some(nats) = start_nats().await else { return };
    let host_id = nkeys::KeyPair::new_server().public_key();
    fake_host(&nats.url, "ctl", &host_id, false).await;
    let request = StartActor {
        target: HostTarget {
            nats_url: nats.url.clone(),
            lattice: "ctl".to_string(),
            ctl_prefix: "wasmbus.ctl".to_string(),
            host_id: None,
        },
        actor_ref: "file:///tmp/echo.wasm".to_string(),
        count: 1,
        wait: Duration::from_secs(10),
    };
    let started = start_actor(&request).await.unwrap();
    assert_eq!(started.public_key, "MFAKEACTOR");
    assert_eq!(started.host_id, host_id);

    let refusing = nkeys::KeyPair::new_server().public_key();
    fake_host(&nats.url, "ctl2", &refusing, true).await;
    let request = StartActor {
        target: HostTarget {
            lattice: "ctl2".to_string(),
            host_id: Some(refusing),
            ..request.target.clone()
        },
        ..request
    };
    assert!(matches!(start_actor(&request).await, Err(LoadtestError::Refused(reason)) if reason == "no room"));

    // No host at all: a bounded wait, then an error.
    let request = StartActor {
        target: HostTarget {
            lattice: "nohost".to_string(),
            host_id: None,
            ..request.target.clone()
        },
        wait: Duration::from_millis(700),
        ..request
    };
    let result = start_actor(&request).await;
    assert!(matches!(result, Err(LoadtestError::NoHost { .. })), "{result:?}");
}
