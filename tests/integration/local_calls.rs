//! Same-host calls (issue 20, item 3): an actor's call to an actor this host runs is served on
//! the calling shard — no NATS, no signing — with the lattice's checks (call alias, policy);
//! `--local-calls false` and calls to actors elsewhere go through NATS as before.

use std::time::Duration;

use serde_json::Value;

use crate::support::policy::Answer;
use crate::support::rpc::{lab, lab_with, Entity, Lab, EVENT_TIMEOUT};
use crate::support::{caller_actor_wat, eventually, signed_echo, signed_wat, ActorSpec};

/// An echo with call alias `test/echo` and a caller that forwards `Caller.Call` to it.
async fn echo_and_caller(lab: &mut Lab, by: &str) -> (String, String) {
    let echo = signed_echo(ActorSpec {
        call_alias: Some("test/echo".into()),
        ..Default::default()
    });
    lab.start("echo.wasm", &echo, 1).await;
    let target = if by == "alias" {
        "test/echo".to_string()
    } else {
        echo.key.clone()
    };
    let caller = signed_wat(&caller_actor_wat("", &target, "Echo.Echo"), ActorSpec::default());
    lab.start("caller.wasm", &caller, 1).await;
    (echo.key, caller.key)
}

#[tokio::test]
async fn calls_to_actors_of_this_host_are_served_on_the_calling_shard() {
    let mut lab = lab("local").await;
    let (_echo, caller) = echo_and_caller(&mut lab, "alias").await;
    // The alias comes from the echo's claims in the KV bucket: give the watch a moment.
    eventually(EVENT_TIMEOUT, "call by alias", || async {
        lab.call(&caller, "Caller.Call", b"warm-up").await.ok()
    })
    .await;
    for i in 0..20u32 {
        let payload = format!("local-{i}").into_bytes();
        assert_eq!(
            lab.call(&caller, "Caller.Call", &payload).await.expect("served"),
            payload
        );
    }
    let sums = lab.shard_sums(&["calls_local", "calls_sent"], |s| s[0] >= 21).await;
    assert_eq!(sums[1], 0, "no call went through NATS: {sums:?}");
}

#[tokio::test]
async fn with_local_calls_off_every_call_goes_through_the_lattice() {
    let mut lab = lab_with("nolocal", &[("--local-calls", "false")]).await;
    let (_echo, caller) = echo_and_caller(&mut lab, "key").await;
    for i in 0..5u32 {
        let payload = format!("remote-{i}").into_bytes();
        assert_eq!(
            lab.call(&caller, "Caller.Call", &payload).await.expect("served"),
            payload
        );
    }
    let sums = lab.shard_sums(&["calls_local", "calls_sent"], |s| s[1] >= 5).await;
    assert_eq!(sums[0], 0, "nothing served locally: {sums:?}");
}

#[tokio::test]
async fn a_call_to_an_actor_on_another_host_still_goes_through_nats() {
    let mut lab = lab("elsewhere").await;
    let remote = signed_echo(ActorSpec {
        marker: 7,
        ..Default::default()
    });
    let _second = lab.second_host_on(None, &remote, &[]).await;
    let caller = signed_wat(&caller_actor_wat("", &remote.key, "Echo.Echo"), ActorSpec::default());
    lab.start("caller.wasm", &caller, 1).await;
    assert_eq!(
        lab.call(&caller.key, "Caller.Call", b"far").await.expect("served"),
        b"far"
    );
    let sums = lab.shard_sums(&["calls_local", "calls_sent"], |s| s[1] >= 1).await;
    assert_eq!(sums[0], 0, "{sums:?}");
}

#[tokio::test]
async fn the_policy_verdict_applies_to_local_calls() {
    let echo = signed_echo(ActorSpec::default());
    let caller = signed_wat(&caller_actor_wat("", &echo.key, "Echo.Echo"), ActorSpec::default());
    let (denied_source, denied_target) = (caller.key.clone(), echo.key.clone());
    let (mut lab, service) = crate::policy::policy_lab("localpol", "1000", move |request: &Value| {
        let inner_call = request["action"] == "perform_invocation"
            && request["source"]["publicKey"] == denied_source.as_str()
            && request["target"]["publicKey"] == denied_target.as_str();
        if inner_call {
            Answer::Deny("no calls between actors here")
        } else {
            Answer::Permit
        }
    })
    .await;
    lab.start("echo.wasm", &echo, 1).await;
    lab.start("caller.wasm", &caller, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The outer call comes from an actor whose claims the host knows (the echo), so only the
    // caller's call to the echo is denied.
    for _ in 0..4 {
        let error = lab
            .call_from(Entity::actor(&echo.key), &caller.key, "Caller.Call", b"x")
            .await
            .expect_err("the inner call is denied");
        assert!(
            error.contains("Policy denied") && error.contains("no calls between actors here"),
            "{error}"
        );
    }
    // Asked once for the pair; the later calls were denied on the shards (locally).
    let asked: Vec<Value> = service
        .requests_for("perform_invocation")
        .into_iter()
        .filter(|r| r["source"]["publicKey"] == caller.key.as_str())
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    // Each of the four inner calls was either denied on the calling shard or (while its pair
    // was undecided there) sent through the lattice to be asked and held.
    let sums = lab
        .shard_sums(&["calls_local", "calls_sent"], |s| s[0] + s[1] >= 4)
        .await;
    assert!(
        sums[1] <= 2 && sums[0] >= 2,
        "at most the first (undecided) calls went through NATS: {sums:?}"
    );
}
