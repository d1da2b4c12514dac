//! Data plane: one executor per shard, each pinned to its own core ([`rt`]: glommio on
//! io_uring, or tokio on epoll where io_uring is blocked).
//!
//! A shard owns everything it touches while serving: its NATS connection ([`conn`]), its
//! routing snapshot, its warm instance pools, its pending outbound calls ([`calls`]) and its
//! counters, all in one [`self::core::ShardCore`] shared by the shard's tasks through an `Rc`. It
//! never takes a lock and never runs tokio. Tasks of a shard: the command loop (this file:
//! pools, subscriptions, stop), the reader (one socket read = one batch for the pipeline in
//! [`serve`]), the connection's writer, one task per running invocation, and a stats ticker.
//! The control plane talks to a shard only through [`ShardCommand`]s and hears from it only
//! through [`ShardReport`]s ([`crate::plane`]).
//!
//! [`spawn`] starts one shard's executor thread; the control plane's handle on all of them is
//! [`crate::control::shards::ShardSet`].

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;

use crate::config::SHARD_IO_MEMORY_BYTES;
use crate::plane::{monotonic_ms, ShardCommand, ShardConfig, ShardId, ShardReport, ShardStats, SHARD_TICK_STOPPED};
use crate::runtime::{ActorPool, CompiledActor, Parker, Runtime};

mod batch;
pub mod calls;
pub mod conn;
mod core;
mod http;
mod inbox;
mod inprocess;
mod instances;
mod link;
mod local;
mod messaging;
mod notify;
mod outbox;
mod policy;
mod publish;
pub mod rt;
mod send;
mod serve;
mod stream;
#[cfg(test)]
mod tests;
mod trace;
mod turns;

pub use inprocess::{inbound, InProcessShard};

use self::core::{ActorSlot, ShardCore};
use calls::ShardHostCalls;
use conn::{Conn, ConnConfig, Outbox};
use send::AssertSend;

pub use rt::GUEST_PARK_US;
/// How often a shard sends its counters to the control plane (when they changed).
pub const STATS_REPORT_INTERVAL_MS: u64 = 1_000;
/// While a stopping shard waits for the server's `PONG`, how often it checks that its
/// connection is still up.
const CONNECTION_CHECK_MS: u64 = 20;
/// Longest a shard waits for queued frames (a new subscription, the last replies) to leave.
pub const FLUSH_WAIT_MS: u64 = 1_000;
/// First wait before retrying a failed first connection (then as `Conn::reconnect`).
pub const FIRST_CONNECT_RETRY_MS: u64 = 200;

/// The parker of guests on a shard: step off so the executor polls its sockets ([`rt::io_yield`]).
fn guest_parker() -> Parker {
    Arc::new(|| Box::pin(AssertSend(rt::io_yield())))
}

/// Wait for `future` at most `limit`; false when the time ran out.
async fn within(limit: Duration, future: impl std::future::Future<Output = ()>) -> bool {
    rt::timeout(limit, future).await.is_some()
}

/// Wait (up to `limit`) until the server confirms what the shard sent so far — its `PONG` —
/// giving up early when the connection is down (that `PONG` would never come).
async fn unsubscribed(core: &ShardCore, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut pong = Box::pin(core.outbox().confirmed());
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !core.connected() || left.is_zero() {
            return false;
        }
        let tick = rt::sleep(left.min(Duration::from_millis(CONNECTION_CHECK_MS)));
        if let futures::future::Either::Left(_) = futures::future::select(pong.as_mut(), tick).await {
            return true;
        }
    }
}

/// One shard's command side, owned by its executor's main task.
struct Shard {
    core: Rc<ShardCore>,
    runtime: Runtime,
    reports: mpsc::Sender<ShardReport>,
    /// The built-in HTTP server's listeners on this shard.
    http: http::Listeners,
    /// The built-in messaging provider's subscriptions on this shard.
    messaging: messaging::Subscriptions,
}

