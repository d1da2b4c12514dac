//! Every test builds its actors in WAT and signs them with wascap 0.11 itself, so "valid"
//! means "valid to the library every wasmCloud 0.x host used".

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wascap::jwt::{Actor, ClaimsBuilder};
use wascap::prelude::KeyPair as WascapKeyPair;

use super::*;
use crate::auth::jwt::HEADER_B64;
use crate::auth::testkit::*;

const OTHER_WAT: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "__guest_call") (param i32 i32) (result i32) i32.const 0)
    (data (i32.const 16) "another actor"))"#;

fn leb(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

fn append_custom_section(module: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut contents = leb(name.len() as u32);
    contents.extend_from_slice(name.as_bytes());
    contents.extend_from_slice(payload);
    let mut out = module.to_vec();
    out.push(0);
    out.extend(leb(contents.len() as u32));
    out.extend(contents);
    out
}

/// Rewrite the size of the first section as a 5-byte (non-minimal) LEB128.
fn widen_first_section_size(module: &[u8]) -> Vec<u8> {
    let (size, used) = read_leb_u32(module, WASM_HEADER_BYTES + 1).unwrap();
    let mut out = module[..WASM_HEADER_BYTES + 1].to_vec();
    for shift in 0..4 {
        out.push(((size >> (7 * shift)) & 0x7f) as u8 | 0x80);
    }
    out.push((size >> 28) as u8);
    out.extend_from_slice(&module[WASM_HEADER_BYTES + 1 + used..]);
    out
}

/// The hash wascap put into the claims when it signed.
fn wascap_hash(signed: &[u8]) -> String {
    let token = wascap::wasm::extract_claims(signed).unwrap().unwrap();
    token.claims.metadata.unwrap().module_hash
}

fn token_of(signed: &[u8]) -> String {
    extract_jwt(signed).unwrap().unwrap().0.to_string()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token signed with our own nkeys version, from raw JSON (for header and shape tests).
fn forge(header: &str, payload: &str, key: &nkeys::KeyPair) -> String {
    let signed_part = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = key.sign(signed_part.as_bytes()).unwrap();
    format!("{signed_part}.{}", b64(&signature))
}

fn forge_payload(account: &nkeys::KeyPair) -> String {
    format!(
        r#"{{"jti":"x","iat":1644843743,"iss":"{}","sub":"{}","wascap":{{"hash":"00","prov":false}}}}"#,
        account.public_key(),
        nkeys::KeyPair::new_module().public_key()
    )
}

const GOOD_HEADER: &str = r#"{"typ":"jwt","alg":"Ed25519"}"#;

#[test]
fn the_header_fast_path_is_wascaps_header() {
    assert_eq!(HEADER_B64, b64(GOOD_HEADER.as_bytes()));
    let wascap_token = token_of(&sign(&actor_module()).module);
    assert!(wascap_token.starts_with(&format!("{HEADER_B64}.")));
    // Any other spelling of a good header still decodes; a bad one is still refused.
    let account = nkeys::KeyPair::new_account();
    let spaced = forge(r#"{"alg":"Ed25519", "typ":"jwt"}"#, &forge_payload(&account), &account);
    decode_jwt(&spaced).unwrap();
    let bad = forge(r#"{"typ":"JWT","alg":"Ed25519"}"#, &forge_payload(&account), &account);
    assert!(matches!(decode_jwt(&bad), Err(ClaimsError::BadHeader { .. })));
}

#[test]
fn module_hash_agrees_with_wascap() {
    for wat_text in [ACTOR_WAT, OTHER_WAT, "(module)"] {
        let module = wat::parse_str(wat_text).unwrap();
        let signed = sign(&module).module;
        let expected = wascap_hash(&signed);
        assert_eq!(module_hash(&signed).unwrap(), expected);
        assert_eq!(module_hash(&module).unwrap(), expected);
        // For a minimally encoded module the strip is just "cut the sections out".
        assert_eq!(hex_upper(&Sha256::digest(&module)), expected);
    }
}

#[test]
fn non_minimal_section_size_hashes_like_wascap() {
    let module = actor_module();
    let widened = widen_first_section_size(&module);
    assert_ne!(widened, module);
    let expected = module_hash(&module).unwrap();
    assert_eq!(module_hash(&widened).unwrap(), expected);
    // wascap re-encodes minimally when it signs the widened module...
    assert_eq!(wascap_hash(&sign(&widened).module), expected);
    // ...and a signed module whose sizes are widened afterwards still validates for both.
    let signed_widened = widen_first_section_size(&sign(&module).module);
    assert!(wascap::wasm::extract_claims(&signed_widened).unwrap().is_some());
    validate_actor(&signed_widened, now_secs()).unwrap();
}

/// A pre-0.9 signer (wascap_revision 2) hashed a linker's padded section sizes as they were
/// encoded: such a module validates, and still fails once modified.
#[test]
fn revision_2_hash_over_padded_sizes_is_accepted_and_still_strict() {
    let widened = widen_first_section_size(&actor_module());
    let raw_hash = module_hash_as_encoded(&widened).unwrap();
    assert_ne!(
        raw_hash,
        module_hash(&widened).unwrap(),
        "the two encodings differ here"
    );
    let account = WascapKeyPair::new_account();
    let subject = WascapKeyPair::new_module();
    let mut claims = wascap_claims(&account, &subject, None, None, Some(1));
    claims.metadata.as_mut().unwrap().module_hash = raw_hash.clone();
    // (wascap 0.11 writes revision 3 whatever we want; the check does not depend on it.)
    let token = claims.encode(&account).unwrap();
    let signed = append_custom_section(&widened, "jwt", token.as_bytes());
    let valid = validate_actor(&signed, now_secs()).unwrap();
    assert_eq!(valid.hash, raw_hash);
    let mut changed = signed.clone();
    let last_code_byte = widened.len() - 1;
    changed[last_code_byte] ^= 0x01;
    assert!(matches!(
        validate_actor(&changed, now_secs()),
        Err(ClaimsError::HashMismatch { .. })
    ));
}

#[test]
fn valid_token_is_accepted_with_every_field() {
    let signed = sign(&actor_module());
    let claims = validate_actor(&signed.module, now_secs()).unwrap();
    let token = wascap::wasm::extract_claims(&signed.module).unwrap().unwrap();
    let meta = token.claims.metadata.clone().unwrap();
    assert_eq!(claims.subject, signed.subject.public_key());
    assert_eq!(claims.issuer, signed.account.public_key());
    assert_eq!(
        claims.issuer_key_bytes,
        nkeys::from_public_key(&claims.issuer).unwrap().1
    );
    assert_eq!(claims.jti, token.claims.id);
    assert_eq!(claims.iat_secs, token.claims.issued_at);
    assert_eq!(claims.hash, meta.module_hash);
    assert_eq!(claims.name.as_deref(), Some("Echo"));
    assert_eq!(claims.caps, ["wasmcloud:httpserver", "wasmcloud:keyvalue"]);
    assert_eq!(claims.tags, ["test", "echo"]);
    assert_eq!(claims.rev, Some(4));
    assert_eq!(claims.ver.as_deref(), Some("0.3.4"));
    assert_eq!(claims.call_alias, meta.call_alias);
    assert!(!claims.prov);
    assert_eq!((claims.exp_secs, claims.nbf_secs), (None, None));
    assert_eq!(claims.wascap_revision, Some(3));
    assert_eq!(claims.revision_or_iat(), 4);

    let validation = wascap::jwt::validate_token::<Actor>(&token.jwt).unwrap();
    assert!(validation.signature_valid && !validation.expired && !validation.cannot_use_yet);
    assert_eq!(extract_jwt(&signed.module).unwrap().unwrap().1, JwtSection::Current);
}

#[test]
fn expired_token_is_rejected_like_wascap() {
    let now = now_secs();
    let signed = sign_with(&actor_module(), None, Some(now - 60), None).module;
    assert_eq!(
        validate_actor(&signed, now),
        Err(ClaimsError::Expired {
            exp_secs: now - 60,
            now_secs: now
        })
    );
    let validation = wascap::jwt::validate_token::<Actor>(&token_of(&signed)).unwrap();
    assert!(validation.expired && validation.signature_valid);

    // Boundary (RFC 7519): valid up to exp - 1, expired at exp. wascap 0.11 still accepts
    // the token during its expiry second.
    let exp = now + 3600;
    let signed = sign_with(&actor_module(), None, Some(exp), None).module;
    validate_actor(&signed, exp - 1).unwrap();
    assert!(matches!(validate_actor(&signed, exp), Err(ClaimsError::Expired { .. })));
}

#[test]
fn not_yet_valid_token_is_rejected_like_wascap() {
    let now = now_secs();
    let nbf = now + 3600;
    let signed = sign_with(&actor_module(), Some(nbf), None, None).module;
    assert_eq!(
        validate_actor(&signed, now),
        Err(ClaimsError::NotYetValid {
            nbf_secs: nbf,
            now_secs: now
        })
    );
    let validation = wascap::jwt::validate_token::<Actor>(&token_of(&signed)).unwrap();
    assert!(validation.cannot_use_yet && validation.signature_valid);
    validate_actor(&signed, nbf).unwrap();
}

#[test]
fn module_changed_after_signing_is_a_hash_mismatch() {
    let signed = sign(&actor_module()).module;
    let expected = wascap_hash(&signed);

    let at = signed.windows(5).position(|w| w == b"hello").unwrap();
    let mut changed = signed.clone();
    changed[at] = b'j';
    assert_eq!(
        validate_actor(&changed, now_secs()),
        Err(ClaimsError::HashMismatch {
            expected: expected.clone(),
            actual: module_hash(&changed).unwrap()
        })
    );
    assert!(wascap::wasm::extract_claims(&changed).is_err());

    // An extra (non-claims) custom section counts as a change too.
    let extended = append_custom_section(&signed, "producers", b"x");
    assert!(matches!(
        validate_actor(&extended, now_secs()),
        Err(ClaimsError::HashMismatch { .. })
    ));
    assert!(wascap::wasm::extract_claims(&extended).is_err());
}

#[test]
fn token_of_another_module_is_a_hash_mismatch() {
    let token = token_of(&sign(&actor_module()).module);
    let other = wat::parse_str(OTHER_WAT).unwrap();
    let grafted = append_custom_section(&other, SECTION_NAME_JWT, token.as_bytes());
    assert!(matches!(
        validate_actor(&grafted, now_secs()),
        Err(ClaimsError::HashMismatch { .. })
    ));
    assert!(wascap::wasm::extract_claims(&grafted).is_err());
}

/// wascap checks the hash only when `wascap_revision >= 3`; tokens from `ClaimsBuilder` have
/// no revision, so wascap accepts a modified module. We always check.
#[test]
fn hash_is_checked_without_wascap_revision_unlike_wascap() {
    let account = WascapKeyPair::new_account();
    let subject = WascapKeyPair::new_module();
    let claims = ClaimsBuilder::<Actor>::new()
        .issuer(&account.public_key())
        .subject(&subject.public_key())
        .with_metadata(Actor {
            name: Some("builder".to_string()),
            ..Actor::default()
        })
        .build();
    let signed = wascap::wasm::embed_claims(&actor_module(), &claims, &account).unwrap();
    let checked = validate_actor(&signed, now_secs()).unwrap();
    assert_eq!(checked.wascap_revision, None);

    let at = signed.windows(5).position(|w| w == b"hello").unwrap();
    let mut changed = signed.clone();
    changed[at] = b'j';
    assert!(wascap::wasm::extract_claims(&changed).unwrap().is_some());
    assert!(matches!(
        validate_actor(&changed, now_secs()),
        Err(ClaimsError::HashMismatch { .. })
    ));
}

#[test]
fn tampered_signature_or_payload_is_rejected() {
    let module = actor_module();
    let signed = sign(&module);
    let token = token_of(&signed.module);
    let issuer = signed.account.public_key();

    let signature_start = token.rfind('.').unwrap() + 1;
    let mut tampered = token.clone().into_bytes();
    let at = signature_start + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bad = append_custom_section(&module, SECTION_NAME_JWT, tampered.as_bytes());
    assert_eq!(
        validate_actor(&bad, now_secs()),
        Err(ClaimsError::BadSignature { issuer: issuer.clone() })
    );
    assert!(!wascap::jwt::validate_token::<Actor>(&tampered).unwrap().signature_valid);

    // Same signature over a payload with one more capability.
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let payload = payload.replace(
        "\"wasmcloud:keyvalue\"",
        "\"wasmcloud:keyvalue\",\"wasmcloud:blobstore\"",
    );
    let forged = format!("{}.{}.{}", parts[0], b64(payload.as_bytes()), parts[2]);
    let bad = append_custom_section(&module, SECTION_NAME_JWT, forged.as_bytes());
    assert_eq!(
        validate_actor(&bad, now_secs()),
        Err(ClaimsError::BadSignature { issuer })
    );
    assert!(!wascap::jwt::validate_token::<Actor>(&forged).unwrap().signature_valid);
}

#[test]
fn module_without_claims_has_no_claims() {
    for module in [actor_module(), b"\0asm\x01\0\0\0".to_vec()] {
        assert_eq!(extract_jwt(&module), Ok(None));
        assert_eq!(validate_actor(&module, now_secs()), Err(ClaimsError::NoClaims));
        assert!(wascap::wasm::extract_claims(&module).unwrap().is_none());
    }
    assert_eq!(ClaimsError::NoClaims.to_string(), "actor module has no embedded claims");
}

#[test]
fn legacy_jwt_section_name_is_accepted() {
    let module = actor_module();
    let token = token_of(&sign(&module).module);
    let legacy = append_custom_section(&module, SECTION_NAME_JWT_LEGACY, token.as_bytes());
    assert_eq!(
        extract_jwt(&legacy).unwrap(),
        Some((token.as_str(), JwtSection::Legacy))
    );
    assert_eq!(module_hash(&legacy).unwrap(), module_hash(&module).unwrap());
    validate_actor(&legacy, now_secs()).unwrap();
    assert!(wascap::wasm::extract_claims(&legacy).unwrap().is_some());
}

#[test]
fn every_claims_section_is_stripped_and_the_first_wins() {
    let signed = sign(&actor_module()).module;
    let doubled = append_custom_section(&signed, SECTION_NAME_JWT_LEGACY, b"not a token");
    assert_eq!(module_hash(&doubled).unwrap(), module_hash(&signed).unwrap());
    validate_actor(&doubled, now_secs()).unwrap();
    assert!(wascap::wasm::extract_claims(&doubled).unwrap().is_some());
}

/// wascap accepts any nkey type as issuer and any non-empty subject; we require an account
/// issuer and a module subject.
#[test]
fn issuer_must_be_an_account_and_subject_a_module() {
    let module = actor_module();
    for issuer in [
        WascapKeyPair::new_module(),
        WascapKeyPair::new_operator(),
        WascapKeyPair::new_user(),
    ] {
        let claims = wascap_claims(&issuer, &WascapKeyPair::new_module(), None, None, None);
        let signed = wascap::wasm::embed_claims(&module, &claims, &issuer).unwrap();
        assert_eq!(
            validate_actor(&signed, now_secs()),
            Err(ClaimsError::IssuerNotAccount {
                key: issuer.public_key()
            })
        );
        let validation = wascap::jwt::validate_token::<Actor>(&token_of(&signed)).unwrap();
        assert!(validation.signature_valid, "wascap accepts a {:?} issuer", issuer);
    }

    let account = WascapKeyPair::new_account();
    let not_a_module = WascapKeyPair::new_account();
    let claims = wascap_claims(&account, &not_a_module, None, None, None);
    let signed = wascap::wasm::embed_claims(&module, &claims, &account).unwrap();
    assert_eq!(
        validate_actor(&signed, now_secs()),
        Err(ClaimsError::SubjectNotModule {
            key: not_a_module.public_key()
        })
    );
}

#[test]
fn header_and_token_shape_rules() {
    let account = nkeys::KeyPair::new_account();
    let payload = forge_payload(&account);

    let good = forge(GOOD_HEADER, &payload, &account);
    let jwt = decode_jwt(&good).unwrap();
    assert_eq!(
        verify_signature(&jwt).unwrap(),
        nkeys::from_public_key(&account.public_key()).unwrap().1
    );
    // Extra header fields are ignored, as wascap's serde ignores them.
    let extra = forge(r#"{"typ":"jwt","alg":"Ed25519","kid":"1"}"#, &payload, &account);
    verify_signature(&decode_jwt(&extra).unwrap()).unwrap();

    for header in [
        r#"{"typ":"JWT","alg":"Ed25519"}"#,
        r#"{"typ":"jwt","alg":"EdDSA"}"#,
        r#"{"typ":"jwt","alg":"none"}"#,
    ] {
        let token = forge(header, &payload, &account);
        assert!(
            matches!(decode_jwt(&token), Err(ClaimsError::BadHeader { .. })),
            "{header}"
        );
        assert!(wascap::jwt::validate_token::<Actor>(&token).is_err(), "{header}");
    }
    assert!(matches!(
        decode_jwt(&forge(r#"{"alg":"Ed25519"}"#, &payload, &account)),
        Err(ClaimsError::Json {
            part: TokenPart::Header,
            ..
        })
    ));
    // wascap requires jti and iat, so do we.
    let no_jti = payload.replace(r#""jti":"x","#, "");
    assert!(matches!(
        decode_jwt(&forge(GOOD_HEADER, &no_jti, &account)),
        Err(ClaimsError::Json {
            part: TokenPart::Payload,
            ..
        })
    ));

    let parts: Vec<&str> = good.split('.').collect();
    assert_eq!(
        decode_jwt(&parts[..2].join(".")),
        Err(ClaimsError::TokenParts { parts_count: 2 })
    );
    assert_eq!(
        decode_jwt(&format!("{good}.x")),
        Err(ClaimsError::TokenParts { parts_count: 4 })
    );
    assert_eq!(decode_jwt(""), Err(ClaimsError::TokenParts { parts_count: 1 }));
    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    assert!(matches!(decode_jwt(&padded), Err(ClaimsError::Base64 { .. })));
    let short_signature = format!("{}.{}.{}", parts[0], parts[1], b64(&[7u8; 63]));
    assert_eq!(
        decode_jwt(&short_signature),
        Err(ClaimsError::SignatureLength { signature_bytes: 63 })
    );
    let big = "a".repeat(TOKEN_BYTES_MAX + 1);
    assert!(matches!(decode_jwt(&big), Err(ClaimsError::TokenTooLarge { .. })));

    // A token without actor metadata is refused at the typed view.
    let bare = payload.replace(r#","wascap":{"hash":"00","prov":false}"#, "");
    let module = append_custom_section(
        &actor_module(),
        SECTION_NAME_JWT,
        forge(GOOD_HEADER, &bare, &account).as_bytes(),
    );
    assert_eq!(validate_actor(&module, now_secs()), Err(ClaimsError::MissingMetadata));
    // A garbage issuer is a key error, not a panic.
    let garbage = payload.replace(&account.public_key(), "Anot-a-key");
    let module = append_custom_section(
        &actor_module(),
        SECTION_NAME_JWT,
        forge(GOOD_HEADER, &garbage, &account).as_bytes(),
    );
    assert!(matches!(
        validate_actor(&module, now_secs()),
        Err(ClaimsError::BadKey {
            role: KeyRole::Issuer,
            ..
        })
    ));
}

#[test]
fn stored_claims_use_the_otp_string_shape() {
    let signed = sign(&actor_module());
    let claims = validate_actor(&signed.module, now_secs()).unwrap();
    let stored = to_stored_claims(&claims);
    let keys: Vec<&str> = stored.0.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "call_alias",
            "caps",
            "contract_id",
            "iss",
            "name",
            "rev",
            "sub",
            "tags",
            "version"
        ]
    );
    assert_eq!(stored.0["caps"], "wasmcloud:httpserver,wasmcloud:keyvalue");
    assert_eq!(stored.0["tags"], "test,echo");
    assert_eq!(stored.0["rev"], "4");
    assert_eq!(stored.0["version"], "0.3.4");
    assert_eq!(stored.0["contract_id"], "");
    assert_eq!(stored.0["call_alias"], claims.call_alias.clone().unwrap());
    assert_eq!(stored.subject(), Some(signed.subject.public_key().as_str()));
    // What we write, our own reader reads back unchanged.
    let json = serde_json::to_vec(&stored.0).unwrap();
    assert_eq!(StoredClaims::parse(&json).unwrap(), stored);

    // rev missing or 0 → iat; no ver → "".
    for rev in [None, Some(0)] {
        let mut claims = claims.clone();
        claims.rev = rev;
        claims.ver = None;
        let stored = to_stored_claims(&claims);
        assert_eq!(stored.0["rev"], claims.iat_secs.to_string());
        assert_eq!(stored.0["version"], "");
    }
}

#[test]
fn malformed_modules_are_errors() {
    let header = b"\0asm\x01\0\0\0";
    let with = |tail: &[u8]| [header.as_slice(), tail].concat();
    let cases: Vec<(Vec<u8>, ClaimsError)> = vec![
        (b"\0as".to_vec(), ClaimsError::Truncated { offset: 3 }),
        (b"\0asm\x01\0".to_vec(), ClaimsError::Truncated { offset: 6 }),
        (b"\0ASM\x01\0\0\0".to_vec(), ClaimsError::BadMagic),
        (
            b"\0asm\x0d\0\x01\0".to_vec(),
            ClaimsError::UnsupportedVersion {
                version: [0x0d, 0, 1, 0],
            },
        ),
        (with(&[1]), ClaimsError::Truncated { offset: 9 }),
        (with(&[1, 0x80, 0x80]), ClaimsError::Truncated { offset: 9 }),
        (
            with(&[1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            ClaimsError::BadLeb { offset: 9 },
        ),
        (
            with(&[1, 0xff, 0xff, 0xff, 0xff, 0x1f]),
            ClaimsError::BadLeb { offset: 9 },
        ),
        (
            with(&[1, 5, 0, 0]),
            ClaimsError::SectionOverrun {
                offset: 8,
                size_bytes: 5,
                left_bytes: 2,
            },
        ),
        (
            with(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            ClaimsError::SectionOverrun {
                offset: 8,
                size_bytes: u32::MAX,
                left_bytes: 0,
            },
        ),
        (with(&[0, 0]), ClaimsError::BadCustomSectionName { offset: 8 }),
        (with(&[0, 2, 5, b'j']), ClaimsError::BadCustomSectionName { offset: 8 }),
        (
            with(&[0, 3, 2, 0xc3, 0x28]),
            ClaimsError::BadCustomSectionName { offset: 8 },
        ),
        (
            with(&[0, 6, 3, b'j', b'w', b't', 0xff, 0xfe]),
            ClaimsError::TokenNotUtf8,
        ),
    ];
    for (module, expected) in cases {
        let found = extract_jwt(&module).and_then(|_| module_hash(&module));
        assert_eq!(found, Err(expected.clone()), "{module:02x?}");
        match expected {
            // wascap also walks components (an empty one has no claims); no 0.x actor is one.
            ClaimsError::UnsupportedVersion { .. } => {
                assert!(wascap::wasm::extract_claims(&module).unwrap().is_none())
            }
            _ => assert!(
                wascap::wasm::extract_claims(&module).is_err(),
                "wascap takes {module:02x?}"
            ),
        }
    }
    // A bad UTF-8 token only matters to extraction; the hash skips the section.
    let module = with(&[0, 6, 3, b'j', b'w', b't', 0xff, 0xfe]);
    assert_eq!(module_hash(&module).unwrap(), module_hash(header).unwrap());
}

// -----------------------------------------------------------------------------------------
// sign_actor_module
// -----------------------------------------------------------------------------------------

fn echo_spec(now: u64) -> ActorSpec {
    ActorSpec {
        name: "Echo".to_string(),
        caps: vec!["wasmcloud:httpserver".to_string(), "wasmcloud:keyvalue".to_string()],
        call_alias: Some("loadtest/echo".to_string()),
        rev: Some(7),
        ver: Some("1.2.3".to_string()),
        tags: vec!["loadtest".to_string()],
        expires_secs: None,
        not_before_secs: None,
        now_secs: now,
    }
}

#[test]
fn signed_module_is_accepted_by_us_and_by_wascap() {
    let now = now_secs();
    let module = actor_module();
    let account = nkeys::KeyPair::new_account();
    let signed = sign_actor_module(&module, &account, &echo_spec(now)).unwrap();

    let ours = validate_actor(&signed, now).unwrap();
    assert_eq!(ours.issuer, account.public_key());
    assert!(ours.subject.starts_with('M'), "{}", ours.subject);
    assert_eq!(ours.hash, module_hash(&module).unwrap());
    assert_eq!(ours.name.as_deref(), Some("Echo"));
    assert_eq!(ours.caps, ["wasmcloud:httpserver", "wasmcloud:keyvalue"]);
    assert_eq!(ours.tags, ["loadtest"]);
    assert_eq!(ours.call_alias.as_deref(), Some("loadtest/echo"));
    assert_eq!((ours.rev, ours.ver.as_deref()), (Some(7), Some("1.2.3")));
    assert_eq!((ours.iat_secs, ours.exp_secs, ours.nbf_secs), (now, None, None));
    assert_eq!(ours.wascap_revision, Some(WASCAP_REVISION_SIGNED));
    assert!(!ours.prov);
    assert_eq!(ours.jti.len(), JTI_CHARS);
    assert_eq!(extract_jwt(&signed).unwrap().unwrap().1, JwtSection::Current);

    // wascap extracts the same claims (checking the hash itself, revision 3) and finds the
    // signature and times valid.
    let token = wascap::wasm::extract_claims(&signed).unwrap().unwrap();
    let meta = token.claims.metadata.clone().unwrap();
    assert_eq!(meta.module_hash, ours.hash);
    assert_eq!(wascap_hash(&signed), module_hash(&signed).unwrap());
    assert_eq!(token.claims.issuer, ours.issuer);
    assert_eq!(token.claims.subject, ours.subject);
    assert_eq!(token.claims.id, ours.jti);
    assert_eq!(token.claims.issued_at, now);
    assert_eq!(meta.name.as_deref(), Some("Echo"));
    assert_eq!(meta.caps, Some(ours.caps.clone()));
    assert_eq!(meta.tags, Some(ours.tags.clone()));
    assert_eq!(meta.call_alias, ours.call_alias);
    assert_eq!((meta.rev, meta.ver.clone()), (Some(7), Some("1.2.3".to_string())));
    assert!(!meta.provider);
    let validation = wascap::jwt::validate_token::<Actor>(&token.jwt).unwrap();
    assert!(validation.signature_valid);
    assert!(!validation.expired && !validation.cannot_use_yet);
    // wascap writes the header and fields in the same shape we do.
    let header = token.jwt.split('.').next().unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(header).unwrap(), GOOD_HEADER.as_bytes());

    // Each signing is a new actor: a new module key and a new jti.
    let again = validate_actor(&sign_actor_module(&module, &account, &echo_spec(now)).unwrap(), now).unwrap();
    assert_ne!(again.subject, ours.subject);
    assert_ne!(again.jti, ours.jti);
    assert_eq!(again.hash, ours.hash);
}

#[test]
fn module_changed_after_our_signing_is_refused() {
    let now = now_secs();
    let account = nkeys::KeyPair::new_account();
    let signed = sign_actor_module(&actor_module(), &account, &echo_spec(now)).unwrap();
    let at = signed.windows(5).position(|w| w == b"hello").unwrap();
    let mut changed = signed.clone();
    changed[at] = b'j';
    assert!(matches!(
        validate_actor(&changed, now),
        Err(ClaimsError::HashMismatch { .. })
    ));
    // wascap checks the hash at revision 3 and refuses it too.
    assert!(wascap::wasm::extract_claims(&changed).is_err());

    // A section appended after signing changes the hash as well.
    let appended = append_custom_section(&signed, "extra", b"payload");
    assert!(matches!(
        validate_actor(&appended, now),
        Err(ClaimsError::HashMismatch { .. })
    ));
}

#[test]
fn signing_replaces_every_earlier_claims_section() {
    let now = now_secs();
    let module = actor_module();
    // Signed by wascap, then a stray legacy section on top, and a widened section size.
    let earlier = sign(&module).module;
    let earlier = append_custom_section(&earlier, SECTION_NAME_JWT_LEGACY, b"not a token");
    let earlier = widen_first_section_size(&earlier);
    let account = nkeys::KeyPair::new_account();
    let resigned = sign_actor_module(&earlier, &account, &echo_spec(now)).unwrap();

    let claims = validate_actor(&resigned, now).unwrap();
    assert_eq!(claims.issuer, account.public_key());
    assert_eq!(claims.hash, module_hash(&module).unwrap());
    // The output is the minimal re-encoding plus exactly one claims section.
    let jwt_sections = sections(&resigned)
        .unwrap()
        .filter(|s| s.as_ref().unwrap().jwt.is_some())
        .count();
    assert_eq!(jwt_sections, 1);
    let token = token_of(&resigned);
    assert_eq!(
        resigned,
        append_custom_section(&module, SECTION_NAME_JWT, token.as_bytes())
    );
    assert!(wascap::wasm::extract_claims(&resigned).unwrap().is_some());
}

#[test]
fn signed_times_are_honoured_by_both() {
    let now = now_secs();
    let account = nkeys::KeyPair::new_account();
    let module = actor_module();

    let expired = ActorSpec {
        expires_secs: Some(now - 60),
        ..echo_spec(now - 120)
    };
    let signed = sign_actor_module(&module, &account, &expired).unwrap();
    assert!(matches!(validate_actor(&signed, now), Err(ClaimsError::Expired { .. })));
    let token = wascap::wasm::extract_claims(&signed).unwrap().unwrap();
    assert!(wascap::jwt::validate_token::<Actor>(&token.jwt).unwrap().expired);

    let later = ActorSpec {
        not_before_secs: Some(now + 3600),
        expires_secs: Some(now + 7200),
        ..echo_spec(now)
    };
    let signed = sign_actor_module(&module, &account, &later).unwrap();
    assert!(matches!(
        validate_actor(&signed, now),
        Err(ClaimsError::NotYetValid { .. })
    ));
    let token = wascap::wasm::extract_claims(&signed).unwrap().unwrap();
    let validation = wascap::jwt::validate_token::<Actor>(&token.jwt).unwrap();
    assert!(validation.cannot_use_yet && !validation.expired);
    let claims = validate_actor(&signed, now + 3601).unwrap();
    assert_eq!((claims.nbf_secs, claims.exp_secs), (Some(now + 3600), Some(now + 7200)));
}

#[test]
fn signing_refuses_wrong_keys_and_modules() {
    let now = now_secs();
    let module = actor_module();
    let cluster = nkeys::KeyPair::new_cluster();
    assert_eq!(
        sign_actor_module(&module, &cluster, &echo_spec(now)),
        Err(ClaimsError::IssuerNotAccount {
            key: cluster.public_key()
        })
    );
    let public_only = nkeys::KeyPair::from_public_key(&nkeys::KeyPair::new_account().public_key()).unwrap();
    assert!(matches!(
        sign_actor_module(&module, &public_only, &echo_spec(now)),
        Err(ClaimsError::CannotSign { .. })
    ));
    let account = nkeys::KeyPair::new_account();
    assert_eq!(
        sign_actor_module(b"\0ASM\x01\0\0\0", &account, &echo_spec(now)),
        Err(ClaimsError::BadMagic)
    );
    assert!(matches!(
        sign_actor_module(&module[..module.len() - 1], &account, &echo_spec(now)),
        Err(ClaimsError::SectionOverrun { .. })
    ));
    let huge = ActorSpec {
        tags: vec!["t".repeat(TOKEN_BYTES_MAX)],
        ..echo_spec(now)
    };
    assert!(matches!(
        sign_actor_module(&module, &account, &huge),
        Err(ClaimsError::TokenTooLarge { .. })
    ));
}

/// Simple xorshift64*: deterministic, no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn run_all(module: &[u8], now: u64) -> Result<ActorClaims, ClaimsError> {
    let _ = extract_jwt(module);
    let _ = module_hash(module);
    validate_actor(module, now)
}

#[test]
fn truncations_and_byte_flips_never_panic_or_validate() {
    let now = now_secs();
    let signed = sign(&actor_module()).module;
    run_all(&signed, now).unwrap();
    for end in 0..signed.len() {
        assert!(run_all(&signed[..end], now).is_err(), "truncated to {end} bytes");
    }

    let seed = 0x5eed_cafe_f00d_0001;
    let mut rng = XorShift(seed);
    for round in 0..3000 {
        let mut mutated = signed.clone();
        let flips = 1 + rng.below(3);
        for _ in 0..flips {
            let at = rng.below(mutated.len());
            mutated[at] ^= 1 << rng.below(8);
        }
        if mutated != signed {
            assert!(
                run_all(&mutated, now).is_err(),
                "seed {seed:#x} round {round} validated"
            );
        }
    }

    // Random tails after a valid header, including random section ids and sizes.
    for _ in 0..2000 {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        let tail_bytes = rng.below(64);
        module.extend((0..tail_bytes).map(|_| rng.next() as u8));
        let _ = run_all(&module, now);
    }
}
