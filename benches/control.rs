//! Control-plane costs that grow with the lattice: parsing KV entries, routing control
//! subjects, and rebuilding the shards' routing snapshot (done on every link/claims change).
//!
//! `cargo bench --bench control`; CI runs it in test mode (`cargo nextest run --all-targets`).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shardhost::lattice::{parse_entry, LatticeState, LinkDefinition};
use shardhost::routing::RoutingSnapshot;
use shardhost::wire::ctl;

fn link(i: usize) -> LinkDefinition {
    LinkDefinition {
        actor_id: format!("M{i:055}"),
        provider_id: format!("V{:055}", i % 17),
        link_name: "default".into(),
        contract_id: format!("wasmcloud:contract{}", i % 7),
        values: BTreeMap::from([("URL".to_string(), "redis://127.0.0.1:6379".to_string())]),
    }
}

fn state_with(links: usize) -> LatticeState {
    let mut state = LatticeState::default();
    for i in 0..links {
        let l = link(i);
        let body = serde_json::to_vec(&l).expect("encode");
        state.put(parse_entry(&l.kv_key(), &body).expect("valid entry"));
        let claims = format!(
            r#"{{"sub":"M{i:055}","caps":"wasmcloud:contract{}","call_alias":"a/{i}"}}"#,
            i % 7
        );
        state.put(parse_entry(&format!("CLAIMS_M{i:055}"), claims.as_bytes()).expect("valid claims"));
    }
    state
}

fn bench_parse(c: &mut Criterion) {
    let l = link(1);
    let key = l.kv_key();
    let body = serde_json::to_vec(&l).expect("encode");
    c.bench_function("parse_linkdef_entry", |b| {
        b.iter(|| parse_entry(black_box(&key), black_box(&body)))
    });
    let claims = br#"{"call_alias":"","caps":"wasmcloud:httpserver,wasmcloud:keyvalue","iss":"Aiss","name":"kv","rev":"3","sub":"Mkv","tags":"","version":"0.1"}"#;
    c.bench_function("parse_claims_entry", |b| {
        b.iter(|| parse_entry(black_box("CLAIMS_Mkv"), black_box(claims)))
    });
}

fn bench_route(c: &mut Criterion) {
    let host = "NBKMDNKH4AKOXSWC4KUQP66XNMCQXBBQWMNBQRBEPN2B2JL7ECDBLVI3";
    let subject = format!("wasmbus.ctl.default.cmd.{host}.scale");
    c.bench_function("ctl_route", |b| {
        b.iter(|| ctl::route("wasmbus.ctl", "default", host, black_box(&subject)))
    });
}

fn bench_snapshot(c: &mut Criterion) {
    let issuers = vec!["CX".to_string()];
    let mut group = c.benchmark_group("routing_snapshot_build");
    for links in [10usize, 1_000, 10_000] {
        let state = state_with(links);
        group.bench_with_input(BenchmarkId::from_parameter(links), &state, |b, state| {
            b.iter(|| RoutingSnapshot::build(1, black_box(state), &issuers))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse, bench_route, bench_snapshot);
criterion_main!(benches);
