//! Interop with the real wasmCloud control-interface client, `wasmcloud-control-interface`
//! 0.33.0 (the Rust host 0.81/0.82 era client, on async-nats 0.33): if its serde types parse
//! our replies, tooling of that era (wash, wadm) can drive shardhost.

use std::collections::HashMap;
use std::time::Duration;

use wasmcloud_control_interface::{Client, ClientBuilder};

use crate::support::{
    eventually, new_actor_key, new_provider_key, unique_lattice, Host, HostOptions, Nats, HOST_EXIT_TIMEOUT,
};

pub(crate) async fn ctl_client(nats: &Nats, lattice: &str) -> Client {
    ClientBuilder::new(nats.client_033().await)
        .lattice(lattice)
        .timeout(Duration::from_secs(5))
        .auction_timeout(Duration::from_secs(1))
        .build()
}

#[tokio::test]
async fn get_hosts_returns_our_host() {
    let nats = Nats::start();
    let lattice = unique_lattice("ifhosts");
    let host = Host::start(&nats, HostOptions::new(&lattice).arg("--label", "zone=interop")).await;
    let client = ctl_client(&nats, &lattice).await;

    let hosts = client.get_hosts().await.expect("get_hosts");
    assert_eq!(hosts.len(), 1, "exactly one host in the lattice: {hosts:?}");
    let found = &hosts[0];
    assert_eq!(found.id, host.id);
    let labels = found.labels.as_ref().expect("labels present");
    assert_eq!(
        labels.get("hostcore.os").map(String::as_str),
        Some(std::env::consts::OS)
    );
    assert_eq!(
        labels.get("hostcore.arch").map(String::as_str),
        Some(std::env::consts::ARCH)
    );
    assert_eq!(labels.get("zone").map(String::as_str), Some("interop"));
    assert!(
        found.version.as_deref().is_some_and(|v| !v.is_empty()),
        "version: {found:?}"
    );
    assert!(!found.friendly_name.is_empty(), "friendly_name: {found:?}");
    assert_eq!(found.lattice.as_deref(), Some(lattice.as_str()), "lattice: {found:?}");
    assert!(found.uptime_human.is_some(), "uptime_human: {found:?}");
    assert!(
        found.cluster_issuers.as_deref().is_some_and(|i| i.starts_with('C')),
        "cluster_issuers: {found:?}"
    );
}

#[tokio::test]
async fn get_host_inventory_returns_an_empty_host() {
    let nats = Nats::start();
    let lattice = unique_lattice("ifinv");
    let cluster = nkeys::KeyPair::new_cluster();
    let host = Host::start(
        &nats,
        HostOptions::new(&lattice).arg("--cluster-seed", &cluster.seed().unwrap()),
    )
    .await;
    let client = ctl_client(&nats, &lattice).await;

    let inventory = client.get_host_inventory(&host.id).await.expect("get_host_inventory");
    assert_eq!(inventory.host_id, host.id);
    assert_eq!(inventory.issuer, cluster.public_key());
    assert!(inventory.actors.is_empty(), "actors: {:?}", inventory.actors);
    assert!(inventory.providers.is_empty(), "providers: {:?}", inventory.providers);
    assert_eq!(
        inventory.labels.get("hostcore.osfamily").map(String::as_str),
        Some(std::env::consts::FAMILY)
    );
    assert!(!inventory.version.is_empty());
    assert!(!inventory.friendly_name.is_empty());
}

#[tokio::test]
async fn links_and_claims_round_trip_through_the_client() {
    let nats = Nats::start();
    let lattice = unique_lattice("iflinks");
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let client = ctl_client(&nats, &lattice).await;

    assert!(client.query_links().await.expect("query_links").is_empty());
    assert!(client.get_claims().await.expect("get_claims").is_empty());

    let actor = new_actor_key();
    let provider = new_provider_key();
    let values = HashMap::from([("port".to_string(), "8080".to_string())]);
    let ack = client
        .advertise_link(&actor, &provider, "wasmcloud:httpserver", "default", values.clone())
        .await
        .expect("advertise_link");
    assert!(ack.accepted, "advertise_link ack: {ack:?}");
    assert!(ack.error.is_empty(), "advertise_link ack: {ack:?}");

    let links = eventually(Duration::from_secs(10), "link visible to query_links", || {
        let client = client.clone();
        async move {
            let links = client.query_links().await.expect("query_links");
            (!links.is_empty()).then_some(links)
        }
    })
    .await;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].actor_id, actor);
    assert_eq!(links[0].provider_id, provider);
    assert_eq!(links[0].contract_id, "wasmcloud:httpserver");
    assert_eq!(links[0].link_name, "default");
    assert_eq!(links[0].values, values);

    let ack = client
        .remove_link(&actor, "wasmcloud:httpserver", "default")
        .await
        .expect("remove_link");
    assert!(ack.accepted, "remove_link ack: {ack:?}");
    eventually(Duration::from_secs(10), "link removed from query_links", || {
        let client = client.clone();
        async move {
            client
                .query_links()
                .await
                .expect("query_links")
                .is_empty()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn stop_host_through_the_client() {
    let nats = Nats::start();
    let lattice = unique_lattice("ifstop");
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let client = ctl_client(&nats, &lattice).await;
    let ack = client.stop_host(&host.id, Some(2000)).await.expect("stop_host");
    assert!(ack.accepted, "stop_host ack: {ack:?}");
    let status = host.wait_exit(HOST_EXIT_TIMEOUT).await;
    assert_eq!(status.code(), Some(0), "exit status: {status}");
}

#[tokio::test]
async fn heartbeat_parses_as_a_cloudevent_in_the_client() {
    let nats = Nats::start();
    let lattice = unique_lattice("ifevt");
    let client = ctl_client(&nats, &lattice).await;
    // The client subscribes to wasmbus.evt.{lattice}.{name} and silently drops anything that
    // is not a valid CloudEvent, so receiving one proves the envelope parses.
    let mut receiver = client
        .events_receiver(vec!["host_heartbeat".to_string()])
        .await
        .expect("events_receiver");
    let _host = Host::start(&nats, HostOptions::new(&lattice).arg("--heartbeat-interval-ms", "300")).await;
    let event = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("no host_heartbeat parsed by the control-interface client within 5 s")
        .expect("event channel closed");
    let debug = format!("{event:?}");
    assert!(
        debug.contains("com.wasmcloud.lattice.host_heartbeat"),
        "unexpected event: {debug}"
    );
}
