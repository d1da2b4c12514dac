//! Lattice metadata in the JetStream KV bucket `LATTICEDATA_{lattice}` (PROTOCOL.md §7):
//! bucket creation, LINKDEF entries (watch → `get.links`, `linkdef_set`/`linkdef_deleted`,
//! msgpack forwards to providers), `linkdefs.put`/`del` on the control interface, malformed
//! entries, and CLAIMS entries in both the OTP and the Rust 0.82 shapes.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::support::{
    assert_accepted, assert_envelope, eventually, expect_event, get_claims, get_links, lattice_kv, linkdef_id,
    linkdef_json, new_account_key, new_actor_key, new_provider_key, next_event, request_json, string_map,
    unique_lattice, Host, HostOptions, Nats, REQUEST_TIMEOUT,
};

/// How long the host may take to see a KV change through its watch.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a change made while the watch's consumer was gone: the watch is found
/// stuck at two position checks 2 s apart, reopened after 1 s, and replays; usually 4–8 s,
/// longer on a loaded 2-core machine running the whole suite (10 s was once not enough).
const REOPEN_TIMEOUT: Duration = Duration::from_secs(25);

#[test]
fn linkdef_id_matches_the_protocol_test_vector() {
    assert_eq!(
        linkdef_id("Mbob", "wasmcloud:testy", "default"),
        "B40411AD09B70A2C83D59923584F66BA2C5A3C274DC4F19416DA49CCD6531F9C"
    );
}

/// Asserts a linkdef event/list entry carries exactly the given link (ignoring `id` unless
/// `with_id`).
fn assert_link(value: &Value, expected: &Value, with_id: bool) {
    for field in ["actor_id", "provider_id", "link_name", "contract_id"] {
        assert_eq!(value[field], expected[field], "{field} in {value}");
    }
    assert_eq!(value["values"], expected["values"], "values in {value}");
    if with_id {
        let id = linkdef_id(
            expected["actor_id"].as_str().unwrap(),
            expected["contract_id"].as_str().unwrap(),
            expected["link_name"].as_str().unwrap(),
        );
        assert_eq!(value["id"], id.as_str(), "id in {value}");
    }
}

/// Decodes a msgpack forward into JSON, insisting on the named-map encoding.
fn decode_forward(payload: &[u8]) -> Value {
    let value: Value =
        rmp_serde::from_slice(payload).unwrap_or_else(|e| panic!("linkdef forward is not msgpack ({e}): {payload:?}"));
    assert!(
        value.is_object(),
        "linkdef forward must be a named msgpack map, got {value}"
    );
    value
}

async fn next_msg(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    tokio::time::timeout(WATCH_TIMEOUT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WATCH_TIMEOUT:?}"))
        .unwrap_or_else(|| panic!("{what}: subscription closed"))
}

#[tokio::test]
async fn kv_bucket_exists_with_history_one() {
    let nats = Nats::start();
    let lattice = unique_lattice("bucket");
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let kv = lattice_kv(&nc, &lattice).await;
    let status = kv.status().await.expect("bucket status");
    assert_eq!(status.bucket(), format!("LATTICEDATA_{lattice}"));
    assert_eq!(status.history(), 1, "LATTICEDATA bucket must keep history 1");
}

#[tokio::test]
async fn host_uses_an_existing_bucket_and_loads_its_links() {
    // The bucket (with a valid link, garbage and a mismatched key) exists before the host.
    let nats = Nats::start();
    let lattice = unique_lattice("preexist");
    let nc = nats.client().await;
    let js = async_nats::jetstream::new(nc.clone());
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: format!("LATTICEDATA_{lattice}"),
            history: 1,
            ..Default::default()
        })
        .await
        .expect("create bucket");
    let link = linkdef_json(&new_actor_key(), &new_provider_key(), "wasmcloud:testy", "default");
    let id = linkdef_id(link["actor_id"].as_str().unwrap(), "wasmcloud:testy", "default");
    kv.put(format!("LINKDEF_{id}"), serde_json::to_vec(&link).unwrap().into())
        .await
        .unwrap();
    kv.put("LINKDEF_XYZ", "garbage".into()).await.unwrap();
    let other = linkdef_json(&new_actor_key(), &new_provider_key(), "wasmcloud:other", "default");
    kv.put(format!("LINKDEF_{id}0"), serde_json::to_vec(&other).unwrap().into())
        .await
        .unwrap();

    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let links = eventually(WATCH_TIMEOUT, "pre-existing link loaded", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let links = get_links(&nc, &lattice).await;
            (!links.is_empty()).then_some(links)
        }
    })
    .await;
    assert_eq!(links.len(), 1, "only the valid pre-existing link is listed: {links:?}");
    assert_link(&links[0], &link, false);
    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;
    assert_eq!(ping["id"], host.id.as_str());
}