impl Shard {
    fn stop_actor(&mut self, key: &str) {
        let core = &self.core;
        let Some(slot) = core.actors().borrow_mut().remove(key) else {
            return;
        };
        core.outbox().unsubscribe(slot.sid);
        core.subjects().borrow_mut().remove(&slot.sid);
        core.retire_pool(slot.pool);
    }

    /// Send a report without ever blocking the shard; a full channel is counted.
    fn report(&mut self, report: ShardReport) {
        if self.reports.try_send(report).is_err() {
            self.core.bump(|s| s.reports_dropped += 1);
        }
    }

    /// Apply one command; returns false when the shard must stop.
    async fn apply(&mut self, command: ShardCommand) -> bool {
        self.core.bump(|s| s.commands_received += 1);
        match command {
            ShardCommand::Routing(snapshot) => {
                // Snapshots only move forward: a stale one (reordered by a retry) is ignored.
                let newer = snapshot.version >= self.core.routing().version;
                if newer {
                    self.core.set_routing(snapshot);
                    self.core.bump(|s| s.routing_swaps += 1);
                }
                let report = ShardReport::RoutingApplied {
                    shard: self.core.id(),
                    version: self.core.routing().version,
                    stats: self.core.stats(),
                };
                self.report(report);
                true
            }
            ShardCommand::ActorPool {
                key,
                compiled,
                caps,
                warm_instances,
            } => {
                let shard = self.core.id();
                let report = match set_pool(&self.core, &self.runtime, &key, compiled, caps, warm_instances).await {
                    Ok(warm) => ShardReport::ActorPoolReady { shard, key, warm },
                    Err(error) => ShardReport::ActorPoolFailed { shard, key, error },
                };
                self.report(report);
                true
            }
            ShardCommand::ActorStop { key } => {
                self.stop_actor(&key);
                self.report(ShardReport::ActorPoolReady {
                    shard: self.core.id(),
                    key,
                    warm: 0,
                });
                true
            }
            ShardCommand::Policy { pair, verdict } => {
                self.core.on_policy(&pair, &verdict);
                true
            }
            ShardCommand::HttpRoutes(routes) => {
                self.http.apply(&self.core, &routes, &self.reports).await;
                true
            }
            ShardCommand::MessagingRoutes(routes) => {
                self.messaging.apply(&self.core, &routes).await;
                true
            }
            ShardCommand::Stop => false,
        }
    }

