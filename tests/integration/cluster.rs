//! A NATS cluster losing a node under load (issue 10): three nats-server nodes clustered on
//! loopback with an R3 lattice bucket, host A on node 0, host B on node 1, the generator on
//! node 2. Node 0 is SIGKILLed mid-run: host A fails over to a node it learned from INFO
//! `connect_urls`, the bucket stays readable and writable, the lattice keeps serving through
//! host B meanwhile, host A applies a link written while its node was down, and every
//! invocation either host received is answered. Node 0 then comes back and rejoins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::faults::{echo_load, every_received_invocation_answered};
use crate::metrics::{scrape, total};
use crate::support::cluster::NatsCluster;
use crate::support::rpc::{invocation, Entity, Lab, START_TIMEOUT};
use crate::support::{free_port, request_json, signed_caller, signed_echo, unique_lattice, ActorSpec, HostOptions};

/// How often the hosts' served counters are sampled to find the gap in service.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Longest host B may go without serving while host A's node is gone.
const SURVIVOR_GAP_MAX: Duration = Duration::from_secs(3);
/// How long the R3 bucket may take to read and write again after losing a node (JetStream
/// re-elects the stream leader the lost node held).
const KV_BACK_TIMEOUT: Duration = Duration::from_secs(20);
/// One attempt to read the bucket.
const KV_ATTEMPT: Duration = Duration::from_millis(250);

/// `(when, served)` samples of one host's metrics endpoint until `stop`.
fn sample_served(metrics: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(Instant, f64)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push((Instant::now(), total(&scrape(&metrics), "shardhost_shard_served_total")));
            std::thread::sleep(SAMPLE_EVERY);
        }
        samples
    })
}

/// The longest time after `from` during which `samples` show no invocation served, up to the
/// last sample that still grew (the end of the load).
fn longest_gap(samples: &[(Instant, f64)], from: Instant) -> Duration {
    let last_growth = samples.windows(2).filter(|w| w[1].1 > w[0].1).map(|w| w[1].0).max();
    let mut gap = Duration::ZERO;
    let mut since = from;
    for window in samples.windows(2) {
        let (at, served) = window[1];
        if at < from || last_growth.is_some_and(|end| at > end) {
            continue;
        }
        if served > window[0].1 {
            gap = gap.max(at.saturating_duration_since(since));
            since = at;
        }
    }
    gap
}

