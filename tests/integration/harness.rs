//! The included harness (`shardhost-loadtest`, issue 9) against the real host: the scenarios
//! a user runs from the README, for a few seconds each, asserting zero errors.

use std::time::Duration;

use crate::support::harness::{assert_all_ok, LoadRun};
use crate::support::rpc::lab_with;
use crate::support::{echo_actor_wat, signed_wat, ActorSpec};

/// Bound on one harness command.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(90);

fn harness() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardhost-loadtest"));
    command.kill_on_drop(true);
    command
}

/// Run `command` (bounded) and return its stdout; panics with its stderr if it fails.
async fn run(mut command: tokio::process::Command) -> String {
    let output = tokio::time::timeout(HARNESS_TIMEOUT, command.output())
        .await
        .expect("the harness finishes")
        .expect("the harness runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `prepare-echo` then `start-actor` on the lab's host; the actor's key.
pub(crate) async fn harness_actor(lab: &crate::support::rpc::Lab, name: &str, alias: Option<&str>) -> String {
    harness_actor_with(lab, name, alias, &[]).await
}

/// [`harness_actor`] with `prepare-echo` flags added (`--cap …`).
async fn harness_actor_with(lab: &crate::support::rpc::Lab, name: &str, alias: Option<&str>, flags: &[&str]) -> String {
    let path = lab.dir.path().join(format!("{name}.wasm"));
    let mut prepare = harness();
    prepare
        .arg("prepare-echo")
        .arg("--out")
        .arg(&path)
        .args(["--name", name])
        .args(flags);
    if let Some(alias) = alias {
        prepare.args(["--call-alias", alias]);
    }
    let key = run(prepare).await.trim().to_string();
    let mut start = harness();
    start
        .args(["start-actor", "--nats", &lab.nats.url(), "--lattice", &lab.host.lattice])
        .args(["--host", &lab.host.id, "--file"])
        .arg(&path);
    assert_eq!(run(start).await.trim(), key);
    key
}

/// Actor to actor by call alias: the harness's caller forwards each `Wrap…` call to the echo
/// (two signed invocations per request), closed loop, every reply checked.
#[tokio::test]
async fn the_harness_actor_to_actor_scenario_runs_with_zero_errors() {
    let lab = lab_with("harnessa2a", &[]).await;
    harness_actor(&lab, "loadtest-echo", Some("loadtest/echo")).await;
    let caller = harness_actor(&lab, "loadtest-caller", None).await;
    let out = lab.dir.path().join("a2a.json");
    let load = LoadRun {
        actor: &caller,
        operation: "Wrap.HandleRequest",
        in_flight: 8,
        seconds: 1.5,
        timeout_ms: 2_000,
    };
    let report = load.spawn(&lab, &out).report().await;
    assert_all_ok(&report, "actor to actor");
    let counts = &report["counts"];
    assert!(counts["ok"].as_u64().unwrap_or(0) >= 20, "{counts}");
}

/// Actor to provider: the harness's caller claims `wasmcloud:keyvalue`, the harness starts the
/// real wasmbus-rpc keyvalue provider from its archive (`start-provider`) and links the two
/// (`put-link`); each `Kv…` call then makes the host send a signed `KeyValue.Get` to the
/// provider. Closed loop, every request must end ok.
#[tokio::test]
async fn the_harness_actor_to_provider_scenario_runs_with_zero_errors() {
    let (lab, _cache) = crate::providers::provider_lab("harnessa2p", &[]).await;
    let caps = ["--cap", "wasmcloud:httpserver", "--cap", "wasmcloud:keyvalue"];
    let caller = harness_actor_with(&lab, "loadtest-caller", None, &caps).await;
    let par = crate::support::provider::make_par(lab.dir.path(), "kv.par", false);
    let mut start = harness();
    start
        .args([
            "start-provider",
            "--nats",
            &lab.nats.url(),
            "--lattice",
            &lab.host.lattice,
        ])
        .args(["--host", &lab.host.id, "--file"])
        .arg(&par.path);
    assert_eq!(run(start).await.trim(), par.key);
    let mut link = harness();
    link.args(["put-link", "--nats", &lab.nats.url(), "--lattice", &lab.host.lattice])
        .args([
            "--actor",
            &caller,
            "--provider",
            &par.key,
            "--contract",
            "wasmcloud:keyvalue",
        ]);
    run(link).await;

    let out = lab.dir.path().join("a2p.json");
    let load = LoadRun {
        actor: &caller,
        operation: "Kv.HandleRequest",
        in_flight: 8,
        seconds: 1.5,
        timeout_ms: 2_000,
    };
    let report = load.spawn(&lab, &out).report().await;
    assert_all_ok(&report, "actor to provider");
    let counts = &report["counts"];
    assert!(counts["ok"].as_u64().unwrap_or(0) >= 20, "{counts}");
}

/// The harness's `start` scenario against the real host: first start, then stop and start
/// again, each timed from `la`/`sa` to the event.
#[tokio::test]
async fn the_harness_times_first_starts_and_starts_after_a_stop() {
    let lab = lab_with("tiertimes", &[]).await;
    let echo = signed_wat(&echo_actor_wat(1), ActorSpec::default());
    let path = lab.dir.path().join("echo.wasm");
    std::fs::write(&path, &echo.bytes).expect("write actor");
    let out = lab.dir.path().join("start.json");
    let mut times = harness();
    times
        .args(["start-times", "--nats", &lab.nats.url(), "--lattice", &lab.host.lattice])
        .args(["--host", &lab.host.id, "--rounds", "2", "--wait-secs", "30", "--file"])
        .arg(&path)
        .arg("--json")
        .arg(&out);
    run(times).await;
    let times: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).expect("report")).expect("JSON");
    assert_eq!(times["actor"], echo.key.as_str(), "{times}");
    assert_eq!(times["host_id"], lab.host.id.as_str());
    let first = times["first_start_ms"].as_f64().expect("first start");
    let again: Vec<f64> = times["start_again_ms"]
        .as_array()
        .expect("again")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert!(
        first > 0.0 && again.len() == 2 && again.iter().all(|ms| *ms > 0.0),
        "{times}"
    );
    assert_eq!(times["stop_ms"].as_array().map(Vec::len), Some(2), "{times}");
}
