//! Actor claims: the wascap JWT embedded in a wasm module, and the checks a host applies before
//! it starts the actor (PROTOCOL §4).
//!
//! Owns: walking the top-level sections of a core wasm module, the wascap module hash, decoding
//! and verifying the JWT, the typed [`ActorClaims`] view with its KV shape
//! ([`to_stored_claims`], PROTOCOL §7.3), and the other direction: signing a module's claims
//! ([`sign_actor_module`]) for tools and tests.
//!
//! Plane: pure code used by the control plane when it loads an actor. No I/O, no async, no clock:
//! every time check takes `now_secs` as an argument (and the signer takes it for `iat`).
//!
//! Must never: panic on any module or token bytes (they come from registries and files we do not
//! control), or accept claims that wascap's own rules would reject. Where this file is stricter
//! than wascap 0.11 it says so at the check (issuer and subject key types, the module hash for
//! every `wascap_revision`, `exp == now`).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::KeyPairType;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use super::jwt::{
    check_times, decode_jwt, decode_jwt_as, verify_signature, Claims, ClaimsError, Jwt, KeyRole, TokenPart,
    TOKEN_BYTES_MAX,
};
use super::jwt::{public_key, SIGNATURE_BYTES};
use crate::lattice::{hex_upper, StoredClaims};

/// Custom section name written by wascap ≥ 0.9.
pub const SECTION_NAME_JWT: &str = "wasmcloud_jwt";
/// Custom section name written by wascap < 0.9 (most OTP-era actors).
pub const SECTION_NAME_JWT_LEGACY: &str = "jwt";

/// `\0asm`.
const WASM_MAGIC: [u8; 4] = *b"\0asm";
/// Binary version of a core module (components use another layer/version and are not 0.x actors).
const WASM_VERSION_CORE: [u8; 4] = [1, 0, 0, 0];
const WASM_HEADER_BYTES: usize = 8;
const SECTION_ID_CUSTOM: u8 = 0;
/// A `u32` LEB128 takes at most 5 bytes (wasm spec, `uN` with N = 32).
const LEB_U32_BYTES_MAX: usize = 5;

/// Which of the two accepted section names held the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtSection {
    /// `wasmcloud_jwt`.
    Current,
    /// `jwt`.
    Legacy,
}

impl JwtSection {
    /// The custom section name.
    pub fn name(self) -> &'static str {
        match self {
            JwtSection::Current => SECTION_NAME_JWT,
            JwtSection::Legacy => SECTION_NAME_JWT_LEGACY,
        }
    }

    fn from_name(name: &[u8]) -> Option<JwtSection> {
        if name == SECTION_NAME_JWT.as_bytes() {
            Some(JwtSection::Current)
        } else if name == SECTION_NAME_JWT_LEGACY.as_bytes() {
            Some(JwtSection::Legacy)
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wasm section walk
// ---------------------------------------------------------------------------------------------

/// One top-level section, borrowed from the module.
struct SectionRef<'a> {
    id: u8,
    /// The size as declared (possibly with a non-minimal LEB128); equals `contents.len()`.
    size_bytes: u32,
    /// Everything after the size field (for a custom section: its name and payload).
    contents: &'a [u8],
    /// The whole section as encoded: id, size field (as written) and contents.
    raw: &'a [u8],
    /// For a `jwt`/`wasmcloud_jwt` custom section: which one, and the payload after the name.
    jwt: Option<(JwtSection, &'a [u8])>,
}

/// Iterator over the top-level sections. After the first error it yields nothing more.
struct Sections<'a> {
    module: &'a [u8],
    cursor: usize,
    failed: bool,
}

/// Check the 8-byte header and start walking after it.
fn sections(module: &[u8]) -> Result<Sections<'_>, ClaimsError> {
    let magic = module.get(..4).ok_or(ClaimsError::Truncated { offset: module.len() })?;
    if magic != WASM_MAGIC {
        return Err(ClaimsError::BadMagic);
    }
    let version = module
        .get(4..WASM_HEADER_BYTES)
        .ok_or(ClaimsError::Truncated { offset: module.len() })?;
    if version != WASM_VERSION_CORE {
        let mut found = [0u8; 4];
        found.copy_from_slice(version);
        return Err(ClaimsError::UnsupportedVersion { version: found });
    }
    Ok(Sections {
        module,
        cursor: WASM_HEADER_BYTES,
        failed: false,
    })
}

