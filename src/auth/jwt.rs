//! wascap JWTs (PROTOCOL §4.1): splitting and decoding a token, checking its header, its key
//! types and its Ed25519 signature, and the `exp`/`nbf` rule. Shared by the actor claims
//! ([`super::claims`]), the provider archive claims ([`super::par`]) and the invocation tokens
//! of the data path ([`super::antiforgery`]). It owns [`ClaimsError`], the error of all three
//! (most of its variants are this file's steps; the module walk in [`super::claims`] adds its
//! shape errors), so the claims files import it from here and nothing here imports them.
//!
//! Plane: pure code. No I/O, no clock (`now_secs` is passed in). Must never panic on any token
//! bytes: they come from registries, files and the network.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use nkeys::KeyPairType;
use serde::Deserialize;

/// Largest claims token we decode. Real actor tokens are 0.6–2 KiB; the limit only stops a
/// hostile module from making us base64- and JSON-decode megabytes. wascap has no limit.
pub const TOKEN_BYTES_MAX: usize = 64 * 1024;

const HEADER_TYP: &str = "jwt";
const HEADER_ALG: &str = "Ed25519";
pub(crate) const SIGNATURE_BYTES: usize = 64;

/// The three parts of a token, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPart {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenPart::Header => "header",
            TokenPart::Payload => "payload",
            TokenPart::Signature => "signature",
        })
    }
}

/// The role a key plays in the claims, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// `iss`: must be an account key (`A…`).
    Issuer,
    /// `sub` of an actor: must be a module key (`M…`).
    Subject,
    /// `sub` of a provider archive: must be a service key (`V…`).
    ProviderSubject,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRole::Issuer => "issuer",
            KeyRole::Subject | KeyRole::ProviderSubject => "subject",
        })
    }
}

/// Why a module's claims were refused. Module-shape errors carry the byte offset where the walk
/// stopped; claim errors carry the values that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("actor module has no embedded claims")]
    NoClaims,
    #[error("not a wasm module: bad magic number")]
    BadMagic,
    #[error("unsupported wasm binary version {version:02X?}: only core modules (version 1) can be 0.x actors")]
    UnsupportedVersion { version: [u8; 4] },
    #[error("wasm module is truncated at byte offset {offset}")]
    Truncated { offset: usize },
    #[error("malformed LEB128 u32 at byte offset {offset}")]
    BadLeb { offset: usize },
    #[error("wasm section at byte offset {offset} declares {size_bytes} bytes but only {left_bytes} remain")]
    SectionOverrun {
        offset: usize,
        size_bytes: u32,
        left_bytes: usize,
    },
    #[error("custom section at byte offset {offset} has a malformed name")]
    BadCustomSectionName { offset: usize },
    #[error("embedded claims token is not valid UTF-8")]
    TokenNotUtf8,
    #[error("claims token is {token_bytes} bytes, more than the limit of {token_bytes_max}")]
    TokenTooLarge { token_bytes: usize, token_bytes_max: usize },
    #[error("claims token must have 3 dot-separated parts, found {parts_count}")]
    TokenParts { parts_count: usize },
    #[error("claims token {part} is not base64url without padding")]
    Base64 { part: TokenPart },
    #[error("claims token {part} is not the expected JSON: {reason}")]
    Json { part: TokenPart, reason: String },
    #[error("claims token header has typ {typ:?} and alg {alg:?}; expected \"jwt\" and \"Ed25519\"")]
    BadHeader { typ: String, alg: String },
    #[error("claims token signature is {signature_bytes} bytes, expected 64")]
    SignatureLength { signature_bytes: usize },
    #[error("claims {role} {key:?} is not a valid public nkey")]
    BadKey { role: KeyRole, key: String },
    #[error("claims issuer {key} is not an account key (A…)")]
    IssuerNotAccount { key: String },
    #[error("claims subject {key} is not a module key (M…)")]
    SubjectNotModule { key: String },
    #[error("claims subject {key} is not a provider (service) key (V…)")]
    SubjectNotService { key: String },
    #[error("claims token signature does not verify against issuer {issuer}")]
    BadSignature { issuer: String },
    #[error("claims token expired at {exp_secs} (now {now_secs}, seconds since the epoch)")]
    Expired { exp_secs: u64, now_secs: u64 },
    #[error("claims token is not valid before {nbf_secs} (now {now_secs}, seconds since the epoch)")]
    NotYetValid { nbf_secs: u64, now_secs: u64 },
    #[error("claims token has no wascap actor metadata")]
    MissingMetadata,
    #[error("claims token wascap metadata is not actor metadata: {reason}")]
    BadMetadata { reason: String },
    #[error("module hash {actual} does not match the signed hash {expected}: the module changed after signing")]
    HashMismatch { expected: String, actual: String },
    #[error("cannot sign the actor's claims: {reason}")]
    CannotSign { reason: String },
}

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
}

