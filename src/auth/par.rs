//! Provider archives (PAR, PROTOCOL §8.1 and §4.3): reading the archive and checking its claims
//! before anything is written to disk or spawned.
//!
//! A PAR is a POSIX tar, optionally gzip-compressed, holding `claims.jwt` (a wascap token whose
//! `wascap` object is provider metadata) and one `<arch>-<os>.bin` native executable per
//! platform. [`read_par`] accepts an archive only when the token is well formed, signed by an
//! account key (`A…`) for a service subject (`V…`), inside its `exp`/`nbf` window, and the
//! binary for the requested platform hashes to the `target_hashes` entry the token signs.
//! Neither wasmCloud host checked the signature or the validity window (PROTOCOL §4.5); we do.
//!
//! Plane: pure code used by the control plane. No I/O besides reading the given bytes, no
//! clock (`now_secs` is passed in). Must never panic on any archive bytes, and never inflate
//! more than [`PAR_UNPACKED_BYTES_MAX`] (a gzip bomb is refused, not unpacked).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::claims::{ClaimsError, KeyRole, TOKEN_BYTES_MAX};
use super::jwt::{check_times, decode_jwt, public_key, verify_signature, Jwt};
use crate::lattice::{hex_upper, StoredClaims};

/// Name of the claims entry (its file stem `claims` is what provider-archive looks for).
pub const PAR_CLAIMS_STEM: &str = "claims";
/// Largest provider binary we accept for one platform (real 0.x providers are 10–60 MiB).
pub const PROVIDER_BINARY_BYTES_MAX: u64 = 512 << 20;
/// Most bytes all entries of one archive may unpack to, after gunzip (gzip-bomb guard).
pub const PAR_UNPACKED_BYTES_MAX: u64 = 2 << 30;
/// Most entries one archive may hold (provider-archive writes one per platform plus the claims).
pub const PAR_ENTRIES_MAX: usize = 256;
/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first four bytes of an ELF file.
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

/// Whether `binary` can be what `target` executes: on Linux an ELF file or a `#!` script.
/// (Without this, glibc's exec fallback would hand any other bytes to `/bin/sh`.) Other
/// platforms' formats are not checked here: the host only runs its own platform's binary.
fn looks_executable(binary: &[u8], target: &str) -> bool {
    !target.ends_with("-linux") || binary.starts_with(&ELF_MAGIC) || binary.starts_with(b"#!")
}

/// The platform name of the running host, `{ARCH}-{OS}` from `std::env::consts` (e.g.
/// `x86_64-linux`), as provider-archive names the binaries.
pub fn host_target() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Why an archive was refused. Every variant names what a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ParError {
    #[error("not a provider archive (PAR): {reason}")]
    NotAPar { reason: String },
    #[error("provider archive has no claims.jwt entry")]
    NoClaims,
    #[error("provider archive claims.jwt is {token_bytes} bytes or more, over the limit of {token_bytes_max}")]
    ClaimsTooLarge { token_bytes: u64, token_bytes_max: usize },
    #[error("provider archive claims.jwt is not valid UTF-8")]
    ClaimsNotUtf8,
    #[error("provider archive claims refused: {0}")]
    Claims(#[from] ClaimsError),
    #[error("provider archive claims have no wascap provider metadata")]
    MissingMetadata,
    #[error("provider archive claims are not provider metadata: {reason}")]
    BadMetadata { reason: String },
    #[error("provider archive has no binary for {target} (it has: {found:?})")]
    NoBinaryForTarget { target: String, found: Vec<String> },
    #[error("provider archive claims sign no hash for {target} (they sign: {signed:?})")]
    NoTargetHash { target: String, signed: Vec<String> },
    #[error("provider binary for {target} hashes to {actual} but the claims sign {expected}: the archive changed after signing")]
    HashMismatch {
        target: String,
        expected: String,
        actual: String,
    },
    #[error("provider binary for {target} is not an executable for that platform (no ELF header, no #! line)")]
    NotExecutable { target: String },
    #[error("provider binary for {target} is {size_bytes} bytes or more, over the limit of {size_bytes_max}")]
    BinaryTooLarge {
        target: String,
        size_bytes: u64,
        size_bytes_max: u64,
    },
}

/// wascap's `CapabilityProvider` metadata (PROTOCOL §4.3), same required fields and types.
#[derive(Deserialize)]
struct ProviderMetadata {
    #[serde(default)]
    name: Option<String>,
    capid: String,
    vendor: String,
    #[serde(default)]
    rev: Option<i32>,
    #[serde(default)]
    ver: Option<String>,
    #[serde(default)]
    target_hashes: BTreeMap<String, String>,
    #[serde(default)]
    config_schema: Option<serde_json::Value>,
}

/// The claims of a provider archive, typed and checked (built by [`ProviderClaims::from_jwt`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderClaims {
    /// `sub`: the provider's service key (`V…`).
    pub subject: String,
    /// `iss`: the signing account key (`A…`).
    pub issuer: String,
    pub jti: String,
    pub name: Option<String>,
    /// Capability contract id, e.g. `wasmcloud:keyvalue`.
    pub capid: String,
    pub vendor: String,
    pub rev: Option<i32>,
    pub ver: Option<String>,
    /// Platform (`x86_64-linux`) → uppercase hex SHA-256 of that binary.
    pub target_hashes: BTreeMap<String, String>,
    pub config_schema: Option<serde_json::Value>,
    pub iat_secs: u64,
    pub exp_secs: Option<u64>,
    pub nbf_secs: Option<u64>,
}

