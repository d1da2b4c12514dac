//! Provider supervision against a real nats-server, host and wasmbus-rpc 0.15 provider:
//! health checks through SIGSTOP/SIGCONT and unhealthy replies, restarts after `kill -9` with
//! the links handed over again, a crash loop given up, and no provider outliving its host.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::providers::{
    file_ref, inventory_providers, last_pid, launch, provider_lab, put_link, record_config, start_provider,
    HEALTH_CHANGE_TIMEOUT,
};
use crate::support::provider::{make_par, process_alive, wait_record};
use crate::support::rpc::{EVENT_TIMEOUT, START_TIMEOUT};
use crate::support::{assert_accepted, eventually, expect_event};

#[tokio::test]
async fn health_follows_sigstop_and_sigcont() {
    let (mut lab, _cache) = provider_lab("provhealth", &[]).await;
    let par = make_par(lab.dir.path(), "kv.par", true);
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    start_provider(&mut lab, &file_ref(&par.path), "default", &config).await;
    let pid = last_pid(&records_path);
    let inv = inventory_providers(&lab).await;
    assert_eq!(inv[0]["healthy"], true, "{inv:?}");
    // Healthy and unchanged: status events between.
    expect_event(
        &mut lab.events,
        "health_check_status",
        EVENT_TIMEOUT,
        "unchanged health",
    )
    .await;

    // SAFETY: signalling our own test's child-of-child by pid.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let failed = expect_event(&mut lab.events, "health_check_failed", HEALTH_CHANGE_TIMEOUT, "SIGSTOP").await;
    assert_eq!(failed["data"]["public_key"], par.key.as_str());
    assert_eq!(failed["data"]["link_name"], "default");
    assert_eq!(inventory_providers(&lab).await[0]["healthy"], false);
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    expect_event(&mut lab.events, "health_check_passed", HEALTH_CHANGE_TIMEOUT, "SIGCONT").await;

    // A provider that answers unhealthy counts as unhealthy.
    let marker = PathBuf::from(format!("{}.unhealthy", records_path.display()));
    std::fs::write(&marker, b"").expect("marker");
    expect_event(
        &mut lab.events,
        "health_check_failed",
        HEALTH_CHANGE_TIMEOUT,
        "unhealthy reply",
    )
    .await;
    std::fs::remove_file(&marker).expect("remove marker");
    expect_event(
        &mut lab.events,
        "health_check_passed",
        HEALTH_CHANGE_TIMEOUT,
        "healthy again",
    )
    .await;
}

#[tokio::test]
async fn a_killed_provider_is_restarted_with_its_links_and_a_crash_loop_is_given_up() {
    let (mut lab, _cache) = provider_lab("provrestart", &[]).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let actor = crate::support::new_actor_key();
    put_link(&lab, &actor, &par.key, json!({})).await;
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    start_provider(&mut lab, &file_ref(&par.path), "default", &config).await;
    let first_pid = last_pid(&records_path);

    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    let restarting = expect_event(&mut lab.events, "provider_restarting", EVENT_TIMEOUT, "kill -9").await;
    assert_eq!(restarting["data"]["attempt"], 1);
    expect_event(&mut lab.events, "provider_started", START_TIMEOUT, "restart").await;
    expect_event(
        &mut lab.events,
        "health_check_passed",
        EVENT_TIMEOUT,
        "health after restart",
    )
    .await;
    // The new process got HostData with the link again.
    let host_data = wait_record(&records_path, 2, EVENT_TIMEOUT, "second host_data", |r| {
        r["event"] == "host_data"
    })
    .await;
    assert_eq!(host_data["link_actor_ids"], json!([actor]));
    let second_pid = last_pid(&records_path);
    assert_ne!(first_pid, second_pid);
    assert!(!process_alive(first_pid));
    let inv = inventory_providers(&lab).await;
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0]["restarts"], 1, "{inv:?}");

    // A provider that always exits: bounded attempts, then given up with the exit status.
    let crashy = make_par(lab.dir.path(), "crashy.par", false);
    let (_crashy_records, crashy_config) = record_config(&lab, "crashy", json!({ "exit_at_start": 3 }));
    assert_accepted(
        &launch(&lab, &file_ref(&crashy.path), "crashy", &crashy_config).await,
        "lp crashy",
    );
    let attempts_max = 5;
    for attempt in 1..=attempts_max {
        let event = loop {
            let event = expect_event(
                &mut lab.events,
                "provider_restarting",
                Duration::from_secs(20),
                "crash loop",
            )
            .await;
            if event["data"]["public_key"] == crashy.key.as_str() {
                break event;
            }
        };
        assert_eq!(event["data"]["attempt"], attempt);
        assert!(
            event["data"]["exit_status"].as_str().unwrap_or_default().contains('3'),
            "{event}"
        );
    }
    let given_up = loop {
        let event = expect_event(&mut lab.events, "provider_stopped", Duration::from_secs(20), "give up").await;
        if event["data"]["public_key"] == crashy.key.as_str() {
            break event;
        }
    };
    let reason = given_up["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gave up") && reason.contains('3'), "{reason}");
    // The control plane kept answering all along, and the healthy provider still runs.
    let inv = inventory_providers(&lab).await;
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert_eq!(inv[0]["id"], par.key.as_str());
}

#[tokio::test]
async fn host_stop_stops_providers_and_none_outlives_a_killed_host() {
    let (mut lab, _cache) = provider_lab("provhoststop", &[]).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    start_provider(&mut lab, &file_ref(&par.path), "default", &config).await;
    let pid = last_pid(&records_path);
    lab.host.signal("TERM");
    let stopped = expect_event(&mut lab.events, "provider_stopped", EVENT_TIMEOUT, "host SIGTERM").await;
    assert_eq!(stopped["data"]["reason"], "normal");
    expect_event(&mut lab.events, "host_stopped", EVENT_TIMEOUT, "host_stopped").await;
    wait_record(&records_path, 1, EVENT_TIMEOUT, "shutdown", |r| {
        r["event"] == "shutdown"
    })
    .await;
    let status = lab.host.wait_exit(crate::support::HOST_EXIT_TIMEOUT).await;
    assert!(status.success(), "{status}");
    assert!(!process_alive(pid), "provider {pid} outlived its host");

    // kill -9 of the host: the parent-death signal takes the provider down with it.
    let (mut lab, _cache) = provider_lab("provhostkill", &[]).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    start_provider(&mut lab, &file_ref(&par.path), "default", &config).await;
    let pid = last_pid(&records_path);
    lab.host.signal("KILL");
    lab.host.wait_exit(crate::support::HOST_EXIT_TIMEOUT).await;
    eventually(EVENT_TIMEOUT, "provider gone after kill -9 of the host", || async {
        (!process_alive(pid)).then_some(())
    })
    .await;
}
