//! Anti-forgery (PROTOCOL §3): the invocation hash, decoding the invocation JWT, the checks a
//! host applies to every inbound invocation (§3.3), the capability check on the invocation
//! source (§4.5), and signing our own outbound invocations (§3.2).
//!
//! Plane: pure code. The shards run [`decode_invocation_token`], then one batched signature
//! check for the whole batch (`auth::verify_batch`), then [`check_invocation`] and
//! [`check_capability`] per invocation. No I/O, no async, no clock: `now_secs` is an argument.
//!
//! Must never: panic on any token or invocation, or relax a trust rule. Shape is accepted
//! liberally (PROTOCOL §16): `host_id` only needs the `N…`, 56-character shape, and an actor
//! origin (empty contract id, e.g. `wash call`'s `__WASH__`) needs no known claims.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::claims::{self, ClaimsError};
use crate::wire::invocation::{encode_invocation, EntityRef, InvocationFields, InvocationRef};

/// `wascap_revision` written into our tokens (wascap 0.11's current revision).
pub const WASCAP_REVISION: u32 = 3;
/// Length of a host (server) public nkey, `N…` (PROTOCOL §16).
pub const HOST_ID_CHARS: usize = 56;
/// Length of a `jti` (a NUID is 22 base-62 characters; the value does not matter, §3.2).
const JTI_CHARS: usize = 22;
const JTI_ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The only header wascap writes and accepts (§4.1), in wascap's field order.
const HEADER_JSON: &str = r#"{"typ":"jwt","alg":"Ed25519"}"#;
const HEX_UPPER_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Why an invocation was refused. Each variant has a fixed message for
/// `InvocationResponse.error` ([`AuthError::message`]); callers never format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    TokenTooLarge,
    MalformedToken,
    BadHeader,
    MissingIssuer,
    MissingSubject,
    BadIssuerKey,
    BadSignature,
    Expired,
    NotYetValid,
    MissingMetadata,
    UntrustedIssuer,
    TargetMismatch,
    OriginMismatch,
    HashMismatch,
    BadHostId,
    MissingCapability,
    /// Signing needs the cluster seed; the key pair given holds only a public key.
    CannotSign,
}

