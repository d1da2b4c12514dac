//! The real `wash` 0.22 (the wasmCloud CLI of the 0.82 era) against shardhost: `wash par
//! create` packs the kvprovider, `wash start provider` (by auction) and `wash start actor` wait
//! for their events, `wash get inventory` and `wash get links` parse our replies, `wash link
//! put` reaches the provider, `wash stop provider` / `wash stop actor` stop them. wash is not
//! built by CI (it needs its WASI adapter files from outside the registries): the test is
//! ignored unless asked for, and needs `$SHARDHOST_WASH` naming a wash 0.22 binary:
//!
//! `SHARDHOST_WASH=/path/to/wash cargo nextest run --run-ignored only -E 'test(wash)'`

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::providers::{file_ref, inventory_providers, provider_lab, record_config, CONTRACT};
use crate::support::provider::{kvprovider_bin_dir, wait_record};
use crate::support::rpc::{Lab, EVENT_TIMEOUT};
use crate::support::signed_kvcounter;

fn wash_binary() -> PathBuf {
    let path = PathBuf::from(std::env::var_os("SHARDHOST_WASH").expect("set SHARDHOST_WASH to a wash 0.22 binary"));
    assert!(path.is_file(), "SHARDHOST_WASH={} is not a file", path.display());
    path
}

/// Run a wash control command with `args` against the lab's NATS and lattice, JSON output;
/// returns the parsed output after checking it says success.
fn wash(lab: &Lab, args: &[&str]) -> Value {
    let port = lab.nats.port.to_string();
    let ctl = ["-r", "127.0.0.1", "-p", &port, "-x", &lab.host.lattice];
    wash_with(lab, args, &ctl)
}

fn wash_with(lab: &Lab, args: &[&str], extra: &[&str]) -> Value {
    let output = Command::new(wash_binary())
        .args(args)
        .args(["-o", "json"])
        .args(extra)
        .env("HOME", lab.dir.path())
        .output()
        .expect("run wash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "wash {args:?}: not JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success() && value["success"] == true,
        "wash {args:?}: {value}"
    );
    value
}

/// `wash keys gen {kind}`: a new seed.
fn seed(lab: &Lab, kind: &str) -> String {
    let output = Command::new(wash_binary())
        .args(["keys", "gen", kind, "-o", "json"])
        .env("HOME", lab.dir.path())
        .output()
        .expect("wash keys gen");
    let value: Value = serde_json::from_slice(&output.stdout).expect("keys json");
    value["seed"].as_str().expect("seed").to_string()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test]
