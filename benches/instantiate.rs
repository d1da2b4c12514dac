//! Actor runtime costs (criterion): one echo call through a warm pool vs a fresh instance per
//! call (the 0.82 host's way) vs on-demand instantiation from an empty pool; compile-cache hit
//! vs compiling; validating the claims of a signed echo actor; and a real 0.x actor (wascap's
//! `echo_messaging_v0.9.0.wasm`) handling a message on a warm instance.
//!
//! `cargo bench --bench instantiate -- --warm-up-time 1 --measurement-time 3`; in test mode
//! (`cargo test --benches`) each routine runs once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use shardhost::auth::claims::{module_hash, validate_actor};
use shardhost::runtime::{
    fresh_instance_invoke, invoke, ActorPool, CompileCache, NoHostCalls, Parker, Runtime, RuntimeLimits,
};

const ECHO: &str = include_str!("../src/runtime/actors/echo.wat");
const PAYLOAD: &[u8] = b"{\"method\":\"GET\",\"path\":\"/echo\",\"body\":\"hello, lattice\"}";

fn limits() -> RuntimeLimits {
    RuntimeLimits {
        instance_slots_total: 64,
        ..RuntimeLimits::default()
    }
}

fn parker() -> Parker {
    Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_micros(10))))
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn bench_invoke(c: &mut Criterion) {
    let rt = tokio_rt();
    let runtime = Runtime::new(&limits()).unwrap();
    let bytes = wat::parse_str(ECHO).unwrap();
    let compiled = runtime.compile(&bytes, &module_hash(&bytes).unwrap()).unwrap();
    let new_pool = |size| {
        rt.block_on(ActorPool::new(
            &runtime,
            &compiled,
            "MBENCH",
            &[],
            Arc::new(NoHostCalls),
            parker(),
            size,
        ))
        .unwrap()
    };
    let mut warm = new_pool(4);
    let mut empty = new_pool(0);
    let mut group = c.benchmark_group("echo_invoke");
    group.bench_function("warm_pool", |b| {
        b.iter(|| rt.block_on(invoke(&mut warm, "Echo.Echo", black_box(PAYLOAD))).unwrap())
    });
    group.bench_function("fresh_instance_per_call", |b| {
        b.iter(|| {
            rt.block_on(fresh_instance_invoke(&mut warm, "Echo.Echo", black_box(PAYLOAD)))
                .unwrap()
        })
    });
    group.bench_function("on_demand_from_empty_pool", |b| {
        b.iter(|| {
            rt.block_on(invoke(&mut empty, "Echo.Echo", black_box(PAYLOAD)))
                .unwrap()
        })
    });
    // The same fresh-instance path on an engine that madvises every freed memory (wasmtime's
    // default) instead of keeping its first 64 KiB resident.
    let madvise_runtime = Runtime::new(&RuntimeLimits {
        memory_keep_resident_bytes: 0,
        ..limits()
    })
    .unwrap();
    let madvise_compiled = madvise_runtime.compile(&bytes, &module_hash(&bytes).unwrap()).unwrap();
    let mut madvise_pool = rt
        .block_on(ActorPool::new(
            &madvise_runtime,
            &madvise_compiled,
            "MBENCH",
            &[],
            Arc::new(NoHostCalls),
            parker(),
            1,
        ))
        .unwrap();
    group.bench_function("fresh_instance_per_call_no_keep_resident", |b| {
        b.iter(|| {
            rt.block_on(fresh_instance_invoke(
                &mut madvise_pool,
                "Echo.Echo",
                black_box(PAYLOAD),
            ))
            .unwrap()
        })
    });
    group.finish();
    assert_eq!(warm.stats().created_on_demand, 0);
}

fn bench_compile(c: &mut Criterion) {
    let runtime = Runtime::new(&limits()).unwrap();
    let bytes = wat::parse_str(ECHO).unwrap();
    let hash = module_hash(&bytes).unwrap();
    let mut cache = CompileCache::new(&runtime, None).unwrap();
    cache.compile(&bytes, &hash).unwrap();
    let mut group = c.benchmark_group("compile_echo");
    group.bench_function("cache_hit", |b| {
        b.iter(|| cache.compile(black_box(&bytes), &hash).unwrap())
    });
    group.bench_function("compile", |b| {
        b.iter(|| runtime.compile(black_box(&bytes), &hash).unwrap())
    });
    group.finish();
}

