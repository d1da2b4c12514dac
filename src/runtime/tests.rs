//! Runtime tests on tokio: WAT actors (src/runtime/actors/) that implement the wasmbus ABI
//! honestly, run through warm pools. Test-only.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::auth::claims::{module_hash, validate_actor};
use crate::auth::testkit;
use crate::wire::trace::CallTrace;

pub(super) const ECHO: &str = include_str!("actors/echo.wat");
const BUILTINS: &str = include_str!("actors/builtins.wat");
const CALLER: &str = include_str!("actors/caller.wat");
pub(super) const FOREVER: &str = include_str!("actors/forever.wat");
pub(super) const TRAP: &str = include_str!("actors/trap.wat");
pub(super) const GROW: &str = include_str!("actors/grow.wat");
const WASI: &str = include_str!("actors/wasi.wat");
const BAD_IMPORT: &str = include_str!("actors/bad_import.wat");
pub(super) const BADPTR: &str = include_str!("actors/badptr.wat");
const INIT: &str = include_str!("actors/init.wat");

pub(super) const ACTOR_KEY: &str = "MTESTACTOR";

pub(super) fn limits() -> RuntimeLimits {
    RuntimeLimits {
        memory_bytes_max: 4 << 20,
        instance_slots_total: 16,
        max_wasm_stack_bytes: 128 << 10,
        async_stack_bytes: 512 << 10,
        epoch_tick_ms: 1,
        instance_max_invocations: 0,
        execution_deadline_ms: 200,
        memory_keep_resident_bytes: 64 << 10,
        baseline_compiler: false,
        memory_budget_bytes: 0,
        instance_memory_keep_bytes: 0,
    }
}

pub(super) fn parker() -> Parker {
    Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_micros(10))))
}

pub(super) fn compile(runtime: &Runtime, wat: &str) -> CompiledActor {
    let bytes = wat::parse_str(wat).unwrap();
    runtime.compile(&bytes, &module_hash(&bytes).unwrap()).unwrap()
}

async fn pool_with(
    runtime: &Runtime,
    wat: &str,
    caps: &[String],
    host_calls: Arc<dyn HostCalls>,
    size: usize,
) -> ActorPool {
    let compiled = compile(runtime, wat);
    ActorPool::new(runtime, &compiled, ACTOR_KEY, caps, host_calls, parker(), size)
        .await
        .unwrap()
}

pub(super) async fn pool(runtime: &Runtime, wat: &str, size: usize) -> ActorPool {
    pool_with(runtime, wat, &[], Arc::new(NoHostCalls), size).await
}

fn count_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().unwrap())
}

// ----- limits and engine ---------------------------------------------------------------------

#[test]
fn default_limits_validate_and_report_the_reservation() {
    let limits = RuntimeLimits::default();
    limits.validate().unwrap();
    let r = limits.reservation().unwrap();
    assert_eq!(r.total_bytes, r.memories_bytes + r.stacks_bytes + r.tables_bytes);
    assert!(r.memories_bytes > 1000 * (64 << 20));
    let text = limits.to_string();
    assert!(
        text.contains(&format!("virtual reservation {} bytes", r.total_bytes)),
        "{text}"
    );
}

#[test]
fn bad_limits_are_rejected_with_their_name() {
    type Mutate = fn(&mut RuntimeLimits);
    let cases: [(&str, Mutate); 5] = [
        ("memory_bytes_max", |l| l.memory_bytes_max = 1000),
        ("instance_slots_total", |l| l.instance_slots_total = 0),
        ("async_stack_bytes", |l| l.async_stack_bytes = l.max_wasm_stack_bytes),
        ("epoch_tick_ms", |l| l.epoch_tick_ms = 0),
        ("execution_deadline_ms", |l| l.execution_deadline_ms = 0),
    ];
    for (name, mutate) in cases {
        let mut l = limits();
        mutate(&mut l);
        let err = l.validate().unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
        assert!(matches!(Runtime::new(&l), Err(RuntimeError::InvalidLimits(_))));
    }
}

