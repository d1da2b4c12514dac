//! Prometheus text endpoint (`--metrics-addr`, off unless given): every shard's counters, read
//! from its cache-line-padded atomics ([`ShardCounters`]) without a message or a lock, and the
//! host's gauges (actors, providers, NATS connection), which the control loop stores after each
//! event it handles. Also the heartbeat-time log line of each shard's counters.
//!
//! Control plane (tokio). [`render`] is pure and unit-tested; [`serve`] is a minimal HTTP/1.1
//! responder for `GET /metrics` and the health probes `/livez` and `/readyz` ([`probes`],
//! whose states also show here as gauges); anything else: 404. Bounded in request size and
//! time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::probes::{self, Observation, ProbeState};
use crate::plane::{monotonic_ms, ShardCounters, ShardId, ShardStats, SHARD_STATS_FIELDS};

/// Largest request head read before answering.
pub const METRICS_REQUEST_BYTES_MAX: usize = 8 << 10;
/// Longest a client may take to send its request.
pub const METRICS_REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Metric name prefix.
pub const METRICS_PREFIX: &str = "shardhost";

/// Host-wide levels the control loop keeps current.
#[derive(Debug, Default)]
pub struct HostGauges {
    pub actors: AtomicU64,
    pub actor_instances: AtomicU64,
    pub providers: AtomicU64,
    pub providers_healthy: AtomicU64,
    pub shards_connected: AtomicU64,
    /// Entries the lattice KV watch was behind the bucket at its last check.
    pub kv_watch_lag: AtomicU64,
    /// Lattice KV watches reopened (ended, erred or stuck) since start.
    pub kv_watch_reopens: AtomicU64,
    /// Linear memory all actor instances hold, bytes (what the memory budget counts).
    pub linear_memory: AtomicU64,
    /// `--memory-budget-mib` in bytes; 0 = unbounded.
    pub memory_budget: AtomicU64,
}

/// What one scrape shows.
pub struct Scrape<'a> {
    /// Per shard, the values in the order of [`ShardStats::FIELD_NAMES`].
    pub shards: &'a [[u64; SHARD_STATS_FIELDS]],
    pub host: &'a HostGauges,
    /// Whether the control connection is up.
    pub ctl_connected: bool,
    pub uptime_seconds: u64,
}

