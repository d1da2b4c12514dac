//! One warm instance ([`WarmInstance`]): a store of its own, the guest call sequence on it
//! (PROTOCOL §9.2) and how a failed call is classified; and [`InstanceFactory`], which makes
//! initialised instances for a pool (in the pool's task or a shard's refill task).
//!
//! Data plane: an instance is owned by one task at a time (leased from its
//! [`super::ActorPool`]); the hot path (begin call → guest call → result) allocates only the
//! response.

use std::sync::Arc;

use wasmtime::{InstancePre, Store, StoreContextMut, Trap, TypedFunc, UpdateDeadline};

use crate::wire::trace::CallTrace;

use super::abi::{AbiFault, ActorContext, GuestState};
use super::budget::{Denial, MemoryBudget};
use super::engine::{EpochState, GuestRun, Runtime, INIT_EXPORTS};
use super::{InvokeError, Parker};

/// Counters of one pool (plain integers: the pool is owned by one shard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Guest calls made (warm, on-demand and fresh).
    pub invocations: u64,
    /// Calls that ended in a trap, out-of-memory, bad pointer or `proc_exit`.
    pub traps: u64,
    /// Calls stopped at `execution_deadline_ms`.
    pub deadline_overruns: u64,
    /// Instances dropped on return because they failed or reached `instance_max_invocations`.
    pub retired: u64,
    /// Instances created (warm, refill, on-demand and fresh).
    pub created: u64,
    /// Of `created`: made on the hot path because no warm instance was idle.
    pub created_on_demand: u64,
    /// Healthy instances dropped on return because the pool was already full.
    pub trimmed: u64,
    /// Refills that failed to create an instance.
    pub refill_failures: u64,
    /// Idle instances dropped because the pool's recent concurrency did not need them.
    pub released_idle: u64,
    /// Instances dropped on return because their linear memory had grown past
    /// `instance_memory_keep_bytes` (their pages go back to the system; a fresh one replaces them).
    pub released_memory: u64,
}

/// One live instance with its own store. Leased from an [`ActorPool`] and given back to it.
pub struct WarmInstance {
    pub(super) store: Store<GuestState>,
    /// Tells the epoch thread a guest runs (see `GuestRun`).
    pub(super) epoch: Arc<EpochState>,
    pub(super) guest_call: TypedFunc<(i32, i32), i32>,
    pub(super) pool_id: u64,
    pub(super) invocations: u64,
    pub(super) invocations_max: u64,
    /// Why it must not be reused, once that is known.
    pub(super) retire: Option<InvokeError>,
    /// Calls and failures not yet folded into the pool's counters.
    pub(super) unreported: PoolStats,
    /// Linear memory bytes the pool counts for this instance (its size when last seen).
    pub(super) counted_bytes: usize,
}

impl WarmInstance {
    /// Calls served so far.
    pub fn invocations(&self) -> u64 {
        self.invocations
    }

    /// The size of its linear memory now (what it can keep resident).
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// Whether the pool will drop this instance when it is given back.
    pub fn must_retire(&self) -> bool {
        self.retire.is_some() || (self.invocations_max != 0 && self.invocations >= self.invocations_max)
    }