#[test]
fn absurd_reservation_fails_explicitly() {
    // 1M slots × 4 GiB ≈ 4 PiB of address space: more than any x86-64/aarch64 process has.
    let l = RuntimeLimits {
        memory_bytes_max: 4 << 30,
        instance_slots_total: 1 << 20,
        ..limits()
    };
    l.validate().unwrap();
    match Runtime::new(&l) {
        Err(RuntimeError::PoolingReservation {
            instance_slots_total,
            slot_bytes,
            reservation_bytes,
            reason,
        }) => {
            assert_eq!(instance_slots_total, 1 << 20);
            assert_eq!(slot_bytes, (4 << 30) + limits::MEMORY_GUARD_BYTES);
            assert!(reservation_bytes > (1u64 << 20) * (4 << 30));
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an absurd reservation succeeded"),
    }
}

#[test]
fn epoch_thread_ticks_and_stops_with_the_runtime() {
    // Ticking is proven by the deadline tests; here: the last clone stops and joins it.
    let runtime = Runtime::new(&limits()).unwrap();
    let clone = runtime.clone();
    drop(runtime);
    // Dropping joins the epoch thread; a hang here would time the test out.
    let started = Instant::now();
    drop(clone);
    assert!(started.elapsed() < Duration::from_secs(1));
}

// ----- module shape ---------------------------------------------------------------------------

#[test]
fn bad_import_is_refused_at_compile() {
    let runtime = Runtime::new(&limits()).unwrap();
    let bytes = wat::parse_str(BAD_IMPORT).unwrap();
    match runtime.compile(&bytes, "BAD") {
        Err(RuntimeError::ModuleShape {
            reason: ShapeError::ForeignImport { module, name },
            ..
        }) => assert_eq!((module.as_str(), name.as_str()), ("env", "abort")),
        other => panic!("unexpected: {other:?}"),
    }
}

#[test]
fn shape_errors_are_named() {
    let runtime = Runtime::new(&limits()).unwrap();
    let cases = [
        (r#"(module (memory (export "memory") 1))"#, ShapeError::NoGuestCall),
        (
            r#"(module (memory (export "memory") 1) (func (export "__guest_call") (param i32) (result i32) i32.const 1))"#,
            ShapeError::GuestCallType,
        ),
        (
            r#"(module (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
            ShapeError::NoMemory,
        ),
        (
            r#"(module (import "wasmbus" "__nope" (func)) (memory (export "memory") 1)
                (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
            ShapeError::UnknownImport {
                module: "wasmbus".into(),
                name: "__nope".into(),
            },
        ),
        (
            r#"(module (import "wapc" "__host_call" (func (param i32) (result i32))) (memory (export "memory") 1)
                (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
            ShapeError::ImportType {
                module: "wapc".into(),
                name: "__host_call".into(),
                expected: "(i32 × 8) -> i32",
            },
        ),
        (
            r#"(module (import "wasi_snapshot_preview1" "fd_weird" (func (param i32) (result i64)))
                (memory (export "memory") 1)
                (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
            ShapeError::UnsupportedWasi("fd_weird".into()),
        ),
        (
            r#"(module (memory (export "memory") 1) (func (export "_start") (param i32))
                (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
            ShapeError::InitType("_start".into()),
        ),
    ];
    for (wat, expected) in cases {
        let bytes = wat::parse_str(wat).unwrap();
        match runtime.compile(&bytes, "X") {
            Err(RuntimeError::ModuleShape { reason, .. }) => assert_eq!(reason, expected),
            other => panic!("{wat}: unexpected {other:?}"),
        }
    }
}

// ----- calls ----------------------------------------------------------------------------------

#[tokio::test]
async fn echo_round_trip_on_a_warm_pool() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 2).await;
    assert_eq!(pool.idle_count(), 2);
    for i in 0..10u32 {
        let payload = format!("hello {i}").into_bytes();
        assert_eq!(invoke(&mut pool, "Echo.Echo", &payload).await.unwrap(), payload);
    }
    // A payload larger than the initial memory: the guest grows its memory.
    let big = vec![7u8; 300 << 10];
    assert_eq!(invoke(&mut pool, "Echo.Echo", &big).await.unwrap(), big);
    assert_eq!(invoke(&mut pool, "", b"").await.unwrap(), b"");
    let stats = pool.stats();
    assert_eq!(stats.invocations, 12);
    assert_eq!((stats.created, stats.created_on_demand, stats.retired), (2, 0, 0));
    assert_eq!((pool.idle_count(), pool.leased_count()), (2, 0));
}

#[tokio::test]
async fn guest_error_is_returned_and_the_instance_kept() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 1).await;
    let err = invoke(&mut pool, "Fail", b"bad request").await.unwrap_err();
    assert_eq!(err, InvokeError::GuestError("bad request".into()));
    assert!(!err.retires_instance());
    assert_eq!(pool.stats().retired, 0);
    assert_eq!(count_of(&invoke(&mut pool, "Count", b"").await.unwrap()), 2);
}

#[tokio::test]
async fn lease_and_give_back_keep_the_books() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 2).await;
    let mut a = pool.try_lease().unwrap();
    let b = pool.try_lease().unwrap();
    assert!(pool.try_lease().is_none());
    assert_eq!(pool.leased_count(), 2);
    assert_eq!(a.invoke("Echo", b"x").await.unwrap(), b"x");
    assert_eq!(a.invoke("Echo", b"y").await.unwrap(), b"y");
    assert!(matches!(pool.give_back(a), GiveBack::Idle));
    assert!(matches!(pool.give_back(b), GiveBack::Idle));
    assert_eq!(pool.leased_count(), 0);
    assert_eq!(pool.stats().invocations, 2);
}