/// The Prometheus text exposition (format 0.0.4) of `scrape`.
pub fn render(scrape: &Scrape<'_>) -> String {
    let mut out = String::with_capacity(8 << 10);
    for (field_index, field) in ShardStats::FIELD_NAMES.iter().enumerate() {
        let gauge = ShardStats::GAUGES.contains(field);
        let (name, kind) = if gauge {
            (format!("{METRICS_PREFIX}_shard_{field}"), "gauge")
        } else {
            (format!("{METRICS_PREFIX}_shard_{field}_total"), "counter")
        };
        out.push_str(&format!(
            "# HELP {name} Shard counter {field} (ShardStats).\n# TYPE {name} {kind}\n"
        ));
        for (shard, values) in scrape.shards.iter().enumerate() {
            out.push_str(&format!("{name}{{shard=\"{shard}\"}} {}\n", values[field_index]));
        }
    }
    let host = scrape.host;
    let gauges = [
        (
            "actors",
            "Actors running on this host.",
            host.actors.load(Ordering::Relaxed),
        ),
        (
            "actor_instances",
            "Actor instances (max concurrency for 0.30+ scales) on this host.",
            host.actor_instances.load(Ordering::Relaxed),
        ),
        (
            "providers",
            "Capability providers running on this host.",
            host.providers.load(Ordering::Relaxed),
        ),
        (
            "providers_healthy",
            "Providers whose last health check passed.",
            host.providers_healthy.load(Ordering::Relaxed),
        ),
        (
            "shards_connected",
            "Shards whose NATS connection is up.",
            host.shards_connected.load(Ordering::Relaxed),
        ),
        ("shards", "Data-plane shards.", scrape.shards.len() as u64),
        (
            "ctl_connected",
            "1 when the control connection to NATS is up.",
            u64::from(scrape.ctl_connected),
        ),
        (
            "kv_watch_lag_entries",
            "Entries the lattice KV watch was behind the bucket at its last check.",
            host.kv_watch_lag.load(Ordering::Relaxed),
        ),
        (
            "actor_linear_memory_bytes",
            "Linear memory all actor instances hold (what --memory-budget-mib bounds).",
            host.linear_memory.load(Ordering::Relaxed),
        ),
        (
            "memory_budget_bytes",
            "The host's linear-memory budget (--memory-budget-mib); 0 = unbounded.",
            host.memory_budget.load(Ordering::Relaxed),
        ),
        (
            "uptime_seconds",
            "Seconds since the host started.",
            scrape.uptime_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        out.push_str(&format!(
            "# HELP {METRICS_PREFIX}_{name} {help}\n# TYPE {METRICS_PREFIX}_{name} gauge\n{METRICS_PREFIX}_{name} {value}\n"
        ));
    }
    let reopens = host.kv_watch_reopens.load(Ordering::Relaxed);
    out.push_str(&format!(
        "# HELP {METRICS_PREFIX}_kv_watch_reopens_total Lattice KV watches reopened (ended, erred or stuck).\n\
         # TYPE {METRICS_PREFIX}_kv_watch_reopens_total counter\n{METRICS_PREFIX}_kv_watch_reopens_total {reopens}\n"
    ));
    out
}

/// One log line per shard with its data-path counters (at every heartbeat).
pub fn log_shard_counters(shard_stats: &std::collections::BTreeMap<ShardId, ShardStats>) {
    for (shard, s) in shard_stats {
        let rejected =
            s.rejected_decode + s.rejected_auth + s.rejected_capability + s.rejected_target + s.rejected_not_running;
        let mean_batch = s.batched_invocations.checked_div(s.batches).unwrap_or(0);
        let verify_ns_per_invocation = s.verify_ns.checked_div(s.batched_invocations).unwrap_or(0);
        tracing::info!(
            %shard,
            received = s.received,
            served = s.served,
            rejected,
            rejected_decode = s.rejected_decode,
            rejected_auth = s.rejected_auth,
            rejected_capability = s.rejected_capability,
            rejected_target = s.rejected_target,
            rejected_not_running = s.rejected_not_running,
            rejected_overload = s.rejected_overload,
            rejected_stopping = s.rejected_stopping,
            queued = s.queued,
            guest_errors = s.guest_errors,
            inflight = s.inflight,
            batches = s.batches,
            mean_batch,
            batch_max = s.batch_max,
            verify_ns_per_invocation,
            calls_sent = s.calls_sent,
            calls_failed = s.calls_failed,
            calls_timed_out = s.calls_timed_out,
            calls_local = s.calls_local,
            http_requests = s.http_requests,
            http_refused = s.http_refused,
            http_forwarded = s.http_forwarded,
            http_connections = s.http_connections,
            messages_delivered = s.messages_delivered,
            messages_failed = s.messages_failed,
            messages_published = s.messages_published,
            chunked = s.chunked,
            reconnects = s.reconnects,
            "shard counters"
        );
    }
}

/// The gauges of the probes' verdicts, appended after [`render`]'s exposition (so its lines
/// stay as they were): `…_live` and `…_ready` are 1 exactly when `/livez` and `/readyz` would
/// answer 200.
pub fn render_probe_gauges(observation: &Observation) -> String {
    let gauges = [
        (
            "live",
            "1 when /livez answers 200: every shard's executor and the control loop ticked in time.",
            probes::liveness(observation).is_empty(),
        ),
        (
            "ready",
            "1 when /readyz answers 200: live, every shard connected and subscribed, lattice KV loaded, not draining.",
            probes::readiness(observation).is_empty(),
        ),
        (
            "draining",
            "1 once the host has begun to stop (it turned not ready then).",
            observation.draining,
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in gauges {
        out.push_str(&format!(
            "# HELP {METRICS_PREFIX}_{name} {help}\n# TYPE {METRICS_PREFIX}_{name} gauge\n{METRICS_PREFIX}_{name} {}\n",
            u8::from(value)
        ));
    }
    out
}

/// What the endpoint reads to answer a request.
struct Endpoint {
    shards: Arc<Vec<ShardCounters>>,
    host: Arc<HostGauges>,
    probes: Arc<ProbeState>,
    ctl: async_nats::Client,
    started: std::time::Instant,
}

impl Endpoint {
    /// The whole response to one request head.
    fn answer(&self, head: &[u8]) -> String {
        let observe = || self.probes.observe(&self.shards, monotonic_ms());
        if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
            let values: Vec<[u64; SHARD_STATS_FIELDS]> = self.shards.iter().map(ShardCounters::load).collect();
            let mut body = render(&Scrape {
                shards: &values,
                host: &self.host,
                ctl_connected: self.ctl.connection_state() == async_nats::connection::State::Connected,
                uptime_seconds: self.started.elapsed().as_secs(),
            });
            body.push_str(&render_probe_gauges(&observe()));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else if let Some(response) = probes::respond(head, observe) {
            response
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
    }
}

/// Serve `GET /metrics`, `/livez` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shards: Arc<Vec<ShardCounters>>,
    host: Arc<HostGauges>,
    probes: Arc<ProbeState>,
    ctl: async_nats::Client,
    started: std::time::Instant,
) {
    let endpoint = Arc::new(Endpoint {
        shards,
        host,
        probes,
        ctl,
        started,
    });
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            let limit = Duration::from_millis(METRICS_REQUEST_TIMEOUT_MS);
            let head = match tokio::time::timeout(limit, read_head(&mut stream)).await {
                Ok(Ok(head)) => head,
                _ => return,
            };
            let response = endpoint.answer(&head);
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: write failed");
            }
            let _ = stream.shutdown().await;
        });
    }
}

