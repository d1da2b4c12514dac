//! Tiered compilation (issue 9): an actor that is not in the compile cache starts on the
//! baseline compiler's code and moves to Cranelift's when that is ready, with no failed
//! invocation across the swap; `--baseline-compiler false` compiles with Cranelift before the
//! start; a start from a warm `--cache-dir` uses the optimised code at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::rpc::{invocation, lab_with, outcome, Entity, Lab, REPLY_TIMEOUT, START_TIMEOUT};
use crate::support::{assert_accepted, echo_actor_wat, request_json, signed_wat, ActorSpec, HostOptions, Nats};

/// Functions that only make the module slower to optimise, so the swap lands while callers
/// are running.
const FILLER_FUNCTIONS: usize = 400;
const MOVED: &str = "actor moves to optimised code";

/// The test echo actor plus `FILLER_FUNCTIONS` functions of arithmetic nobody calls.
fn slow_to_optimise_echo() -> String {
    let echo = echo_actor_wat(1);
    let body = echo.strip_suffix(')').expect("module ends with a paren");
    let mut wat = body.to_string();
    for i in 0..FILLER_FUNCTIONS {
        wat.push_str(&format!(
            "\n  (func $f{i} (param i32) (result i32) (local.get 0) (i32.const {i}) (i32.mul) (i32.const 7) (i32.add) (i32.const 3) (i32.xor))"
        ));
    }
    wat.push(')');
    wat
}

fn prepared_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("actor module prepared"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_first_start_runs_baseline_code_then_moves_to_optimised_code_without_a_failed_call() {
    let lab = lab_with("tierup", &[]).await;
    let actor = signed_wat(&slow_to_optimise_echo(), ActorSpec::default());
    let path = lab.dir.path().join("echo.wasm");
    std::fs::write(&path, &actor.bytes).expect("write actor");
    let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 2, "host_id": lab.host.id });
    let ack = request_json(&lab.nc, &lab.host.cmd("la"), body.to_string().as_bytes()).await;
    assert_accepted(&ack, "la");

    // Callers start at once; each counts failures only after its own first answer.
    let stop = Arc::new(AtomicBool::new(false));
    let first_ok_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut callers = Vec::new();
    for worker in 0..4 {
        let (nc, subject, key) = (lab.nc.clone(), lab.subject(&actor.key), actor.key.clone());
        let cluster = wascap::prelude::KeyPair::from_seed(&lab.cluster.seed().expect("seed")).expect("seed");
        let (stop, first_ok_at) = (stop.clone(), first_ok_at.clone());
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("w{worker}-{ok}").into_bytes();
                let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
                let (id, bytes) = invocation(&cluster, origin, Entity::actor(&key), "X.Y", &payload, &payload);
                let answer = tokio::time::timeout(REPLY_TIMEOUT, nc.request(subject.clone(), bytes.into())).await;
                let good = matches!(&answer, Ok(Ok(reply)) if outcome(&reply.payload, &id).ok().as_deref() == Some(&payload[..]));
                if good {
                    ok += 1;
                    first_ok_at.lock().expect("lock").get_or_insert_with(Instant::now);
                } else if ok > 0 {
                    failed.push(format!("{:?}", answer.map(|r| r.map(|m| outcome(&m.payload, &id)))));
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (ok, failed)
        }));
    }
    let deadline = Instant::now() + START_TIMEOUT;
    let moved_at = loop {
        if lab.host.stderr().contains(MOVED) {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no move to optimised code:\n{}",
            lab.host.stderr()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for caller in callers {
        let (ok, failed) = caller.await.expect("caller");
        assert!(failed.is_empty(), "failed invocations across the swap: {failed:?}");
        total += ok;
    }
    let first_ok = first_ok_at.lock().expect("lock").expect("some call succeeded");
    assert!(first_ok < moved_at, "baseline code served calls before the swap");
    assert!(total >= 8, "{total} calls");
    let log = lab.host.stderr();
    assert!(
        prepared_line(&log).contains(r#"source="baseline""#),
        "{}",
        prepared_line(&log)
    );
}

#[tokio::test]
async fn without_the_baseline_compiler_a_start_waits_for_cranelift() {
    let mut lab = lab_with("tieroff", &[("--baseline-compiler", "false")]).await;
    let echo = signed_wat(&echo_actor_wat(1), ActorSpec::default());
    lab.start("echo.wasm", &echo, 1).await;
    assert_eq!(lab.call(&echo.key, "X.Y", b"hi").await.expect("served"), b"hi");
    let log = lab.host.stderr();
    assert!(
        prepared_line(&log).contains(r#"source="cranelift""#),
        "{}",
        prepared_line(&log)
    );
    assert!(!log.contains(MOVED));
}

#[tokio::test]
async fn a_start_from_a_warm_cache_dir_uses_optimised_code_at_once() {
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().display().to_string();
    let echo = signed_wat(&echo_actor_wat(1), ActorSpec::default());
    let nats = Nats::start();
    let options = |tag: &str| {
        HostOptions::new(&crate::support::unique_lattice(tag))
            .arg("--cache-dir", &cache_dir)
            .arg("--heartbeat-interval-ms", "500")
    };
    // The first host compiles (baseline, then Cranelift into the cache dir)…
    let mut first = Lab::start_on(nats, options("tiercold"), tempfile::tempdir().expect("dir")).await;
    first.start("echo.wasm", &echo, 1).await;
    let deadline = Instant::now() + START_TIMEOUT;
    while !first.host.stderr().contains(MOVED) {
        assert!(Instant::now() < deadline, "no move to optimised code");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nats = std::mem::replace(&mut first.nats, Nats::start());
    drop(first);
    // …the next one finds Cranelift's code on disk.
    let mut second = Lab::start_on(nats, options("tierwarm"), tempfile::tempdir().expect("dir")).await;
    second.start("echo.wasm", &echo, 1).await;
    assert_eq!(second.call(&echo.key, "X.Y", b"warm").await.expect("served"), b"warm");
    let log = second.host.stderr();
    assert!(
        prepared_line(&log).contains(r#"source="disk cache""#),
        "{}",
        prepared_line(&log)
    );
    assert!(!log.contains(MOVED));
}
