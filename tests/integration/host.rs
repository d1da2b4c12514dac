//! Host lifecycle and host-specific control subjects: `ping.hosts`, `get.{host}.inv`,
//! `cmd.{host}.*`, `registries.put`, host events (`host_started`, `host_heartbeat`,
//! `host_stopped`), signals and command-line validation.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    assert_accepted, assert_envelope, assert_public_key, assert_refused, expect_event, next_event, request_json,
    spawn_host_process, string_map, unique_lattice, Host, HostOptions, Nats, HOST_EXIT_TIMEOUT, REQUEST_TIMEOUT,
};

/// Labels every host must report (Rust `std::env::consts`).
fn assert_core_labels(labels: &std::collections::BTreeMap<String, String>, what: &str) {
    assert_eq!(
        labels.get("hostcore.arch").map(String::as_str),
        Some(std::env::consts::ARCH),
        "{what}: hostcore.arch in {labels:?}"
    );
    assert_eq!(
        labels.get("hostcore.os").map(String::as_str),
        Some(std::env::consts::OS),
        "{what}: hostcore.os in {labels:?}"
    );
    assert_eq!(
        labels.get("hostcore.osfamily").map(String::as_str),
        Some(std::env::consts::FAMILY),
        "{what}: hostcore.osfamily in {labels:?}"
    );
}

fn as_str<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {value}"))
}

fn as_u64(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned integer: {value}"))
}

/// Asserts the host answers `ping.hosts` with its id (liveness probe after bad input).
async fn assert_still_answers_ping(nc: &async_nats::Client, host: &Host) {
    let ping = request_json(nc, &host.ctl("ping.hosts"), b"").await;
    assert_eq!(ping["id"], host.id.as_str(), "ping.hosts after bad input: {ping}");
}

#[tokio::test]
async fn ping_hosts_reports_identity_labels_and_lattice() {
    let nats = Nats::start();
    let lattice = unique_lattice("ping");
    let cluster = nkeys::KeyPair::new_cluster();
    let other_issuer = nkeys::KeyPair::new_cluster().public_key();
    let server = nkeys::KeyPair::new_server();
    let host = Host::start(
        &nats,
        HostOptions::new(&lattice)
            .arg("--cluster-seed", &cluster.seed().unwrap())
            .arg("--host-seed", &server.seed().unwrap())
            .arg("--cluster-issuers", &other_issuer)
            .arg("--label", "zone=test-a")
            .arg("--label", "tier=gold")
            .env("WASMCLOUD_LABEL_fromenv", "yes"),
    )
    .await;
    assert_eq!(host.id, server.public_key(), "host id must come from --host-seed");

    let nc = nats.client().await;
    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;

    assert_public_key(as_str(&ping, "id"), 'N', "ping.id");
    assert_eq!(ping["id"], host.id.as_str());
    assert_eq!(ping["issuer"], cluster.public_key().as_str(), "issuer: {ping}");

    let labels = string_map(&ping["labels"], "ping.labels");
    assert_core_labels(&labels, "ping.labels");
    assert_eq!(labels.get("zone").map(String::as_str), Some("test-a"), "{labels:?}");
    assert_eq!(labels.get("tier").map(String::as_str), Some("gold"), "{labels:?}");
    assert_eq!(labels.get("fromenv").map(String::as_str), Some("yes"), "{labels:?}");

    assert!(!as_str(&ping, "friendly_name").is_empty(), "friendly_name: {ping}");
    let uptime = as_u64(&ping, "uptime_seconds");
    assert!(uptime < 600, "uptime_seconds of a fresh host: {uptime}");
    assert!(!as_str(&ping, "uptime_human").is_empty(), "uptime_human: {ping}");
    assert!(!as_str(&ping, "version").is_empty(), "version: {ping}");

    let issuers: Vec<&str> = as_str(&ping, "cluster_issuers").split(',').collect();
    assert!(
        issuers.contains(&cluster.public_key().as_str()),
        "cluster_issuers must include the host's own issuer: {issuers:?}"
    );
    assert!(
        issuers.contains(&other_issuer.as_str()),
        "cluster_issuers must include --cluster-issuers: {issuers:?}"
    );

    assert!(
        ping["js_domain"].is_null() || ping["js_domain"].is_string(),
        "js_domain must be null or a string: {ping}"
    );
    for field in ["ctl_host", "rpc_host", "prov_rpc_host"] {
        as_str(&ping, field);
    }
    assert_eq!(ping["lattice_prefix"], lattice.as_str(), "lattice_prefix: {ping}");
    assert_eq!(ping["lattice"], lattice.as_str(), "lattice: {ping}");
}

