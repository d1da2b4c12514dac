//! OpenTelemetry (issue 19, item 2): with `--otel-traces-exporter otlp` a caller's trace runs
//! through the host's spans into the actor's outbound calls (to another actor, to a provider)
//! and reaches a real OTLP/HTTP receiver; the control plane's spans and log records go there
//! too. Without telemetry the caller's trace context still reaches the callee unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::data_path::ProviderInvocation;
use crate::support::otlp::{OtlpReceiver, Span};
use crate::support::rpc::{invocation, outcome, traced_invocation, Entity, Lab};
use crate::support::{
    assert_accepted, request_json, signed_caller, signed_echo, unique_lattice, ActorSpec, HostOptions, Nats,
};

/// How long exported spans may take to arrive (the batch delay is set to 200 ms below).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(15);
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const HEADER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
/// OTLP span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

pub(crate) async fn traced_lab(tag: &str, receiver: Option<&OtlpReceiver>) -> Lab {
    let mut options = HostOptions::new(&unique_lattice(tag))
        .arg("--heartbeat-interval-ms", "500")
        .arg("--rpc-timeout-ms", "3000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200");
    if let Some(receiver) = receiver {
        options = options
            .arg("--otel-traces-exporter", "otlp")
            .arg("--otel-exporter-otlp-endpoint", &receiver.url);
    }
    Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await
}

/// What the fake provider saw of an invocation.
#[derive(Debug)]
struct Seen {
    operation: String,
    trace_context: BTreeMap<String, String>,
    /// The message's `traceparent` NATS header.
    header_traceparent: Option<String>,
}

/// A provider on the lattice (subscribed as one, answering as wasmbus-rpc does) linked to
/// `actor` as `wasmcloud:keyvalue` link `default`; returns what it was sent, one per call.
async fn fake_provider(lab: &Lab, actor: &str) -> tokio::sync::mpsc::UnboundedReceiver<Seen> {
    let provider = nkeys::KeyPair::new_service().public_key();
    let mut sub = lab
        .nc
        .subscribe(format!("wasmbus.rpc.{}.{provider}.default", lab.host.lattice))
        .await
        .expect("provider subscribes");
    lab.nc.flush().await.expect("flush");
    let link = json!({ "actor_id": actor, "provider_id": provider, "link_name": "default", "contract_id": "wasmcloud:keyvalue", "values": {} });
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await;
    assert_accepted(&ack, "linkdefs.put");
    let nc = lab.nc.clone();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let inv = ProviderInvocation::decode(&msg.payload);
            let body = inv.response(b"from-provider", 13);
            let seen = Seen {
                header_traceparent: msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("traceparent"))
                    .map(|v| v.as_str().to_string()),
                operation: inv.operation,
                trace_context: inv.trace_context,
            };
            if let Some(reply) = msg.reply {
                let _ = nc.publish(reply, body.into()).await;
            }
            if tx.send(seen).is_err() {
                break;
            }
        }
    });
    rx
}

/// Call `target` with the caller's `traceparent` (sampled or not) until the call succeeds
/// (links reach the shards a moment after the ack); returns the reply's `traceContext`.
async fn traced_call(lab: &Lab, target: &str, operation: &str, flags: &str) -> BTreeMap<String, String> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "traceContext", default)]
        trace_context: BTreeMap<String, String>,
    }
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}");
    let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
    for _ in 0..50 {
        let trace = [("traceparent", traceparent.as_str()), ("tracestate", "vendor=abc")];
        let (id, bytes) = traced_invocation(
            &lab.cluster,
            origin.clone(),
            Entity::actor(target),
            operation,
            b"hi",
            &trace,
        );
        let reply = lab.nc.request(lab.subject(target), bytes.into()).await.expect("reply");
        if outcome(&reply.payload, &id).is_ok() {
            let body = rmp_serde::from_slice::<Reply>(&reply.payload)
                .expect("reply")
                .trace_context;
            // A traced reply carries its context in NATS headers too, as 0.82's does.
            let header = reply
                .headers
                .as_ref()
                .and_then(|h| h.get("traceparent"))
                .map(|v| v.as_str().to_string());
            assert_eq!(header.as_ref(), body.get("traceparent"), "reply headers and body agree");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{operation} on {target} never succeeded");
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "{what}: exactly one span, got {found:#?}");
    found[0]
}

