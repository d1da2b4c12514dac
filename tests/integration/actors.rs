//! Actor lifecycle through the control interface (PROTOCOL §5.1, §5.3, §5.6, §6, §7): signed
//! actors started from `file://` and from a real local OCI registry, refused actors (unsigned,
//! tampered, expired, not yet valid, clashing alias, file:// not allowed) with the right
//! events, scale in both shapes, stop, update, auctions, and the CLAIMS/REFMAP KV entries.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::rpc::reloadable_key;
use crate::support::{
    assert_accepted, assert_refused, expect_event, lattice_kv, next_event, request_json, signed_echo, unique_lattice,
    unix_now_secs, ActorSpec, Host, HostOptions, Nats, Registry, SignedActor,
};

/// Fetch + validate + compile of a small actor, on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

struct Lab {
    nats: Nats,
    host: Host,
    nc: async_nats::Client,
    events: async_nats::Subscriber,
    dir: tempfile::TempDir,
}

async fn lab(tag: &str, args: &[(&str, &str)], flags: &[&str]) -> Lab {
    let nats = Nats::start();
    let mut options = HostOptions::new(&unique_lattice(tag));
    for (flag, value) in args {
        options = options.arg(flag, value);
    }
    for flag in flags {
        options.args.push(flag.to_string());
    }
    let (host, nc, events) = crate::support::host_with_events(&nats, options).await;
    Lab {
        nats,
        host,
        nc,
        events,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Lab {
    fn write(&self, name: &str, actor: &SignedActor) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, &actor.bytes).expect("write actor");
        format!("file://{}", path.display())
    }

    async fn cmd(&self, command: &str, body: Value) -> Value {
        request_json(&self.nc, &self.host.cmd(command), body.to_string().as_bytes()).await
    }

    async fn inventory(&self) -> Value {
        request_json(&self.nc, &self.host.ctl(&format!("get.{}.inv", self.host.id)), b"").await
    }

    async fn instances_of(&self, key: &str) -> Vec<Value> {
        let inv = self.inventory().await;
        inv["actors"]
            .as_array()
            .expect("actors list")
            .iter()
            .find(|a| a["id"] == key)
            .map(|a| a["instances"].as_array().expect("instances").clone())
            .unwrap_or_default()
    }

    async fn start_failed(&mut self, what: &str) -> String {
        let single = expect_event(&mut self.events, "actor_start_failed", START_TIMEOUT, what).await;
        let plural = expect_event(&mut self.events, "actors_start_failed", EVENT_TIMEOUT, what).await;
        assert_eq!(plural["data"]["host_id"], self.host.id.as_str());
        assert_eq!(single["data"]["error"], plural["data"]["error"]);
        single["data"]["error"].as_str().expect("error string").to_string()
    }
}

