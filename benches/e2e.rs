//! Loopback end to end (criterion): a real nats-server and the real `shardhost` binary (two
//! shards) serving the echo actor; the client sends invocations signed with the host's cluster
//! key and encoded as a 0.x peer does, one at a time (`in_flight_1`: latency per call) and 64
//! at a time (`in_flight_64`: time per call at that concurrency, i.e. 1 / throughput). The
//! host's CPU time per invocation over each group is read from `/proc` and printed.
//!
//! Generator, nats-server and host share the machine: on a small machine the figures include
//! their contention. `loadtest/` is the tool for open-loop runs and percentiles.
//!
//! `cargo bench --bench e2e -- --warm-up-time 1 --measurement-time 5`; needs nats-server
//! (`$SHARDHOST_NATS_SERVER`, `.tools/venv/bin/nats-server` or `PATH`), else it says so and
//! measures nothing. In test mode (`cargo test --benches`) each routine runs once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::stream::{FuturesUnordered, StreamExt};
use shardhost::auth::antiforgery::{encode_signed_invocation, Outbound};
use shardhost::auth::claims::{sign_actor_module, validate_actor, ActorSpec};
use shardhost::wire::invocation::EntityRef;
use shardhost::wire::response::decode_response;

const ECHO: &str = include_str!("../src/runtime/actors/echo.wat");
const PAYLOAD: &[u8] = b"{\"method\":\"GET\",\"path\":\"/echo\",\"body\":\"hello, lattice\"}";
/// Distinct pre-signed invocations the client cycles through (signing is not measured).
const SIGNED_POOL: usize = 256;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SHARDHOST_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.exists())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Child processes killed on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on Linux whatever the kernel's HZ.
const USER_HZ: u64 = 100;

fn bench_e2e(c: &mut Criterion) {
    let Some(nats_bin) = nats_server() else {
        eprintln!("e2e: no nats-server found ($SHARDHOST_NATS_SERVER, .tools/venv/bin, PATH); nothing measured");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let mut processes = Processes(Vec::new());
    processes.0.push(
        Command::new(nats_bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cluster = nkeys::KeyPair::new_cluster();
    let lattice = format!("e2e{port}");
    let nc = rt.block_on(async {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match async_nats::connect(format!("127.0.0.1:{port}")).await {
                Ok(nc) => break nc,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("nats-server did not start: {e}"),
            }
        }
    });
    let mut events = rt.block_on(async {
        let sub = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
        nc.flush().await.unwrap();
        sub
    });
    let host = Command::new(env!("CARGO_BIN_EXE_shardhost"))
        .args([
            "--nats-host",
            "127.0.0.1",
            "--nats-port",
            &port.to_string(),
            "--lattice",
            &lattice,
        ])
        .args(["--shards", "2", "--allow-file-load", "--log-level", "warn"])
        .args(["--cluster-seed", &cluster.seed().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host_pid = host.id();
    processes.0.push(host);

    // The echo actor, signed with shardhost's own signer, started with `la`.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let account = nkeys::KeyPair::new_account();
    let spec = ActorSpec {
        name: "e2e-echo".into(),
        caps: vec!["wasmcloud:httpserver".into()],
        call_alias: None,
        rev: Some(1),
        ver: Some("0.1.0".into()),
        tags: Vec::new(),
        expires_secs: None,
        not_before_secs: None,
        now_secs: now,
    };
    let module = sign_actor_module(&wat::parse_str(ECHO).unwrap(), &account, &spec).unwrap();
    let actor = validate_actor(&module, now).unwrap().subject;
    let path = store.path().join("echo.wasm");
    std::fs::write(&path, &module).unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let host_id = loop {
            if let Ok(Ok(reply)) = tokio::time::timeout(
                Duration::from_secs(1),
                nc.request(format!("wasmbus.ctl.{lattice}.ping.hosts"), Bytes::new()),
            )
            .await
            {
                let hosts: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
                if let Some(id) = hosts["id"].as_str() {
                    break id.to_string();
                }
            }
            assert!(Instant::now() < deadline, "the host did not answer ping.hosts");
        };
        let body =
            serde_json::json!({ "actor_ref": format!("file://{}", path.display()), "count": 2, "host_id": host_id });
        nc.request(
            format!("wasmbus.ctl.{lattice}.cmd.{host_id}.la"),
            body.to_string().into(),
        )
        .await
        .unwrap();
        loop {
            let event = tokio::time::timeout(STARTUP_TIMEOUT, events.next())
                .await
                .unwrap()
                .unwrap();
            let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap_or_default();
            if event["type"] == "com.wasmcloud.lattice.actors_started" {
                break;
            }
            assert_ne!(event["type"], "com.wasmcloud.lattice.actors_start_failed", "{event}");
        }
    });

    // Pre-signed invocations from an httpserver provider, as a 0.x provider sends them.
    let provider = nkeys::KeyPair::new_service().public_key();
    let host_id = nkeys::KeyPair::new_server().public_key();
    let origin = EntityRef {
        public_key: &provider,
        link_name: "default",
        contract_id: "wasmcloud:httpserver",
    };
    let target = EntityRef {
        public_key: &actor,
        link_name: "",
        contract_id: "",
    };
    let op = "HttpServer.HandleRequest";
    let signed: Vec<(String, Bytes)> = (0..SIGNED_POOL)
        .map(|_| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let mut out = BytesMut::new();
            let call = Outbound {
                origin,
                target,
                operation: op,
                payload: PAYLOAD,
                chunked: false,
                id: &id,
                host_id: &host_id,
                trace_context: &[],
            };
            encode_signed_invocation(&mut out, &cluster, &call, now).unwrap();
            (id, out.freeze())
        })
        .collect();
    let subject = format!("wasmbus.rpc.{lattice}.{actor}");
    let call = |i: usize| {
        let (id, bytes) = &signed[i % SIGNED_POOL];
        let nc = nc.clone();
        let subject = subject.clone();
        async move {
            let reply = nc.request(subject, bytes.clone()).await.expect("reply");
            let response = decode_response(&reply.payload).expect("InvocationResponse");
            assert_eq!((response.invocation_id, response.error), (id.as_str(), None));
            assert_eq!(response.msg, PAYLOAD);
        }
    };
    // The actor is announced once every shard serves it; one call checks the whole path.
    rt.block_on(call(0));

    let mut group = c.benchmark_group("e2e_echo");
    group.throughput(Throughput::Elements(1));
    for in_flight in [1usize, 64] {
        let cpu_before = cpu_ticks(host_pid);
        let mut calls = 0u64;
        group.bench_function(format!("in_flight_{in_flight}"), |b| {
            b.iter_custom(|iters| {
                calls += iters;
                rt.block_on(async {
                    let start = Instant::now();
                    let mut pending = FuturesUnordered::new();
                    let mut next = 0usize;
                    while (next as u64) < iters || !pending.is_empty() {
                        while pending.len() < in_flight && (next as u64) < iters {
                            pending.push(call(next));
                            next += 1;
                        }
                        pending.next().await;
                    }
                    start.elapsed()
                })
            })
        });
        let cpu_secs = (cpu_ticks(host_pid) - cpu_before) as f64 / USER_HZ as f64;
        eprintln!(
            "e2e_echo/in_flight_{in_flight}: host CPU {:.1} µs per invocation over {calls} calls (warm-up included)",
            cpu_secs * 1e6 / calls.max(1) as f64
        );
    }
    group.finish();
    drop(processes);
}

criterion_group!(benches, bench_e2e);
criterion_main!(benches);