impl AuthError {
    /// The reply text. Anti-forgery failures start with "Anti-forgery check failed" and the
    /// capability failure with "Invocation source does not have the required capability claim",
    /// as the OTP and Rust hosts reply (PROTOCOL §2.4).
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::TokenTooLarge => "Anti-forgery check failed: invocation token is too large",
            AuthError::MalformedToken => "Anti-forgery check failed: invocation token is malformed",
            AuthError::BadHeader => "Anti-forgery check failed: invocation token header is not typ=jwt, alg=Ed25519",
            AuthError::MissingIssuer => "Anti-forgery check failed: invocation token has no issuer",
            AuthError::MissingSubject => "Anti-forgery check failed: invocation token has no subject",
            AuthError::BadIssuerKey => "Anti-forgery check failed: issuer is not a valid public key",
            AuthError::BadSignature => "Anti-forgery check failed: invocation token signature is invalid",
            AuthError::Expired => "Anti-forgery check failed: invocation token has expired",
            AuthError::NotYetValid => "Anti-forgery check failed: invocation token is not valid yet",
            AuthError::MissingMetadata => "Anti-forgery check failed: invocation token has no wascap invocation claims",
            AuthError::UntrustedIssuer => "Anti-forgery check failed: issuer is not a trusted cluster issuer",
            AuthError::TargetMismatch => "Anti-forgery check failed: target URL does not match the invocation",
            AuthError::OriginMismatch => "Anti-forgery check failed: origin URL does not match the invocation",
            AuthError::HashMismatch => "Anti-forgery check failed: invocation hash does not match the payload",
            AuthError::BadHostId => "Anti-forgery check failed: host_id is not a host public key",
            AuthError::MissingCapability => "Invocation source does not have the required capability claim",
            AuthError::CannotSign => "Cannot sign invocation: the cluster key has no seed",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthError {}

// ---------------------------------------------------------------------------------------------
// Invocation hash (§3.1)
// ---------------------------------------------------------------------------------------------

/// SHA-256 over `origin_url || target_url || operation || msg`, fed to the hasher piece by
/// piece (the other implementations concatenate into one buffer first; the digest is the same).
pub fn invocation_hash(origin_url: &str, target_url: &str, operation: &str, msg: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(origin_url.as_bytes());
    hasher.update(target_url.as_bytes());
    hasher.update(operation.as_bytes());
    hasher.update(msg);
    hasher.finalize().into()
}

/// Uppercase hex of a hash, as ASCII bytes (the `hash` claim's form).
pub fn hex_upper(hash: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(hash) {
        pair[0] = HEX_UPPER_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_UPPER_DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

/// Whether `claimed` is the hex of `hash`, ignoring case (senders write uppercase; nothing is
/// lost by accepting lowercase).
fn hash_hex_eq(claimed: &str, hash: &[u8; 32]) -> bool {
    claimed.as_bytes().eq_ignore_ascii_case(&hex_upper(hash))
}

// ---------------------------------------------------------------------------------------------
// The invocation token
// ---------------------------------------------------------------------------------------------

/// wascap's `Invocation` metadata (the `wascap` object of an invocation token).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct InvocationClaims {
    pub target_url: String,
    pub origin_url: String,
    /// Uppercase hex SHA-256 (§3.1).
    pub hash: String,
}

/// An invocation JWT, decoded but not yet verified: the signature is checked for the whole
/// batch by `auth::verify_batch`, the claims by [`check_invocation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedInvocationToken<'a> {
    /// `b64(header).b64(payload)`: the bytes the signature covers.
    pub signed_part: &'a str,
    pub signature: [u8; 64],
    pub issuer: String,
    pub subject: String,
    pub iat_secs: u64,
    pub exp_secs: Option<u64>,
    pub nbf_secs: Option<u64>,
    /// `None` when the token has no `wascap` object.
    pub metadata: Option<InvocationClaims>,
}

/// Decode `encoded_claims` (§3.3 step 1): three base64url parts, the header exactly
/// `typ=jwt, alg=Ed25519`, JSON claims with the fields wascap requires, a 64-byte signature,
/// and — when present — a `wascap` object of the invocation shape. Uses the same JWT parser as
/// actor claims ([`claims::decode_jwt`]).
pub fn decode_invocation_token(encoded: &str) -> Result<DecodedInvocationToken<'_>, AuthError> {
    let (signed_part, claims, signature) =
        claims::decode_jwt_as::<InvocationPayload>(encoded).map_err(|error| match error {
            ClaimsError::TokenTooLarge { .. } => AuthError::TokenTooLarge,
            ClaimsError::BadHeader { .. } => AuthError::BadHeader,
            _ => AuthError::MalformedToken,
        })?;
    Ok(DecodedInvocationToken {
        signed_part,
        signature,
        issuer: claims.iss,
        subject: claims.sub,
        iat_secs: claims.iat,
        exp_secs: claims.exp,
        nbf_secs: claims.nbf,
        metadata: claims.wascap,
    })
}

/// The payload of an invocation token, read straight into the fields the checks use. `jti` is
/// required (as wascap requires it) but not kept; unknown fields are ignored.
#[derive(Deserialize)]
struct InvocationPayload {
    #[serde(rename = "jti")]
    _jti: serde::de::IgnoredAny,
    iat: u64,
    iss: String,
    sub: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    wascap: Option<InvocationClaims>,
}

/// `host_id` shape (PROTOCOL §16): starts with `N`, 56 characters. The checksum is not
/// required: `wash call` sends `NwashHostCallerId` padded with zeros.
pub fn is_host_id_shape(host_id: &str) -> bool {
    host_id.len() == HOST_ID_CHARS && host_id.starts_with('N')
}

