//! The whole shard pipeline per invocation, in-process (criterion): a batch of signed echo
//! invocations as one socket read delivers them → zero-copy decode → one Ed25519 batch
//! verification → anti-forgery and capability checks → warm instance lease → guest call →
//! `InvocationResponse` encoded into the write buffer. Production code
//! ([`shardhost::shard::InProcessShard`]); only the socket is missing. Batches of 1, 8 and 64.
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`; in test mode
//! (`cargo test --benches`) each routine runs once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The host's allocator, so allocation costs are the production ones.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use criterion::{criterion_group, Criterion, Throughput};
use shardhost::auth::antiforgery::{encode_signed_invocation, Outbound};
use shardhost::auth::claims::module_hash;
use shardhost::plane::ShardConfig;
use shardhost::routing::RoutingSnapshot;
use shardhost::runtime::{Runtime, RuntimeLimits};
use shardhost::shard::conn::Inbound;
use shardhost::shard::{inbound, InProcessShard};
use shardhost::wire::invocation::EntityRef;

const ECHO: &str = include_str!("../src/runtime/actors/echo.wat");
/// About the size of a small `HttpRequest`.
const PAYLOAD: &[u8] =
    b"{\"method\":\"GET\",\"path\":\"/echo\",\"headers\":{\"accept\":\"*/*\"},\"body\":\"hello, lattice\"}";
const ACTOR_CAPS: &[&str] = &["wasmcloud:httpserver"];

/// `n` signed invocations of `actor` from an httpserver provider, as NATS messages on `sid`.
fn batch(cluster: &nkeys::KeyPair, actor: &str, sid: u64, n: usize) -> Vec<Inbound> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let host_id = nkeys::KeyPair::new_server().public_key();
    let provider = nkeys::KeyPair::new_service().public_key();
    let origin = EntityRef {
        public_key: &provider,
        link_name: "default",
        contract_id: "wasmcloud:httpserver",
    };
    let target = EntityRef {
        public_key: actor,
        link_name: "",
        contract_id: "",
    };
    let subject = format!("wasmbus.rpc.bench.{actor}");
    (0..n)
        .map(|i| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let op = "HttpServer.HandleRequest";
            let mut out = BytesMut::new();
            let call = Outbound {
                origin,
                target,
                operation: op,
                payload: PAYLOAD,
                chunked: false,
                id: &id,
                host_id: &host_id,
                trace_context: &[],
            };
            encode_signed_invocation(&mut out, cluster, &call, now).unwrap();
            inbound(sid, &subject, Some(&format!("_INBOX.bench.{i}")), out.freeze())
        })
        .collect()
}

/// The executor, the in-process shard serving the echo, and what invocations of it need.
struct Setup {
    ex: glommio::LocalExecutor,
    shard: RefCell<Option<InProcessShard>>,
    sid: u64,
    cluster: nkeys::KeyPair,
    actor: String,
}

fn setup() -> Setup {
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .unwrap();
    let limits = RuntimeLimits {
        instance_slots_total: 256,
        ..RuntimeLimits::default()
    };
    let runtime = Runtime::new(&limits).unwrap();
    let wasm = wat::parse_str(ECHO).unwrap();
    let compiled = runtime.compile(&wasm, &module_hash(&wasm).unwrap()).unwrap();
    let cluster = nkeys::KeyPair::new_cluster();
    let actor = nkeys::KeyPair::new_module().public_key();
    let config = ShardConfig {
        cluster_key: Arc::new(nkeys::KeyPair::from_seed(&cluster.seed().unwrap()).unwrap()),
        ..ShardConfig::offline()
    };
    let shard = RefCell::new(None::<InProcessShard>);
    let sid = ex.run(async {
        let pipeline = InProcessShard::new(config, runtime.clone());
        let caps: Vec<String> = ACTOR_CAPS.iter().map(|c| c.to_string()).collect();
        let sid = pipeline.add_actor(&actor, compiled, caps.clone(), 64).await.unwrap();
        let mut routing = RoutingSnapshot {
            version: 1,
            ..Default::default()
        };
        routing.cluster_issuers.insert(cluster.public_key());
        routing.caps.insert(actor.clone(), caps.into_iter().collect());
        pipeline.set_routing(routing);
        shard.replace(Some(pipeline));
        sid
    });
    Setup {
        ex,
        shard,
        sid,
        cluster,
        actor,
    }
}

fn bench_pipeline(c: &mut Criterion) {
    let Setup {
        ex,
        shard,
        sid,
        cluster,
        actor,
    } = setup();
    let mut group = c.benchmark_group("pipeline");
    for n in [1usize, 8, 64] {
        let messages = batch(&cluster, &actor, sid, n);
        // One run to check the replies are answers, not errors.
        let out = ex.run(async {
            let mut pipeline = shard.take().unwrap();
            let out = pipeline.run_batch(&messages).await;
            shard.replace(Some(pipeline));
            out
        });
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("PUB _INBOX.bench.").count(), n, "one reply per invocation");
        assert!(!text.contains("error"), "replies are results: {text}");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("echo_batch/{n}"), |b| {
            b.iter_custom(|iters| {
                ex.run(async {
                    let mut pipeline = shard.take().unwrap();
                    let start = Instant::now();
                    let mut bytes = 0;
                    for _ in 0..iters {
                        bytes += pipeline.run_batch(&messages).await.len();
                    }
                    let elapsed = start.elapsed();
                    shard.replace(Some(pipeline));
                    assert!(bytes > 0);
                    elapsed
                })
            })
        });
    }
    group.finish();
    let pipeline = shard.take().unwrap();
    let stats = pipeline.stats();
    assert_eq!(
        stats.rejected_auth + stats.rejected_decode + stats.guest_errors,
        0,
        "{stats:?}"
    );
    ex.run(async { drop(pipeline) });
}

criterion_group!(benches, bench_pipeline);

/// Batches of 64 for [`counted`] to run, from `SHARDHOST_PIPELINE_BATCHES`.
const COUNTED_BATCHES_ENV: &str = "SHARDHOST_PIPELINE_BATCHES";
const COUNTED_BATCH: usize = 64;

/// Exactly `batches` batches of 64 through the pipeline, no criterion: what
/// `perf/callgrind.sh` runs under valgrind twice (two batch counts) so the difference of the
/// instruction counts, over the difference of invocations, is the cost of one invocation
/// without the set-up.
fn counted(batches: usize) {
    let bench = setup();
    let messages = batch(&bench.cluster, &bench.actor, bench.sid, COUNTED_BATCH);
    let bytes = bench.ex.run(async {
        let mut pipeline = bench.shard.take().unwrap();
        let mut bytes = 0;
        for _ in 0..batches {
            bytes += pipeline.run_batch(&messages).await.len();
        }
        let stats = pipeline.stats();
        assert_eq!(
            stats.rejected_auth + stats.rejected_decode + stats.guest_errors,
            0,
            "{stats:?}"
        );
        drop(pipeline);
        bytes
    });
    println!("{} invocations, {bytes} reply bytes", batches * COUNTED_BATCH);
}

fn main() {
    match std::env::var(COUNTED_BATCHES_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(batches) => counted(batches),
        None => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
