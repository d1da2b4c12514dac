//! Health probes beside `/metrics` on `--metrics-addr`, for the orchestrators and load
//! balancers in front of an edge node (the wasmCloud OTP host served the same two):
//!
//! - `GET|HEAD /livez`: the process turns over — every shard's executor ran its 1 s report
//!   tick within [`SHARD_TICK_STALE_MS`], and the control loop handled an event or its own
//!   tick within [`CONTROL_TICK_STALE_MS`]. A shard stopped on purpose counts as alive while
//!   the host drains.
//! - `GET|HEAD /readyz`: the host should be sent work — alive, every shard connected with its
//!   subscriptions confirmed by NATS, the lattice KV bucket loaded and watched, not draining.
//!
//! 200 with `live`/`ready`, or 503 with one plain-text line naming every unmet condition.
//!
//! Control plane (tokio). The shards stamp their ticks into their own [`ShardCounters`]; the
//! control loop keeps [`ProbeState`] current; a request reads both without a message or a lock.
//! Everything below [`ProbeState`] is pure and unit-tested; [`super::metrics::serve`] hands
//! requests for these paths to [`respond`]. Never blocks, never waits on NATS.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::plane::{monotonic_ms, ShardCounters, ShardId, SHARD_TICK_STOPPED};

/// Oldest a shard's tick may be before `/livez` calls its executor stalled: five of its 1 s
/// report ticks missed (a guest hogging the core is preempted long before that).
pub const SHARD_TICK_STALE_MS: u64 = 5_000;
/// How often the control loop stamps its own tick when it has nothing else to handle.
pub const CONTROL_TICK_INTERVAL_MS: u64 = 1_000;
/// Oldest the control loop's tick may be before `/livez` calls it stalled. A handler may await
/// NATS for a while (a JetStream acknowledgement waits 5 s, a client request 10 s, in
/// async-nats): longer than that is a wedged loop, not a slow server.
pub const CONTROL_TICK_STALE_MS: u64 = 15_000;

/// What the control loop keeps current for the probes (relaxed atomics: each value stands
/// alone, and a probe that reads one a moment old answers as it would have a moment ago).
#[derive(Debug)]
pub struct ProbeState {
    /// Per shard (by index): its NATS connection is up and the server confirmed its
    /// subscriptions (`ShardReport::Connection`).
    shard_connected: Vec<AtomicBool>,
    /// The lattice KV bucket was loaded and its watch is open (changes reach the shards).
    lattice_loaded: AtomicBool,
    /// The host decided to stop; set before the shards are told to drain, never cleared.
    draining: AtomicBool,
    /// [`monotonic_ms`] when the control loop last finished handling an event or a tick.
    control_tick_ms: AtomicU64,
}

impl ProbeState {
    /// State for `shard_count` shards, none connected yet; the control loop counts as just
    /// ticked.
    pub fn new(shard_count: usize) -> ProbeState {
        ProbeState {
            shard_connected: (0..shard_count).map(|_| AtomicBool::new(false)).collect(),
            lattice_loaded: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            control_tick_ms: AtomicU64::new(monotonic_ms()),
        }
    }

    /// Called by the control loop after each event it handles: stamps its own tick and
    /// copies which shards are connected.
    pub fn record_control_tick(&self, shards_connected: &BTreeMap<ShardId, bool>) {
        for (index, connected) in self.shard_connected.iter().enumerate() {
            let up = u16::try_from(index).is_ok_and(|id| shards_connected.get(&ShardId(id)) == Some(&true));
            connected.store(up, Ordering::Relaxed);
        }
        self.control_tick_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// The lattice KV bucket is loaded and watched.
    pub fn set_lattice_loaded(&self) {
        self.lattice_loaded.store(true, Ordering::Relaxed);
    }

    /// The host is stopping: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// One reading of everything the probes judge, at `now_ms` ([`monotonic_ms`]).
    pub fn observe(&self, shards: &[ShardCounters], now_ms: u64) -> Observation {
        let shards = shards
            .iter()
            .enumerate()
            .map(|(index, counters)| ShardObservation {
                connected: self
                    .shard_connected
                    .get(index)
                    .is_some_and(|c| c.load(Ordering::Relaxed)),
                tick_ms: counters.tick_ms(),
            })
            .collect();
        Observation {
            shards,
            control_tick_ms: self.control_tick_ms.load(Ordering::Relaxed),
            lattice_loaded: self.lattice_loaded.load(Ordering::Relaxed),
            draining: self.draining.load(Ordering::Relaxed),
            now_ms,
        }
    }
}

/// One shard as a probe sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardObservation {
    pub connected: bool,
    /// Its liveness stamp ([`ShardCounters::tick_ms`]).
    pub tick_ms: u64,
}

