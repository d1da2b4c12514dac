//! The invocation pipeline of one shard (PROTOCOL §9.5): everything one socket read delivered
//! is a batch — decoded without copies, its invocation tokens verified with one Ed25519 batch
//! equation, checked (§3.3 anti-forgery, §4.5 capability, target = the subscribed actor) — and
//! every accepted invocation runs as its own task on a warm instance of the actor's pool, whose
//! reply is encoded straight into the connection's write buffer.
//!
//! Data plane: the pipeline runs on the shard's [`ShardCore`] (its state, in `core.rs`), which
//! it only ever borrows between awaits, never across one. This file owns the policy: what is
//! refused and why, the in-flight bound and its waiting room, and the task that serves one
//! invocation. Every refused invocation that has a reply subject is answered with an
//! `InvocationResponse` whose `error` says why.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::auth::antiforgery::{self, check_capability, check_invocation, decode_invocation_token, AuthError};
use crate::plane::{PolicyPair, PolicyVerdict, ShardStats, CHUNK_THRESHOLD_BYTES};
use crate::routing::RoutingSnapshot;
use crate::wire::invocation::{decode_invocation, InvocationRef};
use crate::wire::response::{encode_response_traced, response_len_traced};
use crate::wire::trace::TRACEPARENT_CHARS;

use super::batch::{recycle, verify_candidates, Candidate, Dechunk, Dispatch, Job};
use super::conn::Inbound;
use super::core::ShardCore;
use super::instances::Lease;
use super::policy::Gate;
use super::trace::{caller_trace, InboundTrace};
use super::turns::GUEST_TURN_WAIT_MS_MAX;

/// Reply to an invocation for an actor this shard does not run (any more).
pub const NOT_RUNNING: &str = "Invocation received for an actor that is not running on this host";
/// Reply when the invocation's target is not the actor whose subject it came on.
pub const WRONG_TARGET: &str = "Invocation target does not match the actor of the subject it was sent on";

