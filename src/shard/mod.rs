//! Data plane: one glommio executor per shard, each pinned to its own core.
//!
//! A [`Shard`] owns everything it touches while serving: its routing snapshot, its counters
//! (and, in later steps, its NATS connection and warm instance pools). It never takes a lock
//! and never runs tokio. The control plane talks to it only through [`ShardCommand`]s and
//! hears from it only through [`ShardReport`]s ([`crate::plane`]).
//!
//! [`spawn`] starts one shard's executor thread; the control plane's handle on all of them is
//! [`crate::control::shards::ShardSet`].

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::channel::mpsc;
use futures::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::SHARD_IO_MEMORY_BYTES;
use crate::plane::{ShardCommand, ShardId, ShardReport, ShardStats};
use crate::routing::RoutingSnapshot;

/// One shard's state, owned by its executor thread.
struct Shard {
    id: ShardId,
    routing: Arc<RoutingSnapshot>,
    stats: ShardStats,
    reports: mpsc::Sender<ShardReport>,
}

impl Shard {
    /// Send a report without ever blocking the shard; a full channel is counted.
    fn report(&mut self, report: ShardReport) {
        if self.reports.try_send(report).is_err() {
            self.stats.reports_dropped += 1;
        }
    }

    /// Apply one command; returns false when the shard must stop.
    fn apply(&mut self, command: ShardCommand) -> bool {
        self.stats.commands_received += 1;
        match command {
            ShardCommand::Routing(snapshot) => {
                // Snapshots only move forward: a stale one (reordered by a retry) is ignored.
                if snapshot.version >= self.routing.version {
                    self.routing = snapshot;
                    self.stats.routing_swaps += 1;
                }
                let report = ShardReport::RoutingApplied {
                    shard: self.id,
                    version: self.routing.version,
                    stats: self.stats,
                };
                self.report(report);
                true
            }
            ShardCommand::Stop => false,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<ShardCommand>, cpu: Option<usize>) {
        self.report(ShardReport::Started { shard: self.id, cpu });
        while let Some(command) = commands.next().await {
            if !self.apply(command) {
                break;
            }
        }
        let stats = self.stats;
        self.report(ShardReport::Stopped { shard: self.id, stats });
    }
}

/// Start shard `id` on its own executor thread, pinned to `cpu` when given. It reports
/// [`ShardReport::Started`] once running and [`ShardReport::Stopped`] when its command channel
/// closes or it receives [`ShardCommand::Stop`].
pub fn spawn(
    id: ShardId,
    cpu: Option<usize>,
    commands: mpsc::Receiver<ShardCommand>,
    reports: mpsc::Sender<ShardReport>,
) -> glommio::Result<glommio::ExecutorJoinHandle<()>, ()> {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    let shard = Shard {
        id,
        routing: Arc::new(RoutingSnapshot::default()),
        stats: ShardStats::default(),
        reports,
    };
    LocalExecutorBuilder::new(placement)
        .name(&id.to_string())
        .io_memory(SHARD_IO_MEMORY_BYTES)
        .spawn(move || shard.run(commands, cpu))
}