impl<'a> Sections<'a> {
    fn next_section(&mut self) -> Result<SectionRef<'a>, ClaimsError> {
        let offset = self.cursor;
        let id = *self.module.get(offset).ok_or(ClaimsError::Truncated { offset })?;
        let size_offset = offset + 1;
        let (size_bytes, size_len) = read_leb_u32(self.module, size_offset)?;
        let start = size_offset + size_len;
        let left_bytes = self.module.len().saturating_sub(start);
        let contents = usize::try_from(size_bytes)
            .ok()
            .and_then(|size| self.module.get(start..start.checked_add(size)?))
            .ok_or(ClaimsError::SectionOverrun {
                offset,
                size_bytes,
                left_bytes,
            })?;
        self.cursor = start + contents.len();
        let jwt = if id == SECTION_ID_CUSTOM {
            let (name, payload) = split_custom_name(contents).ok_or(ClaimsError::BadCustomSectionName { offset })?;
            JwtSection::from_name(name).map(|kind| (kind, payload))
        } else {
            None
        };
        let raw = self.module.get(offset..self.cursor).unwrap_or_default();
        Ok(SectionRef {
            id,
            size_bytes,
            contents,
            raw,
            jwt,
        })
    }
}

impl<'a> Iterator for Sections<'a> {
    type Item = Result<SectionRef<'a>, ClaimsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.cursor >= self.module.len() {
            return None;
        }
        let item = self.next_section();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Split a custom section's contents into its name (valid UTF-8, as the wasm spec and
/// wasmparser require) and its payload.
fn split_custom_name(contents: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name_bytes, used) = read_leb_u32(contents, 0).ok()?;
    let name_bytes = usize::try_from(name_bytes).ok()?;
    let rest = contents.get(used..)?;
    if name_bytes > rest.len() {
        return None;
    }
    let (name, payload) = rest.split_at(name_bytes);
    std::str::from_utf8(name).ok()?;
    Some((name, payload))
}

/// Read an unsigned LEB128 `u32` at `offset`: at most 5 bytes, and the 5th may only carry the
/// top 4 bits (wasmparser rejects the same inputs). Non-minimal encodings are accepted.
/// Returns the value and the number of bytes it took.
fn read_leb_u32(bytes: &[u8], offset: usize) -> Result<(u32, usize), ClaimsError> {
    let mut value: u32 = 0;
    for index in 0..LEB_U32_BYTES_MAX {
        let byte = *bytes
            .get(offset.saturating_add(index))
            .ok_or(ClaimsError::Truncated { offset })?;
        if index == LEB_U32_BYTES_MAX - 1 && byte & 0xf0 != 0 {
            return Err(ClaimsError::BadLeb { offset });
        }
        value |= u32::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    Err(ClaimsError::BadLeb { offset })
}

/// Minimal unsigned LEB128 of `value`, as wasm-encoder (and so wascap) writes section sizes.
fn write_leb_u32(mut value: u32, out: &mut [u8; LEB_U32_BYTES_MAX]) -> &[u8] {
    let mut len = 0;
    for slot in out.iter_mut() {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        len += 1;
        if value == 0 {
            *slot = low;
            break;
        }
        *slot = low | 0x80;
    }
    &out[..len]
}

/// Find the claims token: the first top-level custom section named `wasmcloud_jwt` or legacy
/// `jwt` (wascap also takes the first). `Ok(None)` when the module is well formed up to that point
/// and has no such section.
pub fn extract_jwt(module: &[u8]) -> Result<Option<(&str, JwtSection)>, ClaimsError> {
    for section in sections(module)? {
        if let Some((kind, payload)) = section?.jwt {
            let token = std::str::from_utf8(payload).map_err(|_| ClaimsError::TokenNotUtf8)?;
            return Ok(Some((token, kind)));
        }
    }
    Ok(None)
}

/// The wascap module hash (PROTOCOL §4.4): uppercase hex SHA-256 of the 8-byte header followed by
/// every top-level section except `jwt`/`wasmcloud_jwt` custom sections, each re-emitted as
/// `id || LEB128(size) || contents` with a minimal LEB128 (as wascap's `strip_custom_section`
/// does). Streams into the hasher: no copy of the module is made.
pub fn module_hash(module: &[u8]) -> Result<String, ClaimsError> {
    let mut hasher = Sha256::new();
    hasher.update(WASM_MAGIC);
    hasher.update(WASM_VERSION_CORE);
    let mut leb = [0u8; LEB_U32_BYTES_MAX];
    for section in sections(module)? {
        let section = section?;
        if section.jwt.is_some() {
            continue;
        }
        hasher.update([section.id]);
        hasher.update(write_leb_u32(section.size_bytes, &mut leb));
        hasher.update(section.contents);
    }
    Ok(hex_upper(&hasher.finalize()))
}

/// The module hash of the signers before wascap 0.9 (`wascap_revision` 2): the same bytes as
/// [`module_hash`] but with each section's size field as the module encodes it. Linkers often
/// pad section sizes to five LEB128 bytes, so the two differ for real actors of that era
/// (wascap's own `echo_messaging_v0.9.0.wasm` fixture is one). Both hashes cover every byte of
/// the module outside the claims sections, so accepting either keeps the check strict.
pub fn module_hash_as_encoded(module: &[u8]) -> Result<String, ClaimsError> {
    let mut hasher = Sha256::new();
    hasher.update(WASM_MAGIC);
    hasher.update(WASM_VERSION_CORE);
    for section in sections(module)? {
        let section = section?;
        if section.jwt.is_none() {
            hasher.update(section.raw);
        }
    }
    Ok(hex_upper(&hasher.finalize()))
}

// ---------------------------------------------------------------------------------------------
// Actor claims
// ---------------------------------------------------------------------------------------------

/// wascap's `Actor` metadata (PROTOCOL §4.2), with the same required fields and types.
#[derive(Deserialize)]
struct ActorMetadata {
    #[serde(default)]
    name: Option<String>,
    hash: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    rev: Option<i32>,
    #[serde(default)]
    ver: Option<String>,
    #[serde(default)]
    call_alias: Option<String>,
    #[serde(default)]
    prov: bool,
}

/// The claims of an actor, typed. Built only by [`ActorClaims::from_jwt`] (key types checked) or
/// [`validate_actor`] (everything checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorClaims {
    /// `sub`: the actor's module key (`M…`).
    pub subject: String,
    /// `iss`: the signing account key (`A…`).
    pub issuer: String,
    /// The raw Ed25519 key behind `issuer`.
    pub issuer_key_bytes: [u8; 32],
    pub jti: String,
    pub name: Option<String>,
    /// The signed module hash (uppercase hex SHA-256, PROTOCOL §4.4).
    pub hash: String,
    pub tags: Vec<String>,
    /// Capability contract ids.
    pub caps: Vec<String>,
    pub rev: Option<i32>,
    pub ver: Option<String>,
    pub call_alias: Option<String>,
    pub prov: bool,
    pub iat_secs: u64,
    pub exp_secs: Option<u64>,
    pub nbf_secs: Option<u64>,
    pub wascap_revision: Option<u32>,
}

