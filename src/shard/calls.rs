//! Outbound calls from guests (`__host_call` to providers and other actors, PROTOCOL §9.3–9.4)
//! over the shard's own NATS connection.
//!
//! Each shard subscribes once to its private inbox `_INBOX.{random}.*`; a call publishes a
//! signed `Invocation` with reply subject `{inbox}.{n}` and awaits the reply as a future, so
//! the guest's fiber is suspended while the shard keeps serving other invocations. The reply is
//! matched by `n`, checked (same `invocation_id`), dechunked if needed, and handed to the
//! guest; a call without a reply within `--rpc-timeout-ms` (plus 13 s when chunked, as
//! wasmbus-rpc does) fails with a timeout error, and a call nobody subscribes to fails at once
//! with "no responders" (NATS status 503).
//!
//! The guest side reaches the shard through [`ShardHostCalls`], a zero-sized [`HostCalls`]
//! that finds its shard in a thread-local: wasmtime requires `Send + Sync` host state, and a
//! thread-local keeps the shard's `Rc`s out of the stores (TOOLCHAIN.md).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::auth::antiforgery::{encode_signed_invocation, Outbound};
use crate::builtin::identity::BuiltinProvider;
use crate::plane::CHUNK_THRESHOLD_BYTES;
use crate::runtime::{HostCallFuture, HostCalls};
use crate::wire::invocation::EntityRef;
use crate::wire::nats::parse_headers;
use crate::wire::response::decode_response;
use crate::wire::trace::{CallTrace, TRACEPARENT_CHARS};

use super::conn::Inbound;
use super::core::ShardCore;
use super::local::{run_here, Local, LocalCall, Origin, Outcome, Refusal};
use super::send::AssertSend;
use super::trace::ClientCall;

/// Extra time a chunked call gets (wasmbus-rpc's `CHUNK_RPC_EXTRA_TIME`).
pub const CHUNK_RPC_EXTRA_MS: u64 = 13_000;
/// Length of an actor public key (`M…`).
const ACTOR_KEY_CHARS: usize = 56;

thread_local! {
    /// The shard running on this thread, for [`ShardHostCalls`].
    static SHARD: RefCell<Option<Rc<ShardCore>>> = const { RefCell::new(None) };
}

/// Make `core` the shard of this thread (at shard start) or clear it (`None`, at stop).
pub(crate) fn install(core: Option<Rc<ShardCore>>) {
    SHARD.with(|shard| *shard.borrow_mut() = core);
}

/// Where a guest's call goes (§9.4 steps 2–5).
pub(crate) struct Target {
    public_key: String,
    link_name: String,
    contract_id: String,
    subject: String,
}

impl Target {
    /// Actor `actor` on the lattice.
    pub(crate) fn actor(core: &ShardCore, actor: &str) -> Target {
        Target {
            public_key: actor.to_string(),
            link_name: String::new(),
            contract_id: String::new(),
            subject: format!("wasmbus.rpc.{}.{actor}", core.config().lattice),
        }
    }
}

fn resolve(core: &ShardCore, origin: &str, binding: &str, namespace: &str) -> Result<Target, String> {
    let routing = core.routing();
    let lattice = &core.config().lattice;
    if let Some(provider) = routing.provider_for(origin, namespace, binding) {
        if !routing.has_capability(origin, namespace) {
            return Err(format!(
                "actor {origin} does not have the capability claim {namespace} needed to call it"
            ));
        }
        return Ok(Target {
            public_key: provider.to_string(),
            link_name: binding.to_string(),
            contract_id: namespace.to_string(),
            subject: format!("wasmbus.rpc.{lattice}.{provider}.{binding}"),
        });
    }
    let actor = if namespace.len() == ACTOR_KEY_CHARS && namespace.starts_with('M') {
        Some(namespace)
    } else {
        routing.aliases.get(namespace).map(String::as_str)
    };
    match actor {
        Some(actor) => Ok(Target::actor(core, actor)),
        None => Err(format!(
            "Could not identify suitable target: missing link definition for {namespace} (link name {binding:?}) on lattice {lattice}"
        )),
    }
}

/// One outbound call, in a client span when telemetry is on (parented on `trace`), with the
/// caller's trace context passed through when it is off.
pub(crate) async fn host_call(
    core: Rc<ShardCore>,
    origin: &str,
    trace: Option<CallTrace>,
    guest: GuestCall<'_>,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let target = resolve(&core, origin, guest.binding, guest.namespace)?;
    let (Some(trace), Some(tracer)) = (trace.as_ref(), core.tracer()) else {
        // Not tracing: the callee continues the caller's span (W3C pass-through), if any.
        return call(&core, origin, &target, guest.operation, payload, trace.as_ref()).await;
    };
    let span = tracer.start_client(trace);
    let result = call(&core, origin, &target, guest.operation, payload, Some(&span.callee)).await;
    let what = ClientCall {
        binding: guest.binding,
        namespace: guest.namespace,
        operation: guest.operation,
        target: &target.public_key,
    };
    tracer.end_client(&span, trace, what, result.as_ref().err().map(String::as_str));
    result
}

