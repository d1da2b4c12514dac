//! [`ShardCore`]: the state every task of one shard shares through an `Rc` — its routing
//! snapshot, its actors' pools and subscriptions, its counters, the in-flight bound and the
//! waiting room, its pending outbound calls, its guests' turns and the buffers its batch
//! stages reuse.
//!
//! Data plane. The fields are private: the other shard files reach them through the methods
//! below (small ones `#[inline]`, so the hot path pays no call for them), and a `RefCell` one
//! hands out is only ever borrowed between awaits, never across one. The pipeline that runs
//! on this state is in [`super::serve`]; the pools' lifecycle in [`super::instances`]. Must
//! never block, lock, or hold a borrow over an await.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::verify_batch::IssuerKeyCache;
use crate::plane::{ChunkOp, ChunkRequest, PolicyPair, ShardConfig, ShardId, ShardStats};
use crate::routing::RoutingSnapshot;
use crate::runtime::{ActorPool, Tier};

use super::batch::{BatchBuffers, Job};
use super::inbox::Calls;
use super::notify::Notify;
use super::outbox::Outbox;
use super::policy::PolicyGate;
use super::trace::ShardTracer;
use super::turns::{Turns, GUESTS_RUNNING_MAX};

/// Reply when a chunked payload arrives and the shard has no object store.
pub const NO_OBJECT_STORE: &str = "Chunked payloads need the lattice object store, which this host cannot reach";

/// One actor's warm instances on this shard.
pub(crate) struct ActorSlot {
    pub module_hash: String,
    pub tier: Tier,
    pub warm_instances: u32,
    pub pool: ActorPool,
    /// Our subscription to the actor's subject.
    pub sid: u64,
}

/// A subscription of the built-in messaging provider: whose messages these are.
pub(crate) struct MessagingSub {
    pub actor: Rc<str>,
    pub link_name: Rc<str>,
}

/// A connection of the built-in messaging provider to a NATS other than the lattice's: its
/// write side, its own inbox for `Messaging.Request` replies, and its subscriptions.
pub(crate) struct MessagingConn {
    pub outbox: Rc<Outbox>,
    pub calls: Calls,
    pub subs: RefCell<HashMap<u64, Rc<MessagingSub>>>,
}

/// actor key → link name → the messaging connection its calls use (absent: the shard's own).
pub(crate) type MessagingConns = HashMap<Rc<str>, HashMap<Rc<str>, Rc<MessagingConn>>>;

/// State shared by every task of one shard.
pub(crate) struct ShardCore {
    id: ShardId,
    config: ShardConfig,
    outbox: Rc<Outbox>,
    routing: RefCell<Arc<RoutingSnapshot>>,
    /// Actor key → its pool and subscription.
    actors: RefCell<HashMap<Rc<str>, ActorSlot>>,
    /// Pools replaced (update, rescale) or stopped that still have instances leased; dropped
    /// once the last one comes back.
    draining: RefCell<Vec<ActorPool>>,
    /// sid → actor key.
    subjects: RefCell<HashMap<u64, Rc<str>>>,
    /// sid → the built-in messaging subscription it is.
    messaging: RefCell<HashMap<u64, Rc<MessagingSub>>>,
    /// Links of the built-in messaging provider to another NATS.
    messaging_conns: RefCell<MessagingConns>,
    keys: RefCell<IssuerKeyCache>,
    stats: Cell<ShardStats>,
    inflight: Cell<usize>,
    /// Accepted invocations waiting for room (at most `inflight_max`); started as running
    /// ones finish.
    queue: RefCell<VecDeque<Job>>,
    /// Woken when nothing runs and nothing waits (a stopping shard waits on it).
    quiet: Notify,
    /// Set at stop: finishing invocations no longer start queued ones.
    stopping: Cell<bool>,
    /// Whether the shard's NATS connection is up (set by its reader).
    connected: Cell<bool>,
    calls: Calls,
    /// Pools (by id) with a refill task running.
    refilling: RefCell<Vec<u64>>,
    /// Guests on the CPU at once, and those waiting for a turn.
    turns: Turns,
    /// The batch stages' buffers, taken by each batch and put back: after the first batches
    /// no batch allocates for its own bookkeeping.
    batch: RefCell<BatchBuffers>,
    /// Policy verdicts and the invocations waiting for one (`--policy-topic`).
    policy: RefCell<PolicyGate<Job>>,
    /// Pairs to ask the control plane about (sent by the reader after each batch).
    policy_queries: RefCell<Vec<PolicyPair>>,
    /// Invocation spans (`None`: telemetry off, no tracing work at all).
    tracer: Option<ShardTracer>,
}