/// The generic claims of a wascap token (PROTOCOL §4.1). Unknown fields are ignored; `jti`,
/// `iat`, `iss` and `sub` are required, as wascap requires them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Claims {
    #[serde(rename = "exp", default)]
    pub exp_secs: Option<u64>,
    #[serde(rename = "nbf", default)]
    pub nbf_secs: Option<u64>,
    #[serde(rename = "iat")]
    pub iat_secs: u64,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    /// The `wascap` metadata object; its shape depends on the subject (actor or provider).
    #[serde(default)]
    pub wascap: Option<serde_json::Value>,
    #[serde(default)]
    pub wascap_revision: Option<u32>,
}

/// A decoded, not yet verified token. Borrows the token text.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt<'a> {
    /// `header_b64.payload_b64`: the bytes the signature covers.
    pub signed_part: &'a str,
    pub claims: Claims,
    pub signature_bytes: [u8; SIGNATURE_BYTES],
}

fn decode_part(part: &str, which: TokenPart) -> Result<Vec<u8>, ClaimsError> {
    // base64 0.22's URL_SAFE_NO_PAD rejects padding and non-zero trailing bits, like wascap's
    // data-encoding BASE64URL_NOPAD.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ClaimsError::Base64 { part: which })
}

fn json_error(part: TokenPart, error: serde_json::Error) -> ClaimsError {
    ClaimsError::Json {
        part,
        reason: error.to_string(),
    }
}

/// The header of every token wascap writes, `{"typ":"jwt","alg":"Ed25519"}`, base64url-encoded:
/// a token that starts with it needs no header decoding.
pub(crate) const HEADER_B64: &str = "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0";

/// Split and decode a token (PROTOCOL §4.1): three base64url-no-pad parts, a header with
/// `typ == "jwt"` and `alg == "Ed25519"` exactly (wascap's rule), JSON claims, a 64-byte
/// signature. Does not verify the signature: see [`verify_signature`].
pub fn decode_jwt(token: &str) -> Result<Jwt<'_>, ClaimsError> {
    let (signed_part, claims, signature_bytes) = decode_jwt_as::<Claims>(token)?;
    Ok(Jwt {
        signed_part,
        claims,
        signature_bytes,
    })
}