/// Everything a probe judges, read at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// By shard index.
    pub shards: Vec<ShardObservation>,
    pub control_tick_ms: u64,
    pub lattice_loaded: bool,
    pub draining: bool,
    pub now_ms: u64,
}

/// One unmet condition, as the 503 body names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The shard's executor has not run its tick for `age_ms`.
    ShardStalled {
        shard: ShardId,
        age_ms: u64,
    },
    /// The shard has not ticked once in the `up_ms` since the process started.
    ShardNeverTicked {
        shard: ShardId,
        up_ms: u64,
    },
    /// The shard's command loop ended while the host is not stopping.
    ShardStopped {
        shard: ShardId,
    },
    /// The control loop has handled nothing, not even its own tick, for `age_ms`.
    ControlStalled {
        age_ms: u64,
    },
    /// The shard's NATS connection is down or its subscriptions are not confirmed yet.
    ShardNotConnected {
        shard: ShardId,
    },
    LatticeNotLoaded,
    Draining,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shard_limit = Seconds(SHARD_TICK_STALE_MS);
        match *self {
            Fault::ShardStalled { shard, age_ms } => write!(
                f,
                "{shard} executor stalled: last tick {} ago (limit {shard_limit})",
                Seconds(age_ms)
            ),
            Fault::ShardNeverTicked { shard, up_ms } => write!(
                f,
                "{shard} executor has not ticked in the {} since start (limit {shard_limit})",
                Seconds(up_ms)
            ),
            Fault::ShardStopped { shard } => write!(f, "{shard} stopped"),
            Fault::ControlStalled { age_ms } => write!(
                f,
                "control loop stalled: last tick {} ago (limit {})",
                Seconds(age_ms),
                Seconds(CONTROL_TICK_STALE_MS)
            ),
            Fault::ShardNotConnected { shard } => write!(f, "{shard} not connected to NATS"),
            Fault::LatticeNotLoaded => f.write_str("lattice KV not loaded"),
            Fault::Draining => f.write_str("draining"),
        }
    }
}

/// Milliseconds shown as seconds with one decimal (`5.0 s`).
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} s", self.0 / 1_000, self.0 % 1_000 / 100)
    }
}

/// Whether shard `shard`'s stamp `tick_ms` is alive at `now_ms`. A shard stopped on purpose
/// is alive while the host drains (the process is on its way out); a stamp never written is
/// judged by the time since the process's clock began.
pub fn shard_liveness(shard: ShardId, tick_ms: u64, now_ms: u64, draining: bool) -> Option<Fault> {
    match tick_ms {
        SHARD_TICK_STOPPED if draining => None,
        SHARD_TICK_STOPPED => Some(Fault::ShardStopped { shard }),
        0 => (now_ms > SHARD_TICK_STALE_MS).then_some(Fault::ShardNeverTicked { shard, up_ms: now_ms }),
        _ => {
            let age_ms = now_ms.saturating_sub(tick_ms);
            (age_ms > SHARD_TICK_STALE_MS).then_some(Fault::ShardStalled { shard, age_ms })
        }
    }
}

/// What keeps `/livez` from answering 200; empty = live. While draining the control loop
/// awaits the stop path (bounded by the drain and shutdown timeouts), so its tick is not judged.
pub fn liveness(observation: &Observation) -> Vec<Fault> {
    let mut faults: Vec<Fault> = shard_ids(observation)
        .filter_map(|(shard, s)| shard_liveness(shard, s.tick_ms, observation.now_ms, observation.draining))
        .collect();
    let control_age_ms = observation.now_ms.saturating_sub(observation.control_tick_ms);
    if !observation.draining && control_age_ms > CONTROL_TICK_STALE_MS {
        faults.push(Fault::ControlStalled { age_ms: control_age_ms });
    }
    faults
}

/// What keeps `/readyz` from answering 200; empty = ready. A host that is not live is not
/// ready either, so the liveness faults come first.
pub fn readiness(observation: &Observation) -> Vec<Fault> {
    let mut faults = liveness(observation);
    faults.extend(
        shard_ids(observation)
            .filter(|(_, s)| !s.connected)
            .map(|(shard, _)| Fault::ShardNotConnected { shard }),
    );
    if !observation.lattice_loaded {
        faults.push(Fault::LatticeNotLoaded);
    }
    if observation.draining {
        faults.push(Fault::Draining);
    }
    faults
}

