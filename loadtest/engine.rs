//! The load generator proper: connect K NATS clients, pre-sign the invocations, then send them
//! to `wasmbus.rpc.{lattice}.{actor}` closed- or open-loop for warmup + duration, and turn what
//! came back into a [`RunReport`].
//!
//! Runs on one thread (a current-thread tokio runtime): every outstanding request is a future
//! in one `FuturesUnordered`, and the NATS clients' I/O tasks share the thread. Its own CPU use
//! is in the report, so a saturated generator is visible instead of passing for a slow host.
//!
//! Must never: sign inside the measured loop, hide a request that did not get an answer (every
//! measured request ends in exactly one counter), or wait without a bound (each request has a
//! timeout and the drain after the window has a deadline).

use std::time::Duration;

use async_nats::{Client, RequestErrorKind, Subject};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt as _};
use serde::Serialize;
use tokio::time::Instant;

use crate::error::LoadtestError;
use crate::pool::{
    classify_reply, payload, InvocationPool, InvocationTemplate, Origin, PooledInvocation, PAYLOAD_BYTES_MAX,
    POOL_INVOCATIONS_MAX, POOL_INVOCATIONS_MIN,
};
use crate::procstat::{self, Process};
use crate::raw;
use crate::schedule::{phase_of, OpenSchedule, Pacing, Phase};
use crate::stats::{throughput, ConfigReport, CpuReport, Environment, OriginReport, Outcome, Recorder, RunReport};

/// Most NATS connections a run opens.
pub const CONNECTIONS_MAX: usize = 256;
/// Most requests outstanding at once (closed-loop `--in-flight`, open-loop `--outstanding-max`).
pub const IN_FLIGHT_MAX: usize = 100_000;
/// Longest warmup or measured duration.
pub const DURATION_MS_MAX: u64 = 24 * 3_600 * 1_000;
/// Longest per-request timeout.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// After the window, outstanding requests get their own timeout plus this long to finish.
const DRAIN_SLACK_MS: u64 = 1_000;
/// Longest wait for one NATS connection to be established.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Open loop: the tokio timer fires on millisecond ticks, so the sender sleeps until this long
/// before the next intended send and then yields in a loop until it is due. Costs generator
/// CPU, buys sends within a few µs of their schedule.
const SPIN_BEFORE_SEND_US: u64 = 1_000;
const NANOS_PER_MICRO: u128 = 1_000;

/// Everything a run needs except the cluster key.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub nats_url: String,
    pub lattice: String,
    /// Target actor public key (`M…`).
    pub actor: String,
    pub operation: String,
    pub payload_bytes: usize,
    pub connections: usize,
    pub pacing: Pacing,
    pub duration_ms: u64,
    pub warmup_ms: u64,
    pub timeout_ms: u64,
    pub pool_invocations: usize,
    pub origin: Origin,
    pub host_pid: Option<u32>,
    /// Check that each ok reply's `msg` is the payload (for the echo actor).
    pub verify_echo: bool,
    /// Print a progress line to stderr every this often during the measured window (0: off).
    pub progress_every: Duration,
    /// The `raw` scenario: send to this subject (a `responder`) instead of the actor's, and
    /// take the request's own bytes back as the right reply (raw.rs).
    pub raw_subject: Option<String>,
    /// The raw subject is an actor's behind the built-in messaging provider, not the floor.
    pub raw_is_messaging: bool,
}

fn arg_error(flag: &'static str, reason: impl Into<String>) -> LoadtestError {
    LoadtestError::Arg {
        flag,
        reason: reason.into(),
    }
}

