//! The control plane's handle on the shards: start the executors (one pinned per core),
//! wait until each runs, fan commands out, and join the threads at stop.

use std::time::Duration;

use futures::channel::mpsc;
use futures::StreamExt;

use crate::config::{SHARD_COMMAND_CHANNEL_CAPACITY, SHARD_REPORT_CHANNEL_CAPACITY};
use crate::plane::{allowed_cpus, ShardCommand, ShardConfig, ShardId, ShardReport, ShardStats, ShardThread};
use crate::runtime::Runtime;
use crate::shard;

/// Why the shards could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot read the CPU topology: {0}")]
    Topology(String),
    #[error("cannot start {shard}: {reason}")]
    Spawn { shard: ShardId, reason: String },
    #[error("{0} did not report that it started within {1:?}")]
    StartTimeout(ShardId, Duration),
    #[error("{0} exited before it started (see the log for its error)")]
    Died(ShardId),
    #[error("{0} command channel is full: the shard is not draining its commands")]
    ChannelFull(ShardId),
    #[error("{0} has stopped")]
    Gone(ShardId),
}

/// The control plane's handle on all shards.
pub struct ShardSet {
    senders: Vec<mpsc::Sender<ShardCommand>>,
    threads: Vec<ShardThread>,
    /// Reports from every shard.
    pub reports: mpsc::Receiver<ShardReport>,
    /// Reports that arrived while [`ShardSet::start`] waited for every shard to run (e.g. a
    /// shard's first NATS connection), for the control plane to apply first.
    pub early: Vec<ShardReport>,
}

impl ShardSet {
    /// Start `count` shards, shard i pinned to the i-th online CPU (wrapping when there are
    /// more shards than CPUs), and wait until each reports that it runs.
    pub async fn start(
        count: usize,
        start_timeout: Duration,
        runtime: Runtime,
        config: ShardConfig,
    ) -> Result<ShardSet, ShardError> {
        let cpus = allowed_cpus().map_err(|e| ShardError::Topology(e.to_string()))?;
        if count > cpus.len() {
            tracing::warn!(
                shards = count,
                cpus = cpus.len(),
                "more shards than CPUs: some CPUs run several shards"
            );
        }
        let (report_tx, mut reports) = mpsc::channel(SHARD_REPORT_CHANNEL_CAPACITY);
        let mut senders = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let id = ShardId(index as u16);
            let cpu = cpus.get(index % cpus.len().max(1)).copied();
            let (tx, rx) = mpsc::channel(SHARD_COMMAND_CHANNEL_CAPACITY);
            let mut shard_config = config.clone();
            if let Some(conn) = &mut shard_config.conn {
                conn.name = format!("{} {id}", conn.name);
            }
            let spawned = shard::spawn(id, cpu, runtime.clone(), shard_config, rx, report_tx.clone());
            let handle = spawned.map_err(|e| ShardError::Spawn {
                shard: id,
                reason: e.to_string(),
            })?;
            senders.push(tx);
            threads.push(handle);
        }
        drop(report_tx);
        let mut started = vec![false; count];
        let mut early = Vec::new();
        let deadline = tokio::time::Instant::now() + start_timeout;
        while started.iter().any(|s| !s) {
            let pending = ShardId(started.iter().position(|s| !s).unwrap_or(0) as u16);
            match tokio::time::timeout_at(deadline, reports.next()).await {
                Ok(Some(ShardReport::Started { shard, cpu })) => {
                    tracing::info!(%shard, ?cpu, "shard started");
                    if let Some(slot) = started.get_mut(shard.0 as usize) {
                        *slot = true;
                    }
                }
                // Kept for the control plane (a shard may connect to NATS before the others run).
                Ok(Some(other)) => early.push(other),
                Ok(None) => return Err(ShardError::Died(pending)),
                Err(_) => return Err(ShardError::StartTimeout(pending, start_timeout)),
            }
        }
        Ok(ShardSet {
            senders,
            threads,
            reports,
            early,
        })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether there are no shards.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Send a command to every shard without waiting. A full channel is an error naming the
    /// stuck shard; the other shards still get the command.
    pub fn broadcast(&mut self, command: &ShardCommand) -> Result<(), ShardError> {
        let mut first_error = None;
        for (index, tx) in self.senders.iter_mut().enumerate() {
            let id = ShardId(index as u16);
            if let Err(e) = tx.try_send(command.clone()) {
                let err = if e.is_full() {
                    ShardError::ChannelFull(id)
                } else {
                    ShardError::Gone(id)
                };
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ask every shard to stop and join their threads, waiting at most `timeout` in all.
    /// Returns the final counters of the shards that reported them.
    pub async fn stop(mut self, timeout: Duration) -> Vec<(ShardId, ShardStats)> {
        if let Err(e) = self.broadcast(&ShardCommand::Stop) {
            tracing::warn!(error = %e, "while stopping shards");
        }
        // Closing the channels also stops any shard whose Stop did not fit.
        self.senders.clear();
        let threads = std::mem::take(&mut self.threads);
        let join = tokio::task::spawn_blocking(move || {
            for handle in threads {
                if let Err(e) = handle.join() {
                    tracing::error!(error = %e, "shard thread ended with an error");
                }
            }
        });
        if tokio::time::timeout(timeout, join).await.is_err() {
            tracing::error!(?timeout, "shards did not stop in time");
        }
        let mut finals = Vec::new();
        while let Ok(report) = self.reports.try_recv() {
            if let ShardReport::Stopped { shard, stats } = report {
                finals.push((shard, stats));
            }
        }
        finals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RoutingSnapshot;
    use std::sync::Arc;

    #[tokio::test]
    async fn shards_start_apply_snapshots_and_stop() {
        let mut set = ShardSet::start(
            2,
            Duration::from_secs(10),
            crate::runtime::Runtime::new(&Default::default()).expect("runtime"),
            ShardConfig::offline(),
        )
        .await
        .expect("shards start");
        assert_eq!(set.len(), 2);
        let snapshot = Arc::new(RoutingSnapshot {
            version: 3,
            ..Default::default()
        });
        set.broadcast(&ShardCommand::Routing(snapshot)).expect("broadcast");
        // A stale snapshot must not replace the newer one.
        let stale = Arc::new(RoutingSnapshot {
            version: 1,
            ..Default::default()
        });
        set.broadcast(&ShardCommand::Routing(stale)).expect("broadcast");
        let mut applied = Vec::new();
        while applied.len() < 4 {
            let report = tokio::time::timeout(Duration::from_secs(10), set.reports.next())
                .await
                .expect("report in time")
                .expect("channel open");
            if let ShardReport::RoutingApplied { shard, version, stats } = report {
                applied.push((shard, version, stats.routing_swaps));
            }
        }
        for shard in [ShardId(0), ShardId(1)] {
            let versions: Vec<_> = applied.iter().filter(|a| a.0 == shard).map(|a| (a.1, a.2)).collect();
            assert_eq!(versions, vec![(3, 1), (3, 1)], "{shard}");
        }
        let finals = set.stop(Duration::from_secs(10)).await;
        let mut stopped: Vec<_> = finals.iter().map(|(s, stats)| (s.0, stats.commands_received)).collect();
        stopped.sort();
        assert_eq!(stopped, vec![(0, 3), (1, 3)]);
    }
}
