//! The only types that cross between the control plane and the shards.
//!
//! Control → shard: [`ShardCommand`] over one bounded channel per shard. Shard → control:
//! [`ShardReport`] over one shared bounded channel; a shard uses `try_send` and never blocks
//! on it (a report that does not fit is counted and folded into the next one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::config_nats::NatsAuth;
use crate::routing::RoutingSnapshot;
use crate::runtime::CompiledActor;
pub use crate::shard::rt::{
    allowed_cpus, resolve as resolve_shard_io, Backend as ShardBackend, ExecutorHandle as ShardThread, ShardIo,
};

/// Settings of a shard's own NATS connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// `host:port` of each configured server.
    pub servers: Vec<String>,
    pub auth: NatsAuth,
    /// Name shown in the server's monitoring.
    pub name: String,
    /// TLS settings (roots, client certificate) for when TLS is asked for or the server
    /// requires it; `None`: plain connections only.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Whether the operator asked for TLS (`--rpc-tls`): a server that offers none is refused.
    pub require_tls: bool,
}

/// Index of a shard, 0-based, dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// Control plane → shard.
#[derive(Debug, Clone)]
pub enum ShardCommand {
    /// Swap in new routing tables between batches.
    Routing(Arc<RoutingSnapshot>),
    /// Keep `warm_instances` ready instances of actor `key` built from `compiled` (replacing a
    /// pool of another module: calls in flight finish on their leased instances).
    ActorPool {
        key: String,
        compiled: CompiledActor,
        caps: Arc<Vec<String>>,
        warm_instances: u32,
    },
    /// Drop actor `key`'s pool.
    ActorStop { key: String },
    /// A policy decision for invocations of `pair` (the control plane's answer to a
    /// [`ShardReport::PolicyQuery`], or a change the policy service announced).
    Policy { pair: PolicyPair, verdict: PolicyVerdict },
    /// Listen for the built-in HTTP server on exactly these routes: open the new ones, close
    /// those gone (after their requests in flight).
    HttpRoutes(Arc<Vec<HttpListen>>),
    /// Keep exactly these subscriptions of the built-in messaging provider.
    MessagingRoutes(Arc<Vec<crate::builtin::routes::MessagingRoute>>),
    /// Finish in-flight work and stop.
    Stop,
}

/// One route of the built-in HTTP server as the shards serve it: the link's route and, for
/// HTTPS, the TLS configuration the control plane read from the link's files.
#[derive(Debug, Clone)]
pub struct HttpListen {
    pub route: crate::builtin::routes::HttpRoute,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A caller and callee the policy service decides invocations for, as a shard sees them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyPair {
    /// The invocation origin's public key (an actor's `M…` or a provider's `V…`).
    pub origin: String,
    /// The origin's link name when it is a provider; empty for an actor.
    pub link_name: String,
    /// The invoked actor's public key.
    pub target: String,
}

/// What a shard does with invocations of a [`PolicyPair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// `None`: permitted; `Some(error)`: answered with this error ("Policy denied …").
    pub denial: Option<Arc<str>>,
    /// Whether shards keep it for later invocations. A denial the host made because the
    /// service gave no decision (timeout, garbage) is not kept: the next invocation asks again.
    pub lasting: bool,
}

/// What every shard needs to serve invocations, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The shard's own NATS connection (the host's rpc endpoint); `None` runs the shard
    /// without NATS (pools only: unit tests and benches).
    pub conn: Option<ConnConfig>,
    pub lattice: String,
    /// The host id (`N…`) put in outbound invocations.
    pub host_id: String,
    /// Signs outbound invocations (§3.2).
    pub cluster_key: Arc<nkeys::KeyPair>,
    /// How long an outbound call waits for its reply (`--rpc-timeout-ms`).
    pub rpc_timeout: Duration,
    /// Invocations a shard runs at once before it stops reading its socket.
    pub inflight_max: usize,
    /// Where payloads over the chunking threshold go (the control plane's object store
    /// worker); `None`: chunked payloads are refused with an error.
    pub chunks: Option<futures::channel::mpsc::Sender<ChunkRequest>>,
    /// Every shard's counters as atomics, indexed by shard: shard `i` writes entry `i` only,
    /// the control plane (metrics) reads them without a message or a lock.
    pub counters: Arc<Vec<ShardCounters>>,
    /// How long a stopping shard waits for the invocations it accepted (`--drain-timeout-ms`).
    pub drain_timeout: Duration,
    /// How long warm instances may sit unused before the shard releases those its recent
    /// concurrency did not need (`--warm-release-secs`); `None` = never.
    pub warm_release: Option<Duration>,
    /// The executor the shard runs on (`--shard-io`, resolved at start).
    pub backend: ShardBackend,
    /// A policy service decides invocations (`--policy-topic`): an invocation of a pair the
    /// shard has no verdict for waits for one.
    pub policy: bool,
    /// Where the shard's invocation spans go (`--otel-traces-exporter otlp`); `None`: the
    /// shard records no spans (it still carries a caller's trace context on).
    pub traces: Option<crate::telemetry::ShardExport>,
    /// Serve a guest's call to an actor of this host on the calling shard (`--local-calls`);
    /// `false` sends every call through the lattice.
    pub local_calls: bool,
    /// How long a built-in HTTP server client may take to send a request head.
    pub http_header_read_timeout: Duration,
}