#[tokio::test]
async fn a_callers_trace_runs_through_actor_and_provider_calls() {
    let receiver = OtlpReceiver::start().await;
    let mut lab = traced_lab("otel", Some(&receiver)).await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    // Actor to actor: the caller names the echo actor by its key.
    let to_actor = signed_caller("", &echo.key, "HttpServer.HandleRequest");
    lab.start("to-actor.wasm", &to_actor, 1).await;
    let reply_trace = traced_call(&lab, &to_actor.key, "Caller.Go", "01").await;

    let spans = receiver
        .wait_spans("the actor-to-actor trace", EXPORT_TIMEOUT, |spans| {
            spans.iter().filter(|s| s.trace_id == CALLER_TRACE).count() >= 3
        })
        .await;
    let in_trace: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == CALLER_TRACE).collect();
    let served = one(&in_trace, "the caller's server span", |s| {
        s.name == "Caller.Go" && s.parent_span_id == CALLER_SPAN
    });
    assert_eq!(served.kind, SERVER);
    assert_eq!(served.service, "wasmcloud-host");
    assert_eq!(served.attributes["wasmcloud.actor.public_key"], to_actor.key);
    // The reply names the span that served it, as 0.82 does.
    assert_eq!(
        reply_trace["traceparent"],
        format!("00-{CALLER_TRACE}-{}-01", served.span_id)
    );
    assert_eq!(reply_trace["tracestate"], "vendor=abc");
    let call = one(&in_trace, "the outbound call's client span", |s| {
        s.kind == CLIENT && s.parent_span_id == served.span_id
    });
    assert_eq!(call.name, "HttpServer.HandleRequest");
    assert_eq!(call.attributes["wasmcloud.target.public_key"], echo.key);
    let callee = one(&in_trace, "the callee's server span", |s| {
        s.kind == SERVER && s.parent_span_id == call.span_id
    });
    assert_eq!(callee.name, "HttpServer.HandleRequest");
    assert_eq!(callee.attributes["wasmcloud.actor.public_key"], echo.key);

    // Actor to provider: the provider sees the trace in its invocation, parented on our client span.
    let to_provider = signed_caller("default", "wasmcloud:keyvalue", "KeyValue.Get");
    lab.start("to-provider.wasm", &to_provider, 1).await;
    let mut provider = fake_provider(&lab, &to_provider.key).await;
    traced_call(&lab, &to_provider.key, "Caller.Go", "01").await;
    let seen = provider.recv().await.expect("the provider was called");
    assert_eq!(seen.operation, "KeyValue.Get");
    let traceparent = seen
        .trace_context
        .get("traceparent")
        .expect("traceparent reaches the provider");
    assert_eq!(
        seen.header_traceparent.as_ref(),
        Some(traceparent),
        "and in the NATS headers"
    );
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", CALLER_TRACE, "01"),
        "{traceparent}"
    );
    assert_eq!(
        seen.trace_context.get("tracestate").map(String::as_str),
        Some("vendor=abc")
    );
    let spans = receiver
        .wait_spans("the provider call's client span", EXPORT_TIMEOUT, |spans| {
            spans.iter().any(|s| s.span_id == parts[2])
        })
        .await;
    let call = one(&spans, "the provider call", |s| s.span_id == parts[2]);
    assert_eq!((call.kind, call.name.as_str()), (CLIENT, "KeyValue.Get"));
    assert_eq!(call.attributes["rpc.service"], "wasmcloud:keyvalue");
    let parent = one(&spans, "its server span", |s| s.span_id == call.parent_span_id);
    assert_eq!(
        (parent.name.as_str(), parent.parent_span_id.as_str()),
        ("Caller.Go", CALLER_SPAN)
    );

    // An unsampled caller: nothing recorded, the decision still travels on.
    let before = receiver.spans().len();
    traced_call(&lab, &to_provider.key, "Caller.Go", "00").await;
    let seen = provider.recv().await.expect("the provider was called");
    let traceparent = &seen.trace_context["traceparent"];
    assert!(
        traceparent.starts_with(&format!("00-{CALLER_TRACE}-")) && traceparent.ends_with("-00"),
        "{traceparent}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let unsampled: Vec<Span> = receiver.spans()[before..]
        .iter()
        .filter(|s| s.trace_id == CALLER_TRACE)
        .cloned()
        .collect();
    assert!(
        unsampled.is_empty(),
        "an unsampled trace records nothing: {unsampled:#?}"
    );

    // The control plane's spans: the `la` command and the actor start under it.
    let spans = receiver
        .wait_spans("control-plane spans", EXPORT_TIMEOUT, |spans| {
            spans.iter().any(|s| s.name == "ctl cmd.la") && spans.iter().any(|s| s.name == "actor start")
        })
        .await;
    let start = spans.iter().find(|s| s.name == "actor start").expect("actor start");
    let parent = spans
        .iter()
        .find(|s| s.span_id == start.parent_span_id)
        .expect("actor start has its ctl span as parent");
    assert_eq!(parent.name, "ctl cmd.la");
    assert!(spans.iter().any(|s| s.name == "actor compile"), "compile spans");
    // Log records go to the same collector.
    let deadline = std::time::Instant::now() + EXPORT_TIMEOUT;
    while !receiver
        .logs()
        .iter()
        .any(|l| l.body.contains("starting") || l.body.contains("actor"))
    {
        assert!(std::time::Instant::now() < deadline, "no log records exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.logs().iter().all(|l| l.service == "wasmcloud-host"));
}

#[tokio::test]
async fn without_telemetry_the_callers_context_passes_through() {
    let mut lab = traced_lab("otel-off", None).await;
    let caller = signed_caller("default", "wasmcloud:keyvalue", "KeyValue.Get");
    lab.start("caller.wasm", &caller, 1).await;
    let mut provider = fake_provider(&lab, &caller.key).await;
    let reply_trace = traced_call(&lab, &caller.key, "Caller.Go", "01").await;
    assert!(reply_trace.is_empty(), "no span of ours to name: {reply_trace:?}");
    let seen = provider.recv().await.expect("the provider was called");
    assert_eq!(
        seen.trace_context.get("traceparent").map(String::as_str),
        Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01").as_str()),
        "the caller's context, unchanged"
    );
    assert_eq!(
        seen.trace_context.get("tracestate").map(String::as_str),
        Some("vendor=abc")
    );

    // No `traceContext` in the invocation: the NATS headers are read instead (0.82's fallback).
    let from_headers = format!("00-{HEADER_TRACE}-{CALLER_SPAN}-01");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", from_headers.as_str());
    let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
    let (id, bytes) = invocation(
        &lab.cluster,
        origin,
        Entity::actor(&caller.key),
        "Caller.Go",
        b"hi",
        b"hi",
    );
    let reply = lab
        .nc
        .request_with_headers(lab.subject(&caller.key), headers, bytes.into())
        .await
        .expect("reply");
    outcome(&reply.payload, &id).expect("served");
    let seen = provider.recv().await.expect("the provider was called");
    assert_eq!(seen.trace_context.get("traceparent"), Some(&from_headers));
}

/// A collector nobody listens on: the host keeps serving and says in its log that exports fail
/// (never silence).
#[tokio::test]
async fn an_unreachable_collector_is_logged_and_the_host_serves_on() {
    let closed = crate::support::free_port();
    let options = HostOptions::new(&unique_lattice("otel-down"))
        .arg("--otel-traces-exporter", "otlp")
        .arg("--otel-exporter-otlp-endpoint", &format!("http://127.0.0.1:{closed}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut lab = Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await;
    let echo = signed_echo(ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    assert_eq!(
        lab.call(&echo.key, "HttpServer.HandleRequest", b"up")
            .await
            .expect("served"),
        b"up"
    );
    let deadline = std::time::Instant::now() + EXPORT_TIMEOUT;
    while !lab.host.stderr().contains("ExportError") {
        assert!(
            std::time::Instant::now() < deadline,
            "no export error logged:\n{}",
            lab.host.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
