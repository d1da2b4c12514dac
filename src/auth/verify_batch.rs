//! Ed25519 verification of the invocation tokens of one batch with a single batch equation,
//! and the cache of decoded issuer keys it needs.
//!
//! Plane: pure code on the shards' hot path, once per batch (the NATS frames of one socket
//! read). No I/O, no async, no clock.
//!
//! Must never: report a bad signature as good, let a forged item hide inside a batch (a failed
//! batch is re-checked item by item, so exactly the bad items are marked), or grow without bound
//! (the key cache is capped).
//!
//! Strictness: a single item and every item of a failed batch are checked with
//! [`ed25519_dalek::VerifyingKey::verify_strict`] (no weak key, no small-order `R`, canonical
//! `s`); weak keys are also refused when a key enters the cache. A passing batch uses dalek's
//! cofactorless equation, which can additionally accept a signature the key holder built with a
//! torsioned or non-canonical `R`. That changes nothing for authentication: with a non-weak key,
//! only the holder of the issuer's secret key can satisfy the equation for the signed bytes.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};

use super::antiforgery::AuthError;

/// Most issuer keys kept decoded. Issuers are the lattice's trusted cluster keys (usually one
/// or a handful); callers insert only issuers that passed the trust check, so the cap only
/// bounds memory if that list is huge. When full, the cache is emptied and refilled.
pub const ISSUER_KEYS_MAX: usize = 64;

/// Most items in one [`verify_batch`] call: a batch is at most one socket read of invocations.
pub const VERIFY_BATCH_ITEMS_MAX: usize = 4096;

/// Decode a public nkey (any type; trust is decided by the issuer list, not the prefix) into a
/// verifying key. Weak (small-order) keys are refused.
pub fn decode_issuer_key(issuer: &str) -> Result<VerifyingKey, AuthError> {
    let (_prefix, key_bytes) = nkeys::from_public_key(issuer).map_err(|_| AuthError::BadIssuerKey)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| AuthError::BadIssuerKey)?;
    if key.is_weak() {
        return Err(AuthError::BadIssuerKey);
    }
    Ok(key)
}

/// Issuer public key (`C…`) → decoded [`VerifyingKey`], each decoded once. A shard owns one.
#[derive(Debug, Default)]
pub struct IssuerKeyCache {
    keys: HashMap<String, VerifyingKey>,
}

impl IssuerKeyCache {
    pub fn new() -> Self {
        IssuerKeyCache {
            keys: HashMap::with_capacity(ISSUER_KEYS_MAX),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The decoded key, if `issuer` was inserted.
    pub fn get(&self, issuer: &str) -> Option<&VerifyingKey> {
        self.keys.get(issuer)
    }

    /// The decoded key, decoding and caching it on first use. Call it only for issuers that
    /// are trusted (so an attacker cannot churn the cache with random issuers). Allocates only
    /// on a miss.
    pub fn insert(&mut self, issuer: &str) -> Result<&VerifyingKey, AuthError> {
        if !self.keys.contains_key(issuer) {
            let key = decode_issuer_key(issuer)?;
            if self.keys.len() >= ISSUER_KEYS_MAX {
                self.keys.clear();
            }
            self.keys.insert(issuer.to_string(), key);
        }
        debug_assert!(self.keys.len() <= ISSUER_KEYS_MAX);
        self.keys.get(issuer).ok_or(AuthError::BadIssuerKey)
    }
}

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct VerifyItem<'a> {
    /// The signed bytes (for a JWT: `b64(header).b64(payload)`).
    pub message: &'a [u8],
    pub signature: [u8; 64],
    pub key: &'a VerifyingKey,
}

/// Verify one item with the strict rules.
pub fn verify_one(item: &VerifyItem<'_>) -> bool {
    item.key
        .verify_strict(item.message, &Signature::from_bytes(&item.signature))
        .is_ok()
}

/// Verify `items`, writing `out[i] = true` iff item `i` is valid. One batch equation for the
/// whole slice (one item: a single verification, which is cheaper); if the batch fails, every
/// item is verified alone so exactly the bad ones are marked. Returns the number of failures.
///
/// Panics (our bug, not input) if `out.len() != items.len()` or the batch exceeds
/// [`VERIFY_BATCH_ITEMS_MAX`].
pub fn verify_batch(items: &[VerifyItem<'_>], out: &mut [bool]) -> usize {
    assert!(out.len() == items.len(), "one verify result per batch item");
    assert!(
        items.len() <= VERIFY_BATCH_ITEMS_MAX,
        "verify batch larger than the limit"
    );
    match items {
        [] => return 0,
        [item] => {
            out[0] = verify_one(item);
            return usize::from(!out[0]);
        }
        _ => {}
    }
    // dalek takes parallel slices; it allocates its own scratch per call as well.
    let messages: Vec<&[u8]> = items.iter().map(|item| item.message).collect();
    let signatures: Vec<Signature> = items
        .iter()
        .map(|item| Signature::from_bytes(&item.signature))
        .collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|item| *item.key).collect();
    // Passes only if every item satisfies the cofactorless equation. That can include a
    // signature the issuer itself built with a torsioned or non-canonical `R`, which
    // `verify_strict` would refuse — harmless (see the module doc), and not worth a per-item
    // point decompression on the hot path.
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        out.fill(true);
        return 0;
    }
    fallback(items, out)
}

