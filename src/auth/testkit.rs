//! Test kit shared by the unit tests: WAT actors and signing them with wascap 0.11 — the
//! real signer of the wasmCloud 0.x era. Test-only.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use wascap::jwt::{Actor, Claims as WascapClaims};
use wascap::prelude::KeyPair as WascapKeyPair;

/// A waPC-shaped actor: imports `__host_call`, exports memory and `__guest_call`. The `$ids`
/// make the wat crate emit a `name` custom section, which must stay in the hash.
pub const ACTOR_WAT: &str = r#"(module
        (import "wapc" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
        (memory $mem (export "memory") 1)
        (func $guest_call (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
            i32.const 1)
        (data (i32.const 16) "hello, lattice"))"#;

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn actor_module() -> Vec<u8> {
    wat::parse_str(ACTOR_WAT).unwrap()
}

pub struct Signed {
    pub module: Vec<u8>,
    pub account: WascapKeyPair,
    pub subject: WascapKeyPair,
}

pub fn wascap_claims(
    issuer: &WascapKeyPair,
    subject: &WascapKeyPair,
    nbf: Option<u64>,
    exp: Option<u64>,
    rev: Option<i32>,
) -> WascapClaims<Actor> {
    WascapClaims::<Actor>::with_dates(
        "Echo".to_string(),
        issuer.public_key(),
        subject.public_key(),
        Some(vec![
            "wasmcloud:httpserver".to_string(),
            "wasmcloud:keyvalue".to_string(),
        ]),
        Some(vec!["test".to_string(), "echo".to_string()]),
        nbf,
        exp,
        false,
        rev,
        Some("0.3.4".to_string()),
        Some("wasmcloud/echo".to_string()),
    )
}

pub fn sign_with(module: &[u8], nbf: Option<u64>, exp: Option<u64>, rev: Option<i32>) -> Signed {
    let account = WascapKeyPair::new_account();
    let subject = WascapKeyPair::new_module();
    let claims = wascap_claims(&account, &subject, nbf, exp, rev);
    let module = wascap::wasm::embed_claims(module, &claims, &account).unwrap();
    Signed {
        module,
        account,
        subject,
    }
}

pub fn sign(module: &[u8]) -> Signed {
    sign_with(module, None, None, Some(4))
}

/// Sign `module` as an actor claiming the capabilities `caps` (with a call alias).
#[cfg_attr(not(feature = "host"), allow(dead_code))]
pub fn sign_with_caps(module: &[u8], caps: &[&str]) -> Signed {
    let account = WascapKeyPair::new_account();
    let subject = WascapKeyPair::new_module();
    let mut claims = wascap_claims(&account, &subject, None, None, Some(1));
    if let Some(metadata) = claims.metadata.as_mut() {
        metadata.caps = Some(caps.iter().map(|c| c.to_string()).collect());
        metadata.call_alias = Some("wasmcloud/builtins".to_string());
    }
    let module = wascap::wasm::embed_claims(module, &claims, &account).unwrap();
    Signed {
        module,
        account,
        subject,
    }
}
