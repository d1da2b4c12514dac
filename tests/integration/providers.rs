//! Capability providers against a real nats-server, the real host process and a real provider
//! process: `tests/fixtures/kvprovider`, a `wasmcloud:keyvalue` provider built with the 0.x
//! provider SDK (wasmbus-rpc 0.15) and packed by provider-archive 0.8. Start from `file://`
//! and OCI, HostData with the links put before, links put and deleted while it runs, signed
//! actor → provider → reply and provider → actor calls, health through SIGSTOP/SIGCONT,
//! restarts after `kill -9`, a crash loop given up, duplicate starts and auctions, refused
//! archives, clean stops and no provider outliving its host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::provider::{make_par, process_alive, records, signed_par, wait_record, BuiltPar, Spoil};
use crate::support::rpc::{invocation, lab_with, outcome, Bin, Entity, Lab, EVENT_TIMEOUT, START_TIMEOUT};
use crate::support::{
    assert_accepted, assert_refused, eventually, expect_event, lattice_kv, linkdef_json, next_event, request_json,
    signed_echo, signed_kvcounter, ActorSpec,
};

pub(crate) const CONTRACT: &str = "wasmcloud:keyvalue";
/// Health checks every 400 ms in these tests (30 s by default).
pub(crate) const HEALTH_INTERVAL_MS: &str = "400";
/// Long enough for a SIGSTOPped provider's check to time out (rpc timeout 1.5 s) and the next.
pub(crate) const HEALTH_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A lab whose host checks provider health often and caches binaries in the lab's own dir.
pub(crate) async fn provider_lab(tag: &str, extra: &[(&str, &str)]) -> (Lab, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().display().to_string();
    let mut flags = vec![
        ("--provider-health-interval-ms", HEALTH_INTERVAL_MS),
        ("--cache-dir", cache_dir.as_str()),
    ];
    flags.extend_from_slice(extra);
    (lab_with(tag, &flags).await, cache)
}

/// Where the provider writes what it saw, and the `configuration` that tells it so.
pub(crate) fn record_config(lab: &Lab, name: &str, extra: Value) -> (PathBuf, String) {
    let path = lab.dir.path().join(format!("{name}.records"));
    let mut config = json!({ "record_path": path.display().to_string() });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    (path, config.to_string())
}

pub(crate) async fn launch(lab: &Lab, reference: &str, link_name: &str, configuration: &str) -> Value {
    let body = json!({
        "provider_ref": reference, "link_name": link_name, "host_id": lab.host.id, "configuration": configuration,
    });
    request_json(&lab.nc, &lab.host.cmd("lp"), body.to_string().as_bytes()).await
}

