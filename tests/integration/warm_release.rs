//! Warm sets that follow the load (issue 9, memory for edge nodes): with
//! `--warm-release-secs`, a shard releases the warm instances its recent concurrency did not
//! need (keeping one per actor), grows back as calls need more, and the metrics show what each
//! shard holds: instances, their linear memory, their slots' virtual reservation.

use std::time::Duration;

use crate::metrics::{scrape, total};
use crate::support::rpc::lab_with;
use crate::support::{eventually, free_port, signed_wat, ActorSpec};

const SHARDS: f64 = 2.0;

#[tokio::test]
async fn idle_warm_instances_are_released_and_come_back_under_load() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut lab = lab_with(
        "warmrelease",
        &[("--warm-release-secs", "1"), ("--metrics-addr", &addr)],
    )
    .await;
    // An echo that spins a few milliseconds first, so calls of one burst overlap on a shard
    // (the plain echo returns before the next call of a batch starts: one instance is enough).
    let spin = include_str!("../../src/runtime/actors/echo.wat").replacen(
        "(local $payload i32)",
        "(local $payload i32) (local $i i32) (local.set $i (i32.const 3000000)) \
         (loop $spin (local.set $i (i32.sub (local.get $i) (i32.const 1))) \
         (br_if $spin (i32.gt_s (local.get $i) (i32.const 0))))",
        1,
    );
    let echo = signed_wat(&spin, ActorSpec::default());
    // Count 16: a warm set of 8 on each of the 2 shards, of which each makes 4 at the start.
    lab.start("echo.wasm", &echo, 16).await;

    // Unused, each shard keeps one after a release period or two.
    let quiet = eventually(Duration::from_secs(10), "idle instances released", || {
        let addr = addr.clone();
        async move {
            let s = scrape(&addr);
            (total(&s, "shardhost_shard_instances") == SHARDS).then_some(s)
        }
    })
    .await;
    assert_eq!(total(&quiet, "shardhost_shard_instances_released_idle_total"), 6.0);
    let per_slot = total(&quiet, "shardhost_shard_instance_reserved_bytes") / SHARDS;
    // A slot: 64 MiB of memory and its 2 MiB guard, a 1 MiB fiber stack and its guard page, a table.
    assert_eq!(per_slot, f64::from((66u32 << 20) + (1 << 20) + 4096 + 160_000));
    assert_eq!(
        total(&quiet, "shardhost_shard_instance_memory_bytes"),
        SHARDS * 65_536.0
    );

    // A burst of 32 at once: every call served; the shards make what they lack on demand and
    // keep it warm (up to the 8 each) for the next period, then release it again.
    let lab = std::sync::Arc::new(lab);
    let calls = (0..32u8).map(|i| {
        let lab = std::sync::Arc::clone(&lab);
        let key = echo.key.clone();
        async move { lab.call(&key, "Echo", &[i]).await.map(|r| (i, r)) }
    });
    for outcome in futures::future::join_all(calls).await {
        let (i, reply) = outcome.expect("every call of the burst is served");
        assert_eq!(reply, vec![i]);
    }
    let released = eventually(Duration::from_secs(10), "released again after the burst", || {
        let addr = addr.clone();
        async move {
            let s = scrape(&addr);
            let released = total(&s, "shardhost_shard_instances_released_idle_total");
            (released > 6.0 && total(&s, "shardhost_shard_instances") == SHARDS).then_some(released)
        }
    })
    .await;
    // What was released the second time had been made for the burst: at most 7 more per shard.
    assert!(released <= 6.0 + 14.0, "{released}");
    assert_eq!(lab.call(&echo.key, "Echo", b"again").await, Ok(b"again".to_vec()));
}
