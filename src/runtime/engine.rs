//! The process's one wasmtime [`Engine`] ([`Runtime`]), its epoch thread, compiled actors
//! ([`CompiledActor`]), the module shape check, and the compile cache ([`CompileCache`]).
//!
//! Control plane: compiling and the on-disk cache run on the control plane, which owns the
//! cache (`&mut self`, no locks). Shards only receive [`CompiledActor`]s (cheap `Clone`,
//! `Send + Sync`). Never falls back silently: a pooling reservation that cannot be made is an
//! error that names the sizes.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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
use super::limits::{RuntimeLimits, MEMORY_GUARD_BYTES, TABLE_ELEMENTS_MAX, TABLE_ELEMENT_BYTES};
use super::RuntimeError;

/// Most modules the in-memory compile cache keeps; beyond it an arbitrary entry is evicted
/// (modules stay alive while a pool uses them).
pub const COMPILE_CACHE_ENTRIES_MAX: usize = 1_024;
/// Longest module hash accepted as a cache key (a SHA-256 in hex is 64).
pub const MODULE_HASH_CHARS_MAX: usize = 128;
/// File name suffix of serialized modules in the disk cache.
const CACHE_FILE_SUFFIX: &str = "cwasm";

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
    engine: Engine,
    limits: RuntimeLimits,
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

        let mut config = Config::new();
        config
            .strategy(Strategy::Cranelift)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_wasm_stack_bytes)
            .async_stack_size(limits.async_stack_bytes)
            // Reserve exactly the allowed memory per slot (not 4 GiB): the reservation stays
            // proportional to what guests may use, at the price of explicit bounds checks.
            .memory_reservation(limits.memory_bytes_max)
            .memory_guard_size(MEMORY_GUARD_BYTES)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));

        let engine = Engine::new(&config).map_err(|e| RuntimeError::PoolingReservation {
            instance_slots_total: limits.instance_slots_total,
            slot_bytes: reservation.memory_slot_bytes,
            reservation_bytes: reservation.total_bytes,
            reason: format!("{e:#}"),
        })?;

        let (epoch_stop, stop_rx) = mpsc::channel::<()>();
        let tick = Duration::from_millis(limits.epoch_tick_ms);
        let ticker = engine.clone();
        let epoch = Arc::new(EpochState::default());
        let state = Arc::clone(&epoch);
        let epoch_thread = std::thread::Builder::new()
            .name("wasm-epoch".to_string())
            .spawn(move || {
                let mut idle_ticks = 0u32;
                // Ends when the sender drops (Disconnected) or on an explicit message.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(tick) {
                    ticker.increment_epoch();
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
                limits: *limits,
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

    /// Compile `module_bytes` (no cache; see [`CompileCache`]) and check it is a wasmbus actor.
    /// `module_hash` names the module in errors and travels with it (use
    /// [`crate::auth::claims::module_hash`]).
    pub fn compile(&self, module_bytes: &[u8], module_hash: &str) -> Result<CompiledActor, RuntimeError> {
        let module = Module::new(self.engine(), module_bytes).map_err(|e| RuntimeError::Compile {
            module_hash: module_hash.to_string(),
            reason: format!("{e:#}"),
        })?;
        CompiledActor::from_module(module, module_hash)
    }

    /// A 64-bit digest of everything that makes a serialized module loadable by this engine
    /// (wasmtime version, target, compiler flags, tunables), stable across restarts.
    pub fn compatibility_digest(&self) -> u64 {
        let mut hasher = Sha256Hasher(Sha256::new());
        self.engine().precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }
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

/// A compiled, shape-checked actor module. Cheap to clone (two `Arc`s), `Send + Sync`.
#[derive(Clone)]
pub struct CompiledActor {
    module: Module,
    module_hash: Arc<str>,
}

impl std::fmt::Debug for CompiledActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledActor")
            .field("module_hash", &self.module_hash)
            .finish()
    }
}

impl CompiledActor {
    fn from_module(module: Module, module_hash: &str) -> Result<CompiledActor, RuntimeError> {
        check_shape(&module).map_err(|reason| RuntimeError::ModuleShape {
            module_hash: module_hash.to_string(),
            reason,
        })?;
        Ok(CompiledActor {
            module,
            module_hash: Arc::from(module_hash),
        })
    }

    pub fn module(&self) -> &Module {
        &self.module
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

/// Where [`CompileCache::compile`] found the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    Memory,
    Disk,
    Compiled,
}

/// Counters of a [`CompileCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileCacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub compiled: u64,
    /// Disk entries that existed but did not load (stale engine, damaged file); recompiled.
    pub disk_rejected: u64,
    /// Serialized modules that could not be written (the module is still served).
    pub disk_write_failures: u64,
    pub evicted: u64,
}