    /// Run one guest call (PROTOCOL §9.2 steps 2–5).
    pub async fn invoke(&mut self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, InvokeError> {
        self.invoke_in(operation, payload, None).await
    }

    /// [`Instance::invoke`] within a trace: the guest's outbound calls are parented on `trace`.
    pub async fn invoke_in(
        &mut self,
        operation: &str,
        payload: &[u8],
        trace: Option<CallTrace>,
    ) -> Result<Vec<u8>, InvokeError> {
        if let Some(error) = &self.retire {
            // A caller bug (reusing a failed instance); answer without touching the guest.
            return Err(error.clone());
        }
        let (Ok(op_len), Ok(payload_len)) = (i32::try_from(operation.len()), i32::try_from(payload.len())) else {
            return Err(InvokeError::TooLarge);
        };
        self.store.data_mut().begin_call(operation.as_bytes(), payload, trace);
        self.store.set_epoch_deadline(1);
        let running = GuestRun::start(&self.epoch);
        let result = self.guest_call.call_async(&mut self.store, (op_len, payload_len)).await;
        drop(running);
        self.invocations += 1;
        let state = self.store.data_mut();
        state.call_started = None;
        let outcome = match result {
            Ok(code) => call_result(state, code),
            Err(error) => Err(classify(&error, state)),
        };
        self.unreported.invocations += 1;
        if let Err(error) = &outcome {
            if *error == InvokeError::Deadline {
                self.unreported.deadline_overruns += 1;
            } else if error.retires_instance() {
                self.unreported.traps += 1;
            }
            if error.retires_instance() {
                self.retire = Some(error.clone());
            }
        }
        outcome
    }
}

/// §9.2 step 5: guest error, else pending host error, else a return code other than 1, else the
/// guest's response (empty if it gave none).
fn call_result(state: &mut GuestState, code: i32) -> Result<Vec<u8>, InvokeError> {
    if let Some(error) = state.guest_error.take() {
        return Err(InvokeError::GuestError(error));
    }
    if let Some(error) = state.host_error.take() {
        return Err(InvokeError::HostError(error));
    }
    if code != 1 {
        return Err(InvokeError::GuestFailed(code));
    }
    Ok(state.guest_response.take().unwrap_or_default())
}

/// The error of a memory the budget refused, with the budget's figures now.
pub(super) fn budget_exhausted(budget: &MemoryBudget) -> InvokeError {
    InvokeError::MemoryBudget {
        used_bytes: budget.used_bytes() as u64,
        budget_bytes: budget.limit_bytes().unwrap_or(usize::MAX) as u64,
    }
}

/// Map a failed guest call to an [`InvokeError`], using what the store observed.
pub(super) fn classify(error: &wasmtime::Error, state: &GuestState) -> InvokeError {
    if state.deadline_exceeded {
        return InvokeError::Deadline;
    }
    if let Some(fault) = error.downcast_ref::<AbiFault>() {
        return match *fault {
            AbiFault::OutOfBounds(what) => InvokeError::BadGuestPointer(what),
            AbiFault::NoMemory => InvokeError::Trap("guest has no memory".to_string()),
            AbiFault::ProcExit(code) => InvokeError::ProcExit(code),
            AbiFault::DeadlineExceeded => InvokeError::Deadline,
            AbiFault::UnsupportedWasi => InvokeError::Trap("unsupported WASI call".to_string()),
        };
    }
    match state.memory_limit.denied {
        Some(Denial::HostBudget) => return budget_exhausted(&state.actor.memory_budget),
        Some(Denial::InstanceLimit) => {
            return InvokeError::OutOfMemory {
                memory_bytes_max: state.actor.memory_bytes_max,
            }
        }
        None => {}
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Deadline,
        Some(trap) => InvokeError::Trap(trap.to_string()),
        None => InvokeError::Trap(format!("{error:#}")),
    }
}

/// The epoch deadline callback of every store: past the deadline, stop the guest; otherwise
/// park (give the executor a turn) and run one more tick.
fn on_epoch(park: Parker) -> impl FnMut(StoreContextMut<'_, GuestState>) -> wasmtime::Result<UpdateDeadline> {
    move |mut ctx| {
        let state = ctx.data_mut();
        if state.past_deadline() {
            state.deadline_exceeded = true;
            return Err(wasmtime::Error::new(AbiFault::DeadlineExceeded));
        }
        Ok(UpdateDeadline::YieldCustom(1, park()))
    }
}

/// Creates initialised instances of one pool's actor. Cheap to clone (reference counts), so a
/// shard can build instances in a task of its own while the pool keeps serving; the instances
/// are then handed to the pool with [`ActorPool::adopt_idle`] or [`ActorPool::adopt_leased`].
#[derive(Clone)]
pub struct InstanceFactory {
    pub(super) runtime: Runtime,
    pub(super) pre: InstancePre<GuestState>,
    pub(super) actor: Arc<ActorContext>,
    pub(super) park: Parker,
    pub(super) pool_id: u64,
}

impl InstanceFactory {
    /// Create and initialise one instance: a store with the memory limit and the epoch
    /// callback, the instance from the `InstancePre`, then the init exports (§9.2 step 1)
    /// under the same deadline as a call.
    pub async fn instantiate(&self) -> Result<WarmInstance, InvokeError> {
        let engine = self.pre.module().engine();
        // Initialisation runs guest code (`_start`, `wapc_init`): the epoch must tick.
        let _running = GuestRun::start(self.runtime.epoch());
        let mut store = Store::new(engine, GuestState::new(Arc::clone(&self.actor)));
        store.limiter(|state| &mut state.memory_limit);
        store.epoch_deadline_callback(on_epoch(Arc::clone(&self.park)));
        store.data_mut().begin_call(&[], &[], None);
        store.set_epoch_deadline(1);
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(_) if store.data().memory_limit.denied == Some(Denial::HostBudget) => {
                return Err(budget_exhausted(&self.actor.memory_budget))
            }
            Err(e) => return Err(InvokeError::Instantiate(format!("{e:#}"))),
        };
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().memory = memory;
        let guest_call = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "__guest_call")
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        for name in INIT_EXPORTS {
            let Some(func) = instance.get_func(&mut store, name) else {
                continue;
            };
            let init = func
                .typed::<(), ()>(&store)
                .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
            if let Err(e) = init.call_async(&mut store, ()).await {
                match classify(&e, store.data()) {
                    // A WASI command's `_start` may end with exit(0): initialisation finished.
                    InvokeError::ProcExit(0) => {}
                    reason => return Err(InvokeError::Instantiate(format!("{name}: {reason}"))),
                }
            }
        }
        store.data_mut().call_started = None;
        Ok(WarmInstance {
            store,
            epoch: Arc::clone(self.runtime.epoch()),
            guest_call,
            pool_id: self.pool_id,
            invocations: 0,
            invocations_max: self.runtime.limits().instance_max_invocations,
            retire: None,
            unreported: PoolStats::default(),
            counted_bytes: 0,
        })
    }
}
