//! `--memory-budget-mib` (issue 9): an edge node's host refuses, with a clear error, to hold
//! more actor linear memory than it was given — a scale that would not fit gets an error
//! reply, a start that would not fit an `actors_start_failed` event — and serves on with what
//! it runs, instead of growing into the kernel's OOM killer.

use std::time::Duration;

use serde_json::json;

use crate::support::rpc::lab_with;
use crate::support::{assert_accepted, assert_refused, expect_event, request_json, signed_echo, ActorSpec};

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn scales_and_starts_past_the_memory_budget_are_refused_and_the_host_serves_on() {
    // 1 MiB = 16 pages of 64 KiB; the test echo starts with one page per instance, two shards.
    let metrics = format!("127.0.0.1:{}", crate::support::free_port());
    let mut lab = lab_with(
        "membudget",
        &[
            ("--memory-budget-mib", "1"),
            ("--baseline-compiler", "false"),
            ("--metrics-addr", &metrics),
        ],
    )
    .await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    let reference = format!("file://{}", lab.dir.path().join("echo.wasm").display());

    // To 7 at once: 4 warm instances per shard, 8 pages beside the 2 held: fits.
    let scale =
        |count: u32| json!({ "actor_ref": reference, "actor_id": echo.key, "count": count, "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("scale"), scale(7).to_string().as_bytes()).await;
    assert_accepted(&ack, "scale to 7");
    expect_event(&mut lab.events, "actors_started", EVENT_TIMEOUT, "scale to 7").await;

    // To 64: 32 per shard, 64 pages: refused at once, with the figures.
    let ack = request_json(&lab.nc, &lab.host.cmd("scale"), scale(64).to_string().as_bytes()).await;
    let error = assert_refused(&ack, "scale to 64");
    assert!(
        error.contains("memory budget exceeded")
            && error.contains("--memory-budget-mib")
            && error.contains("64 instances"),
        "{error}"
    );

    // A second actor whose warm set does not fit beside the first: its start fails, evented.
    let other = signed_echo(ActorSpec {
        marker: 2,
        ..ActorSpec::default()
    });
    let path = lab.dir.path().join("other.wasm");
    std::fs::write(&path, &other.bytes).expect("write actor");
    let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 16, "host_id": lab.host.id });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.cmd("la"), body.to_string().as_bytes()).await,
        "la other",
    );
    let failed = expect_event(
        &mut lab.events,
        "actors_start_failed",
        EVENT_TIMEOUT,
        "la past the budget",
    )
    .await;
    assert_eq!(failed["data"]["public_key"], other.key.as_str(), "{failed}");
    let reason = failed["data"]["error"].as_str().unwrap_or_default();
    assert!(reason.contains("memory budget exceeded"), "{failed}");

    // The host serves on with what it runs; the refused actor runs nowhere.
    for i in 0..20u8 {
        assert_eq!(lab.call(&echo.key, "Echo", &[i]).await, Ok(vec![i]));
    }
    let inventory = request_json(&lab.nc, &lab.host.ctl(&format!("get.{}.inv", lab.host.id)), b"").await;
    let actors = inventory["actors"].as_array().cloned().unwrap_or_default();
    assert_eq!(actors.len(), 1, "{inventory}");
    assert_eq!(actors[0]["id"], echo.key.as_str(), "{inventory}");
    assert!(lab.host.try_exit_status().is_none(), "the host is still running");
    // The metrics show the budget and what is held of it: 7 instances of one page, on 2
    // shards 4 each (8 pages), or more while a call runs on an instance made on demand.
    let scrape = crate::metrics::scrape(&metrics);
    let gauge = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .and_then(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => Some(v),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} in the scrape"))
    };
    assert_eq!(gauge("shardhost_memory_budget_bytes"), f64::from(1u32 << 20));
    let held = gauge("shardhost_actor_linear_memory_bytes");
    assert!((8.0 * 65_536.0..=f64::from(1u32 << 20)).contains(&held), "{held}");
}
