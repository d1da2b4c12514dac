//! Soak (issue 10): a mixed load for `$SHARDHOST_SOAK_SECS` (60 s by default, as in CI; 1800
//! for a release check). Echo at 64 and at 1 in flight and actor to actor through the included
//! generator, 1.2 MB payloads through the object store, and an actor scaled and updated every
//! few seconds while a client calls it. Verdict: zero failures anywhere, every invocation the
//! host received answered, and RSS and open file descriptors flat after warm-up (the slopes
//! are printed and bounded).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::data_path::{object_store, read_object};
use crate::faults::every_received_invocation_answered;
use crate::harness::harness_actor;
use crate::support::harness::{assert_all_ok, LoadRun};
use crate::support::rpc::{invocation, lab_with, reloadable_key, Entity};
use crate::support::{
    assert_accepted, echo_actor_wat, free_port, request_json, signed_echo, signed_wat, vm_rss_bytes, ActorSpec,
};

/// Default length of the soak.
const SOAK_SECS_DEFAULT: f64 = 60.0;
/// Share of the run before the slopes are measured (pools filling, caches warming).
const WARMUP_SHARE: f64 = 0.3;
/// How often RSS and descriptors are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How often the managed actor is scaled or updated.
const OPS_EVERY: Duration = Duration::from_secs(3);
/// Most RSS growth per minute after warm-up (a leak of one allocation per invocation at these
/// rates is far above it).
const RSS_SLOPE_MAX_BYTES_PER_MIN: f64 = 8.0 * 1024.0 * 1024.0;
/// Most descriptor growth per minute after warm-up.
const FD_SLOPE_MAX_PER_MIN: f64 = 2.0;
/// Bytes of each large payload (past the 900 KiB chunking threshold).
const LARGE_BYTES: usize = 1_200_000;

