//! Actor runtime: one wasmtime [`Engine`](wasmtime::Engine) for the process, modules compiled
//! once, and per-actor pools of warm, already-initialised instances speaking the wasmbus/waPC
//! ABI (PROTOCOL §9).
//!
//! Planes: [`Runtime::new`] and [`CompileCache`] belong to the control plane (compiling is slow
//! and may touch the disk); [`ActorPool`] and [`WarmInstance`] are data-plane types meant to live
//! on one shard. Nothing here uses tokio, locks or `anyhow`, and no guest input may cause a
//! panic: a bad pointer, a trap, a runaway loop or memory exhaustion all come back as an
//! [`InvokeError`] and retire the instance involved.
//!
//! Async without tokio: host calls (`__host_call`) and epoch yields are plain futures. The
//! caller injects how to park a busy guest (a [`Parker`]: a tokio sleep in tests, a glommio
//! timer on a shard), so the same code runs on both executors.
//!
//! # Instance reuse semantics
//! A warm instance serves many invocations one after another, so **guest state persists
//! between calls** on the same instance (globals, linear memory, whatever the guest's allocator
//! left behind). The OTP host also kept long-lived instances, and wasmbus actors are written to
//! be stateless between calls anyway. Which warm instance serves a call is unspecified.
//! [`RuntimeLimits::instance_max_invocations`] bounds the reuse: `0` never retires a healthy
//! instance, `1` gives every call a fresh instance (the isolation of the 0.82 host, at the
//! instantiate cost per call), `N` retires an instance after `N` calls. An instance that trapped,
//! ran past its deadline, ran out of memory or handed the host a bad pointer is never reused.
//!
//! # Module map
//! - [`limits`]: [`RuntimeLimits`], every knob with its unit, and the reservation report.
//! - [`engine`]: [`Runtime`] (engines + epoch thread), [`CompiledActor`] and its [`Tier`], and
//!   the module shape check.
//! - [`cache`]: [`CompileCache`], memory and disk.
//! - [`abi`]: the wasmbus/waPC imports, WASI stubs and builtins; [`HostCalls`].
//! - [`budget`]: [`MemoryLimit`] per store and the host-wide [`MemoryBudget`].
//! - [`builtins`]: the logging and numbergen builtins.
//! - [`pool`]: [`ActorPool`] and [`WarmInstance`], plus [`invoke`] and
//!   [`fresh_instance_invoke`].

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod abi;
pub mod budget;
pub mod builtins;
pub mod cache;
pub mod engine;
pub mod heap;
pub mod instance;
pub mod limits;
pub mod pool;

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;
#[cfg(test)]
mod warm_tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use abi::{HostCallFuture, HostCalls, NoHostCalls};
pub use budget::{MemoryBudget, MemoryLimit};
pub use cache::{CacheSource, CompileCache, CompileCacheStats};
pub use engine::{CompiledActor, Runtime, ShapeError, Tier};
pub use limits::{Reservation, RuntimeLimits};
pub use pool::{fresh_instance_invoke, invoke, ActorPool, GiveBack, InstanceFactory, PoolStats, WarmInstance};

