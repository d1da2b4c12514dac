//! The sharded invocation data path against a real nats-server and the real host process:
//! invocations encoded with rmp-serde and signed with wascap's invocation claims (a third-party
//! implementation of PROTOCOL §2.3 and §3) served by the WAT echo actor on every shard; bad
//! invocations (forged, tampered, wrong target, garbage, missing capability) each answered
//! with the right error while the host keeps serving; actor → actor calls by key and by alias;
//! outbound calls to a fake provider that answers and to one that never does; a > 900 KiB
//! payload through the object store both ways; a NATS restart; and a live update under load
//! with zero failed invocations.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use shardhost::wire::response::decode_response;
use tokio::io::AsyncReadExt;

use crate::support::rpc::{
    invocation, invocation_with, lab, lab_with, outcome, reloadable_key, Bin, Entity, EVENT_TIMEOUT, REPLY_TIMEOUT,
    START_TIMEOUT,
};
use crate::support::{
    assert_accepted, caller_actor_wat, echo_actor_wat, eventually, expect_event, request_json, signed_caller,
    signed_echo, signed_wat, ActorSpec, Nats,
};

fn counter(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn third_party_signed_invocations_are_served_by_every_shard() {
    let mut lab = lab("dpserve").await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 2).await;
    // Requests in flight together, so that one read carries several (a batch).
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..64u32 {
        let payload = format!("payload-{i}").into_bytes();
        let lab = &lab;
        let key = echo.key.clone();
        pending.push(async move {
            (
                payload.clone(),
                lab.call(&key, "HttpServer.HandleRequest", &payload).await,
            )
        });
    }
    let mut served = 0;
    while let Some((payload, result)) = pending.next().await {
        assert_eq!(result.expect("echo served"), payload);
        served += 1;
    }
    assert_eq!(served, 64);
    // Both shards served some (NATS spreads the queue group over their connections).
    for shard in ["shard-0", "shard-1"] {
        let line = eventually(EVENT_TIMEOUT, &format!("{shard} counters"), || async {
            lab.shard_counters(shard).filter(|l| counter(l, "served") > 0)
        })
        .await;
        assert_eq!(counter(&line, "rejected"), 0, "{line}");
    }
    // Counters reach the log within a second or two; wait for the last ones.
    eventually(EVENT_TIMEOUT, "64 served in the shard counters", || async {
        let total: u64 = ["shard-0", "shard-1"]
            .iter()
            .filter_map(|s| lab.shard_counters(s))
            .map(|l| counter(&l, "served"))
            .sum();
        assert!(total <= 64, "served more than sent: {total}");
        (total == 64).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_invocations_are_answered_with_errors_and_the_host_keeps_serving() {
    let mut lab = lab("dpbad").await;
    let echo = signed_echo(ActorSpec::default());
    let other = signed_echo(ActorSpec {
        marker: 2,
        ..Default::default()
    });
    lab.start("echo.wasm", &echo, 1).await;
    let subject = lab.subject(&echo.key);
    let origin = || Entity::actor(&nkeys::KeyPair::new_module().public_key());
    let op = "HttpServer.HandleRequest";

    // Forged: signed by a cluster key the host does not trust.
    let forger = wascap::prelude::KeyPair::new_cluster();
    let (id, bytes) = invocation(&forger, origin(), Entity::actor(&echo.key), op, b"x", b"x");
    let error = outcome(&lab.send(&subject, bytes).await, &id).expect_err("forged");
    assert!(error.starts_with("Anti-forgery check failed"), "{error}");
    assert!(error.contains("trusted"), "{error}");

    // Tampered: the payload differs from what the hash covers.
    let (id, bytes) = invocation(&lab.cluster, origin(), Entity::actor(&echo.key), op, b"evil", b"good");
    let error = outcome(&lab.send(&subject, bytes).await, &id).expect_err("tampered");
    assert!(error.contains("hash"), "{error}");

    // A bad signature: a valid token with one signature character changed.
    let flip = |token: &mut String| {
        let at = token.len() - 10;
        let replacement = if &token[at..at + 1] == "A" { "B" } else { "A" };
        token.replace_range(at..at + 1, replacement);
    };
    let (id, bytes) = invocation_with(&lab.cluster, origin(), Entity::actor(&echo.key), op, b"x", b"x", flip);
    let error = outcome(&lab.send(&subject, bytes).await, &id).expect_err("bad signature");
    assert!(error.contains("signature"), "{error}");

    // Wrong target: signed for another actor, sent on this actor's subject.
    let (id, bytes) = invocation(&lab.cluster, origin(), Entity::actor(&other.key), op, b"x", b"x");
    let error = outcome(&lab.send(&subject, bytes).await, &id).expect_err("wrong target");
    assert!(error.contains("target"), "{error}");

    // Garbage bytes.
    let error = outcome(&lab.send(&subject, b"\xde\xad\xbe\xef garbage".to_vec()).await, "").expect_err("garbage");
    assert!(error.starts_with("Failed to deserialize invocation"), "{error}");

    // Missing capability: a keyvalue provider calling an actor that claims only httpserver.
    let provider = |contract: &str| Entity::provider(&nkeys::KeyPair::new_service().public_key(), contract, "default");
    let (id, bytes) = invocation(
        &lab.cluster,
        provider("wasmcloud:keyvalue"),
        Entity::actor(&echo.key),
        op,
        b"x",
        b"x",
    );
    let error = outcome(&lab.send(&subject, bytes).await, &id).expect_err("missing capability");
    assert!(error.contains("capability"), "{error}");

    // An httpserver provider is allowed, and the host still serves.
    let (id, bytes) = invocation(
        &lab.cluster,
        provider("wasmcloud:httpserver"),
        Entity::actor(&echo.key),
        op,
        b"ok",
        b"ok",
    );
    assert_eq!(outcome(&lab.send(&subject, bytes).await, &id).expect("served"), b"ok");

    // Replayed: the same signed bytes twice are served twice, as by wasmCloud's hosts (the hash
    // binds a token to origin, target, operation and payload, not to one delivery). The
    // `host_id` field names the sender's host; every invocation here carries a random one.
    let (id, bytes) = invocation(&lab.cluster, origin(), Entity::actor(&echo.key), op, b"again", b"again");
    for _ in 0..2 {
        assert_eq!(
            outcome(&lab.send(&subject, bytes.clone()).await, &id).expect("replay"),
            b"again"
        );
    }
    assert_eq!(
        lab.call(&echo.key, op, b"still here").await.expect("served"),
        b"still here"
    );
}

#[tokio::test]
async fn actors_call_actors_by_key_and_by_alias() {
    let mut lab = lab("dpa2a").await;
    let ponger = signed_echo(ActorSpec {
        call_alias: Some("test/ponger".into()),
        ..Default::default()
    });
    lab.start("ponger.wasm", &ponger, 1).await;
    let by_alias = signed_wat(&caller_actor_wat("", "test/ponger", "Ping.Ping"), ActorSpec::default());
    lab.start("by_alias.wasm", &by_alias, 1).await;
    let by_key = signed_wat(&caller_actor_wat("", &ponger.key, "Ping.Ping"), ActorSpec::default());
    lab.start("by_key.wasm", &by_key, 1).await;
    let nowhere = signed_wat(&caller_actor_wat("", "test/nobody", "Ping.Ping"), ActorSpec::default());
    lab.start("nowhere.wasm", &nowhere, 1).await;

    // The alias comes from the ponger's claims in the KV bucket: give the watch a moment.
    let via_alias = eventually(EVENT_TIMEOUT, "call by alias", || async {
        lab.call(&by_alias.key, "Caller.Call", b"ping-alias").await.ok()
    })
    .await;
    assert_eq!(via_alias, b"ping-alias");
    assert_eq!(
        lab.call(&by_key.key, "Caller.Call", b"ping-key")
            .await
            .expect("call by key"),
        b"ping-key"
    );
    let error = lab
        .call(&nowhere.key, "Caller.Call", b"x")
        .await
        .expect_err("no such alias");
    assert!(error.contains("Could not identify suitable target"), "{error}");
}

#[tokio::test]
async fn outbound_calls_reach_a_provider_and_time_out_without_one() {
    let mut lab = lab("dpprov").await;
    let provider_key = nkeys::KeyPair::new_service().public_key();
    let silent_key = nkeys::KeyPair::new_service().public_key();
    let spec = || ActorSpec {
        caps: vec!["wasmcloud:keyvalue".into(), "wasmcloud:httpserver".into()],
        ..Default::default()
    };
    let caller = signed_wat(
        &caller_actor_wat("default", "wasmcloud:keyvalue", "KeyValue.Get"),
        spec(),
    );
    let silent_caller = signed_wat(
        &caller_actor_wat("silent", "wasmcloud:keyvalue", "KeyValue.Get"),
        spec(),
    );
    let unlinked = signed_wat(&caller_actor_wat("other", "wasmcloud:keyvalue", "KeyValue.Get"), spec());
    lab.start("caller.wasm", &caller, 1).await;
    lab.start("silent.wasm", &silent_caller, 1).await;
    lab.start("unlinked.wasm", &unlinked, 1).await;

    // The fake provider: answers every invocation with "value:" + payload, after checking that
    // the invocation is signed by the host's cluster key for this provider.
    let mut provider_sub = lab
        .nc
        .queue_subscribe(
            format!("wasmbus.rpc.{}.{provider_key}.default", lab.host.lattice),
            "rpc".into(),
        )
        .await
        .expect("provider subscribes");
    // The silent provider subscribes and never answers.
    let _silent_sub = lab
        .nc
        .subscribe(format!("wasmbus.rpc.{}.{silent_key}.silent", lab.host.lattice))
        .await
        .expect("silent provider subscribes");
    lab.nc.flush().await.expect("flush");
    let cluster_public = lab.cluster.public_key();
    let responder_nc = lab.nc.clone();
    let responder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(msg) = provider_sub.next().await {
            let inv = ProviderInvocation::decode(&msg.payload);
            let claims = wascap::jwt::Claims::<wascap::jwt::Invocation>::decode(&inv.encoded_claims)
                .expect("wascap decodes the host's token");
            wascap::jwt::validate_token::<wascap::jwt::Invocation>(&inv.encoded_claims).expect("wascap validates it");
            assert_eq!(claims.issuer, cluster_public, "signed with the cluster key");
            let mut value = b"value:".to_vec();
            value.extend_from_slice(&inv.msg);
            let body = inv.response(&value, value.len() as u64);
            if let Some(reply) = msg.reply {
                responder_nc.publish(reply, body.into()).await.expect("reply");
            }
            seen.push((inv.operation, inv.origin));
            if seen.len() == 1 {
                return seen;
            }
        }
        seen
    });

    for (actor, provider, link) in [
        (&caller.key, &provider_key, "default"),
        (&silent_caller.key, &silent_key, "silent"),
    ] {
        let link = json!({ "actor_id": actor, "provider_id": provider, "link_name": link, "contract_id": "wasmcloud:keyvalue", "values": {} });
        let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await;
        assert_accepted(&ack, "linkdefs.put");
    }
    let value = eventually(EVENT_TIMEOUT, "linked call", || async {
        lab.call(&caller.key, "Caller.Call", b"k1").await.ok()
    })
    .await;
    assert_eq!(value, b"value:k1");
    let seen = tokio::time::timeout(EVENT_TIMEOUT, responder)
        .await
        .expect("responder")
        .expect("join");
    assert_eq!(seen[0].0, "KeyValue.Get");
    assert_eq!(seen[0].1["public_key"], caller.key.as_str());

    let started = Instant::now();
    let error = lab
        .call(&silent_caller.key, "Caller.Call", b"k2")
        .await
        .expect_err("silent provider");
    assert!(error.contains("timeout"), "{error}");
    assert!(
        started.elapsed() >= Duration::from_millis(1_400),
        "waited the rpc timeout"
    );

    let error = lab
        .call(&unlinked.key, "Caller.Call", b"k3")
        .await
        .expect_err("no link");
    assert!(error.contains("missing link definition"), "{error}");
}

/// serde's `Vec<u8>` wants a sequence; msgpack `bin` arrives as bytes.
mod serde_bytes_compat {
    use serde::de::{Deserializer, SeqAccess, Visitor};

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(BytesVisitor)
    }
}