impl ShardCore {
    pub fn new(id: ShardId, config: ShardConfig, outbox: Rc<Outbox>) -> ShardCore {
        let calls = Calls::new(id);
        let config_inflight_max = config.inflight_max;
        let config_policy = config.policy;
        let tracer = config.traces.as_ref().and_then(|export| match export.pipeline() {
            Ok(spans) => Some(ShardTracer::new(spans)),
            Err(e) => {
                tracing::error!(shard = %id, error = %format!("{e:#}"), "no span export on this shard");
                None
            }
        });
        ShardCore {
            id,
            config,
            outbox,
            routing: RefCell::new(Arc::new(RoutingSnapshot::default())),
            actors: RefCell::new(HashMap::new()),
            draining: RefCell::new(Vec::new()),
            subjects: RefCell::new(HashMap::new()),
            messaging: RefCell::new(HashMap::new()),
            messaging_conns: RefCell::new(HashMap::new()),
            keys: RefCell::new(IssuerKeyCache::new()),
            stats: Cell::new(ShardStats::default()),
            inflight: Cell::new(0),
            queue: RefCell::new(VecDeque::new()),
            quiet: Notify::default(),
            stopping: Cell::new(false),
            connected: Cell::new(false),
            calls,
            refilling: RefCell::new(Vec::new()),
            turns: Turns::new(GUESTS_RUNNING_MAX.min(config_inflight_max)),
            batch: RefCell::new(BatchBuffers::default()),
            policy: RefCell::new(PolicyGate::new(config_policy)),
            policy_queries: RefCell::new(Vec::new()),
            tracer,
        }
    }

    // -----------------------------------------------------------------------------------------
    // What the other shard files reach
    // -----------------------------------------------------------------------------------------

    /// The shard's span builder, when telemetry is on.
    #[inline]
    pub fn tracer(&self) -> Option<&ShardTracer> {
        self.tracer.as_ref()
    }

    #[inline]
    pub fn id(&self) -> ShardId {
        self.id
    }

    #[inline]
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// The connection's write side (frames queued here leave with the writer task).
    #[inline]
    pub fn outbox(&self) -> &Rc<Outbox> {
        &self.outbox
    }