impl ActorClaims {
    /// Typed view of a decoded token: issuer must be an account key, subject a module key, and
    /// the `wascap` object must be actor metadata. Does not check signature, times or hash.
    pub fn from_jwt(jwt: &Jwt<'_>) -> Result<ActorClaims, ClaimsError> {
        let claims = &jwt.claims;
        let issuer_key_bytes = public_key(&claims.iss, KeyRole::Issuer)?;
        public_key(&claims.sub, KeyRole::Subject)?;
        let metadata = claims.wascap.as_ref().ok_or(ClaimsError::MissingMetadata)?;
        let metadata =
            ActorMetadata::deserialize(metadata).map_err(|e| ClaimsError::BadMetadata { reason: e.to_string() })?;
        Ok(ActorClaims {
            subject: claims.sub.clone(),
            issuer: claims.iss.clone(),
            issuer_key_bytes,
            jti: claims.jti.clone(),
            name: metadata.name,
            hash: metadata.hash,
            tags: metadata.tags.unwrap_or_default(),
            caps: metadata.caps.unwrap_or_default(),
            rev: metadata.rev,
            ver: metadata.ver,
            call_alias: metadata.call_alias,
            prov: metadata.prov,
            iat_secs: claims.iat_secs,
            exp_secs: claims.exp_secs,
            nbf_secs: claims.nbf_secs,
            wascap_revision: claims.wascap_revision,
        })
    }

    /// The revision hosts report: `rev`, or `iat` when `rev` is missing or 0 (PROTOCOL §4.5).
    pub fn revision_or_iat(&self) -> i64 {
        match self.rev {
            Some(rev) if rev != 0 => i64::from(rev),
            _ => i64::try_from(self.iat_secs).unwrap_or(i64::MAX),
        }
    }
}

