//! The policy service (`--policy-topic`), the 0.82 protocol against a real responder on NATS:
//! starts and invocations permitted, an invocation denied with the service's message, a start
//! denied, a service that never answers and one that answers garbage (both: denied, failing
//! closed), a changed decision announced on the changes topic taking effect for the next call,
//! and the exact fields the service is sent.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::policy::{Answer, PolicyService};
use crate::support::rpc::{Entity, Lab, EVENT_TIMEOUT};
use crate::support::{
    eventually, expect_event, request_json, signed_echo, unique_lattice, ActorSpec, HostOptions, Nats,
};

const TOPIC: &str = "test.policy";
const CHANGES: &str = "test.policy.changes";

/// A host asking `TOPIC` (timeout `timeout_ms`), with the responder started first.
pub(crate) async fn policy_lab(
    tag: &str,
    timeout_ms: &str,
    decide: impl Fn(&Value) -> Answer + Send + 'static,
) -> (Lab, PolicyService) {
    let nats = Nats::start();
    let service = PolicyService::start(&nats.client().await, TOPIC, decide).await;
    let options = HostOptions::new(&unique_lattice(tag))
        .arg("--rpc-timeout-ms", "3000")
        .arg("--policy-topic", TOPIC)
        .arg("--policy-changes-topic", CHANGES)
        .arg("--policy-timeout-ms", timeout_ms)
        .arg("--label", "zone=edge-7");
    let lab = Lab::start_on(nats, options, tempfile::tempdir().expect("tempdir")).await;
    (lab, service)
}