#[tokio::test]
async fn generated_keys_are_valid_when_no_seeds_given() {
    let nats = Nats::start();
    let lattice = unique_lattice("keys");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    assert_public_key(&host.id, 'N', "host id");

    let nc = nats.client().await;
    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;
    let issuer = as_str(&ping, "issuer");
    assert_public_key(issuer, 'C', "issuer");
    assert!(
        as_str(&ping, "cluster_issuers").split(',').any(|i| i == issuer),
        "cluster_issuers must include the generated issuer: {ping}"
    );
}

#[tokio::test]
async fn two_hosts_in_one_lattice_both_answer_ping() {
    let nats = Nats::start();
    let lattice = unique_lattice("twohosts");
    let first = Host::start(&nats, HostOptions::new(&lattice)).await;
    let second = Host::start(&nats, HostOptions::new(&lattice)).await;
    assert_ne!(first.id, second.id, "two hosts must have distinct ids");

    // ping.hosts is a scatter/gather: collect replies for a bounded time.
    let nc = nats.client().await;
    let inbox = nc.new_inbox();
    let mut replies = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply(first.ctl("ping.hosts"), inbox, "".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    // Wait up to 3 s for the two replies, then 500 ms more to catch a duplicate.
    let mut ids = Vec::new();
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut replies)).await {
        let ping: Value = serde_json::from_slice(&msg.payload).expect("ping reply is JSON");
        ids.push(as_str(&ping, "id").to_string());
        if ids.len() == 2 {
            deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        }
    }
    ids.sort();
    let mut expected = vec![first.id.clone(), second.id.clone()];
    expected.sort();
    assert_eq!(ids, expected, "each host answers ping.hosts exactly once");
}

#[tokio::test]
async fn inventory_is_empty_and_matches_ping() {
    let nats = Nats::start();
    let lattice = unique_lattice("inv");
    let cluster = nkeys::KeyPair::new_cluster();
    let host = Host::start(
        &nats,
        HostOptions::new(&lattice)
            .arg("--cluster-seed", &cluster.seed().unwrap())
            .arg("--label", "zone=inv"),
    )
    .await;
    let nc = nats.client().await;
    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;
    let inv = request_json(&nc, &host.ctl(&format!("get.{}.inv", host.id)), b"").await;

    assert_eq!(inv["host_id"], host.id.as_str(), "host_id: {inv}");
    assert_eq!(inv["issuer"], cluster.public_key().as_str(), "issuer: {inv}");
    assert_eq!(inv["friendly_name"], ping["friendly_name"], "friendly_name: {inv}");
    assert_eq!(inv["version"], ping["version"], "version: {inv}");
    assert!(!as_str(&inv, "version").is_empty());
    let labels = string_map(&inv["labels"], "inv.labels");
    assert_core_labels(&labels, "inv.labels");
    assert_eq!(labels.get("zone").map(String::as_str), Some("inv"));
    assert_eq!(
        labels,
        string_map(&ping["labels"], "ping.labels"),
        "inventory and ping labels differ"
    );
    assert!(!as_str(&inv, "uptime_human").is_empty(), "uptime_human: {inv}");
    as_u64(&inv, "uptime_seconds");
    assert_eq!(inv["actors"], json!([]), "actors: {inv}");
    assert_eq!(inv["providers"], json!([]), "providers: {inv}");
}

