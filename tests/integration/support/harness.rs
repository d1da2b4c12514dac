//! The included load generator (`shardhost-loadtest run`) driven from tests: pre-signed
//! invocations, closed loop, every request's outcome counted in its JSON report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rpc::Lab;

/// Bound on one generator run (its window, its drain, slack for a slow machine).
pub const GENERATOR_TIMEOUT: Duration = Duration::from_secs(90);
/// Outcomes that mean a request was not answered as it should have been.
pub const NOT_OK: [&str; 5] = ["error_replies", "timeouts", "no_responders", "failures", "abandoned"];

/// One closed-loop run against `actor` on the lab's lattice.
pub struct LoadRun<'a> {
    pub actor: &'a str,
    pub operation: &'a str,
    pub in_flight: u32,
    pub seconds: f64,
    pub timeout_ms: u64,
}

impl LoadRun<'_> {
    /// Start the generator on the lab's NATS; its report goes to `out`.
    pub fn spawn(&self, lab: &Lab, out: &Path) -> Generator {
        self.spawn_at(&lab.nats.url(), lab, out)
    }

    /// Start the generator connected to `nats_url` (another node of a cluster).
    pub fn spawn_at(&self, nats_url: &str, lab: &Lab, out: &Path) -> Generator {
        self.spawn_paced(nats_url, &["--in-flight", &self.in_flight.to_string()], lab, out)
    }

    /// Start the generator open loop: `rate` invocations per second on a fixed schedule,
    /// whatever the host answers, with at most `outstanding` unanswered (`in_flight` unused).
    pub fn spawn_open(&self, rate: u64, outstanding: u64, lab: &Lab, out: &Path) -> Generator {
        let pacing = [
            "--rate",
            &rate.to_string(),
            "--outstanding-max",
            &outstanding.to_string(),
        ];
        self.spawn_paced(&lab.nats.url(), &pacing, lab, out)
    }

    fn spawn_paced(&self, nats_url: &str, pacing: &[&str], lab: &Lab, out: &Path) -> Generator {
        let child = tokio::process::Command::new(generator_binary())
            .args(["run", "--nats", nats_url, "--lattice", &lab.host.lattice])
            .args(["--actor", self.actor, "--operation", self.operation, "--verify-echo"])
            .args(pacing)
            .args(["--warmup", "0.3", "--pool", "64"])
            .args([
                "--duration",
                &self.seconds.to_string(),
                "--timeout-ms",
                &self.timeout_ms.to_string(),
            ])
            .arg("--json")
            .arg(out)
            .env("WASMCLOUD_CLUSTER_SEED", lab.cluster.seed().expect("cluster seed"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start shardhost-loadtest");
        Generator {
            child,
            out: out.to_path_buf(),
        }
    }
}

/// The generator binary: `$SHARDHOST_LOADTEST_BIN` (e.g. a release build, so the generator is
/// not the bottleneck) or the one cargo built with the tests.
fn generator_binary() -> PathBuf {
    std::env::var_os("SHARDHOST_LOADTEST_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_shardhost-loadtest").into(), PathBuf::from)
}

pub struct Generator {
    child: tokio::process::Child,
    out: PathBuf,
}

impl Generator {
    /// Wait (bounded) for the run to end; its report.
    pub async fn report(self) -> serde_json::Value {
        let finished = tokio::time::timeout(GENERATOR_TIMEOUT, self.child.wait_with_output())
            .await
            .expect("the generator finishes")
            .expect("generator output");
        assert!(
            finished.status.success(),
            "{}",
            String::from_utf8_lossy(&finished.stderr)
        );
        serde_json::from_slice(&std::fs::read(&self.out).expect("report")).expect("report is JSON")
    }
}

/// Every request of `report` ended ok.
pub fn assert_all_ok(report: &serde_json::Value, what: &str) {
    let counts = &report["counts"];
    for bad in NOT_OK {
        assert_eq!(counts[bad], 0, "{what}: {bad}: {counts}");
    }
}
