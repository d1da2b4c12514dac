//! wadm 0.10 (the declarative deployer of the 0.x era) driving shardhost: an application with
//! the kvcounter actor at 2 replicas, the kvprovider capability and a link between them is put,
//! deployed (wadm scales the actor, starts the provider, puts the link), serves a call through
//! the link, and is undeployed. wadm is not built by CI (a 12-minute build): the test is
//! ignored unless asked for, and needs `$SHARDHOST_WADM` naming a wadm 0.10 binary
//! (`cargo install wadm --version 0.10.0 --features cli`, with `time` pinned to 0.3.36):
//!
//! `SHARDHOST_WADM=/path/to/wadm cargo nextest run --run-ignored only -E 'test(wadm)'`

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::providers::{decode_i32, file_ref, inventory_providers, CONTRACT};
use crate::support::provider::make_par;
use crate::support::rpc::{Lab, EVENT_TIMEOUT};
use crate::support::{
    expect_event, free_port, get_links, signed_http_echo, signed_kvcounter, unique_lattice, HostOptions, Nats,
    REQUEST_TIMEOUT,
};

/// Longest wadm may take to report the application deployed: less than one 30 s heartbeat,
/// so a deploy that only settles on a heartbeat fails.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(25);

/// The wadm process, killed on drop; its log is printed when the test fails.
struct Wadm(Child, PathBuf);

impl Drop for Wadm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            eprintln!("--- wadm log ---\n{log}\n--- end of wadm log ---");
        }
    }
}

fn wadm_binary() -> PathBuf {
    let path = PathBuf::from(std::env::var_os("SHARDHOST_WADM").expect("set SHARDHOST_WADM to a wadm 0.10 binary"));
    assert!(path.is_file(), "SHARDHOST_WADM={} is not a file", path.display());
    path
}

