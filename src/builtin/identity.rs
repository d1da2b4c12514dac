//! Who a built-in provider is on the lattice: its reference (`wasmcloud+builtin://…`, the 1.x
//! host's spelling), its contract, and a provider identity — a service key (`V…`) and the
//! claims stored under `CLAIMS_V…` — that is **the same on every shardhost host of every
//! lattice**, so one link definition serves every host that runs the built-in.
//!
//! The keys are derived, not configured: the service key's Ed25519 seed is the SHA-256 of
//! `shardhost builtin provider ` + the reference, the claims' issuer (an account key, `A…`) the
//! SHA-256 of `shardhost builtin issuer`. Anyone can derive them, and that is the point: no
//! secret is involved, because nothing is signed with these keys. Invocations a built-in sends
//! through the lattice are signed with the host's cluster key, as every host-made invocation
//! is (PROTOCOL §3.2); the seeds stay unused.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use nkeys::{KeyPair, KeyPairType};
use sha2::{Digest, Sha256};

use crate::auth::par::ProviderClaims;

/// The scheme of a built-in provider reference.
pub const BUILTIN_SCHEME: &str = "wasmcloud+builtin://";
/// The built-in HTTP server's reference.
pub const HTTP_SERVER_REF: &str = "wasmcloud+builtin://http-server";
/// The contract the built-in HTTP server serves.
pub const HTTP_SERVER_CONTRACT: &str = "wasmcloud:httpserver";
/// The built-in NATS messaging provider's reference.
pub const MESSAGING_NATS_REF: &str = "wasmcloud+builtin://messaging-nats";
/// The contract the built-in messaging provider serves.
pub const MESSAGING_CONTRACT: &str = "wasmcloud:messaging";
/// Revision in the claims (fixed: the identity never changes).
const BUILTIN_REVISION: i32 = 1;

/// The providers this host can serve itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuiltinProvider {
    /// `wasmcloud+builtin://http-server`: `wasmcloud:httpserver`, served by the shards.
    HttpServer,
    /// `wasmcloud+builtin://messaging-nats`: `wasmcloud:messaging` on the shards' NATS
    /// connections.
    MessagingNats,
}

/// Why a `wasmcloud+builtin://` reference cannot be started.
pub fn refusal(reference: &str) -> Option<String> {
    let name = reference.strip_prefix(BUILTIN_SCHEME)?;
    if BuiltinProvider::from_ref(reference).is_some() {
        return None;
    }
    Some(format!(
        "built-in provider {name:?} is not served by this host (built in: {HTTP_SERVER_REF}, {MESSAGING_NATS_REF})"
    ))
}

impl BuiltinProvider {
    /// Every built-in, for lookups by key.
    pub const ALL: [BuiltinProvider; 2] = [BuiltinProvider::HttpServer, BuiltinProvider::MessagingNats];

    /// The built-in a reference names (exactly; the scheme is case-sensitive as in 1.x).
    pub fn from_ref(reference: &str) -> Option<BuiltinProvider> {
        match reference {
            HTTP_SERVER_REF => Some(BuiltinProvider::HttpServer),
            MESSAGING_NATS_REF => Some(BuiltinProvider::MessagingNats),
            _ => None,
        }
    }

    /// The built-in whose service key is `key`.
    pub fn from_key(key: &str) -> Option<BuiltinProvider> {
        BuiltinProvider::ALL.into_iter().find(|b| b.key() == key)
    }

