//! A shard's warm instances: leasing one for an invocation (or making one when none is idle),
//! giving it back, refilling a pool that lost instances, releasing the idle ones its recent
//! concurrency did not need, and reporting what the pools hold.
//!
//! Data plane: all of it runs on the shard's own executor through `&ShardCore`; the pools'
//! `RefCell`s are never borrowed across an await. Refills run as tasks of their own so no
//! invocation waits for an instantiation it did not need.

use std::rc::Rc;

use crate::runtime::{ActorPool, GiveBack, InstanceFactory, WarmInstance};

use super::core::ShardCore;

/// Warm instances a pool keeps through an idle release: one, so the next call after a quiet
/// spell still finds a warm instance instead of paying an instantiation.
pub const WARM_RELEASE_KEEP_MIN: usize = 1;

/// Warm instances a new actor's pool makes on each shard before it serves (fewer if its warm
/// set is smaller); it grows toward the warm set as calls find no idle instance, each made on
/// demand once and then kept. An actor at count 64 on two shards therefore starts with 8
/// instances, not 64: a shard runs at most `GUESTS_RUNNING_MAX` guests at once, and the harness
/// echo at 64 in flight never held more than two per shard. Measured with wascap's 1.77 MB
/// `logger.wasm` at count 64 (`loadtest/footprint.sh`): see the README's memory table.
pub const WARM_START_PER_SHARD: usize = 4;

/// How an invocation got its instance.
pub(crate) enum Lease {
    /// A warm one, or one made on demand when none was idle (counted by its pool).
    Ready(WarmInstance),
    /// None idle and making one failed: the caller's error text.
    Failed(String),
    NotRunning,
}

impl ShardCore {
    /// Record what the shard's pools hold now (instances, their linear memory and the
    /// virtual reservation of their slots) in the counters' gauges. Walks the pools: called
    /// at the report tick, not per batch.
    pub fn note_holdings(&self) {
        let (actors, draining) = (self.actors().borrow(), self.draining().borrow());
        let pools = actors.values().map(|slot| &slot.pool).chain(draining.iter());
        let (instances, bytes, reserved) = pools.fold((0u64, 0u64, 0u64), |(instances, bytes, reserved), pool| {
            let held = (pool.idle_count() + pool.leased_count()) as u64;
            (
                instances + held,
                bytes + pool.memory_bytes() as u64,
                reserved.saturating_add(held.saturating_mul(pool.slot_reserved_bytes())),
            )
        });
        drop((actors, draining));
        self.bump(|s| {
            s.instances = instances;
            s.instance_memory_bytes = bytes;
            s.instance_reserved_bytes = reserved;
        });
    }

    /// Release, in every pool, the idle instances beyond what it had leased at once since the
    /// last release (at least [`WARM_RELEASE_KEEP_MIN`]). Called once per `--warm-release-secs`,
    /// from the report tick, which records the holdings right after.
    pub fn release_idle(&self) {
        let mut released = 0usize;
        for (actor, slot) in self.actors().borrow_mut().iter_mut() {
            let n = slot.pool.release_idle(WARM_RELEASE_KEEP_MIN);
            if n > 0 {
                tracing::info!(
                    shard = %self.id(),
                    actor = &**actor,
                    released = n,
                    kept = slot.pool.idle_count() + slot.pool.leased_count(),
                    linear_memory_bytes = slot.pool.memory_bytes(),
                    "released idle warm instances"
                );
            }
            released += n;
        }
        if released > 0 {
            self.bump(|s| s.instances_released_idle += released as u64);
            crate::runtime::heap::return_freed_memory();
        }
    }

    /// Drop a pool, or keep it until its leased instances come back. A pool dropped here (an
    /// update, a rescale, the optimised tier replacing the baseline, a stop) frees a whole warm
    /// set at once: its memory goes back to the system now.
    pub fn retire_pool(&self, pool: ActorPool) {
        if pool.leased_count() > 0 {
            self.draining().borrow_mut().push(pool);
            return;
        }
        drop(pool);
        crate::runtime::heap::return_freed_memory();
    }

