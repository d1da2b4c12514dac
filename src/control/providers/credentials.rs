//! Least-privilege NATS credentials for providers, minted with `nats-io-jwt` when the host is
//! given an account seed (`--prov-rpc-account-seed`): each provider instance gets its own user
//! key and a user JWT signed by that account, allowed only
//! - to subscribe to its own subjects `wasmbus.rpc.{lattice}.{V…}.{link}` (RPC) and
//!   `….{link}.>` (linkdefs put/del, health, shutdown), and to `_INBOX.>` (replies to its
//!   own requests);
//! - to publish to actor RPC subjects `wasmbus.rpc.{lattice}.*` (one token: actors, never
//!   another provider's `{V…}.{link}` subjects) and to `_INBOX.>` (its replies).
//!
//! Not a bearer token: the provider must sign the server's nonce with the user seed. Without the
//! account seed, providers get the `--prov-rpc-*` credentials as the 0.x hosts did.
//!
//! Control plane; pure apart from key generation.

use anyhow::{Context, Result};
use nats_io_jwt::{Permission, Token, User};

use super::ProviderCredentials;

/// The subject permissions of one provider instance: (publish, subscribe).
pub fn permissions(lattice: &str, provider_key: &str, link_name: &str) -> (Vec<String>, Vec<String>) {
    let own = format!("wasmbus.rpc.{lattice}.{provider_key}.{link_name}");
    let inbox = "_INBOX.>".to_string();
    let publish = vec![format!("wasmbus.rpc.{lattice}.*"), inbox.clone()];
    let subscribe = vec![own.clone(), format!("{own}.>"), inbox];
    (publish, subscribe)
}

/// A new user key and its JWT, signed by `account` (the account's own key: the JWT names no
/// separate `issuer_account`).
pub fn mint(
    account: &nkeys::KeyPair,
    lattice: &str,
    provider_key: &str,
    link_name: &str,
) -> Result<ProviderCredentials> {
    let user_key = nkeys::KeyPair::new_user();
    let (publish, subscribe) = permissions(lattice, provider_key, link_name);
    let claims: User = User::builder()
        .pub_(Permission::from(publish))
        .sub(Permission::from(subscribe))
        .bearer_token(false)
        .try_into()
        .map_err(|e| anyhow::anyhow!("provider user claims: {e}"))?;
    let jwt = Token::new(user_key.public_key())
        .name(format!("shardhost provider {provider_key}/{link_name}"))
        .claims(claims)
        .sign(account);
    let seed = user_key.seed().context("new user key has no seed")?;
    Ok(ProviderCredentials { jwt, seed })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn the_jwt_scopes_the_provider_to_its_own_subjects() {
        let account = nkeys::KeyPair::new_account();
        let creds = mint(&account, "lat", "VPROV", "default").unwrap();
        let user = nkeys::KeyPair::from_seed(&creds.seed).unwrap();
        let payload = creds.jwt.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], account.public_key());
        assert_eq!(claims["sub"], user.public_key());
        let nats = &claims["nats"];
        assert_eq!(nats["type"], "user");
        assert_eq!(nats["bearer_token"], false);
        assert_eq!(
            nats["sub"]["allow"],
            serde_json::json!([
                "wasmbus.rpc.lat.VPROV.default",
                "wasmbus.rpc.lat.VPROV.default.>",
                "_INBOX.>"
            ])
        );
        assert_eq!(
            nats["pub"]["allow"],
            serde_json::json!(["wasmbus.rpc.lat.*", "_INBOX.>"])
        );
        // Two instances never share a key.
        let other = mint(&account, "lat", "VPROV", "default").unwrap();
        assert_ne!(other.seed, creds.seed);
    }
}