#[tokio::test]
async fn a_cluster_node_lost_under_load_fails_its_host_over_and_loses_no_received_invocation() {
    let (cluster, mut nodes) = NatsCluster::start();
    let node2 = nodes.pop().expect("node 2");
    let node1 = nodes.pop().expect("node 1");
    let node0 = nodes.pop().expect("node 0");
    let probe = node2.client().await;
    cluster.wait_ready(&probe).await;

    let (metrics_a, metrics_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let options = HostOptions::new(&unique_lattice("cluster"))
        .arg("--heartbeat-interval-ms", "500")
        .arg("--rpc-timeout-ms", "1500")
        .arg("--kv-replicas", "3")
        .arg("--metrics-addr", &metrics_a);
    let mut lab = Lab::start_on(node0, options, tempfile::tempdir().expect("tempdir")).await;
    let lattice = lab.host.lattice.clone();
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 2).await;
    let mut host_b = lab
        .second_host_on(Some(&node1), &echo, &[("--metrics-addr", &metrics_b)])
        .await;

    let bucket = format!("LATTICEDATA_{lattice}");
    let js = async_nats::jetstream::new(probe.clone());
    let kv = js.get_key_value(&bucket).await.expect("the hosts' bucket");
    let replicas = kv.status().await.expect("bucket status").info.config.num_replicas;
    assert_eq!(replicas, 3, "--kv-replicas 3 made an R3 bucket");

    // A caller that runs on host A only, linked (later) to a provider that lives on node 2.
    let caller = signed_caller("failover", "wasmcloud:keyvalue", "KeyValue.Get");
    lab.start("caller.wasm", &caller, 1).await;
    let provider = nkeys::KeyPair::new_service().public_key();
    let mut provider_inbox = probe
        .subscribe(format!("wasmbus.rpc.{lattice}.{provider}.failover"))
        .await
        .expect("provider subscription");
    probe.flush().await.expect("flush");

    let stop = Arc::new(AtomicBool::new(false));
    let (samples_a, samples_b) = (
        sample_served(metrics_a.clone(), stop.clone()),
        sample_served(metrics_b.clone(), stop.clone()),
    );
    let report_path = lab.dir.path().join("load.json");
    let load = echo_load(&echo.key, 7.0).spawn_at(&node2.url(), &lab, &report_path);

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let killed_at = Instant::now();
    lab.nats.kill();

    // With one node of three gone the R3 bucket reads again once JetStream has re-elected the
    // leaders node 0 held, and takes a write: a link for the caller, put through the control
    // interface (host A's node is down; whichever host answers writes it).
    let deadline = Instant::now() + KV_BACK_TIMEOUT;
    let keys = loop {
        // Short attempts, so the figure is the bucket's gap and not one long request timeout.
        let attempt = async {
            kv.keys()
                .await?
                .try_collect::<Vec<String>>()
                .await
                .map_err(|e| e.to_string().into())
        };
        match tokio::time::timeout(KV_ATTEMPT, attempt).await {
            Ok(Ok(keys)) => break keys,
            other => {
                let why: Option<Box<dyn std::error::Error + Send + Sync>> = other.map(|r| r.err()).unwrap_or(None);
                assert!(
                    Instant::now() < deadline,
                    "bucket unreadable {KV_BACK_TIMEOUT:?} after the loss: {why:?}"
                );
            }
        }
    };
    let kv_readable_after = killed_at.elapsed();
    assert!(
        keys.iter().any(|k| k.starts_with("CLAIMS_")),
        "claims readable: {keys:?}"
    );
    let link = json!({ "actor_id": caller.key, "provider_id": provider, "link_name": "failover", "contract_id": "wasmcloud:keyvalue", "values": {} });
    let put = format!("wasmbus.ctl.{lattice}.linkdefs.put");
    loop {
        let ack = request_json(&probe, &put, link.to_string().as_bytes()).await;
        if ack["accepted"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "linkdefs.put refused {KV_BACK_TIMEOUT:?} after the loss: {ack}"
        );
        eprintln!("linkdefs.put with a node down: {ack}; again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kv_writable_after = killed_at.elapsed();

    // Host A, on another node now, applied that link from its KV watch: its caller reaches the
    // provider on node 2.
    let mut reached = None::<Duration>;
    let deadline = Instant::now() + START_TIMEOUT;
    while reached.is_none() {
        let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
        let (_, bytes) = invocation(
            &lab.cluster,
            origin,
            Entity::actor(&caller.key),
            "Caller.Call",
            b"k",
            b"k",
        );
        let subject = format!("wasmbus.rpc.{lattice}.{}", caller.key);
        let request = probe.request(subject, bytes.into());
        let _ = tokio::time::timeout(Duration::from_millis(300), request).await;
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), provider_inbox.next()).await {
            assert!(!msg.payload.is_empty(), "an invocation reached the provider");
            reached = Some(killed_at.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "host A never reached the provider after failing over"
        );
    }

    // Node 0 comes back and rejoins while the load still runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.nats = cluster.start_node(0);
    let report = load.report().await;
    stop.store(true, Ordering::Relaxed);
    let (samples_a, samples_b) = (
        samples_a.join().expect("sampler A"),
        samples_b.join().expect("sampler B"),
    );

    assert!(lab.host.try_exit_status().is_none(), "host A still runs");
    assert!(host_b.try_exit_status().is_none(), "host B still runs");
    let counts = &report["counts"];
    let (gap_a, gap_b) = (longest_gap(&samples_a, killed_at), longest_gap(&samples_b, killed_at));
    eprintln!(
        "node 0 lost under load: generator {counts}; host A without service {gap_a:?}, host B {gap_b:?}; \
         bucket read after {kv_readable_after:?}, written after {kv_writable_after:?}; host A applied the \
         link and reached the provider {:?} after the kill",
        reached.expect("reached")
    );
    assert_eq!(counts["failures"], 0, "no malformed or wrong reply: {counts}");
    assert_eq!(counts["abandoned"], 0, "{counts}");
    assert_eq!(counts["no_responders"], 0, "host B served throughout: {counts}");
    assert!(counts["ok"].as_u64().unwrap_or(0) > 100, "{counts}");
    assert!(gap_b < SURVIVOR_GAP_MAX, "host B kept serving: longest gap {gap_b:?}");
    let served_after = |samples: &[(Instant, f64)]| {
        let at_kill = samples
            .iter()
            .rev()
            .find(|(at, _)| *at <= killed_at)
            .map_or(0.0, |s| s.1);
        samples.last().map_or(0.0, |s| s.1) > at_kill
    };
    assert!(served_after(&samples_a), "host A served again after failing over");

    for (host, metrics) in [("A", &metrics_a), ("B", &metrics_b)] {
        let now = every_received_invocation_answered(metrics).await;
        eprintln!(
            "host {host}: KV watch reopened {} times, lag now {}",
            total(&now, "shardhost_kv_watch_reopens_total"),
            total(&now, "shardhost_kv_watch_lag_entries")
        );
    }
    let log = lab.host.stderr();
    for line in log
        .lines()
        .filter(|l| l.contains("connection lost") || l.contains("connection restored"))
    {
        eprintln!("host A: {line}");
    }
    assert!(
        log.matches("shard NATS connection restored").count() >= 2,
        "both of host A's shards failed over:\n{log}"
    );
    let ms = |d: Duration| d.as_millis() as u64;
    crate::support::fault_record(
        "cluster-node-loss",
        json!({
            "generator": counts, "host_a_gap_ms": ms(gap_a), "host_b_gap_ms": ms(gap_b),
            "kv_readable_after_ms": ms(kv_readable_after), "kv_writable_after_ms": ms(kv_writable_after),
            "link_applied_after_ms": reached.map(ms),
        }),
    );
}