/// Item-by-item verification after a failed batch.
fn fallback(items: &[VerifyItem<'_>], out: &mut [bool]) -> usize {
    let mut failed_count = 0;
    for (item, ok) in items.iter().zip(out.iter_mut()) {
        *ok = verify_one(item);
        failed_count += usize::from(!*ok);
    }
    failed_count
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    struct Signed {
        message: Vec<u8>,
        signature: [u8; 64],
        issuer: String,
    }

    fn sign(key: &nkeys::KeyPair, message: &[u8]) -> Signed {
        let signature: [u8; 64] = key.sign(message).unwrap().try_into().unwrap();
        Signed {
            message: message.to_vec(),
            signature,
            issuer: key.public_key(),
        }
    }

    fn run(signed: &[Signed], cache: &mut IssuerKeyCache) -> Vec<bool> {
        for s in signed {
            cache.insert(&s.issuer).unwrap();
        }
        let items: Vec<VerifyItem<'_>> = signed
            .iter()
            .map(|s| VerifyItem {
                message: &s.message,
                signature: s.signature,
                key: cache.get(&s.issuer).unwrap(),
            })
            .collect();
        let mut out = vec![false; items.len()];
        let failed = verify_batch(&items, &mut out);
        assert_eq!(failed, out.iter().filter(|ok| !**ok).count());
        out
    }

    #[test]
    fn all_valid_batches_pass() {
        let keys = [nkeys::KeyPair::new_cluster(), nkeys::KeyPair::new_cluster()];
        let mut cache = IssuerKeyCache::new();
        for count in [0usize, 1, 2, 16, 64] {
            let signed: Vec<Signed> = (0..count)
                .map(|i| sign(&keys[i % 2], format!("token {i}").as_bytes()))
                .collect();
            assert!(run(&signed, &mut cache).iter().all(|ok| *ok), "{count}");
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn one_forgery_among_16_valid_is_exactly_that_item() {
        let cluster = nkeys::KeyPair::new_cluster();
        let attacker = nkeys::KeyPair::new_cluster();
        let mut cache = IssuerKeyCache::new();
        for (forged_at, how) in [(0usize, "wrong key"), (7, "tampered"), (16, "bit flip")] {
            let mut signed: Vec<Signed> = (0..17)
                .map(|i| sign(&cluster, format!("token {i}").as_bytes()))
                .collect();
            match how {
                // Signed by another key but claiming the trusted issuer.
                "wrong key" => signed[forged_at].signature = sign(&attacker, &signed[forged_at].message).signature,
                "tampered" => signed[forged_at].message.push(b'!'),
                _ => signed[forged_at].signature[40] ^= 1,
            }
            let out = run(&signed, &mut cache);
            for (index, ok) in out.iter().enumerate() {
                assert_eq!(*ok, index != forged_at, "{how}: item {index}");
            }
        }
    }

    #[test]
    fn single_item_rejects_wrong_key_and_tampering() {
        let cluster = nkeys::KeyPair::new_cluster();
        let mut cache = IssuerKeyCache::new();
        let mut s = sign(&cluster, b"payload");
        assert_eq!(run(std::slice::from_ref(&s), &mut cache), [true]);
        s.message[0] ^= 1;
        assert_eq!(run(std::slice::from_ref(&s), &mut cache), [false]);
        let mut s = sign(&nkeys::KeyPair::new_cluster(), b"payload");
        s.issuer = cluster.public_key();
        assert_eq!(run(std::slice::from_ref(&s), &mut cache), [false]);
    }

    #[test]
    fn small_order_r_is_refused() {
        // The identity point as R with s = 0: fails the batch, then verify_strict refuses it.
        let cluster = nkeys::KeyPair::new_cluster();
        let mut cache = IssuerKeyCache::new();
        let mut signed: Vec<Signed> = (0..4).map(|i| sign(&cluster, &[i])).collect();
        let mut identity = [0u8; 64];
        identity[0] = 1;
        signed[2].signature = identity;
        let out = run(&signed, &mut cache);
        assert_eq!(out, [true, true, false, true]);
    }

    #[test]
    fn issuer_cache_decodes_once_is_bounded_and_refuses_bad_keys() {
        let mut cache = IssuerKeyCache::new();
        assert_eq!(cache.insert("not a key").err(), Some(AuthError::BadIssuerKey));
        assert_eq!(cache.insert("").err(), Some(AuthError::BadIssuerKey));
        let key = nkeys::KeyPair::new_cluster();
        let first = *cache.insert(&key.public_key()).unwrap();
        assert_eq!(*cache.insert(&key.public_key()).unwrap(), first);
        assert_eq!(cache.len(), 1);
        for _ in 0..ISSUER_KEYS_MAX + 5 {
            cache.insert(&nkeys::KeyPair::new_cluster().public_key()).unwrap();
            assert!(cache.len() <= ISSUER_KEYS_MAX);
        }
        // The weak-key test the cache applies (nkeys cannot encode an arbitrary public point,
        // so check the predicate on the identity point directly).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(VerifyingKey::from_bytes(&identity).unwrap().is_weak());
    }

    #[test]
    #[should_panic(expected = "one verify result per batch item")]
    fn result_slice_must_match_the_batch() {
        let mut out = [false; 2];
        verify_batch(&[], &mut out);
    }

    /// The project builds curve25519-dalek 5 with its AVX-512 IFMA backend (`.cargo/config.toml`;
    /// chosen at run time, AVX2 or serial where the CPU lacks IFMA). Its answers must equal those
    /// of an implementation that never takes that path: nkeys' own verification, on
    /// ed25519-dalek 2 / curve25519-dalek 4 (AVX2 or serial only). Valid, tampered-message,
    /// tampered-signature and wrong-key items, in batches of every size up to 64 and alone.
    #[test]
    fn the_ifma_backend_agrees_with_an_avx2_serial_implementation() {
        // The feature probe exists on x86 only; elsewhere dalek runs its serial backend.
        #[cfg(target_arch = "x86_64")]
        eprintln!(
            "avx512ifma on this CPU: {}",
            std::arch::is_x86_feature_detected!("avx512ifma") && std::arch::is_x86_feature_detected!("avx512vl")
        );
        let keys: Vec<nkeys::KeyPair> = (0..4).map(|_| nkeys::KeyPair::new_cluster()).collect();
        let mut cache = IssuerKeyCache::new();
        let mut rng_state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state
        };
        for count in [1usize, 2, 3, 7, 8, 31, 64] {
            let mut signed: Vec<Signed> = (0..count)
                .map(|i| sign(&keys[i % keys.len()], format!("token {count}/{i}").as_bytes()))
                .collect();
            for item in signed.iter_mut() {
                match next() % 5 {
                    0 => item.message.push(b'!'),
                    1 => item.signature[(next() % 32) as usize] ^= 1 << (next() % 8),
                    2 => item.issuer = keys[(next() % 4) as usize].public_key(),
                    _ => {}
                }
            }
            let ours = run(&signed, &mut cache);
            for (i, item) in signed.iter().enumerate() {
                let reference = nkeys::KeyPair::from_public_key(&item.issuer)
                    .unwrap()
                    .verify(&item.message, &item.signature)
                    .is_ok();
                assert_eq!(ours[i], reference, "batch of {count}, item {i}");
                let key = cache.get(&item.issuer).unwrap();
                let alone = VerifyItem {
                    message: &item.message,
                    signature: item.signature,
                    key,
                };
                assert_eq!(verify_one(&alone), reference, "alone: batch of {count}, item {i}");
            }
        }
    }
}