#[tokio::test]
async fn linkdef_written_to_kv_is_listed_announced_and_forwarded() {
    let nats = Nats::start();
    let lattice = unique_lattice("kvlink");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let mut set_named = nc
        .subscribe(format!("wasmbus.evt.{lattice}.linkdef_set"))
        .await
        .unwrap();
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;

    let actor = new_actor_key();
    let provider = new_provider_key();
    let link = linkdef_json(&actor, &provider, "wasmcloud:testy", "default");
    let id = linkdef_id(&actor, "wasmcloud:testy", "default");
    let mut put_forward = nc
        .subscribe(format!("wasmbus.rpc.{lattice}.{provider}.default.linkdefs.put"))
        .await
        .unwrap();
    let mut del_forward = nc
        .subscribe(format!("wasmbus.rpc.{lattice}.{provider}.default.linkdefs.del"))
        .await
        .unwrap();
    nc.flush().await.unwrap();

    let kv = lattice_kv(&nc, &lattice).await;
    kv.put(format!("LINKDEF_{id}"), serde_json::to_vec(&link).unwrap().into())
        .await
        .unwrap();

    let set = expect_event(&mut events, "linkdef_set", WATCH_TIMEOUT, "KV put").await;
    assert_envelope(&set, "linkdef_set", &host.id);
    assert_link(&set["data"], &link, true);
    let set_again = expect_event(&mut set_named, "linkdef_set", REQUEST_TIMEOUT, "named").await;
    assert_eq!(set_again, set);

    let forward = decode_forward(&next_msg(&mut put_forward, "linkdefs.put forward").await.payload);
    assert_link(&forward, &link, false);

    let links = eventually(WATCH_TIMEOUT, "link in get.links", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let links = get_links(&nc, &lattice).await;
            (!links.is_empty()).then_some(links)
        }
    })
    .await;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_link(&links[0], &link, false);

    kv.delete(format!("LINKDEF_{id}")).await.unwrap();
    let deleted = expect_event(&mut events, "linkdef_deleted", WATCH_TIMEOUT, "KV delete").await;
    assert_envelope(&deleted, "linkdef_deleted", &host.id);
    assert_link(&deleted["data"], &link, true);
    let forward = decode_forward(&next_msg(&mut del_forward, "linkdefs.del forward").await.payload);
    assert_link(&forward, &link, false);

    eventually(WATCH_TIMEOUT, "link gone from get.links", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move { get_links(&nc, &lattice).await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn kv_purge_counts_as_deletion() {
    // OTP deletes with KV-Operation: PURGE (PROTOCOL.md §7.1).
    let nats = Nats::start();
    let lattice = unique_lattice("purge");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let actor = new_actor_key();
    let link = linkdef_json(&actor, &new_provider_key(), "wasmcloud:testy", "purged");
    let id = linkdef_id(&actor, "wasmcloud:testy", "purged");
    let kv = lattice_kv(&nc, &lattice).await;
    kv.put(format!("LINKDEF_{id}"), serde_json::to_vec(&link).unwrap().into())
        .await
        .unwrap();
    expect_event(&mut events, "linkdef_set", WATCH_TIMEOUT, "KV put").await;
    kv.purge(format!("LINKDEF_{id}")).await.unwrap();
    let deleted = expect_event(&mut events, "linkdef_deleted", WATCH_TIMEOUT, "KV purge").await;
    assert_envelope(&deleted, "linkdef_deleted", &host.id);
    assert_link(&deleted["data"], &link, true);
    eventually(WATCH_TIMEOUT, "purged link gone from get.links", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move { get_links(&nc, &lattice).await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn ctl_linkdefs_put_and_del_write_the_kv_bucket() {
    let nats = Nats::start();
    let lattice = unique_lattice("ctllink");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let kv = lattice_kv(&nc, &lattice).await;

    let actor = new_actor_key();
    let provider = new_provider_key();
    let link = linkdef_json(&actor, &provider, "wasmcloud:testy", "default");
    let key = format!("LINKDEF_{}", linkdef_id(&actor, "wasmcloud:testy", "default"));

    let ack = request_json(&nc, &host.ctl("linkdefs.put"), &serde_json::to_vec(&link).unwrap()).await;
    assert_accepted(&ack, "linkdefs.put");

    let stored = eventually(WATCH_TIMEOUT, &format!("{key} written"), || {
        let kv = kv.clone();
        let key = key.clone();
        async move { kv.get(key).await.ok().flatten() }
    })
    .await;
    let stored: Value =
        serde_json::from_slice(&stored).unwrap_or_else(|e| panic!("{key} is not JSON ({e}): {stored:?}"));
    assert_link(&stored, &link, false);

    let set = expect_event(&mut events, "linkdef_set", WATCH_TIMEOUT, "ctl put").await;
    assert_link(&set["data"], &link, true);
    eventually(WATCH_TIMEOUT, "link listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move { (get_links(&nc, &lattice).await.len() == 1).then_some(()) }
    })
    .await;

    let del = json!({"actor_id": actor, "contract_id": "wasmcloud:testy", "link_name": "default"});
    let ack = request_json(&nc, &host.ctl("linkdefs.del"), &serde_json::to_vec(&del).unwrap()).await;
    assert_accepted(&ack, "linkdefs.del");
    eventually(WATCH_TIMEOUT, &format!("{key} deleted"), || {
        let kv = kv.clone();
        let key = key.clone();
        async move { matches!(kv.get(key).await, Ok(None)).then_some(()) }
    })
    .await;
    let deleted = expect_event(&mut events, "linkdef_deleted", WATCH_TIMEOUT, "ctl del").await;
    assert_link(&deleted["data"], &link, true);
    eventually(WATCH_TIMEOUT, "link unlisted", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move { get_links(&nc, &lattice).await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn ctl_linkdefs_put_without_values_defaults_to_empty_map() {
    let nats = Nats::start();
    let lattice = unique_lattice("novalues");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let actor = new_actor_key();
    let body = json!({
        "actor_id": actor, "provider_id": new_provider_key(),
        "link_name": "default", "contract_id": "wasmcloud:testy",
    });
    let ack = request_json(&nc, &host.ctl("linkdefs.put"), &serde_json::to_vec(&body).unwrap()).await;
    assert_accepted(&ack, "linkdefs.put without values");
    let links = eventually(WATCH_TIMEOUT, "link listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let links = get_links(&nc, &lattice).await;
            (!links.is_empty()).then_some(links)
        }
    })
    .await;
    assert_eq!(links[0]["actor_id"], actor.as_str());
    assert_eq!(links[0]["values"], json!({}), "values must default to {{}}: {links:?}");
}

#[tokio::test]
async fn ctl_linkdefs_put_missing_required_field_is_refused() {
    let nats = Nats::start();
    let lattice = unique_lattice("badlink");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    // No provider_id.
    let body = json!({"actor_id": new_actor_key(), "link_name": "default", "contract_id": "wasmcloud:testy"});
    let ack = request_json(&nc, &host.ctl("linkdefs.put"), &serde_json::to_vec(&body).unwrap()).await;
    crate::support::assert_refused(&ack, "linkdefs.put without provider_id");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(get_links(&nc, &lattice).await.is_empty());
    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;
    assert_eq!(ping["id"], host.id.as_str());
}

#[tokio::test]
async fn malformed_kv_entries_are_skipped() {
    let nats = Nats::start();
    let lattice = unique_lattice("badkv");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let mut host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let kv = lattice_kv(&nc, &lattice).await;

    // 1. Not JSON at all.
    kv.put("LINKDEF_XYZ", "garbage".into()).await.unwrap();
    // 2. Valid JSON whose key id is not the hash of its body.
    let forged = linkdef_json(&new_actor_key(), &new_provider_key(), "wasmcloud:testy", "default");
    let wrong_id = linkdef_id(&new_actor_key(), "wasmcloud:testy", "default");
    kv.put(
        format!("LINKDEF_{wrong_id}"),
        serde_json::to_vec(&forged).unwrap().into(),
    )
    .await
    .unwrap();
    // 3. JSON of the wrong shape.
    let shapeless_id = linkdef_id("Mx", "wasmcloud:testy", "default");
    kv.put(format!("LINKDEF_{shapeless_id}"), "[1,2,3]".into())
        .await
        .unwrap();
    // 4. Garbage claims.
    kv.put(format!("CLAIMS_{}", new_actor_key()), "{\"sub\": ".into())
        .await
        .unwrap();
    // 5. Then a valid link: once it is seen, the bad ones (written earlier) were handled.
    let actor = new_actor_key();
    let good = linkdef_json(&actor, &new_provider_key(), "wasmcloud:testy", "default");
    let good_id = linkdef_id(&actor, "wasmcloud:testy", "default");
    kv.put(format!("LINKDEF_{good_id}"), serde_json::to_vec(&good).unwrap().into())
        .await
        .unwrap();

    let set = expect_event(&mut events, "linkdef_set", WATCH_TIMEOUT, "valid link after bad ones").await;
    assert_eq!(
        set["data"]["id"],
        good_id.as_str(),
        "the first linkdef_set must be the valid link; malformed entries are skipped: {set}"
    );
    let links = eventually(WATCH_TIMEOUT, "valid link listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let links = get_links(&nc, &lattice).await;
            (!links.is_empty()).then_some(links)
        }
    })
    .await;
    assert_eq!(links.len(), 1, "only the valid link is listed: {links:?}");
    assert_link(&links[0], &good, false);

    let claims = get_claims(&nc, &lattice).await;
    assert!(claims.is_empty(), "garbage claims must not be listed: {claims:?}");
    let extra = next_event(&mut events, "linkdef_set", Duration::from_millis(500)).await;
    assert!(
        extra.is_none(),
        "unexpected linkdef_set for a malformed entry: {extra:?}"
    );
    assert!(host.try_exit_status().is_none(), "host exited on malformed KV data");
    let ping = request_json(&nc, &host.ctl("ping.hosts"), b"").await;
    assert_eq!(ping["id"], host.id.as_str());
}

#[tokio::test]
async fn claims_in_both_shapes_are_listed_as_string_maps() {
    let nats = Nats::start();
    let lattice = unique_lattice("claims");
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let kv = lattice_kv(&nc, &lattice).await;

    let otp_subject = new_actor_key();
    let otp_issuer = new_account_key();
    let otp = json!({
        "call_alias": "", "caps": "wasmcloud:httpserver", "iss": otp_issuer, "name": "x",
        "rev": "1", "sub": otp_subject, "tags": "", "version": "0.1",
    });
    kv.put(
        format!("CLAIMS_{otp_subject}"),
        serde_json::to_vec(&otp).unwrap().into(),
    )
    .await
    .unwrap();

    let rust_subject = new_actor_key();
    let rust_issuer = new_account_key();
    let rust = json!({
        "call_alias": "", "capabilities": ["a"], "issuer": rust_issuer, "name": "y",
        "revision": "1", "subject": rust_subject, "tags": ["t1", "t2"], "version": "0.2",
    });
    kv.put(
        format!("CLAIMS_{rust_subject}"),
        serde_json::to_vec(&rust).unwrap().into(),
    )
    .await
    .unwrap();

    let claims = eventually(WATCH_TIMEOUT, "both claims listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let claims = get_claims(&nc, &lattice).await;
            (claims.len() >= 2).then_some(claims)
        }
    })
    .await;
    assert_eq!(claims.len(), 2, "{claims:?}");
    let maps: Vec<_> = claims.iter().map(|c| string_map(c, "get.claims entry")).collect();

    let subject_of = |m: &std::collections::BTreeMap<String, String>| {
        m.get("sub").or_else(|| m.get("subject")).cloned().unwrap_or_default()
    };
    let otp_entry = maps
        .iter()
        .find(|m| subject_of(m) == otp_subject)
        .unwrap_or_else(|| panic!("OTP-shaped claims missing: {maps:?}"));
    for (key, value) in string_map(&otp, "otp") {
        assert_eq!(
            otp_entry.get(&key),
            Some(&value),
            "OTP claims field {key}: {otp_entry:?}"
        );
    }

    let rust_entry = maps
        .iter()
        .find(|m| subject_of(m) == rust_subject)
        .unwrap_or_else(|| panic!("Rust-shaped claims missing: {maps:?}"));
    let issuer = rust_entry.get("iss").or_else(|| rust_entry.get("issuer"));
    assert_eq!(issuer, Some(&rust_issuer), "issuer: {rust_entry:?}");
    let caps = rust_entry
        .get("caps")
        .or_else(|| rust_entry.get("capabilities"))
        .unwrap_or_else(|| panic!("no caps in {rust_entry:?}"));
    assert_eq!(
        caps, "a",
        "caps array flattened to a comma-joined string: {rust_entry:?}"
    );
    let tags = rust_entry
        .get("tags")
        .unwrap_or_else(|| panic!("no tags in {rust_entry:?}"));
    assert_eq!(
        tags, "t1,t2",
        "tags array flattened to a comma-joined string: {rust_entry:?}"
    );
    assert_eq!(rust_entry.get("name").map(String::as_str), Some("y"));

    // Deleting a CLAIMS key removes it from the list.
    kv.delete(format!("CLAIMS_{otp_subject}")).await.unwrap();
    eventually(WATCH_TIMEOUT, "deleted claims unlisted", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move { (get_claims(&nc, &lattice).await.len() == 1).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn ctl_linkdefs_put_is_forwarded_to_the_provider() {
    let nats = Nats::start();
    let lattice = unique_lattice("ctlfwd");
    let host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let actor = new_actor_key();
    let provider = new_provider_key();
    let link = linkdef_json(&actor, &provider, "wasmcloud:keyvalue", "redis");
    let mut put_forward = nc
        .subscribe(format!("wasmbus.rpc.{lattice}.{provider}.redis.linkdefs.put"))
        .await
        .unwrap();
    let mut del_forward = nc
        .subscribe(format!("wasmbus.rpc.{lattice}.{provider}.redis.linkdefs.del"))
        .await
        .unwrap();
    nc.flush().await.unwrap();

    let ack = request_json(&nc, &host.ctl("linkdefs.put"), &serde_json::to_vec(&link).unwrap()).await;
    assert_accepted(&ack, "linkdefs.put");
    let forward = decode_forward(&next_msg(&mut put_forward, "linkdefs.put forward").await.payload);
    assert_link(&forward, &link, false);

    let del = json!({"actor_id": actor, "contract_id": "wasmcloud:keyvalue", "link_name": "redis"});
    let ack = request_json(&nc, &host.ctl("linkdefs.del"), &serde_json::to_vec(&del).unwrap()).await;
    assert_accepted(&ack, "linkdefs.del");
    let forward = decode_forward(&next_msg(&mut del_forward, "linkdefs.del forward").await.payload);
    assert_link(&forward, &link, false);
}

#[tokio::test]
async fn linkdef_update_replaces_the_values() {
    let nats = Nats::start();
    let lattice = unique_lattice("update");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let kv = lattice_kv(&nc, &lattice).await;
    let actor = new_actor_key();
    let mut link = linkdef_json(&actor, &new_provider_key(), "wasmcloud:testy", "default");
    let key = format!("LINKDEF_{}", linkdef_id(&actor, "wasmcloud:testy", "default"));

    kv.put(&key, serde_json::to_vec(&link).unwrap().into()).await.unwrap();
    expect_event(&mut events, "linkdef_set", WATCH_TIMEOUT, "first put").await;
    link["values"] = json!({"a": "changed", "b": "new"});
    kv.put(&key, serde_json::to_vec(&link).unwrap().into()).await.unwrap();
    let set = expect_event(&mut events, "linkdef_set", WATCH_TIMEOUT, "second put").await;
    assert_link(&set["data"], &link, true);

    let links = eventually(WATCH_TIMEOUT, "updated values listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        let values = link["values"].clone();
        async move {
            let links = get_links(&nc, &lattice).await;
            (links.len() == 1 && links[0]["values"] == values).then_some(links)
        }
    })
    .await;
    assert_link(&links[0], &link, false);
}

#[tokio::test]
async fn otp_shaped_linkdef_with_id_and_unknown_fields_is_accepted() {
    // OTP writes `id` into the value; receivers must ignore unknown fields (PROTOCOL.md §2.5).
    let nats = Nats::start();
    let lattice = unique_lattice("otplink");
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let kv = lattice_kv(&nc, &lattice).await;
    let actor = new_actor_key();
    let id = linkdef_id(&actor, "wasmcloud:testy", "default");
    let link = linkdef_json(&actor, &new_provider_key(), "wasmcloud:testy", "default");
    let mut stored = link.clone();
    stored["id"] = json!(id);
    stored["some_future_field"] = json!({"nested": [1, 2]});
    kv.put(format!("LINKDEF_{id}"), serde_json::to_vec(&stored).unwrap().into())
        .await
        .unwrap();
    let links = eventually(WATCH_TIMEOUT, "OTP-shaped link listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let links = get_links(&nc, &lattice).await;
            (!links.is_empty()).then_some(links)
        }
    })
    .await;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_link(&links[0], &link, false);
}

#[tokio::test]
async fn claims_with_null_version_are_listed_without_nulls() {
    // OTP may write "version": null; get.claims must still be all strings (client ≥0.30
    // parses Vec<HashMap<String, String>>).
    let nats = Nats::start();
    let lattice = unique_lattice("nullclaims");
    let _host = Host::start(&nats, HostOptions::new(&lattice)).await;
    let nc = nats.client().await;
    let kv = lattice_kv(&nc, &lattice).await;
    let subject = new_actor_key();
    let claims = json!({
        "call_alias": "", "caps": "", "iss": new_account_key(), "name": "nullver",
        "rev": "7", "sub": subject, "tags": "", "version": null,
    });
    kv.put(format!("CLAIMS_{subject}"), serde_json::to_vec(&claims).unwrap().into())
        .await
        .unwrap();
    let listed = eventually(WATCH_TIMEOUT, "claims listed", || {
        let nc = nc.clone();
        let lattice = lattice.clone();
        async move {
            let claims = get_claims(&nc, &lattice).await;
            (!claims.is_empty()).then_some(claims)
        }
    })
    .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = string_map(&listed[0], "get.claims entry");
    assert_eq!(entry.get("sub"), Some(&subject), "{entry:?}");
    assert_eq!(entry.get("name").map(String::as_str), Some("nullver"));
    assert_eq!(entry.get("rev").map(String::as_str), Some("7"));
    assert!(
        entry.get("version").is_none_or(String::is_empty),
        "a null version is listed as \"\" or left out: {entry:?}"
    );
}

/// The watch's consumer deleted on the server (as when the cluster node holding it is lost):
/// the watch neither ends nor errs, so the host's position check finds it behind the bucket,
/// reopens it from the last revision applied, and the link written meanwhile still arrives.
#[tokio::test]
async fn a_watch_whose_consumer_vanished_is_reopened_and_misses_nothing() {
    let nats = Nats::start();
    let lattice = unique_lattice("kvstuck");
    let nc = nats.client().await;
    let mut events = nc.subscribe(format!("wasmbus.evt.{lattice}")).await.unwrap();
    let metrics = format!("127.0.0.1:{}", crate::support::free_port());
    let _host = Host::start(&nats, HostOptions::new(&lattice).arg("--metrics-addr", &metrics)).await;

    let js = async_nats::jetstream::new(nc.clone());
    let stream = js
        .get_stream(format!("KV_LATTICEDATA_{lattice}"))
        .await
        .expect("bucket stream");
    let consumers: Vec<String> = stream
        .consumer_names()
        .map(|n| n.expect("consumer name"))
        .collect()
        .await;
    assert!(!consumers.is_empty(), "the host watches the bucket");
    for name in &consumers {
        stream.delete_consumer(name).await.expect("delete the watch's consumer");
    }

    let (actor, provider) = (new_actor_key(), new_provider_key());
    let link = linkdef_json(&actor, &provider, "wasmcloud:testy", "default");
    let kv = lattice_kv(&nc, &lattice).await;
    let id = linkdef_id(&actor, "wasmcloud:testy", "default");
    kv.put(format!("LINKDEF_{id}"), serde_json::to_vec(&link).unwrap().into())
        .await
        .unwrap();
    let set = expect_event(
        &mut events,
        "linkdef_set",
        REOPEN_TIMEOUT,
        "KV put after the consumer vanished",
    )
    .await;
    assert_link(&set["data"], &link, true);
    let now = crate::metrics::scrape(&metrics);
    assert_eq!(
        crate::metrics::total(&now, "shardhost_kv_watch_reopens_total"),
        1.0,
        "reopened once"
    );
    // The next position check (every 2 s) finds it caught up.
    eventually(WATCH_TIMEOUT, "watch lag back to 0", || {
        let metrics = metrics.clone();
        async move {
            let lag = crate::metrics::total(&crate::metrics::scrape(&metrics), "shardhost_kv_watch_lag_entries");
            (lag == 0.0).then_some(())
        }
    })
    .await;
}
