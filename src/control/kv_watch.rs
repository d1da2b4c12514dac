//! Following the lattice bucket: the KV watch, reopened when it ends and when it silently falls
//! behind.
//!
//! Control plane. A watch is a JetStream ordered push consumer. When the cluster node that held
//! it is lost, the consumer can go away without the watch ever ending or erring: the host then
//! stops seeing links and claims written by others while everything else looks healthy (found
//! by the node-loss test: a link put 5 s after the loss never reached a host that had failed
//! over). So every [`KV_WATCH_CHECK_MS`] the bucket's last sequence is compared with the
//! revision applied: that difference is the watch lag (a metric); behind at two checks in a row
//! with nothing applied in between means the watch is stuck, and it is reopened from the last
//! revision applied, so no change is missed or applied twice.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::time::{Instant, Interval};

use super::kv::LatticeStore;
use super::metrics::HostGauges;

/// Wait before reopening a watch that ended or could not be opened.
pub const KV_REWATCH_DELAY_MS: u64 = 1_000;
/// How often the watch's position is compared with the bucket's.
pub const KV_WATCH_CHECK_MS: u64 = 2_000;
/// Longest wait for the bucket's stream info at a check.
pub const KV_WATCH_CHECK_TIMEOUT_MS: u64 = 1_000;

/// The watch and its state between reopenings.
pub struct LatticeWatch {
    watch: Option<kv::Watch>,
    /// When to (re)open the watch; None while one is open.
    reopen_at: Option<Instant>,
    check: Interval,
    /// The revision applied at the previous check, if the watch was behind then.
    behind_at: Option<u64>,
    /// The bucket's last sequence when the watch was last reopened as stuck.
    reopened_for: Option<u64>,
    /// Sequences up to here hold nothing to deliver (a reopened watch brought none of them:
    /// the stream was purged past the revision applied); they do not count as lag.
    nothing_upto: u64,
    gauges: Arc<HostGauges>,
}

impl LatticeWatch {
    /// Opens the watch from the revision after the last one `store` applied.
    pub async fn open(store: &LatticeStore, gauges: Arc<HostGauges>) -> anyhow::Result<LatticeWatch> {
        let watch = store.watch().await?;
        let period = Duration::from_millis(KV_WATCH_CHECK_MS);
        let mut check = tokio::time::interval_at(Instant::now() + period, period);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(LatticeWatch {
            watch: Some(watch),
            reopen_at: None,
            check,
            behind_at: None,
            reopened_for: None,
            nothing_upto: 0,
            gauges,
        })
    }

    /// The next entry of the bucket, reopening the watch as needed. Cancel-safe: the state
    /// changes only after each await completes, so a dropped call loses nothing.
    pub async fn next(&mut self, store: &LatticeStore) -> kv::Entry {
        loop {
            tokio::select! {
                entry = next_entry(&mut self.watch) => match entry {
                    Some(Ok(entry)) => return entry,
                    other => {
                        let why = other.map_or("watch ended".to_string(), |e| format!("{:?}", e.err()));
                        tracing::warn!(reason = %why, "lattice KV watch stopped; reopening");
                        self.close(Duration::from_millis(KV_REWATCH_DELAY_MS));
                    }
                },
                _ = sleep_until_opt(self.reopen_at) => match store.watch().await {
                    Ok(watch) => {
                        self.watch = Some(watch);
                        self.reopen_at = None;
                        self.gauges.kv_watch_reopens.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(from_revision = store.revision + 1, "lattice KV watch reopened");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reopen lattice KV watch; retrying");
                        self.reopen_at = Some(Instant::now() + Duration::from_millis(KV_REWATCH_DELAY_MS));
                    }
                },
                _ = self.check.tick() => self.check_position(store).await,
            }
        }
    }

    /// Compares the applied revision with the bucket's last sequence; reopens a stuck watch.
    async fn check_position(&mut self, store: &LatticeStore) {
        if self.watch.is_none() {
            return;
        }
        let timeout = Duration::from_millis(KV_WATCH_CHECK_TIMEOUT_MS);
        let last = match tokio::time::timeout(timeout, store.last_sequence()).await {
            Ok(Ok(last)) => last,
            // The bucket cannot be asked now (a leader election, NATS down): no verdict.
            Ok(Err(e)) => return tracing::debug!(error = %e, "lattice KV position unknown"),
            Err(_) => return tracing::debug!("lattice KV position unknown (timeout)"),
        };
        let lag = last.saturating_sub(store.revision.max(self.nothing_upto));
        self.gauges.kv_watch_lag.store(lag, Ordering::Relaxed);
        match (lag, self.behind_at) {
            (0, _) => self.behind_at = None,
            (_, Some(then)) if then == store.revision && self.reopened_for == Some(last) => {
                // A watch reopened at this very position brought nothing either.
                tracing::debug!(
                    last,
                    revision = store.revision,
                    "lattice KV holds nothing after the revision applied"
                );
                self.nothing_upto = last;
                self.behind_at = None;
                self.gauges.kv_watch_lag.store(0, Ordering::Relaxed);
            }
            (_, Some(then)) if then == store.revision => {
                tracing::warn!(
                    lag,
                    revision = store.revision,
                    "lattice KV watch behind the bucket and not moving; reopening"
                );
                self.reopened_for = Some(last);
                self.close(Duration::ZERO);
            }
            _ => self.behind_at = Some(store.revision),
        }
    }

    /// Drops the watch; it reopens after `delay`.
    fn close(&mut self, delay: Duration) {
        self.watch = None;
        self.behind_at = None;
        self.reopen_at = Some(Instant::now() + delay);
    }
}

async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
