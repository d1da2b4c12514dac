//! What a run counts and how it is reported: the outcome of each request, HDR histograms of
//! latency and send lag, bounded grouping of error texts, and the JSON document / human
//! summary built from them. Pure: the engine feeds it outcomes and clock readings.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::LoadtestError;
use crate::schedule::Pacing;

/// Largest latency the histograms track; larger values are clamped to it (a request can only
/// take longer than its timeout through a stalled generator, and then the clamp still shows).
pub const LATENCY_US_MAX: u64 = 3_600 * 1_000_000;
/// Significant decimal digits of the histograms (0.1 % value resolution).
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;
/// Distinct error texts kept per group; later distinct texts are counted under
/// [`OTHER_TEXTS_KEY`] so a host answering with unique texts cannot grow the report without
/// bound.
pub const DISTINCT_TEXTS_MAX: usize = 32;
pub const OTHER_TEXTS_KEY: &str = "(more distinct texts)";
/// Longest error text kept, in bytes (cut at a character boundary).
pub const ERROR_TEXT_BYTES_MAX: usize = 240;
const MICROS_PER_SEC: f64 = 1e6;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A reply without `error` (and, when checked, with the right id and echoed payload).
    Ok,
    /// A reply whose `error` is set: the host did the work of refusing or failing it.
    ErrorReply(String),
    /// No reply within `--timeout-ms`.
    Timeout,
    /// NATS answered that nobody subscribes to the actor's subject.
    NoResponders,
    /// Anything else: a reply we cannot decode, a wrong `invocation_id`, a payload that was not
    /// echoed, a NATS client error. The text says which.
    Failure(String),
}

/// Counters of the measured window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests intended in the measured window (all of them were sent).
    pub sent: u64,
    pub ok: u64,
    pub error_replies: u64,
    pub timeouts: u64,
    pub no_responders: u64,
    pub failures: u64,
    /// Requests still outstanding when the drain after the window gave up (not in the other
    /// counts).
    pub abandoned: u64,
    /// Open loop: requests the schedule put in the window that were never sent, because the
    /// outstanding cap was still full when the window closed. Not in `sent`. A non-zero value
    /// means the host (or the generator) could not keep up with the rate.
    pub unsent: u64,
    pub error_replies_by_text: BTreeMap<String, u64>,
    pub failures_by_text: BTreeMap<String, u64>,
}

impl Counts {
    /// Requests the host answered (ok or error reply).
    pub fn replies(&self) -> u64 {
        self.ok + self.error_replies
    }
}

/// Add one to `text`'s counter, keeping at most [`DISTINCT_TEXTS_MAX`] distinct texts.
fn count_text(map: &mut BTreeMap<String, u64>, text: &str) {
    let text = truncate_text(text);
    if let Some(count) = map.get_mut(text) {
        *count += 1;
    } else if map.len() < DISTINCT_TEXTS_MAX {
        map.insert(text.to_string(), 1);
    } else {
        *map.entry(OTHER_TEXTS_KEY.to_string()).or_insert(0) += 1;
    }
}

fn truncate_text(text: &str) -> &str {
    if text.len() <= ERROR_TEXT_BYTES_MAX {
        return text;
    }
    let mut end = ERROR_TEXT_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Counts plus histograms for the measured window.
pub struct Recorder {
    pub counts: Counts,
    /// Requests sent during warmup (answered, not measured).
    pub warmup_sent: u64,
    /// Latency of `Ok` replies, µs: from the intended send time (open loop) or the actual send
    /// time (closed loop, where they are the same moment) to the reply.
    latency_us: Histogram<u64>,
    /// Actual send time minus intended send time, µs, for every measured request: how far the
    /// generator fell behind its own schedule (always ~0 in a closed loop).
    send_lag_us: Histogram<u64>,
}

/// An empty latency histogram with the harness's bounds and resolution.
pub fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, HISTOGRAM_SIGNIFICANT_DIGITS)
}

impl Recorder {
    /// Fails only if the histogram bounds above were invalid (a bug, reported as an error).
    pub fn new() -> Result<Recorder, LoadtestError> {
        let histogram_error = |e: hdrhistogram::CreationError| LoadtestError::Histogram(format!("{e:?}"));
        Ok(Recorder {
            counts: Counts::default(),
            warmup_sent: 0,
            latency_us: new_histogram().map_err(histogram_error)?,
            send_lag_us: new_histogram().map_err(histogram_error)?,
        })
    }

