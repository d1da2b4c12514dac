//! When to send: the two pacing modes of a run, as pure arithmetic over offsets from the start
//! of the run (no clock, no I/O), so they can be tested exactly.
//!
//! - Closed loop: keep `in_flight` requests outstanding; a new one leaves when one returns.
//!   Throughput follows the host's speed, and a stall of the host also stalls the sender, so
//!   the histogram sees one slow request where an open loop would see many (coordinated
//!   omission). Good for "how fast can it go at concurrency N".
//! - Open loop: request `k` is *intended* to leave at `k / rate` seconds, whatever happened to
//!   earlier ones. Latency is measured from that intended time, so a stall shows up in every
//!   request that should have been sent during it, even when the generator itself was late.

use serde::Serialize;

/// Nanoseconds per second.
const NANOS_PER_SEC: f64 = 1e9;

/// How a run paces its requests (also written to the JSON report, tagged by `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Pacing {
    /// Keep `in_flight_count` requests outstanding.
    Closed { in_flight_count: usize },
    /// Send at a fixed arrival rate; at most `outstanding_max` requests outstanding (when the
    /// cap is reached the sender waits, and the wait counts as latency).
    Open { rate_per_sec: f64, outstanding_max: usize },
}

/// The open-loop arrival schedule: request `k` is intended at `k / rate_per_sec` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenSchedule {
    rate_per_sec: f64,
}

impl OpenSchedule {
    /// `None` unless the rate is finite and positive.
    pub fn new(rate_per_sec: f64) -> Option<Self> {
        (rate_per_sec.is_finite() && rate_per_sec > 0.0).then_some(OpenSchedule { rate_per_sec })
    }

    /// Intended send time of request `index`, in ns after the start. Computed from the index
    /// (not by adding intervals) so rounding never accumulates into drift.
    pub fn intended_offset_ns(&self, index: u64) -> u64 {
        // f64 is exact for indexes below 2^53; the product is rounded down to whole ns.
        (index as f64 * NANOS_PER_SEC / self.rate_per_sec) as u64
    }

    /// How many requests are due by `elapsed_ns` (those with intended offset ≤ elapsed).
    pub fn due_count(&self, elapsed_ns: u64) -> u64 {
        let estimate = (elapsed_ns as f64 * self.rate_per_sec / NANOS_PER_SEC) as u64;
        // The estimate may be off by one from rounding; settle it against intended_offset_ns,
        // which is what the sender compares with.
        let mut count = estimate.saturating_add(1);
        while count > 0 && self.intended_offset_ns(count - 1) > elapsed_ns {
            count -= 1;
        }
        while self.intended_offset_ns(count) <= elapsed_ns {
            count += 1;
        }
        count
    }

    /// Requests intended in `[0, window_ns)`.
    pub fn count_before(&self, window_ns: u64) -> u64 {
        if window_ns == 0 {
            0
        } else {
            self.due_count(window_ns - 1)
        }
    }
}

/// Which phase an intended send time falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `warmup_ns`: sent, answered, but not in the statistics.
    Warmup,
    /// In `[warmup_ns, warmup_ns + duration_ns)`: measured.
    Measured,
    /// At or after the end: not sent at all.
    Over,
}

/// Phase of an intended send at `offset_ns` after the start.
pub fn phase_of(offset_ns: u64, warmup_ns: u64, duration_ns: u64) -> Phase {
    if offset_ns < warmup_ns {
        Phase::Warmup
    } else if offset_ns < warmup_ns.saturating_add(duration_ns) {
        Phase::Measured
    } else {
        Phase::Over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_rates_that_are_not_positive() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(OpenSchedule::new(rate).is_none(), "{rate}");
        }
        assert!(OpenSchedule::new(0.5).is_some());
    }

    #[test]
    fn intended_times_are_evenly_spaced_without_drift() {
        let schedule = OpenSchedule::new(1000.0).unwrap();
        assert_eq!(schedule.intended_offset_ns(0), 0);
        assert_eq!(schedule.intended_offset_ns(1), 1_000_000);
        assert_eq!(schedule.intended_offset_ns(1000), 1_000_000_000);
        // A rate whose interval is not a whole number of ns: no accumulated error after a day.
        let third = OpenSchedule::new(3.0).unwrap();
        assert_eq!(third.intended_offset_ns(1), 333_333_333);
        assert_eq!(third.intended_offset_ns(3 * 86_400), 86_400 * 1_000_000_000);
    }

    #[test]
    fn due_count_matches_the_intended_times() {
        for rate in [1.0, 3.0, 7.5, 1000.0, 123_456.0] {
            let schedule = OpenSchedule::new(rate).unwrap();
            for index in [0u64, 1, 2, 10, 999, 1000, 12_345] {
                let at = schedule.intended_offset_ns(index);
                // Exactly at an intended time it is due, and so are all before it.
                assert_eq!(schedule.due_count(at), index + 1, "rate {rate} index {index}");
                if at > 0 && schedule.intended_offset_ns(index - 1) < at - 1 {
                    assert_eq!(schedule.due_count(at - 1), index, "rate {rate} index {index}");
                }
            }
        }
    }

    #[test]
    fn a_window_holds_rate_times_seconds_requests() {
        let schedule = OpenSchedule::new(500.0).unwrap();
        assert_eq!(schedule.count_before(0), 0);
        assert_eq!(schedule.count_before(1_000_000_000), 500);
        assert_eq!(schedule.count_before(10_000_000_000), 5000);
        let fractional = OpenSchedule::new(2.5).unwrap();
        assert_eq!(fractional.count_before(2_000_000_000), 5);
        assert_eq!(fractional.count_before(2_000_000_001), 6);
    }

    #[test]
    fn phases_split_warmup_measured_and_over() {
        let (warmup, duration) = (1_000, 10_000);
        assert_eq!(phase_of(0, warmup, duration), Phase::Warmup);
        assert_eq!(phase_of(999, warmup, duration), Phase::Warmup);
        assert_eq!(phase_of(1_000, warmup, duration), Phase::Measured);
        assert_eq!(phase_of(10_999, warmup, duration), Phase::Measured);
        assert_eq!(phase_of(11_000, warmup, duration), Phase::Over);
        assert_eq!(phase_of(0, 0, duration), Phase::Measured);
        assert_eq!(phase_of(u64::MAX, u64::MAX, u64::MAX), Phase::Over);
    }
}
