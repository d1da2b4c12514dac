//! The baseline compiler (Winch) runs untrusted guests too, for an actor's first moments: the
//! same ABI and the same protections as Cranelift's code — the deadline stops a runaway guest,
//! a trap or a bad pointer retires the instance, memory stays bounded — and the compile cache
//! only ever holds optimised code. Test-only.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::claims::module_hash;

use super::tests::{parker, BADPTR, ECHO, FOREVER, GROW, TRAP};

fn limits() -> RuntimeLimits {
    RuntimeLimits {
        memory_bytes_max: 4 << 20,
        instance_slots_total: 16,
        execution_deadline_ms: 200,
        baseline_compiler: true,
        ..RuntimeLimits::default()
    }
}

async fn baseline_pool(runtime: &Runtime, wat: &str) -> ActorPool {
    let bytes = wat::parse_str(wat).unwrap();
    let compiled = runtime
        .compile_baseline(&bytes, &module_hash(&bytes).unwrap())
        .expect("the runtime has the baseline compiler")
        .unwrap();
    assert_eq!(compiled.tier(), Tier::Baseline);
    ActorPool::new(runtime, &compiled, "MBASELINE", &[], Arc::new(NoHostCalls), parker(), 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn baseline_code_echoes_and_keeps_the_books() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = baseline_pool(&runtime, ECHO).await;
    for i in 0..5u32 {
        let payload = format!("hello {i}").into_bytes();
        assert_eq!(invoke(&mut pool, "Echo.Echo", &payload).await.unwrap(), payload);
    }
    let big = vec![7u8; 300 << 10];
    assert_eq!(invoke(&mut pool, "Echo.Echo", &big).await.unwrap(), big);
    assert_eq!(
        invoke(&mut pool, "Fail", b"bad request").await.unwrap_err(),
        InvokeError::GuestError("bad request".into())
    );
    assert_eq!((pool.stats().invocations, pool.stats().retired), (7, 0));
}

#[tokio::test]
async fn a_runaway_guest_on_baseline_code_stops_at_the_deadline() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = baseline_pool(&runtime, FOREVER).await;
    let started = Instant::now();
    assert_eq!(invoke(&mut pool, "Spin", b"").await.unwrap_err(), InvokeError::Deadline);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(pool.stats().retired, 1);
}

#[tokio::test]
async fn traps_memory_exhaustion_and_bad_pointers_on_baseline_code_are_errors() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut trap = baseline_pool(&runtime, TRAP).await;
    let err = invoke(&mut trap, "Any", b"").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Trap(m) if m.contains("unreachable")),
        "{err}"
    );
    let mut grow = baseline_pool(&runtime, GROW).await;
    assert_eq!(
        invoke(&mut grow, "Grow", b"").await.unwrap_err(),
        InvokeError::OutOfMemory {
            memory_bytes_max: 4 << 20
        }
    );
    let mut badptr = baseline_pool(&runtime, BADPTR).await;
    assert_eq!(
        invoke(&mut badptr, "Host", b"").await.unwrap_err(),
        InvokeError::BadGuestPointer("__host_call")
    );
    for pool in [&trap, &grow, &badptr] {
        assert_eq!(pool.stats().retired, 1);
    }
}

#[test]
fn without_the_option_there_is_no_baseline_compiler_and_the_cache_holds_optimised_code() {
    let bytes = wat::parse_str(ECHO).unwrap();
    let hash = module_hash(&bytes).unwrap();
    let plain = Runtime::new(&RuntimeLimits {
        baseline_compiler: false,
        ..limits()
    })
    .unwrap();
    assert!(!plain.has_baseline());
    assert!(plain.compile_baseline(&bytes, &hash).is_none());

    let tiered = Runtime::new(&limits()).unwrap();
    let mut cache = CompileCache::new(&tiered, None).unwrap();
    assert!(cache.cached(&hash).is_none(), "nothing compiled yet");
    let (compiled, source) = cache.compile(&bytes, &hash).unwrap();
    assert_eq!((compiled.tier(), source), (Tier::Optimized, CacheSource::Compiled));
    let (again, source) = cache.cached(&hash).unwrap();
    assert_eq!((again.tier(), source), (Tier::Optimized, CacheSource::Memory));
    assert!(cache.cached("../../etc/passwd").is_none(), "not a module hash");
}

#[tokio::test]
async fn a_pool_refuses_code_from_another_runtime() {
    let bytes = wat::parse_str(ECHO).unwrap();
    let hash = module_hash(&bytes).unwrap();
    let ours = Runtime::new(&limits()).unwrap();
    let theirs = Runtime::new(&limits()).unwrap();
    let foreign = theirs.compile_baseline(&bytes, &hash).unwrap().unwrap();
    let refused = ActorPool::new(&ours, &foreign, "MFOREIGN", &[], Arc::new(NoHostCalls), parker(), 1).await;
    assert!(matches!(refused, Err(RuntimeError::ForeignModule { .. })));
}