    /// Record a measured request: its outcome, latency and send lag.
    pub fn record(&mut self, outcome: &Outcome, latency_us: u64, send_lag_us: u64) {
        self.counts.sent += 1;
        self.send_lag_us.saturating_record(send_lag_us.clamp(1, LATENCY_US_MAX));
        match outcome {
            Outcome::Ok => {
                self.counts.ok += 1;
                self.latency_us.saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
            }
            Outcome::ErrorReply(text) => {
                self.counts.error_replies += 1;
                count_text(&mut self.counts.error_replies_by_text, text);
            }
            Outcome::Timeout => self.counts.timeouts += 1,
            Outcome::NoResponders => self.counts.no_responders += 1,
            Outcome::Failure(text) => {
                self.counts.failures += 1;
                count_text(&mut self.counts.failures_by_text, text);
            }
        }
    }

    /// A measured request that was sent but never finished (drain gave up).
    pub fn record_abandoned(&mut self, count: u64) {
        self.counts.sent += count;
        self.counts.abandoned += count;
    }

    /// Scheduled requests of the window that were never sent (open loop).
    pub fn record_unsent(&mut self, count: u64) {
        self.counts.unsent += count;
    }

    pub fn latency_summary(&self) -> Option<Percentiles> {
        Percentiles::of(&self.latency_us)
    }

    pub fn send_lag_summary(&self) -> Option<Percentiles> {
        Percentiles::of(&self.send_lag_us)
    }

    /// The ok replies' latency histogram as `[value µs, count]` pairs, one per non-empty
    /// bucket: what `plot` merges across rounds and draws as a percentile spectrum.
    pub fn latency_buckets(&self) -> Vec<[u64; 2]> {
        self.latency_us
            .iter_recorded()
            .map(|bucket| [bucket.value_iterated_to(), bucket.count_at_value()])
            .collect()
    }

    /// The live progress line: what the measured window has seen after `elapsed_secs` of it.
    pub fn progress_line(&self, elapsed_secs: f64) -> String {
        let c = &self.counts;
        let not_ok = c.sent.saturating_sub(c.ok);
        let rate = if elapsed_secs > 0.0 {
            c.ok as f64 / elapsed_secs
        } else {
            0.0
        };
        let percentiles = match self.latency_summary() {
            Some(p) => format!("p50 {} µs, p99 {} µs", p.p50, p.p99),
            None => "no ok reply yet".to_string(),
        };
        format!(
            "[{elapsed_secs:.0} s] {} ok ({rate:.0}/s), {not_ok} not ok, {percentiles}",
            c.ok
        )
    }
}

/// Percentiles of a histogram, µs. `None` for an empty histogram (no `Ok` replies).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: histogram.len(),
            min: histogram.min(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        })
    }
}

/// Where and from what the numbers came.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// `git rev-parse HEAD` of the checkout the binary was built from, at run time.
    pub git_commit: Option<String>,
    /// Whether that checkout had uncommitted changes to tracked files.
    pub git_dirty: Option<bool>,
    pub hostname: Option<String>,
    /// Cores available to the load generator.
    pub cores: usize,
    /// RFC 3339, UTC.
    pub started_at: String,
}