#[tokio::test]
async fn on_demand_instance_when_none_is_idle() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 0).await;
    assert_eq!(invoke(&mut pool, "Echo", b"a").await.unwrap(), b"a");
    assert_eq!(invoke(&mut pool, "Echo", b"b").await.unwrap(), b"b");
    let stats = pool.stats();
    assert_eq!((stats.created, stats.created_on_demand, stats.trimmed), (2, 2, 2));
    assert_eq!(fresh_instance_invoke(&mut pool, "Echo", b"c").await.unwrap(), b"c");
    assert_eq!(pool.stats().created, 3);
}

#[tokio::test]
async fn guest_state_persists_when_reuse_is_allowed() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 1).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(count_of(&invoke(&mut pool, "Count", b"").await.unwrap()));
    }
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(pool.stats().created, 1);
}

#[tokio::test]
async fn max_invocations_one_gives_a_fresh_instance_per_call() {
    let runtime = Runtime::new(&RuntimeLimits {
        instance_max_invocations: 1,
        ..limits()
    })
    .unwrap();
    let mut pool = pool(&runtime, ECHO, 1).await;
    for _ in 0..3 {
        assert_eq!(count_of(&invoke(&mut pool, "Count", b"").await.unwrap()), 1);
    }
    let stats = pool.stats();
    assert_eq!((stats.retired, stats.created, stats.traps), (3, 4, 0));
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn init_exports_run_once_per_instance() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, INIT, 1).await;
    assert_eq!(invoke(&mut pool, "Any", b"").await.unwrap(), [1, 1]);
    assert_eq!(invoke(&mut pool, "Any", b"").await.unwrap(), [1, 1]);
}

// ----- host calls -------------------------------------------------------------------------------