impl ShardConfig {
    /// A shard without NATS (pools only), for tests and benches.
    pub fn offline() -> ShardConfig {
        ShardConfig {
            conn: None,
            lattice: "default".to_string(),
            host_id: nkeys::KeyPair::new_server().public_key(),
            cluster_key: Arc::new(nkeys::KeyPair::new_cluster()),
            rpc_timeout: Duration::from_millis(2_000),
            inflight_max: 1_024,
            chunks: None,
            counters: Arc::new(vec![ShardCounters::default()]),
            drain_timeout: Duration::from_millis(DRAIN_TIMEOUT_MS_DEFAULT),
            warm_release: None,
            backend: ShardBackend::IoUring,
            policy: false,
            traces: None,
            local_calls: true,
            http_header_read_timeout: Duration::from_millis(10_000),
        }
    }
}

/// Default of `--drain-timeout-ms`: how long a stopping host waits for the invocations it
/// accepted before it answers the rest "host stopping" (here, beside the shard configuration
/// that carries it, so the planes' types need nothing from `config.rs`).
pub const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Payloads larger than this go through the object store (PROTOCOL §2.6: 900 KiB).
pub const CHUNK_THRESHOLD_BYTES: usize = 900 * 1024;

/// Object store work a shard hands to the control plane (§2.6): the shard never blocks on it,
/// it awaits `done` while serving other invocations.
#[derive(Debug)]
pub struct ChunkRequest {
    pub op: ChunkOp,
    pub done: futures::channel::oneshot::Sender<Result<bytes::Bytes, String>>,
}

/// One object store operation on the bucket named after the lattice.
#[derive(Debug)]
pub enum ChunkOp {
    /// Read object `key` and delete it (the receiver of a chunked payload owns it).
    Take(String),
    /// Store `bytes` as object `key` (the sender of a chunked payload); `done` gets empty bytes.
    Put(String, bytes::Bytes),
}

/// Plain counters a shard keeps (no atomics: only the owning shard writes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Commands received from the control plane.
    pub commands_received: u64,
    /// Routing snapshots swapped in.
    pub routing_swaps: u64,
    /// Reports that did not fit in the report channel.
    pub reports_dropped: u64,
    /// Messages received on actor subjects.
    pub received: u64,
    /// Invocations answered with the guest's result.
    pub served: u64,
    /// Refused before reaching a guest, by reason.
    pub rejected_decode: u64,
    pub rejected_auth: u64,
    pub rejected_capability: u64,
    pub rejected_target: u64,
    pub rejected_not_running: u64,
    /// Answered "overloaded": the in-flight bound and the waiting room were both full.
    pub rejected_overload: u64,
    /// Answered "host stopping": accepted, still queued when the drain timeout passed.
    pub rejected_stopping: u64,
    /// Answered "Policy denied …" (`--policy-topic`).
    pub rejected_policy: u64,
    /// Invocations that waited for a policy decision the shard did not have yet.
    pub policy_held: u64,
    /// Accepted while the shard was at its bound and run later.
    pub queued: u64,
    /// Invocations that reached a guest and failed (trap, deadline, guest error …).
    pub guest_errors: u64,
    /// Replies that could not be written (too large, bad reply subject).
    pub reply_failures: u64,
    /// Invocations without a reply subject (nobody to answer; counted and logged).
    pub no_reply_subject: u64,
    /// Running now.
    pub inflight: u64,
    /// Socket reads that carried invocations, and the invocations they carried.
    pub batches: u64,
    pub batched_invocations: u64,
    pub batch_max: u64,
    /// Nanoseconds spent verifying signatures (all batches).
    pub verify_ns: u64,
    /// Outbound calls (`__host_call` to providers and actors): sent, failed, timed out.
    pub calls_sent: u64,
    pub calls_failed: u64,
    pub calls_timed_out: u64,
    /// Outbound calls to actors of this host handled on the calling shard (no NATS): served,
    /// failed, or refused (policy, overload); not in `received` or `served`.
    pub calls_local: u64,
    /// Requests the built-in HTTP server read on this shard's connections (all outcomes).
    pub http_requests: u64,
    /// Of those, answered by the host without the actor's response: 405 (read-only), 413
    /// (body too large), 503 (overloaded), 500 (the invocation failed).
    pub http_refused: u64,
    /// Of those, sent through the lattice (the linked actor does not run on this host).
    pub http_forwarded: u64,
    /// HTTP connections open on this shard now.
    pub http_connections: u64,
    /// Messages the built-in messaging provider delivered to actors from this shard's
    /// subscriptions (all outcomes), and those whose delivery failed.
    pub messages_delivered: u64,
    pub messages_failed: u64,
    /// Publishes and requests actors made through the built-in messaging provider.
    pub messages_published: u64,
    /// Payloads moved through the object store (in and out).
    pub chunked: u64,
    /// Reconnects of the shard's NATS connection.
    pub reconnects: u64,
    /// Actor instances the shard holds, idle and running (all pools, draining ones too).
    pub instances: u64,
    /// Their linear memory in bytes: what they can keep resident.
    pub instance_memory_bytes: u64,
    /// Virtual address space of the pooling slots they occupy (memory slot with its guard,
    /// fiber stack, table), bytes: reserved, resident only where touched.
    pub instance_reserved_bytes: u64,
    /// Idle instances released because the shard's recent concurrency did not need them.
    pub instances_released_idle: u64,
    /// Instances dropped on return because their memory grew past `--instance-memory-keep-mib`.
    pub instances_released_memory: u64,
}

