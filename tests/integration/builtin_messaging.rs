//! The built-in messaging provider (issue 20, item 2): `lp wasmcloud+builtin://messaging-nats`
//! starts it with no process; a link's `SUBSCRIPTION` makes the shards subscribe on their own
//! NATS connections and deliver to `MessageSubscriber.HandleMessage` on the receiving shard;
//! the actor's `Messaging.Publish` and `Messaging.Request` are served by its shard; a link to
//! another NATS gets connections of its own. The actor is
//! the real 0.x `echo_messaging` (it publishes each message's body back to its `replyTo`), so a
//! NATS request to a subscribed subject is a full round trip through the built-in.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use shardhost::builtin::identity::BuiltinProvider;

use crate::data_path::real_echo_messaging_actor;
use crate::support::rpc::{lab, Bin, Lab, EVENT_TIMEOUT, START_TIMEOUT};
use crate::support::{assert_accepted, assert_refused, eventually, expect_event, request_json, signed_caller};

async fn start_builtin(lab: &mut Lab) {
    let body =
        json!({ "provider_ref": "wasmcloud+builtin://messaging-nats", "link_name": "default", "host_id": lab.host.id });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.cmd("lp"), body.to_string().as_bytes()).await,
        "lp",
    );
    let started = expect_event(&mut lab.events, "provider_started", EVENT_TIMEOUT, "built-in messaging").await;
    assert_eq!(started["data"]["public_key"], BuiltinProvider::MessagingNats.key());
    assert_eq!(started["data"]["contract_id"], "wasmcloud:messaging");
}

async fn link(lab: &Lab, actor: &str, values: Value) -> Value {
    let link = json!({
        "actor_id": actor,
        "provider_id": BuiltinProvider::MessagingNats.key(),
        "link_name": "default",
        "contract_id": "wasmcloud:messaging",
        "values": values,
    });
    request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await
}

async fn start_echo_messaging(lab: &mut Lab) -> String {
    let module = std::fs::read(real_echo_messaging_actor()).expect("read fixture");
    let path = lab.dir.path().join("echo_messaging.wasm");
    std::fs::write(&path, &module).expect("copy fixture");
    let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 1, "host_id": lab.host.id });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.cmd("la"), body.to_string().as_bytes()).await,
        "la",
    );
    let started = expect_event(&mut lab.events, "actor_started", START_TIMEOUT, "echo_messaging").await;
    started["data"]["public_key"].as_str().expect("key").to_string()
}

#[tokio::test]
async fn a_subscribed_message_round_trips_through_a_real_actor_on_the_shards() {
    let mut lab = lab("builtin-msg").await;
    let actor = start_echo_messaging(&mut lab).await;
    start_builtin(&mut lab).await;
    let why = assert_refused(
        &link(&lab, &actor, json!({ "CLIENT_JWT": "eyJ.x" })).await,
        "a JWT alone",
    );
    assert!(why.contains("CLIENT_SEED"), "{why}");
    assert_accepted(
        &link(&lab, &actor, json!({ "SUBSCRIPTION": "demo.echo" })).await,
        "link put",
    );
    eventually(EVENT_TIMEOUT, "round trip through the built-in", || async {
        let reply = tokio::time::timeout(Duration::from_millis(500), lab.nc.request("demo.echo", "warm".into())).await;
        // echo_messaging answers "reply: " and the body.
        matches!(reply, Ok(Ok(m)) if &m.payload[..] == b"reply: warm").then_some(())
    })
    .await;
    for i in 0..20 {
        let body = format!("hello {i}");
        let reply = tokio::time::timeout(Duration::from_secs(5), lab.nc.request("demo.echo", body.clone().into()))
            .await
            .expect("reply in time")
            .expect("reply");
        assert_eq!(reply.payload, format!("reply: {body}").as_bytes());
    }
    let sums = lab
        .shard_sums(&["messages_delivered", "messages_published", "calls_sent"], |s| {
            s[1] >= 21
        })
        .await;
    assert_eq!(sums[2], 0, "no invocation went through NATS: {sums:?}");
    // Delivered once per host: one shard of the host takes each message.
    assert!(sums[0] >= 21 && sums[0] <= sums[1] + 2, "{sums:?}");
}