fn bench_claims(c: &mut Criterion) {
    use wascap::jwt::{Actor, Claims};
    use wascap::prelude::KeyPair;
    let bytes = wat::parse_str(ECHO).unwrap();
    let account = KeyPair::new_account();
    let module = KeyPair::new_module();
    let claims = Claims::<Actor>::with_dates(
        "Echo".into(),
        account.public_key(),
        module.public_key(),
        Some(vec!["wasmcloud:httpserver".into()]),
        None,
        None,
        None,
        false,
        Some(1),
        Some("0.1.0".into()),
        None,
    );
    let signed = wascap::wasm::embed_claims(&bytes, &claims, &account).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    validate_actor(&signed, now).unwrap();
    c.bench_function("validate_actor_claims_echo", |b| {
        b.iter(|| validate_actor(black_box(&signed), now).unwrap())
    });
}

/// wascap's `echo_messaging_v0.9.0.wasm`: a real wasmCloud 0.x actor (Rust, wasmbus-rpc), in
/// the sources cargo unpacked for the wascap dev-dependency.
fn real_actor() -> Option<Vec<u8>> {
    registry_fixture("echo_messaging_v0.9.0.wasm")
}

/// The real actor's `MessageSubscriber.HandleMessage` (a SubMessage without `replyTo`: it
/// decodes the message and logs it through the logging builtin) on a warm instance.
fn bench_real_actor(c: &mut Criterion) {
    let Some(bytes) = real_actor() else {
        eprintln!("echo_messaging_v0.9.0.wasm not found in the cargo registry: real-actor bench skipped");
        return;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = validate_actor(&bytes, now).unwrap();
    let rt = tokio_rt();
    let runtime = Runtime::new(&limits()).unwrap();
    let compiled = runtime.compile(&bytes, &claims.hash).unwrap();
    let mut pool = rt
        .block_on(ActorPool::new(
            &runtime,
            &compiled,
            &claims.subject,
            &claims.caps,
            Arc::new(NoHostCalls),
            parker(),
            2,
        ))
        .unwrap();
    // {"subject": "demo.echo", "body": bin "hello"} as msgpack (wasmcloud-interface-messaging).
    let mut message = vec![0x82, 0xa7];
    message.extend_from_slice(b"subject");
    message.push(0xa9);
    message.extend_from_slice(b"demo.echo");
    message.push(0xa4);
    message.extend_from_slice(b"body");
    message.extend_from_slice(&[0xc4, 5]);
    message.extend_from_slice(b"hello");
    let op = "MessageSubscriber.HandleMessage";
    rt.block_on(invoke(&mut pool, op, &message)).unwrap();
    c.bench_function("real_actor_echo_messaging_warm_pool", |b| {
        b.iter(|| rt.block_on(invoke(&mut pool, op, black_box(&message))).unwrap())
    });
}

/// wascap's 1.77 MB `logger.wasm` fixture (a wapc-guest 0.4 module, about the size of the
/// wasmCloud echo actor) compiled by each of wasmtime's compilers, with the host's settings
/// that change code generation (epoch interruption, async).
fn bench_compile_large(c: &mut Criterion) {
    let Some(bytes) = registry_fixture("logger.wasm") else {
        eprintln!("logger.wasm not found in the cargo registry: large-compile bench skipped");
        return;
    };
    let mut group = c.benchmark_group("compile_1_8mb");
    group.sample_size(10);
    for (name, strategy) in [
        ("cranelift", wasmtime::Strategy::Cranelift),
        ("winch", wasmtime::Strategy::Winch),
    ] {
        let mut config = wasmtime::Config::new();
        config.strategy(strategy).epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| wasmtime::Module::new(&engine, black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

fn registry_fixture(name: &str) -> Option<Vec<u8>> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")))?;
    let registry = std::fs::read_dir(home.join("registry/src")).ok()?;
    registry
        .flatten()
        .find_map(|index| std::fs::read(index.path().join("wascap-0.11.2/fixtures").join(name)).ok())
}

criterion_group!(
    benches,
    bench_invoke,
    bench_compile,
    bench_compile_large,
    bench_claims,
    bench_real_actor
);
criterion_main!(benches);