pub(crate) async fn put_link(lab: &Lab, actor: &str, provider: &str, values: Value) {
    let mut link = linkdef_json(actor, provider, CONTRACT, "default");
    link["values"] = values;
    let ack = request_json(&lab.nc, &lab.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await;
    assert_accepted(&ack, "linkdefs.put");
}

pub(crate) async fn inventory_providers(lab: &Lab) -> Vec<Value> {
    let inv = request_json(&lab.nc, &lab.host.ctl(&format!("get.{}.inv", lab.host.id)), b"").await;
    inv["providers"].as_array().cloned().unwrap_or_default()
}

pub(crate) fn file_ref(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The pid the provider recorded last (restarts record a new one).
pub(crate) fn last_pid(records_path: &Path) -> u32 {
    records(records_path)
        .iter()
        .rev()
        .find(|r| r["event"] == "pid")
        .and_then(|r| r["pid"].as_u64())
        .expect("a pid record") as u32
}

/// `lp` the provider and wait for `provider_started` and the first passed health check.
pub(crate) async fn start_provider(lab: &mut Lab, reference: &str, link_name: &str, configuration: &str) -> Value {
    assert_accepted(&launch(lab, reference, link_name, configuration).await, "lp");
    let started = expect_event(&mut lab.events, "provider_started", START_TIMEOUT, "lp").await;
    expect_event(
        &mut lab.events,
        "health_check_passed",
        EVENT_TIMEOUT,
        "first health check",
    )
    .await;
    started
}

pub(crate) fn decode_i32(bytes: &[u8]) -> i32 {
    rmp_serde::from_slice(bytes).unwrap_or_else(|e| panic!("not a msgpack i32 ({e}): {bytes:?}"))
}

#[tokio::test]
async fn a_wasmbus_rpc_provider_gets_its_links_serves_actors_calls_them_and_stops() {
    let (mut lab, cache) = provider_lab("prov", &[]).await;
    let par: BuiltPar = make_par(lab.dir.path(), "kv.par", false);

    // The kvcounter actor and its link exist before the provider starts.
    let counter = signed_kvcounter("hits");
    lab.start("kvcounter.wasm", &counter, 1).await;
    put_link(&lab, &counter.key, &par.key, json!({ "note": "before start" })).await;
    expect_event(&mut lab.events, "linkdef_set", EVENT_TIMEOUT, "link before start").await;

    let (records_path, config) = record_config(&lab, "kv", json!({}));
    let started = start_provider(&mut lab, &file_ref(&par.path), "default", &config).await;
    let data = &started["data"];
    assert_eq!(data["public_key"], par.key.as_str());
    assert_eq!(data["link_name"], "default");
    assert_eq!(data["contract_id"], CONTRACT);
    assert_eq!(data["host_id"], lab.host.id.as_str());
    assert_eq!(data["claims"]["name"], "kvprovider");
    // wadm 0.10 reads provider tags as a comma-joined string or null, never an array.
    assert!(data["claims"]["tags"].is_null(), "{data}");
    for field in ["issuer", "version", "not_before_human", "expires_human"] {
        assert!(data["claims"][field].is_string(), "claims.{field}: {data}");
    }
    assert!(data["instance_id"].as_str().is_some_and(|i| !i.is_empty()), "{data}");

    // HostData: who we are, the links put before the start, our cluster key.
    let host_data = wait_record(&records_path, 1, EVENT_TIMEOUT, "host_data", |r| {
        r["event"] == "host_data"
    })
    .await;
    assert_eq!(host_data["host_id"], lab.host.id.as_str());
    assert_eq!(host_data["provider_key"], par.key.as_str());
    assert_eq!(host_data["link_actor_ids"], json!([counter.key]));
    assert_eq!(host_data["cluster_issuers"][0], lab.cluster.public_key().as_str());
    assert_eq!(host_data["default_rpc_timeout_ms"], 1500);
    wait_record(&records_path, 1, EVENT_TIMEOUT, "put_link from HostData", |r| {
        r["event"] == "put_link" && r["actor_id"] == counter.key.as_str()
    })
    .await;

    // The binary was extracted under the cache dir's wasmcloudcache tree, mode 0755.
    let cached = cache.path().join("wasmcloudcache");
    assert!(cached.is_dir(), "no wasmcloudcache under {}", cache.path().display());

    // Inventory and KV.
    let providers = inventory_providers(&lab).await;
    assert_eq!(providers.len(), 1, "{providers:?}");
    assert_eq!(providers[0]["id"], par.key.as_str());
    assert_eq!(providers[0]["contract_id"], CONTRACT);
    assert_eq!(providers[0]["name"], "kvprovider");
    assert_eq!(providers[0]["image_ref"], file_ref(&par.path).as_str());
    let kv = lattice_kv(&lab.nc, &lab.host.lattice).await;
    let claims = kv
        .get(format!("CLAIMS_{}", par.key))
        .await
        .expect("kv get")
        .expect("CLAIMS_ for the provider");
    let claims: Value = serde_json::from_slice(&claims).expect("claims json");
    assert_eq!(claims["contract_id"], CONTRACT);
    assert_eq!(claims["sub"], par.key.as_str());

    // Actor → provider → reply, through signed calls both ways.
    assert_eq!(
        decode_i32(&lab.call(&counter.key, "Counter.Hit", b"").await.expect("first hit")),
        1
    );
    assert_eq!(
        decode_i32(&lab.call(&counter.key, "Counter.Hit", b"").await.expect("second hit")),
        2
    );

    // Provider → actor: the provider signs with the invocation seed the host handed it.
    let echo = signed_echo(ActorSpec {
        marker: 7,
        caps: vec![CONTRACT.to_string()],
        ..ActorSpec::default()
    });
    lab.start("echo.wasm", &echo, 1).await;
    put_link(&lab, &echo.key, &par.key, json!({})).await;
    wait_record(&records_path, 1, EVENT_TIMEOUT, "put_link while running", |r| {
        r["event"] == "put_link" && r["actor_id"] == echo.key.as_str()
    })
    .await;
    #[derive(serde::Serialize)]
    struct CallActor<'a> {
        actor_id: &'a str,
        operation: &'a str,
        payload: Bin<'a>,
    }
    let request = rmp_serde::to_vec_named(&CallActor {
        actor_id: &echo.key,
        operation: "Echo.Say",
        payload: Bin(b"from the provider"),
    })
    .expect("msgpack");
    let (id, bytes) = invocation(
        &lab.cluster,
        Entity::actor(&counter.key),
        Entity::provider(&par.key, CONTRACT, "default"),
        "Test.CallActor",
        &request,
        &request,
    );
    let subject = format!("wasmbus.rpc.{}.{}.default", lab.host.lattice, par.key);
    let reply = outcome(&lab.send(&subject, bytes).await, &id).expect("provider → actor call");
    assert_eq!(reply, b"from the provider");

    // A link deleted while it runs reaches delete_link.
    let del = json!({ "actor_id": echo.key, "contract_id": CONTRACT, "link_name": "default" });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.ctl("linkdefs.del"), del.to_string().as_bytes()).await,
        "linkdefs.del",
    );
    wait_record(&records_path, 1, EVENT_TIMEOUT, "delete_link", |r| {
        r["event"] == "delete_link" && r["actor_id"] == echo.key.as_str()
    })
    .await;

    // Stop: shutdown request, provider_stopped, no process left, CLAIMS_ stays.
    let pid = last_pid(&records_path);
    let sp =
        json!({ "provider_ref": par.key, "link_name": "default", "contract_id": CONTRACT, "host_id": lab.host.id });
    assert_accepted(
        &request_json(&lab.nc, &lab.host.cmd("sp"), sp.to_string().as_bytes()).await,
        "sp",
    );
    let stopped = expect_event(&mut lab.events, "provider_stopped", EVENT_TIMEOUT, "sp").await;
    assert_eq!(stopped["data"]["public_key"], par.key.as_str());
    assert_eq!(stopped["data"]["reason"], "normal");
    wait_record(&records_path, 1, EVENT_TIMEOUT, "shutdown", |r| {
        r["event"] == "shutdown"
    })
    .await;
    eventually(EVENT_TIMEOUT, "provider process gone", || async {
        (!process_alive(pid)).then_some(())
    })
    .await;
    assert!(inventory_providers(&lab).await.is_empty());
    assert!(kv.get(format!("CLAIMS_{}", par.key)).await.expect("kv get").is_some());
    // Stopping again says it is not running.
    let error = assert_refused(
        &request_json(&lab.nc, &lab.host.cmd("sp"), sp.to_string().as_bytes()).await,
        "second sp",
    );
    assert!(error.contains("not running"), "{error}");
}

