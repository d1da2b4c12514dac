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

use std::collections::HashMap;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::SHARD_IO_MEMORY_BYTES;
use crate::plane::{ShardCommand, ShardId, ShardReport, ShardStats};
use crate::routing::RoutingSnapshot;
use crate::runtime::{ActorPool, CompiledActor, NoHostCalls, Parker, Runtime};

pub mod conn;
mod send;
use send::AssertSend;

/// How long a busy guest parks at each epoch yield so the shard can poll its sockets and run
/// other tasks (a plain yield would not let glommio poll I/O; TOOLCHAIN.md).
pub const GUEST_PARK_US: u64 = 10;

/// One shard's state, owned by its executor thread.
struct Shard {
    id: ShardId,
    routing: Arc<RoutingSnapshot>,
    stats: ShardStats,
    /// The engine every pool instantiates on.
    runtime: Runtime,
    /// Actor key → its warm instances on this shard.
    actors: HashMap<String, ActorSlot>,
    reports: mpsc::Sender<ShardReport>,
}

/// One actor's warm instances on a shard, and the module they came from.
struct ActorSlot {
    module_hash: String,
    warm_instances: u32,
    pool: ActorPool,
}

/// The parker of guests on a glommio shard: a short real timer.
fn glommio_parker() -> Parker {
    Arc::new(|| {
        Box::pin(AssertSend(glommio::timer::sleep(std::time::Duration::from_micros(
            GUEST_PARK_US,
        ))))
    })
}

impl Shard {
    /// Build actor `key`'s pool of `warm_instances`, unless one of the same module and size is
    /// there. The new pool is complete before it replaces the old one, so a failed build keeps
    /// the old pool serving.
    async fn set_pool(
        &mut self,
        key: &str,
        compiled: CompiledActor,
        caps: Arc<Vec<String>>,
        warm_instances: u32,
    ) -> Result<u32, String> {
        let unchanged = self
            .actors
            .get(key)
            .is_some_and(|s| s.module_hash == compiled.module_hash() && s.warm_instances == warm_instances);
        if let (true, Some(slot)) = (unchanged, self.actors.get(key)) {
            return Ok(slot.pool.idle_count() as u32);
        }
        let pool = ActorPool::new(
            &self.runtime,
            &compiled,
            key,
            &caps,
            Arc::new(NoHostCalls),
            glommio_parker(),
            warm_instances as usize,
        )
        .await
        .map_err(|e| e.to_string())?;
        let warm = pool.idle_count() as u32;
        let slot = ActorSlot {
            module_hash: compiled.module_hash().to_string(),
            warm_instances,
            pool,
        };
        self.actors.insert(key.to_string(), slot);
        Ok(warm)
    }

    /// Send a report without ever blocking the shard; a full channel is counted.
    fn report(&mut self, report: ShardReport) {
        if self.reports.try_send(report).is_err() {
            self.stats.reports_dropped += 1;
        }
    }

    /// Apply one command; returns false when the shard must stop.
    async fn apply(&mut self, command: ShardCommand) -> bool {
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
            ShardCommand::ActorPool {
                key,
                compiled,
                caps,
                warm_instances,
            } => {
                let report = match self.set_pool(&key, compiled, caps, warm_instances).await {
                    Ok(warm) => ShardReport::ActorPoolReady {
                        shard: self.id,
                        key,
                        warm,
                    },
                    Err(error) => ShardReport::ActorPoolFailed {
                        shard: self.id,
                        key,
                        error,
                    },
                };
                self.report(report);
                true
            }
            ShardCommand::ActorStop { key } => {
                self.actors.remove(&key);
                self.report(ShardReport::ActorPoolReady {
                    shard: self.id,
                    key,
                    warm: 0,
                });
                true
            }
            ShardCommand::Stop => false,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<ShardCommand>, cpu: Option<usize>) {
        self.report(ShardReport::Started { shard: self.id, cpu });
        while let Some(command) = commands.next().await {
            if !self.apply(command).await {
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
    runtime: Runtime,
    commands: mpsc::Receiver<ShardCommand>,
    reports: mpsc::Sender<ShardReport>,
) -> glommio::Result<glommio::ExecutorJoinHandle<()>, ()> {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    let shard = Shard {
        id,
        routing: Arc::new(RoutingSnapshot::default()),
        stats: ShardStats::default(),
        runtime,
        actors: HashMap::new(),
        reports,
    };
    LocalExecutorBuilder::new(placement)
        .name(&id.to_string())
        .io_memory(SHARD_IO_MEMORY_BYTES)
        .spawn(move || shard.run(commands, cpu))
}