/// Every check a host applies before starting an actor (PROTOCOL §4.5): claims present, token
/// well formed, issuer an account key, subject a module key, signature valid, not expired, not
/// before `nbf`, and the module hash equal to the signed `hash`. The hash is checked for every
/// `wascap_revision` (wascap skips it below revision 3), in either encoding a signer of the
/// era used ([`module_hash`], [`module_hash_as_encoded`]).
pub fn validate_actor(module: &[u8], now_secs: u64) -> Result<ActorClaims, ClaimsError> {
    let (token, _section) = extract_jwt(module)?.ok_or(ClaimsError::NoClaims)?;
    let jwt = decode_jwt(token)?;
    let claims = ActorClaims::from_jwt(&jwt)?;
    verify_signature(&jwt)?;
    check_times(claims.exp_secs, claims.nbf_secs, now_secs)?;
    let actual = module_hash(module)?;
    if actual != claims.hash && module_hash_as_encoded(module)? != claims.hash {
        return Err(ClaimsError::HashMismatch {
            expected: claims.hash,
            actual,
        });
    }
    Ok(claims)
}

/// The claims as the lattice KV bucket stores them, in the OTP all-string shape (PROTOCOL §7.3).
pub fn to_stored_claims(claims: &ActorClaims) -> StoredClaims {
    let fields = [
        ("call_alias", claims.call_alias.clone().unwrap_or_default()),
        ("caps", claims.caps.join(",")),
        ("contract_id", String::new()),
        ("iss", claims.issuer.clone()),
        ("name", claims.name.clone().unwrap_or_default()),
        ("rev", claims.revision_or_iat().to_string()),
        ("sub", claims.subject.clone()),
        ("tags", claims.tags.join(",")),
        ("version", claims.ver.clone().unwrap_or_default()),
    ];
    StoredClaims(
        fields
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect::<BTreeMap<_, _>>(),
    )
}

// ---------------------------------------------------------------------------------------------
// Signing (the other side of validate_actor: what `wash claims sign` did in the 0.x era)
// ---------------------------------------------------------------------------------------------

/// The only header wascap writes (PROTOCOL §4.1), in wascap's field order.
const HEADER_JSON: &str = r#"{"typ":"jwt","alg":"Ed25519"}"#;
/// `wascap_revision` written into signed actors: wascap 0.11's current revision, the one at
/// which wascap itself checks the module hash.
pub const WASCAP_REVISION_SIGNED: u32 = 3;
/// Length of a `jti` (a NUID is 22 base-62 characters; the value only needs to be unique).
const JTI_CHARS: usize = 22;
const JTI_ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What to claim for an actor when signing it (PROTOCOL §4.2). The subject key is not part of
/// it: every signing makes a new module key, as `wash claims sign` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorSpec {
    /// `wascap.name`.
    pub name: String,
    /// Capability contract ids, e.g. `wasmcloud:httpserver`.
    pub caps: Vec<String>,
    pub call_alias: Option<String>,
    /// `rev`; hosts fall back to `iat` when it is missing or 0.
    pub rev: Option<i32>,
    /// Human version (`ver`).
    pub ver: Option<String>,
    pub tags: Vec<String>,
    /// `exp`, seconds since the epoch; `None` = never expires.
    pub expires_secs: Option<u64>,
    /// `nbf`, seconds since the epoch; `None` = valid at once.
    pub not_before_secs: Option<u64>,
    /// `iat`, seconds since the epoch (the caller's clock: this module reads none).
    pub now_secs: u64,
}

/// The claims payload we write, in wascap's field order and with its omissions.
#[derive(serde::Serialize)]
struct ActorPayloadOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    jti: &'a str,
    iat: u64,
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    wascap: ActorMetadataOut<'a>,
    wascap_revision: u32,
}

#[derive(serde::Serialize)]
struct ActorMetadataOut<'a> {
    name: &'a str,
    hash: &'a str,
    tags: &'a [String],
    caps: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_alias: Option<&'a str>,
    prov: bool,
}

fn random_jti() -> String {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    (0..JTI_CHARS)
        .map(|_| char::from(JTI_ALPHABET[rng.gen_range(0..JTI_ALPHABET.len())]))
        .collect()
}

