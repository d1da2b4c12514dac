//! Per-actor pools of warm instances ([`ActorPool`]; the instances themselves and the guest
//! call sequence are in [`super::instance`]): leasing, giving back, refilling, releasing idle
//! ones, plus the in-process entry points [`invoke`] and [`fresh_instance_invoke`] used by
//! tests and benches.
//!
//! Data plane: a pool lives on one shard and is used through `&mut self`; nothing is shared
//! between pools but the engine. The hot path (lease → call → give back) links nothing and
//! allocates only the response. Instances that trapped, overran their deadline or reached
//! `instance_max_invocations` are dropped on return and replaced by [`ActorPool::refill`], off
//! the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::abi::{self, ActorContext, HostCalls};
use super::builtins::BuiltinGrants;
use super::engine::{CompiledActor, Runtime};
pub use super::instance::{InstanceFactory, PoolStats, WarmInstance};
use super::{InvokeError, Parker, RuntimeError};

/// Most warm instances one pool keeps (its slots come out of `instance_slots_total`).
pub const POOL_SIZE_MAX: usize = 4_096;

/// Distinguishes pools, so an instance is never given back to the wrong one.
static POOL_IDS: AtomicU64 = AtomicU64::new(1);

/// What [`ActorPool::give_back`] did with an instance.
pub enum GiveBack {
    /// Back among the idle instances.
    Idle,
    /// Dropped: it failed (the error) or reached `instance_max_invocations` (`None`).
    Retired(Option<InvokeError>),
    /// Healthy but the pool was full.
    Trimmed,
    /// Healthy but its linear memory had grown past `instance_memory_keep_bytes`: dropped so
    /// its pages are released; the pool makes a fresh one.
    Shed,
    /// Not leased from this pool: returned unchanged (a caller bug; nothing was counted).
    Foreign(WarmInstance),
}

/// The warm instances of one actor on one shard.
pub struct ActorPool {
    factory: InstanceFactory,
    /// Most warm instances the pool keeps (the control plane's warm set for this shard).
    size: usize,
    /// Instances the pool keeps now (≤ `size`): `size` at first, lowered by
    /// [`Self::release_idle`] to the concurrency the pool saw, raised again as calls need more.
    target: usize,
    /// Most instances leased at once since the last [`Self::release_idle`].
    peak_leased: usize,
    /// Least recently used first: leases take from the end, releases from the front.
    idle: Vec<WarmInstance>,
    leased_count: usize,
    stats: PoolStats,
    /// Linear memory of its instances, idle and leased, as last seen (see [`Self::memory_bytes`]).
    memory_bytes: usize,
}

impl ActorPool {
    /// Link `compiled` once (an `InstancePre`) and create `size` warm, initialised instances.
    /// `caps` are the actor's claimed capabilities (they gate the builtins); `host_calls`
    /// serves calls leaving the host; `park` is how a busy guest yields (see [`Parker`]).
    pub async fn new(
        runtime: &Runtime,
        compiled: &CompiledActor,
        actor_key: &str,
        caps: &[String],
        host_calls: Arc<dyn HostCalls>,
        park: Parker,
        size: usize,
    ) -> Result<ActorPool, RuntimeError> {
        Self::growing(runtime, compiled, actor_key, caps, host_calls, park, size, size).await
    }

    /// Like [`Self::new`], but create only `warm_now` (at most `size`) instances: the pool
    /// starts at that target and grows toward `size` as calls find no idle instance.
    #[allow(clippy::too_many_arguments)]
    pub async fn growing(
        runtime: &Runtime,
        compiled: &CompiledActor,
        actor_key: &str,
        caps: &[String],
        host_calls: Arc<dyn HostCalls>,
        park: Parker,
        size: usize,
        warm_now: usize,
    ) -> Result<ActorPool, RuntimeError> {
        if !runtime.owns(compiled.module().engine()) {
            return Err(RuntimeError::ForeignModule {
                actor: actor_key.to_string(),
            });
        }
        if size > POOL_SIZE_MAX {
            return Err(RuntimeError::InvalidLimits(format!(
                "pool size {size} exceeds {POOL_SIZE_MAX}"
            )));
        }
        let link_error = |e: wasmtime::Error| RuntimeError::Link {
            actor: actor_key.to_string(),
            reason: format!("{e:#}"),
        };
        let linker = abi::linker_for(compiled.module().engine(), compiled.module()).map_err(link_error)?;
        let pre = linker.instantiate_pre(compiled.module()).map_err(link_error)?;
        let limits = runtime.limits();
        let actor = Arc::new(ActorContext {
            actor_key: Arc::from(actor_key),
            builtins: BuiltinGrants::claimed(caps),
            host_calls,
            execution_deadline: Duration::from_millis(limits.execution_deadline_ms),
            memory_bytes_max: limits.memory_bytes_max,
            memory_budget: Arc::clone(runtime.memory_budget()),
        });
        let factory = InstanceFactory {
            runtime: runtime.clone(),
            pre,
            actor,
            park,
            pool_id: POOL_IDS.fetch_add(1, Ordering::Relaxed),
        };
        let mut pool = ActorPool {
            factory,
            size,
            target: warm_now.min(size),
            peak_leased: 0,
            idle: Vec::with_capacity(size),
            leased_count: 0,
            stats: PoolStats::default(),
            memory_bytes: 0,
        };
        while pool.idle.len() < pool.target {
            let instance = pool.instantiate().await.map_err(|reason| RuntimeError::Instantiate {
                actor: actor_key.to_string(),
                reason,
            })?;
            pool.idle.push(instance);
        }
        Ok(pool)
    }