#[tokio::test]
async fn file_actor_starts_with_events_inventory_and_kv_claims() {
    let mut lab = lab("actfile", &[], &["--allow-file-load"]).await;
    let actor = signed_echo(ActorSpec {
        call_alias: Some("test/echo".into()),
        rev: 7,
        ..Default::default()
    });
    let reference = lab.write("echo.wasm", &actor);
    let ack = lab
        .cmd(
            "la",
            json!({ "actor_ref": reference, "count": 2, "host_id": lab.host.id }),
        )
        .await;
    assert_accepted(&ack, "la");

    let started = expect_event(&mut lab.events, "actor_started", START_TIMEOUT, "first instance").await;
    assert_eq!(started["data"]["public_key"], actor.key.as_str());
    assert_eq!(started["data"]["image_ref"], reference.as_str());
    assert_eq!(started["data"]["claims"]["call_alias"], "test/echo");
    assert_eq!(started["data"]["claims"]["revision"], 7);
    expect_event(&mut lab.events, "actor_started", EVENT_TIMEOUT, "second instance").await;
    let plural = expect_event(&mut lab.events, "actors_started", EVENT_TIMEOUT, "la").await;
    assert_eq!(plural["data"]["count"], 2);

    let instances = lab.instances_of(&actor.key).await;
    assert_eq!(instances.len(), 2, "{instances:?}");
    assert_eq!(instances[0]["revision"], 7);
    assert_ne!(instances[0]["instance_id"], instances[1]["instance_id"]);

    // Both shards built a warm pool of the compiled module (the host logs it at debug).
    crate::support::eventually(EVENT_TIMEOUT, "warm pools on both shards", || {
        let log = lab.host.stderr();
        let ready = |shard: &str| {
            log.lines().any(|l| {
                l.contains("actor pool ready") && l.contains(shard) && l.contains(&actor.key) && !l.contains("warm=0")
            })
        };
        std::future::ready((ready("shard=shard-0") && ready("shard=shard-1")).then_some(()))
    })
    .await;
    assert!(!lab.host.stderr().contains("cannot build the actor's pool"));

    let kv = lattice_kv(&lab.nc, &lab.host.lattice).await;
    let entry = kv
        .get(format!("CLAIMS_{}", actor.key))
        .await
        .expect("kv get")
        .expect("CLAIMS entry");
    let stored: Value = serde_json::from_slice(&entry).expect("claims JSON");
    assert_eq!(stored["sub"], actor.key.as_str());
    assert_eq!(stored["call_alias"], "test/echo");
    assert_eq!(stored["rev"], "7");
    assert!(
        stored.as_object().unwrap().values().all(Value::is_string),
        "all strings: {stored}"
    );
    drop(lab.nats);
}

#[tokio::test]
async fn refused_actors_never_run_and_say_why() {
    let mut lab = lab("actbad", &[], &["--allow-file-load"]).await;
    let now = unix_now_secs();
    let unsigned = SignedActor {
        bytes: wat::parse_str(crate::support::echo_actor_wat(1)).expect("wat"),
        key: String::new(),
    };
    let mut tampered = signed_echo(ActorSpec::default());
    let last = tampered.bytes.len() - 1;
    // Change a byte inside the code section region without breaking the binary's framing.
    let pos = tampered
        .bytes
        .windows(2)
        .position(|w| w == [0x41, 0x01])
        .unwrap_or(last);
    tampered.bytes[pos + 1] = 0x02;
    let expired = signed_echo(ActorSpec {
        expires_secs: Some(now - 60),
        ..Default::default()
    });
    let early = signed_echo(ActorSpec {
        not_before_secs: Some(now + 3_600),
        ..Default::default()
    });
    let cases = [
        ("unsigned.wasm", &unsigned, "no embedded claims"),
        ("tampered.wasm", &tampered, "changed after signing"),
        ("expired.wasm", &expired, "expired"),
        ("early.wasm", &early, "not valid before"),
    ];
    for (name, actor, why) in cases {
        let reference = lab.write(name, actor);
        assert_accepted(&lab.cmd("la", json!({ "actor_ref": reference })).await, name);
        let error = lab.start_failed(name).await;
        assert!(error.contains(why), "{name}: error {error:?} should say {why:?}");
    }
    assert!(lab.inventory().await["actors"].as_array().unwrap().is_empty());
    assert!(next_event(&mut lab.events, "actor_started", Duration::from_millis(300))
        .await
        .is_none());
}