/// Read up to the end of the request head (`\r\n\r\n`), at most [`METRICS_REQUEST_BYTES_MAX`].
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < METRICS_REQUEST_BYTES_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_and_gauge_is_rendered_per_shard() {
        let first = ShardStats {
            received: 7,
            inflight: 2,
            ..ShardStats::default()
        };
        let counters = [ShardCounters::default(), ShardCounters::default()];
        counters[0].store(&first);
        let values: Vec<_> = counters.iter().map(ShardCounters::load).collect();
        let host = HostGauges::default();
        host.actors.store(3, Ordering::Relaxed);
        host.kv_watch_lag.store(4, Ordering::Relaxed);
        host.kv_watch_reopens.store(1, Ordering::Relaxed);
        host.linear_memory.store(65_536, Ordering::Relaxed);
        host.memory_budget.store(1 << 20, Ordering::Relaxed);
        let text = render(&Scrape {
            shards: &values,
            host: &host,
            ctl_connected: true,
            uptime_seconds: 9,
        });
        assert!(
            text.contains("shardhost_shard_received_total{shard=\"0\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("shardhost_shard_received_total{shard=\"1\"} 0\n"));
        assert!(text.contains("# TYPE shardhost_shard_inflight gauge\nshardhost_shard_inflight{shard=\"0\"} 2\n"));
        assert!(text.contains("shardhost_actors 3\n"));
        assert!(text.contains("shardhost_ctl_connected 1\n"));
        assert!(text.contains("# TYPE shardhost_kv_watch_lag_entries gauge\nshardhost_kv_watch_lag_entries 4\n"));
        assert!(text.contains("shardhost_actor_linear_memory_bytes 65536\n"), "{text}");
        assert!(text.contains("shardhost_memory_budget_bytes 1048576\n"), "{text}");
        assert!(text.contains("# TYPE shardhost_kv_watch_reopens_total counter\nshardhost_kv_watch_reopens_total 1\n"));
        for field in ShardStats::FIELD_NAMES {
            assert!(text.contains(&format!("shardhost_shard_{field}")), "{field} missing");
        }
    }

    #[test]
    fn the_probe_gauges_follow_the_verdicts_and_parse_as_gauges() {
        let counters = [ShardCounters::default()];
        let state = ProbeState::new(1);
        let now = monotonic_ms();
        counters[0].stamp_tick(now);
        state.record_control_tick(&std::collections::BTreeMap::from([(ShardId(0), true)]));
        state.set_lattice_loaded();
        let text = render_probe_gauges(&state.observe(&counters, now));
        assert!(
            text.contains("# TYPE shardhost_live gauge\nshardhost_live 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE shardhost_ready gauge\nshardhost_ready 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE shardhost_draining gauge\nshardhost_draining 0\n"),
            "{text}"
        );
        state.set_draining();
        let text = render_probe_gauges(&state.observe(&counters, now));
        assert!(text.contains("shardhost_live 1\n"), "{text}");
        assert!(text.contains("shardhost_ready 0\n"), "{text}");
        assert!(text.contains("shardhost_draining 1\n"), "{text}");
    }
}
