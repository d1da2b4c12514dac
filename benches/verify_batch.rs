//! Invocation-token signatures: one `verify_strict` per token against `verify_batch` at batch
//! sizes 1, 8, 64 and 256. Throughput is per signature, so criterion's "thrpt" and time/size
//! give the per-signature cost.
//!
//! Run: `cargo bench --bench verify_batch -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::VerifyingKey;
use shardhost::auth::verify_batch::{decode_issuer_key, verify_batch, verify_one, VerifyItem};

const BATCH_SIZES: [usize; 4] = [1, 8, 64, 256];
/// A signed part as long as a real invocation token's header and payload (~560 characters).
const MESSAGE_BYTES: usize = 560;

struct Signed {
    message: Vec<u8>,
    signature: [u8; 64],
}

fn signed(key: &nkeys::KeyPair, count: usize) -> Vec<Signed> {
    (0..count)
        .map(|i| {
            let mut message = vec![b'e'; MESSAGE_BYTES];
            message[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let signature: [u8; 64] = match key.sign(&message).map(<[u8; 64]>::try_from) {
                Ok(Ok(signature)) => signature,
                _ => unreachable!("nkeys signs with a seed"),
            };
            Signed { message, signature }
        })
        .collect()
}

fn items<'a>(signed: &'a [Signed], key: &'a VerifyingKey) -> Vec<VerifyItem<'a>> {
    signed
        .iter()
        .map(|s| VerifyItem {
            message: &s.message,
            signature: s.signature,
            key,
        })
        .collect()
}

fn bench_verify(c: &mut Criterion) {
    let cluster = nkeys::KeyPair::new_cluster();
    let Ok(key) = decode_issuer_key(&cluster.public_key()) else {
        unreachable!("a fresh cluster key decodes")
    };
    let mut group = c.benchmark_group("verify");
    for size in BATCH_SIZES {
        let signed = signed(&cluster, size);
        let items = items(&signed, &key);
        let mut out = vec![false; size];
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("single", size), &items, |b, items| {
            b.iter(|| black_box(items).iter().filter(|item| verify_one(item)).count())
        });
        group.bench_with_input(BenchmarkId::new("batch", size), &items, |b, items| {
            b.iter(|| verify_batch(black_box(items), &mut out))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