#[tokio::test]
async fn file_references_need_allow_file_load() {
    let mut lab = lab("actnofile", &[], &[]).await;
    let actor = signed_echo(ActorSpec::default());
    let reference = lab.write("echo.wasm", &actor);
    let ack = lab.cmd("la", json!({ "actor_ref": reference })).await;
    if ack["accepted"] == true {
        let error = lab.start_failed("file:// without --allow-file-load").await;
        assert!(error.contains("allow-file-load"), "{error}");
    } else {
        assert!(assert_refused(&ack, "la").contains("allow-file-load"));
    }
    assert!(lab.inventory().await["actors"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn oci_actor_starts_and_writes_claims_and_refmap() {
    let registry = Registry::start();
    let mut lab = lab("actoci", &[("--allowed-insecure", &registry.addr)], &[]).await;
    let actor = signed_echo(ActorSpec::default());
    let reference = format!("{}/echo:0.1.0", registry.addr);
    crate::oci::push_actor(&registry, &reference, &actor.bytes).await;
    assert_accepted(
        &lab.cmd("scale", json!({ "actor_ref": reference, "count": 5 })).await,
        "scale",
    );
    let started = expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "scale from OCI").await;
    assert_eq!(started["data"]["public_key"], actor.key.as_str());
    let instances = lab.instances_of(&actor.key).await;
    assert_eq!(
        instances.len(),
        1,
        "0.30+ scale keeps one instance group: {instances:?}"
    );
    assert_eq!(instances[0]["max_concurrent"], 5);
    assert_eq!(instances[0]["image_ref"], reference.as_str());

    let kv = lattice_kv(&lab.nc, &lab.host.lattice).await;
    use base64::Engine as _;
    let key = format!(
        "REFMAP_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&reference)
    );
    let refmap: Value = serde_json::from_slice(&kv.get(&key).await.expect("kv").expect("REFMAP entry")).unwrap();
    assert_eq!(refmap, json!({ "oci_url": reference, "public_key": actor.key }));
    assert!(kv.get(format!("CLAIMS_{}", actor.key)).await.expect("kv").is_some());
}

#[tokio::test]
async fn scale_and_stop_in_both_shapes() {
    let mut lab = lab("actscale", &[], &["--allow-file-load"]).await;
    let actor = signed_echo(ActorSpec::default());
    let reference = lab.write("echo.wasm", &actor);
    // OTP shape: actor_id + instance count.
    let otp = json!({ "actor_id": actor.key, "actor_ref": reference, "count": 3 });
    assert_accepted(&lab.cmd("scale", otp).await, "scale 3");
    expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "scale 3").await;
    assert_eq!(lab.instances_of(&actor.key).await.len(), 3);

    // sa with a count stops that many; without one, all that match.
    assert_accepted(
        &lab.cmd("sa", json!({ "actor_ref": actor.key, "count": 1 })).await,
        "sa 1",
    );
    let stopped = expect_event(&mut lab.events, "actors_stopped", EVENT_TIMEOUT, "sa 1").await;
    assert_eq!(
        (stopped["data"]["count"].as_u64(), stopped["data"]["remaining"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(lab.instances_of(&actor.key).await.len(), 2);
    let filtered = json!({ "actor_ref": actor.key, "annotations": { "app": "other" } });
    assert_refused(&lab.cmd("sa", filtered).await, "sa with unmatched annotations");
    assert_accepted(&lab.cmd("sa", json!({ "actor_ref": actor.key })).await, "sa all");
    let stopped = expect_event(&mut lab.events, "actors_stopped", EVENT_TIMEOUT, "sa all").await;
    assert_eq!(stopped["data"]["remaining"], 0);
    assert!(lab.instances_of(&actor.key).await.is_empty());
    assert_refused(
        &lab.cmd("sa", json!({ "actor_ref": actor.key })).await,
        "sa of a stopped actor",
    );

    // 0.30+ shape: count null = unbounded max concurrency; 0 stops.
    assert_accepted(
        &lab.cmd("scale", json!({ "actor_ref": reference, "count": null })).await,
        "scale null",
    );
    expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "scale null").await;
    let instances = lab.instances_of(&actor.key).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0]["max_concurrent"], u16::MAX);
    assert_accepted(
        &lab.cmd("scale", json!({ "actor_ref": reference, "count": 0 })).await,
        "scale 0",
    );
    expect_event(&mut lab.events, "actor_stopped", EVENT_TIMEOUT, "scale 0").await;
    assert!(lab.instances_of(&actor.key).await.is_empty());
}

#[tokio::test]
async fn clashing_call_alias_is_refused() {
    let mut lab = lab("actalias", &[], &["--allow-file-load"]).await;
    let first = signed_echo(ActorSpec {
        call_alias: Some("team/echo".into()),
        ..Default::default()
    });
    let second = signed_echo(ActorSpec {
        call_alias: Some("team/echo".into()),
        marker: 2,
        ..Default::default()
    });
    let (r1, r2) = (lab.write("a.wasm", &first), lab.write("b.wasm", &second));
    assert_accepted(&lab.cmd("la", json!({ "actor_ref": r1 })).await, "first");
    expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "first").await;
    assert_accepted(&lab.cmd("la", json!({ "actor_ref": r2 })).await, "second");
    let error = lab.start_failed("second with the same alias").await;
    assert!(error.contains("team/echo") && error.contains(&first.key), "{error}");
    assert!(lab.instances_of(&second.key).await.is_empty());
}