/// The run's configuration as reported (no secrets: the cluster key appears as its public key).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub nats_url: String,
    pub lattice: String,
    pub subject: String,
    /// `actor` (the wasmbus subject of `actor`) or `raw` (a responder: the NATS floor).
    pub scenario: &'static str,
    pub actor: String,
    pub operation: String,
    pub origin: OriginReport,
    pub cluster_issuer: String,
    pub payload_bytes: usize,
    pub connections: usize,
    pub pacing: Pacing,
    pub duration_ms: u64,
    pub warmup_ms: u64,
    pub timeout_ms: u64,
    pub pool_invocations: usize,
    pub verify_echo: bool,
    pub host_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OriginReport {
    pub public_key: String,
    pub contract_id: String,
    pub link_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Host replies (ok + error replies) per second of the measured window.
    pub replies_per_sec: f64,
    pub ok_per_sec: f64,
    /// Requests sent per second of the window (the offered load).
    pub sent_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuReport {
    pub cpu_us: u64,
    /// CPU time over wall time of the window: 1.0 = one core busy all along.
    pub cores_busy: f64,
    /// `cpu_us` per host reply (ok + error replies); `None` without replies.
    pub cpu_us_per_invocation: Option<f64>,
}

impl CpuReport {
    pub fn new(cpu_us: u64, window_us: u64, replies: u64) -> CpuReport {
        CpuReport {
            cpu_us,
            cores_busy: round3(cpu_us as f64 / window_us.max(1) as f64),
            cpu_us_per_invocation: (replies > 0).then(|| round3(cpu_us as f64 / replies as f64)),
        }
    }
}

/// The JSON document of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub tool_version: &'static str,
    pub environment: Environment,
    pub config: ConfigReport,
    /// The measured window (`--duration`), s: what the rates divide by.
    pub window_secs: f64,
    /// Wall time between the CPU readings at the window's start and end, as the generator
    /// took them, s: what CPU utilisation divides by. Much longer than `window_secs` means the
    /// generator was starved of CPU.
    pub cpu_window_secs: f64,
    pub warmup_sent: u64,
    pub counts: Counts,
    pub throughput: Throughput,
    /// Latency of ok replies, µs (see README: open-loop latency counts from the intended send
    /// time). `None` when there was no ok reply.
    pub latency_us: Option<Percentiles>,
    /// How late requests left compared with their intended time, µs.
    pub send_lag_us: Option<Percentiles>,
    /// The latency histogram itself (HDR, 3 significant digits): `[value µs, count]` per
    /// non-empty bucket, so runs can be merged exactly and plotted (`plot`).
    pub latency_histogram_us: Vec<[u64; 2]>,
    pub host_cpu: Option<CpuReport>,
    pub loadgen_cpu: Option<CpuReport>,
    /// Open loop only: how many times the sender had to wait for the outstanding cap.
    pub outstanding_cap_waits: Option<u64>,
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

pub fn throughput(counts: &Counts, window_us: u64) -> Throughput {
    let secs = window_us.max(1) as f64 / MICROS_PER_SEC;
    Throughput {
        replies_per_sec: round3(counts.replies() as f64 / secs),
        ok_per_sec: round3(counts.ok as f64 / secs),
        sent_per_sec: round3(counts.sent as f64 / secs),
    }
}

/// A few lines for a person (stderr).
pub fn human_summary(report: &RunReport) -> String {
    let c = &report.counts;
    let mut out = format!(
        "{} → {} ({}): {:.1} s window, sent {}, ok {}, error replies {}, timeouts {}, no responders {}, failures {}{}\n",
        report.config.operation,
        report.config.actor,
        match report.config.pacing {
            Pacing::Closed { in_flight_count } => format!("closed loop, {in_flight_count} in flight"),
            Pacing::Open { rate_per_sec, .. } => format!("open loop, {rate_per_sec}/s"),
        },
        report.window_secs,
        c.sent,
        c.ok,
        c.error_replies,
        c.timeouts,
        c.no_responders,
        c.failures,
        match (c.abandoned, c.unsent) {
            (0, 0) => String::new(),
            (abandoned, unsent) => format!(", abandoned {abandoned}, never sent {unsent}"),
        },
    );
    out += &format!(
        "throughput: {:.0} replies/s ({:.0} ok/s)\n",
        report.throughput.replies_per_sec, report.throughput.ok_per_sec
    );
    match &report.latency_us {
        Some(l) => {
            out += &format!(
                "latency µs (ok replies): p50 {} p90 {} p99 {} p99.9 {} max {}\n",
                l.p50, l.p90, l.p99, l.p999, l.max
            )
        }
        None => out += "latency: no ok replies to measure\n",
    }
    for (text, count) in c.error_replies_by_text.iter().chain(&c.failures_by_text) {
        out += &format!("  {count} × {text}\n");
    }
    if let Some(cpu) = &report.host_cpu {
        out += &format!(
            "host CPU: {:.2} cores busy, {} µs per invocation\n",
            cpu.cores_busy,
            cpu.cpu_us_per_invocation
                .map_or_else(|| "n/a".to_string(), |us| format!("{us:.1}"))
        );
    }
    if let Some(cpu) = &report.loadgen_cpu {
        out += &format!("load generator CPU: {:.2} cores busy", cpu.cores_busy);
        if cpu.cores_busy > LOADGEN_SATURATED_CORES {
            out += " (it runs on one thread: it may be the bottleneck)";
        }
        out += "\n";
    }
    out
}

/// Above this the single-threaded generator is likely the limit, not the host.
const LOADGEN_SATURATED_CORES: f64 = 0.9;

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn the_progress_line_says_rate_errors_and_percentiles_so_far() {
        let mut recorder = Recorder::new().unwrap();
        assert_eq!(
            recorder.progress_line(1.0),
            "[1 s] 0 ok (0/s), 0 not ok, no ok reply yet"
        );
        for latency in [100, 200, 300] {
            recorder.record(&Outcome::Ok, latency, 0);
        }
        recorder.record(&Outcome::Timeout, 0, 0);
        let line = recorder.progress_line(2.0);
        assert!(line.starts_with("[2 s] 3 ok (2/s), 1 not ok, p50 2"), "{line}");
        assert!(line.contains("p99 3"), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_land_in_their_counters() {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(&Outcome::Ok, 100, 0);
        recorder.record(&Outcome::Ok, 300, 5);
        recorder.record(&Outcome::ErrorReply("boom".into()), 50, 0);
        recorder.record(&Outcome::ErrorReply("boom".into()), 50, 0);
        recorder.record(&Outcome::Timeout, 0, 0);
        recorder.record(&Outcome::NoResponders, 0, 0);
        recorder.record(&Outcome::Failure("bad reply".into()), 0, 0);
        recorder.record_abandoned(2);
        recorder.record_unsent(3);
        let c = &recorder.counts;
        assert_eq!((c.sent, c.ok, c.error_replies), (9, 2, 2));
        assert_eq!(
            (c.timeouts, c.no_responders, c.failures, c.abandoned, c.unsent),
            (1, 1, 1, 2, 3)
        );
        assert_eq!(c.replies(), 4);
        assert_eq!(c.error_replies_by_text["boom"], 2);
        assert_eq!(c.failures_by_text["bad reply"], 1);

        // Only ok replies are in the latency histogram.
        let latency = recorder.latency_summary().unwrap();
        assert_eq!((latency.count, latency.min, latency.max), (2, 100, 300));
        assert_eq!(latency.p50, 100);
        assert_eq!(recorder.send_lag_summary().unwrap().count, 7);
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let mut recorder = Recorder::new().unwrap();
        for us in 1..=1000u64 {
            recorder.record(&Outcome::Ok, us, 0);
        }
        let p = recorder.latency_summary().unwrap();
        assert_eq!(p.count, 1000);
        assert_eq!((p.p50, p.p90, p.p99, p.p999, p.max), (500, 900, 990, 999, 1000));
        assert!((p.mean - 500.5).abs() < 0.6, "{}", p.mean);
        // Values beyond the tracked range are clamped, not lost; zero counts as 1 µs.
        recorder.record(&Outcome::Ok, u64::MAX, 0);
        recorder.record(&Outcome::Ok, 0, 0);
        let p = recorder.latency_summary().unwrap();
        assert_eq!(p.count, 1002);
        assert!(p.max >= LATENCY_US_MAX && p.max <= LATENCY_US_MAX + LATENCY_US_MAX / 1000);
        assert_eq!(p.min, 1);
        assert!(Recorder::new().unwrap().latency_summary().is_none());
    }

    #[test]
    fn error_texts_are_bounded_and_truncated() {
        let mut map = BTreeMap::new();
        for index in 0..DISTINCT_TEXTS_MAX + 10 {
            count_text(&mut map, &format!("error {index}"));
        }
        count_text(&mut map, "error 0");
        assert_eq!(map.len(), DISTINCT_TEXTS_MAX + 1);
        assert_eq!(map[OTHER_TEXTS_KEY], 10);
        assert_eq!(map["error 0"], 2);

        let long = "é".repeat(ERROR_TEXT_BYTES_MAX);
        let cut = truncate_text(&long);
        assert!(cut.len() <= ERROR_TEXT_BYTES_MAX && cut.len() >= ERROR_TEXT_BYTES_MAX - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn rates_and_cpu_per_invocation() {
        let counts = Counts {
            sent: 1200,
            ok: 900,
            error_replies: 100,
            timeouts: 200,
            ..Counts::default()
        };
        let t = throughput(&counts, 2_000_000);
        assert_eq!(
            t,
            Throughput {
                replies_per_sec: 500.0,
                ok_per_sec: 450.0,
                sent_per_sec: 600.0
            }
        );
        let cpu = CpuReport::new(1_500_000, 2_000_000, 1000);
        assert_eq!(cpu.cores_busy, 0.75);
        assert_eq!(cpu.cpu_us_per_invocation, Some(1500.0));
        assert_eq!(CpuReport::new(10, 0, 0).cpu_us_per_invocation, None);
    }

    fn sample_report() -> RunReport {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(&Outcome::Ok, 120, 3);
        recorder.record(&Outcome::ErrorReply("Anti-forgery check failed: x".into()), 80, 1);
        recorder.record(&Outcome::Timeout, 0, 0);
        let window_us = 1_000_000;
        RunReport {
            tool: "shardhost-loadtest",
            tool_version: "0.1.0",
            environment: Environment {
                git_commit: Some("abc".into()),
                git_dirty: Some(false),
                hostname: Some("box".into()),
                cores: 2,
                started_at: "2024-01-01T00:00:00Z".into(),
            },
            config: ConfigReport {
                nats_url: "127.0.0.1:4222".into(),
                lattice: "default".into(),
                subject: "wasmbus.rpc.default.MACTOR".into(),
                scenario: "actor",
                actor: "MACTOR".into(),
                operation: "HttpServer.HandleRequest".into(),
                origin: OriginReport {
                    public_key: "VPROV".into(),
                    contract_id: "wasmcloud:httpserver".into(),
                    link_name: "default".into(),
                },
                cluster_issuer: "CKEY".into(),
                payload_bytes: 64,
                connections: 1,
                pacing: Pacing::Open {
                    rate_per_sec: 100.0,
                    outstanding_max: 10,
                },
                duration_ms: 1000,
                warmup_ms: 0,
                timeout_ms: 50,
                pool_invocations: 1024,
                verify_echo: true,
                host_pid: Some(42),
            },
            window_secs: 1.0,
            cpu_window_secs: 1.001,
            warmup_sent: 0,
            throughput: throughput(&recorder.counts, window_us),
            latency_us: recorder.latency_summary(),
            send_lag_us: recorder.send_lag_summary(),
            latency_histogram_us: recorder.latency_buckets(),
            counts: recorder.counts.clone(),
            host_cpu: Some(CpuReport::new(20_000, window_us, 2)),
            loadgen_cpu: Some(CpuReport::new(950_000, window_us, 2)),
            outstanding_cap_waits: Some(0),
        }
    }

    #[test]
    fn report_json_has_the_documented_shape() {
        let json = serde_json::to_value(sample_report()).unwrap();
        assert_eq!(json["config"]["pacing"]["mode"], "open");
        assert_eq!(json["config"]["pacing"]["rate_per_sec"], 100.0);
        assert_eq!(json["counts"]["ok"], 1);
        assert_eq!(
            json["counts"]["error_replies_by_text"]["Anti-forgery check failed: x"],
            1
        );
        assert_eq!(json["counts"]["timeouts"], 1);
        assert_eq!(json["throughput"]["replies_per_sec"], 2.0);
        assert_eq!(json["latency_us"]["p99"], 120);
        assert_eq!(json["latency_us"]["p999"], 120);
        // The histogram itself: the one ok reply's bucket (the error reply has no latency).
        assert_eq!(json["latency_histogram_us"], serde_json::json!([[120, 1]]));
        assert_eq!(json["host_cpu"]["cpu_us_per_invocation"], 10000.0);
        assert_eq!(json["environment"]["cores"], 2);
        for key in ["git_commit", "git_dirty", "hostname", "started_at"] {
            assert!(json["environment"].get(key).is_some(), "{key}");
        }
        let closed = serde_json::to_value(Pacing::Closed { in_flight_count: 64 }).unwrap();
        assert_eq!(closed, serde_json::json!({"mode": "closed", "in_flight_count": 64}));
    }

    #[test]
    fn human_summary_names_the_numbers() {
        let summary = human_summary(&sample_report());
        assert!(summary.contains("open loop, 100/s"), "{summary}");
        assert!(summary.contains("ok 1, error replies 1, timeouts 1"), "{summary}");
        assert!(summary.contains("p50 120"), "{summary}");
        assert!(summary.contains("1 × Anti-forgery check failed: x"), "{summary}");
        assert!(summary.contains("may be the bottleneck"), "{summary}");
        let mut empty = sample_report();
        empty.latency_us = None;
        assert!(human_summary(&empty).contains("no ok replies"));
    }
}
