//! Health probes on `--metrics-addr` (issue 19): `/livez` and `/readyz` through each transition
//! an orchestrator or load balancer acts on — ready after start, not ready (naming the shards)
//! while NATS is down and ready again when it returns, not ready at once on SIGTERM while the
//! drain still runs and live until the process exits.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::rpc::{lab_with, Lab, START_TIMEOUT};
use crate::support::{eventually, free_port, unique_lattice, HostOptions, Nats};

/// Longest one probe request may take (the endpoint answers from atomics, at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the host may take to turn ready after start or after NATS returns.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the outage test asks `/livez`: past the host's 5 s shard tick limit, with margin.
const LIVE_CHECK_SPAN: Duration = Duration::from_millis(6_500);
/// `--drain-timeout-ms` of the drain test: how long in-flight calls hold the stop.
const DRAIN_TIMEOUT_MS: u64 = 3_000;
/// "At once": longest from SIGTERM to a 503 `draining`, far below the drain's length.
const NOT_READY_AFTER_SIGNAL_MAX: Duration = Duration::from_millis(1_000);
/// How often the drain test asks `/livez`; five of these bound the gap it allows between the
/// last 200 and the endpoint's end (the process exit).
const LIVEZ_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One answer of the endpoint.
struct Response {
    status: String,
    head: String,
    body: String,
}

/// `method path` over a fresh connection; an error when the endpoint cannot be reached or
/// does not answer in [`PROBE_TIMEOUT`].
async fn request(addr: &str, method: &str, path: &str) -> std::io::Result<Response> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "probe timed out"))??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no head: {text:?}")))?;
    Ok(Response {
        status: head.lines().next().unwrap_or_default().to_string(),
        head: head.to_string(),
        body: body.to_string(),
    })
}

async fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path).await.expect("the endpoint answers")
}

/// Waits until `/readyz` answers 200 `ready`.
async fn until_ready(addr: &str) {
    eventually(READY_TIMEOUT, "/readyz answers 200 ready", || async {
        let r = request(addr, "GET", "/readyz").await.ok()?;
        (r.status == "HTTP/1.1 200 OK" && r.body == "ready\n").then_some(())
    })
    .await;
}

fn assert_live(r: &Response, when: &str) {
    assert_eq!(
        (r.status.as_str(), r.body.as_str()),
        ("HTTP/1.1 200 OK", "live\n"),
        "/livez {when}"
    );
}

#[tokio::test]
async fn a_started_host_is_live_and_ready_on_get_and_head_and_says_so_in_the_metrics() {
    let addr = format!("127.0.0.1:{}", free_port());
    let lab = lab_with("probes", &[("--metrics-addr", &addr)]).await;
    until_ready(&addr).await;

    let live = get(&addr, "/livez").await;
    assert_live(&live, "after start");
    for r in [&live, &get(&addr, "/readyz").await] {
        assert!(r.head.contains("\r\nCache-Control: no-store\r\n"), "{}", r.head);
        assert!(r.head.contains("\r\nContent-Type: text/plain"), "{}", r.head);
    }
    let head = request(&addr, "HEAD", "/readyz").await.expect("HEAD /readyz");
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    assert!(head.head.contains("\r\nContent-Length: 6\r\n"), "{}", head.head);
    assert_eq!(head.body, "", "HEAD has no body");
    let head = request(&addr, "HEAD", "/livez").await.expect("HEAD /livez");
    assert_eq!((head.status.as_str(), head.body.as_str()), ("HTTP/1.1 200 OK", ""));

    for (method, path) in [("POST", "/readyz"), ("GET", "/healthz"), ("GET", "/livez/x")] {
        let r = request(&addr, method, path).await.expect("an answer");
        assert!(r.status.contains("404"), "{method} {path}: {}", r.status);
    }
    let metrics = get(&addr, "/metrics").await;
    for line in [
        "\nshardhost_live 1\n",
        "\nshardhost_ready 1\n",
        "\nshardhost_draining 0\n",
    ] {
        assert!(metrics.body.contains(line), "{line:?} in:\n{}", metrics.body);
    }
    drop(lab);
}