#[tokio::test]
async fn update_swaps_the_module_of_the_same_key_only() {
    let mut lab = lab("actupd", &[], &["--allow-file-load"]).await;
    let seed = reloadable_key(wascap::prelude::KeyPair::new_module)
        .seed()
        .expect("seed");
    let same_key = || Some(wascap::prelude::KeyPair::from_seed(&seed).expect("from seed"));
    let v1 = signed_echo(ActorSpec {
        rev: 1,
        marker: 1,
        subject: same_key(),
        ..Default::default()
    });
    let v2 = signed_echo(ActorSpec {
        rev: 2,
        marker: 2,
        subject: same_key(),
        ..Default::default()
    });
    let other = signed_echo(ActorSpec {
        rev: 3,
        marker: 3,
        ..Default::default()
    });
    let (r1, r2, r3) = (
        lab.write("v1.wasm", &v1),
        lab.write("v2.wasm", &v2),
        lab.write("other.wasm", &other),
    );
    assert_accepted(&lab.cmd("la", json!({ "actor_ref": r1 })).await, "v1");
    expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "v1").await;

    let upd = json!({ "actor_id": v1.key, "new_actor_ref": r2 });
    assert_accepted(&lab.cmd("upd", upd).await, "upd v2");
    let updated = expect_event(&mut lab.events, "actor_updated", START_TIMEOUT, "upd v2").await;
    assert_eq!(updated["data"]["revision"], 2);
    let instances = lab.instances_of(&v1.key).await;
    assert_eq!(
        (instances.len(), &instances[0]["revision"], &instances[0]["image_ref"]),
        (1, &json!(2), &json!(r2))
    );

    let upd = json!({ "actor_id": v1.key, "new_actor_ref": r3 });
    assert_accepted(&lab.cmd("upd", upd).await, "upd to another key");
    let failed = expect_event(&mut lab.events, "actor_update_failed", START_TIMEOUT, "other key").await;
    assert!(
        failed["data"]["reason"].as_str().unwrap().contains(&other.key),
        "{failed}"
    );
    assert_eq!(lab.instances_of(&v1.key).await[0]["revision"], 2);
    let not_running = json!({ "actor_id": other.key, "new_actor_ref": r3 });
    assert_refused(
        &lab.cmd("upd", not_running).await,
        "upd of an actor that is not running",
    );
}

#[tokio::test]
async fn actor_auctions_bid_only_when_labels_match() {
    let lab = lab("actauction", &[("--label", "zone=edge-1")], &[]).await;
    let subject = lab.host.ctl("auction.actor");
    let matching = json!({ "actor_ref": "localhost:5000/echo:0.1", "constraints": { "zone": "edge-1" } });
    let bid = request_json(&lab.nc, &subject, matching.to_string().as_bytes()).await;
    assert_eq!(bid["host_id"], lab.host.id.as_str());
    assert_eq!(bid["actor_ref"], "localhost:5000/echo:0.1");
    assert_eq!(bid["constraints"]["zone"], "edge-1");

    let other = json!({ "actor_ref": "localhost:5000/echo:0.1", "constraints": { "zone": "edge-2" } });
    let reply = tokio::time::timeout(
        Duration::from_millis(1_500),
        lab.nc.request(subject.clone(), other.to_string().into_bytes().into()),
    )
    .await;
    assert!(
        !matches!(reply, Ok(Ok(_))),
        "a host whose labels do not match must not bid"
    );
}

