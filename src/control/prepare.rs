//! Getting a module ready to run, off the control loop: fetch it, validate its claims
//! strictly, and compile it — from the compile cache when it has the module, else with the
//! baseline compiler (Winch) so a first start is fast, while Cranelift compiles in the
//! background and reports [`Optimized`] to the control loop, which swaps the pools.
//!
//! Control plane; compiling runs on blocking threads. Nothing here runs unsigned code.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::claims::{self, ActorClaims};
use crate::runtime::{CacheSource, CompileCache, CompiledActor, Runtime, RuntimeError};

use super::fetch::{Fetched, Fetcher};
use super::registries::Registries;

/// A module fetched, validated and compiled.
pub struct Prepared {
    pub fetched: Fetched,
    pub claims: ActorClaims,
    pub compiled: CompiledActor,
}

/// What the background task needs, shared with the control plane.
#[derive(Clone)]
pub struct Preparer {
    pub fetcher: Arc<tokio::sync::Mutex<Fetcher>>,
    pub compile_cache: Arc<std::sync::Mutex<CompileCache>>,
    /// For the baseline compiler (when the runtime has it).
    pub runtime: Runtime,
    /// Where the background Cranelift compile of a baseline start reports.
    pub optimized_tx: tokio::sync::mpsc::UnboundedSender<Optimized>,
    /// Baseline code by module hash while Cranelift compiles it: a start meanwhile reuses it
    /// (and starts no second compile).
    pub optimizing: Arc<std::sync::Mutex<HashMap<String, CompiledActor>>>,
}

/// Cranelift's result for a module that started on baseline code.
pub struct Optimized {
    pub module_hash: String,
    pub result: Result<CompiledActor, String>,
    pub compile_us: u64,
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Preparer {
    /// Fetch `reference`, validate its claims strictly, and compile it (once per module hash).
    pub async fn prepare(&self, reference: &str, registries: &Registries) -> Result<Prepared, String> {
        let began = std::time::Instant::now();
        let fetched = self
            .fetcher
            .lock()
            .await
            .fetch_actor(reference, registries)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let fetch_us = began.elapsed().as_micros() as u64;
        let claims = claims::validate_actor(&fetched.bytes, unix_now_secs())
            .map_err(|e| format!("actor {reference} refused: {e}"))?;
        let claims_us = began.elapsed().as_micros() as u64 - fetch_us;
        let (compiled, source) = self
            .compile(fetched.bytes.clone(), claims.hash.clone())
            .await
            .map_err(|e| format!("actor {reference} cannot be compiled: {e}"))?;
        tracing::info!(
            reference,
            module_bytes = fetched.bytes.len(),
            fetch_us,
            claims_us,
            compile_us = began.elapsed().as_micros() as u64 - fetch_us - claims_us,
            source,
            "actor module prepared"
        );
        Ok(Prepared {
            fetched,
            claims,
            compiled,
        })
    }
}

impl Preparer {
    /// The module's code: the optimised one when the compile cache has it; else, with the
    /// baseline compiler, Winch's (Cranelift then compiles in the background and reports on
    /// `optimized_tx`); else Cranelift's, compiled now. A module Winch cannot compile is
    /// compiled by Cranelift now.
    #[tracing::instrument(name = "compile", skip_all, fields(otel.name = "actor compile", module_hash = %hash, bytes = bytes.len()))]
    async fn compile(&self, bytes: Bytes, hash: String) -> Result<(CompiledActor, &'static str), String> {
        let cache = self.compile_cache.clone();
        let lookup = hash.clone();
        let cached = tokio::task::spawn_blocking(move || cache.lock().ok().and_then(|mut c| c.cached(&lookup)))
            .await
            .map_err(|e| format!("compile task failed: {e}"))?;
        if let Some((compiled, source)) = cached {
            return Ok((compiled, cache_source(source)));
        }
        if let Some(baseline) = self.optimizing.lock().ok().and_then(|m| m.get(&hash).cloned()) {
            return Ok((baseline, "baseline, optimising"));
        }
        if self.runtime.has_baseline() {
            let runtime = self.runtime.clone();
            let (module, module_hash) = (bytes.clone(), hash.clone());
            let baseline = tokio::task::spawn_blocking(move || runtime.compile_baseline(&module, &module_hash))
                .await
                .map_err(|e| format!("compile task failed: {e}"))?;
            match baseline {
                Some(Ok(compiled)) => {
                    // A concurrent first start of the same module may have won the race.
                    let mut optimizing = self.optimizing.lock().map_err(|_| "preparer poisoned".to_string())?;
                    if let Some(theirs) = optimizing.get(&hash) {
                        return Ok((theirs.clone(), "baseline, optimising"));
                    }
                    optimizing.insert(hash.clone(), compiled.clone());
                    drop(optimizing);
                    self.optimize_in_background(bytes, hash);
                    return Ok((compiled, "baseline"));
                }
                Some(Err(e @ RuntimeError::ModuleShape { .. })) => return Err(e.to_string()),
                Some(Err(e)) => {
                    tracing::warn!(module_hash = %hash, error = %e, "the baseline compiler refused the module; compiling with Cranelift")
                }
                None => {}
            }
        }
        let (cache, runtime) = (self.compile_cache.clone(), self.runtime.clone());
        tokio::task::spawn_blocking(move || optimize(&cache, &runtime, &bytes, &hash))
            .await
            .map_err(|e| format!("compile task failed: {e}"))?
            .map(|compiled| (compiled, cache_source(CacheSource::Compiled)))
    }

    fn optimize_in_background(&self, bytes: Bytes, module_hash: String) {
        let (cache, runtime) = (self.compile_cache.clone(), self.runtime.clone());
        let done = self.optimized_tx.clone();
        let optimizing = self.optimizing.clone();
        tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let result = optimize(&cache, &runtime, &bytes, &module_hash);
            let compile_us = began.elapsed().as_micros() as u64;
            // In the cache now (or failed: a later start tries again).
            if let Ok(mut optimizing) = optimizing.lock() {
                optimizing.remove(&module_hash);
            }
            // The control plane may have stopped: nothing left to swap then.
            let _ = done.send(Optimized {
                module_hash,
                result,
                compile_us,
            });
        });
    }
}

/// Compile with Cranelift without holding the cache (other starts keep using it meanwhile),
/// then keep the result in it.
fn optimize(
    cache: &std::sync::Mutex<CompileCache>,
    runtime: &Runtime,
    bytes: &[u8],
    module_hash: &str,
) -> Result<CompiledActor, String> {
    let compiled = runtime.compile(bytes, module_hash).map_err(|e| e.to_string());
    // Cranelift frees megabytes of IR on this thread; give them back before it idles.
    crate::runtime::heap::return_freed_memory();
    let compiled = compiled?;
    cache
        .lock()
        .map_err(|_| "compile cache poisoned".to_string())?
        .insert(&compiled)
        .map_err(|e| e.to_string())?;
    Ok(compiled)
}

fn cache_source(source: CacheSource) -> &'static str {
    match source {
        CacheSource::Memory => "memory cache",
        CacheSource::Disk => "disk cache",
        CacheSource::Compiled => "cranelift",
    }
}