impl ShardStats {
    /// Field names, in the order of [`ShardStats::values`] (metric names derive from them).
    pub const FIELD_NAMES: [&'static str; SHARD_STATS_FIELDS] = [
        "commands_received",
        "routing_swaps",
        "reports_dropped",
        "received",
        "served",
        "rejected_decode",
        "rejected_auth",
        "rejected_capability",
        "rejected_target",
        "rejected_not_running",
        "rejected_overload",
        "rejected_stopping",
        "rejected_policy",
        "policy_held",
        "queued",
        "guest_errors",
        "reply_failures",
        "no_reply_subject",
        "inflight",
        "batches",
        "batched_invocations",
        "batch_max",
        "verify_ns",
        "calls_sent",
        "calls_failed",
        "calls_timed_out",
        "calls_local",
        "http_requests",
        "http_refused",
        "http_forwarded",
        "http_connections",
        "messages_delivered",
        "messages_failed",
        "messages_published",
        "chunked",
        "reconnects",
        "instances",
        "instance_memory_bytes",
        "instance_reserved_bytes",
        "instances_released_idle",
        "instances_released_memory",
    ];
    /// Fields that are levels, not running totals.
    pub const GAUGES: [&'static str; 6] = [
        "inflight",
        "http_connections",
        "batch_max",
        "instances",
        "instance_memory_bytes",
        "instance_reserved_bytes",
    ];

    /// The values, in the order of [`ShardStats::FIELD_NAMES`].
    pub fn values(&self) -> [u64; SHARD_STATS_FIELDS] {
        // Destructured without `..`: a field added to ShardStats fails to compile here until
        // it is listed (and named in FIELD_NAMES).
        let ShardStats {
            commands_received,
            routing_swaps,
            reports_dropped,
            received,
            served,
            rejected_decode,
            rejected_auth,
            rejected_capability,
            rejected_target,
            rejected_not_running,
            rejected_overload,
            rejected_stopping,
            rejected_policy,
            policy_held,
            queued,
            guest_errors,
            reply_failures,
            no_reply_subject,
            inflight,
            batches,
            batched_invocations,
            batch_max,
            verify_ns,
            calls_sent,
            calls_failed,
            calls_timed_out,
            calls_local,
            http_requests,
            http_refused,
            http_forwarded,
            http_connections,
            messages_delivered,
            messages_failed,
            messages_published,
            chunked,
            reconnects,
            instances,
            instance_memory_bytes,
            instance_reserved_bytes,
            instances_released_idle,
            instances_released_memory,
        } = *self;
        [
            commands_received,
            routing_swaps,
            reports_dropped,
            received,
            served,
            rejected_decode,
            rejected_auth,
            rejected_capability,
            rejected_target,
            rejected_not_running,
            rejected_overload,
            rejected_stopping,
            rejected_policy,
            policy_held,
            queued,
            guest_errors,
            reply_failures,
            no_reply_subject,
            inflight,
            batches,
            batched_invocations,
            batch_max,
            verify_ns,
            calls_sent,
            calls_failed,
            calls_timed_out,
            calls_local,
            http_requests,
            http_refused,
            http_forwarded,
            http_connections,
            messages_delivered,
            messages_failed,
            messages_published,
            chunked,
            reconnects,
            instances,
            instance_memory_bytes,
            instance_reserved_bytes,
            instances_released_idle,
            instances_released_memory,
        ]
    }
}