async fn wadm_request(nc: &async_nats::Client, subject: String, body: Vec<u8>) -> Value {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, nc.request(subject.clone(), body.into()))
        .await
        .unwrap_or_else(|_| panic!("no wadm reply on {subject}"))
        .unwrap_or_else(|e| panic!("wadm request {subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| panic!("wadm reply on {subject} ({e})"))
}

/// wadm running against `nats` for `lattice` (answering `model.list`), with its log in `dir`.
async fn start_wadm(nats: &Nats, dir: &std::path::Path, lattice: &str) -> Wadm {
    let wadm_bin = wadm_binary();
    let probe = nats.client().await;
    let log_path = dir.join("wadm.log");
    let log = std::fs::File::create(&log_path).expect("wadm log");
    let wadm = Wadm(
        Command::new(&wadm_bin)
            .args(["--nats-server", &format!("127.0.0.1:{}", nats.port)])
            .env("RUST_LOG", "info,wadm=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn wadm"),
        log_path,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let subject = format!("wadm.api.{lattice}.model.list");
        let reply = tokio::time::timeout(Duration::from_secs(1), probe.request(subject, "".into())).await;
        if matches!(reply, Ok(Ok(_))) {
            return wadm;
        }
        assert!(Instant::now() < deadline, "wadm did not answer model.list");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Put `manifest` as application `name`, deploy it and wait for wadm to call it deployed.
async fn deploy(lab: &Lab, lattice: &str, name: &str, manifest: &Value) {
    let api = |rest: &str| format!("wadm.api.{lattice}.{rest}");
    let put = wadm_request(&lab.nc, api("model.put"), manifest.to_string().into_bytes()).await;
    assert_eq!(put["result"], "created", "{put}");
    let started = Instant::now();
    let deploy = wadm_request(&lab.nc, api(&format!("model.deploy.{name}")), b"{}".to_vec()).await;
    assert_eq!(deploy["result"], "acknowledged", "{deploy}");
    let mut last = Value::Null;
    while started.elapsed() < DEPLOY_TIMEOUT {
        last = wadm_request(&lab.nc, api(&format!("model.status.{name}")), Vec::new()).await;
        if last["status"]["status"]["type"] == "deployed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        last["status"]["status"]["type"], "deployed",
        "not deployed in {DEPLOY_TIMEOUT:?}: {last}"
    );
    eprintln!("wadm reported {name} deployed after {:?}", started.elapsed());
}

#[tokio::test]
#[ignore = "needs a wadm 0.10 binary in $SHARDHOST_WADM"]
async fn wadm_deploys_and_undeploys_an_application_on_shardhost() {
    let nats = Nats::start();
    // As `wash up` does: wadm runs before the host, so it sees the lattice's host_started.
    let dir = tempfile::tempdir().expect("tempdir");
    let lattice = unique_lattice("wadm");
    let api = |rest: &str| format!("wadm.api.{lattice}.{rest}");
    let _wadm = start_wadm(&nats, dir.path(), &lattice).await;

    let options = HostOptions::new(&lattice).arg("--provider-health-interval-ms", "1000");
    let mut lab = Lab::start_on(nats, options, dir).await;
    let counter = signed_kvcounter("wadm");
    let actor_path = lab.dir.path().join("kvcounter.wasm");
    std::fs::write(&actor_path, &counter.bytes).expect("write actor");
    let par = make_par(lab.dir.path(), "kv.par", true);
    let manifest = json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": { "name": "kvcount", "annotations": { "version": "v0.0.1", "description": "shardhost wadm test" } },
        "spec": { "components": [
            { "name": "counter", "type": "actor",
              "properties": { "image": file_ref(&actor_path) },
              "traits": [
                  { "type": "spreadscaler", "properties": { "replicas": 2 } },
                  { "type": "linkdef", "properties": { "target": "kv", "values": { "note": "from wadm" } } }
              ] },
            { "name": "kv", "type": "capability",
              "properties": { "image": file_ref(&par.path), "contract": CONTRACT },
              "traits": [ { "type": "spreadscaler", "properties": { "replicas": 1 } } ] }
        ] }
    });
    deploy(&lab, &lattice, "kvcount", &manifest).await;

    // What wadm asked for is what runs: 2 as max concurrency of one annotated group, the
    // provider, the link.
    let inv = crate::support::request_json(&lab.nc, &lab.host.ctl(&format!("get.{}.inv", lab.host.id)), b"").await;
    let actor = inv["actors"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == counter.key.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("actor not in inventory: {inv}"));
    assert_eq!(actor["instances"][0]["max_concurrent"], 2, "{actor}");
    assert_eq!(
        actor["instances"][0]["annotations"]["wasmcloud.dev/appspec"], "kvcount",
        "{actor}"
    );
    let providers = inventory_providers(&lab).await;
    assert_eq!(providers.len(), 1, "{providers:?}");
    assert_eq!(providers[0]["id"], par.key.as_str());
    let links = get_links(&lab.nc, &lattice).await;
    assert!(
        links
            .iter()
            .any(|l| l["actor_id"] == counter.key.as_str() && l["provider_id"] == par.key.as_str()),
        "{links:?}"
    );
    assert_eq!(
        decode_i32(&lab.call(&counter.key, "Counter.Hit", b"").await.expect("hit")),
        1
    );

    let undeploy = wadm_request(
        &lab.nc,
        api("model.undeploy.kvcount"),
        br#"{"non_destructive":false}"#.to_vec(),
    )
    .await;
    assert_eq!(undeploy["result"], "acknowledged", "{undeploy}");
    expect_event(&mut lab.events, "actors_stopped", EVENT_TIMEOUT, "undeploy").await;
    expect_event(&mut lab.events, "provider_stopped", EVENT_TIMEOUT, "undeploy").await;
    let inv = crate::support::request_json(&lab.nc, &lab.host.ctl(&format!("get.{}.inv", lab.host.id)), b"").await;
    assert!(inv["actors"].as_array().is_some_and(Vec::is_empty), "{inv}");
}

#[tokio::test]
#[ignore = "needs a wadm 0.10 binary in $SHARDHOST_WADM"]
async fn wadm_deploys_an_application_with_the_builtin_http_server() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lattice = unique_lattice("wadmhttp");
    let _wadm = start_wadm(&nats, dir.path(), &lattice).await;
    let options = HostOptions::new(&lattice).arg("--provider-health-interval-ms", "1000");
    let lab = Lab::start_on(nats, options, dir).await;
    let actor = signed_http_echo();
    let actor_path = lab.dir.path().join("http.wasm");
    std::fs::write(&actor_path, &actor.bytes).expect("write actor");
    let port = free_port();
    let manifest = json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": { "name": "builtinhttp", "annotations": { "version": "v0.0.1" } },
        "spec": { "components": [
            { "name": "echo", "type": "actor",
              "properties": { "image": file_ref(&actor_path) },
              "traits": [
                  { "type": "spreadscaler", "properties": { "replicas": 1 } },
                  { "type": "linkdef", "properties": { "target": "httpserver", "values": { "address": format!("127.0.0.1:{port}") } } }
              ] },
            { "name": "httpserver", "type": "capability",
              "properties": { "image": "wasmcloud+builtin://http-server", "contract": "wasmcloud:httpserver" },
              "traits": [ { "type": "spreadscaler", "properties": { "replicas": 1 } } ] }
        ] }
    });
    deploy(&lab, &lattice, "builtinhttp", &manifest).await;
    let providers = inventory_providers(&lab).await;
    assert_eq!(
        providers[0]["id"],
        shardhost::builtin::identity::BuiltinProvider::HttpServer
            .service_key()
            .as_str(),
        "{providers:?}"
    );
    let answer = crate::support::eventually(EVENT_TIMEOUT, "HTTP through the built-in", || async {
        crate::support::http::get(port, "/wadm").await.ok()
    })
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-actor"), Some("wat"));
}
