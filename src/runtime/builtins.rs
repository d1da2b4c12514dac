//! The host's builtin capabilities (PROTOCOL §9.4 step 1): `wasmcloud:builtin:logging` and
//! `wasmcloud:builtin:numbergen`, answered inside the host call for actors that claim them,
//! without leaving the host.
//!
//! Data plane (inside a guest's host call). Owns the builtins' namespaces and which of them an
//! actor was granted ([`BuiltinGrants`]); the ABI ([`super::abi`]) calls in, and nothing here
//! imports the ABI.

use rand::Rng;
use serde::Deserialize;

/// Namespace of the logging builtin.
pub const BUILTIN_LOGGING: &str = "wasmcloud:builtin:logging";
/// Namespace of the number generator builtin.
pub const BUILTIN_NUMBERGEN: &str = "wasmcloud:builtin:numbergen";

/// The builtins one actor may call: those among its claimed capabilities. Built once per pool,
/// so a host call compares two booleans instead of searching the claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuiltinGrants {
    /// [`BUILTIN_LOGGING`] is among the actor's claimed capabilities.
    pub logging: bool,
    /// [`BUILTIN_NUMBERGEN`] is among the actor's claimed capabilities.
    pub numbergen: bool,
}

impl BuiltinGrants {
    /// The builtins among `caps` (an actor's claimed capabilities).
    pub fn claimed(caps: &[String]) -> BuiltinGrants {
        BuiltinGrants {
            logging: caps.iter().any(|c| c == BUILTIN_LOGGING),
            numbergen: caps.iter().any(|c| c == BUILTIN_NUMBERGEN),
        }
    }
}

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

/// Serve a builtin for actor `actor_key`, or `None` when `namespace` is not one.
pub fn builtin(
    actor_key: &str,
    grants: BuiltinGrants,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Option<Result<Vec<u8>, String>> {
    match namespace {
        BUILTIN_LOGGING if !grants.logging => Some(Err(not_claimed(namespace))),
        BUILTIN_NUMBERGEN if !grants.numbergen => Some(Err(not_claimed(namespace))),
        BUILTIN_LOGGING => Some(logging(actor_key, operation, payload)),
        BUILTIN_NUMBERGEN => Some(numbergen(operation, payload)),
        _ => None,
    }
}

fn not_claimed(namespace: &str) -> String {
    format!("actor does not have the capability {namespace} in its claims")
}

fn logging(actor: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    if operation != "Logging.WriteLog" {
        return Err(format!("unknown operation {operation} for {BUILTIN_LOGGING}"));
    }
    let entry: LogEntry = rmp_serde::from_slice(payload).map_err(|e| format!("invalid log entry: {e}"))?;
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