/// Number of [`ShardStats`] fields.
pub const SHARD_STATS_FIELDS: usize = 41;

/// A shard's liveness stamp once it has stopped on purpose (its command loop ended): the
/// health probe tells "stopped" apart from "stalled".
pub const SHARD_TICK_STOPPED: u64 = u64::MAX;

/// Milliseconds on one monotonic clock the planes share for liveness stamps, counted from the
/// first call in the process; never 0, so a stamp of 0 means "never stamped".
pub fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX - 1).max(1)
}

/// One shard's counters as relaxed atomics on their own cache lines (crossbeam's
/// `CachePadded`), so shards never share a line. The shard stores its plain [`ShardStats`]
/// here after every batch and every report tick; readers see a value at most that old.
#[derive(Debug)]
pub struct ShardCounters {
    values: CachePadded<ShardCells>,
}

#[derive(Debug)]
struct ShardCells {
    stats: [AtomicU64; SHARD_STATS_FIELDS],
    /// [`monotonic_ms`] at the shard's last report tick (its executor ran a timer task then);
    /// 0 before the first, [`SHARD_TICK_STOPPED`] after the shard stopped.
    tick_ms: AtomicU64,
}

impl Default for ShardCounters {
    fn default() -> ShardCounters {
        ShardCounters {
            values: CachePadded::new(ShardCells {
                stats: std::array::from_fn(|_| AtomicU64::new(0)),
                tick_ms: AtomicU64::new(0),
            }),
        }
    }
}

impl ShardCounters {
    /// Publish `stats` (the owning shard only).
    pub fn store(&self, stats: &ShardStats) {
        for (slot, value) in self.values.stats.iter().zip(stats.values()) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// The values last published, in the order of [`ShardStats::FIELD_NAMES`].
    pub fn load(&self) -> [u64; SHARD_STATS_FIELDS] {
        let mut out = [0u64; SHARD_STATS_FIELDS];
        for (slot, value) in out.iter_mut().zip(self.values.stats.iter()) {
            *slot = value.load(Ordering::Relaxed);
        }
        out
    }

    /// Stamp the liveness tick with `tick_ms` (the owning shard only): [`monotonic_ms`] now, or
    /// [`SHARD_TICK_STOPPED`] as the shard's last act.
    pub fn stamp_tick(&self, tick_ms: u64) {
        self.values.tick_ms.store(tick_ms, Ordering::Relaxed);
    }

    /// The last liveness stamp (see [`ShardCounters::stamp_tick`]).
    pub fn tick_ms(&self) -> u64 {
        self.values.tick_ms.load(Ordering::Relaxed)
    }
}

/// Shard → control plane.
#[derive(Debug, Clone)]
pub enum ShardReport {
    /// The shard's executor is running on `cpu` (None when it is not pinned).
    Started { shard: ShardId, cpu: Option<usize> },
    /// The shard now routes with snapshot `version`.
    RoutingApplied {
        shard: ShardId,
        version: u64,
        stats: ShardStats,
    },
    /// The shard's pool for actor `key` holds `warm` ready instances (0 after a stop).
    ActorPoolReady { shard: ShardId, key: String, warm: u32 },
    /// The shard could not build actor `key`'s pool.
    ActorPoolFailed { shard: ShardId, key: String, error: String },
    /// The shard's NATS connection is up (`connected`) or lost.
    Connection {
        shard: ShardId,
        connected: bool,
        detail: String,
    },
    /// Periodic counters.
    Stats { shard: ShardId, stats: ShardStats },
    /// The shard holds invocations of `pair` until the policy service decides them.
    PolicyQuery { shard: ShardId, pair: PolicyPair },
    /// The shard listens on `address` for the built-in HTTP server (`error`: it cannot).
    HttpListen {
        shard: ShardId,
        address: std::net::SocketAddr,
        error: Option<String>,
    },
    /// The shard finished; these are its final counters.
    Stopped { shard: ShardId, stats: ShardStats },
}