impl ProviderClaims {
    /// Typed view of a decoded token: issuer an account key, subject a service key, provider
    /// metadata present. Does not check the signature or the times.
    pub fn from_jwt(jwt: &Jwt<'_>) -> Result<ProviderClaims, ParError> {
        let claims = &jwt.claims;
        public_key(&claims.iss, KeyRole::Issuer)?;
        public_key(&claims.sub, KeyRole::ProviderSubject)?;
        let metadata = claims.wascap.as_ref().ok_or(ParError::MissingMetadata)?;
        let metadata =
            ProviderMetadata::deserialize(metadata).map_err(|e| ParError::BadMetadata { reason: e.to_string() })?;
        Ok(ProviderClaims {
            subject: claims.sub.clone(),
            issuer: claims.iss.clone(),
            jti: claims.jti.clone(),
            name: metadata.name,
            capid: metadata.capid,
            vendor: metadata.vendor,
            rev: metadata.rev,
            ver: metadata.ver,
            target_hashes: metadata.target_hashes,
            config_schema: metadata.config_schema,
            iat_secs: claims.iat_secs,
            exp_secs: claims.exp_secs,
            nbf_secs: claims.nbf_secs,
        })
    }

    /// The revision hosts report: `rev`, or `iat` when `rev` is missing or 0 (PROTOCOL §4.5).
    pub fn revision_or_iat(&self) -> i64 {
        match self.rev {
            Some(rev) if rev != 0 => i64::from(rev),
            _ => i64::try_from(self.iat_secs).unwrap_or(i64::MAX),
        }
    }

