//! The process's wasmtime [`Engine`]s ([`Runtime`]: the optimising one, and the baseline one
//! that serves first starts), their epoch thread, compiled actors ([`CompiledActor`]) and the
//! module shape check. The compile cache is in `cache.rs`.
//!
//! Control plane: compiling and the on-disk cache run on the control plane, which owns the
//! cache (`&mut self`, no locks). Shards only receive [`CompiledActor`]s (cheap `Clone`,
//! `Send + Sync`). Never falls back silently: a pooling reservation that cannot be made is an
//! error that names the sizes.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Engine, ExternType, FuncType, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Strategy,
    ValType,
};

use super::abi::{self, ImportKind};
use super::budget::MemoryBudget;
use super::limits::{RuntimeLimits, MEMORY_GUARD_BYTES, TABLE_ELEMENTS_MAX, TABLE_ELEMENT_BYTES};
use super::RuntimeError;

/// Consecutive idle ticks (no guest running) after which the epoch thread stops ticking.
pub const EPOCH_IDLE_TICKS_BEFORE_PARK: u32 = 10;
/// Longest the epoch thread sleeps at a time while idle (it also wakes when a guest starts).
pub const EPOCH_IDLE_PARK_MS: u64 = 100;

/// What the epoch thread knows about guests: how many run now, and whether it sleeps. Ticks
/// only matter while a guest runs (they drive its deadline and its parking), so after
/// [`EPOCH_IDLE_TICKS_BEFORE_PARK`] idle ticks the thread parks, and the first guest to start
/// wakes it: an idle host costs no wake-ups, a busy one one atomic add and sub per call.
#[derive(Default)]
pub(crate) struct EpochState {
    running: AtomicU64,
    parked: AtomicBool,
    /// Set when the runtime drops: the thread must end.
    stopping: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl EpochState {
    /// Whether the epoch thread sleeps for want of running guests.
    #[cfg(test)]
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    fn park_while_idle(&self) {
        self.parked.store(true, Ordering::SeqCst);
        // Checked after announcing the park: a guest that started before sees `parked` and
        // unparks (the unpark is remembered even if it comes first).
        while self.running.load(Ordering::SeqCst) == 0 {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(EPOCH_IDLE_PARK_MS));
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

/// Counts one running guest call (or instance initialisation) for the epoch thread, waking it
/// if it sleeps. Dropped when the call ends, however it ends.
pub(crate) struct GuestRun<'a>(&'a EpochState);

impl<'a> GuestRun<'a> {
    pub(crate) fn start(state: &'a EpochState) -> GuestRun<'a> {
        if state.running.fetch_add(1, Ordering::SeqCst) == 0 && state.parked.load(Ordering::SeqCst) {
            if let Some(thread) = state.thread.get() {
                thread.unpark();
            }
        }
        GuestRun(state)
    }
}

impl Drop for GuestRun<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The actor runtime of the process: one engine (Cranelift, pooling allocator, epoch
/// interruption) and the thread that ticks its epoch. Cheap to clone; the epoch thread stops
/// when the last clone (including those held by pools) drops.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    /// Cranelift, pooling allocator: every optimised instance.
    engine: Engine,
    /// Winch, on-demand allocation: first-start instances only, until Cranelift is done.
    baseline: Option<Engine>,
    limits: RuntimeLimits,
    /// What every instance's linear memory is reserved from.
    memory_budget: Arc<MemoryBudget>,
    epoch: Arc<EpochState>,
    /// Dropping the sender wakes and stops the epoch thread.
    epoch_stop: Option<mpsc::Sender<()>>,
    epoch_thread: Option<JoinHandle<()>>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        drop(self.epoch_stop.take());
        self.epoch.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.epoch_thread.take() {
            thread.thread().unpark();
            // The thread only sleeps and increments; a join error means it panicked, which
            // cannot be reported from a destructor anyway.
            let _ = thread.join();
        }
    }
}

impl Runtime {
    /// Validate `limits`, build the engine (reserving the pooling allocator's address space) and
    /// start the epoch thread.
    pub fn new(limits: &RuntimeLimits) -> Result<Runtime, RuntimeError> {
        limits.validate()?;
        let reservation = limits
            .reservation()
            .ok_or_else(|| RuntimeError::InvalidLimits("reservation overflows".to_string()))?;
        let memory_bytes_max = usize::try_from(limits.memory_bytes_max)
            .map_err(|_| RuntimeError::InvalidLimits("memory_bytes_max exceeds the address space".to_string()))?;

        // Tables are small (elements × 8 bytes): keep them all resident.
        const TABLE_KEEP_RESIDENT_BYTES: usize = TABLE_ELEMENTS_MAX * TABLE_ELEMENT_BYTES as usize;
        let keep_resident = usize::try_from(limits.memory_keep_resident_bytes).unwrap_or(usize::MAX);
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_core_instances(limits.instance_slots_total)
            .total_memories(limits.instance_slots_total)
            .total_tables(limits.instance_slots_total)
            .total_stacks(limits.instance_slots_total)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(TABLE_ELEMENTS_MAX)
            .max_memory_size(memory_bytes_max)
            .linear_memory_keep_resident(keep_resident.min(memory_bytes_max))
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);

        let config = |strategy: Strategy| {
            let mut config = Config::new();
            config
                .strategy(strategy)
                .epoch_interruption(true)
                .max_wasm_stack(limits.max_wasm_stack_bytes)
                .async_stack_size(limits.async_stack_bytes)
                // Reserve exactly the allowed memory per slot (not 4 GiB): the reservation
                // stays proportional to what guests may use, at the price of explicit bounds
                // checks.
                .memory_reservation(limits.memory_bytes_max)
                .memory_guard_size(MEMORY_GUARD_BYTES)
                .memory_reservation_for_growth(0);
            config
        };
        let mut optimized = config(Strategy::Cranelift);
        optimized
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            // On every core when a start waits for it; one core when it runs in the background
            // behind baseline code (the other cores keep serving).
            .parallel_compilation(!limits.baseline_compiler);
        // Baseline instances are few and short-lived: allocated on demand, outside the pool.
        // Its compile is what a first start waits for: on every core.
        let baseline = if limits.baseline_compiler {
            let mut winch = config(Strategy::Winch);
            winch.parallel_compilation(true);
            let engine = Engine::new(&winch).map_err(|e| RuntimeError::BaselineCompiler(format!("{e:#}")))?;
            Some(engine)
        } else {
            None
        };

        let engine = Engine::new(&optimized).map_err(|e| RuntimeError::PoolingReservation {
            instance_slots_total: limits.instance_slots_total,
            slot_bytes: reservation.memory_slot_bytes,
            reservation_bytes: reservation.total_bytes,
            reason: format!("{e:#}"),
        })?;

        let (epoch_stop, stop_rx) = mpsc::channel::<()>();
        let tick = Duration::from_millis(limits.epoch_tick_ms);
        let ticker = engine.clone();
        let baseline_ticker = baseline.clone();
        let epoch = Arc::new(EpochState::default());
        let state = Arc::clone(&epoch);
        let epoch_thread = std::thread::Builder::new()
            .name("wasm-epoch".to_string())
            .spawn(move || {
                let mut idle_ticks = 0u32;
                // Ends when the sender drops (Disconnected) or on an explicit message.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(tick) {
                    ticker.increment_epoch();
                    if let Some(baseline) = &baseline_ticker {
                        baseline.increment_epoch();
                    }
                    idle_ticks = if state.running.load(Ordering::SeqCst) == 0 {
                        idle_ticks + 1
                    } else {
                        0
                    };
                    if idle_ticks >= EPOCH_IDLE_TICKS_BEFORE_PARK {
                        state.park_while_idle();
                        idle_ticks = 0;
                    }
                }
            })
            .map_err(|e| RuntimeError::EpochThread(e.to_string()))?;
        let _ = epoch.thread.set(epoch_thread.thread().clone());

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                baseline,
                limits: *limits,
                memory_budget: MemoryBudget::new(
                    (limits.memory_budget_bytes > 0)
                        .then(|| usize::try_from(limits.memory_budget_bytes).unwrap_or(usize::MAX)),
                ),
                epoch,
                epoch_stop: Some(epoch_stop),
                epoch_thread: Some(epoch_thread),
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The epoch ticker's view of running guests (see [`GuestRun`]).
    pub(crate) fn epoch(&self) -> &Arc<EpochState> {
        &self.inner.epoch
    }

    pub fn limits(&self) -> &RuntimeLimits {
        &self.inner.limits
    }

    /// The host-wide linear-memory budget (unbounded unless `memory_budget_bytes` is set).
    pub fn memory_budget(&self) -> &Arc<MemoryBudget> {
        &self.inner.memory_budget
    }

    /// Compile `module_bytes` (no cache; see [`CompileCache`]) and check it is a wasmbus actor.
    /// `module_hash` names the module in errors and travels with it (use
    /// [`crate::auth::claims::module_hash`]).
    pub fn compile(&self, module_bytes: &[u8], module_hash: &str) -> Result<CompiledActor, RuntimeError> {
        compile_with(self.engine(), module_bytes, module_hash, Tier::Optimized)
    }

    /// Whether this runtime has the baseline compiler (`RuntimeLimits::baseline_compiler`).
    pub fn has_baseline(&self) -> bool {
        self.inner.baseline.is_some()
    }

    /// Compile with the baseline compiler (Winch) when this runtime has it; `None` otherwise.
    pub fn compile_baseline(
        &self,
        module_bytes: &[u8],
        module_hash: &str,
    ) -> Option<Result<CompiledActor, RuntimeError>> {
        let engine = self.inner.baseline.as_ref()?;
        Some(compile_with(engine, module_bytes, module_hash, Tier::Baseline))
    }

    /// Whether `engine` is one of this runtime's engines (pools refuse modules of others).
    pub fn owns(&self, engine: &Engine) -> bool {
        Engine::same(engine, &self.inner.engine)
            || self.inner.baseline.as_ref().is_some_and(|b| Engine::same(engine, b))
    }

    /// A 64-bit digest of everything that makes a serialized module loadable by this engine
    /// (wasmtime version, target, compiler flags, tunables), stable across restarts.
    pub fn compatibility_digest(&self) -> u64 {
        let mut hasher = Sha256Hasher(Sha256::new());
        self.engine().precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }
}

fn compile_with(
    engine: &Engine,
    module_bytes: &[u8],
    module_hash: &str,
    tier: Tier,
) -> Result<CompiledActor, RuntimeError> {
    let module = Module::new(engine, module_bytes).map_err(|e| RuntimeError::Compile {
        module_hash: module_hash.to_string(),
        reason: format!("{e:#}"),
    })?;
    CompiledActor::from_module(module, module_hash, tier)
}

/// A [`Hasher`] over SHA-256, so the digest does not depend on std's unstable `DefaultHasher`.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// Which compiler made a [`CompiledActor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Winch, wasmtime's single-pass baseline compiler: compiles a 1.8 MB module about 4×
    /// faster than Cranelift and runs it slower. Serves an actor's first start while
    /// Cranelift compiles in the background; its pools are then replaced by optimised ones.
    Baseline,
    /// Cranelift: what every pool runs once it is ready, and all the compile cache holds.
    Optimized,
}

