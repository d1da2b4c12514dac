//! Structure-aware: random sequences of NATS messages fed to a live shard pipeline in-process
//! (`InProcessShard`: decode, batched Ed25519 verification, anti-forgery and capability
//! checks, warm instance leases, the guest call, reply encoding — only the socket is missing),
//! with an echo actor and a trapping actor subscribed. Asserts the shard's promise: every
//! message with a reply subject gets exactly one reply, and nothing else is written.
//!
//! The input is a program, two bytes (or more) per message:
//! - `op & 0x07` what to send: a valid signed invocation (0, 1, 7), one with a byte flipped (2),
//!   a truncated one (3), raw bytes from the input (4), a valid one on a sid nobody subscribed
//!   (5), a valid call of the trapping actor (6);
//! - `op & 0x80`: no reply subject; `op & 0x40`: the batch ends after this message (one socket
//!   read); the next byte picks which pre-signed invocation to start from.
//!
//! Build and run (the host feature, without a sanitizer: wasmtime's reservations and
//! glommio's io_uring under ASan are not what production runs):
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --features live live_pipeline
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardhost::auth::antiforgery::{encode_signed_invocation, Outbound};
use shardhost::auth::claims::module_hash;
use shardhost::plane::ShardConfig;
use shardhost::routing::RoutingSnapshot;
use shardhost::runtime::{Runtime, RuntimeLimits};
use shardhost::shard::conn::Inbound;
use shardhost::shard::{inbound, InProcessShard};
use shardhost::wire::invocation::EntityRef;

const ECHO: &str = include_str!("../../src/runtime/actors/echo.wat");
const TRAP: &str = include_str!("../../src/runtime/actors/trap.wat");
/// Messages per input at most (across its batches).
const MESSAGES_MAX: usize = 64;
/// Pre-signed invocations per actor to start from.
const SIGNED_PER_ACTOR: usize = 8;
/// Largest raw message taken from the input.
const RAW_BYTES_MAX: usize = 512;
const CAPS: &[&str] = &["wasmcloud:httpserver"];

struct Live {
    ex: glommio::LocalExecutor,
    shard: RefCell<Option<InProcessShard>>,
    echo: (u64, String, Vec<Bytes>),
    trap: (u64, String, Vec<Bytes>),
}

thread_local! {
    static LIVE: Live = setup();
}

/// `n` invocations of `actor` from an httpserver provider, signed with `cluster`.
fn signed(cluster: &nkeys::KeyPair, actor: &str, n: usize) -> Vec<Bytes> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let host_id = nkeys::KeyPair::new_server().public_key();
    let provider = nkeys::KeyPair::new_service().public_key();
    (0..n)
        .map(|i| {
            let id = format!("fuzz-{i}");
            let payload = vec![b'x'; i * 37];
            let call = Outbound {
                origin: EntityRef {
                    public_key: &provider,
                    link_name: "default",
                    contract_id: "wasmcloud:httpserver",
                },
                target: EntityRef {
                    public_key: actor,
                    link_name: "",
                    contract_id: "",
                },
                operation: "HttpServer.HandleRequest",
                payload: &payload,
                chunked: false,
                id: &id,
                host_id: &host_id,
            };
            let mut out = BytesMut::new();
            encode_signed_invocation(&mut out, cluster, &call, now).expect("sign");
            out.freeze()
        })
        .collect()
}