impl RunConfig {
    /// Every limit above, checked before anything is connected or signed.
    pub fn validate(&self) -> Result<(), LoadtestError> {
        if !self.actor.starts_with('M') {
            return Err(arg_error(
                "--actor",
                format!("{:?} is not an actor key (M…)", self.actor),
            ));
        }
        if self.lattice.is_empty() || self.lattice.contains(['.', ' ', '*', '>']) {
            return Err(arg_error("--lattice", "must be one non-empty NATS subject token"));
        }
        if let Some(subject) = &self.raw_subject {
            if !raw::is_literal_subject(subject) {
                return Err(arg_error(
                    "--raw-subject",
                    format!("{subject:?} is not one literal NATS subject"),
                ));
            }
        }
        if self.operation.is_empty() {
            return Err(arg_error("--operation", "must not be empty"));
        }
        if self.payload_bytes > PAYLOAD_BYTES_MAX {
            return Err(arg_error(
                "--payload-bytes",
                format!("at most {PAYLOAD_BYTES_MAX} (no chunking)"),
            ));
        }
        if !(1..=CONNECTIONS_MAX).contains(&self.connections) {
            return Err(arg_error("--connections", format!("1 to {CONNECTIONS_MAX}")));
        }
        match self.pacing {
            Pacing::Closed { in_flight_count } if !(1..=IN_FLIGHT_MAX).contains(&in_flight_count) => {
                return Err(arg_error("--in-flight", format!("1 to {IN_FLIGHT_MAX}")));
            }
            Pacing::Open { rate_per_sec, .. } if OpenSchedule::new(rate_per_sec).is_none() => {
                return Err(arg_error(
                    "--rate",
                    "must be a positive number of invocations per second",
                ));
            }
            Pacing::Open { outstanding_max, .. } if !(1..=IN_FLIGHT_MAX).contains(&outstanding_max) => {
                return Err(arg_error("--outstanding-max", format!("1 to {IN_FLIGHT_MAX}")));
            }
            _ => {}
        }
        if self.duration_ms == 0 || self.duration_ms > DURATION_MS_MAX {
            return Err(arg_error(
                "--duration",
                format!("more than 0 and at most {DURATION_MS_MAX} ms"),
            ));
        }
        if self.warmup_ms > DURATION_MS_MAX {
            return Err(arg_error("--warmup", format!("at most {DURATION_MS_MAX} ms")));
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            return Err(arg_error("--timeout-ms", format!("1 to {TIMEOUT_MS_MAX}")));
        }
        if !(POOL_INVOCATIONS_MIN..=POOL_INVOCATIONS_MAX).contains(&self.pool_invocations) {
            return Err(arg_error(
                "--pool",
                format!("{POOL_INVOCATIONS_MIN} to {POOL_INVOCATIONS_MAX} pre-signed invocations"),
            ));
        }
        Ok(())
    }

    pub fn subject(&self) -> String {
        match &self.raw_subject {
            Some(subject) => subject.clone(),
            None => format!("wasmbus.rpc.{}.{}", self.lattice, self.actor),
        }
    }

    /// `raw`, `messaging` or `actor`, as reported.
    pub fn scenario(&self) -> &'static str {
        match (&self.raw_subject, self.raw_is_messaging) {
            (Some(_), false) => "raw",
            (Some(_), true) => "messaging",
            (None, _) => "actor",
        }
    }
}

