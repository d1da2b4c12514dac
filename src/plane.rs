//! The only types that cross between the control plane and the shards.
//!
//! Control → shard: [`ShardCommand`] over one bounded channel per shard. Shard → control:
//! [`ShardReport`] over one shared bounded channel; a shard uses `try_send` and never blocks
//! on it (a report that does not fit is counted and folded into the next one).

use std::sync::Arc;

use crate::routing::RoutingSnapshot;
use crate::runtime::CompiledActor;

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
    /// Finish in-flight work and stop.
    Stop,
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
    /// The shard finished; these are its final counters.
    Stopped { shard: ShardId, stats: ShardStats },
}
