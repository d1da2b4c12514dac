//! Graceful drain (issue 10): a host stopped by SIGTERM under load stops taking invocations
//! (its queue subscriptions leave, so NATS routes to the other hosts), answers every one it
//! accepted, says `host_stopped` and exits 0 — and a client of a two-host lattice sees no
//! failed request across the stop.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::support::harness::{assert_all_ok, LoadRun};
use crate::support::rpc::{lab, Lab, START_TIMEOUT};
use crate::support::{signed_echo, unique_lattice, ActorSpec, HostOptions, Nats};

/// Longest a drained host may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn sigterm_under_load_loses_nothing_while_the_other_host_takes_over() {
    let mut lab = lab("drain").await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    let second = lab.second_host_on(None, &echo, &[]).await;

    let report_path = lab.dir.path().join("load.json");
    let generator = LoadRun {
        actor: &echo.key,
        operation: "X.Y",
        in_flight: 64,
        seconds: 4.0,
        timeout_ms: 5_000,
    }
    .spawn(&lab, &report_path);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    lab.host.signal("TERM");
    let status = lab.host.wait_exit(EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
    let report = generator.report().await;
    let counts = &report["counts"];
    eprintln!("load across the stop: {counts}");
    assert_all_ok(&report, "across the stop");
    assert!(
        counts["ok"].as_u64().unwrap_or(0) >= 100,
        "the stop happened under load: {counts}"
    );
    let log = lab.host.stderr();
    assert!(
        log.contains("shard drained") && log.contains("unsubscribe_confirmed=true"),
        "each shard says what it drained:\n{log}"
    );
    let drained: Vec<&str> = log.lines().filter(|l| l.contains("shard drained")).collect();
    crate::support::fault_record(
        "graceful-drain",
        serde_json::json!({ "generator": counts, "exit_status": status.code(), "shards": drained }),
    );
    drop(second);
}

/// Past `--drain-timeout-ms` nothing accepted is dropped: a queued invocation is answered
/// "host stopping", and a running one whose guest waits on a provider that never answers gets
/// an error from that call, so the guest finishes and its invocation is answered too.
#[tokio::test]
async fn past_the_drain_timeout_queued_and_waiting_invocations_are_answered() {
    // One running invocation per shard; the outbound call would wait 20 s, the drain 500 ms.
    let options = HostOptions::new(&unique_lattice("drainto"))
        .arg("--shard-inflight-max", "1")
        .arg("--rpc-timeout-ms", "20000")
        .arg("--drain-timeout-ms", "500");
    let mut lab = Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await;
    let (caller, mut silent) = lab.caller_of_a_silent_provider().await;
    // Calls sent now (spawned: a future not yet polled would be sent only after the stop).
    let spawn_call = |payload: Vec<u8>| lab.spawn_call(&caller.key, "Caller.Call", payload);
    // The link reaches the shards: a call arrives at the provider (and waits there).
    let deadline = Instant::now() + START_TIMEOUT;
    let probe = loop {
        let call = spawn_call(b"probe".to_vec());
        if tokio::time::timeout(Duration::from_millis(500), silent.next())
            .await
            .is_ok()
        {
            break call;
        }
        call.abort();
        assert!(Instant::now() < deadline, "the link never reached the shards");
    };

    // Six more: per shard at most one runs (the probe is one), one waits, the rest are
    // answered "overloaded" at once.
    let calls: Vec<_> = (0..6u8).map(|i| spawn_call(vec![i])).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop_at = Instant::now();
    lab.host.signal("TERM");
    let (mut stopping, mut overloaded) = (0, 0);
    for call in calls {
        let error = call.await.expect("call task").expect_err("the provider never answers");
        if error.starts_with("Host overloaded") {
            overloaded += 1;
        } else {
            assert!(error.contains("host stopping"), "{error}");
            stopping += 1;
        }
    }
    let error = probe.await.expect("probe task").expect_err("no provider reply");
    assert!(error.contains("host stopping"), "{error}");
    assert!(
        stopping >= 1 && stopping + overloaded == 6,
        "stopping {stopping}, overloaded {overloaded}"
    );
    assert!(
        stop_at.elapsed() < Duration::from_secs(10),
        "answered at the drain timeout, not the rpc timeout"
    );
    let status = lab.host.wait_exit(EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "exit status: {status}");
    let log = lab.host.stderr();
    assert!(
        log.contains("the drain timeout passed with invocations running"),
        "{log}"
    );
}