    /// The routing snapshot in force; borrow it only between awaits.
    #[inline]
    pub fn routing(&self) -> Ref<'_, Arc<RoutingSnapshot>> {
        self.routing.borrow()
    }

    /// Swap in `snapshot` (between batches: a batch holds its own `Arc` of the old one).
    pub fn set_routing(&self, snapshot: Arc<RoutingSnapshot>) {
        *self.routing.borrow_mut() = snapshot;
    }

    /// Actor key → its pool and subscription.
    #[inline]
    pub fn actors(&self) -> &RefCell<HashMap<Rc<str>, ActorSlot>> {
        &self.actors
    }

    /// Retired pools that still have instances leased.
    #[inline]
    pub fn draining(&self) -> &RefCell<Vec<ActorPool>> {
        &self.draining
    }

    /// sid → actor key.
    #[inline]
    pub fn subjects(&self) -> &RefCell<HashMap<u64, Rc<str>>> {
        &self.subjects
    }

    /// sid → the built-in messaging subscription it is.
    #[inline]
    pub fn messaging(&self) -> &RefCell<HashMap<u64, Rc<MessagingSub>>> {
        &self.messaging
    }

    /// Links of the built-in messaging provider to another NATS, and their connections.
    #[inline]
    pub fn messaging_conns(&self) -> &RefCell<MessagingConns> {
        &self.messaging_conns
    }

    /// The messaging connection `actor`'s calls on `link_name` use, if not the shard's own.
    pub fn messaging_conn(&self, actor: &str, link_name: &str) -> Option<Rc<MessagingConn>> {
        self.messaging_conns.borrow().get(actor)?.get(link_name).cloned()
    }

    /// Decoded issuer keys, for the batch verification.
    #[inline]
    pub fn keys(&self) -> &RefCell<IssuerKeyCache> {
        &self.keys
    }

    /// The pending outbound calls and the shard's inbox.
    #[inline]
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Pools (by id) with a refill task running.
    #[inline]
    pub fn refilling(&self) -> &RefCell<Vec<u64>> {
        &self.refilling
    }

    /// Guests on the CPU at once, and those waiting for a turn.
    #[inline]
    pub fn turns(&self) -> &Turns {
        &self.turns
    }

    /// The batch stages' buffers; a batch takes them and puts them back.
    #[inline]
    pub fn batch_buffers(&self) -> &RefCell<BatchBuffers> {
        &self.batch
    }

    /// Woken when nothing runs and nothing waits.
    #[inline]
    pub fn quiet(&self) -> &Notify {
        &self.quiet
    }

    /// Whether the shard is stopping (finishing invocations start no queued ones).
    #[inline]
    pub fn stopping(&self) -> bool {
        self.stopping.get()
    }

    pub fn set_stopping(&self) {
        self.stopping.set(true);
    }

    /// Whether the shard's NATS connection is up.
    #[inline]
    pub fn connected(&self) -> bool {
        self.connected.get()
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(connected);
    }

    // -----------------------------------------------------------------------------------------
    // Counters
    // -----------------------------------------------------------------------------------------

    /// The counters now.
    #[inline]
    pub fn stats(&self) -> ShardStats {
        self.stats.get()
    }

    /// Publish the counters to this shard's atomics (after each batch and each report tick).
    pub fn publish_counters(&self) {
        if let Some(counters) = self.config.counters.get(usize::from(self.id.0)) {
            counters.store(&self.stats.get());
        }
    }

    /// Update the counters.
    #[inline]
    pub fn bump(&self, f: impl FnOnce(&mut ShardStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    // -----------------------------------------------------------------------------------------
    // The in-flight bound and the waiting room (the policy is in `serve.rs`)
    // -----------------------------------------------------------------------------------------

    #[inline]
    pub fn inflight(&self) -> usize {
        self.inflight.get()
    }

    /// Count one more invocation running; returns how many run now.
    #[inline]
    pub fn enter(&self) -> usize {
        let now = self.inflight.get() + 1;
        self.inflight.set(now);
        self.bump(|s| s.inflight = now as u64);
        now
    }

    /// Count one invocation finished; returns how many still run.
    #[inline]
    pub fn leave(&self) -> usize {
        let now = self.inflight.get().saturating_sub(1);
        self.inflight.set(now);
        self.bump(|s| s.inflight = now as u64);
        now
    }

    /// Whether the shard is at its in-flight bound.
    #[inline]
    pub fn saturated(&self) -> bool {
        self.inflight.get() >= self.config.inflight_max
    }

    /// Invocations accepted and waiting: for room, or for a policy decision.
    #[inline]
    pub fn queued(&self) -> usize {
        self.queue.borrow().len() + self.policy.borrow().held()
    }

    /// Whether the waiting room is full too.
    #[inline]
    pub fn queue_full(&self) -> bool {
        self.queued() >= self.config.inflight_max
    }

    /// Invocations the shard can still take: free slots plus free places in the waiting room.
    #[inline]
    pub fn room(&self) -> usize {
        (2 * self.config.inflight_max).saturating_sub(self.inflight() + self.queued())
    }

    /// Put `job` last in the waiting room (the caller checked [`Self::queue_full`]).
    pub fn push_queued(&self, job: Job) {
        self.queue.borrow_mut().push_back(job);
    }

    /// The job that waited longest, if any.
    pub fn pop_queued(&self) -> Option<Job> {
        self.queue.borrow_mut().pop_front()
    }

    /// Empty the waiting room and what waits for a policy decision (a stopping shard past its
    /// drain timeout).
    pub fn take_queued(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.queue.borrow_mut().drain(..).collect();
        jobs.extend(self.policy.borrow_mut().release_all());
        jobs
    }

    /// The policy verdicts and the invocations held for one.
    #[inline]
    pub fn policy(&self) -> &RefCell<PolicyGate<Job>> {
        &self.policy
    }

    /// Pairs whose first invocation was held since the reader last asked.
    pub fn policy_queries(&self) -> &RefCell<Vec<PolicyPair>> {
        &self.policy_queries
    }

    // -----------------------------------------------------------------------------------------
    // Subjects and the object store
    // -----------------------------------------------------------------------------------------

    /// The subject a running actor is served on.
    pub fn actor_subject(&self, actor: &str) -> String {
        format!("wasmbus.rpc.{}.{actor}", self.config.lattice)
    }

    /// Fetch a chunked payload (§2.6) through the control plane's object store worker.
    pub async fn take_object(&self, key: String) -> Result<Bytes, String> {
        self.object(ChunkOp::Take(key)).await
    }

    /// Store a payload as an object before sending it chunked.
    pub async fn put_object(&self, key: String, bytes: Bytes) -> Result<(), String> {
        self.object(ChunkOp::Put(key, bytes)).await.map(|_| ())
    }

    async fn object(&self, op: ChunkOp) -> Result<Bytes, String> {
        let Some(mut chunks) = self.config.chunks.clone() else {
            return Err(NO_OBJECT_STORE.to_string());
        };
        let (done, result) = futures::channel::oneshot::channel();
        if chunks.try_send(ChunkRequest { op, done }).is_err() {
            return Err("the object store worker is busy or gone".to_string());
        }
        self.bump(|s| s.chunked += 1);
        result
            .await
            .unwrap_or_else(|_| Err("the object store worker dropped the request".to_string()))
    }
}
