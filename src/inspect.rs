//! `shardhost claims inspect FILE`: print the claims embedded in an actor module and whether
//! this host would accept them (signature, issuer, times, module hash). `shardhost claims sign
//! IN OUT`: embed new claims signed by an account key (what `wash claims sign` did for 0.x
//! actors), so test and load-test actors need no other tool.
//!
//! A small user-facing tool; runs outside both planes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::auth::claims::{self, ActorClaims, ActorSpec, JwtSection};

fn rfc3339(secs: Option<u64>) -> Value {
    secs.and_then(|s| chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, 0))
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// Describe the claims of `module` at time `now_secs`. `Ok((report, valid))`; an error only
/// when the module holds no readable claims at all.
pub fn describe(module: &[u8], now_secs: u64) -> Result<(Value, bool)> {
    let (token, section) = claims::extract_jwt(module)?.context("the module has no embedded claims")?;
    let jwt = claims::decode_jwt(token)?;
    let actor = ActorClaims::from_jwt(&jwt)?;
    let mut module_hash = claims::module_hash(module)?;
    if module_hash != actor.hash {
        // A pre-0.9 signer hashed the sections as encoded (see `module_hash_as_encoded`).
        let as_encoded = claims::module_hash_as_encoded(module)?;
        if as_encoded == actor.hash {
            module_hash = as_encoded;
        }
    }
    let verdict = claims::validate_actor(module, now_secs);
    let report = json!({
        "section": match section { JwtSection::Current => "wasmcloud_jwt", JwtSection::Legacy => "jwt" },
        "subject": actor.subject,
        "issuer": actor.issuer,
        "name": actor.name,
        "version": actor.ver,
        "revision": actor.revision_or_iat(),
        "call_alias": actor.call_alias,
        "caps": actor.caps,
        "tags": actor.tags,
        "issued_at": rfc3339(Some(actor.iat_secs)),
        "expires": rfc3339(actor.exp_secs),
        "not_before": rfc3339(actor.nbf_secs),
        "wascap_revision": actor.wascap_revision,
        "signed_module_hash": actor.hash,
        "module_hash": module_hash,
        "valid": verdict.is_ok(),
        "error": verdict.as_ref().err().map(ToString::to_string),
    });
    Ok((report, verdict.is_ok()))
}

/// Read `path` and describe it now.
pub fn inspect_file(path: &Path) -> Result<(Value, bool)> {
    let module = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    describe(&module, unix_now_secs()).with_context(|| format!("{}", path.display()))
}

/// `shardhost claims sign IN OUT …`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The wasm module to sign (any claims already in it are replaced).
    pub input: PathBuf,
    /// Where to write the signed module.
    pub output: PathBuf,
    /// Seed of the account key (`SA…`) that signs the claims.
    #[arg(long = "issuer-seed", env = "SHARDHOST_ISSUER_SEED", hide_env_values = true)]
    pub issuer_seed: String,
    /// Actor name.
    #[arg(long)]
    pub name: String,
    /// Capability contract id the actor may use, e.g. `wasmcloud:httpserver` (repeatable).
    #[arg(long = "cap")]
    pub caps: Vec<String>,
    /// Call alias, e.g. `examples/echo`.
    #[arg(long = "call-alias")]
    pub call_alias: Option<String>,
    /// Revision (`rev`); hosts use the issue time when it is absent.
    #[arg(long)]
    pub rev: Option<i32>,
    /// Human-readable version (`ver`).
    #[arg(long)]
    pub ver: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Seconds from now until the claims expire (default: never).
    #[arg(long = "expires-in-secs")]
    pub expires_in_secs: Option<u64>,
    /// Seconds from now before the claims become valid (default: at once).
    #[arg(long = "not-before-in-secs")]
    pub not_before_in_secs: Option<u64>,
}

impl SignArgs {
    /// The claims to write, issued at `now_secs`.
    pub fn spec(&self, now_secs: u64) -> ActorSpec {
        ActorSpec {
            name: self.name.clone(),
            caps: self.caps.clone(),
            call_alias: self.call_alias.clone(),
            rev: self.rev,
            ver: self.ver.clone(),
            tags: self.tags.clone(),
            expires_secs: self.expires_in_secs.map(|secs| now_secs.saturating_add(secs)),
            not_before_secs: self.not_before_in_secs.map(|secs| now_secs.saturating_add(secs)),
            now_secs,
        }
    }
}