/// Compile each module once. Owned by the control plane (`&mut self`, no locks): an in-memory
/// map from module hash to [`CompiledActor`], and optionally a directory of serialized modules
/// (`{hash}-{engine digest}.cwasm`) reused across restarts.
///
/// The key is the caller's module hash: pass [`crate::auth::claims::module_hash`] of the same
/// bytes (the claims check already computed it). Two different modules under one hash would
/// share one entry.
pub struct CompileCache {
    runtime: Runtime,
    modules: HashMap<Arc<str>, CompiledActor>,
    disk_dir: Option<PathBuf>,
    compatibility_digest: u64,
    stats: CompileCacheStats,
}

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CompileCache {
    /// A cache for `runtime`'s engine. `disk_dir` is created (mode 0700) if missing; it must be
    /// owned by this user and writable by nobody else, since what it holds becomes native code.
    pub fn new(runtime: &Runtime, disk_dir: Option<&Path>) -> Result<CompileCache, RuntimeError> {
        if let Some(dir) = disk_dir {
            prepare_cache_dir(dir)?;
        }
        Ok(CompileCache {
            runtime: runtime.clone(),
            modules: HashMap::new(),
            disk_dir: disk_dir.map(Path::to_path_buf),
            compatibility_digest: runtime.compatibility_digest(),
            stats: CompileCacheStats::default(),
        })
    }

    pub fn stats(&self) -> CompileCacheStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Forget a module in memory (the disk entry stays for the next start).
    pub fn evict(&mut self, module_hash: &str) -> bool {
        self.modules.remove(module_hash).is_some()
    }

    /// The compiled module for `module_hash`: from memory, else from the disk cache, else
    /// compiled (and written to the disk cache). Shape errors are never cached.
    pub fn compile(
        &mut self,
        module_bytes: &[u8],
        module_hash: &str,
    ) -> Result<(CompiledActor, CacheSource), RuntimeError> {
        if module_hash.is_empty()
            || module_hash.len() > MODULE_HASH_CHARS_MAX
            || !module_hash.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(RuntimeError::InvalidModuleHash(module_hash.to_string()));
        }
        if let Some(actor) = self.modules.get(module_hash) {
            self.stats.memory_hits += 1;
            return Ok((actor.clone(), CacheSource::Memory));
        }
        let path = self.disk_dir.as_deref().map(|dir| {
            dir.join(format!(
                "{module_hash}-{:016x}.{CACHE_FILE_SUFFIX}",
                self.compatibility_digest
            ))
        });
        let (actor, source) = match path.as_deref().and_then(|p| self.load(p, module_hash)) {
            Some(actor) => {
                self.stats.disk_hits += 1;
                (actor, CacheSource::Disk)
            }
            None => {
                let actor = self.runtime.compile(module_bytes, module_hash)?;
                self.stats.compiled += 1;
                if let Some(p) = path.as_deref() {
                    if let Err(e) = write_serialized(&actor, p) {
                        self.stats.disk_write_failures += 1;
                        tracing::warn!(path = %p.display(), error = %e, "cannot write the compile cache");
                    }
                }
                (actor, CacheSource::Compiled)
            }
        };
        if self.modules.len() >= COMPILE_CACHE_ENTRIES_MAX {
            if let Some(key) = self.modules.keys().next().cloned() {
                self.modules.remove(&key);
                self.stats.evicted += 1;
            }
        }
        self.modules.insert(Arc::clone(&actor.module_hash), actor.clone());
        Ok((actor, source))
    }

    /// Load a serialized module we wrote; `None` (and a counted rejection) if it is missing,
    /// not ours, or not loadable by this engine.
    fn load(&mut self, path: &Path, module_hash: &str) -> Option<CompiledActor> {
        let meta = fs::symlink_metadata(path).ok()?;
        if !owned_by_us_and_private(&meta) || !meta.file_type().is_file() {
            self.stats.disk_rejected += 1;
            tracing::warn!(path = %path.display(), "ignoring a compile cache file that is not private to us");
            return None;
        }
        // SAFETY: `Module::deserialize_file` trusts the file to be a module serialized by a
        // compatible wasmtime and to stay unchanged while mapped. Both hold for files in our
        // cache directory: (1) the directory was created by us (or checked) with mode 0700 and
        // our owner, and the file is a regular file (no symlink) owned by us and not writable
        // by group/others, so only this user can have put it there; (2) we write a file only
        // from `Module::serialize` of an engine with the same compatibility digest (it is in
        // the file name), through a temporary file renamed into place, so a reader never sees
        // a partial file; (3) we never modify a file after the rename: a replacement is a new
        // inode, and the mapped one stays intact. Beyond that, wasmtime itself checks the
        // version and engine flags recorded in the file and refuses a mismatch.
        let loaded = unsafe { Module::deserialize_file(self.runtime.engine(), path) };
        match loaded
            .map_err(|e| format!("{e:#}"))
            .and_then(|m| CompiledActor::from_module(m, module_hash).map_err(|e| e.to_string()))
        {
            Ok(actor) => Some(actor),
            Err(reason) => {
                self.stats.disk_rejected += 1;
                tracing::warn!(path = %path.display(), %reason, "ignoring a compile cache file");
                None
            }
        }
    }
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

fn owned_by_us_and_private(meta: &fs::Metadata) -> bool {
    meta.uid() == current_uid() && meta.mode() & 0o022 == 0
}

fn prepare_cache_dir(dir: &Path) -> Result<(), RuntimeError> {
    let fail = |reason: String| RuntimeError::CacheDir {
        path: dir.display().to_string(),
        reason,
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(e.to_string()))?;
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("not a directory".to_string()));
    }
    if !owned_by_us_and_private(&meta) {
        return Err(fail(
            "must be owned by this user and not writable by group or others (its files become native code)".to_string(),
        ));
    }
    Ok(())
}

/// Serialize `actor` to `path` atomically: a private temporary file in the same directory,
/// synced, then renamed over `path`.
fn write_serialized(actor: &CompiledActor, path: &Path) -> Result<(), String> {
    let bytes = actor.module.serialize().map_err(|e| format!("{e:#}"))?;
    let dir = path.parent().ok_or("cache path has no directory")?;
    let temp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_FILE_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| e.to_string())
}