#[tokio::test]
async fn builtins_logging_and_numbergen() {
    let bytes = wat::parse_str(BUILTINS).unwrap();
    let signed = testkit::sign_with_caps(&bytes, &[builtins::BUILTIN_LOGGING, builtins::BUILTIN_NUMBERGEN]);
    let claims = validate_actor(&signed.module, testkit::now_secs()).unwrap();
    let runtime = Runtime::new(&limits()).unwrap();
    let compiled = runtime.compile(&signed.module, &claims.hash).unwrap();
    let mut pool = ActorPool::new(
        &runtime,
        &compiled,
        &claims.subject,
        &claims.caps,
        Arc::new(NoHostCalls),
        parker(),
        1,
    )
    .await
    .unwrap();

    // msgpack {"min": 5, "max": 5}
    let range = b"\x82\xa3min\x05\xa3max\x05";
    let out = invoke(&mut pool, "NumberGen.RandomInRange", range).await.unwrap();
    assert_eq!(rmp_serde::from_slice::<u32>(&out).unwrap(), 5);

    let out = invoke(&mut pool, "NumberGen.Random32", b"").await.unwrap();
    rmp_serde::from_slice::<u32>(&out).unwrap();

    let out = invoke(&mut pool, "NumberGen.GenerateGuid", b"").await.unwrap();
    let guid: String = rmp_serde::from_slice(&out).unwrap();
    assert_eq!(uuid::Uuid::parse_str(&guid).unwrap().get_version_num(), 4);

    let err = invoke(&mut pool, "NumberGen.Nope", b"").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::GuestError(m) if m.contains("unknown operation")),
        "{err}"
    );
    let bad_range = b"\x82\xa3min\x09\xa3max\x05";
    let err = invoke(&mut pool, "NumberGen.RandomInRange", bad_range)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, InvokeError::GuestError(m) if m.contains("min 9 > max 5")),
        "{err}"
    );
    assert_eq!(pool.stats().retired, 0);
}

#[tokio::test]
async fn builtins_require_the_claimed_capability() {
    let runtime = Runtime::new(&limits()).unwrap();
    let caps = vec![builtins::BUILTIN_LOGGING.to_string()];
    let mut pool = pool_with(&runtime, BUILTINS, &caps, Arc::new(NoHostCalls), 1).await;
    let err = invoke(&mut pool, "NumberGen.Random32", b"").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::GuestError(m) if m.contains("wasmcloud:builtin:numbergen")),
        "{err}"
    );
    let mut pool = pool_with(&runtime, BUILTINS, &[], Arc::new(NoHostCalls), 1).await;
    let err = invoke(&mut pool, "NumberGen.Random32", b"").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::GuestError(m) if m.contains("wasmcloud:builtin:logging")),
        "{err}"
    );
}

type Recorded = Vec<(String, String, String, String, Vec<u8>)>;

/// Records every call and answers `pong:` + payload.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Recorded>,
    traces: Mutex<Vec<Option<CallTrace>>>,
}

impl HostCalls for Recorder {
    fn call<'a>(
        &'a self,
        origin_actor: &'a str,
        trace: Option<CallTrace>,
        binding: &'a str,
        namespace: &'a str,
        operation: &'a str,
        payload: Vec<u8>,
    ) -> HostCallFuture<'a> {
        self.traces.lock().unwrap().push(trace);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut reply = b"pong:".to_vec();
            reply.extend_from_slice(&payload);
            self.calls.lock().unwrap().push((
                origin_actor.into(),
                binding.into(),
                namespace.into(),
                operation.into(),
                payload,
            ));
            Ok(reply)
        })
    }
}

#[tokio::test]
async fn actor_calls_another_actor_by_alias_through_host_calls() {
    let runtime = Runtime::new(&limits()).unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut pool = pool_with(&runtime, CALLER, &[], recorder.clone(), 1).await;
    assert_eq!(invoke(&mut pool, "Caller.Go", b"ping").await.unwrap(), b"pong:ping");
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [(
            ACTOR_KEY.to_string(),
            String::new(),
            "wasmcloud/ponger".to_string(),
            "Ping.Ping".to_string(),
            b"ping".to_vec()
        )]
    );
}