/// Ask for `actor` to start; the `actor_start_failed` event's error.
async fn start_refused(lab: &mut Lab, name: &str, actor: &crate::support::SignedActor) -> String {
    let path = lab.dir.path().join(name);
    std::fs::write(&path, &actor.bytes).expect("write actor");
    let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 1, "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("la"), body.to_string().as_bytes()).await;
    assert_eq!(ack["accepted"], true, "{ack}");
    let event = expect_event(&mut lab.events, "actor_start_failed", EVENT_TIMEOUT, name).await;
    event["data"]["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn permitted_starts_and_invocations_run_and_the_service_sees_the_0_82_fields() {
    let (mut lab, service) = policy_lab("polallow", "1000", |_| Answer::Permit).await;
    let echo = signed_echo(ActorSpec::default());
    let caller = signed_echo(ActorSpec {
        marker: 2,
        ..ActorSpec::default()
    });
    lab.start("echo.wasm", &echo, 2).await;
    lab.start("caller.wasm", &caller, 1).await;
    // The caller's claims reach the host through the lattice bucket.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..20u32 {
        let payload = format!("call-{i}").into_bytes();
        let reply = lab.call_from(
            Entity::actor(&caller.key),
            &echo.key,
            "HttpServer.HandleRequest",
            &payload,
        );
        assert_eq!(reply.await.expect("permitted and served"), payload);
    }
    let starts = service.requests_for("start_actor");
    assert_eq!(starts.len(), 2, "one per actor: {starts:?}");
    let start = starts
        .iter()
        .find(|r| r["target"]["publicKey"] == echo.key.as_str())
        .expect("echo's start");
    assert_eq!(
        start["source"],
        json!({"publicKey": null, "contractId": null, "linkName": null, "capabilities": [], "issuer": null,
               "issuedOn": null, "expiresAt": null, "expired": false})
    );
    assert!(
        start["target"]["issuer"].as_str().is_some_and(|i| i.starts_with('A')),
        "{start}"
    );
    assert_eq!(start["target"]["contractId"], Value::Null);
    assert_eq!(start["host"]["publicKey"], lab.host.id.as_str());
    assert_eq!(start["host"]["latticeId"], lab.host.lattice.as_str());
    assert_eq!(start["host"]["labels"]["zone"], "edge-7");
    assert!(
        start["host"]["clusterIssuers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{start}"
    );
    assert!(start["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    let invocations = service.requests_for("perform_invocation");
    assert_eq!(
        invocations.len(),
        1,
        "decided once, then from the shards' tables: {invocations:?}"
    );
    let source = &invocations[0]["source"];
    assert_eq!(source["publicKey"], caller.key.as_str());
    assert_eq!(source["capabilities"], json!(["wasmcloud:httpserver"]));
    assert!(
        source["issuer"].as_str().is_some_and(|i| i.starts_with('A')),
        "{source}"
    );
    assert!(
        source["issuedOn"].as_str().is_some_and(|t| t.parse::<u64>().is_ok()),
        "{source}"
    );
    assert_eq!(
        (
            source["contractId"].clone(),
            source["linkName"].clone(),
            source["expired"].clone()
        ),
        (Value::Null, Value::Null, json!(false))
    );
    assert_eq!(invocations[0]["target"]["publicKey"], echo.key.as_str());
}

#[tokio::test]
async fn a_denied_invocation_is_answered_with_the_service_message_and_a_change_takes_effect() {
    let (mut lab, service) = policy_lab("poldeny", "1000", |request| {
        if request["action"] == "perform_invocation" && request["source"]["capabilities"] == json!([]) {
            Answer::Deny("callers without capabilities may not call")
        } else {
            Answer::Permit
        }
    })
    .await;
    let echo = signed_echo(ActorSpec::default());
    let bare = signed_echo(ActorSpec {
        marker: 3,
        caps: Vec::new(),
        ..ActorSpec::default()
    });
    let trusted = signed_echo(ActorSpec {
        marker: 4,
        ..ActorSpec::default()
    });
    lab.start("echo.wasm", &echo, 2).await;
    lab.start("bare.wasm", &bare, 1).await;
    lab.start("trusted.wasm", &trusted, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let error = lab
            .call_from(Entity::actor(&bare.key), &echo.key, "HttpServer.HandleRequest", b"x")
            .await
            .expect_err("denied");
        assert!(error.starts_with("Policy denied"), "{error}");
        assert!(error.contains("callers without capabilities may not call"), "{error}");
    }
    let ok = lab.call_from(Entity::actor(&trusted.key), &echo.key, "HttpServer.HandleRequest", b"y");
    assert_eq!(ok.await.expect("permitted"), b"y");
    // The service revokes the trusted caller's decision on the changes topic.
    let decided = service
        .requests_for("perform_invocation")
        .into_iter()
        .find(|r| r["source"]["publicKey"] == trusted.key.as_str())
        .expect("the trusted pair was asked");
    let change = json!({"requestId": decided["requestId"], "permitted": false, "message": "revoked at 12:00"});
    lab.nc
        .publish(CHANGES, change.to_string().into())
        .await
        .expect("publish the change");
    lab.nc.flush().await.expect("flush");
    let error = eventually(EVENT_TIMEOUT, "the change denies the next call", || async {
        lab.call_from(Entity::actor(&trusted.key), &echo.key, "HttpServer.HandleRequest", b"z")
            .await
            .err()
    })
    .await;
    assert!(
        error.starts_with("Policy denied") && error.contains("revoked at 12:00"),
        "{error}"
    );
    let asked = service.requests_for("perform_invocation").len();
    assert_eq!(asked, 2, "the change needed no new request");
}

#[tokio::test]
async fn a_denied_start_emits_actor_start_failed_with_the_reason() {
    let (mut lab, _service) = policy_lab("polstart", "1000", |request| {
        if request["action"] == "start_actor" {
            Answer::Deny("unsigned vendors are not welcome")
        } else {
            Answer::Permit
        }
    })
    .await;
    let echo = signed_echo(ActorSpec::default());
    let error = start_refused(&mut lab, "echo.wasm", &echo).await;
    assert!(error.starts_with("Policy denied request to start actor"), "{error}");
    assert!(error.contains("unsigned vendors are not welcome"), "{error}");
    let asked = lab
        .nc
        .request(lab.subject(&echo.key), bytes::Bytes::from_static(b"x"))
        .await;
    assert!(
        asked.is_err(),
        "the denied actor is not running: nobody answers on its subject"
    );
}

#[tokio::test]
async fn a_silent_or_garbled_service_denies_and_is_asked_again() {
    for (tag, answer) in [("polsilent", "silent"), ("polgarbage", "garbage")] {
        let (mut lab, service) = policy_lab(tag, "300", move |_| {
            if answer == "silent" {
                Answer::Silent
            } else {
                Answer::Garbage
            }
        })
        .await;
        let echo = signed_echo(ActorSpec::default());
        let error = start_refused(&mut lab, "echo.wasm", &echo).await;
        assert!(error.starts_with("Policy denied request to start actor"), "{error}");
        let why = if answer == "silent" {
            "did not answer within 300 ms"
        } else {
            "is not a decision"
        };
        assert!(error.contains(why), "{tag}: {error}");
        // Not cached: a second start asks again (and is denied again).
        let error = start_refused(&mut lab, "echo2.wasm", &echo).await;
        assert!(error.contains(why), "{tag}: {error}");
        assert_eq!(service.requests_for("start_actor").len(), 2, "{tag}: asked again");
    }
}

#[tokio::test]
async fn an_invocation_is_denied_when_the_service_does_not_answer_it() {
    let (mut lab, _service) = policy_lab("polinvsilent", "300", |request| {
        if request["action"] == "perform_invocation" {
            Answer::Silent
        } else {
            Answer::Permit
        }
    })
    .await;
    let echo = signed_echo(ActorSpec::default());
    let caller = signed_echo(ActorSpec {
        marker: 5,
        ..ActorSpec::default()
    });
    lab.start("echo.wasm", &echo, 1).await;
    lab.start("caller.wasm", &caller, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let error = lab
        .call_from(Entity::actor(&caller.key), &echo.key, "HttpServer.HandleRequest", b"x")
        .await
        .expect_err("denied");
    assert!(
        error.starts_with("Policy denied") && error.contains("did not answer within 300 ms"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered after the policy timeout, not the caller's"
    );
    // An origin whose claims the host does not know is denied (0.82 fails such an invocation).
    let stranger = Entity::actor(&nkeys::KeyPair::new_module().public_key());
    let error = lab
        .call_from(stranger, &echo.key, "HttpServer.HandleRequest", b"x")
        .await
        .expect_err("denied");
    assert!(
        error.starts_with("Policy denied") && error.contains("unknown"),
        "{error}"
    );
}

#[tokio::test]
async fn a_denied_provider_start_emits_provider_start_failed_with_the_reason() {
    let (mut lab, service) = policy_lab("polprov", "1000", |request| {
        if request["action"] == "start_provider" {
            Answer::Deny("no keyvalue providers at the edge")
        } else {
            Answer::Permit
        }
    })
    .await;
    let par = crate::support::provider::make_par(lab.dir.path(), "kv.par", false);
    let reference = crate::providers::file_ref(&par.path);
    let ack = crate::providers::launch(&lab, &reference, "default", "").await;
    assert_eq!(ack["accepted"], true, "{ack}");
    let failed = expect_event(&mut lab.events, "provider_start_failed", EVENT_TIMEOUT, "denied").await;
    let error = failed["data"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Policy denied request to start provider"), "{failed}");
    assert!(error.contains("no keyvalue providers at the edge"), "{failed}");
    let request = &service.requests_for("start_provider")[0];
    assert_eq!(request["target"]["publicKey"], par.key.as_str());
    assert_eq!(request["target"]["contractId"], "wasmcloud:keyvalue");
    assert_eq!(
        request["target"]["linkName"],
        Value::Null,
        "0.82 sends none: claims carry no link name"
    );
}