fn shard_ids(observation: &Observation) -> impl Iterator<Item = (ShardId, &ShardObservation)> {
    // Shard counts are bounded by the core count; an index past u16 cannot be built.
    (0..=u16::MAX).map(ShardId).zip(&observation.shards)
}

/// The probe's one-line body: `{word}\n` when `faults` is empty, else `not {word}: a; b\n`.
pub fn verdict_body(word: &str, faults: &[Fault]) -> String {
    if faults.is_empty() {
        return format!("{word}\n");
    }
    let reasons: Vec<String> = faults.iter().map(Fault::to_string).collect();
    format!("not {word}: {}\n", reasons.join("; "))
}

/// Which probe a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

/// The probe a request head asks for, and whether it is a `HEAD` (no body); `None` for any
/// other method, path or a malformed request line.
pub fn parse_request(head: &[u8]) -> Option<(Probe, bool)> {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/") {
        return None;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let probe = match path {
        "/livez" => Probe::Live,
        "/readyz" => Probe::Ready,
        _ => return None,
    };
    Some((probe, head_only))
}

/// The whole HTTP/1.1 response to `head` when it asks for a probe, `None` otherwise (the
/// caller answers other paths). `observe` is called only for a probe request.
pub fn respond(head: &[u8], observe: impl FnOnce() -> Observation) -> Option<String> {
    let (probe, head_only) = parse_request(head)?;
    let observation = observe();
    let (word, faults) = match probe {
        Probe::Live => ("live", liveness(&observation)),
        Probe::Ready => ("ready", readiness(&observation)),
    };
    Some(http_response(
        faults.is_empty(),
        &verdict_body(word, &faults),
        head_only,
    ))
}