/// What a fake provider reads of the host's invocation (wasmbus-rpc's fields).
#[derive(serde::Deserialize)]
pub(crate) struct ProviderInvocation {
    pub(crate) operation: String,
    #[serde(with = "serde_bytes_compat")]
    pub(crate) msg: Vec<u8>,
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) content_length: u64,
    pub(crate) encoded_claims: String,
    pub(crate) origin: serde_json::Value,
    #[serde(rename = "traceContext", default)]
    pub(crate) trace_context: std::collections::BTreeMap<String, String>,
}

impl ProviderInvocation {
    pub(crate) fn decode(payload: &[u8]) -> ProviderInvocation {
        rmp_serde::from_slice(payload).expect("the host sends an Invocation")
    }

    /// The provider's `InvocationResponse` to this invocation, as wasmbus-rpc encodes it.
    pub(crate) fn response(&self, msg: &[u8], content_length: u64) -> Vec<u8> {
        #[derive(Serialize)]
        struct Response<'a> {
            msg: Bin<'a>,
            invocation_id: &'a str,
            content_length: u64,
        }
        let response = Response {
            msg: Bin(msg),
            invocation_id: &self.id,
            content_length,
        };
        rmp_serde::to_vec_named(&response).expect("encode response")
    }
}

/// Read an object of the lattice's object store whole.
pub(crate) async fn read_object(store: &async_nats::jetstream::object_store::ObjectStore, key: &str) -> Vec<u8> {
    let mut object = store.get(key).await.expect("object exists");
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.expect("read object");
    bytes
}