/// How a busy guest gives its executor a turn: called at every epoch tick while a guest runs;
/// the guest resumes once the returned future completes. On tokio a ~10 µs sleep; on a glommio
/// shard a ~10 µs glommio timer wrapped in `AssertSend` (TOOLCHAIN.md: a plain yield would not
/// let glommio poll its sockets).
pub type Parker = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Errors of the runtime's setup side: building the engine, compiling, creating pools.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime limit: {0}")]
    InvalidLimits(String),
    /// The pooling allocator could not reserve its address space. We never fall back to the
    /// on-demand allocator (wasmCloud issues #1961/#4360): the operator must lower the limits.
    #[error("cannot set up the baseline compiler (Winch): {0}")]
    BaselineCompiler(String),
    #[error(
        "cannot reserve the pooling allocator's address space: {instance_slots_total} instance slots \
         × {slot_bytes} bytes per memory slot; {reservation_bytes} bytes of virtual memory in total \
         ({reason}); lower the instance slots or the memory per instance"
    )]
    PoolingReservation {
        instance_slots_total: u32,
        slot_bytes: u64,
        reservation_bytes: u64,
        reason: String,
    },
    #[error("cannot start the epoch thread: {0}")]
    EpochThread(String),
    #[error("module {module_hash} does not compile: {reason}")]
    Compile { module_hash: String, reason: String },
    #[error("module {module_hash} is not a wasmbus actor: {reason}")]
    ModuleShape { module_hash: String, reason: ShapeError },
    #[error("module hash {0:?} is not a plain alphanumeric hash")]
    InvalidModuleHash(String),
    #[error("compile cache directory {path}: {reason}")]
    CacheDir { path: String, reason: String },
    #[error("actor {actor} was compiled by another engine")]
    ForeignModule { actor: String },
    #[error("cannot link actor {actor}: {reason}")]
    Link { actor: String, reason: String },
    #[error("cannot instantiate actor {actor}: {reason}")]
    Instantiate { actor: String, reason: InvokeError },
}

/// Why one invocation of a guest failed. Messages are short and mostly static: they go back to
/// the caller in an `InvocationResponse`. Every variant but [`InvokeError::GuestError`],
/// [`InvokeError::GuestFailed`], [`InvokeError::HostError`] and [`InvokeError::TooLarge`]
/// retires the instance (see [`InvokeError::retires_instance`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The guest called `__guest_error`.
    #[error("guest error: {0}")]
    GuestError(String),
    /// A host call failed and the guest returned without its own error (§9.2 step 5).
    #[error("host error: {0}")]
    HostError(String),
    /// `__guest_call` returned a code other than 1 without setting an error.
    #[error("guest call returned failure code {0}")]
    GuestFailed(i32),
    /// The guest trapped (unreachable, stack overflow, integer fault, out-of-bounds access …).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The call ran past `execution_deadline_ms`.
    #[error("guest ran past its execution deadline")]
    Deadline,
    /// The guest wanted more linear memory than `memory_bytes_max` and then failed.
    #[error("guest ran out of memory (limit {memory_bytes_max} bytes)")]
    OutOfMemory { memory_bytes_max: u64 },
    /// The instance's memory would have taken the host past `--memory-budget-mib`.
    #[error("host memory budget exhausted ({used_bytes} of {budget_bytes} bytes of linear memory in use)")]
    MemoryBudget { used_bytes: u64, budget_bytes: u64 },
    /// The guest handed the host a pointer/length outside its memory.
    #[error("guest passed an out-of-bounds pointer to {0}")]
    BadGuestPointer(&'static str),
    /// The guest called WASI `proc_exit`.
    #[error("guest called proc_exit({0})")]
    ProcExit(i32),
    /// Operation or payload longer than the ABI's i32 lengths allow.
    #[error("operation or payload too large for the wasmbus ABI")]
    TooLarge,
    /// A fresh instance could not be created (pool slots exhausted, init function failed …).
    #[error("cannot instantiate the actor: {0}")]
    Instantiate(String),
}

impl InvokeError {
    /// Whether an instance that produced this error must be dropped instead of reused: its
    /// state may be inconsistent (it stopped mid-call) or it proved hostile.
    pub fn retires_instance(&self) -> bool {
        match self {
            InvokeError::GuestError(_)
            | InvokeError::HostError(_)
            | InvokeError::GuestFailed(_)
            | InvokeError::TooLarge => false,
            InvokeError::Trap(_)
            | InvokeError::Deadline
            | InvokeError::OutOfMemory { .. }
            | InvokeError::MemoryBudget { .. }
            | InvokeError::BadGuestPointer(_)
            | InvokeError::ProcExit(_)
            | InvokeError::Instantiate(_) => true,
        }
    }
}
