//! The Prometheus endpoint (`--metrics-addr`) scraped with a real text-format parser
//! (`prometheus-parse`) while signed invocations run: per-shard counters (read from the shards'
//! atomics), what the shards hold (instances and their memory), host gauges, and 404 for other
//! paths.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;

use crate::support::rpc::lab_with;
use crate::support::{assert_accepted, eventually, free_port, request_json, signed_echo, ActorSpec};

/// `GET path` over a fresh connection; returns (status line, body).
pub(crate) fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

pub(crate) fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid exposition text")
}

/// Sum of `name` over its samples (all shards), as the parser read it.
pub(crate) fn total(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn the_metrics_endpoint_shows_shard_counters_and_host_gauges_under_load() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut lab = lab_with("metrics", &[("--metrics-addr", &addr)]).await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;

    let calls = 60usize;
    let lab = std::sync::Arc::new(lab);
    let load = {
        let lab = std::sync::Arc::clone(&lab);
        let key = echo.key.clone();
        tokio::spawn(async move {
            for i in 0..calls {
                lab.call(&key, "Echo.Say", format!("hello {i}").as_bytes())
                    .await
                    .expect("echo");
            }
        })
    };
    // While the load runs: well-formed, one sample per shard for each counter.
    let during = scrape(&addr);
    let shards = during
        .samples
        .iter()
        .filter(|s| s.metric == "shardhost_shard_received_total")
        .count();
    assert_eq!(shards, 2, "one sample per shard");
    load.await.expect("load");

    // The shards publish after each batch: every call is counted once, across both shards.
    let after = eventually(Duration::from_secs(5), "served counters reach the calls made", || {
        let addr = addr.clone();
        async move {
            let s = scrape(&addr);
            (total(&s, "shardhost_shard_served_total") >= calls as f64).then_some(s)
        }
    })
    .await;
    assert_eq!(total(&after, "shardhost_shard_received_total"), calls as f64);
    assert_eq!(total(&after, "shardhost_shard_served_total"), calls as f64);
    assert_eq!(total(&after, "shardhost_shard_rejected_auth_total"), 0.0);
    assert!(total(&after, "shardhost_shard_batches_total") >= 1.0);
    assert_eq!(total(&after, "shardhost_actors"), 1.0);
    assert_eq!(total(&after, "shardhost_shards"), 2.0);
    assert_eq!(total(&after, "shardhost_shards_connected"), 2.0);
    assert_eq!(total(&after, "shardhost_ctl_connected"), 1.0);
    assert_eq!(total(&after, "shardhost_providers"), 0.0);

    // What the shards hold: the echo's instances on both shards, each with its 64 KiB page
    // at least; nothing once the actor is stopped.
    let held = eventually(Duration::from_secs(5), "the shards report their instances", || {
        let addr = addr.clone();
        async move {
            let s = scrape(&addr);
            (total(&s, "shardhost_shard_instances") >= 2.0).then_some(s)
        }
    })
    .await;
    let instances = total(&held, "shardhost_shard_instances");
    let memory = total(&held, "shardhost_shard_instance_memory_bytes");
    assert!(
        memory >= instances * 65_536.0,
        "{memory} bytes for {instances} instances"
    );
    let body = json!({ "actor_ref": echo.key, "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("sa"), body.to_string().as_bytes()).await;
    assert_accepted(&ack, "sa");
    eventually(Duration::from_secs(5), "the shards hold nothing after the stop", || {
        let addr = addr.clone();
        async move {
            let s = scrape(&addr);
            let empty = total(&s, "shardhost_shard_instances") == 0.0
                && total(&s, "shardhost_shard_instance_memory_bytes") == 0.0;
            empty.then_some(())
        }
    })
    .await;

    let (status, _) = get(&addr, "/other");
    assert!(status.contains("404"), "{status}");
}
