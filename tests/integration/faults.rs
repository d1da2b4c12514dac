//! Faults under load (issue 10): the host keeps its promise that every invocation it received
//! is answered, exactly once, whatever fails. Each scenario drives the included generator
//! (`shardhost-loadtest run`) at 64 in flight against the real host and checks the host's
//! own per-shard counters from its Prometheus endpoint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metrics::scrape;
use crate::support::harness::{assert_all_ok, LoadRun};
use crate::support::rpc::lab_with;
use crate::support::{free_port, signed_echo, ActorSpec, Nats};

/// How long NATS stays down at each kill.
const OUTAGE: Duration = Duration::from_millis(500);
/// Counters that mean "the host replied to this invocation".
const ANSWERED: [&str; 9] = [
    "served",
    "rejected_decode",
    "rejected_auth",
    "rejected_capability",
    "rejected_target",
    "rejected_not_running",
    "rejected_overload",
    "rejected_stopping",
    "guest_errors",
];

/// The echo at 64 in flight for `seconds`.
pub(crate) fn echo_load(actor: &str, seconds: f64) -> LoadRun<'_> {
    LoadRun {
        actor,
        operation: "X.Y",
        in_flight: 64,
        seconds,
        timeout_ms: 1_500,
    }
}

/// `shardhost_shard_{field}_total` per shard.
pub(crate) fn per_shard(scrape: &prometheus_parse::Scrape, field: &str) -> BTreeMap<String, f64> {
    let name = format!("shardhost_shard_{field}_total");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name || s.metric == format!("shardhost_shard_{field}"))
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (s.labels.get("shard").unwrap_or("?").to_string(), value)
        })
        .collect()
}

/// Waits (bounded) until the host at `metrics` has answered, per shard, every invocation it
/// received and holds none in flight (the shards publish their counters after each batch and
/// every second); checks no reply went missing; returns that scrape.
pub(crate) async fn every_received_invocation_answered(metrics: &str) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(metrics);
        let received = per_shard(&now, "received");
        let inflight = per_shard(&now, "inflight");
        let mut answered: BTreeMap<String, f64> = BTreeMap::new();
        for field in ANSWERED {
            for (shard, v) in per_shard(&now, field) {
                *answered.entry(shard).or_default() += v;
            }
        }
        let settled = !received.is_empty()
            && received.iter().all(|(shard, r)| answered.get(shard) == Some(r))
            && inflight.values().all(|v| *v == 0.0);
        if settled {
            eprintln!("{metrics} per shard: received {received:?}, answered {answered:?}");
            assert!(per_shard(&now, "no_reply_subject").values().all(|v| *v == 0.0));
            assert!(per_shard(&now, "reply_failures").values().all(|v| *v == 0.0));
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "received ≠ answered: received {received:?}, answered {answered:?}, inflight {inflight:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// nats-server SIGKILLed and restarted on the same port, twice, under 64 in flight: the host
/// never exits, every shard reconnects and resubscribes, the generator sees only ok replies,
/// explicit errors or timeouts for what NATS lost, and per shard every invocation the host
/// received was answered (received = answered, nothing left running or queued).
#[tokio::test]
async fn nats_killed_twice_under_load_leaves_no_received_invocation_unanswered() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut lab = lab_with("faultnats", &[("--metrics-addr", &metrics)]).await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 2).await;
    let report_path = lab.dir.path().join("load.json");
    let load = echo_load(&echo.key, 6.0).spawn(&lab, &report_path);
    let port = lab.nats.port;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        lab.nats.kill();
        tokio::time::sleep(OUTAGE).await;
        lab.nats = Nats::start_on(port);
    }
    let report = load.report().await;
    assert!(lab.host.try_exit_status().is_none(), "the host is still running");
    let counts = &report["counts"];
    eprintln!("generator across two NATS restarts: {counts}");
    assert_eq!(counts["failures"], 0, "no malformed or wrong reply: {counts}");
    assert_eq!(counts["abandoned"], 0, "{counts}");
    assert!(counts["ok"].as_u64().unwrap_or(0) > 100, "{counts}");

    let now = every_received_invocation_answered(&metrics).await;
    let reconnects = per_shard(&now, "reconnects");
    assert!(
        reconnects.values().all(|v| *v >= 2.0),
        "every shard reconnected twice: {reconnects:?}"
    );
    let log = lab.host.stderr();
    assert!(
        log.matches("shard NATS connection restored").count() >= 4,
        "2 shards × 2 restarts:\n{log}"
    );
    crate::support::fault_record(
        "nats-restart",
        serde_json::json!({
            "generator": counts, "outage_ms": OUTAGE.as_millis() as u64, "restarts": 2,
            "received_per_shard": per_shard(&now, "received"), "reconnects_per_shard": reconnects,
        }),
    );
}