/// Sign `module` with the account seed `issuer_seed` and check the result the way a host will
/// (at `now_secs`, unless `nbf` is later). Returns the signed module and its claims.
pub fn sign_module(module: &[u8], issuer_seed: &str, spec: &ActorSpec) -> Result<(Vec<u8>, ActorClaims)> {
    let account = nkeys::KeyPair::from_seed(issuer_seed.trim()).context("--issuer-seed is not a valid nkey seed")?;
    if account.key_pair_type() != nkeys::KeyPairType::Account {
        bail!(
            "--issuer-seed must be an account seed (SA…), not a {:?} seed",
            account.key_pair_type()
        );
    }
    let signed = claims::sign_actor_module(module, &account, spec)?;
    let check_secs = spec.not_before_secs.unwrap_or(spec.now_secs).max(spec.now_secs);
    let claims = claims::validate_actor(&signed, check_secs).context("the signed module does not validate")?;
    Ok((signed, claims))
}

/// `shardhost claims sign`: read, sign, write. Returns the new module key (`M…`).
pub fn sign_file(args: &SignArgs) -> Result<String> {
    let module = std::fs::read(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    let (signed, claims) = sign_module(&module, &args.issuer_seed, &args.spec(unix_now_secs()))
        .with_context(|| format!("{}", args.input.display()))?;
    std::fs::write(&args.output, signed).with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(claims.subject)
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkit::{actor_module, now_secs, sign, sign_with};

    #[test]
    fn reports_a_valid_actor() {
        let signed = sign(&actor_module());
        let (report, valid) = describe(&signed.module, now_secs()).unwrap();
        assert!(valid, "{report}");
        assert_eq!(report["subject"], signed.subject.public_key());
        assert_eq!(report["issuer"], signed.account.public_key());
        assert_eq!(report["signed_module_hash"], report["module_hash"]);
        assert_eq!(report["call_alias"], "wasmcloud/echo");
        assert!(report["error"].is_null());
    }

    #[test]
    fn reports_why_an_actor_is_refused() {
        let now = now_secs();
        let expired = sign_with(&actor_module(), None, Some(now - 10), Some(1));
        let (report, valid) = describe(&expired.module, now).unwrap();
        assert!(!valid);
        assert!(report["error"].as_str().unwrap().contains("expired"), "{report}");
        assert!(describe(&actor_module(), now).is_err(), "no claims at all is an error");
    }

    #[test]
    fn signs_and_inspects_a_module() {
        let account = nkeys::KeyPair::new_account();
        let args = SignArgs {
            input: PathBuf::new(),
            output: PathBuf::new(),
            issuer_seed: account.seed().unwrap(),
            name: "Echo".to_string(),
            caps: vec!["wasmcloud:httpserver".to_string()],
            call_alias: Some("loadtest/echo".to_string()),
            rev: None,
            ver: None,
            tags: Vec::new(),
            expires_in_secs: Some(3600),
            not_before_in_secs: None,
        };
        let now = now_secs();
        let (signed, claims) = sign_module(&actor_module(), &args.issuer_seed, &args.spec(now)).unwrap();
        assert_eq!(claims.issuer, account.public_key());
        assert_eq!(claims.exp_secs, Some(now + 3600));
        let (report, valid) = describe(&signed, now).unwrap();
        assert!(valid, "{report}");
        assert_eq!(report["subject"], claims.subject);
        assert_eq!(report["call_alias"], "loadtest/echo");

        let cluster_seed = nkeys::KeyPair::new_cluster().seed().unwrap();
        let error = sign_module(&actor_module(), &cluster_seed, &args.spec(now)).unwrap_err();
        assert!(error.to_string().contains("account seed"), "{error}");
        assert!(sign_module(&actor_module(), "SAnot-a-seed", &args.spec(now)).is_err());
    }
}