#[tokio::test]
async fn payloads_over_900_kib_go_through_the_object_store_both_ways() {
    let mut lab = lab("dpchunk").await;
    let big_echo = echo_actor_wat(3).replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 40)");
    let echo = signed_wat(&big_echo, ActorSpec::default());
    lab.start("big.wasm", &echo, 1).await;

    let store = object_store(&lab.nc, &lab.host.lattice).await;
    let payload: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
    let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
    let (id, bytes) = invocation(
        &lab.cluster,
        origin,
        Entity::actor(&echo.key),
        "Big.Echo",
        &[],
        &payload,
    );
    store
        .put(id.as_str(), &mut payload.as_slice())
        .await
        .expect("put request object");
    let reply = lab.send(&lab.subject(&echo.key), bytes).await;
    let response = decode_response(&reply).expect("response");
    assert_eq!(response.error, None);
    assert!(response.msg.is_empty(), "the result is chunked too");
    assert_eq!(response.content_length, Some(payload.len() as u64));
    let result = read_object(&store, &format!("{id}-r")).await;
    assert!(result == payload, "round trip of {} bytes", payload.len());
    // The host deleted the request object after reading it.
    assert!(store.get(id.as_str()).await.is_err(), "request object deleted");
}

/// NATS down for 2 s, then back: the shards keep retrying and serve again. Prints the gap from
/// the restart to the first answered invocation (the issue-10 figure; measured, not asserted).
#[tokio::test]
async fn shards_serve_again_soon_after_a_two_second_nats_outage() {
    let mut lab = lab("dpoutage").await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    assert_eq!(lab.call(&echo.key, "X.Y", b"before").await.expect("before"), b"before");
    let port = lab.nats.port;
    lab.nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.nats = Nats::start_on(port);
    let back = Instant::now();
    lab.nc = lab.nats.client().await;
    let deadline = back + Duration::from_secs(20);
    loop {
        let reply = lab
            .try_call(&echo.key, "X.Y", b"after", Duration::from_millis(500))
            .await;
        if reply.as_deref() == Some(b"after".as_slice()) {
            break;
        }
        assert!(Instant::now() < deadline, "not served within 20 s of NATS coming back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "first answered invocation {:?} after nats-server was back",
        back.elapsed()
    );
}

#[tokio::test]
async fn shards_reconnect_and_serve_after_a_nats_restart() {
    let mut lab = lab("dprestart").await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    assert_eq!(lab.call(&echo.key, "X.Y", b"before").await.expect("before"), b"before");
    let port = lab.nats.port;
    lab.nats.kill();
    lab.nats = Nats::start_on(port);
    lab.nc = lab.nats.client().await;
    let value = eventually(Duration::from_secs(20), "served after restart", || {
        lab.try_call(&echo.key, "X.Y", b"after", Duration::from_secs(2))
    })
    .await;
    assert_eq!(value, b"after");
    let log = lab.host.stderr();
    assert!(log.contains("shard NATS connection restored"), "shards reconnected");
}

#[tokio::test]
async fn live_update_under_load_fails_no_invocation() {
    let mut lab = lab("dpupd").await;
    let subject_key = reloadable_key(wascap::prelude::KeyPair::new_module);
    let seed = subject_key.seed().expect("module seed");
    let v1 = signed_echo(ActorSpec {
        subject: Some(wascap::prelude::KeyPair::from_seed(&seed).expect("seed")),
        ..Default::default()
    });
    let v2 = signed_echo(ActorSpec {
        marker: 2,
        rev: 2,
        subject: Some(wascap::prelude::KeyPair::from_seed(&seed).expect("seed")),
        ..Default::default()
    });
    lab.start("v1.wasm", &v1, 2).await;
    let path = lab.dir.path().join("v2.wasm");
    std::fs::write(&path, &v2.bytes).expect("write v2");

    // Eight callers invoke back to back until the update is done and a bit after.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for worker in 0..8 {
        let nc = lab.nc.clone();
        let cluster = wascap::prelude::KeyPair::from_seed(&lab.cluster.seed().expect("seed")).expect("seed");
        let subject = lab.subject(&v1.key);
        let key = v1.key.clone();
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let payload = format!("w{worker}-{ok}").into_bytes();
                let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
                let (id, bytes) = invocation(&cluster, origin, Entity::actor(&key), "X.Y", &payload, &payload);
                match tokio::time::timeout(REPLY_TIMEOUT, nc.request(subject.clone(), bytes.into())).await {
                    Ok(Ok(reply)) => match outcome(&reply.payload, &id) {
                        Ok(msg) if msg == payload => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    },
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let body =
        json!({ "actor_id": v1.key, "new_actor_ref": format!("file://{}", path.display()), "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("upd"), body.to_string().as_bytes()).await;
    assert_accepted(&ack, "upd");
    expect_event(&mut lab.events, "actor_updated", START_TIMEOUT, "upd").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for caller in callers {
        let (ok, failed) = caller.await.expect("caller");
        assert!(failed.is_empty(), "failed invocations during the update: {failed:?}");
        total += ok;
    }
    // Debug builds verify a signature in milliseconds: a few dozen calls is real load here.
    assert!(total >= 16, "the update happened under load ({total} invocations)");
    let log = lab.host.stderr();
    assert!(log.contains("actor pool ready"), "pools rebuilt");
}

#[tokio::test]
async fn a_shard_at_its_inflight_bound_stops_taking_work_and_loses_none() {
    // One invocation at a time per shard (two shards); each call waits the whole rpc timeout
    // on a provider that never answers.
    let mut lab = lab_with("dpbound", &[("--shard-inflight-max", "1")]).await;
    let (caller, _silent) = lab.caller_of_a_silent_provider().await;
    eventually(EVENT_TIMEOUT, "link reached the shards", || async {
        lab.call(&caller.key, "Caller.Call", b"probe")
            .await
            .err()
            .filter(|e| e.contains("timeout"))
    })
    .await;

    // Eight at once: per shard one runs, one waits, the rest are answered "overloaded" at once.
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..8u8 {
        let lab = &lab;
        let key = caller.key.clone();
        pending.push(async move { lab.call(&key, "Caller.Call", &[i]).await });
    }
    let (mut timeouts, mut overloaded) = (0, 0);
    while let Some(result) = pending.next().await {
        let error = result.expect_err("the provider never answers");
        if error.contains("timeout") {
            timeouts += 1;
        } else {
            assert!(error.starts_with("Host overloaded"), "{error}");
            overloaded += 1;
        }
    }
    assert_eq!(timeouts + overloaded, 8, "every invocation answered");
    assert!(
        timeouts <= 4,
        "at most one running and one waiting per shard: {timeouts}"
    );
    assert!(overloaded >= 4, "{overloaded}");
    if timeouts > 2 {
        // Some shard ran a queued one after its first: at least two rounds.
        assert!(
            started.elapsed() >= Duration::from_millis(2_900),
            "{:?}",
            started.elapsed()
        );
    }
    let rejected = eventually(EVENT_TIMEOUT, "overloads counted", || async {
        let total: u64 = ["shard-0", "shard-1"]
            .iter()
            .filter_map(|s| lab.shard_counters(s))
            .map(|l| counter(&l, "rejected_overload"))
            .sum();
        (total == overloaded).then_some(total)
    })
    .await;
    assert_eq!(rejected, overloaded);
}

/// wascap's `echo_messaging_v0.9.0.wasm` fixture: a real wasmCloud 0.x actor (Rust,
/// wasmbus-rpc, signed by a pre-0.9 wascap with padded section sizes). Cargo unpacked it with
/// the wascap dev-dependency's sources.
pub(crate) fn real_echo_messaging_actor() -> std::path::PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registry = cargo_home.join("registry").join("src");
    for index in std::fs::read_dir(&registry).expect("cargo registry sources") {
        let index = index.expect("registry entry").path();
        for version in ["0.11.2", "0.11.1", "0.11.0"] {
            let path = index
                .join(format!("wascap-{version}"))
                .join("fixtures/echo_messaging_v0.9.0.wasm");
            if path.exists() {
                return path;
            }
        }
    }
    panic!("wascap 0.11's fixtures not found under {}", registry.display());
}

#[tokio::test]
async fn a_real_0x_actor_runs_and_calls_its_provider() {
    let mut lab = lab("dpreal").await;
    let module = std::fs::read(real_echo_messaging_actor()).expect("read fixture");
    let path = lab.dir.path().join("echo_messaging.wasm");
    std::fs::write(&path, &module).expect("copy fixture");
    let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 1, "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("la"), body.to_string().as_bytes()).await;
    assert_accepted(&ack, "la");
    let started = expect_event(&mut lab.events, "actor_started", START_TIMEOUT, "real actor").await;
    let actor = started["data"]["public_key"].as_str().expect("public key").to_string();
    assert_eq!(actor, "MDJ5BWS6JXSWOZL2ZENW2D4FBSHQ5ZMFGEGJB33TLKYKMXTLLAXINU36");

    // A fake messaging provider linked to it, answering Messaging.Publish.
    let provider = nkeys::KeyPair::new_service().public_key();
    let mut provider_sub = lab
        .nc
        .subscribe(format!("wasmbus.rpc.{}.{provider}.default", lab.host.lattice))
        .await
        .expect("provider subscribes");
    lab.nc.flush().await.expect("flush");
    let link = json!({ "actor_id": actor, "provider_id": provider, "link_name": "default", "contract_id": "wasmcloud:messaging", "values": {} });
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await;
    assert_accepted(&ack, "linkdefs.put");
    // The provider answers every Publish and passes on what it saw.
    let responder_nc = lab.nc.clone();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = provider_sub.next().await {
            let inv = ProviderInvocation::decode(&msg.payload);
            let body = inv.response(&[], 0);
            responder_nc
                .publish(msg.reply.expect("reply subject"), body.into())
                .await
                .expect("reply");
            if seen_tx.send((inv.operation, inv.msg)).is_err() {
                break;
            }
        }
    });

    // wasmcloud-interface-messaging's SubMessage (smithy names: `replyTo`).
    #[derive(Serialize)]
    struct SubMessage<'a> {
        subject: &'a str,
        #[serde(rename = "replyTo")]
        reply_to: Option<&'a str>,
        body: Bin<'a>,
    }
    let sub = rmp_serde::to_vec_named(&SubMessage {
        subject: "demo.echo",
        reply_to: Some("demo.reply"),
        body: Bin(b"hello from the lattice"),
    })
    .expect("encode SubMessage");
    let provider_origin = Entity::provider(
        &nkeys::KeyPair::new_service().public_key(),
        "wasmcloud:messaging",
        "default",
    );
    // echo-messaging logs a failed Publish ("sending reply: …") and still returns Ok, so a
    // message handled before the link reaches the shards succeeds without calling the
    // provider: send again until the provider sees the Publish.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let (operation, publish) = loop {
        assert!(
            Instant::now() < deadline,
            "the real actor did not call its provider within {EVENT_TIMEOUT:?}"
        );
        let (id, bytes) = invocation(
            &lab.cluster,
            provider_origin.clone(),
            Entity::actor(&actor),
            "MessageSubscriber.HandleMessage",
            &sub,
            &sub,
        );
        // An error reply is tried again too.
        let Ok(result) = outcome(&lab.send(&lab.subject(&actor), bytes).await, &id) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        assert!(result.is_empty(), "HandleMessage returns nothing");
        if let Ok(Some(seen)) = tokio::time::timeout(Duration::from_millis(500), seen.recv()).await {
            break seen;
        }
    };
    assert_eq!(operation, "Messaging.Publish");
    let text = String::from_utf8_lossy(&publish);
    assert!(
        text.contains("demo.reply") && text.contains("hello from the lattice"),
        "{text}"
    );
}