/// Run the load described by `config`, signing with `cluster_key` (`SC…`).
pub async fn run(config: &RunConfig, cluster_key: &nkeys::KeyPair) -> Result<RunReport, LoadtestError> {
    config.validate()?;
    if cluster_key.key_pair_type() != nkeys::KeyPairType::Cluster {
        return Err(arg_error("--cluster-seed", "must be a cluster seed (SC…)"));
    }
    if let Some(pid) = config.host_pid {
        // Fail before the run, not after it, when the pid is wrong.
        procstat::cpu_us(Process::Pid(pid))?;
    }
    let environment = environment();
    let template = InvocationTemplate {
        origin: config.origin.clone(),
        target_actor: config.actor.clone(),
        operation: config.operation.clone(),
        payload: payload(config.payload_bytes),
        host_id: nkeys::KeyPair::new_server().public_key(),
    };
    // Connect first: a wrong address should fail at once, not after signing.
    let clients = connect_all(&config.nats_url, config.connections).await?;
    let pool = InvocationPool::build(&template, cluster_key, config.pool_invocations, unix_now_secs())?;
    let subject = Subject::from(config.subject());
    let expected_echo = config.verify_echo.then(|| template.payload.clone());
    let check = if config.raw_subject.is_some() {
        ReplyCheck::Raw {
            verify: config.verify_echo,
        }
    } else {
        ReplyCheck::Invocation {
            echo: expected_echo.as_ref(),
        }
    };

    let drive = drive(config, &clients, &subject, &pool, check).await?;
    for client in &clients {
        // Best effort: the numbers are already taken.
        let _ = client.flush().await;
    }

    // Rates divide by the planned window (the counts are of requests *intended* in it); CPU
    // divides by the span between its two readings.
    let window_us = config.duration_ms.saturating_mul(1_000);
    let cpu_window_us = drive.cpu_window_us();
    let replies = drive.recorder.counts.replies();
    let cpu = |start: Option<u64>, end: Option<u64>| {
        Some(CpuReport::new(end?.saturating_sub(start?), cpu_window_us, replies))
    };
    Ok(RunReport {
        tool: env!("CARGO_BIN_NAME"),
        tool_version: env!("CARGO_PKG_VERSION"),
        environment,
        config: config_report(config, cluster_key),
        window_secs: window_us as f64 / 1e6,
        cpu_window_secs: cpu_window_us as f64 / 1e6,
        warmup_sent: drive.recorder.warmup_sent,
        throughput: throughput(&drive.recorder.counts, window_us),
        latency_us: drive.recorder.latency_summary(),
        send_lag_us: drive.recorder.send_lag_summary(),
        latency_histogram_us: drive.recorder.latency_buckets(),
        host_cpu: cpu(drive.window_start.host_cpu_us, drive.window_end.host_cpu_us),
        loadgen_cpu: cpu(drive.window_start.own_cpu_us, drive.window_end.own_cpu_us),
        outstanding_cap_waits: matches!(config.pacing, Pacing::Open { .. }).then_some(drive.cap_waits),
        counts: drive.recorder.counts,
    })
}

fn config_report(config: &RunConfig, cluster_key: &nkeys::KeyPair) -> ConfigReport {
    ConfigReport {
        nats_url: config.nats_url.clone(),
        lattice: config.lattice.clone(),
        subject: config.subject(),
        scenario: config.scenario(),
        actor: config.actor.clone(),
        operation: config.operation.clone(),
        origin: OriginReport {
            public_key: config.origin.public_key.clone(),
            contract_id: config.origin.contract_id.clone(),
            link_name: config.origin.link_name.clone(),
        },
        cluster_issuer: cluster_key.public_key(),
        payload_bytes: config.payload_bytes,
        connections: config.connections,
        pacing: config.pacing,
        duration_ms: config.duration_ms,
        warmup_ms: config.warmup_ms,
        timeout_ms: config.timeout_ms,
        pool_invocations: config.pool_invocations,
        verify_echo: config.verify_echo,
        host_pid: config.host_pid,
    }
}

async fn connect_all(url: &str, count: usize) -> Result<Vec<Client>, LoadtestError> {
    let mut clients = Vec::with_capacity(count);
    for index in 0..count {
        let options = async_nats::ConnectOptions::new()
            .name(format!("shardhost-loadtest-{index}"))
            .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        let client = options.connect(url).await.map_err(|e| LoadtestError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        clients.push(client);
    }
    Ok(clients)
}

/// CPU readings at one instant.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    host_cpu_us: Option<u64>,
    own_cpu_us: Option<u64>,
}

impl CpuSample {
    fn take(host_pid: Option<u32>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            // A host that exited mid-run has no reading; the report then has no host CPU.
            host_cpu_us: host_pid.and_then(|pid| procstat::cpu_us(Process::Pid(pid)).ok()),
            own_cpu_us: procstat::cpu_us(Process::Own).ok(),
        }
    }
}

struct DriveResult {
    recorder: Recorder,
    window_start: CpuSample,
    window_end: CpuSample,
    cap_waits: u64,
}