/// Counts one running invocation; dropping it (even by cancellation) frees the slot and
/// starts the oldest queued invocation in it.
pub(crate) struct InflightGuard(Rc<ShardCore>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let core = &self.0;
        let now = core.leave();
        if !core.stopping() {
            let next = core.pop_queued();
            if let Some(job) = next {
                core.start(job);
                return;
            }
        }
        if now == 0 {
            core.quiet().notify();
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ShardCore {
    /// Run `job` now if there is room, else queue it; when the queue is full as well, answer
    /// it with an overload error at once (the caller may retry; NATS picks a queue member
    /// again, likely a host with room).
    pub fn admit_or_queue(self: &Rc<Self>, job: Job) {
        if !self.saturated() {
            self.start(job);
        } else if !self.queue_full() {
            self.bump(|s| s.queued += 1);
            self.push_queued(job);
        } else {
            let dispatch = job.dispatch();
            self.bump(|s| s.rejected_overload += 1);
            self.reply(dispatch.reply(), dispatch.id(), Err(&self.overloaded()), 0);
        }
    }

    /// The refusal of an invocation the shard has no room for.
    fn overloaded(&self) -> String {
        format!(
            "Host overloaded: {} has {} invocations running and {} waiting; try again later",
            self.id(),
            self.inflight(),
            self.queued()
        )
    }

    /// Answer every queued invocation with error `text` (a stopping shard past its drain
    /// timeout); returns how many.
    pub fn refuse_queued(&self, text: &str) -> usize {
        let queued: Vec<Job> = self.take_queued();
        for job in &queued {
            let dispatch = job.dispatch();
            self.bump(|s| s.rejected_stopping += 1);
            self.reply(dispatch.reply(), dispatch.id(), Err(text), 0);
        }
        queued.len()
    }

    /// Count one more running task until the guard drops (stopping shards wait for them).
    pub(crate) fn admit(self: &Rc<Self>) -> InflightGuard {
        self.enter();
        InflightGuard(Rc::clone(self))
    }

    // -----------------------------------------------------------------------------------------
    // Replies
    // -----------------------------------------------------------------------------------------

    /// Queue an `InvocationResponse` on `reply`, encoded straight into the write buffer. A
    /// result that does not fit the server's `max_payload` is answered with an error instead.
    fn reply(&self, reply: Option<&str>, invocation_id: &str, result: Result<&[u8], &str>, content_length: u64) {
        self.reply_traced(reply, invocation_id, result, content_length, &[]);
    }

    /// Answer a dispatched invocation: end its server span (when recorded), then reply with
    /// the span's trace context (when telemetry is on).
    fn answer(&self, dispatch: &Dispatch, result: Result<&[u8], &str>, content_length: u64) {
        let trace = dispatch.trace.as_deref();
        if let (Some(tracer), Some(trace)) = (self.tracer(), trace) {
            tracer.end_server(trace, dispatch.operation(), &dispatch.actor, result.err());
        }
        let (reply, id) = (dispatch.reply(), dispatch.id());
        // With telemetry on the reply names the span that served the call, as the 0.82 host
        // answers; with it off (a passed-through context) the reply carries none.
        match trace.filter(|_| self.tracer().is_some()) {
            None => self.reply_traced(reply, id, result, content_length, &[]),
            Some(trace) => {
                let mut traceparent = [0u8; TRACEPARENT_CHARS];
                let (pairs, len) = trace.call.pairs(&mut traceparent);
                self.reply_traced(reply, id, result, content_length, &pairs[..len]);
            }
        }
    }

    fn reply_traced(
        &self,
        reply: Option<&str>,
        invocation_id: &str,
        result: Result<&[u8], &str>,
        content_length: u64,
        trace_context: &[(&str, &str)],
    ) {
        let Some(reply) = reply else {
            self.bump(|s| s.no_reply_subject += 1);
            tracing::debug!(shard = %self.id(), invocation_id, "invocation without a reply subject: nobody to answer");
            return;
        };
        let (msg, error) = match result {
            Ok(msg) => (msg, None),
            Err(error) => (&[][..], Some(error)),
        };
        let len = response_len_traced(invocation_id, msg.len(), error, content_length, trace_context);
        let written = if trace_context.is_empty() {
            self.outbox().publish_with(reply, None, len, |buf| {
                encode_response_traced(buf, invocation_id, msg, error, content_length, trace_context)
            })
        } else {
            // Traced replies also carry the context in NATS headers, as 0.82's do.
            let mut body = Vec::with_capacity(len);
            encode_response_traced(&mut body, invocation_id, msg, error, content_length, trace_context);
            self.outbox().publish_headers(reply, None, trace_context, &body)
        };
        if let Err(e) = written {
            self.bump(|s| s.reply_failures += 1);
            tracing::warn!(shard = %self.id(), invocation_id, error = %e, "cannot send the reply");
            if error.is_none() {
                let text = "Invocation response does not fit in a NATS message";
                self.reply(Some(reply), invocation_id, Err(text), 0);
            }
        }
    }

    fn reject(&self, msg: &Inbound, invocation_id: &str, error: &str, count: impl FnOnce(&mut ShardStats)) {
        self.bump(count);
        tracing::debug!(shard = %self.id(), invocation_id, error, "invocation refused");
        self.reply(msg.reply(), invocation_id, Err(error), 0);
    }

    // -----------------------------------------------------------------------------------------
    // The batch
    // -----------------------------------------------------------------------------------------

    /// Handle everything one read delivered: replies to our outbound calls go to their
    /// callers; invocations are screened and decoded, verified as one batch and checked; the
    /// refused ones are answered at once and the accepted ones appended to `jobs`, to be
    /// started with [`ShardCore::start`] as room allows. The stages' buffers are the core's,
    /// taken for the batch and put back.
    pub fn on_batch(self: &Rc<Self>, batch: &[Inbound], jobs: &mut Vec<Job>) {
        let arrived = Instant::now();
        let now = now_secs();
        let routing = Arc::clone(&self.routing());
        let mut buffers = self.batch_buffers().take();
        let mut candidates = recycle(std::mem::take(&mut buffers.candidates));
        self.screen(batch, &routing, &mut candidates);
        if !candidates.is_empty() {
            self.bump(|s| {
                s.batches += 1;
                s.batched_invocations += candidates.len() as u64;
                s.batch_max = s.batch_max.max(candidates.len() as u64);
            });
            // One batch equation per read (in slices of the batch limit).
            let started = Instant::now();
            let (verify, verified) = (&mut buffers.verify, &mut buffers.verified);
            verify_candidates(&mut self.keys().borrow_mut(), &candidates, verify, verified);
            let verify_ns = started.elapsed().as_nanos() as u64;
            self.bump(|s| s.verify_ns += verify_ns);
            self.check(&mut candidates, &buffers.verified, &routing, now, arrived, jobs);
        }
        buffers.candidates = recycle(candidates);
        self.batch_buffers().replace(buffers);
    }

    /// Stage 1, screen and decode: a reply to one of our outbound calls goes to its caller; an
    /// invocation is refused here, before its signature costs anything, when its actor does
    /// not run here, it does not decode, the shard has no room left, or its token does not
    /// decode or names an untrusted issuer. The rest become `candidates`, in batch order.
    fn screen<'a>(
        self: &Rc<Self>,
        batch: &'a [Inbound],
        routing: &RoutingSnapshot,
        candidates: &mut Vec<Candidate<'a>>,
    ) {
        let inbox_sid = self.calls().inbox_sid();
        let subjects = self.subjects().borrow();
        candidates.reserve(batch.len());
        // Past this many, invocations are refused before their signature is checked: shedding
        // load must cost far less than serving it (an "overloaded" reply tells a forger nothing).
        let mut room = self.room();
        for msg in batch {
            if Some(msg.sid) == inbox_sid {
                self.calls().deliver(msg);
                continue;
            }
            let subscribed = self.messaging().borrow().get(&msg.sid).cloned();
            if let Some(sub) = subscribed {
                super::messaging::deliver(self, sub, msg);
                continue;
            }
            self.bump(|s| s.received += 1);
            let Some(actor) = subjects.get(&msg.sid) else {
                self.reject(msg, "", NOT_RUNNING, |s| s.rejected_not_running += 1);
                continue;
            };
            let inv = match decode_invocation(&msg.payload) {
                Ok(inv) => inv,
                Err(e) => {
                    self.reject(msg, "", e.message(), |s| s.rejected_decode += 1);
                    continue;
                }
            };
            if room == 0 {
                self.reject(msg, inv.id, &self.overloaded(), |s| s.rejected_overload += 1);
                continue;
            }
            let token = match decode_invocation_token(inv.encoded_claims) {
                Ok(token) => token,
                Err(e) => {
                    self.reject(msg, inv.id, e.message(), |s| s.rejected_auth += 1);
                    continue;
                }
            };
            if !routing.cluster_issuers.contains(&token.issuer) {
                // Not worth a signature check: refused whatever it says.
                self.reject(msg, inv.id, AuthError::UntrustedIssuer.message(), |s| {
                    s.rejected_auth += 1
                });
                continue;
            }
            room -= 1;
            candidates.push(Candidate {
                msg,
                actor: Rc::clone(actor),
                inv,
                token,
            });
        }
    }

    /// Stage 3, checks, in batch order: a candidate whose signature failed (`verified`, one
    /// entry per candidate), whose token fails §3.3, whose target is not the subject's actor or
    /// who lacks the capability is refused; the others become `jobs`. Empties `candidates`.
    fn check(
        &self,
        candidates: &mut Vec<Candidate<'_>>,
        verified: &[bool],
        routing: &RoutingSnapshot,
        now: u64,
        arrived: Instant,
        jobs: &mut Vec<Job>,
    ) {
        assert_eq!(verified.len(), candidates.len(), "one verify result per candidate");
        for (candidate, signature_ok) in candidates.drain(..).zip(verified.iter().copied()) {
            let Candidate { msg, actor, inv, token } = candidate;
            if !signature_ok {
                self.reject(msg, inv.id, AuthError::BadSignature.message(), |s| s.rejected_auth += 1);
                continue;
            }
            if let Err(e) = check_invocation(&inv, &token, &routing.cluster_issuers, now) {
                self.reject(msg, inv.id, e.message(), |s| s.rejected_auth += 1);
                continue;
            }
            if inv.target.public_key != &*actor {
                self.reject(msg, inv.id, WRONG_TARGET, |s| s.rejected_target += 1);
                continue;
            }
            if let Err(e) = check_capability(&inv, routing.caps.get(&*actor)) {
                self.reject(msg, inv.id, e.message(), |s| s.rejected_capability += 1);
                continue;
            }
            let origin_link = if inv.origin.contract_id.is_empty() {
                ""
            } else {
                inv.origin.link_name
            };
            let gate = self.policy().borrow().check(inv.origin.public_key, origin_link, &actor);
            let held = match gate {
                Gate::Pass => None,
                Gate::Deny(denial) => {
                    self.reject(msg, inv.id, &denial, |s| s.rejected_policy += 1);
                    continue;
                }
                Gate::Hold => Some(PolicyPair {
                    origin: inv.origin.public_key.to_string(),
                    link_name: origin_link.to_string(),
                    target: actor.to_string(),
                }),
            };
            let payload = &msg.payload;
            let dispatch = Dispatch {
                arrived,
                actor,
                operation: payload.slice_ref(inv.operation.as_bytes()),
                msg: payload.slice_ref(inv.msg),
                id: payload.slice_ref(inv.id.as_bytes()),
                reply: msg.reply_bytes(),
                trace: self.trace_of(msg, &inv),
            };
            let content_length = inv.content_length_or_msg();
            if content_length > inv.msg.len() as u64 {
                // Chunked (§2.6): the hash was skipped above and is checked on the full bytes.
                // `check_invocation` refused tokens without metadata; answer rather than drop anyway.
                let Some(metadata) = token.metadata else {
                    self.reject(msg, inv.id, AuthError::MissingMetadata.message(), |s| {
                        s.rejected_auth += 1
                    });
                    continue;
                };
                let job = Job::Chunked(Dechunk {
                    dispatch,
                    content_length,
                    origin_url: metadata.origin_url,
                    target_url: metadata.target_url,
                    hash: metadata.hash,
                });
                self.accept(job, held, jobs);
            } else {
                self.accept(Job::Serve(dispatch), held, jobs);
            }
        }
    }

    /// The trace an accepted invocation runs in: a server span when telemetry is on, the
    /// caller's context passed through when it is off, nothing (no work) when off and the
    /// invocation carries no context.
    fn trace_of(&self, msg: &Inbound, inv: &InvocationRef<'_>) -> Option<Box<InboundTrace>> {
        let headers = msg.headers.as_deref();
        match self.tracer() {
            Some(tracer) => Some(Box::new(tracer.start_server(caller_trace(&inv.trace_context, headers)))),
            None if inv.trace_context.is_empty() && headers.is_none() => None,
            None => caller_trace(&inv.trace_context, headers).map(|c| Box::new(InboundTrace::passthrough(c))),
        }
    }

    /// An invocation that passed every check: to run (`jobs`), or held until the policy
    /// service decides its pair (the first held one of a pair queues a query).
    fn accept(&self, job: Job, held: Option<PolicyPair>, jobs: &mut Vec<Job>) {
        let Some(pair) = held else {
            jobs.push(job);
            return;
        };
        self.bump(|s| s.policy_held += 1);
        if self.policy().borrow_mut().hold(pair.clone(), job) {
            self.policy_queries().borrow_mut().push(pair);
        }
    }

    /// The pairs to ask the control plane about since the last call.
    pub fn take_policy_queries(&self) -> Vec<PolicyPair> {
        std::mem::take(&mut *self.policy_queries().borrow_mut())
    }

    /// Apply a policy verdict: keep it (if lasting) and run or refuse what waited for it.
    pub fn on_policy(self: &Rc<Self>, pair: &PolicyPair, verdict: &PolicyVerdict) {
        let released = self.policy().borrow_mut().decide(pair, verdict);
        self.release_held(released, verdict.denial.as_deref());
    }

    /// A query that could not be sent: what waited for it is refused (failing closed).
    pub fn policy_unasked(self: &Rc<Self>, pair: &PolicyPair) {
        let released = self.policy().borrow_mut().release(pair);
        let text =
            "Policy denied: the shard could not ask the control plane for a decision (its report channel is full)";
        self.release_held(released, Some(text));
    }

    fn release_held(self: &Rc<Self>, released: Vec<Job>, denial: Option<&str>) {
        for job in released {
            match denial {
                Some(text) => {
                    let dispatch = job.dispatch();
                    self.bump(|s| s.rejected_policy += 1);
                    self.reply(dispatch.reply(), dispatch.id(), Err(text), 0);
                }
                None => self.admit_or_queue(job),
            }
        }
        if self.inflight() == 0 && self.queued() == 0 {
            self.quiet().notify();
        }
    }

    /// Start an accepted invocation as a task of its own, counted in flight until it replied.
    fn start(self: &Rc<Self>, job: Job) {
        let guard = self.admit();
        match job {
            Job::Serve(dispatch) => super::rt::spawn_local(serve(Rc::clone(self), dispatch, guard)).detach(),
            Job::Chunked(dechunk) => super::rt::spawn_local(serve_chunked(Rc::clone(self), dechunk, guard)).detach(),
        };
    }
}

/// Serve one accepted invocation: wait for a turn on the CPU, lease (or create) an instance,
/// run the guest, give the instance back, reply. One that waited too long for its turn is
/// refused as overloaded instead of run for a caller that has likely given up.
async fn serve(core: Rc<ShardCore>, dispatch: Dispatch, guard: InflightGuard) {
    let turn = core.turns().take().await;
    let waited = dispatch.arrived.elapsed();
    if waited.as_millis() > u128::from(GUEST_TURN_WAIT_MS_MAX) {
        core.bump(|s| s.rejected_overload += 1);
        let text = format!(
            "Host overloaded: {} ran out of turns ({} ms waited, {} guests running, {} waiting); try again later",
            core.id(),
            waited.as_millis(),
            core.turns().running(),
            core.turns().waiting()
        );
        core.answer(&dispatch, Err(&text), 0);
        return;
    }
    let mut instance = match core.lease(&dispatch.actor).await {
        Lease::Ready(instance) => instance,
        Lease::Failed(text) => {
            core.bump(|s| s.guest_errors += 1);
            core.answer(&dispatch, Err(&text), 0);
            return;
        }
        Lease::NotRunning => {
            core.bump(|s| s.rejected_not_running += 1);
            core.answer(&dispatch, Err(NOT_RUNNING), 0);
            return;
        }
    };
    let result = turn
        .run(instance.invoke_in(
            dispatch.operation(),
            &dispatch.msg,
            dispatch.trace.as_ref().map(|t| t.call.clone()),
        ))
        .await;
    drop(turn);
    core.give_back(&dispatch.actor, instance);
    match result {
        Ok(response) if response.len() > CHUNK_THRESHOLD_BYTES => {
            let key = format!("{}-r", dispatch.id());
            let content_length = response.len() as u64;
            match Box::pin(core.put_object(key, Bytes::from(response))).await {
                Ok(()) => {
                    core.bump(|s| s.served += 1);
                    core.answer(&dispatch, Ok(&[]), content_length);
                }
                Err(error) => {
                    core.bump(|s| s.reply_failures += 1);
                    let text = format!("cannot store the chunked response: {error}");
                    core.answer(&dispatch, Err(&text), 0);
                }
            }
        }
        Ok(response) => {
            core.bump(|s| s.served += 1);
            core.answer(&dispatch, Ok(&response), response.len() as u64);
        }
        Err(error) => {
            core.bump(|s| s.guest_errors += 1);
            core.answer(&dispatch, Err(&error.to_string()), 0);
        }
    }
    drop(guard);
}

/// Fetch a chunked request's payload, check its hash on the full bytes, then serve it.
async fn serve_chunked(core: Rc<ShardCore>, dechunk: Dechunk, guard: InflightGuard) {
    let Dechunk {
        mut dispatch,
        content_length,
        origin_url,
        target_url,
        hash,
    } = dechunk;
    let full = match core.take_object(dispatch.id().to_string()).await {
        Ok(full) if full.len() as u64 == content_length => full,
        Ok(full) => {
            let text = format!(
                "chunked payload has {} bytes, content_length says {content_length}",
                full.len()
            );
            core.answer(&dispatch, Err(&text), 0);
            return;
        }
        Err(error) => {
            let text = format!("cannot fetch the chunked payload: {error}");
            core.answer(&dispatch, Err(&text), 0);
            return;
        }
    };
    let computed = antiforgery::hex_upper(&antiforgery::invocation_hash(
        &origin_url,
        &target_url,
        dispatch.operation(),
        &full,
    ));
    if !hash.as_bytes().eq_ignore_ascii_case(&computed) {
        core.bump(|s| s.rejected_auth += 1);
        let text = AuthError::HashMismatch.message();
        core.answer(&dispatch, Err(text), 0);
        return;
    }
    dispatch.msg = full;
    // Ready to run only now: the fetch is not time spent waiting for a turn.
    dispatch.arrived = Instant::now();
    serve(core, dispatch, guard).await;
}