#[tokio::test]
async fn host_stop_stops_its_actors_first() {
    let mut lab = lab("actstop", &[], &["--allow-file-load"]).await;
    let actor = signed_echo(ActorSpec::default());
    let reference = lab.write("echo.wasm", &actor);
    assert_accepted(
        &lab.cmd("la", json!({ "actor_ref": reference, "count": 2 })).await,
        "la",
    );
    expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "la").await;
    assert_accepted(&lab.cmd("stop", json!({ "host_id": lab.host.id })).await, "stop");
    let mut order = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(EVENT_TIMEOUT, futures::StreamExt::next(&mut lab.events)).await {
        let event: Value = serde_json::from_slice(&msg.payload).expect("event JSON");
        let name = event["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("com.wasmcloud.lattice.")
            .to_string();
        if name == "actors_stopped" {
            assert_eq!(
                (event["data"]["count"].as_u64(), event["data"]["remaining"].as_u64()),
                (Some(2), Some(0))
            );
        }
        let last = name == "host_stopped";
        order.push(name);
        if last {
            break;
        }
    }
    assert_eq!(
        order,
        ["actor_stopped", "actor_stopped", "actors_stopped", "host_stopped"],
        "{order:?}"
    );
    let status = lab.host.wait_exit(crate::support::HOST_EXIT_TIMEOUT).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn max_concurrency_scales_report_the_counts_wadm_adds_up() {
    // wadm 0.10 scales with `count` = the desired max concurrency (no actor_id), adds the
    // `count` of actors_started and subtracts that of actors_stopped, and reads
    // `max_concurrent` from the inventory.
    let mut lab = lab("actwadm", &[("--heartbeat-interval-ms", "300")], &["--allow-file-load"]).await;
    let actor = signed_echo(ActorSpec::default());
    let reference = lab.write("echo.wasm", &actor);
    let managed = json!({ "wasmcloud.dev/managed-by": "wadm", "wasmcloud.dev/appspec": "echo" });
    let scale = |count: u64| json!({ "actor_ref": reference, "count": count, "annotations": managed });

    assert_accepted(&lab.cmd("scale", scale(2)).await, "scale 2");
    let started = expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "scale 2").await;
    assert_eq!(started["data"]["count"], 2, "{started}");
    assert_eq!(started["data"]["image_ref"], reference.as_str());
    let instances = lab.instances_of(&actor.key).await;
    assert_eq!(instances.len(), 1, "one entry per annotation set");
    assert_eq!(instances[0]["max_concurrent"], 2);
    assert_eq!(instances[0]["annotations"], managed);

    // The same request again changes nothing and reports nothing.
    assert_accepted(&lab.cmd("scale", scale(2)).await, "scale 2 again");
    assert!(
        next_event(&mut lab.events, "actors_started", Duration::from_millis(800))
            .await
            .is_none()
    );

    assert_accepted(&lab.cmd("scale", scale(5)).await, "scale 5");
    let up = expect_event(&mut lab.events, "actors_started", START_TIMEOUT, "scale 5").await;
    assert_eq!(up["data"]["count"], 3);
    assert_accepted(&lab.cmd("scale", scale(1)).await, "scale 1");
    let down = expect_event(&mut lab.events, "actors_stopped", EVENT_TIMEOUT, "scale 1").await;
    assert_eq!(
        (down["data"]["count"].as_u64(), down["data"]["remaining"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(lab.instances_of(&actor.key).await[0]["max_concurrent"], 1);
    let heartbeat = expect_event(&mut lab.events, "host_heartbeat", EVENT_TIMEOUT, "heartbeat").await;
    assert_eq!(heartbeat["data"]["actors"][&actor.key], 1);

    assert_accepted(&lab.cmd("scale", scale(0)).await, "scale 0");
    let gone = expect_event(&mut lab.events, "actors_stopped", EVENT_TIMEOUT, "scale 0").await;
    assert_eq!(
        (gone["data"]["count"].as_u64(), gone["data"]["remaining"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(lab.instances_of(&actor.key).await.is_empty());
}