    /// Stop taking work and lose none of what was accepted (issue 10's graceful drain):
    /// 1. unsubscribe every actor, so NATS routes new invocations to the other hosts;
    /// 2. send a `PING` after the `UNSUB`s and read on until its `PONG`: the server handles a
    ///    connection's commands in order, so every message it sent for those subscriptions
    ///    has been read, and accepted, before the `PONG` (skipped while disconnected);
    /// 3. wait for the running and queued invocations, up to `drain_timeout`; what is still
    ///    queued then is answered "host stopping", never dropped, and guests still waiting on
    ///    an outbound call get an error from it, so they finish and are answered too (a guest
    ///    spinning on the CPU is stopped only by its execution deadline);
    /// 4. let the replies leave (bounded), then stop reading.
    async fn drain(&mut self, reader: Option<rt::Task<()>>) {
        let core = Rc::clone(&self.core);
        let began = std::time::Instant::now();
        let before = core.stats();
        // HTTP first: no new connections; the requests in flight finish (bounded). Messaging
        // subscriptions go with the actors' (deliveries under way count as in flight).
        self.http.close_all(core.config().drain_timeout).await;
        self.messaging.apply(&core, &[]).await;
        let sids: Vec<u64> = core.actors().borrow().values().map(|slot| slot.sid).collect();
        for sid in &sids {
            core.outbox().unsubscribe(*sid);
        }
        let limit = core.config().drain_timeout;
        let confirmed = core.config().conn.is_some() && !sids.is_empty() && unsubscribed(&core, limit).await;
        let left = limit.saturating_sub(began.elapsed());
        let drained = within(left, async {
            while core.inflight() > 0 || core.queued() > 0 {
                core.quiet().notified().await;
            }
        })
        .await;
        core.set_stopping();
        let refused = core.refuse_queued(
            "host stopping: the invocation was accepted but the drain timeout passed before it could run",
        );
        let mut cancelled = 0;
        if !drained {
            // Guests waiting on outbound calls get an error and finish; their replies leave.
            cancelled = core.calls().cancel_all();
            let finished = within(Duration::from_millis(FLUSH_WAIT_MS), async {
                while core.inflight() > 0 {
                    core.quiet().notified().await;
                }
            })
            .await;
            tracing::warn!(
                shard = %core.id(),
                refused,
                calls_cancelled = cancelled,
                still_running = core.inflight(),
                finished,
                ?limit,
                "the drain timeout passed with invocations running"
            );
        }
        if core.config().conn.is_some() && !within(Duration::from_millis(FLUSH_WAIT_MS), core.outbox().drained()).await
        {
            tracing::warn!(shard = %core.id(), bytes = core.outbox().pending_bytes(), "replies not written at stop");
        }
        let after = core.stats();
        tracing::info!(
            shard = %core.id(),
            subscriptions = sids.len(),
            unsubscribe_confirmed = confirmed,
            received_while_draining = after.received - before.received,
            served_while_draining = after.served - before.served,
            refused,
            calls_cancelled = cancelled,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "shard drained"
        );
        if let Some(reader) = reader {
            reader.cancel().await;
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<ShardCommand>, cpu: Option<usize>) {
        let core = Rc::clone(&self.core);
        calls::install(Some(Rc::clone(&core)));
        let inbox = format!("{}.*", core.calls().inbox_prefix);
        match core.outbox().subscribe(&inbox, None) {
            Ok(sid) => core.calls().set_inbox_sid(sid),
            Err(e) => tracing::error!(shard = %core.id(), error = %e, "cannot subscribe to the shard inbox"),
        }
        self.report(ShardReport::Started { shard: core.id(), cpu });
        let reader = core
            .config()
            .conn
            .clone()
            .map(|config| rt::spawn_local(read_loop(Rc::clone(&core), config, self.reports.clone())));
        let ticker = rt::spawn_local(report_stats(Rc::clone(&core), self.reports.clone()));
        while let Some(command) = commands.next().await {
            if !self.apply(command).await {
                break;
            }
        }
        self.drain(reader).await;
        ticker.cancel().await;
        stamp_liveness(&core, SHARD_TICK_STOPPED);
        calls::install(None);
        if let Some(tracer) = core.tracer() {
            // The drained invocations' spans reach the collector before the host exits.
            tracer.shutdown();
        }
        let stats = core.stats();
        self.report(ShardReport::Stopped {
            shard: core.id(),
            stats,
        });
    }
}

/// Build actor `key`'s pool of at most `warm_instances` (see [`instances::WARM_START_PER_SHARD`]
/// for how many it makes now), unless one of the same module and size is there, and subscribe to the actor's subject if this is a new actor. The new pool is
/// complete before it replaces the old one (a failed build keeps the old pool serving);
/// instances of the old pool still running finish and are dropped when given back.
async fn set_pool(
    core: &Rc<ShardCore>,
    runtime: &Runtime,
    key: &str,
    compiled: CompiledActor,
    caps: Arc<Vec<String>>,
    warm_instances: u32,
) -> Result<u32, String> {
    if let Some(slot) = core.actors().borrow().get(key) {
        // Same module, same compiler, same size: nothing to do. A new tier (the optimised code
        // of an actor that started on the baseline compiler) swaps the pool like an update.
        if slot.module_hash == compiled.module_hash()
            && slot.tier == compiled.tier()
            && slot.warm_instances == warm_instances
        {
            return Ok(slot.pool.idle_count() as u32);
        }
    }
    // A new actor starts with a few warm instances and grows to what its calls need (up to
    // its warm set); a replaced pool (update, rescale, new tier) starts with as many, or with
    // what the old one had grown to if that is more.
    let warm_now = core
        .actors()
        .borrow()
        .get(key)
        .map_or(0, |slot| slot.pool.target())
        .max(instances::WARM_START_PER_SHARD);
    let pool = ActorPool::growing(
        runtime,
        &compiled,
        key,
        &caps,
        Arc::new(ShardHostCalls),
        guest_parker(),
        warm_instances as usize,
        warm_now,
    )
    .await
    .map_err(|e| e.to_string())?;
    let warm = pool.idle_count() as u32;
    let existing = core.actors().borrow().get(key).map(|slot| slot.sid);
    let sid = match existing {
        Some(sid) => sid,
        None => {
            let subject = core.actor_subject(key);
            let sid = core
                .outbox()
                .subscribe(&subject, Some(&subject))
                .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
            core.subjects().borrow_mut().insert(sid, Rc::from(key));
            sid
        }
    };
    let slot = ActorSlot {
        module_hash: compiled.module_hash().to_string(),
        tier: compiled.tier(),
        warm_instances,
        pool,
        sid,
    };
    let old = core.actors().borrow_mut().insert(Rc::from(key), slot);
    if let Some(old) = old {
        core.retire_pool(old.pool);
    }
    if existing.is_none() && core.config().conn.is_some() {
        // The server has the subscription before the control plane announces the actor.
        if !within(Duration::from_millis(FLUSH_WAIT_MS), core.outbox().confirmed()).await {
            tracing::warn!(shard = %core.id(), actor = key, "subscription not confirmed by NATS yet (down?)");
        }
    }
    Ok(warm)
}

/// Connect (retrying until it works), then read batches and hand them to the pipeline
/// (accepted invocations run, wait for room, or are answered "overloaded"), and reconnect when
/// the connection breaks.
///
/// The reader never stops reading to push back. A paused socket does not send work elsewhere:
/// NATS picks a queue-group member when a message arrives, and what it picked for a paused
/// connection waits in the server's buffer for it, past its callers' timeouts, until the server
/// cuts the connection as a slow consumer. Refusing at the bound answers the excess at once
/// (`overload::a_shard_full_of_runaway_guests…`: refusals after ~0.3 s where the pausing
/// reader gave them after 1.5 s, when a guest's deadline freed a slot).
async fn read_loop(core: Rc<ShardCore>, config: ConnConfig, mut reports: mpsc::Sender<ShardReport>) {
    let shard = core.id();
    let reports_for_queries = reports.clone();
    let link = Rc::clone(&core);
    let mut report = move |connected: bool, detail: String| {
        link.set_connected(connected);
        let _ = reports.try_send(ShardReport::Connection {
            shard,
            connected,
            detail,
        });
    };
    let mut wait = Duration::from_millis(FIRST_CONNECT_RETRY_MS);
    let mut conn = loop {
        match Conn::connect_with(config.clone(), Rc::clone(core.outbox())).await {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::warn!(%shard, error = %e, retry_ms = wait.as_millis() as u64, "shard cannot connect to NATS");
                report(false, e.to_string());
                rt::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(conn::RECONNECT_BACKOFF_MS_MAX));
            }
        }
    };
    tracing::info!(%shard, server = conn.server_id(), "shard connected to NATS");
    // The shard reports itself connected once the server has processed its subscriptions
    // (sent first on every connection): the PONG to a PING sent after them, which this loop
    // itself reads, so it keeps serving meanwhile.
    let mut queries = reports_for_queries;
    let mut confirming = Some(core.outbox().ping());
    let mut batch = Vec::with_capacity(256);
    let mut jobs = Vec::with_capacity(256);
    loop {
        batch.clear();
        match conn.read_batch(&mut batch).await {
            Ok(()) => {
                core.on_batch(&batch, &mut jobs);
                for job in jobs.drain(..) {
                    core.admit_or_queue(job);
                }
                ask_policy(&core, &mut queries);
                core.publish_counters();
                if confirming.is_some_and(|ping| core.outbox().answered(ping)) {
                    confirming = None;
                    tracing::debug!(%shard, "shard subscriptions confirmed by NATS");
                    report(true, conn.server_id().to_string());
                }
            }
            Err(e) => {
                tracing::warn!(%shard, error = %e, "shard NATS connection lost; reconnecting");
                report(false, e.to_string());
                if let Err(e) = conn.reconnect(None).await {
                    tracing::error!(%shard, error = %e, "shard gave up reconnecting");
                    return;
                }
                core.bump(|s| s.reconnects += 1);
                confirming = Some(core.outbox().ping());
            }
        }
    }
}

