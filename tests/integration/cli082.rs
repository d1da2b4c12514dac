//! The wasmCloud 0.82 command line, whole: one host started the way a 0.82 host is started, with
//! every 0.82 setting given once, as its flag or as its environment variable (0.82's misspelt
//! `WASMCOULD_NATS_SEED` among them), against nats-server in operator mode (every connection
//! must authenticate, and only the default `--nats-jwt`/`--nats-seed` credentials are given)
//! with a JetStream domain, and a registry behind basic auth. Each value is then checked where
//! it shows: ping, events, a pulled and invoked actor, a provider's HostData and stop, the log.
//!
//! Not given: `--ctl-jwt`/`--ctl-seed`/`--rpc-jwt`/`--rpc-seed` (they would hide the default
//! credentials this test is about; `provider_credentials` gives them), `--ctl-tls`/`--rpc-tls`
//! (TLS is another issue's), and `--lattice-prefix`/`WASMCLOUD_LATTICE_PREFIX` (the harness gives
//! `--lattice`; the aliases are unit-tested in `config_tests`).

use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use serde_json::{json, Value};
use shardhost::control::fetch::ACTOR_LAYER_MEDIA_TYPE;

use crate::oci::push;
use crate::provider_credentials::operator_mode_nats;
use crate::providers::{file_ref, last_pid, CONTRACT};
use crate::support::policy::{Answer, PolicyService};
use crate::support::provider::{make_par, wait_record};
use crate::support::rpc::{invocation, outcome, reloadable_key, Entity, EVENT_TIMEOUT, REPLY_TIMEOUT, START_TIMEOUT};
use crate::support::{
    assert_accepted, expect_event, request_json, signed_echo, string_map, unique_lattice, ActorSpec, Host, HostOptions,
    Registry,
};

/// `WASMCLOUD_CTL_TOPIC_PREFIX`: every control request of this test goes under it.
const CTL_PREFIX: &str = "edge.ctl";
/// `WASMCLOUD_JS_DOMAIN`, and the domain the server's JetStream runs in.
const JS_DOMAIN: &str = "edgejs";
/// `WASMCLOUD_PROV_SHUTDOWN_DELAY_MS`: far above the 300 ms default, so a stop of a provider
/// that never exits shows it.
const SHUTDOWN_DELAY_MS: u64 = 1_500;
/// `WASMCLOUD_RPC_TIMEOUT_MS`, which providers get as `default_rpc_timeout_ms`.
const RPC_TIMEOUT_MS: u64 = 1_700;
/// The one start-up warning's message (`config_compat::warn_not_acted_on`).
const NOT_ACTED_ON: &str = "accepted for wasmCloud 0.82 compatibility and not acted on by this host";

fn ctl(lattice: &str, rest: &str) -> String {
    format!("{CTL_PREFIX}.{lattice}.{rest}")
}

/// The host's log, one JSON object per line (structured logging is on).
fn log_lines(host: &Host) -> Vec<Value> {
    let stderr = host.stderr();
    stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}")))
        .collect()
}