fn setup() -> Live {
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("executor");
    let limits = RuntimeLimits {
        instance_slots_total: 128,
        ..RuntimeLimits::default()
    };
    let runtime = Runtime::new(&limits).expect("runtime");
    let cluster = nkeys::KeyPair::new_cluster();
    let config = ShardConfig {
        cluster_key: Arc::new(nkeys::KeyPair::from_seed(&cluster.seed().expect("seed")).expect("key")),
        ..ShardConfig::offline()
    };
    let caps: Vec<String> = CAPS.iter().map(|c| c.to_string()).collect();
    let echo_key = nkeys::KeyPair::new_module().public_key();
    let trap_key = nkeys::KeyPair::new_module().public_key();
    let shard = RefCell::new(None);
    let (echo_sid, trap_sid) = ex.run(async {
        let pipeline = InProcessShard::new(config, runtime.clone());
        let mut sids = Vec::new();
        for (key, wat) in [(&echo_key, ECHO), (&trap_key, TRAP)] {
            let wasm = wat::parse_str(wat).expect("wat");
            let compiled = runtime.compile(&wasm, &module_hash(&wasm).expect("hash")).expect("compile");
            sids.push(pipeline.add_actor(key, compiled, caps.clone(), 4).await.expect("actor"));
        }
        let mut routing = RoutingSnapshot {
            version: 1,
            ..Default::default()
        };
        routing.cluster_issuers.insert(cluster.public_key());
        for key in [&echo_key, &trap_key] {
            routing.caps.insert(key.clone(), caps.iter().cloned().collect());
        }
        pipeline.set_routing(routing);
        shard.replace(Some(pipeline));
        (sids[0], sids[1])
    });
    let subject = |key: &str| format!("wasmbus.rpc.default.{key}");
    Live {
        ex,
        shard,
        echo: (echo_sid, subject(&echo_key), signed(&cluster, &echo_key, SIGNED_PER_ACTOR)),
        trap: (trap_sid, subject(&trap_key), signed(&cluster, &trap_key, SIGNED_PER_ACTOR)),
    }
}

/// The subjects of the `PUB` frames in `out` (what the shard wrote), with their counts.
fn published(out: &[u8]) -> HashMap<String, usize> {
    let mut subjects = HashMap::new();
    let mut rest = out;
    while !rest.is_empty() {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("a complete control line");
        let line = std::str::from_utf8(&rest[..line_end]).expect("an ASCII control line");
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "PUB", "the shard writes only PUB frames here: {line}");
        let len: usize = parts.last().and_then(|l| l.parse().ok()).expect("a payload length");
        *subjects.entry(parts[1].to_string()).or_insert(0) += 1;
        let next = line_end + 2 + len + 2;
        assert!(next <= rest.len(), "a complete payload");
        rest = &rest[next..];
    }
    subjects
}

fn run(live: &Live, data: &[u8]) {
    let mut batches: Vec<Vec<Inbound>> = vec![Vec::new()];
    let mut replies = Vec::new();
    let mut input = data.iter().copied();
    let mut sent = 0;
    while let Some(op) = input.next() {
        if sent == MESSAGES_MAX {
            break;
        }
        let pick = usize::from(input.next().unwrap_or(0));
        let (mut sid, subject, pool) = if op & 0x07 == 6 { &live.trap } else { &live.echo };
        let base = &pool[pick % pool.len()];
        let payload = match op & 0x07 {
            2 => {
                let mut bytes = base.to_vec();
                let at = usize::from(input.next().unwrap_or(0)) * 31 % bytes.len();
                bytes[at] ^= input.next().unwrap_or(1).max(1);
                Bytes::from(bytes)
            }
            3 => base.slice(..pick * 13 % base.len()),
            4 => {
                let len = usize::from(input.next().unwrap_or(0)).min(RAW_BYTES_MAX);
                Bytes::from(input.by_ref().take(len).collect::<Vec<u8>>())
            }
            5 => {
                sid += 1_000;
                base.clone()
            }
            _ => base.clone(),
        };
        let reply = (op & 0x80 == 0).then(|| format!("_INBOX.fuzz.{sent}"));
        let batch = batches.last_mut().expect("a batch");
        batch.push(inbound(sid, subject, reply.as_deref(), payload));
        replies.extend(reply);
        sent += 1;
        if op & 0x40 != 0 {
            batches.push(Vec::new());
        }
    }
    let out = live.ex.run(async {
        let mut shard = live.shard.borrow_mut().take().expect("the pipeline");
        let mut out = Vec::new();
        for batch in batches.iter().filter(|b| !b.is_empty()) {
            out.extend(shard.run_batch(batch).await);
        }
        live.shard.replace(Some(shard));
        out
    });
    let published = published(&out);
    for reply in &replies {
        assert_eq!(published.get(reply), Some(&1), "exactly one reply on {reply}");
    }
    assert_eq!(published.len(), replies.len(), "no reply to a message without a reply subject");
}

fuzz_target!(|data: &[u8]| {
    LIVE.with(|live| run(live, data));
});