/// [`decode_jwt`] with the payload read as `T` (the invocation tokens of the data path read
/// only the fields they check, without building a JSON tree). Returns the signed part, the
/// payload and the signature.
pub fn decode_jwt_as<T: serde::de::DeserializeOwned>(
    token: &str,
) -> Result<(&str, T, [u8; SIGNATURE_BYTES]), ClaimsError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(ClaimsError::TokenTooLarge {
            token_bytes: token.len(),
            token_bytes_max: TOKEN_BYTES_MAX,
        });
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::TokenParts {
            parts_count: token.split('.').count(),
        });
    };

    if header_b64 != HEADER_B64 {
        let header: Header = serde_json::from_slice(&decode_part(header_b64, TokenPart::Header)?)
            .map_err(|e| json_error(TokenPart::Header, e))?;
        if header.typ != HEADER_TYP || header.alg != HEADER_ALG {
            return Err(ClaimsError::BadHeader {
                typ: header.typ,
                alg: header.alg,
            });
        }
    }
    let claims: T = serde_json::from_slice(&decode_part(payload_b64, TokenPart::Payload)?)
        .map_err(|e| json_error(TokenPart::Payload, e))?;
    // Room for the decoder's estimate of an 86-character part (66 bytes); longer is an error.
    let mut signature = [0u8; SIGNATURE_BYTES + 2];
    let signature_bytes = match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut signature) {
        Ok(len) => len,
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => base64::decoded_len_estimate(signature_b64.len()),
        Err(base64::DecodeSliceError::DecodeError(_)) => {
            return Err(ClaimsError::Base64 {
                part: TokenPart::Signature,
            })
        }
    };
    let signature: [u8; SIGNATURE_BYTES] = signature
        .get(..signature_bytes)
        .and_then(|s| s.try_into().ok())
        .ok_or(ClaimsError::SignatureLength { signature_bytes })?;
    let signed_part = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(ClaimsError::TokenParts { parts_count: 3 })?;
    Ok((signed_part, claims, signature))
}

/// Decode a public nkey and require its type (issuer: account, subject: module). Returns the raw
/// 32-byte Ed25519 key.
pub(crate) fn public_key(key: &str, role: KeyRole) -> Result<[u8; 32], ClaimsError> {
    let (prefix, key_bytes) = nkeys::from_public_key(key).map_err(|_| ClaimsError::BadKey {
        role,
        key: key.to_string(),
    })?;
    match (role, KeyPairType::from(prefix)) {
        (KeyRole::Issuer, KeyPairType::Account)
        | (KeyRole::Subject, KeyPairType::Module)
        | (KeyRole::ProviderSubject, KeyPairType::Service) => Ok(key_bytes),
        (KeyRole::Issuer, _) => Err(ClaimsError::IssuerNotAccount { key: key.to_string() }),
        (KeyRole::Subject, _) => Err(ClaimsError::SubjectNotModule { key: key.to_string() }),
        (KeyRole::ProviderSubject, _) => Err(ClaimsError::SubjectNotService { key: key.to_string() }),
    }
}

/// Verify the Ed25519 signature over `header_b64.payload_b64` with the key in `iss`, which must be
/// an account key (wascap accepts any nkey type here; we do not). Uses `verify_strict`, which also
/// refuses small-order keys and non-canonical points that plain verification lets through; wascap
/// signatures always pass it. Returns the issuer's raw key, so callers can cache it.
pub fn verify_signature(jwt: &Jwt<'_>) -> Result<[u8; 32], ClaimsError> {
    let issuer_key_bytes = public_key(&jwt.claims.iss, KeyRole::Issuer)?;
    let bad_signature = || ClaimsError::BadSignature {
        issuer: jwt.claims.iss.clone(),
    };
    let key = VerifyingKey::from_bytes(&issuer_key_bytes).map_err(|_| bad_signature())?;
    let signature = Signature::from_bytes(&jwt.signature_bytes);
    key.verify_strict(jwt.signed_part.as_bytes(), &signature)
        .map_err(|_| bad_signature())?;
    Ok(issuer_key_bytes)
}

/// `exp`/`nbf` against `now_secs`, RFC 7519 style: expired once `exp <= now` (wascap 0.11 only
/// once `exp < now`: it still accepts a token in its expiry second), not yet valid while
/// `nbf > now` (same as wascap).
pub fn check_times(exp_secs: Option<u64>, nbf_secs: Option<u64>, now_secs: u64) -> Result<(), ClaimsError> {
    if let Some(exp_secs) = exp_secs {
        if exp_secs <= now_secs {
            return Err(ClaimsError::Expired { exp_secs, now_secs });
        }
    }
    if let Some(nbf_secs) = nbf_secs {
        if nbf_secs > now_secs {
            return Err(ClaimsError::NotYetValid { nbf_secs, now_secs });
        }
    }
    Ok(())
}