/// A compiled, shape-checked actor module. Cheap to clone (two `Arc`s), `Send + Sync`.
#[derive(Clone)]
pub struct CompiledActor {
    pub(super) module: Module,
    pub(super) module_hash: Arc<str>,
    tier: Tier,
}

impl std::fmt::Debug for CompiledActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledActor")
            .field("module_hash", &self.module_hash)
            .field("tier", &self.tier)
            .finish()
    }
}

impl CompiledActor {
    pub(super) fn from_module(module: Module, module_hash: &str, tier: Tier) -> Result<CompiledActor, RuntimeError> {
        check_shape(&module).map_err(|reason| RuntimeError::ModuleShape {
            module_hash: module_hash.to_string(),
            reason,
        })?;
        Ok(CompiledActor {
            module,
            module_hash: Arc::from(module_hash),
            tier,
        })
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Linear memory one new instance starts with: its memory's minimum (defined or imported),
    /// in bytes; 0 for a module without memory.
    pub fn initial_memory_bytes(&self) -> u64 {
        let exported = self.module.exports().filter_map(|e| e.ty().memory().cloned());
        let imported = self.module.imports().filter_map(|i| i.ty().memory().cloned());
        exported
            .chain(imported)
            .map(|memory| memory.minimum().saturating_mul(memory.page_size()))
            .max()
            .unwrap_or(0)
    }

    pub fn module_hash(&self) -> &str {
        &self.module_hash
    }
}

/// Why a module is not a wasmbus actor (PROTOCOL §9.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("it does not export `__guest_call`")]
    NoGuestCall,
    #[error("its `__guest_call` is not (i32, i32) -> i32")]
    GuestCallType,
    #[error("it does not export a memory named `memory`")]
    NoMemory,
    #[error("its export `{0}` is not a function () -> ()")]
    InitType(String),
    #[error("it imports `{module}.{name}`: only `wasmbus`, `wapc` and `wasi_snapshot_preview1` are provided")]
    ForeignImport { module: String, name: String },
    #[error("it imports `{module}.{name}`, which the wasmbus ABI does not define")]
    UnknownImport { module: String, name: String },
    #[error("its import `{module}.{name}` has the wrong type (expected {expected})")]
    ImportType {
        module: String,
        name: String,
        expected: &'static str,
    },
    #[error("it imports `wasi_snapshot_preview1.{0}`, which cannot be stubbed (not a function returning an errno)")]
    UnsupportedWasi(String),
}