/// A resolved call: served on this shard when the target is an actor of this host
/// (`super::local`), else signed and sent through the lattice; `callee` is the trace context
/// the callee continues.
async fn call(
    core: &Rc<ShardCore>,
    origin: &str,
    target: &Target,
    operation: &str,
    payload: Vec<u8>,
    callee: Option<&CallTrace>,
) -> Result<Vec<u8>, String> {
    if target.public_key == BuiltinProvider::MessagingNats.key() {
        // The built-in messaging provider: served on this shard, no invocation.
        return super::publish::serve_call(core, origin, &target.link_name, operation, &payload).await;
    }
    let here = LocalCall {
        origin,
        actor: &target.public_key,
        link_name: &target.link_name,
        contract_id: &target.contract_id,
        operation,
    };
    let payload = match super::local::serve(core, here, payload, callee).await {
        Local::Served(result) => return result,
        Local::NotHere(payload) => payload,
    };
    let mut traceparent = [0u8; TRACEPARENT_CHARS];
    let (pairs, len) = callee.map_or(([("", ""); 2], 0), |c| c.pairs(&mut traceparent));
    let origin = EntityRef {
        public_key: origin,
        link_name: "",
        contract_id: "",
    };
    let timeout = core.config().rpc_timeout;
    send_call(core, origin, target, operation, payload, &pairs[..len], timeout).await
}

/// A request a built-in provider hands to an actor (an HTTP request, a subscribed message).
pub(crate) struct BuiltinRequest<'a> {
    pub(crate) builtin: BuiltinProvider,
    pub(crate) link_name: &'a str,
    pub(crate) actor: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) trace: Option<&'a CallTrace>,
    /// How long a request sent through the lattice may wait for its reply.
    pub(crate) timeout: Duration,
}

/// How a built-in provider's request ended.
pub(crate) enum Delivery {
    /// Run on this shard: the guest's result.
    Ran(Result<Vec<u8>, String>),
    /// Not run, with the reason.
    Refused(Refusal, String),
    /// Sent through the lattice (the actor runs elsewhere, or its policy pair waits for a
    /// decision): the reply.
    Forwarded(Result<Vec<u8>, String>),
}

/// Deliver a built-in provider's request: the actor's claims must grant the built-in's
/// contract; then it runs on this shard ([`run_here`]: policy, turn, warm instance) or goes
/// to the lattice as a signed invocation from the built-in's identity, as the provider sends it.
pub(crate) async fn from_builtin(core: &Rc<ShardCore>, request: BuiltinRequest<'_>, payload: Vec<u8>) -> Delivery {
    let (key, contract) = (request.builtin.key(), request.builtin.contract_id());
    if !core.routing().has_capability(request.actor, contract) {
        let text = format!("actor {} does not have the capability claim {contract}", request.actor);
        return Delivery::Refused(Refusal::Capability, text);
    }
    let origin = Origin {
        key,
        link_name: request.link_name,
    };
    let payload = match run_here(core, origin, request.actor, request.operation, payload, request.trace).await {
        Outcome::Ran(result) => return Delivery::Ran(result),
        Outcome::Refused(refusal, text) => return Delivery::Refused(refusal, text),
        Outcome::NotHere(payload) => payload,
    };
    let origin = EntityRef {
        public_key: key,
        link_name: request.link_name,
        contract_id: contract,
    };
    let mut traceparent = [0u8; TRACEPARENT_CHARS];
    let (pairs, len) = request.trace.map_or(([("", ""); 2], 0), |c| c.pairs(&mut traceparent));
    let target = Target::actor(core, request.actor);
    let result = send_call(
        core,
        origin,
        &target,
        request.operation,
        payload,
        &pairs[..len],
        request.timeout,
    )
    .await;
    Delivery::Forwarded(result)
}

/// The guest's strings of a `__host_call`.
pub(crate) struct GuestCall<'a> {
    pub(crate) binding: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) operation: &'a str,
}