    /// The claims as the lattice KV bucket stores them: the OTP all-string shape (§7.3), with
    /// empty `caps`/`call_alias` and the contract id in `contract_id`.
    pub fn to_stored_claims(&self) -> StoredClaims {
        let mut fields: BTreeMap<String, String> = [
            ("call_alias", String::new()),
            ("caps", String::new()),
            ("contract_id", self.capid.clone()),
            ("iss", self.issuer.clone()),
            ("name", self.name.clone().unwrap_or_default()),
            ("rev", self.revision_or_iat().to_string()),
            ("sub", self.subject.clone()),
            ("tags", String::new()),
            ("version", self.ver.clone().unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(schema) = &self.config_schema {
            fields.insert("config_schema".to_string(), schema.to_string());
        }
        StoredClaims(fields)
    }
}

/// A checked archive: its claims and the binary for the requested platform.
#[derive(Debug)]
pub struct ProviderArchive {
    pub claims: ProviderClaims,
    /// The platform the binary is for (`x86_64-linux`).
    pub target: String,
    /// The executable's bytes; its SHA-256 equals `claims.target_hashes[target]`.
    pub binary: Vec<u8>,
    /// Uppercase hex SHA-256 of `binary`.
    pub binary_hash: String,
}

/// Read and check a PAR (plain or gzip'd tar) for platform `target` at time `now_secs`.
/// Only the `target` binary is kept in memory; the others are read past (and counted against
/// [`PAR_UNPACKED_BYTES_MAX`]).
pub fn read_par(bytes: &[u8], target: &str, now_secs: u64) -> Result<ProviderArchive, ParError> {
    if bytes.is_empty() {
        return Err(ParError::NotAPar {
            reason: "the archive is empty".into(),
        });
    }
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let entries = read_entries(reader.take(PAR_UNPACKED_BYTES_MAX), target)?;
    let token = entries.claims.ok_or(ParError::NoClaims)?;
    let jwt = decode_jwt(&token)?;
    let claims = ProviderClaims::from_jwt(&jwt)?;
    verify_signature(&jwt)?;
    check_times(claims.exp_secs, claims.nbf_secs, now_secs)?;
    let binary = entries.binary.ok_or_else(|| ParError::NoBinaryForTarget {
        target: target.to_string(),
        found: entries.found_targets.clone(),
    })?;
    let expected = claims.target_hashes.get(target).ok_or_else(|| ParError::NoTargetHash {
        target: target.to_string(),
        signed: claims.target_hashes.keys().cloned().collect(),
    })?;
    let actual = hex_upper(&Sha256::digest(&binary));
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ParError::HashMismatch {
            target: target.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    if !looks_executable(&binary, target) {
        return Err(ParError::NotExecutable {
            target: target.to_string(),
        });
    }
    Ok(ProviderArchive {
        claims,
        target: target.to_string(),
        binary,
        binary_hash: actual,
    })
}

/// What the tar walk found.
struct Entries {
    claims: Option<String>,
    binary: Option<Vec<u8>>,
    /// File stems of every binary entry, for the "no binary for this platform" message.
    found_targets: Vec<String>,
}

fn not_a_par(error: io::Error) -> ParError {
    let reason = if error.kind() == io::ErrorKind::UnexpectedEof {
        format!("truncated archive ({error}), or it unpacks to more than {PAR_UNPACKED_BYTES_MAX} bytes")
    } else {
        error.to_string()
    };
    ParError::NotAPar { reason }
}

/// Walk the tar entries. Entries are named by their file stem as provider-archive does
/// (`claims.jwt` → `claims`, `x86_64-linux.bin` → `x86_64-linux`), whatever directory they
/// sit in; only regular files count. The first entry of each name wins.
fn read_entries(reader: impl Read, target: &str) -> Result<Entries, ParError> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Entries {
        claims: None,
        binary: None,
        found_targets: Vec::new(),
    };
    let mut entry_count = 0usize;
    for entry in archive.entries().map_err(not_a_par)? {
        let mut entry = entry.map_err(not_a_par)?;
        entry_count += 1;
        if entry_count > PAR_ENTRIES_MAX {
            return Err(ParError::NotAPar {
                reason: format!("more than {PAR_ENTRIES_MAX} entries"),
            });
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(not_a_par)?;
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if stem == PAR_CLAIMS_STEM {
            if out.claims.is_none() {
                out.claims = Some(read_claims(&mut entry)?);
            }
            continue;
        }
        out.found_targets.push(stem.clone());
        if stem == target && out.binary.is_none() {
            out.binary = Some(read_binary(&mut entry, target)?);
        }
        // Other entries are skipped by the iterator (it reads past their data).
    }
    if entry_count == 0 {
        return Err(ParError::NotAPar {
            reason: "the archive has no entries".into(),
        });
    }
    Ok(out)
}

fn read_claims(entry: &mut impl Read) -> Result<String, ParError> {
    let limit = TOKEN_BYTES_MAX as u64;
    let mut raw = Vec::new();
    entry.take(limit + 1).read_to_end(&mut raw).map_err(not_a_par)?;
    if raw.len() as u64 > limit {
        return Err(ParError::ClaimsTooLarge {
            token_bytes: raw.len() as u64,
            token_bytes_max: TOKEN_BYTES_MAX,
        });
    }
    let token = String::from_utf8(raw).map_err(|_| ParError::ClaimsNotUtf8)?;
    Ok(token.trim().to_string())
}

fn read_binary(entry: &mut impl Read, target: &str) -> Result<Vec<u8>, ParError> {
    let mut binary = Vec::new();
    entry
        .take(PROVIDER_BINARY_BYTES_MAX + 1)
        .read_to_end(&mut binary)
        .map_err(not_a_par)?;
    if binary.len() as u64 > PROVIDER_BINARY_BYTES_MAX {
        return Err(ParError::BinaryTooLarge {
            target: target.to_string(),
            size_bytes: binary.len() as u64,
            size_bytes_max: PROVIDER_BINARY_BYTES_MAX,
        });
    }
    Ok(binary)
}

/// Build a PAR (tar, gzip'd when `gzip`) from a claims token and `(target, binary)` pairs: the
/// inverse of [`read_par`], for tests, benches and tools. The claims come first, then the
/// binaries, each a regular file of mode 0755.
pub fn write_par(token: &str, binaries: &[(&str, &[u8])], gzip: bool) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |name: &str, data: &[u8]| -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append_data(&mut header, name, data)
    };
    append("claims.jwt", token.as_bytes())?;
    for (target, binary) in binaries {
        append(&format!("{target}.bin"), binary)?;
    }
    let tar = builder.into_inner()?;
    if !gzip {
        return Ok(tar);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut encoder, &tar)?;
    encoder.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! Tokens are signed with wascap 0.11 itself (the library of the 0.x era), so "valid"
    //! means "what a real `wash par create` produced".

    use std::collections::HashMap;

    use wascap::jwt::{CapabilityProvider, Claims};
    use wascap::prelude::KeyPair;

    use super::*;
    use crate::auth::testkit::now_secs;

    const TARGET: &str = "x86_64-linux";
    const BINARY: &[u8] = b"\x7fELF pretend provider binary";

    struct Token {
        token: String,
        subject: String,
    }

    fn token_with(binary: &[u8], target: &str, nbf: Option<u64>, exp: Option<u64>) -> Token {
        let account = KeyPair::new_account();
        let service = KeyPair::new_service();
        let mut hashes = HashMap::new();
        hashes.insert(target.to_string(), hex_upper(&Sha256::digest(binary)));
        let metadata = CapabilityProvider {
            name: Some("kv test".into()),
            capid: "wasmcloud:keyvalue".into(),
            vendor: "shardhost".into(),
            rev: Some(3),
            ver: Some("0.1.0".into()),
            target_hashes: hashes,
            config_schema: None,
        };
        let claims =
            Claims::<CapabilityProvider>::with_provider(account.public_key(), service.public_key(), nbf, exp, metadata);
        Token {
            token: claims.encode(&account).unwrap(),
            subject: service.public_key(),
        }
    }

    fn token(binary: &[u8]) -> Token {
        token_with(binary, TARGET, None, None)
    }

    #[test]
    fn reads_plain_and_gzipped_archives() {
        let t = token(BINARY);
        for gzip in [false, true] {
            let par = write_par(&t.token, &[(TARGET, BINARY), ("aarch64-linux", b"other")], gzip).unwrap();
            let archive = read_par(&par, TARGET, now_secs()).unwrap();
            assert_eq!(archive.binary, BINARY);
            assert_eq!(archive.claims.subject, t.subject);
            assert_eq!(archive.claims.capid, "wasmcloud:keyvalue");
            assert_eq!(archive.claims.vendor, "shardhost");
            assert_eq!(archive.claims.revision_or_iat(), 3);
            let stored = archive.claims.to_stored_claims();
            assert_eq!(stored.0["contract_id"], "wasmcloud:keyvalue");
            assert_eq!(stored.0["caps"], "");
            assert_eq!(stored.0["sub"], t.subject);
        }
    }

    #[test]
    fn bad_signature_is_refused() {
        let t = token(BINARY);
        // Flip one character of the signature.
        let mut forged = t.token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let par = write_par(std::str::from_utf8(&forged).unwrap(), &[(TARGET, BINARY)], false).unwrap();
        let error = read_par(&par, TARGET, now_secs()).unwrap_err();
        assert!(
            matches!(error, ParError::Claims(ClaimsError::BadSignature { .. })),
            "{error}"
        );
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let now = now_secs();
        let expired = token_with(BINARY, TARGET, None, Some(now - 10));
        let par = write_par(&expired.token, &[(TARGET, BINARY)], true).unwrap();
        let error = read_par(&par, TARGET, now).unwrap_err();
        assert!(
            matches!(error, ParError::Claims(ClaimsError::Expired { .. })),
            "{error}"
        );
        let early = token_with(BINARY, TARGET, Some(now + 3600), None);
        let par = write_par(&early.token, &[(TARGET, BINARY)], true).unwrap();
        let error = read_par(&par, TARGET, now).unwrap_err();
        assert!(
            matches!(error, ParError::Claims(ClaimsError::NotYetValid { .. })),
            "{error}"
        );
    }

    #[test]
    fn tampered_binary_is_refused() {
        let t = token(BINARY);
        let par = write_par(&t.token, &[(TARGET, b"a different binary")], false).unwrap();
        let error = read_par(&par, TARGET, now_secs()).unwrap_err();
        assert!(matches!(error, ParError::HashMismatch { .. }), "{error}");
        assert!(error.to_string().contains("changed after signing"));
    }

    #[test]
    fn missing_platform_and_missing_hash_are_refused() {
        let t = token(BINARY);
        let par = write_par(&t.token, &[("aarch64-macos", BINARY)], false).unwrap();
        let error = read_par(&par, TARGET, now_secs()).unwrap_err();
        match &error {
            ParError::NoBinaryForTarget { target, found } => {
                assert_eq!(target, TARGET);
                assert_eq!(found, &vec!["aarch64-macos".to_string()]);
            }
            other => panic!("unexpected {other}"),
        }
        // A binary for the platform that the claims do not sign.
        let signed_other = token_with(BINARY, "aarch64-macos", None, None);
        let par = write_par(&signed_other.token, &[(TARGET, BINARY)], false).unwrap();
        let error = read_par(&par, TARGET, now_secs()).unwrap_err();
        assert!(matches!(error, ParError::NoTargetHash { .. }), "{error}");
    }

    #[test]
    fn a_linux_binary_must_be_elf_or_a_script() {
        for (binary, ok) in [
            (&b"#!/bin/sh\nexit 0\n"[..], true),
            (b"MZ not for linux", false),
            (b"random", false),
        ] {
            let t = token(binary);
            let par = write_par(&t.token, &[(TARGET, binary)], false).unwrap();
            let result = read_par(&par, TARGET, now_secs());
            assert_eq!(result.is_ok(), ok, "{binary:?}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(ParError::NotExecutable { .. })));
            }
        }
    }

    #[test]
    fn garbage_and_non_archives_are_refused() {
        for bytes in [
            &b""[..],
            b"definitely not a tar archive",
            &[0u8; 1024],
            &[0x1f, 0x8b, 0, 1, 2, 3],
            &[0xffu8; 2048],
        ] {
            let error = read_par(bytes, TARGET, now_secs()).unwrap_err();
            assert!(matches!(error, ParError::NotAPar { .. }), "{bytes:?}: {error}");
        }
        // A real tar without claims.
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_cksum();
        builder
            .append_data(&mut header, "x86_64-linux.bin", &b"abc"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        assert!(matches!(read_par(&tar, TARGET, now_secs()), Err(ParError::NoClaims)));
    }

    #[test]
    fn actor_claims_in_a_par_are_refused() {
        // An actor token (module subject) is not provider metadata.
        let signed = crate::auth::testkit::sign(&crate::auth::testkit::actor_module());
        let (token, _) = crate::auth::claims::extract_jwt(&signed.module).unwrap().unwrap();
        let par = write_par(token, &[(TARGET, BINARY)], false).unwrap();
        let error = read_par(&par, TARGET, now_secs()).unwrap_err();
        assert!(
            matches!(error, ParError::Claims(ClaimsError::SubjectNotService { .. })),
            "{error}"
        );
    }

    #[test]
    fn truncated_archives_never_panic() {
        let t = token(BINARY);
        let par = write_par(&t.token, &[(TARGET, BINARY)], true).unwrap();
        for cut in 0..par.len() {
            let _ = read_par(&par[..cut], TARGET, now_secs());
        }
        let plain = write_par(&t.token, &[(TARGET, BINARY)], false).unwrap();
        // Cut inside the claims entry or before the binary's data ends: always an error.
        for cut in (1..1024 + BINARY.len()).step_by(61) {
            assert!(read_par(&plain[..cut], TARGET, now_secs()).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn host_target_names_this_platform() {
        let target = host_target();
        assert!(target.contains('-'), "{target}");
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            assert_eq!(target, "x86_64-linux");
        }
    }
}