/// The claim checks of §3.3 after the signature (steps 1's `iss`/`sub`, 3–8), in that order, so
/// the first failing rule is the one reported:
/// `iss`/`sub` non-empty; `exp` (expired once `exp <= now`, as actor claims) and `nbf`; `wascap`
/// metadata present; `iss` a trusted cluster issuer; target and origin URLs equal to the
/// invocation's; the hash equal when `msg` is non-empty (an empty `msg` is a chunked payload
/// whose hash the OTP and Rust hosts skip — callers that dechunk first pass the full bytes);
/// `host_id` of host-key shape. Allocates nothing.
pub fn check_invocation(
    inv: &InvocationRef<'_>,
    token: &DecodedInvocationToken<'_>,
    issuers: &HashSet<String>,
    now_secs: u64,
) -> Result<(), AuthError> {
    if token.issuer.is_empty() {
        return Err(AuthError::MissingIssuer);
    }
    if token.subject.is_empty() {
        return Err(AuthError::MissingSubject);
    }
    if token.exp_secs.is_some_and(|exp_secs| exp_secs <= now_secs) {
        return Err(AuthError::Expired);
    }
    if token.nbf_secs.is_some_and(|nbf_secs| nbf_secs > now_secs) {
        return Err(AuthError::NotYetValid);
    }
    let metadata = token.metadata.as_ref().ok_or(AuthError::MissingMetadata)?;
    if !issuers.contains(&token.issuer) {
        return Err(AuthError::UntrustedIssuer);
    }
    if !inv.target.target_url_eq(inv.operation, &metadata.target_url) {
        return Err(AuthError::TargetMismatch);
    }
    if !inv.origin.url_eq(&metadata.origin_url) {
        return Err(AuthError::OriginMismatch);
    }
    // The URLs matched, so the token's strings are the invocation's URLs: hash them directly.
    if !inv.msg.is_empty() {
        let hash = invocation_hash(&metadata.origin_url, &metadata.target_url, inv.operation, inv.msg);
        if !hash_hex_eq(&metadata.hash, &hash) {
            return Err(AuthError::HashMismatch);
        }
    }
    if !is_host_id_shape(inv.host_id) {
        return Err(AuthError::BadHostId);
    }
    Ok(())
}

/// Capability check on the source (§4.5, §16): an origin with a contract id is a provider, and
/// the target actor's claims must grant that contract (`None` = claims unknown = nothing
/// granted). An origin with an empty contract id is an actor (or `wash call`): allowed
/// (ADR-0006).
pub fn check_capability(inv: &InvocationRef<'_>, target_actor_caps: Option<&HashSet<String>>) -> Result<(), AuthError> {
    let contract_id = inv.origin.contract_id;
    if contract_id.is_empty() {
        return Ok(());
    }
    match target_actor_caps {
        Some(caps) if caps.contains(contract_id) => Ok(()),
        _ => Err(AuthError::MissingCapability),
    }
}

// ---------------------------------------------------------------------------------------------
// Signing (§3.2)
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct InvocationMetadataOut<'a> {
    target_url: &'a str,
    origin_url: &'a str,
    hash: &'a str,
}

/// Payload fields in wascap's serialization order.
#[derive(Serialize)]
struct InvocationPayloadOut<'a> {
    jti: &'a str,
    iat: u64,
    iss: &'a str,
    sub: &'a str,
    wascap: InvocationMetadataOut<'a>,
    wascap_revision: u32,
}

/// The invocation JWT for an outbound call (§3.2): header `{"typ":"jwt","alg":"Ed25519"}`;
/// payload `jti` (22 random base-62 characters), `iat = now_secs`, `iss` = the cluster public
/// key, `sub` = the invocation id, `wascap {target_url, origin_url, hash}`, `wascap_revision`
/// 3; signed with the cluster seed. No `exp`/`nbf`, as every implementation does. Returns
/// [`AuthError::CannotSign`] for a key pair without a seed. (Control-path work: allocates.)
pub fn sign_invocation(
    cluster_key: &nkeys::KeyPair,
    origin: &EntityRef<'_>,
    target: &EntityRef<'_>,
    operation: &str,
    msg: &[u8],
    invocation_id: &str,
    now_secs: u64,
) -> Result<String, AuthError> {
    let mut origin_url = String::new();
    origin.url(&mut origin_url);
    let mut target_url = String::new();
    target.target_url(operation, &mut target_url);
    let hash_hex = hex_upper(&invocation_hash(&origin_url, &target_url, operation, msg));
    let hash = std::str::from_utf8(&hash_hex).map_err(|_| AuthError::CannotSign)?;

    let mut rng = rand::thread_rng();
    let jti: String = (0..JTI_CHARS)
        .map(|_| char::from(JTI_ALPHABET[rng.gen_range(0..JTI_ALPHABET.len())]))
        .collect();
    let issuer = cluster_key.public_key();
    let payload = InvocationPayloadOut {
        jti: &jti,
        iat: now_secs,
        iss: &issuer,
        sub: invocation_id,
        wascap: InvocationMetadataOut {
            target_url: &target_url,
            origin_url: &origin_url,
            hash,
        },
        wascap_revision: WASCAP_REVISION,
    };
    // Serializing borrowed strings and integers to JSON cannot fail; map it anyway.
    let payload_json = serde_json::to_vec(&payload).map_err(|_| AuthError::CannotSign)?;

    let mut token = String::with_capacity(64 + payload_json.len() * 4 / 3 + 90);
    URL_SAFE_NO_PAD.encode_string(HEADER_JSON, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload_json, &mut token);
    let signature = cluster_key.sign(token.as_bytes()).map_err(|_| AuthError::CannotSign)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// An outbound invocation to sign and encode (the host's calls, load generators, benches).
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    pub origin: EntityRef<'a>,
    pub target: EntityRef<'a>,
    pub operation: &'a str,
    /// The whole payload: what the hash covers and `content_length` counts.
    pub payload: &'a [u8],
    /// The payload was put in the object store (§2.6): `msg` goes out empty.
    pub chunked: bool,
    pub id: &'a str,
    /// The sending host's id (`N…`).
    pub host_id: &'a str,
    /// The invocation's `traceContext` (W3C `traceparent`/`tracestate`); not signed (the
    /// hash covers the payload only, as in every 0.x host).
    pub trace_context: &'a [(&'a str, &'a str)],
}