#[tokio::test]
async fn a_complete_082_command_line_and_environment_take_effect() {
    let store = tempfile::tempdir().expect("JetStream store");
    let jetstream = format!(
        "jetstream: {{ store_dir: \"{}\", domain: \"{JS_DOMAIN}\" }}",
        store.path().display()
    );
    let (nats, _account, (jwt, seed)) = operator_mode_nats(&jetstream);
    let port = nats.port.to_string();
    let registry = Registry::start_with_basic_auth("edge", "s3cret");
    let echo = signed_echo(ActorSpec::default());
    let reference = format!("{}/cli082/echo:latest", registry.addr);
    let auth = RegistryAuth::Basic("edge".into(), "s3cret".into());
    push(&registry, &reference, &echo.bytes, ACTOR_LAYER_MEDIA_TYPE, &auth).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let par = make_par(dir.path(), "kv.par", false);

    let host_key = nkeys::KeyPair::new_server();
    let cluster = reloadable_key(wascap::prelude::KeyPair::new_cluster);
    let issuers = [
        nkeys::KeyPair::new_cluster().public_key(),
        nkeys::KeyPair::new_cluster().public_key(),
    ];
    // 0.82's OpenTelemetry flag and variable act: spans reach this collector.
    let collector = crate::support::otlp::OtlpReceiver::start().await;
    let otlp_endpoint = collector.url.as_str();
    let lattice = unique_lattice("cli082");
    // The harness adds --nats-host, --nats-port, --lattice, --log-level debug (and --shards).
    let mut options = HostOptions::new(&lattice)
        .arg("--cluster-seed", &cluster.seed().expect("seed"))
        .arg("-l", "app=web")
        .arg("--label", "region=flag")
        .arg("--ctl-host", "127.0.0.1")
        .arg("--rpc-port", &port)
        .arg("--policy-topic", "wasmcloud.policy")
        .arg("--policy-changes-topic", "wasmcloud.policy.changes")
        .arg("--otel-traces-exporter", "otlp")
        .env("WASMCLOUD_NATS_JWT", &jwt)
        .env("WASMCOULD_NATS_SEED", &seed)
        .env("WASMCLOUD_HOST_SEED", &host_key.seed().expect("seed"))
        .env("WASMCLOUD_CLUSTER_ISSUERS", &issuers.join(","))
        .env("WASMCLOUD_PROV_SHUTDOWN_DELAY_MS", &SHUTDOWN_DELAY_MS.to_string())
        .env("WASMCLOUD_OCI_ALLOWED_INSECURE", &registry.addr)
        .env("WASMCLOUD_OCI_REGISTRY", &registry.addr)
        .env("WASMCLOUD_OCI_REGISTRY_USER", "edge")
        .env("WASMCLOUD_OCI_REGISTRY_PASSWORD", "s3cret")
        .env("WASMCLOUD_JS_DOMAIN", JS_DOMAIN)
        .env("WASMCLOUD_STRUCTURED_LOGGING_ENABLED", "true")
        .env("WASMCLOUD_LABEL_ZONE", "x")
        .env("WASMCLOUD_LABEL_region", "env")
        .env("WASMCLOUD_CTL_PORT", &port)
        .env("WASMCLOUD_CTL_TOPIC_PREFIX", CTL_PREFIX)
        .env("WASMCLOUD_RPC_HOST", "127.0.0.1")
        .env("WASMCLOUD_RPC_TIMEOUT_MS", &RPC_TIMEOUT_MS.to_string())
        .env("WASMCLOUD_POLICY_TIMEOUT", "900")
        .env("WASMCLOUD_CONFIG_SERVICE", "true")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint);
    options
        .args
        .extend(["--allow-latest", "--allow-file-load"].map(String::from));
    // Started at all: the ctl connection and the lattice bucket (through the JetStream domain)
    // authenticated with the default credentials, the seed read from the misspelt variable.
    // The policy service the host must ask (0.82 fails closed without one): permits everything.
    let policy = PolicyService::start(&nats.client().await, "wasmcloud.policy", |_| Answer::Permit).await;
    let host = Host::start(&nats, options).await;
    assert_eq!(host.id, host_key.public_key(), "WASMCLOUD_HOST_SEED");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.expect("events");
    nc.flush().await.expect("flush");

    check_ping(&nc, &host, &cluster.public_key(), &issuers, &port).await;
    check_actor_from_the_registry(&nc, &mut events, &host, &reference, &echo.key, &cluster).await;
    check_provider(&nc, &mut events, &host, &par, dir.path(), &jwt, &port).await;
    let asked: Vec<_> = policy.requests().iter().map(|r| r["action"].clone()).collect();
    assert!(
        asked.contains(&serde_json::json!("start_actor")) && asked.contains(&serde_json::json!("start_provider")),
        "--policy-topic is acted on: {asked:?}"
    );
    check_log(&host, &["WASMCLOUD_CONFIG_SERVICE"]);
    collector
        .wait_spans(
            "spans exported by 0.82's OTEL settings",
            Duration::from_secs(20),
            |spans| {
                spans
                    .iter()
                    .any(|s| s.name == "ctl cmd.la" && s.service == "wasmcloud-host")
            },
        )
        .await;
}

/// Identity, issuers, labels (case kept, the flag winning), JetStream domain, connection URLs, and
/// the control prefix (the default one has nobody listening).
async fn check_ping(nc: &async_nats::Client, host: &Host, issuer: &str, issuers: &[String], port: &str) {
    let ping = request_json(nc, &ctl(&host.lattice, "ping.hosts"), b"").await;
    assert_eq!(ping["id"], host.id.as_str());
    assert_eq!(ping["issuer"], issuer, "--cluster-seed");
    let trusted: Vec<&str> = ping["cluster_issuers"]
        .as_str()
        .expect("cluster_issuers")
        .split(',')
        .collect();
    for key in issuers.iter().map(String::as_str).chain([issuer]) {
        assert!(trusted.contains(&key), "WASMCLOUD_CLUSTER_ISSUERS: {trusted:?}");
    }
    let labels = string_map(&ping["labels"], "ping.labels");
    assert_eq!(labels.get("ZONE").map(String::as_str), Some("x"), "{labels:?}");
    assert!(!labels.contains_key("zone"), "label keys keep their case: {labels:?}");
    assert_eq!(labels.get("app").map(String::as_str), Some("web"), "{labels:?}");
    assert_eq!(
        labels.get("region").map(String::as_str),
        Some("flag"),
        "a flag wins: {labels:?}"
    );
    assert_eq!(ping["js_domain"], JS_DOMAIN);
    let url = format!("nats://127.0.0.1:{port}");
    for field in ["ctl_host", "rpc_host", "prov_rpc_host"] {
        assert_eq!(ping[field], url.as_str(), "{field}: {ping}");
    }
    let default_prefix = nc
        .request(format!("wasmbus.ctl.{}.ping.hosts", host.lattice), "".into())
        .await;
    assert!(default_prefix.is_err(), "nobody answers under the default ctl prefix");
}