/// A link put right after `provider_started`, before the provider's SDK has subscribed to
/// `linkdefs.put`: the control plane's forward reaches NATS with nobody listening (the harness
/// met this every time: 262 of 262 calls refused "unlinked actor"). The host sends the links
/// put since the spawn again after the first passed health check, so the provider gets it.
#[tokio::test]
async fn a_link_put_while_the_provider_starts_still_reaches_it() {
    let (mut lab, _cache) = provider_lab("provrace", &[]).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let counter = signed_kvcounter("race");
    lab.start("kvcounter.wasm", &counter, 1).await;
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    assert_accepted(&launch(&lab, &file_ref(&par.path), "default", &config).await, "lp");
    expect_event(&mut lab.events, "provider_started", START_TIMEOUT, "lp").await;
    put_link(&lab, &counter.key, &par.key, json!({})).await;
    expect_event(
        &mut lab.events,
        "health_check_passed",
        EVENT_TIMEOUT,
        "first health check",
    )
    .await;
    wait_record(&records_path, 1, EVENT_TIMEOUT, "put_link after the start", |r| {
        r["event"] == "put_link" && r["actor_id"] == counter.key.as_str()
    })
    .await;
    let hit = eventually(EVENT_TIMEOUT, "the linked actor's call", || async {
        lab.call(&counter.key, "Counter.Hit", b"").await.ok()
    })
    .await;
    assert_eq!(decode_i32(&hit), 1);
}