/// Sign `call` with `cluster_key` ([`sign_invocation`], hash over the whole payload) and append
/// the encoded `Invocation` to `out`.
pub fn encode_signed_invocation(
    out: &mut impl bytes::BufMut,
    cluster_key: &nkeys::KeyPair,
    call: &Outbound<'_>,
    now_secs: u64,
) -> Result<(), AuthError> {
    let claims = sign_invocation(
        cluster_key,
        &call.origin,
        &call.target,
        call.operation,
        call.payload,
        call.id,
        now_secs,
    )?;
    let fields = InvocationFields {
        origin: call.origin,
        target: call.target,
        operation: call.operation,
        msg: if call.chunked { &[] } else { call.payload },
        id: call.id,
        encoded_claims: &claims,
        host_id: call.host_id,
        content_length: call.payload.len() as u64,
        trace_context: call.trace_context,
    };
    encode_invocation(out, &fields);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::auth::verify_batch::{verify_batch, IssuerKeyCache, VerifyItem};
    use crate::wire::invocation::mirror::{self, reference_hash, reference_url, WasmCloudEntity};
    use crate::wire::invocation::{decode_invocation, DecodeError};
    use wascap::jwt::{Claims as WascapClaims, Invocation as WascapInvocation};
    use wascap::prelude::KeyPair as WascapKeyPair;

    const NOW: u64 = 1_700_000_000;

    fn host_id() -> String {
        nkeys::KeyPair::new_server().public_key()
    }

    /// wash call's caller id: not a checksummed key, but of host-key shape.
    fn wash_host_id() -> String {
        format!("{:0<56}", "NwashHostCallerId")
    }

    /// An invocation built and signed the third-party way: URL and hash by the reference
    /// (wasmbus-rpc-style) code, the JWT by wascap 0.11, the msgpack by rmp-serde
    /// `to_vec_named` of wasmbus-rpc's struct shape.
    fn third_party(cluster: &WascapKeyPair, origin: WasmCloudEntity, target: WasmCloudEntity, msg: &[u8]) -> Vec<u8> {
        let mut inv = mirror::Invocation {
            origin,
            target,
            operation: "HttpServer.HandleRequest".into(),
            msg: msg.to_vec(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            encoded_claims: String::new(),
            host_id: host_id(),
            content_length: Some(msg.len() as u64),
            trace_context: Default::default(),
        };
        let target_url = format!("{}/{}", reference_url(&inv.target), inv.operation);
        let claims = WascapClaims::<WascapInvocation>::new(
            cluster.public_key(),
            inv.id.clone(),
            &target_url,
            &reference_url(&inv.origin),
            &reference_hash(&inv),
        );
        inv.encoded_claims = claims.encode(cluster).unwrap();
        rmp_serde::to_vec_named(&inv).unwrap()
    }

    fn provider() -> WasmCloudEntity {
        WasmCloudEntity::new(
            &WascapKeyPair::new_service().public_key(),
            "default",
            "wasmcloud:httpserver",
        )
    }

    fn actor() -> WasmCloudEntity {
        WasmCloudEntity::new(&WascapKeyPair::new_module().public_key(), "", "")
    }

    fn issuers(keys: &[&WascapKeyPair]) -> HashSet<String> {
        keys.iter().map(|k| k.public_key()).collect()
    }

    /// Decode, verify the signature alone (batch of one) and run the claim checks.
    fn full_check(bytes: &[u8], trusted: &HashSet<String>) -> Result<(), String> {
        let inv = decode_invocation(bytes).map_err(|e| e.to_string())?;
        let token = decode_invocation_token(inv.encoded_claims).map_err(|e| e.to_string())?;
        let mut cache = IssuerKeyCache::new();
        let key = *cache.insert(&token.issuer).map_err(|e| e.to_string())?;
        let mut ok = [false];
        verify_batch(
            &[VerifyItem {
                message: token.signed_part.as_bytes(),
                signature: token.signature,
                key: &key,
            }],
            &mut ok,
        );
        if !ok[0] {
            return Err(AuthError::BadSignature.to_string());
        }
        check_invocation(&inv, &token, trusted, NOW).map_err(|e| e.to_string())
    }

    #[test]
    fn hash_matches_the_reference_and_known_vector() {
        let inv = mirror::Invocation {
            origin: WasmCloudEntity::new("MORIGIN", "", ""),
            target: WasmCloudEntity::new("Vxxx", "default", "wasmcloud:messaging"),
            operation: "OP_TESTING".into(),
            msg: b"hello".to_vec(),
            ..Default::default()
        };
        let origin_url = reference_url(&inv.origin);
        let target_url = format!("{}/{}", reference_url(&inv.target), inv.operation);
        assert_eq!(target_url, "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTING");
        let ours = hex_upper(&invocation_hash(&origin_url, &target_url, "OP_TESTING", b"hello"));
        assert_eq!(std::str::from_utf8(&ours).unwrap(), reference_hash(&inv));
        // Independent value: sha256 of the concatenation, computed by hand once.
        let concatenated = format!("{origin_url}{target_url}OP_TESTINGhello");
        let direct: [u8; 32] = Sha256::digest(concatenated.as_bytes()).into();
        assert_eq!(hex_upper(&direct), ours);
        assert!(hash_hex_eq(&reference_hash(&inv).to_lowercase(), &direct));
        assert!(!hash_hex_eq(&reference_hash(&inv)[1..], &direct));
    }

    #[test]
    fn interop_wascap_signed_invocations_pass() {
        let cluster = WascapKeyPair::new_cluster();
        let other = WascapKeyPair::new_cluster();
        let trusted = issuers(&[&other, &cluster]);
        for (origin, target, msg) in [
            (provider(), actor(), b"\x82\xa6method\xa3GET\xa4body\xc4\x00".as_slice()),
            (actor(), provider(), b"".as_slice()),
            (actor(), actor(), &[0u8; 3000][..]),
            (WasmCloudEntity::new("__WASH__", "", ""), actor(), b"wash".as_slice()),
            (
                WasmCloudEntity::new(&provider().public_key, "My Link", "Acme:Key Value"),
                actor(),
                b"x".as_slice(),
            ),
        ] {
            let bytes = third_party(&cluster, origin.clone(), target, msg);
            assert_eq!(full_check(&bytes, &trusted), Ok(()), "origin {origin:?}");
            let inv = decode_invocation(&bytes).unwrap();
            // Actor origins need no claims; provider origins need the contract in the caps.
            let caps: HashSet<String> = ["wasmcloud:httpserver".to_string()].into();
            let allowed = origin.contract_id.is_empty() || origin.contract_id == "wasmcloud:httpserver";
            assert_eq!(check_capability(&inv, Some(&caps)).is_ok(), allowed);
        }
    }

    #[test]
    fn interop_forgeries_and_garbage_are_rejected() {
        let cluster = WascapKeyPair::new_cluster();
        let attacker = WascapKeyPair::new_cluster();
        let trusted = issuers(&[&cluster]);
        let good = third_party(&cluster, provider(), actor(), b"payload");
        assert_eq!(full_check(&good, &trusted), Ok(()));

        // Signed by a key that is not a cluster issuer: a valid signature, refused by trust.
        let forged = third_party(&attacker, provider(), actor(), b"payload");
        assert_eq!(
            full_check(&forged, &trusted),
            Err(AuthError::UntrustedIssuer.to_string())
        );

        // Tampered payload: the hash no longer matches.
        let mut inv: mirror::Invocation = rmp_serde::from_slice(&good).unwrap();
        inv.msg = b"PAYLOAD".to_vec();
        let tampered = rmp_serde::to_vec_named(&inv).unwrap();
        assert_eq!(
            full_check(&tampered, &trusted),
            Err(AuthError::HashMismatch.to_string())
        );

        // Redirected to another actor, or claiming another origin.
        let mut inv: mirror::Invocation = rmp_serde::from_slice(&good).unwrap();
        inv.target = actor();
        let retargeted = rmp_serde::to_vec_named(&inv).unwrap();
        assert_eq!(
            full_check(&retargeted, &trusted),
            Err(AuthError::TargetMismatch.to_string())
        );
        let mut inv: mirror::Invocation = rmp_serde::from_slice(&good).unwrap();
        inv.operation = "HttpServer.Other".into();
        assert_eq!(
            full_check(&rmp_serde::to_vec_named(&inv).unwrap(), &trusted),
            Err(AuthError::TargetMismatch.to_string())
        );
        let mut inv: mirror::Invocation = rmp_serde::from_slice(&good).unwrap();
        inv.origin.link_name = "other".into();
        assert_eq!(
            full_check(&rmp_serde::to_vec_named(&inv).unwrap(), &trusted),
            Err(AuthError::OriginMismatch.to_string())
        );

        // A token whose payload was edited (issuer swapped in) fails the signature.
        let mut inv: mirror::Invocation = rmp_serde::from_slice(&forged).unwrap();
        let parts: Vec<&str> = inv.encoded_claims.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let payload = payload.replace(&attacker.public_key(), &cluster.public_key());
        inv.encoded_claims = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload), parts[2]);
        assert_eq!(
            full_check(&rmp_serde::to_vec_named(&inv).unwrap(), &trusted),
            Err(AuthError::BadSignature.to_string())
        );

        // Garbage bytes and a garbage token.
        assert_eq!(
            full_check(b"\xc1garbage", &trusted),
            Err(DecodeError::Malformed(crate::wire::msgpack::MsgpackError::ReservedMarker).to_string())
        );
        assert_eq!(
            full_check(&good[..good.len() - 3], &trusted),
            Err(DecodeError::Truncated.to_string())
        );
        let mut inv: mirror::Invocation = rmp_serde::from_slice(&good).unwrap();
        inv.encoded_claims = "not-a-jwt".into();
        assert_eq!(
            full_check(&rmp_serde::to_vec_named(&inv).unwrap(), &trusted),
            Err(AuthError::MalformedToken.to_string())
        );
    }

    /// Build a token from raw header/payload JSON, signed by `key`.
    fn raw_token(header: &str, payload: &serde_json::Value, key: &nkeys::KeyPair) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = key.sign(signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn every_rule_of_section_3_3_rejects() {
        let cluster = nkeys::KeyPair::new_cluster();
        let trusted: HashSet<String> = [cluster.public_key()].into();
        let origin = EntityRef {
            public_key: "MORIGIN",
            link_name: "",
            contract_id: "",
        };
        let target = EntityRef {
            public_key: "MTARGET",
            link_name: "",
            contract_id: "",
        };
        let host = host_id();
        let inv = InvocationRef {
            origin,
            target,
            operation: "Op.Do",
            msg: b"abc",
            id: "id-1",
            encoded_claims: "",
            host_id: &host,
            content_length: Some(3),
            trace_context: Default::default(),
        };
        let hash = hex_upper(&invocation_hash(
            "wasmbus://MORIGIN",
            "wasmbus://MTARGET/Op.Do",
            "Op.Do",
            b"abc",
        ));
        let base = serde_json::json!({
            "jti": "j", "iat": NOW, "iss": cluster.public_key(), "sub": "id-1",
            "wascap": {"target_url": "wasmbus://MTARGET/Op.Do", "origin_url": "wasmbus://MORIGIN",
                       "hash": std::str::from_utf8(&hash).unwrap()},
            "wascap_revision": 3
        });
        let check = |header: &str, payload: &serde_json::Value, inv: &InvocationRef<'_>| {
            let token = raw_token(header, payload, &cluster);
            let decoded = decode_invocation_token(&token)?;
            check_invocation(inv, &decoded, &trusted, NOW)
        };
        assert_eq!(check(HEADER_JSON, &base, &inv), Ok(()));

        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut payload = base.clone();
            f(&mut payload);
            payload
        };
        let cases: Vec<(&str, serde_json::Value, AuthError)> = vec![
            (r#"{"typ":"JWT","alg":"Ed25519"}"#, base.clone(), AuthError::BadHeader),
            (r#"{"typ":"jwt","alg":"HS256"}"#, base.clone(), AuthError::BadHeader),
            (HEADER_JSON, edit(&|p| p["iss"] = "".into()), AuthError::MissingIssuer),
            (HEADER_JSON, edit(&|p| p["sub"] = "".into()), AuthError::MissingSubject),
            (HEADER_JSON, edit(&|p| p["exp"] = NOW.into()), AuthError::Expired),
            (
                HEADER_JSON,
                edit(&|p| p["nbf"] = (NOW + 1).into()),
                AuthError::NotYetValid,
            ),
            (
                HEADER_JSON,
                edit(&|p| {
                    p.as_object_mut().unwrap().remove("wascap");
                }),
                AuthError::MissingMetadata,
            ),
            (
                HEADER_JSON,
                edit(&|p| p["wascap"] = serde_json::json!({"name": "x"})),
                AuthError::MalformedToken,
            ),
            (
                HEADER_JSON,
                edit(&|p| p["iss"] = nkeys::KeyPair::new_cluster().public_key().into()),
                AuthError::UntrustedIssuer,
            ),
            (
                HEADER_JSON,
                edit(&|p| p["wascap"]["target_url"] = "wasmbus://MOTHER/Op.Do".into()),
                AuthError::TargetMismatch,
            ),
            (
                HEADER_JSON,
                edit(&|p| p["wascap"]["origin_url"] = "wasmbus://MOTHER".into()),
                AuthError::OriginMismatch,
            ),
            (
                HEADER_JSON,
                edit(&|p| p["wascap"]["hash"] = "00".into()),
                AuthError::HashMismatch,
            ),
        ];
        for (header, payload, expected) in cases {
            assert_eq!(check(header, &payload, &inv), Err(expected), "{header} {payload}");
        }
        // exp in the future and nbf now are fine; lowercase hash is fine.
        let fine = edit(&|p| {
            p["exp"] = (NOW + 1).into();
            p["nbf"] = NOW.into();
            p["wascap"]["hash"] = std::str::from_utf8(&hash).unwrap().to_lowercase().into();
        });
        assert_eq!(check(HEADER_JSON, &fine, &inv), Ok(()));
        // Empty msg (chunked): the hash is not checked.
        let chunked = InvocationRef {
            msg: b"",
            content_length: Some(2_000_000),
            ..inv
        };
        assert_eq!(
            check(HEADER_JSON, &edit(&|p| p["wascap"]["hash"] = "00".into()), &chunked),
            Ok(())
        );
        // host_id: N and 56 characters (wash's padded id passes), nothing else.
        let wash = wash_host_id();
        assert_eq!(
            check(HEADER_JSON, &base, &InvocationRef { host_id: &wash, ..inv }),
            Ok(())
        );
        let swapped = format!("M{}", &host[1..]);
        let longer = format!("{host}A");
        for bad in ["", "NSHORT", &host[1..], swapped.as_str(), longer.as_str()] {
            assert_eq!(
                check(HEADER_JSON, &base, &InvocationRef { host_id: bad, ..inv }),
                Err(AuthError::BadHostId),
                "{bad}"
            );
        }
        // Messages are static and carry the prefix the other hosts use.
        assert_eq!(
            AuthError::UntrustedIssuer.to_string(),
            "Anti-forgery check failed: issuer is not a trusted cluster issuer"
        );
        let too_large = "a".repeat(claims::TOKEN_BYTES_MAX + 1);
        assert_eq!(decode_invocation_token(&too_large), Err(AuthError::TokenTooLarge));
    }

    #[test]
    fn capability_rules() {
        let host = host_id();
        let mut inv = InvocationRef {
            origin: EntityRef {
                public_key: "VPROV",
                link_name: "default",
                contract_id: "wasmcloud:keyvalue",
            },
            target: EntityRef {
                public_key: "MTARGET",
                link_name: "",
                contract_id: "",
            },
            operation: "Op",
            msg: b"",
            id: "id",
            encoded_claims: "",
            host_id: &host,
            content_length: None,
            trace_context: Default::default(),
        };
        let caps: HashSet<String> = ["wasmcloud:keyvalue".to_string()].into();
        let other: HashSet<String> = ["wasmcloud:httpserver".to_string()].into();
        assert_eq!(check_capability(&inv, Some(&caps)), Ok(()));
        assert_eq!(check_capability(&inv, Some(&other)), Err(AuthError::MissingCapability));
        assert_eq!(check_capability(&inv, None), Err(AuthError::MissingCapability));
        inv.origin = EntityRef {
            public_key: "__WASH__",
            link_name: "",
            contract_id: "",
        };
        assert_eq!(check_capability(&inv, None), Ok(()));
        inv.origin = EntityRef {
            public_key: "MOTHER",
            link_name: "",
            contract_id: "",
        };
        assert_eq!(check_capability(&inv, Some(&other)), Ok(()));
        assert!(AuthError::MissingCapability
            .message()
            .starts_with("Invocation source does not have the required capability claim"));
    }

    #[test]
    fn our_tokens_validate_with_wascap() {
        let cluster = nkeys::KeyPair::new_cluster();
        let origin = EntityRef {
            public_key: "MACTOR",
            link_name: "",
            contract_id: "",
        };
        let target = EntityRef {
            public_key: "VPROV",
            link_name: "default",
            contract_id: "wasmcloud:keyvalue",
        };
        let now = crate::auth::testkit::now_secs();
        let token = sign_invocation(&cluster, &origin, &target, "KeyValue.Get", b"key", "inv-1", now).unwrap();

        let validation = wascap::jwt::validate_token::<WascapInvocation>(&token).unwrap();
        assert!(validation.signature_valid && !validation.expired && !validation.cannot_use_yet);
        let claims = WascapClaims::<WascapInvocation>::decode(&token).unwrap();
        assert_eq!(claims.issuer, cluster.public_key());
        assert_eq!(claims.subject, "inv-1");
        assert_eq!(claims.issued_at, now);
        assert_eq!(claims.id.len(), 22);
        assert_eq!(claims.expires, None);
        let metadata = claims.metadata.unwrap();
        let theirs = mirror::Invocation {
            origin: WasmCloudEntity::new("MACTOR", "", ""),
            target: WasmCloudEntity::new("VPROV", "default", "wasmcloud:keyvalue"),
            operation: "KeyValue.Get".into(),
            msg: b"key".to_vec(),
            ..Default::default()
        };
        assert_eq!(metadata.origin_url, reference_url(&theirs.origin));
        assert_eq!(
            metadata.target_url,
            "wasmbus://wasmcloud/keyvalue/default/VPROV/KeyValue.Get"
        );
        assert_eq!(metadata.invocation_hash, reference_hash(&theirs));
        // Same header bytes as wascap writes.
        let wascap_token = WascapClaims::<WascapInvocation>::new("C".into(), "s".into(), "t", "o", "h")
            .encode(&WascapKeyPair::new_cluster())
            .unwrap();
        assert_eq!(token.split('.').next(), wascap_token.split('.').next());

        // And our own pipeline accepts it.
        let decoded = decode_invocation_token(&token).unwrap();
        let inv = InvocationRef {
            origin,
            target,
            operation: "KeyValue.Get",
            msg: b"key",
            id: "inv-1",
            encoded_claims: &token,
            host_id: &wash_host_id(),
            content_length: Some(3),
            trace_context: Default::default(),
        };
        let trusted: HashSet<String> = [cluster.public_key()].into();
        assert_eq!(check_invocation(&inv, &decoded, &trusted, now), Ok(()));

        let public_only = nkeys::KeyPair::from_public_key(&cluster.public_key()).unwrap();
        assert_eq!(
            sign_invocation(&public_only, &origin, &target, "Op", b"", "id", now),
            Err(AuthError::CannotSign)
        );
    }
}
