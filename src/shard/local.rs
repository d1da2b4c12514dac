//! Same-host calls: a guest's call to another actor that runs on this host is served on the
//! calling shard — no signing, no NATS round trip, no signature to verify — with the checks a
//! serving shard makes on a lattice invocation from an actor: the target resolved by key or
//! call alias (`calls::resolve`, done before), the policy verdict for the (caller, callee)
//! pair, the callee's turn on the CPU and its warm instance. Calls to providers, to actors
//! this host does not run, and calls whose policy pair is not decided yet go through the
//! lattice as before (the serving shard asks the policy service and holds them);
//! `--local-calls false` sends every call there. [`run_here`] is the part both this and the
//! built-in HTTP server (`super::http`) use: a request for an actor of this shard runs the same
//! way, with the built-in provider as the policy pair's origin.
//!
//! Counted in `calls_local` only (served, failed or refused): the shard's `received`/`served`
//! and refusal counters stay those of invocations that came over NATS, so every received
//! invocation is still answered exactly once in them.
//!
//! Data plane: runs on the calling guest's task while that guest is off its turn (see
//! `calls.rs`), so a chain of local calls never waits for a turn its own caller holds.

use std::rc::Rc;
use std::time::Instant;

use crate::wire::trace::CallTrace;

use super::core::ShardCore;
use super::instances::Lease;
use super::policy::Gate;
use super::turns::GUEST_TURN_WAIT_MS_MAX;

/// A resolved call, as a local serve needs it.
#[derive(Clone, Copy)]
pub(crate) struct LocalCall<'a> {
    /// The calling actor's key.
    pub(crate) origin: &'a str,
    /// The target's key: an actor's (`M…`) or a provider's (`V…`).
    pub(crate) actor: &'a str,
    pub(crate) link_name: &'a str,
    /// Empty for an actor target.
    pub(crate) contract_id: &'a str,
    pub(crate) operation: &'a str,
}

/// What became of a call offered to this shard.
pub(crate) enum Local {
    /// Served here: the callee's result or error.
    Served(Result<Vec<u8>, String>),
    /// Not for this shard: the payload, handed back for the lattice.
    NotHere(Vec<u8>),
}

/// Why a call offered to this shard was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The policy service denied the pair.
    Policy,
    /// The shard ran out of turns.
    Overloaded,
    /// No idle instance, and making one failed.
    Instance,
    /// The actor's claims do not grant the caller's contract (a built-in provider's call).
    Capability,
}

/// What became of a call [`run_here`] was given.
pub(crate) enum Outcome {
    /// The guest ran: its result or error.
    Ran(Result<Vec<u8>, String>),
    /// Not run, with the error text for the caller.
    Refused(Refusal, String),
    /// The actor does not run on this shard, or the pair waits for a policy decision: the
    /// payload, handed back for the lattice.
    NotHere(Vec<u8>),
}

/// Serve `call` on this shard when its target is an actor this shard runs and policy allows
/// the pair; `trace` is the context the callee continues (its server span's parent).
pub(crate) async fn serve(
    core: &Rc<ShardCore>,
    call: LocalCall<'_>,
    payload: Vec<u8>,
    trace: Option<&CallTrace>,
) -> Local {
    if !core.config().local_calls || !call.contract_id.is_empty() || !call.link_name.is_empty() {
        return Local::NotHere(payload);
    }
    // An actor caller has no link name in its policy pair.
    let origin = Origin {
        key: call.origin,
        link_name: "",
    };
    match run_here(core, origin, call.actor, call.operation, payload, trace).await {
        Outcome::NotHere(payload) => Local::NotHere(payload),
        Outcome::Ran(result) => {
            core.bump(|s| s.calls_local += 1);
            Local::Served(result)
        }
        Outcome::Refused(_, text) => {
            core.bump(|s| s.calls_local += 1);
            Local::Served(Err(text))
        }
    }
}

/// Who calls, as the policy pair names it: a provider's key and link name, or an actor's key
/// and an empty link name.
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) key: &'a str,
    pub(crate) link_name: &'a str,
}

/// Run `operation` of `actor` on this shard for `origin`, with the checks a serving shard
/// makes after the signature: the policy verdict of the pair, the turn-wait limit, a warm
/// instance. Counts nothing: the caller knows what the call was.
pub(crate) async fn run_here(
    core: &Rc<ShardCore>,
    origin: Origin<'_>,
    actor: &str,
    operation: &str,
    payload: Vec<u8>,
    trace: Option<&CallTrace>,
) -> Outcome {
    let gate = core.policy().borrow().check(origin.key, origin.link_name, actor);
    match gate {
        Gate::Pass => {}
        Gate::Deny(denial) => return Outcome::Refused(Refusal::Policy, denial.to_string()),
        Gate::Hold => return Outcome::NotHere(payload),
    }
    let asked = Instant::now();
    let turn = core.turns().take().await;
    let waited = asked.elapsed();
    let mut instance = match core.lease(actor).await {
        Lease::Ready(instance) => instance,
        Lease::Failed(text) => return Outcome::Refused(Refusal::Instance, text),
        Lease::NotRunning => return Outcome::NotHere(payload),
    };
    if waited.as_millis() > u128::from(GUEST_TURN_WAIT_MS_MAX) {
        core.give_back(actor, instance);
        let text = format!(
            "Host overloaded: {} ran out of turns ({} ms waited for a local call to {actor}); try again later",
            core.id(),
            waited.as_millis(),
        );
        return Outcome::Refused(Refusal::Overloaded, text);
    }
    let server = core.tracer().map(|tracer| tracer.start_server(trace.cloned()));
    let callee_trace = server.as_ref().map_or_else(|| trace.cloned(), |s| Some(s.call.clone()));
    let result = turn
        .run(instance.invoke_in(operation, &payload, callee_trace))
        .await
        .map_err(|e| e.to_string());
    drop(turn);
    core.give_back(actor, instance);
    if let (Some(tracer), Some(server)) = (core.tracer(), &server) {
        tracer.end_server(server, operation, actor, result.as_ref().err().map(String::as_str));
    }
    Outcome::Ran(result)
}