impl DriveResult {
    fn cpu_window_us(&self) -> u64 {
        let window = self.window_end.at.saturating_duration_since(self.window_start.at);
        u64::try_from(window.as_micros()).unwrap_or(u64::MAX)
    }
}

/// One finished request.
struct Done {
    phase: Phase,
    outcome: Outcome,
    latency_us: u64,
    send_lag_us: u64,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos() / NANOS_PER_MICRO).unwrap_or(u64::MAX)
}

/// How a reply is judged: as the actor's `InvocationResponse` (whose `msg` must be `echo`
/// when given), or as the raw responder's echo of the request bytes (checked when `verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyCheck<'a> {
    Invocation { echo: Option<&'a Bytes> },
    Raw { verify: bool },
}

/// Send one pre-signed invocation and wait (bounded by `timeout`) for its reply. `intended`
/// is when the schedule wanted it sent; latency counts from there.
async fn request(
    client: &Client,
    subject: &Subject,
    invocation: &PooledInvocation,
    timeout: Duration,
    check: ReplyCheck<'_>,
    intended: Instant,
    phase: Phase,
) -> Done {
    let sent_at = Instant::now();
    let request = async_nats::Request::new()
        .payload(invocation.bytes.clone())
        .timeout(Some(timeout));
    let outcome = match client.send_request(subject.clone(), request).await {
        Ok(message) => match check {
            ReplyCheck::Invocation { echo } => classify_reply(&message.payload, &invocation.id, echo.map(|b| &b[..])),
            ReplyCheck::Raw { verify } => raw::classify_raw(&message.payload, verify.then_some(&invocation.bytes[..])),
        },
        Err(e) => match e.kind() {
            RequestErrorKind::TimedOut => Outcome::Timeout,
            RequestErrorKind::NoResponders => Outcome::NoResponders,
            _ => Outcome::Failure(format!("NATS request failed: {e}")),
        },
    };
    let done_at = Instant::now();
    Done {
        phase,
        outcome,
        latency_us: micros(done_at.saturating_duration_since(intended)),
        send_lag_us: micros(sent_at.saturating_duration_since(intended)),
    }
}

fn record(recorder: &mut Recorder, done: Done) {
    if done.phase == Phase::Measured {
        recorder.record(&done.outcome, done.latency_us, done.send_lag_us);
    }
}

