//! `prepare-echo` and `gen-seed`: the actor a load test calls and the keys it needs.
//!
//! The echo actor is compiled from `echo.wat` (wasmbus ABI: it answers every operation with its
//! payload, so the generator can check replies; a `Wrap…` operation forwards the call to the
//! actor with call alias `loadtest/echo`, for the actor-to-actor scenario, and a `Kv…` one
//! calls its `wasmcloud:keyvalue` provider, for the actor-to-provider scenario) and signed with
//! shardhost's own claims signer, so a load test needs no `wash` and no registry.

use std::path::Path;

use shardhost::auth::claims::{sign_actor_module, validate_actor, ActorSpec};

use crate::error::LoadtestError;

/// The echo actor's source.
pub const ECHO_WAT: &str = include_str!("echo.wat");
/// Default capability: the default operation is `HttpServer.HandleRequest`, which a provider
/// origin may only send to an actor claiming `wasmcloud:httpserver` (PROTOCOL §4.5).
pub const ECHO_CAP_DEFAULT: &str = "wasmcloud:httpserver";

/// Which kind of nkey seed `gen-seed` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedKind {
    /// `SC…`: signs invocations (`--cluster-seed` of host and generator).
    Cluster,
    /// `SA…`: signs actor claims (`--issuer-seed`).
    Account,
    /// `SV…`: a provider's key (the load's origin for `put-claims` and `run --origin-key`).
    Service,
}

/// A new seed of `kind` and its public key.
pub fn gen_seed(kind: SeedKind) -> Result<(String, String), LoadtestError> {
    let key = match kind {
        SeedKind::Cluster => nkeys::KeyPair::new_cluster(),
        SeedKind::Account => nkeys::KeyPair::new_account(),
        SeedKind::Service => nkeys::KeyPair::new_service(),
    };
    let seed = key.seed().map_err(|e| LoadtestError::Arg {
        flag: "gen-seed",
        reason: e.to_string(),
    })?;
    Ok((seed, key.public_key()))
}

/// The signed echo actor.
#[derive(Debug, Clone)]
pub struct PreparedEcho {
    pub module: Vec<u8>,
    /// The actor's module key (`M…`): what `run --actor` targets.
    pub public_key: String,
    /// The account that signed it (`A…`).
    pub issuer: String,
}

/// Compile the echo actor and sign it with `account` as `name` with `caps`.
#[cfg(test)]
pub fn build_echo(
    account: &nkeys::KeyPair,
    name: &str,
    caps: &[String],
    call_alias: Option<&str>,
    now_secs: u64,
) -> Result<PreparedEcho, LoadtestError> {
    build_actor(ECHO_WAT, account, name, caps, call_alias, now_secs)
}

/// Compile `wat` and sign it with `account` as `name` with `caps`.
pub fn build_actor(
    wat: &str,
    account: &nkeys::KeyPair,
    name: &str,
    caps: &[String],
    call_alias: Option<&str>,
    now_secs: u64,
) -> Result<PreparedEcho, LoadtestError> {
    let module = wat::parse_str(wat).map_err(|e| LoadtestError::Wat(e.to_string()))?;
    let spec = ActorSpec {
        name: name.to_string(),
        caps: caps.to_vec(),
        call_alias: call_alias.map(str::to_string),
        rev: Some(1),
        ver: Some(env!("CARGO_PKG_VERSION").to_string()),
        tags: vec!["loadtest".to_string()],
        expires_secs: None,
        not_before_secs: None,
        now_secs,
    };
    let module = sign_actor_module(&module, account, &spec)?;
    // The host will run exactly this check; fail here, not there.
    let claims = validate_actor(&module, now_secs)?;
    Ok(PreparedEcho {
        module,
        public_key: claims.subject,
        issuer: claims.issuer,
    })
}

/// `prepare-echo`: build and write the actor to `out`. `issuer_seed` `None` → a new account
/// key (returned so the caller can say which).
pub fn prepare_echo(
    out: &Path,
    wat: Option<&str>,
    issuer_seed: Option<&str>,
    name: &str,
    caps: &[String],
    call_alias: Option<&str>,
    now_secs: u64,
) -> Result<PreparedEcho, LoadtestError> {
    let account = match issuer_seed {
        Some(seed) => nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| LoadtestError::Arg {
            flag: "--issuer-seed",
            reason: e.to_string(),
        })?,
        None => nkeys::KeyPair::new_account(),
    };
    let prepared = build_actor(wat.unwrap_or(ECHO_WAT), &account, name, caps, call_alias, now_secs)?;
    std::fs::write(out, &prepared.module).map_err(|e| LoadtestError::io(out, e))?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn echo_actor_is_signed_and_valid() {
        let account = nkeys::KeyPair::new_account();
        let caps = vec![ECHO_CAP_DEFAULT.to_string()];
        let echo = build_echo(&account, "loadtest-echo", &caps, Some("loadtest/echo"), now()).unwrap();
        assert!(echo.public_key.starts_with('M'));
        assert_eq!(echo.issuer, account.public_key());
        let claims = validate_actor(&echo.module, now()).unwrap();
        assert_eq!(claims.caps, caps);
        assert_eq!(claims.call_alias.as_deref(), Some("loadtest/echo"));
        // It is a wasmbus actor: it exports __guest_call and memory.
        let text = String::from_utf8_lossy(&echo.module);
        assert!(text.contains("__guest_call") && text.contains("memory"));
    }

    #[test]
    fn prepare_writes_the_module_and_checks_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("echo.wasm");
        let (seed, public_key) = gen_seed(SeedKind::Account).unwrap();
        assert!(seed.starts_with("SA") && public_key.starts_with('A'));
        let echo = prepare_echo(&out, None, Some(&seed), "e", &[], None, now()).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), echo.module);
        assert_eq!(echo.issuer, public_key);

        let (cluster_seed, cluster_key) = gen_seed(SeedKind::Cluster).unwrap();
        assert!(cluster_seed.starts_with("SC") && cluster_key.starts_with('C'));
        // A cluster seed cannot sign actor claims.
        assert!(matches!(
            prepare_echo(&out, None, Some(&cluster_seed), "e", &[], None, now()),
            Err(LoadtestError::SignActor(_))
        ));
        assert!(matches!(
            prepare_echo(&out, None, Some("SAnope"), "e", &[], None, now()),
            Err(LoadtestError::Arg { .. })
        ));
        // No seed: a new account signs.
        prepare_echo(&out, None, None, "e", &[], None, now()).unwrap();
    }
}