#[tokio::test]
async fn refused_archives_emit_start_failed_and_spawn_nothing() {
    let (mut lab, cache) = provider_lab("provbad", &[]).await;
    // Refused before anything is extracted or spawned: a small ELF-looking binary will do.
    let binary = [b"\x7fELF".as_slice(), &[0u8; 64 << 10]].concat();
    let cases = [
        (Spoil::BadSignature, "does not verify"),
        (Spoil::Expired, "expired"),
        (Spoil::NotYetValid, "not valid before"),
        (Spoil::WrongHash, "changed after signing"),
        (Spoil::NoBinaryForPlatform, "no binary for"),
    ];
    for (spoil, reason) in cases {
        let (par, _key) = signed_par(&binary, spoil);
        let path = lab.dir.path().join(format!("{spoil:?}.par"));
        std::fs::write(&path, par).expect("write par");
        assert_accepted(&launch(&lab, &file_ref(&path), "default", "{}").await, "lp");
        let failed = expect_event(&mut lab.events, "provider_start_failed", EVENT_TIMEOUT, reason).await;
        let error = failed["data"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{spoil:?}: {error}");
        assert_eq!(failed["data"]["provider_ref"], file_ref(&path).as_str());
    }
    let garbage = lab.dir.path().join("garbage.par");
    std::fs::write(&garbage, b"this is not a provider archive at all, just bytes").expect("write");
    assert_accepted(&launch(&lab, &file_ref(&garbage), "default", "{}").await, "lp");
    let failed = expect_event(&mut lab.events, "provider_start_failed", EVENT_TIMEOUT, "garbage").await;
    assert!(
        failed["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a provider archive"),
        "{failed}"
    );
    let missing = lab.dir.path().join("missing.par");
    assert_accepted(&launch(&lab, &file_ref(&missing), "default", "{}").await, "lp");
    expect_event(&mut lab.events, "provider_start_failed", EVENT_TIMEOUT, "missing file").await;

    // Nothing ran and nothing was extracted.
    assert!(inventory_providers(&lab).await.is_empty());
    assert!(
        !cache.path().join("wasmcloudcache").exists(),
        "a refused archive was extracted"
    );
    assert!(
        next_event(&mut lab.events, "provider_started", Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn file_refs_need_allow_file_load_for_providers_too() {
    use crate::support::{host_with_events, unique_lattice, HostOptions, Nats};
    let nats = Nats::start();
    let (host, nc, mut events) = host_with_events(&nats, HostOptions::new(&unique_lattice("provfile"))).await;
    let body = json!({ "provider_ref": "file:///tmp/whatever.par", "link_name": "default", "host_id": host.id });
    let error = assert_refused(
        &request_json(&nc, &host.cmd("lp"), body.to_string().as_bytes()).await,
        "lp without --allow-file-load",
    );
    assert!(error.contains("--allow-file-load"), "{error}");
    let failed = expect_event(&mut events, "provider_start_failed", EVENT_TIMEOUT, "file gate").await;
    assert!(failed["data"]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("--allow-file-load"));
}

#[tokio::test]
async fn duplicates_are_refused_and_auctions_bid_only_when_the_host_can_run_it() {
    let (mut lab, _cache) = provider_lab("provdup", &[("--label", "zone=edge")]).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let reference = file_ref(&par.path);
    let auction = |constraints: Value| {
        json!({ "provider_ref": reference, "link_name": "default", "constraints": constraints }).to_string()
    };
    let auction_subject = lab.host.ctl("auction.provider");
    let auction_nc = lab.nc.clone();
    let bid = |body: String| {
        let nc = auction_nc.clone();
        let subject = auction_subject.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(1), nc.request(subject, body.into())).await {
                Ok(Ok(reply)) => Some(serde_json::from_slice::<Value>(&reply.payload).expect("bid json")),
                _ => None,
            }
        }
    };
    assert!(
        bid(auction(json!({ "zone": "core" }))).await.is_none(),
        "bid despite constraints"
    );
    let offer = bid(auction(json!({ "zone": "edge" }))).await.expect("a bid");
    assert_eq!(offer["host_id"], lab.host.id.as_str());
    assert_eq!(offer["provider_ref"], reference.as_str());
    assert_eq!(offer["link_name"], "default");

    let (_records, config) = record_config(&lab, "kv", json!({}));
    start_provider(&mut lab, &reference, "default", &config).await;
    let error = assert_refused(&launch(&lab, &reference, "default", &config).await, "duplicate lp");
    assert!(error.contains("already running"), "{error}");
    expect_event(&mut lab.events, "provider_start_failed", EVENT_TIMEOUT, "duplicate").await;
    assert!(
        bid(auction(json!({}))).await.is_none(),
        "bid for a provider already running here"
    );
    assert_eq!(inventory_providers(&lab).await.len(), 1);
    // Another link name is another instance.
    let other = json!({ "provider_ref": reference, "link_name": "second", "constraints": {} }).to_string();
    assert!(bid(other).await.is_some(), "a bid for another link name");
}

#[tokio::test]
async fn a_provider_starts_from_an_oci_registry() {
    let registry = crate::support::Registry::start();
    let (mut lab, _cache) = provider_lab("provoci", &[("--allowed-insecure", "")]).await;
    let par = make_par(lab.dir.path(), "kv.par", true);
    let reference = format!("{}/providers/kv:0.1.0", registry.addr);
    crate::oci::push_provider(&registry, &reference, &std::fs::read(&par.path).expect("par")).await;
    // A host that does not list the registry as insecure cannot pull over HTTP.
    assert_accepted(&launch(&lab, &reference, "default", "{}").await, "lp (https)");
    let failed = expect_event(&mut lab.events, "provider_start_failed", START_TIMEOUT, "https").await;
    assert!(
        failed["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&registry.addr),
        "{failed}"
    );
    drop(lab);

    let (mut lab, _cache) = provider_lab("provoci2", &[("--allowed-insecure", &registry.addr)]).await;
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    let started = start_provider(&mut lab, &reference, "default", &config).await;
    assert_eq!(started["data"]["public_key"], par.key.as_str());
    assert_eq!(started["data"]["image_ref"], reference.as_str());
    wait_record(&records_path, 1, EVENT_TIMEOUT, "host_data", |r| {
        r["event"] == "host_data"
    })
    .await;
    let kv = lattice_kv(&lab.nc, &lab.host.lattice).await;
    let refmap_key = format!(
        "REFMAP_{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, reference.as_bytes())
    );
    let refmap = kv.get(refmap_key).await.expect("kv").expect("REFMAP_ for the OCI ref");
    let refmap: Value = serde_json::from_slice(&refmap).expect("json");
    assert_eq!(refmap["public_key"], par.key.as_str());
}

#[tokio::test]
async fn the_control_interface_client_auctions_starts_lists_and_stops_a_provider() {
    let (mut lab, _cache) = provider_lab("provclient", &[]).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let reference = file_ref(&par.path);
    let client = crate::interop::ctl_client(&lab.nats, &lab.host.lattice).await;

    let bids = client
        .perform_provider_auction(&reference, "default", std::collections::HashMap::new())
        .await
        .expect("provider auction");
    assert_eq!(bids.len(), 1, "{bids:?}");
    assert_eq!(bids[0].host_id, lab.host.id);

    let (records_path, config) = record_config(&lab, "kv", json!({}));
    let ack = client
        .start_provider(&lab.host.id, &reference, Some("default".into()), None, Some(config))
        .await
        .expect("start_provider");
    assert!(ack.accepted, "{ack:?}");
    expect_event(&mut lab.events, "provider_started", START_TIMEOUT, "start_provider").await;
    wait_record(&records_path, 1, EVENT_TIMEOUT, "host_data", |r| {
        r["event"] == "host_data"
    })
    .await;

    let inventory = client.get_host_inventory(&lab.host.id).await.expect("inventory");
    assert_eq!(inventory.providers.len(), 1, "{inventory:?}");
    let provider = &inventory.providers[0];
    assert_eq!(provider.id, par.key);
    assert_eq!(provider.link_name, "default");
    assert_eq!(provider.contract_id, CONTRACT);
    assert_eq!(provider.name.as_deref(), Some("kvprovider"));
    assert_eq!(provider.revision, 1);
    assert_eq!(provider.image_ref.as_deref(), Some(reference.as_str()));

    let ack = client
        .stop_provider(&lab.host.id, &par.key, "default", CONTRACT, None)
        .await
        .expect("stop_provider");
    assert!(ack.accepted, "{ack:?}");
    expect_event(&mut lab.events, "provider_stopped", EVENT_TIMEOUT, "stop_provider").await;
    let inventory = client.get_host_inventory(&lab.host.id).await.expect("inventory");
    assert!(inventory.providers.is_empty(), "{inventory:?}");
}

#[tokio::test]
async fn the_control_interface_answers_while_a_large_archive_downloads() {
    use rand::RngCore;
    let registry = crate::support::Registry::start();
    let (mut lab, _cache) = provider_lab("provbig", &[("--allowed-insecure", &registry.addr)]).await;
    // 40 MB that hash and sign correctly but are no executable (refused after the download).
    let mut binary = vec![0u8; 40 << 20];
    rand::thread_rng().fill_bytes(&mut binary);
    let (par, _key) = signed_par(&binary, Spoil::None);
    let reference = format!("{}/providers/big:0.1.0", registry.addr);
    crate::oci::push_provider(&registry, &reference, &par).await;

    assert_accepted(&launch(&lab, &reference, "default", "{}").await, "lp");
    let ping = request_json(&lab.nc, &lab.host.ctl("ping.hosts"), b"").await;
    assert_eq!(ping["id"], lab.host.id.as_str());
    let inv = request_json(&lab.nc, &lab.host.ctl(&format!("get.{}.inv", lab.host.id)), b"").await;
    assert_eq!(inv["host_id"], lab.host.id.as_str());
    // Both were answered before the start finished: no outcome is queued on our connection yet.
    let early = next_event(&mut lab.events, "provider_start_failed", Duration::from_millis(0)).await;
    assert!(early.is_none(), "the control plane waited for the archive: {early:?}");
    let failed = expect_event(&mut lab.events, "provider_start_failed", START_TIMEOUT, "big archive").await;
    let error = failed["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("not an executable"), "{error}");
    assert!(inventory_providers(&lab).await.is_empty());
}
