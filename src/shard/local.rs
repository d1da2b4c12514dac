//! Same-host calls: a guest's call to another actor that runs on this host is served on the
//! calling shard — no signing, no NATS round trip, no signature to verify — with the checks a
//! serving shard makes on a lattice invocation from an actor: the target resolved by key or
//! call alias (`calls::resolve`, done before), the policy verdict for the (caller, callee)
//! pair, the callee's turn on the CPU and its warm instance. Calls to providers, to actors
//! this host does not run, and calls whose policy pair is not decided yet go through the
//! lattice as before (the serving shard asks the policy service and holds them);
//! `--local-calls false` sends every call there.
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
    // The verdict the serving shard would apply to this pair (an actor caller has no link).
    let gate = core.policy().borrow().check(call.origin, "", call.actor);
    match gate {
        Gate::Pass => {}
        Gate::Deny(denial) => {
            core.bump(|s| s.calls_local += 1);
            return Local::Served(Err(denial.to_string()));
        }
        Gate::Hold => return Local::NotHere(payload),
    }
    let asked = Instant::now();
    let turn = core.turns().take().await;
    let waited = asked.elapsed();
    let mut instance = match core.lease(call.actor).await {
        Lease::Ready(instance) => instance,
        Lease::Failed(text) => {
            core.bump(|s| s.calls_local += 1);
            return Local::Served(Err(text));
        }
        Lease::NotRunning => return Local::NotHere(payload),
    };
    if waited.as_millis() > u128::from(GUEST_TURN_WAIT_MS_MAX) {
        core.give_back(call.actor, instance);
        core.bump(|s| s.calls_local += 1);
        return Local::Served(Err(format!(
            "Host overloaded: {} ran out of turns ({} ms waited for a local call to {}); try again later",
            core.id(),
            waited.as_millis(),
            call.actor
        )));
    }
    core.bump(|s| s.calls_local += 1);
    let server = core.tracer().map(|tracer| tracer.start_server(trace.cloned()));
    let callee_trace = server.as_ref().map_or_else(|| trace.cloned(), |s| Some(s.call.clone()));
    let result = turn
        .run(instance.invoke_in(call.operation, &payload, callee_trace))
        .await
        .map_err(|e| e.to_string());
    drop(turn);
    core.give_back(call.actor, instance);
    if let (Some(tracer), Some(server)) = (core.tracer(), &server) {
        tracer.end_server(
            server,
            call.operation,
            call.actor,
            result.as_ref().err().map(String::as_str),
        );
    }
    Local::Served(result)
}