/// A hostile actor of the runtime's test set and the reply text its calls must get.
struct Hostile {
    name: &'static str,
    wat: &'static str,
    operation: &'static str,
    error: &'static str,
}

const HOSTILE: [Hostile; 4] = [
    Hostile {
        name: "forever",
        wat: include_str!("../../src/runtime/actors/forever.wat"),
        operation: "Spin",
        error: "execution deadline",
    },
    Hostile {
        name: "trap",
        wat: include_str!("../../src/runtime/actors/trap.wat"),
        operation: "Any",
        error: "guest trapped",
    },
    Hostile {
        name: "grow",
        wat: include_str!("../../src/runtime/actors/grow.wat"),
        operation: "Grow",
        error: "out of memory",
    },
    Hostile {
        name: "badptr",
        wat: include_str!("../../src/runtime/actors/badptr.wat"),
        operation: "Host",
        error: "out-of-bounds pointer",
    },
];

/// Echo at 64 in flight, first alone and then beside actors that loop forever, trap, grow
/// their memory to the limit and hand the host bad pointers, called in loops on the same
/// shards: every hostile call gets its error, each bad instance is retired and replaced (the
/// next call gets the same error, not a hang), and echo loses nothing. Echo's throughput and
/// p99 beside them are printed against the clean run (measured, not asserted: timing belongs
/// in the harness).
#[tokio::test]
async fn hostile_guests_get_errors_while_echo_on_the_same_shards_loses_nothing() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut lab = lab_with(
        "faulthostile",
        &[("--metrics-addr", &metrics), ("--max-execution-time", "200")],
    )
    .await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 2).await;
    let mut hostile_keys = Vec::new();
    for hostile in &HOSTILE {
        let actor = crate::support::signed_wat(hostile.wat, ActorSpec::default());
        lab.start(&format!("{}.wasm", hostile.name), &actor, 1).await;
        hostile_keys.push(actor.key);
    }

    let clean_path = lab.dir.path().join("clean.json");
    let clean = echo_load(&echo.key, 2.0).spawn(&lab, &clean_path).report().await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lab = std::sync::Arc::new(lab);
    let mut abusers = Vec::new();
    for (hostile, key) in HOSTILE.iter().zip(&hostile_keys) {
        let (lab, key, stop) = (lab.clone(), key.clone(), stop.clone());
        abusers.push(tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let error = lab
                    .call(&key, hostile.operation, b"abuse")
                    .await
                    .expect_err("a hostile call fails");
                assert!(error.contains(hostile.error), "{}: {error}", hostile.name);
                answered += 1;
            }
            (hostile.name, answered)
        }));
    }
    let dirty_path = lab.dir.path().join("hostile.json");
    let dirty = echo_load(&echo.key, 3.0).spawn(&lab, &dirty_path).report().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for abuser in abusers {
        let (name, answered) = abuser.await.expect("abuser");
        assert!(answered >= 2, "{name}: {answered} calls, each answered with its error");
    }

    assert_all_ok(&clean, "echo alone");
    assert_all_ok(&dirty, "echo beside hostile guests");
    eprintln!(
        "echo alone: {} ok/s, p99 {} µs; beside hostile guests: {} ok/s, p99 {} µs",
        clean["throughput"]["ok_per_sec"],
        clean["latency_us"]["p99"],
        dirty["throughput"]["ok_per_sec"],
        dirty["latency_us"]["p99"]
    );
    let now = scrape(&metrics);
    let guest_errors: f64 = per_shard(&now, "guest_errors").values().sum();
    assert!(
        guest_errors >= 8.0,
        "hostile calls counted as guest errors: {guest_errors}"
    );
    crate::support::fault_record(
        "hostile-guests",
        serde_json::json!({
            "echo_alone": { "ok_per_sec": clean["throughput"]["ok_per_sec"], "p99_us": clean["latency_us"]["p99"] },
            "echo_beside_hostile": { "ok_per_sec": dirty["throughput"]["ok_per_sec"], "p99_us": dirty["latency_us"]["p99"], "counts": dirty["counts"] },
            "guest_errors": guest_errors,
        }),
    );
}
