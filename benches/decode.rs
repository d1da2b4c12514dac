//! `decode_invocation` (borrowed, zero-copy) against an owned rmp-serde decode of the same
//! ~2 KB invocation (600-character token, 1 KiB payload), shaped like wasmbus-rpc's struct.
//!
//! Run: `cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3`.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use shardhost::auth::antiforgery::{decode_invocation_token, sign_invocation};
use shardhost::wire::invocation::{decode_invocation, encode_invocation, EntityRef, InvocationFields};

/// `serde_bytes` without the dependency: bin in and out.
mod bin {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    struct BytesVisitor;

    impl serde::de::Visitor<'_> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[derive(Serialize, Deserialize)]
struct OwnedEntity {
    public_key: String,
    link_name: String,
    contract_id: String,
}

/// wasmbus-rpc's `Invocation` shape, decoded into owned strings (what the 0.82 host does).
#[derive(Serialize, Deserialize)]
struct OwnedInvocation {
    origin: OwnedEntity,
    target: OwnedEntity,
    operation: String,
    #[serde(with = "bin")]
    msg: Vec<u8>,
    id: String,
    encoded_claims: String,
    host_id: String,
    content_length: Option<u64>,
    #[serde(rename = "traceContext", default)]
    trace_context: HashMap<String, String>,
}

fn sample() -> Vec<u8> {
    let token: String = (0..600).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
    let msg = vec![0x5a; 1024];
    let host_id = format!("N{}", "H".repeat(55));
    let fields = InvocationFields {
        origin: EntityRef {
            public_key: "VAXQ4WBLLKHZ7Z6VQXSJ2GA3SW5Y6M5MO3Q4RV7HZ2MWVJ5GHYNBJOYA",
            link_name: "default",
            contract_id: "wasmcloud:httpserver",
        },
        target: EntityRef {
            public_key: "MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5",
            link_name: "",
            contract_id: "",
        },
        operation: "HttpServer.HandleRequest",
        msg: &msg,
        id: "5d4d6ba3b1c44a5e8e1b7f3b3cf7e6b1",
        encoded_claims: &token,
        host_id: &host_id,
        content_length: msg.len() as u64,
        trace_context: &[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    };
    let mut out = Vec::new();
    encode_invocation(&mut out, &fields);
    out
}

fn bench_decode(c: &mut Criterion) {
    let bytes = sample();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(format!("borrowed_decode_invocation_{}B", bytes.len()), |b| {
        b.iter(|| decode_invocation(black_box(&bytes)).map(|inv| inv.msg.len()))
    });
    group.bench_function(format!("owned_rmp_serde_{}B", bytes.len()), |b| {
        b.iter(|| rmp_serde::from_slice::<OwnedInvocation>(black_box(&bytes)).map(|inv| inv.msg.len()))
    });
    group.finish();
}

/// Decoding one real invocation token (before its signature is checked in the batch).
fn bench_token(c: &mut Criterion) {
    let cluster = nkeys::KeyPair::new_cluster();
    let origin = EntityRef {
        public_key: "VAXQ4WBLLKHZ7Z6VQXSJ2GA3SW5Y6M5MO3Q4RV7HZ2MWVJ5GHYNBJOYA",
        link_name: "default",
        contract_id: "wasmcloud:httpserver",
    };
    let target = EntityRef {
        public_key: "MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5",
        link_name: "",
        contract_id: "",
    };
    let token = sign_invocation(
        &cluster,
        &origin,
        &target,
        "HttpServer.HandleRequest",
        b"{}",
        "id-1",
        1_700_000_000,
    )
    .unwrap();
    c.bench_function("decode_invocation_token", |b| {
        b.iter(|| decode_invocation_token(black_box(&token)).unwrap().iat_secs)
    });
}

criterion_group!(benches, bench_decode, bench_token);
criterion_main!(benches);