#[tokio::test]
async fn inventory_for_another_host_id_gets_no_reply() {
    let nats = Nats::start();
    let lattice = unique_lattice("invother");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let other = nkeys::KeyPair::new_server().public_key();
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        nc.request(host.ctl(&format!("get.{other}.inv")), "".into()),
    )
    .await;
    match reply {
        Err(_) => {}
        Ok(Err(_)) => {} // no responders
        Ok(Ok(msg)) => panic!(
            "host answered an inventory request for another host: {:?}",
            String::from_utf8_lossy(&msg.payload)
        ),
    }
    assert_still_answers_ping(&nc, &host).await;
}

#[tokio::test]
async fn host_started_is_a_cloudevent_on_both_subjects() {
    let nats = Nats::start();
    let lattice = unique_lattice("started");
    let nc = nats.client().await;
    let mut named = nc
        .subscribe(format!("wasmbus.evt.{lattice}.host_started"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let host = Host::start(&nats, HostOptions::new(&lattice).arg("--label", "zone=ev")).await;

    let event = &host.started_event;
    assert_envelope(event, "host_started", &host.id);
    let data = &event["data"];
    let labels = string_map(&data["labels"], "host_started.data.labels");
    assert_core_labels(&labels, "host_started.data.labels");
    assert_eq!(labels.get("zone").map(String::as_str), Some("ev"));
    assert!(!as_str(data, "friendly_name").is_empty(), "data: {data}");
    as_u64(data, "uptime_seconds");
    assert!(!as_str(data, "version").is_empty(), "data: {data}");

    let again = expect_event(&mut named, "host_started", REQUEST_TIMEOUT, "named subject").await;
    assert_eq!(
        &again, event,
        "the event on wasmbus.evt.L.host_started must be the same event"
    );

    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;
    assert_eq!(data["friendly_name"], ping["friendly_name"]);
    assert_eq!(data["version"], ping["version"]);
}

#[tokio::test]
async fn heartbeat_is_published_at_the_configured_interval() {
    let nats = Nats::start();
    let lattice = unique_lattice("hb");
    let nc = nats.client().await;
    let mut all = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let mut named = nc
        .subscribe(format!("wasmbus.evt.{lattice}.host_heartbeat"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let host = Host::start(
        &nats,
        HostOptions::new(&lattice)
            .arg("--heartbeat-interval-ms", "400")
            .arg("--label", "zone=hb"),
    )
    .await;

    let started = Instant::now();
    let first = expect_event(&mut all, "host_heartbeat", Duration::from_secs(5), "first heartbeat").await;
    let second = expect_event(&mut all, "host_heartbeat", Duration::from_secs(5), "second heartbeat").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "two heartbeats at 400 ms took {:?}",
        started.elapsed()
    );
    assert_ne!(first["id"], second["id"], "each heartbeat has its own event id");

    for event in [&first, &second] {
        assert_envelope(event, "host_heartbeat", &host.id);
        let data = &event["data"];
        assert_eq!(data["actors"], json!({}), "actors must be an empty map: {data}");
        assert_eq!(data["providers"], json!([]), "providers must be an empty list: {data}");
        let labels = string_map(&data["labels"], "heartbeat.labels");
        assert_core_labels(&labels, "heartbeat.labels");
        assert_eq!(labels.get("zone").map(String::as_str), Some("hb"));
        assert!(!as_str(data, "friendly_name").is_empty());
        assert!(!as_str(data, "version").is_empty());
        assert!(!as_str(data, "uptime_human").is_empty());
        as_u64(data, "uptime_seconds");
    }

    let on_named = expect_event(&mut named, "host_heartbeat", Duration::from_secs(5), "named heartbeat").await;
    assert_envelope(&on_named, "host_heartbeat", &host.id);
}

#[tokio::test]
async fn default_heartbeat_interval_is_not_short() {
    // Default is 30 s: no heartbeat should arrive in the first 2 s.
    let nats = Nats::start();
    let lattice = unique_lattice("hbdefault");
    let nc = nats.client().await;
    let mut all = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    nc.flush().await.unwrap();
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let early = next_event(&mut all, "host_heartbeat", Duration::from_secs(2)).await;
    assert!(
        early.is_none(),
        "unexpected early heartbeat with the default interval: {early:?}"
    );
}

#[tokio::test]
async fn stop_command_acks_publishes_host_stopped_and_exits_zero() {
    let nats = Nats::start();
    let lattice = unique_lattice("stop");
    let nc = nats.client().await;
    let mut all = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let mut named = nc
        .subscribe(format!("wasmbus.evt.{lattice}.host_stopped"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let mut host = Host::start(&nats, HostOptions::new(&lattice).arg("--label", "zone=stop")).await;

    let body = serde_json::to_vec(&json!({"host_id": host.id})).unwrap();
    let ack = request_json(&nc, &host.cmd("stop"), &body).await;
    assert_accepted(&ack, "cmd.stop");

    let stopped = expect_event(&mut all, "host_stopped", HOST_EXIT_TIMEOUT, "after cmd.stop").await;
    assert_envelope(&stopped, "host_stopped", &host.id);
    let labels = string_map(&stopped["data"]["labels"], "host_stopped.data.labels");
    assert_core_labels(&labels, "host_stopped.data.labels");
    assert_eq!(labels.get("zone").map(String::as_str), Some("stop"));
    let again = expect_event(&mut named, "host_stopped", REQUEST_TIMEOUT, "named host_stopped").await;
    assert_eq!(again, stopped);

    let status = host.wait_exit(HOST_EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "exit status after cmd.stop: {status}");
}

async fn assert_signal_stops_gracefully(signal: &str) {
    let nats = Nats::start();
    let lattice = unique_lattice(&format!("sig{}", signal.to_lowercase()));
    let nc = nats.client().await;
    let mut all = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    nc.flush().await.unwrap();
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;

    host.signal(signal);
    let stopped = expect_event(&mut all, "host_stopped", HOST_EXIT_TIMEOUT, signal).await;
    assert_envelope(&stopped, "host_stopped", &host.id);
    let status = host.wait_exit(HOST_EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "exit status after SIG{signal}: {status}");
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    assert_signal_stops_gracefully("TERM").await;
}

#[tokio::test]
async fn sigint_stops_gracefully() {
    assert_signal_stops_gracefully("INT").await;
}

/// A stop must be bounded even when NATS cannot be reached (host_stopped cannot be delivered
/// then). `nats_gone_first`: NATS dies 1 s before the signal (the host is reconnecting);
/// otherwise both die together, as with Ctrl-C on `scripts/run` (one process group).
async fn assert_sigterm_exits_without_nats(nats_gone_first: bool) {
    let mut nats = Nats::start();
    let lattice = unique_lattice("signonats");
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;
    nats.kill();
    if nats_gone_first {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    host.signal("TERM");
    let status = host.wait_exit(HOST_EXIT_TIMEOUT).await;
    assert!(
        status.code().is_some(),
        "host must exit by itself, not by a signal: {status}"
    );
}

#[tokio::test]
async fn sigterm_exits_when_nats_is_already_gone() {
    assert_sigterm_exits_without_nats(true).await;
}

#[tokio::test]
async fn sigterm_exits_when_nats_dies_at_the_same_time() {
    assert_sigterm_exits_without_nats(false).await;
}

#[tokio::test]
async fn malformed_stop_is_refused_and_host_keeps_running() {
    let nats = Nats::start();
    let lattice = unique_lattice("garbage");
    let nc = nats.client().await;
    let mut all = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    nc.flush().await.unwrap();
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;

    let ack = request_json(&nc, &host.cmd("stop"), b"{not json").await;
    assert_refused(&ack, "cmd.stop with malformed JSON");

    // Still alive, still answering, and no host_stopped.
    let stopped = next_event(&mut all, "host_stopped", Duration::from_millis(1500)).await;
    assert!(stopped.is_none(), "host stopped after a malformed stop: {stopped:?}");
    assert!(host.try_exit_status().is_none(), "host exited after a malformed stop");
    assert_still_answers_ping(&nc, &host).await;
}

#[tokio::test]
async fn garbage_on_every_ctl_subject_never_kills_the_host() {
    let nats = Nats::start();
    let lattice = unique_lattice("fuzzctl");
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let subjects = [
        host.ctl("registries.put"),
        host.ctl("linkdefs.put"),
        host.ctl("linkdefs.del"),
        host.cmd("sa"),
        host.cmd("scale"),
        host.cmd("lp"),
        host.cmd("sp"),
        host.cmd("upd"),
        host.cmd("la"),
    ];
    let payloads: [&[u8]; 5] = [b"", b"{not json", b"[]", b"null", b"\xff\xfe\x00"];
    for subject in &subjects {
        for payload in payloads {
            // Any JSON reply is acceptable as long as it is not "accepted": true for garbage.
            let reply = request_json(&nc, subject, payload).await;
            assert_ne!(
                reply["accepted"],
                json!(true),
                "{subject} accepted garbage {payload:?}: {reply}"
            );
        }
    }
    // A huge request (512 KiB of JSON, near NATS's default 1 MB max_payload) is refused too.
    let huge = json!({ "actor_ref": "a".repeat(512 << 10), "count": 1 }).to_string();
    for subject in [host.cmd("la"), host.ctl("linkdefs.put")] {
        let reply = request_json(&nc, &subject, huge.as_bytes()).await;
        assert_eq!(
            reply["accepted"],
            json!(false),
            "{subject} refused a huge request: {reply}"
        );
    }
    assert!(host.try_exit_status().is_none(), "host exited after garbage");
    assert_still_answers_ping(&nc, &host).await;
}

#[tokio::test]
async fn stop_for_another_host_id_in_body_does_not_stop() {
    // The body names a different host; the subject names ours. Whatever the ack says, a
    // mismatched body must not make it exit silently without answering.
    let nats = Nats::start();
    let lattice = unique_lattice("stopother");
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let other = nkeys::KeyPair::new_server().public_key();
    let body = serde_json::to_vec(&json!({"host_id": other})).unwrap();
    let ack = request_json(&nc, &host.cmd("stop"), &body).await;
    let (accepted, _) = crate::support::parse_ack(&ack);
    if accepted {
        // The host treated the subject as authoritative: it must then really stop with 0.
        let status = host.wait_exit(HOST_EXIT_TIMEOUT).await;
        assert_eq!(status.code(), Some(0));
    } else {
        assert_refused(&ack, "cmd.stop naming another host");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(host.try_exit_status().is_none());
        assert_still_answers_ping(&nc, &host).await;
    }
}

#[tokio::test]
async fn unsupported_or_impossible_commands_are_refused() {
    let nats = Nats::start();
    let lattice = unique_lattice("unsup");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let actor = crate::support::new_actor_key();
    let provider = crate::support::new_provider_key();
    let bodies = [
        ("sa", json!({"actor_ref": actor, "count": 1, "host_id": host.id})),
        (
            "lp",
            // `:latest` is refused for providers too.
            json!({"provider_ref": "127.0.0.1:5000/httpserver:latest", "link_name": "default", "host_id": host.id}),
        ),
        (
            "sp",
            json!({"provider_ref": provider, "link_name": "default", "contract_id": "wasmcloud:httpserver", "host_id": host.id}),
        ),
        (
            "upd",
            json!({"actor_id": actor, "new_actor_ref": "127.0.0.1:5000/echo:0.2", "host_id": host.id}),
        ),
        // `:latest` is refused unless --allow-latest.
        (
            "la",
            json!({"actor_ref": "127.0.0.1:5000/echo:latest", "count": 1, "host_id": host.id}),
        ),
        ("scale", json!({"actor_ref": "127.0.0.1:5000/echo", "host_id": host.id})),
    ];
    for (command, body) in bodies {
        let ack = request_json(&nc, &host.cmd(command), &serde_json::to_vec(&body).unwrap()).await;
        assert_refused(&ack, &format!("cmd.{command}"));
    }
    assert_still_answers_ping(&nc, &host).await;
}

#[tokio::test]
async fn unknown_command_is_refused() {
    let nats = Nats::start();
    let lattice = unique_lattice("bogus");
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let body = serde_json::to_vec(&json!({"host_id": host.id})).unwrap();
    let ack = request_json(&nc, &host.cmd("bogus"), &body).await;
    assert_refused(&ack, "cmd.bogus");
    assert!(host.try_exit_status().is_none());
    assert_still_answers_ping(&nc, &host).await;
}

#[tokio::test]
async fn registries_put_is_accepted() {
    let nats = Nats::start();
    let lattice = unique_lattice("reg");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let body = json!({"localhost:5000": {"registryType": "oci", "username": "u", "password": "p"}});
    let ack = request_json(&nc, &host.ctl("registries.put"), &serde_json::to_vec(&body).unwrap()).await;
    assert_accepted(&ack, "registries.put");
    // An empty map is a valid (if useless) request too.
    let ack = request_json(&nc, &host.ctl("registries.put"), b"{}").await;
    assert_accepted(&ack, "registries.put {}");
    assert_still_answers_ping(&nc, &host).await;
}

#[tokio::test]
async fn ctl_topic_prefix_is_honoured() {
    let nats = Nats::start();
    let lattice = unique_lattice("prefix");
    let host = Host::start(
        &nats,
        HostOptions::new(&lattice).arg("--ctl-topic-prefix", "custom.ctl"),
    )
    .await;
    let nc = nats.client().await;
    let ping = request_json(&nc, &format!("custom.ctl.{lattice}.ping.hosts"), b"").await;
    assert_eq!(ping["id"], host.id.as_str(), "ping on the custom prefix: {ping}");
    let inv = request_json(&nc, &format!("custom.ctl.{lattice}.get.{}.inv", host.id), b"").await;
    assert_eq!(inv["host_id"], host.id.as_str());

    let default = tokio::time::timeout(
        Duration::from_secs(2),
        nc.request(format!("wasmbus.ctl.{lattice}.ping.hosts"), "".into()),
    )
    .await;
    assert!(
        !matches!(default, Ok(Ok(_))),
        "host must not answer on the default prefix when --ctl-topic-prefix is set"
    );
}

/// Runs the host with a bad flag and asserts it exits non-zero within 10 s with a reason on
/// stderr that mentions `needle` (case-insensitive).
async fn assert_rejected_flag(nats: &Nats, args: &[&str], needle: &str) {
    let lattice = unique_lattice("badflag");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut child, stderr_file) = spawn_host_process(nats.port, &lattice, &args, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "host with {args:?} did not exit within 10 s\n--- stderr ---\n{}",
                std::fs::read_to_string(stderr_file.path()).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    assert!(
        !status.success(),
        "host with {args:?} must exit non-zero, got {status}\n--- stderr ---\n{stderr}"
    );
    assert!(!stderr.trim().is_empty(), "host with {args:?} must say why on stderr");
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr for {args:?} should mention {needle:?}:\n{stderr}"
    );
}

#[tokio::test]
async fn bad_flags_exit_nonzero_with_a_reason() {
    let nats = Nats::start();
    let server_seed = nkeys::KeyPair::new_server().seed().unwrap();
    assert_rejected_flag(&nats, &["--cluster-seed", &server_seed], "cluster").await;
    assert_rejected_flag(&nats, &["--cluster-seed", "not-a-seed"], "cluster").await;
    assert_rejected_flag(&nats, &["--bogus"], "--bogus").await;

    // --nats-port 0 replaces the valid port given first; clap keeps the last value, so pass
    // the whole command line by hand.
    let lattice = unique_lattice("badport");
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(crate::support::host_binary())
        .args(["--nats-host", "127.0.0.1", "--nats-port", "0", "--lattice", &lattice])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("host with --nats-port 0 did not exit within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    assert!(
        !status.success(),
        "--nats-port 0 must exit non-zero, got {status}\n{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("port"),
        "stderr for --nats-port 0 should mention the port:\n{stderr}"
    );
}

/// With no NATS address given and nothing on 127.0.0.1:4222, the host starts its own
/// nats-server with JetStream on a free loopback port, serves on it, and stops it on exit.
#[tokio::test]
async fn managed_nats_is_started_and_stopped_with_the_host() {
    if std::net::TcpStream::connect("127.0.0.1:4222").is_ok() {
        eprintln!("SKIPPED: something listens on 127.0.0.1:4222, so the host would use it instead of a managed NATS");
        return;
    }
    let stderr_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = std::process::Command::new(crate::support::host_binary());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("WASMCLOUD_") || k.starts_with("NATS_") {
            command.env_remove(&key);
        }
    }
    let lattice = unique_lattice("managed");
    let mut child = command
        .args(["--lattice", &lattice, "--shards", "1"])
        .env("SHARDHOST_NATS_SERVER", crate::support::nats_server_binary())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr_file.reopen().expect("reopen"))
        .spawn()
        .expect("spawn shardhost");
    let log = || std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        let text = log();
        let found = text
            .lines()
            .find(|l| l.contains("started a managed nats-server"))
            .and_then(|l| {
                let rest = &l[l.find("127.0.0.1:")? + "127.0.0.1:".len()..];
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            });
        if let (Some(port), true) = (found, text.contains("shardhost started")) {
            break port;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "host exited early:\n{text}"
        );
        assert!(Instant::now() < deadline, "no managed NATS start in the log:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(port, 4222);
    let nc = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect to managed NATS");
    let ping = request_json(&nc, &format!("wasmbus.ctl.{lattice}.ping.hosts"), b"").await;
    assert_public_key(ping["id"].as_str().expect("id"), 'N', "ping id");
    let js = async_nats::jetstream::new(nc.clone());
    js.get_key_value(format!("LATTICEDATA_{lattice}"))
        .await
        .expect("bucket on the managed server");
    drop(nc);

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + HOST_EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "host did not exit:\n{}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status}:\n{}", log());
    let store = std::env::temp_dir().join(format!("shardhost-nats-{}-{port}", child.id()));
    assert!(!store.exists(), "managed NATS store {} left behind", store.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "managed nats-server still listens on {port}"
    );
}

/// An edge node starts NATS and the host together: a host that comes up first keeps retrying
/// (each attempt logged) and serves once NATS is there; one whose NATS never comes gives up
/// after `--nats-connect-timeout-ms` with one clear line and a non-zero exit.
#[tokio::test]
async fn the_host_waits_for_a_nats_that_starts_after_it_and_gives_up_on_one_that_never_does() {
    let port = crate::support::free_port();
    let lattice = unique_lattice("bootorder");
    let args = ["--nats-connect-timeout-ms".to_string(), "20000".to_string()];
    let (mut child, stderr) = spawn_host_process(port, &lattice, &args, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the host gave up before NATS came"
    );
    let nats = Nats::start_on(port);
    let nc = nats.client().await;
    let subject = format!("wasmbus.ctl.{lattice}.ping.hosts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = tokio::time::timeout(Duration::from_millis(500), nc.request(subject.clone(), "".into())).await;
        if matches!(reply, Ok(Ok(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "the host never served after NATS came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
    assert!(
        log.contains("NATS not reachable yet; retrying"),
        "attempts are logged:\n{log}"
    );
    let _ = child.kill();
    let _ = child.wait();

    let unused = crate::support::free_port();
    let args = ["--nats-connect-timeout-ms".to_string(), "800".to_string()];
    let (mut child, stderr) = spawn_host_process(unused, &unique_lattice("nonats"), &args, &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the host kept waiting past its connect budget"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status}");
    let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(
        last.starts_with("shardhost: ") && last.contains("not reachable after") && last.contains(&unused.to_string()),
        "one clear last line: {last}\n{log}"
    );
}