/// A `:latest` actor pulled over plain HTTP with the registry's credentials, then invoked over the
/// shards' own (authenticated) rpc connections with an invocation the cluster key signed.
async fn check_actor_from_the_registry(
    nc: &async_nats::Client,
    events: &mut async_nats::Subscriber,
    host: &Host,
    reference: &str,
    actor: &str,
    cluster: &wascap::prelude::KeyPair,
) {
    let la = json!({ "actor_ref": reference, "count": 1, "host_id": host.id });
    let ack = request_json(
        nc,
        &ctl(&host.lattice, &format!("cmd.{}.la", host.id)),
        la.to_string().as_bytes(),
    )
    .await;
    assert_accepted(&ack, "la");
    let started = expect_event(events, "actors_started", START_TIMEOUT, "la of the :latest actor").await;
    assert_eq!(started["data"]["public_key"], actor, "{started}");
    // An origin whose claims the host knows (the actor itself): with a policy service, 0.82
    // denies an invocation from an origin whose claims it does not know.
    let origin = Entity::actor(actor);
    let (id, bytes) = invocation(cluster, origin, Entity::actor(actor), "Echo.Say", b"edge", b"edge");
    let reply = tokio::time::timeout(
        REPLY_TIMEOUT,
        nc.request(format!("wasmbus.rpc.{}.{actor}", host.lattice), bytes.into()),
    )
    .await
    .expect("reply in time")
    .expect("reply");
    assert_eq!(outcome(&reply.payload, &id).expect("echo"), b"edge");
}

/// A provider from `file://`: HostData has the rpc connection, the default credentials,
/// the rpc timeout and structured logging; its health passes (it authenticated); and a stop of
/// it, SIGSTOPped, takes the shutdown delay.
async fn check_provider(
    nc: &async_nats::Client,
    events: &mut async_nats::Subscriber,
    host: &Host,
    par: &crate::support::provider::BuiltPar,
    dir: &std::path::Path,
    jwt: &str,
    port: &str,
) {
    let records = dir.join("kv.records");
    let configuration = json!({ "record_path": records.display().to_string() }).to_string();
    let lp = json!({
        "provider_ref": file_ref(&par.path), "link_name": "default", "host_id": host.id, "configuration": configuration,
    });
    let ack = request_json(
        nc,
        &ctl(&host.lattice, &format!("cmd.{}.lp", host.id)),
        lp.to_string().as_bytes(),
    )
    .await;
    assert_accepted(&ack, "lp");
    expect_event(events, "provider_started", START_TIMEOUT, "lp").await;
    expect_event(events, "health_check_passed", EVENT_TIMEOUT, "first health check").await;
    let data = wait_record(&records, 1, EVENT_TIMEOUT, "host_data", |r| r["event"] == "host_data").await;
    assert_eq!(
        data["lattice_rpc_url"],
        format!("nats://127.0.0.1:{port}").as_str(),
        "{data}"
    );
    assert_eq!(data["user_jwt"], jwt, "providers get the default credentials");
    assert_eq!(data["default_rpc_timeout_ms"], RPC_TIMEOUT_MS, "{data}");
    assert_eq!(data["structured_logging"], true, "{data}");

    let pid = last_pid(&records);
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -STOP {pid}");
    let sp = json!({ "provider_ref": par.key, "link_name": "default", "contract_id": CONTRACT, "host_id": host.id });
    let asked = Instant::now();
    let ack = request_json(
        nc,
        &ctl(&host.lattice, &format!("cmd.{}.sp", host.id)),
        sp.to_string().as_bytes(),
    )
    .await;
    assert_accepted(&ack, "sp");
    expect_event(events, "provider_stopped", EVENT_TIMEOUT, "sp").await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(SHUTDOWN_DELAY_MS),
        "a provider that does not exit is killed after the shutdown delay, not before: {took:?}"
    );
}

/// Structured, debug-level, and one warning naming what was given and is not acted on.
fn check_log(host: &Host, not_acted_on: &[&str]) {
    let lines = log_lines(host);
    assert!(lines.iter().any(|l| l["level"] == "DEBUG"), "--log-level debug");
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == NOT_ACTED_ON)
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line: {warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");
    let given: Vec<&str> = warnings[0]["fields"]["given"]
        .as_str()
        .expect("given")
        .split(", ")
        .collect();
    for name in not_acted_on {
        assert!(given.contains(name), "{name} in {given:?}");
    }
    // Anything else named can only be an OTEL_* variable of the environment the tests run in.
    for name in &given {
        assert!(
            not_acted_on.contains(name) || (name.starts_with("OTEL_") && std::env::var_os(name).is_some()),
            "{name} named, not given: {given:?}"
        );
    }
}