/// Ask the control plane about the pairs the last batch held invocations for; a query that
/// cannot be sent refuses what waits for it (a shard never waits on a decision unasked).
fn ask_policy(core: &Rc<ShardCore>, reports: &mut mpsc::Sender<ShardReport>) {
    for pair in core.take_policy_queries() {
        let query = ShardReport::PolicyQuery {
            shard: core.id(),
            pair: pair.clone(),
        };
        if reports.try_send(query).is_err() {
            core.bump(|s| s.reports_dropped += 1);
            core.policy_unasked(&pair);
        }
    }
}

/// Publish the shard's liveness stamp (read by the health probe, `control::probes`).
fn stamp_liveness(core: &ShardCore, tick_ms: u64) {
    if let Some(counters) = core.config().counters.get(usize::from(core.id().0)) {
        counters.stamp_tick(tick_ms);
    }
}

/// Send the counters every [`STATS_REPORT_INTERVAL_MS`] when they changed, and release idle
/// warm instances once per `--warm-release-secs`. Each tick stamps the shard's liveness: a
/// timer task that ran proves the executor turns over.
async fn report_stats(core: Rc<ShardCore>, mut reports: mpsc::Sender<ShardReport>) {
    let mut last = ShardStats::default();
    let mut last_release = Instant::now();
    loop {
        stamp_liveness(&core, monotonic_ms());
        rt::sleep(Duration::from_millis(STATS_REPORT_INTERVAL_MS)).await;
        if core
            .config()
            .warm_release
            .is_some_and(|period| last_release.elapsed() >= period)
        {
            core.release_idle();
            last_release = Instant::now();
        }
        core.note_holdings();
        core.publish_counters();
        let stats = core.stats();
        if stats != last
            && reports
                .try_send(ShardReport::Stats {
                    shard: core.id(),
                    stats,
                })
                .is_ok()
        {
            last = stats;
        }
    }
}

/// Start shard `id` on its own executor thread (of `config.backend`), pinned to `cpu` when
/// given. It reports [`ShardReport::Started`] once running and [`ShardReport::Stopped`] when
/// its command channel closes or it receives [`ShardCommand::Stop`].
pub fn spawn(
    id: ShardId,
    cpu: Option<usize>,
    runtime: Runtime,
    config: ShardConfig,
    commands: mpsc::Receiver<ShardCommand>,
    reports: mpsc::Sender<ShardReport>,
) -> std::io::Result<rt::ExecutorHandle> {
    let spec = rt::ExecutorSpec {
        backend: config.backend,
        name: id.to_string(),
        cpu,
        io_memory_bytes: SHARD_IO_MEMORY_BYTES,
    };
    rt::start_executor(spec, move || async move {
        let core = Rc::new(ShardCore::new(id, config, Rc::new(Outbox::new())));
        let shard = Shard {
            core,
            runtime,
            reports,
            http: http::Listeners::default(),
            messaging: messaging::Subscriptions::default(),
        };
        shard.run(commands, cpu).await
    })
}