/// Exports a wasmbus host calls once per instance, in this order, if present (§9.2 step 1).
pub const INIT_EXPORTS: [&str; 3] = ["_initialize", "_start", "wapc_init"];

fn is_type(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    ty.params().len() == params.len()
        && ty.results().len() == results.len()
        && ty.params().zip(params).all(|(a, b)| ValType::eq(&a, b))
        && ty.results().zip(results).all(|(a, b)| ValType::eq(&a, b))
}

/// Check exports and imports (PROTOCOL §9.1): `__guest_call` (i32, i32) -> i32 and `memory`
/// exported; init exports () -> (); imports only from the modules we provide, each with the
/// type we define for it. Done at compile time so a bad module fails at `start`, not mid-call.
pub fn check_shape(module: &Module) -> Result<(), ShapeError> {
    match module.get_export("__guest_call") {
        Some(ExternType::Func(ty)) if is_type(&ty, &[ValType::I32, ValType::I32], &[ValType::I32]) => {}
        Some(_) => return Err(ShapeError::GuestCallType),
        None => return Err(ShapeError::NoGuestCall),
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(ShapeError::NoMemory);
    }
    for name in INIT_EXPORTS {
        match module.get_export(name) {
            None => {}
            Some(ExternType::Func(ty)) if is_type(&ty, &[], &[]) => {}
            Some(_) => return Err(ShapeError::InitType(name.to_string())),
        }
    }
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        let ExternType::Func(ty) = import.ty() else {
            return Err(ShapeError::ForeignImport {
                module: module_name.to_string(),
                name: name.to_string(),
            });
        };
        match abi::import_kind(module_name, name) {
            ImportKind::Foreign => {
                return Err(ShapeError::ForeignImport {
                    module: module_name.to_string(),
                    name: name.to_string(),
                })
            }
            ImportKind::UnknownWasmbus => {
                return Err(ShapeError::UnknownImport {
                    module: module_name.to_string(),
                    name: name.to_string(),
                })
            }
            ImportKind::Known(sig) => {
                if !is_type(&ty, sig.params, sig.results) {
                    return Err(ShapeError::ImportType {
                        module: module_name.to_string(),
                        name: name.to_string(),
                        expected: sig.text,
                    });
                }
            }
            ImportKind::OtherWasi => {
                if !abi::can_stub_enosys(&ty) {
                    return Err(ShapeError::UnsupportedWasi(name.to_string()));
                }
            }
        }
    }
    Ok(())
}