/// Sign `module` as an actor: strip every `wasmcloud_jwt`/`jwt` custom section, hash the rest
/// exactly as [`module_hash`] does, make a new module key (`M…`) for the subject, build the
/// claims JWT from `spec` (`iss` = `account`'s public key, `wascap_revision` 3), sign it with
/// `account` and append it as a `wasmcloud_jwt` custom section. The output is the stripped
/// module (sections re-emitted with minimal LEB128 sizes, as wascap writes them) plus that
/// section, so `validate_actor` and wascap 0.11 both accept it.
///
/// Errors: the module is not a well-formed core module ([`ClaimsError`] walk variants),
/// `account` is not an account key ([`ClaimsError::IssuerNotAccount`]) or has no seed
/// ([`ClaimsError::CannotSign`]), or the token would exceed [`TOKEN_BYTES_MAX`].
pub fn sign_actor_module(module: &[u8], account: &nkeys::KeyPair, spec: &ActorSpec) -> Result<Vec<u8>, ClaimsError> {
    let issuer = account.public_key();
    if account.key_pair_type() != KeyPairType::Account {
        return Err(ClaimsError::IssuerNotAccount { key: issuer });
    }
    let stripped = strip_jwt_sections(module)?;
    let hash = module_hash(&stripped)?;
    let subject = nkeys::KeyPair::new_module().public_key();
    let jti = random_jti();
    let payload = ActorPayloadOut {
        exp: spec.expires_secs,
        jti: &jti,
        iat: spec.now_secs,
        iss: &issuer,
        sub: &subject,
        nbf: spec.not_before_secs,
        wascap: ActorMetadataOut {
            name: &spec.name,
            hash: &hash,
            tags: &spec.tags,
            caps: &spec.caps,
            rev: spec.rev,
            ver: spec.ver.as_deref(),
            call_alias: spec.call_alias.as_deref(),
            prov: false,
        },
        wascap_revision: WASCAP_REVISION_SIGNED,
    };
    // Strings, integers and slices of strings always serialize; map the error anyway.
    let payload_json = serde_json::to_vec(&payload).map_err(|e| ClaimsError::CannotSign { reason: e.to_string() })?;

    let mut token = String::with_capacity((HEADER_JSON.len() + payload_json.len() + SIGNATURE_BYTES) * 4 / 3 + 4);
    URL_SAFE_NO_PAD.encode_string(HEADER_JSON, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload_json, &mut token);
    let signature = account
        .sign(token.as_bytes())
        .map_err(|e| ClaimsError::CannotSign { reason: e.to_string() })?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    if token.len() > TOKEN_BYTES_MAX {
        return Err(ClaimsError::TokenTooLarge {
            token_bytes: token.len(),
            token_bytes_max: TOKEN_BYTES_MAX,
        });
    }

    let mut signed = stripped;
    append_custom_section(&mut signed, SECTION_NAME_JWT, token.as_bytes())?;
    Ok(signed)
}

/// The module with every top-level `jwt`/`wasmcloud_jwt` custom section removed: the 8-byte
/// header, then each other section as `id || LEB128(size) || contents` with a minimal LEB128 —
/// byte for byte what [`module_hash`] hashes.
fn strip_jwt_sections(module: &[u8]) -> Result<Vec<u8>, ClaimsError> {
    let mut out = Vec::with_capacity(module.len());
    out.extend_from_slice(&WASM_MAGIC);
    out.extend_from_slice(&WASM_VERSION_CORE);
    let mut leb = [0u8; LEB_U32_BYTES_MAX];
    for section in sections(module)? {
        let section = section?;
        if section.jwt.is_some() {
            continue;
        }
        out.push(section.id);
        out.extend_from_slice(write_leb_u32(section.size_bytes, &mut leb));
        out.extend_from_slice(section.contents);
    }
    Ok(out)
}

/// Append a custom section `name` holding `payload` at the end of `module`.
fn append_custom_section(module: &mut Vec<u8>, name: &str, payload: &[u8]) -> Result<(), ClaimsError> {
    let too_large = || ClaimsError::TokenTooLarge {
        token_bytes: payload.len(),
        token_bytes_max: TOKEN_BYTES_MAX,
    };
    let name_bytes = u32::try_from(name.len()).map_err(|_| too_large())?;
    let mut name_leb = [0u8; LEB_U32_BYTES_MAX];
    let name_leb = write_leb_u32(name_bytes, &mut name_leb);
    let contents_bytes = name_leb
        .len()
        .checked_add(name.len())
        .and_then(|bytes| bytes.checked_add(payload.len()))
        .and_then(|bytes| u32::try_from(bytes).ok())
        .ok_or_else(too_large)?;
    let mut size_leb = [0u8; LEB_U32_BYTES_MAX];
    module.push(SECTION_ID_CUSTOM);
    module.extend_from_slice(write_leb_u32(contents_bytes, &mut size_leb));
    module.extend_from_slice(name_leb);
    module.extend_from_slice(name.as_bytes());
    module.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