/// The lattice's object store bucket (named after the lattice), opened or created.
pub(crate) async fn object_store(
    nc: &async_nats::Client,
    lattice: &str,
) -> async_nats::jetstream::object_store::ObjectStore {
    let js = async_nats::jetstream::new(nc.clone());
    match js.get_object_store(lattice).await {
        Ok(store) => store,
        Err(_) => js
            .create_object_store(async_nats::jetstream::object_store::Config {
                bucket: lattice.to_string(),
                ..Default::default()
            })
            .await
            .expect("object store"),
    }
}

#[tokio::test]
async fn an_outbound_call_over_900_kib_is_chunked_both_ways() {
    let mut lab = lab("dpchunkout").await;
    let caller = signed_caller("default", "wasmcloud:blobstore", "Blob.Reverse");
    lab.start("caller.wasm", &caller, 1).await;
    let store = object_store(&lab.nc, &lab.host.lattice).await;
    let provider = nkeys::KeyPair::new_service().public_key();
    let mut provider_sub = lab
        .nc
        .subscribe(format!("wasmbus.rpc.{}.{provider}.default", lab.host.lattice))
        .await
        .expect("provider subscribes");
    lab.nc.flush().await.expect("flush");
    let link = json!({ "actor_id": caller.key, "provider_id": provider, "link_name": "default", "contract_id": "wasmcloud:blobstore", "values": {} });
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await;
    assert_accepted(&ack, "linkdefs.put");

    // The provider (as wasmbus-rpc does): dechunk the request from `{id}`, answer the reversed
    // bytes chunked under `{id}-r`.
    let responder_nc = lab.nc.clone();
    let responder_store = store.clone();
    let provider_task = tokio::spawn(async move {
        let msg = provider_sub.next().await.expect("the actor calls");
        let inv = ProviderInvocation::decode(&msg.payload);
        assert!(inv.msg.is_empty(), "the request came chunked");
        let request = read_object(&responder_store, &inv.id).await;
        assert_eq!(request.len() as u64, inv.content_length);
        let mut reversed = request.clone();
        reversed.reverse();
        responder_store
            .put(format!("{}-r", inv.id).as_str(), &mut reversed.as_slice())
            .await
            .expect("put response object");
        let body = inv.response(&[], reversed.len() as u64);
        responder_nc
            .publish(msg.reply.expect("reply"), body.into())
            .await
            .expect("reply");
        request.len()
    });

    let payload: Vec<u8> = (0..1_100_000u32).map(|i| (i % 241) as u8).collect();
    let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
    // Our request to the caller is chunked too, and so is its answer to us.
    let (id, bytes) = invocation(
        &lab.cluster,
        origin,
        Entity::actor(&caller.key),
        "Caller.Call",
        &[],
        &payload,
    );
    store
        .put(id.as_str(), &mut payload.as_slice())
        .await
        .expect("put request");
    let reply = eventually(EVENT_TIMEOUT, "the link reached the shards", || async {
        let reply = lab.send(&lab.subject(&caller.key), bytes.clone()).await;
        let response = decode_response(&reply).expect("response");
        if response.error.is_some_and(|e| e.contains("missing link definition")) {
            // Not linked yet: the request object was consumed; put it back and retry.
            store
                .put(id.as_str(), &mut payload.as_slice())
                .await
                .expect("put request again");
            return None;
        }
        Some(reply)
    })
    .await;
    let response = decode_response(&reply).expect("response");
    assert_eq!(response.error, None);
    assert_eq!(response.content_length, Some(payload.len() as u64));
    let result = read_object(&store, &format!("{id}-r")).await;
    let mut expected = payload.clone();
    expected.reverse();
    assert!(result == expected, "the provider's chunked answer came back whole");
    let seen = tokio::time::timeout(EVENT_TIMEOUT, provider_task)
        .await
        .expect("provider")
        .expect("join");
    assert_eq!(seen, payload.len());
}