/// The trace a call runs in reaches its outbound calls, and never outlives the call: the
/// instance's next untraced call carries none.
#[tokio::test]
async fn outbound_calls_get_the_trace_of_the_call_that_makes_them() {
    let runtime = Runtime::new(&limits()).unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut pool = pool_with(&runtime, CALLER, &[], recorder.clone(), 1).await;
    let trace = crate::wire::trace::extract(
        [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")].into_iter(),
    )
    .unwrap();
    let mut instance = pool.try_lease().expect("a warm instance");
    let out = instance.invoke_in("Caller.Go", b"ping", trace.clone()).await.unwrap();
    assert_eq!(out, b"pong:ping");
    instance.invoke("Caller.Go", b"ping").await.unwrap();
    pool.give_back(instance);
    assert_eq!(*recorder.traces.lock().unwrap(), [trace, None]);
}

#[tokio::test]
async fn calls_leaving_the_host_fail_by_default() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, CALLER, 1).await;
    let err = invoke(&mut pool, "Caller.Go", b"ping").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::GuestError(m) if m.contains("not wired here") && m.contains("wasmcloud/ponger")),
        "{err}"
    );
}

#[tokio::test]
async fn wasi_fd_write_is_logged_and_other_wasi_calls_get_enosys() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, WASI, 1).await;
    let out = invoke(&mut pool, "Any", b"").await.unwrap();
    assert_eq!(out, [16, abi::WASI_ESUCCESS as u8, abi::WASI_ENOSYS as u8, 0]);
}

// ----- hostile guests -------------------------------------------------------------------------

#[tokio::test]
async fn runaway_guest_stops_at_the_deadline_and_is_replaced() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, FOREVER, 1).await;
    let started = Instant::now();
    let err = invoke(&mut pool, "Spin", b"").await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, InvokeError::Deadline);
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let stats = pool.stats();
    assert_eq!((stats.deadline_overruns, stats.retired, stats.created), (1, 1, 2));
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn the_epoch_thread_sleeps_when_idle_and_wakes_for_a_runaway_guest() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, FOREVER, 1).await;
    // Idle for well over EPOCH_IDLE_TICKS_BEFORE_PARK ticks: the ticker parks…
    let mut waited = Duration::ZERO;
    while !runtime.epoch().is_parked() {
        assert!(waited < Duration::from_secs(5), "the epoch thread never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    // …and the next guest wakes it: the deadline still stops the runaway.
    let started = Instant::now();
    let err = invoke(&mut pool, "Spin", b"").await.unwrap_err();
    assert_eq!(err, InvokeError::Deadline);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(limits().execution_deadline_ms) * 5,
        "deadline enforced after an idle period ({elapsed:?})"
    );
}

#[tokio::test]
async fn a_busy_guest_parks_so_other_tasks_run() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, FOREVER, 1).await;
    let started = Instant::now();
    let (result, ticked_at) = tokio::join!(invoke(&mut pool, "Spin", b""), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        started.elapsed()
    });
    assert_eq!(result, Err(InvokeError::Deadline));
    // The timer fired while the guest was still spinning (it spins for 200 ms).
    assert!(ticked_at < Duration::from_millis(150), "{ticked_at:?}");
}

#[tokio::test]
async fn trap_is_an_error_and_retires_the_instance() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, TRAP, 1).await;
    let err = invoke(&mut pool, "Any", b"").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Trap(m) if m.contains("unreachable")),
        "{err}"
    );
    let stats = pool.stats();
    assert_eq!((stats.traps, stats.retired, stats.created), (1, 1, 2));
}

#[tokio::test]
async fn memory_exhaustion_is_an_error() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, GROW, 1).await;
    for _ in 0..2 {
        let err = invoke(&mut pool, "Grow", b"").await.unwrap_err();
        assert_eq!(
            err,
            InvokeError::OutOfMemory {
                memory_bytes_max: 4 << 20
            }
        );
    }
    assert_eq!(pool.stats().retired, 2);
}

#[tokio::test]
async fn bad_guest_pointers_are_errors_not_panics() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, BADPTR, 1).await;
    let cases = [
        ("Request.Overflow", "__guest_request"),
        ("Std", "__guest_response"),
        ("Host", "__host_call"),
        ("Log", "__console_log"),
        ("Error", "__host_error"),
    ];
    for (operation, what) in cases {
        let err = invoke(&mut pool, operation, b"").await.unwrap_err();
        assert_eq!(err, InvokeError::BadGuestPointer(what), "{operation}");
    }
    assert_eq!(pool.stats().retired, 5);
    assert_eq!(pool.idle_count(), 1);
}