/// The send/receive loop over warmup + duration, then the bounded drain.
async fn drive(
    config: &RunConfig,
    clients: &[Client],
    subject: &Subject,
    pool: &InvocationPool,
    check: ReplyCheck<'_>,
) -> Result<DriveResult, LoadtestError> {
    let mut recorder = Recorder::new()?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let warmup_ns = u64::try_from(Duration::from_millis(config.warmup_ms).as_nanos()).unwrap_or(u64::MAX);
    let duration_ns = u64::try_from(Duration::from_millis(config.duration_ms).as_nanos()).unwrap_or(u64::MAX);
    let schedule = match config.pacing {
        Pacing::Open { rate_per_sec, .. } => {
            Some(OpenSchedule::new(rate_per_sec).ok_or_else(|| arg_error("--rate", "must be positive"))?)
        }
        Pacing::Closed { .. } => None,
    };
    let spin = Duration::from_micros(SPIN_BEFORE_SEND_US);

    let start = Instant::now();
    let measure_start = start + Duration::from_millis(config.warmup_ms);
    let end = measure_start + Duration::from_millis(config.duration_ms);
    let mut in_flight = FuturesUnordered::new();
    let mut sequence: u64 = 0;
    let mut window_start: Option<CpuSample> = None;
    let mut cap_waits: u64 = 0;
    let mut waiting_for_cap = false;
    let progress = (!config.progress_every.is_zero()).then_some(config.progress_every);
    let mut next_progress = progress.map(|every| measure_start + every);
    let timer = tokio::time::sleep_until(end);
    tokio::pin!(timer);
    let mut timer_deadline = end;

    // Issue the request numbered `sequence`, intended at `intended`.
    let issue = move |intended: Instant, sequence: u64, recorder: &mut Recorder| {
        let offset_ns = u64::try_from(intended.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let phase = phase_of(offset_ns, warmup_ns, duration_ns);
        if phase == Phase::Warmup {
            recorder.warmup_sent += 1;
        }
        // Both are non-empty (checked below), so neither lookup misses.
        let client = clients.get((sequence % clients.len().max(1) as u64) as usize)?;
        let invocation = pool.get(sequence)?;
        Some(request(client, subject, invocation, timeout, check, intended, phase))
    };
    if clients.is_empty() || pool.invocations.is_empty() {
        return Err(arg_error("--connections/--pool", "nothing to send with"));
    }

    loop {
        let now = Instant::now();
        if window_start.is_none() && now >= measure_start {
            window_start = Some(CpuSample::take(config.host_pid));
        }
        if let (Some(at), Some(every)) = (next_progress, progress) {
            if now >= at && now < end {
                let elapsed = now.saturating_duration_since(measure_start).as_secs_f64();
                eprintln!("{}", recorder.progress_line(elapsed));
                next_progress = Some(at + every);
            }
        }
        let mut wake = end;
        match (config.pacing, schedule) {
            (Pacing::Closed { in_flight_count }, _) => {
                while now < end && in_flight.len() < in_flight_count {
                    let Some(future) = issue(Instant::now(), sequence, &mut recorder) else {
                        break;
                    };
                    in_flight.push(future);
                    sequence += 1;
                }
            }
            (Pacing::Open { outstanding_max, .. }, Some(schedule)) => loop {
                let intended = start + Duration::from_nanos(schedule.intended_offset_ns(sequence));
                if intended >= end {
                    break;
                }
                if intended > now {
                    wake = intended;
                    break;
                }
                if in_flight.len() >= outstanding_max {
                    // Wait for a completion; the request keeps its intended time, so the wait
                    // shows as latency.
                    cap_waits += u64::from(!waiting_for_cap);
                    waiting_for_cap = true;
                    break;
                }
                waiting_for_cap = false;
                let Some(future) = issue(intended, sequence, &mut recorder) else {
                    break;
                };
                in_flight.push(future);
                sequence += 1;
            },
            (Pacing::Open { .. }, None) => return Err(arg_error("--rate", "must be positive")),
        }
        // Checked after issuing, so an open-loop request due just before the end still leaves.
        if now >= end {
            break;
        }
        if window_start.is_none() {
            wake = wake.min(measure_start);
        }

        let open_loop = schedule.is_some();
        if open_loop && wake.saturating_duration_since(Instant::now()) <= spin {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => record(&mut recorder, done),
                () = tokio::task::yield_now() => {}
            }
            continue;
        }
        let sleep_until = if open_loop {
            wake.checked_sub(spin).unwrap_or(wake)
        } else {
            wake
        };
        if sleep_until != timer_deadline {
            timer.as_mut().reset(sleep_until);
            timer_deadline = sleep_until;
        }
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => record(&mut recorder, done),
            () = &mut timer => {}
        }
    }
    let window_end = CpuSample::take(config.host_pid);

    // Drain: every outstanding request has its own timeout; the deadline only guards against a
    // client that never resolves one.
    let drain_deadline = Instant::now() + timeout + Duration::from_millis(DRAIN_SLACK_MS);
    timer.as_mut().reset(drain_deadline);
    while !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some(done) = in_flight.next() => record(&mut recorder, done),
            () = &mut timer => {
                recorder.record_abandoned(in_flight.len() as u64);
                break;
            }
        }
    }
    if let Some(schedule) = schedule {
        let scheduled = schedule
            .count_before(warmup_ns.saturating_add(duration_ns))
            .saturating_sub(schedule.count_before(warmup_ns));
        recorder.record_unsent(scheduled.saturating_sub(recorder.counts.sent));
    }
    Ok(DriveResult {
        recorder,
        window_start: window_start.unwrap_or(window_end),
        window_end,
        cap_waits,
    })
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Commit, host name, cores and start time for the report. The commit is that of the checkout
/// this binary was built from, read at run time (`git -C <crate dir>`).
pub fn environment() -> Environment {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    Environment {
        git_commit: git(&["rev-parse", "HEAD"]).filter(|commit| !commit.is_empty()),
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"]).map(|status| !status.is_empty()),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string()),
        cores: std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// For `--json`: the report, pretty-printed, with a trailing newline.
pub fn report_json<T: Serialize>(report: &T) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::POOL_INVOCATIONS_DEFAULT;

    pub(crate) fn config() -> RunConfig {
        RunConfig {
            nats_url: "127.0.0.1:4222".to_string(),
            lattice: "default".to_string(),
            actor: nkeys::KeyPair::new_module().public_key(),
            operation: "HttpServer.HandleRequest".to_string(),
            payload_bytes: 64,
            connections: 1,
            pacing: Pacing::Closed { in_flight_count: 1 },
            duration_ms: 1_000,
            warmup_ms: 0,
            timeout_ms: 100,
            pool_invocations: POOL_INVOCATIONS_DEFAULT,
            origin: Origin::new_actor(),
            host_pid: None,
            verify_echo: false,
            raw_subject: None,
            raw_is_messaging: false,
            progress_every: Duration::ZERO,
        }
    }

    #[test]
    fn limits_are_checked_before_anything_runs() {
        config().validate().unwrap();
        let bad: Vec<(&str, RunConfig)> = vec![
            (
                "--actor",
                RunConfig {
                    actor: "Vnope".into(),
                    ..config()
                },
            ),
            (
                "--lattice",
                RunConfig {
                    lattice: "a.b".into(),
                    ..config()
                },
            ),
            (
                "--lattice",
                RunConfig {
                    lattice: String::new(),
                    ..config()
                },
            ),
            (
                "--operation",
                RunConfig {
                    operation: String::new(),
                    ..config()
                },
            ),
            (
                "--payload-bytes",
                RunConfig {
                    payload_bytes: PAYLOAD_BYTES_MAX + 1,
                    ..config()
                },
            ),
            (
                "--connections",
                RunConfig {
                    connections: 0,
                    ..config()
                },
            ),
            (
                "--in-flight",
                RunConfig {
                    pacing: Pacing::Closed { in_flight_count: 0 },
                    ..config()
                },
            ),
            (
                "--rate",
                RunConfig {
                    pacing: Pacing::Open {
                        rate_per_sec: 0.0,
                        outstanding_max: 1,
                    },
                    ..config()
                },
            ),
            (
                "--outstanding-max",
                RunConfig {
                    pacing: Pacing::Open {
                        rate_per_sec: 10.0,
                        outstanding_max: 0,
                    },
                    ..config()
                },
            ),
            (
                "--duration",
                RunConfig {
                    duration_ms: 0,
                    ..config()
                },
            ),
            (
                "--warmup",
                RunConfig {
                    warmup_ms: DURATION_MS_MAX + 1,
                    ..config()
                },
            ),
            (
                "--timeout-ms",
                RunConfig {
                    timeout_ms: 0,
                    ..config()
                },
            ),
            (
                "--pool",
                RunConfig {
                    pool_invocations: 0,
                    ..config()
                },
            ),
        ];
        for (flag, config) in bad {
            match config.validate() {
                Err(LoadtestError::Arg { flag: found, .. }) => assert_eq!(found, flag),
                other => panic!("{flag}: {other:?}"),
            }
        }
    }

    #[test]
    fn environment_is_filled_in() {
        let environment = environment();
        assert!(environment.cores >= 1);
        assert!(chrono::DateTime::parse_from_rfc3339(&environment.started_at).is_ok());
        if let Some(commit) = environment.git_commit {
            assert_eq!(commit.len(), 40, "{commit}");
        }
    }
}