    pub fn reference(self) -> &'static str {
        match self {
            BuiltinProvider::HttpServer => HTTP_SERVER_REF,
            BuiltinProvider::MessagingNats => MESSAGING_NATS_REF,
        }
    }

    pub fn contract_id(self) -> &'static str {
        match self {
            BuiltinProvider::HttpServer => HTTP_SERVER_CONTRACT,
            BuiltinProvider::MessagingNats => MESSAGING_CONTRACT,
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            BuiltinProvider::HttpServer => "HTTP Server (shardhost built-in)",
            BuiltinProvider::MessagingNats => "NATS Messaging (shardhost built-in)",
        }
    }

    /// The provider release whose link settings the built-in reads (the claims' version).
    fn compat_version(self) -> &'static str {
        match self {
            BuiltinProvider::HttpServer => "0.19.1",
            BuiltinProvider::MessagingNats => "0.17.4",
        }
    }

    /// The service key (`V…`), derived from the reference (see the module docs).
    pub fn service_key(self) -> String {
        self.key().to_string()
    }

    /// [`Self::service_key`], derived once per process (the data plane compares against it).
    pub fn key(self) -> &'static str {
        static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            BuiltinProvider::ALL
                .iter()
                .map(|b| {
                    derived(
                        KeyPairType::Service,
                        &format!("shardhost builtin provider {}", b.reference()),
                    )
                })
                .collect()
        });
        let index = BuiltinProvider::ALL.iter().position(|b| *b == self).unwrap_or(0);
        keys.get(index).map_or("", String::as_str)
    }

    /// The claims a PAR would carry, for `CLAIMS_V…`, events and inventory.
    pub fn claims(self) -> ProviderClaims {
        ProviderClaims {
            subject: self.service_key(),
            issuer: derived(KeyPairType::Account, "shardhost builtin issuer"),
            jti: format!(
                "shardhost-builtin-{}",
                self.reference().trim_start_matches(BUILTIN_SCHEME)
            ),
            name: Some(self.display_name().to_string()),
            capid: self.contract_id().to_string(),
            vendor: "shardhost".to_string(),
            rev: Some(BUILTIN_REVISION),
            ver: Some(self.compat_version().to_string()),
            target_hashes: BTreeMap::new(),
            config_schema: None,
            iat_secs: 0,
            exp_secs: None,
            nbf_secs: None,
        }
    }
}

/// The public key of type `kind` whose seed is SHA-256(`label`).
fn derived(kind: KeyPairType, label: &str) -> String {
    let seed: [u8; 32] = Sha256::digest(label.as_bytes()).into();
    match KeyPair::new_from_raw(kind, seed) {
        Ok(pair) => pair.public_key(),
        // `new_from_raw` fails only for a seed of the wrong length; ours is 32 bytes.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_fixed_and_well_formed() {
        let key = BuiltinProvider::HttpServer.service_key();
        assert!(key.starts_with('V') && key.len() == 56, "{key}");
        // The same on every host: a second derivation gives the same key.
        assert_eq!(key, BuiltinProvider::HttpServer.service_key());
        assert!(nkeys::KeyPair::from_public_key(&key).is_ok());
        let claims = BuiltinProvider::HttpServer.claims();
        assert_eq!(claims.subject, key);
        assert!(claims.issuer.starts_with('A'));
        assert_eq!(claims.capid, "wasmcloud:httpserver");
        assert_eq!(claims.revision_or_iat(), 1);
        assert_eq!(BuiltinProvider::from_key(&key), Some(BuiltinProvider::HttpServer));
        assert_eq!(BuiltinProvider::from_key("Vnope"), None);
    }

    #[test]
    fn references_are_recognised_or_refused_with_a_reason() {
        assert_eq!(
            BuiltinProvider::from_ref("wasmcloud+builtin://http-server"),
            Some(BuiltinProvider::HttpServer)
        );
        assert_eq!(refusal("wasmcloud+builtin://http-server"), None);
        assert_eq!(
            BuiltinProvider::from_ref("wasmcloud+builtin://messaging-nats"),
            Some(BuiltinProvider::MessagingNats)
        );
        assert_ne!(
            BuiltinProvider::MessagingNats.service_key(),
            BuiltinProvider::HttpServer.service_key()
        );
        let why = refusal("wasmcloud+builtin://http-client").expect("refused");
        assert!(why.contains("http-client") && why.contains(HTTP_SERVER_REF), "{why}");
        assert_eq!(refusal("wasmcloud.azurecr.io/httpserver:0.19.1"), None);
    }
}