/// `200 OK` or `503 Service Unavailable` with `body` (its length only, for a `HEAD`); never
/// cached, so a proxy between the prober and the host cannot answer for a stale state.
fn http_response(ok: bool, body: &str, head_only: bool) -> String {
    let status = if ok { "200 OK" } else { "503 Service Unavailable" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two live, connected shards, a fresh control tick, the lattice loaded, at 60 s.
    fn healthy() -> Observation {
        let now_ms = 60_000;
        Observation {
            shards: vec![
                ShardObservation {
                    connected: true,
                    tick_ms: now_ms - 900,
                };
                2
            ],
            control_tick_ms: now_ms - 10,
            lattice_loaded: true,
            draining: false,
            now_ms,
        }
    }

    #[test]
    fn a_healthy_host_is_live_and_ready() {
        let observation = healthy();
        assert_eq!(liveness(&observation), vec![]);
        assert_eq!(readiness(&observation), vec![]);
        let response = respond(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", || observation).expect("a probe");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("\r\nCache-Control: no-store\r\n"), "{response}");
        assert!(
            response.ends_with("\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n"),
            "{response}"
        );
    }

    #[test]
    fn a_shard_tick_is_stale_only_past_the_limit() {
        let shard = ShardId(1);
        let now = 100_000;
        assert_eq!(shard_liveness(shard, now - SHARD_TICK_STALE_MS, now, false), None);
        assert_eq!(
            shard_liveness(shard, now - SHARD_TICK_STALE_MS - 1, now, false),
            Some(Fault::ShardStalled {
                shard,
                age_ms: SHARD_TICK_STALE_MS + 1
            })
        );
        // A stamp a little ahead of the reader's clock (read in between) is fresh.
        assert_eq!(shard_liveness(shard, now + 3, now, false), None);
        // Stalled is stalled while draining too: only a finished shard is excused.
        assert!(shard_liveness(shard, 1, now, true).is_some());
    }

    #[test]
    fn a_shard_that_never_ticked_is_judged_from_the_start_and_a_stopped_one_by_draining() {
        let shard = ShardId(0);
        assert_eq!(shard_liveness(shard, 0, SHARD_TICK_STALE_MS, false), None);
        assert_eq!(
            shard_liveness(shard, 0, 7_300, false),
            Some(Fault::ShardNeverTicked { shard, up_ms: 7_300 })
        );
        assert_eq!(shard_liveness(shard, SHARD_TICK_STOPPED, 9_000, true), None);
        assert_eq!(
            shard_liveness(shard, SHARD_TICK_STOPPED, 9_000, false),
            Some(Fault::ShardStopped { shard })
        );
    }

    #[test]
    fn a_wedged_control_loop_is_not_live_unless_the_host_is_draining() {
        let mut observation = healthy();
        observation.control_tick_ms = observation.now_ms - CONTROL_TICK_STALE_MS - 2_500;
        assert_eq!(
            verdict_body("live", &liveness(&observation)),
            "not live: control loop stalled: last tick 17.5 s ago (limit 15.0 s)\n"
        );
        observation.draining = true;
        assert_eq!(liveness(&observation), vec![]);
    }

    #[test]
    fn not_ready_names_every_unmet_condition_in_one_line() {
        let mut observation = healthy();
        observation.shards[1].connected = false;
        observation.shards[0].tick_ms = observation.now_ms - 7_250;
        observation.lattice_loaded = false;
        observation.draining = true;
        assert_eq!(
            verdict_body("ready", &readiness(&observation)),
            "not ready: shard-0 executor stalled: last tick 7.2 s ago (limit 5.0 s); \
             shard-1 not connected to NATS; lattice KV not loaded; draining\n"
        );
        let response = respond(b"GET /readyz HTTP/1.1\r\n\r\n", || observation).expect("a probe");
        assert!(
            response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{response}"
        );
    }

    #[test]
    fn draining_turns_a_healthy_host_not_ready_and_leaves_it_live() {
        let mut observation = healthy();
        observation.draining = true;
        observation.shards[0].tick_ms = SHARD_TICK_STOPPED;
        assert_eq!(verdict_body("live", &liveness(&observation)), "live\n");
        assert_eq!(verdict_body("ready", &readiness(&observation)), "not ready: draining\n");
    }

    #[test]
    fn only_get_and_head_of_the_two_paths_are_probes() {
        assert_eq!(
            parse_request(b"GET /livez HTTP/1.1\r\n\r\n"),
            Some((Probe::Live, false))
        );
        assert_eq!(
            parse_request(b"HEAD /readyz HTTP/1.0\r\n\r\n"),
            Some((Probe::Ready, true))
        );
        assert_eq!(
            parse_request(b"GET /readyz?verbose HTTP/1.1\r\n\r\n"),
            Some((Probe::Ready, false))
        );
        for refused in [
            &b"POST /livez HTTP/1.1\r\n\r\n"[..],
            b"GET /livezz HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n\r\n",
            b"GET /livez\r\n\r\n",
            b"GET /livez HTTP/1.1 extra\r\n\r\n",
            b"get /livez HTTP/1.1\r\n\r\n",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(parse_request(refused), None, "{:?}", String::from_utf8_lossy(refused));
            assert_eq!(respond(refused, healthy), None);
        }
    }

    #[test]
    fn head_sends_the_length_of_the_get_body_and_no_body() {
        let mut observation = healthy();
        observation.shards[0].connected = false;
        let get = respond(b"GET /readyz HTTP/1.1\r\n\r\n", || observation.clone()).expect("get");
        let head = respond(b"HEAD /readyz HTTP/1.1\r\n\r\n", || observation).expect("head");
        let (get_head, get_body) = get.split_once("\r\n\r\n").expect("head and body");
        assert_eq!(get_body, "not ready: shard-0 not connected to NATS\n");
        assert_eq!(head, format!("{get_head}\r\n\r\n"));
        assert!(get_head.contains(&format!("Content-Length: {}", get_body.len())));
    }

    #[test]
    fn the_state_reads_the_shards_stamps_and_the_connections_the_loop_recorded() {
        let counters = [ShardCounters::default(), ShardCounters::default()];
        let state = ProbeState::new(counters.len());
        let now = monotonic_ms();
        counters[0].stamp_tick(now);
        counters[1].stamp_tick(SHARD_TICK_STOPPED);
        state.record_control_tick(&BTreeMap::from([(ShardId(0), true), (ShardId(1), false)]));
        state.set_lattice_loaded();
        let observation = state.observe(&counters, now);
        assert_eq!(
            observation.shards,
            vec![
                ShardObservation {
                    connected: true,
                    tick_ms: now
                },
                ShardObservation {
                    connected: false,
                    tick_ms: SHARD_TICK_STOPPED
                },
            ]
        );
        assert!(observation.lattice_loaded && !observation.draining);
        assert!(observation.control_tick_ms >= now);
        state.set_draining();
        assert!(state.observe(&counters, now).draining);
        // A shard missing from the report map is not connected.
        state.record_control_tick(&BTreeMap::from([(ShardId(1), true)]));
        let connected: Vec<bool> = state
            .observe(&counters, now)
            .shards
            .iter()
            .map(|s| s.connected)
            .collect();
        assert_eq!(connected, vec![false, true]);
    }
}
