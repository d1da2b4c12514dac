//! The compile cache ([`CompileCache`]): each module compiled once by the optimising compiler,
//! kept in memory by module hash and, with `--cache-dir`, serialized to disk for the next
//! start. Control plane only (`&mut self`, no locks); shards receive [`CompiledActor`]s.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::Module;

use super::engine::{CompiledActor, Runtime, Tier};
use super::RuntimeError;

/// Most modules the in-memory compile cache keeps; beyond it an arbitrary entry is evicted
/// (modules stay alive while a pool uses them).
pub const COMPILE_CACHE_ENTRIES_MAX: usize = 1_024;
/// Longest module hash accepted as a cache key (a SHA-256 in hex is 64).
pub const MODULE_HASH_CHARS_MAX: usize = 128;
/// File name suffix of serialized modules in the disk cache.
const CACHE_FILE_SUFFIX: &str = "cwasm";

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

    /// The optimised module for `module_hash` if memory or the disk cache has it; never
    /// compiles (a first start compiles with the baseline compiler instead, then calls
    /// [`CompileCache::compile`] in the background).
    pub fn cached(&mut self, module_hash: &str) -> Option<(CompiledActor, CacheSource)> {
        if !valid_hash(module_hash) {
            return None;
        }
        if let Some(actor) = self.modules.get(module_hash) {
            self.stats.memory_hits += 1;
            return Some((actor.clone(), CacheSource::Memory));
        }
        let path = self.disk_path(module_hash).filter(|p| p.exists())?;
        let actor = self.load(&path, module_hash)?;
        self.stats.disk_hits += 1;
        self.remember(&actor);
        Some((actor, CacheSource::Disk))
    }

    /// Keep `actor` (optimised code compiled elsewhere, without holding the cache) in memory
    /// and, with a cache directory, on disk. Baseline code is never kept.
    pub fn insert(&mut self, actor: &CompiledActor) -> Result<(), RuntimeError> {
        if actor.tier() != Tier::Optimized {
            return Ok(());
        }
        if !valid_hash(&actor.module_hash) {
            return Err(RuntimeError::InvalidModuleHash(actor.module_hash.to_string()));
        }
        self.stats.compiled += 1;
        if let Some(path) = self.disk_path(&actor.module_hash) {
            if let Err(e) = write_serialized(actor, &path) {
                self.stats.disk_write_failures += 1;
                tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
            }
        }
        self.remember(actor);
        Ok(())
    }

    fn disk_path(&self, module_hash: &str) -> Option<PathBuf> {
        let dir = self.disk_dir.as_deref()?;
        Some(dir.join(format!(
            "{module_hash}-{:016x}.{CACHE_FILE_SUFFIX}",
            self.compatibility_digest
        )))
    }

    fn remember(&mut self, actor: &CompiledActor) {
        if self.modules.len() >= COMPILE_CACHE_ENTRIES_MAX {
            if let Some(key) = self.modules.keys().next().cloned() {
                self.modules.remove(&key);
                self.stats.evicted += 1;
            }
        }
        self.modules.insert(Arc::clone(&actor.module_hash), actor.clone());
    }

    /// The compiled module for `module_hash`: from memory, else from the disk cache, else
    /// compiled (and written to the disk cache). Shape errors are never cached.
    pub fn compile(
        &mut self,
        module_bytes: &[u8],
        module_hash: &str,
    ) -> Result<(CompiledActor, CacheSource), RuntimeError> {
        if !valid_hash(module_hash) {
            return Err(RuntimeError::InvalidModuleHash(module_hash.to_string()));
        }
        if let Some(actor) = self.modules.get(module_hash) {
            self.stats.memory_hits += 1;
            return Ok((actor.clone(), CacheSource::Memory));
        }
        let path = self.disk_path(module_hash);
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
        self.remember(&actor);
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
            .and_then(|m| CompiledActor::from_module(m, module_hash, Tier::Optimized).map_err(|e| e.to_string()))
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

fn valid_hash(module_hash: &str) -> bool {
    !module_hash.is_empty()
        && module_hash.len() <= MODULE_HASH_CHARS_MAX
        && module_hash.bytes().all(|b| b.is_ascii_alphanumeric())
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
