//! The host's linear-memory budget (`--memory-budget-mib`) on the control plane: before an
//! actor's warm set grows, check that it fits. The runtime enforces the same budget on every
//! memory it creates or grows ([`crate::runtime::budget`]); this check turns a start or scale
//! that cannot fit into one clear refusal instead of pools that fail instance by instance.
//! Owns the size of an actor's warm set per shard ([`warm_per_shard`] and its bounds), which
//! both this check and the actor operations use.

use super::actors::{ActorTable, RunningActor};
use super::ControlPlane;
use crate::runtime::budget::BYTES_PER_MIB;
use crate::runtime::CompiledActor;

/// Warm instances a shard keeps for an actor whose max concurrency is unbounded.
pub const WARM_INSTANCES_UNBOUNDED_PER_SHARD: u32 = 4;
/// Most warm instances a shard keeps per actor, whatever the requested concurrency.
pub const WARM_INSTANCES_PER_SHARD_MAX: u32 = 64;

impl ControlPlane {
    /// `Err` with the reason when `change` (applied to a copy of the actor table) would give
    /// `key` a warm set whose initial linear memory does not fit `--memory-budget-mib` beside
    /// what the instances of every actor hold now. A shard builds a resized pool whole before
    /// it retires the old one (no call waits for a cold instance), so for a moment both are
    /// held: the check counts the whole new set, not the difference. Instances created later
    /// on demand (past the warm set) and memory a guest grows are held to the same budget by
    /// the runtime itself ([`crate::runtime::budget`]).
    pub(super) fn check_memory_budget(
        &self,
        key: &str,
        compiled: &CompiledActor,
        change: impl FnOnce(&mut ActorTable),
    ) -> Result<(), String> {
        let budget = self.preparer.runtime.memory_budget();
        let Some(limit) = budget.limit_bytes() else {
            return Ok(());
        };
        let shards = self.shards.len().max(1) as u32;
        let before = self.actors.actors.get(key).map_or(0, |a| warm_per_shard(a, shards));
        let mut table = self.actors.clone();
        change(&mut table);
        let after = table.actors.get(key).map_or(0, |a| warm_per_shard(a, shards));
        if after == before || after == 0 {
            return Ok(());
        }
        let added = u64::from(after) * u64::from(shards);
        let bytes = added.saturating_mul(compiled.initial_memory_bytes());
        if budget.fits(usize::try_from(bytes).unwrap_or(usize::MAX)) {
            return Ok(());
        }
        let mib = |b: u64| b as f64 / BYTES_PER_MIB as f64;
        Err(format!(
            "memory budget exceeded: a warm set of {added} instances of {key} needs {:.1} MiB of linear memory \
             and {:.1} of the host's {:.1} MiB are in use (--memory-budget-mib)",
            mib(bytes),
            mib(budget.used_bytes() as u64),
            mib(limit as u64)
        ))
    }
}

/// Warm instances each of `shards` shards keeps for `actor`: its max concurrency spread over
/// the shards, at least one, at most [`WARM_INSTANCES_PER_SHARD_MAX`].
pub(super) fn warm_per_shard(actor: &RunningActor, shards: u32) -> u32 {
    let total = actor.concurrency(WARM_INSTANCES_UNBOUNDED_PER_SHARD * shards);
    total.div_ceil(shards).clamp(1, WARM_INSTANCES_PER_SHARD_MAX)
}