#[tokio::test]
async fn while_nats_is_down_the_host_is_live_but_not_ready_naming_each_shard() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut lab = lab_with("probesnats", &[("--metrics-addr", &addr)]).await;
    let host_up_at_least_since = Instant::now();
    until_ready(&addr).await;

    let port = lab.nats.port;
    lab.nats.kill();
    let killed = Instant::now();
    let down = eventually(Duration::from_secs(10), "/readyz names both shards", || async {
        let r = request(&addr, "GET", "/readyz").await.ok()?;
        let both = r.body.contains("shard-0 not connected to NATS") && r.body.contains("shard-1 not connected to NATS");
        both.then_some(r)
    })
    .await;
    eprintln!("{:?} after NATS was killed: {:?}", killed.elapsed(), down.body);
    assert_eq!(down.status, "HTTP/1.1 503 Service Unavailable");
    assert!(
        down.body.starts_with("not ready: ") && down.body.ends_with('\n'),
        "{:?}",
        down.body
    );
    assert_eq!(down.body.lines().count(), 1, "one line: {:?}", down.body);
    assert!(down.head.contains("\r\nCache-Control: no-store\r\n"), "{}", down.head);
    // Liveness never depends on NATS: an orchestrator must not restart a host for an outage.
    // Asked until the host has run past the shards' tick limit, so live also means that every
    // shard's executor stamped its ticks (a stamp never written turns stale at that limit).
    while host_up_at_least_since.elapsed() < LIVE_CHECK_SPAN {
        assert_live(&get(&addr, "/livez").await, "while NATS is down");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = get(&addr, "/metrics").await;
    assert!(metrics.body.contains("\nshardhost_ready 0\n"), "{}", metrics.body);

    lab.nats = Nats::start_on(port);
    let restarted = Instant::now();
    until_ready(&addr).await;
    eprintln!("ready {:?} after NATS was back", restarted.elapsed());
    assert_live(&get(&addr, "/livez").await, "after NATS returned");
}

#[tokio::test]
async fn on_sigterm_the_host_turns_not_ready_at_once_and_stays_live_until_it_exits() {
    let addr = format!("127.0.0.1:{}", free_port());
    // Calls wait on a provider that never answers (20 s), so they hold the drain for its timeout.
    let options = HostOptions::new(&unique_lattice("probesdrain"))
        .arg("--metrics-addr", &addr)
        .arg("--rpc-timeout-ms", "20000")
        .arg("--drain-timeout-ms", &DRAIN_TIMEOUT_MS.to_string());
    let mut lab = Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await;
    let calls = calls_in_flight(&mut lab).await;
    until_ready(&addr).await;

    let signalled = Instant::now();
    lab.host.signal("TERM");
    let draining = eventually(Duration::from_secs(5), "/readyz says draining", || async {
        let r = request(&addr, "GET", "/readyz").await.ok()?;
        r.body.contains("draining").then_some(r)
    })
    .await;
    let not_ready_after = signalled.elapsed();
    assert_eq!(draining.status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(draining.body, "not ready: draining\n");
    assert!(
        not_ready_after < NOT_READY_AFTER_SIGNAL_MAX,
        "not ready {not_ready_after:?} after SIGTERM"
    );
    assert!(
        calls.iter().all(|call| !call.is_finished()),
        "the drain still holds the calls in flight"
    );
    assert!(lab.host.try_exit_status().is_none(), "the host still drains");

    // Every answer until the process is gone is 200 live; then the endpoint is gone with it.
    let mut last_live = None;
    let gone = loop {
        match request(&addr, "GET", "/livez").await {
            Ok(r) => assert_live(&r, &format!("{:?} after SIGTERM", signalled.elapsed())),
            Err(_) => break signalled.elapsed(),
        }
        last_live = Some(signalled.elapsed());
        tokio::time::sleep(LIVEZ_POLL_INTERVAL).await;
    };
    let status = lab.host.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
    let last_live = last_live.expect("/livez answered during the drain");
    eprintln!("after SIGTERM: not ready at {not_ready_after:?}, last 200 live at {last_live:?}, gone at {gone:?}");
    assert!(
        gone.saturating_sub(last_live) <= LIVEZ_POLL_INTERVAL * 5
            && last_live + LIVEZ_POLL_INTERVAL * 5 >= Duration::from_millis(DRAIN_TIMEOUT_MS),
        "live through the {DRAIN_TIMEOUT_MS} ms drain up to the exit: last 200 {last_live:?} and \
         no answer {gone:?} after SIGTERM"
    );
    for call in calls {
        let error = call.await.expect("call task").expect_err("the provider never answers");
        assert!(error.contains("host stopping"), "{error}");
    }
}

/// Calls of a caller actor whose provider never answers, each running on the host when this
/// returns (the provider has seen the first).
async fn calls_in_flight(lab: &mut Lab) -> Vec<tokio::task::JoinHandle<Result<Vec<u8>, String>>> {
    let (caller, mut silent) = lab.caller_of_a_silent_provider().await;
    let spawn_call = |payload: Vec<u8>| lab.spawn_call(&caller.key, "Caller.Call", payload);
    // Until the link reaches the shards, a call fails at once; retry until one waits.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut calls = loop {
        let call = spawn_call(b"first".to_vec());
        if tokio::time::timeout(Duration::from_millis(500), silent.next())
            .await
            .is_ok()
        {
            break vec![call];
        }
        call.abort();
        assert!(Instant::now() < deadline, "the link never reached the shards");
    };
    calls.extend((0..3u8).map(|i| spawn_call(vec![i])));
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), silent.next())
            .await
            .expect("each call reaches the provider");
    }
    calls
}
