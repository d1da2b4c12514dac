//! Getting a module ready to run, off the control loop: fetch it, validate its claims
//! strictly, and compile it — from the compile cache when it has the module, else with the
//! baseline compiler (Winch) so a first start is fast, while Cranelift compiles in the
//! background and reports [`Optimized`] to the control loop, which swaps the pools.
//!
//! Control plane; compiling runs on blocking threads. Nothing here runs unsigned code.

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
    async fn compile(&self, bytes: Bytes, hash: String) -> Result<(CompiledActor, &'static str), String> {
        let cache = self.compile_cache.clone();
        let lookup = hash.clone();
        let cached = tokio::task::spawn_blocking(move || cache.lock().ok().and_then(|mut c| c.cached(&lookup)))
            .await
            .map_err(|e| format!("compile task failed: {e}"))?;
        if let Some((compiled, source)) = cached {
            return Ok((compiled, cache_source(source)));
        }
        if self.runtime.has_baseline() {
            let runtime = self.runtime.clone();
            let (module, module_hash) = (bytes.clone(), hash.clone());
            let baseline = tokio::task::spawn_blocking(move || runtime.compile_baseline(&module, &module_hash))
                .await
                .map_err(|e| format!("compile task failed: {e}"))?;
            match baseline {
                Some(Ok(compiled)) => {
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
        let cache = self.compile_cache.clone();
        tokio::task::spawn_blocking(move || {
            let mut cache = cache.lock().map_err(|_| "compile cache poisoned".to_string())?;
            cache.compile(&bytes, &hash).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("compile task failed: {e}"))?
        .map(|(compiled, source)| (compiled, cache_source(source)))
    }

    fn optimize_in_background(&self, bytes: Bytes, module_hash: String) {
        let cache = self.compile_cache.clone();
        let done = self.optimized_tx.clone();
        tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let result = match cache.lock() {
                Ok(mut cache) => cache
                    .compile(&bytes, &module_hash)
                    .map(|(c, _)| c)
                    .map_err(|e| e.to_string()),
                Err(_) => Err("compile cache poisoned".to_string()),
            };
            let compile_us = began.elapsed().as_micros() as u64;
            // The control plane may have stopped: nothing left to swap then.
            let _ = done.send(Optimized {
                module_hash,
                result,
                compile_us,
            });
        });
    }
}

fn cache_source(source: CacheSource) -> &'static str {
    match source {
        CacheSource::Memory => "memory cache",
        CacheSource::Disk => "disk cache",
        CacheSource::Compiled => "cranelift",
    }
}