    /// Lease an idle instance of `actor`, or make one on demand (the pool adopts it).
    pub(super) async fn lease(&self, actor: &str) -> Lease {
        let factory: InstanceFactory = {
            let mut actors = self.actors().borrow_mut();
            match actors.get_mut(actor) {
                None => return Lease::NotRunning,
                Some(slot) => match slot.pool.try_lease() {
                    Some(instance) => return Lease::Ready(instance),
                    None => slot.pool.factory(),
                },
            }
        };
        // Boxed: the cold path's future stays out of every serving task's (see serve.rs).
        match Box::pin(factory.instantiate()).await {
            Ok(mut instance) => {
                self.adopt_leased(actor, &mut instance);
                Lease::Ready(instance)
            }
            Err(error) => Lease::Failed(format!("actor {actor} has no free instance on this host: {error}")),
        }
    }

    /// Count an instance made on demand as leased by its pool (the current one or one being
    /// drained); an orphan (its pool is gone) is still used once and then dropped.
    fn adopt_leased(&self, actor: &str, instance: &mut WarmInstance) {
        let mut actors = self.actors().borrow_mut();
        if actors
            .get_mut(actor)
            .is_some_and(|slot| slot.pool.adopt_leased(instance))
        {
            return;
        }
        drop(actors);
        let mut draining = self.draining().borrow_mut();
        let _ = draining.iter_mut().any(|pool| pool.adopt_leased(instance));
    }

    /// Return an instance to the pool it came from and refill that pool if it lost one.
    pub(super) fn give_back(self: &Rc<Self>, actor: &str, instance: WarmInstance) {
        let mut actors = self.actors().borrow_mut();
        let instance = match actors.get_mut(actor) {
            Some(slot) => match slot.pool.give_back(instance) {
                GiveBack::Foreign(instance) => instance,
                back => {
                    if matches!(back, GiveBack::Shed) {
                        self.bump(|s| s.instances_released_memory += 1);
                    }
                    if slot.pool.missing() > 0 {
                        let factory = slot.pool.factory();
                        let pool_id = slot.pool.pool_id();
                        drop(actors);
                        self.start_refill(Rc::from(actor), pool_id, factory);
                    }
                    return;
                }
            },
            None => instance,
        };
        drop(actors);
        let mut draining = self.draining().borrow_mut();
        let mut instance = instance;
        for pool in draining.iter_mut() {
            match pool.give_back(instance) {
                GiveBack::Foreign(back) => instance = back,
                _ => {
                    draining.retain(|p| p.leased_count() > 0);
                    return;
                }
            }
        }
        // An orphan from an on-demand lease whose pool is gone: dropped here.
    }

    /// Build the instances a pool is missing in a task of its own, off the hot path.
    fn start_refill(self: &Rc<Self>, actor: Rc<str>, pool_id: u64, factory: InstanceFactory) {
        if self.refilling().borrow().contains(&pool_id) {
            return;
        }
        self.refilling().borrow_mut().push(pool_id);
        let core = Rc::clone(self);
        super::rt::spawn_local(async move {
            loop {
                let missing = core
                    .actors()
                    .borrow()
                    .get(&actor)
                    .filter(|slot| slot.pool.pool_id() == pool_id)
                    .map_or(0, |slot| slot.pool.missing());
                if missing == 0 {
                    break;
                }
                match factory.instantiate().await {
                    Ok(instance) => {
                        let mut actors = core.actors().borrow_mut();
                        let adopted = actors
                            .get_mut(&actor)
                            .is_some_and(|slot| slot.pool.adopt_idle(instance).is_none());
                        if !adopted {
                            break;
                        }
                    }
                    Err(error) => {
                        if let Some(slot) = core.actors().borrow_mut().get_mut(&actor) {
                            slot.pool.note_instantiate_failure();
                        }
                        tracing::warn!(shard = %core.id(), %actor, %error, "cannot refill the actor pool");
                        break;
                    }
                }
            }
            core.refilling().borrow_mut().retain(|id| *id != pool_id);
        })
        .detach();
    }
}