/// Sign, send (chunked if large) and await (at most `timeout`) the reply of one resolved call
/// from `origin` (an actor, or a built-in provider forwarding a request).
pub(crate) async fn send_call(
    core: &Rc<ShardCore>,
    origin: EntityRef<'_>,
    target: &Target,
    operation: &str,
    payload: Vec<u8>,
    trace_context: &[(&str, &str)],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let target_entity = EntityRef {
        public_key: &target.public_key,
        link_name: &target.link_name,
        contract_id: &target.contract_id,
    };
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let chunked = payload.len() > CHUNK_THRESHOLD_BYTES;
    let payload = Bytes::from(payload);
    let call = Outbound {
        origin,
        target: target_entity,
        operation,
        payload: &payload,
        chunked,
        id: &id,
        host_id: &core.config().host_id,
        trace_context,
    };
    let wire_bytes = if chunked { 0 } else { payload.len() };
    let mut encoded = Vec::with_capacity(wire_bytes + 1024);
    encode_signed_invocation(&mut encoded, &core.config().cluster_key, &call, now)
        .map_err(|e| e.message().to_string())?;
    if chunked {
        // Stored before the invocation is published (the receiver fetches it by id).
        core.put_object(id.clone(), payload.clone())
            .await
            .map_err(|e| format!("cannot store the chunked request: {e}"))?;
    }
    let (reply_subject, token, reply) = core.calls().register();
    // The trace context travels in the invocation and, as 0.82 sends it, in NATS headers.
    let published = if trace_context.is_empty() {
        core.outbox().publish(&target.subject, Some(&reply_subject), &encoded)
    } else {
        core.outbox()
            .publish_headers(&target.subject, Some(&reply_subject), trace_context, &encoded)
    };
    if let Err(e) = published {
        core.calls().forget(token);
        core.bump(|s| s.calls_failed += 1);
        return Err(format!("cannot send the call to {}: {e}", target.subject));
    }
    core.bump(|s| s.calls_sent += 1);
    let mut timeout = timeout;
    if chunked {
        timeout += Duration::from_millis(CHUNK_RPC_EXTRA_MS);
    }
    let timer = super::rt::sleep(timeout);
    let reply = match futures::future::select(reply, timer).await {
        futures::future::Either::Left((Ok(reply), _)) => reply,
        futures::future::Either::Left((Err(_), _)) => {
            core.bump(|s| s.calls_failed += 1);
            return Err(format!(
                "host stopping: the call to {} for {operation} was cancelled at the drain timeout",
                target.subject
            ));
        }
        futures::future::Either::Right(_) => {
            core.calls().forget(token);
            core.bump(|s| s.calls_timed_out += 1);
            return Err(format!(
                "rpc timeout: no reply from {} for {operation} within {} ms",
                target.subject,
                timeout.as_millis()
            ));
        }
    };
    let result = read_reply(core, &reply, &id, &target.subject).await;
    if result.is_err() {
        core.bump(|s| s.calls_failed += 1);
    }
    result
}

/// Turn a reply into the guest's result: a 503 status is "no responders"; otherwise the
/// `InvocationResponse` must answer our id; its `error` is the call's error; a chunked result
/// is fetched from the object store.
async fn read_reply(core: &ShardCore, reply: &Inbound, id: &str, subject: &str) -> Result<Vec<u8>, String> {
    if let Some(headers) = reply.headers.as_deref() {
        if parse_headers(headers).is_ok_and(|h| h.is_no_responders()) {
            return Err(format!("no responders: nothing in the lattice serves {subject}"));
        }
    }
    let response = decode_response(&reply.payload).map_err(|e| format!("malformed reply from {subject}: {e}"))?;
    if response.invocation_id != id {
        return Err(format!(
            "reply from {subject} answers invocation {:?}, not {id:?}",
            response.invocation_id
        ));
    }
    if let Some(error) = response.error {
        return Err(error.to_string());
    }
    let content_length = response.content_length.unwrap_or(response.msg.len() as u64);
    if content_length > response.msg.len() as u64 {
        let full = core.take_object(format!("{id}-r")).await?;
        return Ok(full.to_vec());
    }
    Ok(response.msg.to_vec())
}

/// A guest's absence from the CPU while its outbound call is out (see `turns.rs`).
struct OffTurn<'a> {
    core: &'a ShardCore,
    stepped_off: bool,
}

impl<'a> OffTurn<'a> {
    fn new(core: &'a ShardCore) -> OffTurn<'a> {
        OffTurn {
            core,
            stepped_off: core.turns().step_off(),
        }
    }
}

impl Drop for OffTurn<'_> {
    fn drop(&mut self) {
        if self.stepped_off {
            self.core.turns().step_on();
        }
    }
}

/// The [`HostCalls`] of actors on a shard: forwards to the shard of the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardHostCalls;

impl HostCalls for ShardHostCalls {
    fn call<'a>(
        &'a self,
        origin_actor: &'a str,
        trace: Option<CallTrace>,
        binding: &'a str,
        namespace: &'a str,
        operation: &'a str,
        payload: Vec<u8>,
    ) -> HostCallFuture<'a> {
        let core = SHARD.with(|shard| shard.borrow().clone());
        // AssertSend: the future is made and polled on this shard's thread (see send.rs); a
        // call on a thread without a shard fails instead.
        Box::pin(AssertSend(async move {
            let Some(core) = core else {
                return Err("host calls need a shard; none runs on this thread".to_string());
            };
            // Off the CPU while the call is out (back on when it returns or is dropped).
            let _off = OffTurn::new(&core);
            let guest = GuestCall {
                binding,
                namespace,
                operation,
            };
            host_call(Rc::clone(&core), origin_actor, trace, guest, payload).await
        }))
    }
}