fn soak_secs() -> f64 {
    std::env::var("SHARDHOST_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SOAK_SECS_DEFAULT)
}

/// (seconds since start, RSS bytes, open descriptors) of `pid`.
fn sample(pid: u32, start: Instant) -> (f64, f64, f64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("host fds").count();
    (start.elapsed().as_secs_f64(), vm_rss_bytes(pid) as f64, fds as f64)
}

/// Least-squares slope of `y` over `x`, per minute.
fn slope_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let var: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let cov: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

#[tokio::test]
async fn a_mixed_soak_fails_nothing_and_holds_memory_and_descriptors_flat() {
    let seconds = soak_secs();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut lab = lab_with("soak", &[("--metrics-addr", &metrics)]).await;
    let echo = harness_actor(&lab, "loadtest-echo", Some("loadtest/echo")).await;
    let caller = harness_actor(&lab, "loadtest-caller", None).await;
    let big = signed_wat(
        &echo_actor_wat(3).replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 40)"),
        ActorSpec::default(),
    );
    lab.start("big.wasm", &big, 1).await;
    let seed = reloadable_key(wascap::prelude::KeyPair::new_module)
        .seed()
        .expect("seed");
    let versions: Vec<_> = (1..=2)
        .map(|rev| {
            signed_echo(ActorSpec {
                marker: rev as u32,
                rev,
                subject: Some(wascap::prelude::KeyPair::from_seed(&seed).expect("seed")),
                ..Default::default()
            })
        })
        .collect();
    lab.start("managed-1.wasm", &versions[0], 2).await;
    let refs: Vec<String> = (1..=2)
        .map(|rev| {
            let path = lab.dir.path().join(format!("managed-{rev}.wasm"));
            std::fs::write(&path, &versions[rev - 1].bytes).expect("write version");
            format!("file://{}", path.display())
        })
        .collect();
    let managed = versions[0].key.clone();
    let pid = lab.host.pid();
    let lab = Arc::new(lab);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    let generator = |actor: &str, operation: &str, in_flight: u32, name: &str| {
        LoadRun {
            actor,
            operation,
            in_flight,
            seconds,
            timeout_ms: 5_000,
        }
        .spawn(&lab, &lab.dir.path().join(format!("{name}.json")))
    };
    let echo_64 = generator(&echo, "HttpServer.HandleRequest", 64, "echo64");
    let echo_1 = generator(&echo, "HttpServer.HandleRequest", 1, "echo1");
    let a2a = generator(&caller, "Wrap.HandleRequest", 8, "a2a");

    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(sample(pid, start));
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        })
    };

    // 1.2 MB round trips through the object store, one after another.
    let large_done = Arc::new(AtomicU64::new(0));
    let large = {
        let (lab, stop, done, key) = (lab.clone(), stop.clone(), large_done.clone(), big.key.clone());
        tokio::spawn(async move {
            let store = object_store(&lab.nc, &lab.host.lattice).await;
            let payload: Vec<u8> = (0..LARGE_BYTES as u32).map(|i| (i % 251) as u8).collect();
            while !stop.load(Ordering::Relaxed) {
                let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
                let (id, bytes) = invocation(&lab.cluster, origin, Entity::actor(&key), "Big.Echo", &[], &payload);
                store
                    .put(id.as_str(), &mut payload.as_slice())
                    .await
                    .expect("put request object");
                let reply = lab.send(&lab.subject(&key), bytes).await;
                let response = shardhost::wire::response::decode_response(&reply).expect("response");
                assert_eq!(response.error, None, "large payload");
                assert!(
                    read_object(&store, &format!("{id}-r")).await == payload,
                    "large round trip"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // A client of the managed actor, which is scaled and updated meanwhile.
    let managed_calls = {
        let (lab, stop, key) = (lab.clone(), stop.clone(), managed.clone());
        tokio::spawn(async move {
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("m{ok}").into_bytes();
                let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
                let (id, bytes) = invocation(&lab.cluster, origin, Entity::actor(&key), "X.Y", &payload, &payload);
                let reply = lab.nc.request(lab.subject(&key), bytes.into()).await;
                let reply = reply
                    .map_err(|e| e.to_string())
                    .and_then(|r| crate::support::rpc::outcome(&r.payload, &id));
                assert_eq!(
                    reply.as_deref(),
                    Ok(payload.as_slice()),
                    "the managed actor answers across scale and upd ({:?} into the soak)",
                    start.elapsed()
                );
                ok += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ok
        })
    };
    let mut ops = 0u32;
    let mut current = 0usize;
    while start.elapsed().as_secs_f64() < seconds - OPS_EVERY.as_secs_f64() {
        tokio::time::sleep(OPS_EVERY).await;
        let ack = if ops.is_multiple_of(2) {
            current = 1 - current;
            let body = json!({ "actor_id": managed, "new_actor_ref": refs[current], "host_id": lab.host.id });
            request_json(&lab.nc, &lab.host.cmd("upd"), body.to_string().as_bytes()).await
        } else {
            let count = if ops % 4 == 1 { 4 } else { 2 };
            let body =
                json!({ "actor_id": managed, "actor_ref": refs[current], "count": count, "host_id": lab.host.id });
            request_json(&lab.nc, &lab.host.cmd("scale"), body.to_string().as_bytes()).await
        };
        assert_accepted(&ack, &format!("operation {ops}"));
        ops += 1;
    }

    let reports = [
        ("echo at 64", echo_64.report().await),
        ("echo at 1", echo_1.report().await),
        ("actor to actor", a2a.report().await),
    ];
    stop.store(true, Ordering::Relaxed);
    large.await.expect("large payloads");
    let managed_ok = managed_calls.await.expect("managed calls");
    let samples = sampler.join().expect("sampler");

    for (what, report) in &reports {
        assert_all_ok(report, what);
        eprintln!("soak {what}: {}", report["counts"]);
    }
    let measured: Vec<_> = samples.iter().filter(|s| s.0 >= seconds * WARMUP_SHARE).collect();
    let rss_slope = slope_per_min(&measured.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>());
    let fd_slope = slope_per_min(&measured.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>());
    let (first, last) = (measured.first().expect("samples"), measured.last().expect("samples"));
    eprintln!(
        "soak {seconds} s: {} large round trips, {managed_ok} calls to the managed actor across {ops} scale/upd; \
         after warm-up RSS {:.1} → {:.1} MiB (slope {:.2} MiB/min), fds {} → {} (slope {fd_slope:.2}/min)",
        large_done.load(Ordering::Relaxed),
        first.1 / 1048576.0,
        last.1 / 1048576.0,
        rss_slope / 1048576.0,
        first.2,
        last.2
    );
    assert!(large_done.load(Ordering::Relaxed) >= 2, "large payloads went through");
    assert!(ops >= 2, "scaled and updated under load");
    assert!(
        rss_slope < RSS_SLOPE_MAX_BYTES_PER_MIN,
        "RSS flat: {:.2} MiB/min",
        rss_slope / 1048576.0
    );
    assert!(fd_slope < FD_SLOPE_MAX_PER_MIN, "descriptors flat: {fd_slope:.2}/min");
    let now = every_received_invocation_answered(&metrics).await;
    let generators: serde_json::Map<String, serde_json::Value> = reports
        .iter()
        .map(|(what, r)| (what.to_string(), r["counts"].clone()))
        .collect();
    crate::support::fault_record(
        "soak",
        json!({
            "seconds": seconds, "generators": generators, "large_round_trips": large_done.load(Ordering::Relaxed),
            "managed_calls": managed_ok, "scale_and_upd": ops,
            "rss_after_warmup_bytes": [first.1, last.1], "rss_slope_bytes_per_min": rss_slope,
            "fds_after_warmup": [first.2, last.2], "fd_slope_per_min": fd_slope,
            "received_per_shard": crate::faults::per_shard(&now, "received"),
        }),
    );
}
