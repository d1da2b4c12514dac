//! Invocation spans, built on the shard: a server span for every invocation the shard serves
//! (parented on the caller's `traceContext` when it has one) and a client span for every
//! outbound `__host_call`, whose `traceparent` goes into the outbound invocation.
//!
//! With telemetry off the shard has no [`ShardTracer`] and does no tracing work; it still
//! carries a caller's valid `traceContext` into the guest's outbound calls unchanged (W3C's
//! rule for a participant that does not trace), so a trace is not split at this host.
//!
//! Ids come from a per-shard xorshift generator (seeded from the OS): no shared state, no
//! syscall per span. Finished spans go to the shard's own batch processor
//! (`telemetry::ShardSpans`).

use std::borrow::Cow;
use std::cell::Cell;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::telemetry::{span_context, ShardSpans};
use crate::wire::invocation::TraceContextRef;
use crate::wire::nats::parse_headers;
use crate::wire::trace::{extract, CallTrace, TraceParent, FLAG_SAMPLED};

/// The trace an invocation runs in, from its arrival to its reply.
#[derive(Debug, Clone)]
pub(crate) struct InboundTrace {
    /// What the guest's outbound calls are parented on: our server span, or (telemetry off)
    /// the caller's span, passed through.
    pub(crate) call: CallTrace,
    /// Set when this shard records the server span.
    recording: Option<Recording>,
}

#[derive(Debug, Clone, Copy)]
struct Recording {
    /// The caller's span (remote), or `None` for a root span.
    parent: Option<[u8; 8]>,
    started: SystemTime,
}

impl InboundTrace {
    /// The caller's trace, passed through unchanged (telemetry off).
    pub(crate) fn passthrough(call: CallTrace) -> InboundTrace {
        InboundTrace { call, recording: None }
    }
}

/// The caller's trace: the invocation's `traceContext`, or else (as 0.82 falls back for
/// providers built on older SDKs) the `traceparent`/`tracestate` NATS headers of its message.
/// `None` when neither has a valid `traceparent`.
pub(crate) fn caller_trace(context: &TraceContextRef<'_>, headers: Option<&[u8]>) -> Option<CallTrace> {
    if !context.is_empty() {
        return extract(context.iter()).ok().flatten();
    }
    let headers = parse_headers(headers?).ok()?;
    extract(headers.iter()).ok().flatten()
}

/// An outbound call's span.
pub(crate) struct ClientSpan {
    /// What the callee continues: this span, in the caller's trace.
    pub(crate) callee: CallTrace,
    recording: Option<(TraceParent, [u8; 8], SystemTime)>,
}

/// A shard's span builder and its pipeline.
pub(crate) struct ShardTracer {
    spans: ShardSpans,
    rng: Cell<u64>,
}

impl ShardTracer {
    pub(crate) fn new(spans: ShardSpans) -> ShardTracer {
        let mut seed = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        ShardTracer {
            spans,
            rng: Cell::new(u64::from_le_bytes(seed) | 1),
        }
    }

    /// xorshift64*: never zero, so ids are never the invalid all-zero id.
    fn next(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1
    }

    fn span_id(&self) -> [u8; 8] {
        self.next().to_be_bytes()
    }

    fn trace_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.next().to_be_bytes());
        id
    }

    /// Start the server span of an inbound invocation: a child of the caller's span when its
    /// `traceContext` has a valid `traceparent`, a new trace otherwise; sampled as the
    /// sampler says.
    pub(crate) fn start_server(&self, caller: Option<CallTrace>) -> InboundTrace {
        let parent = caller.as_ref().map(|c| c.parent);
        let trace_id = parent.map_or_else(|| self.trace_id(), |p| p.trace_id);
        let sampled = self.spans.sampler().sample(parent.as_ref(), &trace_id);
        let flags = parent.map_or(0, |p| p.flags & !FLAG_SAMPLED) | if sampled { FLAG_SAMPLED } else { 0 };
        let ours = TraceParent {
            trace_id,
            span_id: self.span_id(),
            flags,
        };
        InboundTrace {
            call: CallTrace {
                parent: ours,
                state: caller.and_then(|c| c.state),
            },
            recording: sampled.then(|| Recording {
                parent: parent.map(|p| p.span_id),
                started: SystemTime::now(),
            }),
        }
    }

    /// End a server span (a no-op when it is not sampled).
    pub(crate) fn end_server(&self, trace: &InboundTrace, operation: &str, actor: &str, error: Option<&str>) {
        let Some(recording) = trace.recording else { return };
        let attributes = vec![
            KeyValue::new("rpc.system", "wasmbus"),
            KeyValue::new("rpc.method", operation.to_string()),
            KeyValue::new("wasmcloud.actor.public_key", actor.to_string()),
        ];
        let span = self.span_data(Finished {
            context: &trace.call,
            span_id: trace.call.parent.span_id,
            parent: recording.parent,
            kind: SpanKind::Server,
            name: operation,
            started: recording.started,
            attributes,
            error,
        });
        self.spans.export(span);
    }

    /// Start the client span of an outbound call made while serving `call`.
    pub(crate) fn start_client(&self, call: &CallTrace) -> ClientSpan {
        let span_id = self.span_id();
        let callee = call.child(span_id);
        let recording = call.parent.sampled().then(|| (call.parent, span_id, SystemTime::now()));
        ClientSpan { callee, recording }
    }

    /// End a client span (a no-op when it is not sampled).
    pub(crate) fn end_client(&self, span: &ClientSpan, call: &CallTrace, what: ClientCall<'_>, error: Option<&str>) {
        let Some((parent, span_id, started)) = span.recording else {
            return;
        };
        let attributes = vec![
            KeyValue::new("rpc.system", "wasmbus"),
            KeyValue::new("rpc.method", what.operation.to_string()),
            KeyValue::new("rpc.service", what.namespace.to_string()),
            KeyValue::new("wasmcloud.link_name", what.binding.to_string()),
            KeyValue::new("wasmcloud.target.public_key", what.target.to_string()),
        ];
        let span = self.span_data(Finished {
            context: call,
            span_id,
            parent: Some(parent.span_id),
            kind: SpanKind::Client,
            name: what.operation,
            started,
            attributes,
            error,
        });
        self.spans.export(span);
    }

    fn span_data(&self, done: Finished<'_>) -> SpanData {
        let ours = done.context.parent.with_span(done.span_id);
        let span_context = span_context(&ours, done.context.state.as_deref(), false);
        let remote_parent = done.kind == SpanKind::Server && done.parent.is_some();
        SpanData {
            span_context,
            parent_span_id: done.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: remote_parent,
            span_kind: done.kind,
            name: Cow::Owned(done.name.to_string()),
            start_time: done.started,
            end_time: SystemTime::now(),
            attributes: done.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: match done.error {
                Some(error) => Status::error(error.to_string()),
                None => Status::Unset,
            },
            instrumentation_scope: self.spans.scope().clone(),
        }
    }

    /// Export what is queued (at shard stop).
    pub(crate) fn shutdown(&self) {
        self.spans.shutdown();
    }
}

/// What an outbound call went to, for its span's name and attributes.
pub(crate) struct ClientCall<'a> {
    pub(crate) binding: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) target: &'a str,
}

struct Finished<'a> {
    context: &'a CallTrace,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    name: &'a str,
    started: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<&'a str>,
}