#[ignore = "needs a wash 0.22 binary in $SHARDHOST_WASH"]
async fn wash_starts_lists_links_and_stops_providers_and_actors() {
    let (lab, _cache) = provider_lab("wash", &[]).await;
    let host = lab.host.id.clone();

    let hosts = wash(&lab, &["get", "hosts"]);
    assert_eq!(hosts["hosts"][0]["id"], host.as_str(), "{hosts}");

    let par = lab.dir.path().join("kv.par");
    let binary = kvprovider_bin_dir().join("kvprovider");
    let (issuer, subject) = (seed(&lab, "account"), seed(&lab, "service"));
    wash_with(
        &lab,
        &[
            "par",
            "create",
            "--capid",
            CONTRACT,
            "--vendor",
            "shardhost",
            "--name",
            "kvwash",
            "--arch",
            "x86_64-linux",
            "--binary",
            path_str(&binary),
            "--issuer",
            &issuer,
            "--subject",
            &subject,
            "--destination",
            path_str(&par),
        ],
        &[],
    );
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    let config_path = lab.dir.path().join("config.json");
    std::fs::write(&config_path, config).expect("config");
    // No --host-id: wash holds a provider auction and starts it on the bidder.
    let started = wash(
        &lab,
        &[
            "start",
            "provider",
            &file_ref(&par),
            "--config-json",
            path_str(&config_path),
        ],
    );
    assert_eq!(started["host_id"], host.as_str(), "{started}");
    let provider = started["provider_id"].as_str().expect("provider_id").to_string();
    let inventory = wash(&lab, &["get", "inventory", &host]);
    let providers = &inventory["inventories"][0]["providers"];
    assert_eq!(providers[0]["id"], provider.as_str(), "{inventory}");
    assert_eq!(providers[0]["name"], "kvwash");

    let counter = signed_kvcounter("wash");
    let actor_path = lab.dir.path().join("kvcounter.wasm");
    std::fs::write(&actor_path, &counter.bytes).expect("actor");
    let actor = wash(&lab, &["start", "actor", &file_ref(&actor_path), "--host-id", &host]);
    assert_eq!(actor["actor_id"], counter.key.as_str(), "{actor}");

    wash(
        &lab,
        &["link", "put", &counter.key, &provider, CONTRACT, "note=from-wash"],
    );
    wait_record(&records_path, 1, EVENT_TIMEOUT, "put_link from wash", |r| {
        r["event"] == "put_link" && r["actor_id"] == counter.key.as_str() && r["values"]["note"] == "from-wash"
    })
    .await;
    let links = wash(&lab, &["get", "links"]);
    assert_eq!(links["links"][0]["actor_id"], counter.key.as_str(), "{links}");
    let hit = lab
        .call(&counter.key, "Counter.Hit", b"")
        .await
        .expect("call through the wash link");
    assert_eq!(rmp_serde::from_slice::<i32>(&hit).expect("i32"), 1);

    wash(&lab, &["stop", "provider", &host, &provider, "default", CONTRACT]);
    wait_record(&records_path, 1, EVENT_TIMEOUT, "shutdown", |r| {
        r["event"] == "shutdown"
    })
    .await;
    assert!(inventory_providers(&lab).await.is_empty());
    wash(&lab, &["stop", "actor", &host, &counter.key]);
    let inventory = wash(&lab, &["get", "inventory", &host]);
    assert!(
        inventory["inventories"][0]["actors"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{inventory}"
    );
}

#[tokio::test]
#[ignore = "needs a wash 0.22 binary in $SHARDHOST_WASH"]
async fn wash_starts_links_and_stops_the_builtin_http_server() {
    let lab = crate::support::rpc::lab_with("washhttp", &[("--provider-health-interval-ms", "500")]).await;
    let host = lab.host.id.clone();
    let actor = crate::support::signed_http_echo();
    let actor_path = lab.dir.path().join("http.wasm");
    std::fs::write(&actor_path, &actor.bytes).expect("actor");
    wash(&lab, &["start", "actor", &file_ref(&actor_path), "--host-id", &host]);
    // By auction, as for a PAR.
    let started = wash(&lab, &["start", "provider", "wasmcloud+builtin://http-server"]);
    assert_eq!(started["host_id"], host.as_str(), "{started}");
    let key = shardhost::builtin::identity::BuiltinProvider::HttpServer.service_key();
    assert_eq!(started["provider_id"], key.as_str(), "{started}");
    let inventory = wash(&lab, &["get", "inventory", &host]);
    assert_eq!(
        inventory["inventories"][0]["providers"][0]["id"],
        key.as_str(),
        "{inventory}"
    );
    let port = crate::support::free_port();
    let address = format!("address=127.0.0.1:{port}");
    wash(
        &lab,
        &["link", "put", &actor.key, &key, "wasmcloud:httpserver", &address],
    );
    let answer = crate::support::eventually(EVENT_TIMEOUT, "HTTP through the built-in", || async {
        crate::support::http::get(port, "/wash").await.ok()
    })
    .await;
    assert_eq!(answer.status, 200);
    wash(
        &lab,
        &["stop", "provider", &host, &key, "default", "wasmcloud:httpserver"],
    );
    crate::support::eventually(EVENT_TIMEOUT, "the port closed", || async {
        crate::support::http::get(port, "/").await.is_err().then_some(())
    })
    .await;
    assert!(inventory_providers(&lab).await.is_empty());
}