#[tokio::test]
async fn an_actor_requests_through_the_builtin_and_gets_the_reply() {
    let mut lab = lab("builtin-req").await;
    let caller = signed_caller("default", "wasmcloud:messaging", "Messaging.Request");
    lab.start("caller.wasm", &caller, 1).await;
    start_builtin(&mut lab).await;
    assert_accepted(&link(&lab, &caller.key, json!({})).await, "link put");
    // A service answering on svc.time.
    let mut service = lab.nc.subscribe("svc.time").await.expect("subscribe");
    lab.nc.flush().await.expect("flush");
    let responder = lab.nc.clone();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            if let Some(reply) = msg.reply {
                let mut body = b"answer to ".to_vec();
                body.extend_from_slice(&msg.payload);
                let _ = responder.publish(reply, body.into()).await;
            }
        }
    });
    #[derive(Serialize)]
    struct RequestMessage<'a> {
        subject: &'a str,
        body: Bin<'a>,
        #[serde(rename = "timeoutMs")]
        timeout_ms: u32,
    }
    let request = rmp_serde::to_vec_named(&RequestMessage {
        subject: "svc.time",
        body: Bin(b"what time"),
        timeout_ms: 2_000,
    })
    .expect("encode");
    let reply = eventually(EVENT_TIMEOUT, "request through the built-in", || async {
        lab.call(&caller.key, "Caller.Call", &request).await.ok()
    })
    .await;
    // The ReplyMessage: the body, and (as the NATS provider answers) the inbox it came on.
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("answer to what time") && text.contains("_INBOX."),
        "{text}"
    );
    // Nobody on the subject: an error, not a hang.
    let nobody = rmp_serde::to_vec_named(&RequestMessage {
        subject: "svc.nobody",
        body: Bin(b"?"),
        timeout_ms: 500,
    })
    .expect("encode");
    let error = lab
        .call(&caller.key, "Caller.Call", &nobody)
        .await
        .expect_err("no responders");
    assert!(error.contains("no responders") || error.contains("timeout"), "{error}");
}

#[tokio::test]
async fn a_link_to_another_nats_gets_connections_of_its_own() {
    let mut lab = lab("builtin-other").await;
    // Another NATS in operator mode: the link's URI and its user credentials.
    let (other, _account, (jwt, seed)) = crate::provider_credentials::operator_mode_nats("");
    let other_nc = other.client().await;
    let actor = start_echo_messaging(&mut lab).await;
    start_builtin(&mut lab).await;
    let uri = format!("nats://127.0.0.1:{}", other.port);
    let values = json!({ "SUBSCRIPTION": "ext.echo", "URI": uri, "CLIENT_JWT": jwt, "CLIENT_SEED": seed });
    assert_accepted(&link(&lab, &actor, values).await, "link put");
    // Requests on the other server reach the actor, and its Publish answers there.
    eventually(EVENT_TIMEOUT, "round trip on the other NATS", || async {
        let reply = tokio::time::timeout(Duration::from_millis(500), other_nc.request("ext.echo", "warm".into())).await;
        matches!(reply, Ok(Ok(m)) if &m.payload[..] == b"reply: warm").then_some(())
    })
    .await;
    for i in 0..10 {
        let body = format!("elsewhere {i}");
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            other_nc.request("ext.echo", body.clone().into()),
        )
        .await
        .expect("reply in time")
        .expect("reply");
        assert_eq!(reply.payload, format!("reply: {body}").as_bytes());
    }
    // Nothing subscribes to the subject on the lattice's server.
    let lattice = tokio::time::timeout(Duration::from_secs(2), lab.nc.request("ext.echo", "x".into())).await;
    assert!(
        !matches!(lattice, Ok(Ok(_))),
        "the lattice's NATS must not serve ext.echo"
    );
    // A link delete closes the subscriptions (and the connection).
    let del = json!({ "actor_id": actor, "contract_id": "wasmcloud:messaging", "link_name": "default" });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.ctl("linkdefs.del"), del.to_string().as_bytes()).await,
        "del",
    );
    eventually(EVENT_TIMEOUT, "subscription gone from the other NATS", || async {
        let reply = tokio::time::timeout(Duration::from_millis(500), other_nc.request("ext.echo", "x".into())).await;
        (!matches!(reply, Ok(Ok(_)))).then_some(())
    })
    .await;
}
