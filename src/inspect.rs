//! `shardhost claims inspect FILE`: print the claims embedded in an actor module and whether
//! this host would accept them (signature, issuer, times, module hash).
//!
//! A small user-facing tool; runs outside both planes.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::auth::claims::{self, ActorClaims, JwtSection};

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
    let module_hash = claims::module_hash(module)?;
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
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    describe(&module, now_secs).with_context(|| format!("{}", path.display()))
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
}
