//! The host's builtin capabilities (PROTOCOL §9.4 step 1): `wasmcloud:builtin:logging` and
//! `wasmcloud:builtin:numbergen`, answered inside the host call for actors that claim them,
//! without leaving the host.

use rand::Rng;
use serde::Deserialize;

use super::abi::{ActorContext, BUILTIN_LOGGING, BUILTIN_NUMBERGEN};

#[derive(Deserialize)]
struct LogEntry {
    level: String,
    text: String,
}

#[derive(Deserialize)]
struct RangeLimit {
    min: u32,
    max: u32,
}

/// Serve a builtin, or `None` when `namespace` is not one.
pub fn builtin(
    actor: &ActorContext,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Option<Result<Vec<u8>, String>> {
    match namespace {
        BUILTIN_LOGGING if !actor.allow_logging => Some(Err(not_claimed(namespace))),
        BUILTIN_NUMBERGEN if !actor.allow_numbergen => Some(Err(not_claimed(namespace))),
        BUILTIN_LOGGING => Some(logging(actor, operation, payload)),
        BUILTIN_NUMBERGEN => Some(numbergen(operation, payload)),
        _ => None,
    }
}

fn not_claimed(namespace: &str) -> String {
    format!("actor does not have the capability {namespace} in its claims")
}

fn logging(actor: &ActorContext, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    if operation != "Logging.WriteLog" {
        return Err(format!("unknown operation {operation} for {BUILTIN_LOGGING}"));
    }
    let entry: LogEntry = rmp_serde::from_slice(payload).map_err(|e| format!("invalid log entry: {e}"))?;
    let actor = &*actor.actor_key;
    let text = &entry.text;
    match entry.level.as_str() {
        "trace" => tracing::trace!(actor, "{text}"),
        "debug" => tracing::debug!(actor, "{text}"),
        "warn" => tracing::warn!(actor, "{text}"),
        "error" | "critical" => tracing::error!(actor, "{text}"),
        _ => tracing::info!(actor, "{text}"),
    }
    Ok(Vec::new())
}

fn numbergen(operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let encoded = match operation {
        "NumberGen.GenerateGuid" => rmp_serde::to_vec(&uuid::Uuid::new_v4().to_string()),
        "NumberGen.Random32" => rmp_serde::to_vec(&rand::thread_rng().gen::<u32>()),
        "NumberGen.RandomInRange" => {
            let range: RangeLimit = rmp_serde::from_slice(payload).map_err(|e| format!("invalid range: {e}"))?;
            if range.min > range.max {
                return Err(format!("invalid range: min {} > max {}", range.min, range.max));
            }
            rmp_serde::to_vec(&rand::thread_rng().gen_range(range.min..=range.max))
        }
        _ => return Err(format!("unknown operation {operation} for {BUILTIN_NUMBERGEN}")),
    };
    encoded.map_err(|e| format!("cannot encode the result: {e}"))
}