// ----- compile cache --------------------------------------------------------------------------

#[test]
fn compile_cache_hits_in_memory_and_on_disk_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("modules");
    let bytes = wat::parse_str(ECHO).unwrap();
    let hash = module_hash(&bytes).unwrap();

    let runtime = Runtime::new(&limits()).unwrap();
    let mut cache = CompileCache::new(&runtime, Some(&cache_dir)).unwrap();
    let (first, source) = cache.compile(&bytes, &hash).unwrap();
    assert_eq!(source, CacheSource::Compiled);
    let (second, source) = cache.compile(&bytes, &hash).unwrap();
    assert_eq!(source, CacheSource::Memory);
    assert_eq!(first.module_hash(), second.module_hash());
    assert_eq!(cache.stats().compiled, 1);
    assert_eq!(std::fs::read_dir(&cache_dir).unwrap().count(), 1);
    drop((first, second, cache, runtime));

    // A new runtime (as after a restart) loads the serialized module instead of compiling.
    let runtime = Runtime::new(&limits()).unwrap();
    let mut cache = CompileCache::new(&runtime, Some(&cache_dir)).unwrap();
    let (actor, source) = cache.compile(&bytes, &hash).unwrap();
    assert_eq!(source, CacheSource::Disk);
    assert_eq!(cache.stats().compiled, 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut pool = ActorPool::new(&runtime, &actor, ACTOR_KEY, &[], Arc::new(NoHostCalls), parker(), 1)
            .await
            .unwrap();
        assert_eq!(invoke(&mut pool, "Echo", b"cached").await.unwrap(), b"cached");
    });
}

#[test]
fn compile_cache_recompiles_a_damaged_disk_entry() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wat::parse_str(ECHO).unwrap();
    let hash = module_hash(&bytes).unwrap();
    let runtime = Runtime::new(&limits()).unwrap();
    CompileCache::new(&runtime, Some(dir.path()))
        .unwrap()
        .compile(&bytes, &hash)
        .unwrap();
    let entry = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&entry, b"not a module").unwrap();
    let mut cache = CompileCache::new(&runtime, Some(dir.path())).unwrap();
    let (_, source) = cache.compile(&bytes, &hash).unwrap();
    assert_eq!(source, CacheSource::Compiled);
    assert_eq!(cache.stats().disk_rejected, 1);
}

#[test]
fn compile_cache_refuses_unsafe_keys_and_directories() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut cache = CompileCache::new(&runtime, None).unwrap();
    let bytes = wat::parse_str(ECHO).unwrap();
    for hash in ["", "../../etc/passwd", "AB/CD", &"A".repeat(200)] {
        assert!(matches!(
            cache.compile(&bytes, hash),
            Err(RuntimeError::InvalidModuleHash(_))
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        CompileCache::new(&runtime, Some(dir.path())),
        Err(RuntimeError::CacheDir { .. })
    ));
}

#[tokio::test]
async fn a_module_from_another_engine_is_refused() {
    let a = Runtime::new(&limits()).unwrap();
    let b = Runtime::new(&limits()).unwrap();
    let compiled = compile(&a, ECHO);
    let result = ActorPool::new(&b, &compiled, ACTOR_KEY, &[], Arc::new(NoHostCalls), parker(), 1).await;
    assert!(matches!(result, Err(RuntimeError::ForeignModule { .. })));
}

#[test]
fn compiled_actor_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<CompiledActor>();
    assert_send_sync::<Runtime>();
}

#[tokio::test]
async fn proc_exit_ends_init_cleanly_but_fails_a_call() {
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $exit (i32.const 0)))
        (func (export "__guest_call") (param i32 i32) (result i32)
            (call $exit (i32.const 3))
            i32.const 1))"#;
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, wat, 1).await;
    assert_eq!(
        invoke(&mut pool, "Any", b"").await.unwrap_err(),
        InvokeError::ProcExit(3)
    );
    assert_eq!(pool.stats().retired, 1);
}