    pub fn actor_key(&self) -> &str {
        &self.factory.actor.actor_key
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Most warm instances the pool keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Instances the pool keeps now: its size until an idle period lowered it (see
    /// [`Self::release_idle`]).
    pub fn target(&self) -> usize {
        self.target
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    pub fn leased_count(&self) -> usize {
        self.leased_count
    }

    /// Linear memory held by the pool's instances, idle and leased: each counted at its size
    /// when it was created or last given back (a running call's growth shows at its return).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Virtual address space each of its instances occupies in the pooling allocator (see
    /// [`super::Reservation::per_slot_bytes`]).
    pub fn slot_reserved_bytes(&self) -> u64 {
        self.factory
            .runtime
            .limits()
            .reservation()
            .map_or(0, |r| r.per_slot_bytes)
    }

    /// Count `instance`'s memory at its present size.
    fn track(&mut self, instance: &mut WarmInstance) {
        let now = instance.memory_bytes();
        self.memory_bytes = (self.memory_bytes + now).saturating_sub(instance.counted_bytes);
        instance.counted_bytes = now;
    }

    /// Stop counting `instance`'s memory (it leaves the pool).
    fn untrack(&mut self, instance: &WarmInstance) {
        self.memory_bytes = self.memory_bytes.saturating_sub(instance.counted_bytes);
    }

    /// Whether retired instances left the pool below its target.
    pub fn needs_refill(&self) -> bool {
        self.idle.len() + self.leased_count < self.target
    }

    /// Create one instance through the factory, counted as created.
    async fn instantiate(&mut self) -> Result<WarmInstance, InvokeError> {
        self.stats.created += 1;
        let mut instance = self.factory.instantiate().await?;
        self.track(&mut instance);
        Ok(instance)
    }

    /// A handle that creates instances for this pool without borrowing it.
    pub fn factory(&self) -> InstanceFactory {
        self.factory.clone()
    }

    /// Identifies this pool among all pools of the process.
    pub fn pool_id(&self) -> u64 {
        self.factory.pool_id
    }

    /// Whether `instance` was made for this pool.
    pub fn owns(&self, instance: &WarmInstance) -> bool {
        instance.pool_id == self.factory.pool_id
    }

    /// Instances missing for the pool to be back at its target (idle + leased).
    pub fn missing(&self) -> usize {
        self.target.saturating_sub(self.idle.len() + self.leased_count)
    }

    /// Count one more lease in the peak the next [`Self::release_idle`] keeps.
    fn leased_one(&mut self) {
        self.leased_count += 1;
        self.peak_leased = self.peak_leased.max(self.leased_count);
    }

    /// Drop the idle instances the last period did not need: keep as many as were leased at
    /// once since the previous call (at least `keep_min`, at most the size), least recently
    /// used first out. Dropping an instance frees its slot, and wasmtime gives the slot's
    /// linear memory pages past `linear_memory_keep_resident` back to the system. The pool's
    /// target falls to what it keeps (refills stop there) and grows again when calls find no
    /// idle instance. Call it once per release period; returns how many were released.
    pub fn release_idle(&mut self, keep_min: usize) -> usize {
        let keep = self.peak_leased.max(keep_min).min(self.size);
        self.peak_leased = self.leased_count;
        let held = self.idle.len() + self.leased_count;
        let released = held.saturating_sub(keep).min(self.idle.len());
        for instance in self.idle.drain(..released) {
            self.memory_bytes = self.memory_bytes.saturating_sub(instance.counted_bytes);
        }
        self.target = keep.max(self.leased_count).min(self.size);
        self.stats.released_idle += released as u64;
        released
    }

    /// Take an instance made by [`ActorPool::factory`] as idle. Refused (handed back as
    /// `Some`) when it belongs to another pool or the pool is already at its size.
    pub fn adopt_idle(&mut self, mut instance: WarmInstance) -> Option<WarmInstance> {
        if !self.owns(&instance) || self.missing() == 0 {
            return Some(instance);
        }
        self.stats.created += 1;
        self.track(&mut instance);
        self.idle.push(instance);
        None
    }

    /// Raise the target to `needed` instances (calls needed that many), up to the size.
    fn raise_target(&mut self, needed: usize) {
        self.target = self.target.max(needed).min(self.size);
    }

    /// Count an instance made by [`ActorPool::factory`] on the hot path (no instance was
    /// idle) as leased; it must then be given back like any leased instance. Returns false
    /// (nothing counted) when it belongs to another pool.
    pub fn adopt_leased(&mut self, instance: &mut WarmInstance) -> bool {
        if !self.owns(instance) {
            return false;
        }
        self.track(instance);
        self.stats.created += 1;
        self.stats.created_on_demand += 1;
        self.leased_one();
        true
    }

    /// Record that an on-demand instantiation failed.
    pub fn note_instantiate_failure(&mut self) {
        self.stats.refill_failures += 1;
    }

    /// Take an idle warm instance, or `None` when all are leased or retired.
    pub fn try_lease(&mut self) -> Option<WarmInstance> {
        let instance = self.idle.pop()?;
        self.leased_one();
        Some(instance)
    }

    /// Create an instance now because none is idle (counted in `created_on_demand`). It is
    /// leased like a warm one and must be given back.
    pub async fn lease_on_demand(&mut self) -> Result<WarmInstance, InvokeError> {
        let instance = self.instantiate().await?;
        self.stats.created_on_demand += 1;
        self.leased_one();
        Ok(instance)
    }

    /// Return a leased instance. It goes back to the idle list unless it failed, reached
    /// `instance_max_invocations`, grew its memory past `instance_memory_keep_bytes`, or the
    /// pool is full. Counts its calls and failures.
    pub fn give_back(&mut self, mut instance: WarmInstance) -> GiveBack {
        if !self.owns(&instance) || self.leased_count == 0 {
            return GiveBack::Foreign(instance);
        }
        self.leased_count -= 1;
        self.count(&mut instance);
        if instance.must_retire() {
            self.untrack(&instance);
            self.stats.retired += 1;
            return GiveBack::Retired(instance.retire);
        }
        if self.idle.len() >= self.size {
            self.untrack(&instance);
            self.stats.trimmed += 1;
            return GiveBack::Trimmed;
        }
        // Measured once: `track` records the size the keep bound is checked against.
        self.track(&mut instance);
        let keep_bytes = self.factory.runtime.limits().instance_memory_keep_bytes;
        if keep_bytes != 0 && instance.counted_bytes as u64 > keep_bytes {
            self.untrack(&instance);
            self.stats.released_memory += 1;
            // Its replacement counts in the target: the refill makes a fresh one.
            self.raise_target(self.idle.len() + self.leased_count + 1);
            return GiveBack::Shed;
        }
        self.idle.push(instance);
        self.raise_target(self.idle.len() + self.leased_count);
        GiveBack::Idle
    }

    /// Fold an instance's calls and failures since its last return into the pool's counters.
    fn count(&mut self, instance: &mut WarmInstance) {
        let unreported = std::mem::take(&mut instance.unreported);
        self.stats.invocations += unreported.invocations;
        self.stats.traps += unreported.traps;
        self.stats.deadline_overruns += unreported.deadline_overruns;
    }

    /// Create instances until the pool is back at its size. Call it off the hot path after
    /// retirements; returns how many were created.
    pub async fn refill(&mut self) -> Result<usize, RuntimeError> {
        let mut created = 0;
        while self.needs_refill() {
            match self.instantiate().await {
                Ok(instance) => {
                    self.idle.push(instance);
                    created += 1;
                }
                Err(reason) => {
                    self.stats.refill_failures += 1;
                    return Err(RuntimeError::Instantiate {
                        actor: self.factory.actor.actor_key.to_string(),
                        reason,
                    });
                }
            }
        }
        Ok(created)
    }
}

impl Drop for ActorPool {
    fn drop(&mut self) {
        debug_assert!(
            self.leased_count == 0 || std::thread::panicking(),
            "actor pool {} dropped with {} instances still leased",
            self.factory.actor.actor_key,
            self.leased_count
        );
    }
}

/// One call through a pool: lease a warm instance (or instantiate one on demand), call it, give
/// it back, and refill the pool if an instance was retired.
pub async fn invoke(pool: &mut ActorPool, operation: &str, payload: &[u8]) -> Result<Vec<u8>, InvokeError> {
    let mut instance = match pool.try_lease() {
        Some(instance) => instance,
        None => pool.lease_on_demand().await?,
    };
    let result = instance.invoke(operation, payload).await;
    pool.give_back(instance);
    if pool.needs_refill() {
        if let Err(error) = pool.refill().await {
            tracing::warn!(actor = pool.actor_key(), %error, "cannot refill the actor pool");
        }
    }
    result
}

/// One call on a brand-new instance that is dropped afterwards: the 0.82 host's way, kept for
/// comparison in the benches. Uses the pool's `InstancePre` and counters, not its instances.
pub async fn fresh_instance_invoke(
    pool: &mut ActorPool,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, InvokeError> {
    let mut instance = pool.instantiate().await?;
    let result = instance.invoke(operation, payload).await;
    pool.count(&mut instance);
    result
}
