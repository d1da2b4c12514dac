//! The shards' reports as the control loop applies them (routing applied, connections,
//! counters, pools, policy queries), and the host levels it stores for the metrics endpoint
//! and the probes after each event.

use super::actors;
use crate::plane::ShardReport;

impl super::ControlPlane {
    /// Host levels for the metrics endpoint and the probes (relaxed stores per handled event).
    pub(super) fn store_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let g = &self.gauges;
        g.actors.store(self.actors.actors.len() as u64, Relaxed);
        let instances: usize = self
            .actors
            .actors
            .values()
            .map(actors::RunningActor::reported_count)
            .sum();
        g.actor_instances.store(instances as u64, Relaxed);
        g.providers.store(self.providers.running.len() as u64, Relaxed);
        let healthy = self.providers.running.values().filter(|p| p.healthy).count();
        g.providers_healthy.store(healthy as u64, Relaxed);
        let connected = self.shards_connected.values().filter(|up| **up).count();
        g.shards_connected.store(connected as u64, Relaxed);
        let budget = self.preparer.runtime.memory_budget();
        g.linear_memory.store(budget.used_bytes() as u64, Relaxed);
        g.memory_budget.store(budget.limit_bytes().unwrap_or(0) as u64, Relaxed);
        self.probes.record_control_tick(&self.shards_connected);
    }

    pub(super) fn on_shard_report(&mut self, report: ShardReport) {
        match report {
            ShardReport::RoutingApplied { shard, version, stats } => {
                tracing::debug!(%shard, version, "shard routing applied");
                self.shard_stats.insert(shard, stats);
            }
            ShardReport::Stopped { shard, stats } => {
                tracing::error!(%shard, ?stats, "shard stopped unexpectedly");
                self.shard_stats.insert(shard, stats);
            }
            ShardReport::Started { shard, .. } => tracing::debug!(%shard, "late shard start report"),
            ShardReport::Connection {
                shard,
                connected: true,
                detail,
            } => {
                tracing::info!(%shard, server = %detail, "shard NATS connection up");
                self.shards_connected.insert(shard, true);
            }
            ShardReport::Connection { shard, detail, .. } => {
                tracing::warn!(%shard, reason = %detail, "shard NATS connection down");
                self.shards_connected.insert(shard, false);
            }
            ShardReport::Stats { shard, stats } => {
                tracing::debug!(%shard, ?stats, "shard counters");
                self.shard_stats.insert(shard, stats);
            }
            ShardReport::ActorPoolReady { shard, key, warm } => {
                tracing::debug!(%shard, actor = %key, warm, "actor pool ready");
                self.on_pool_report(shard, &key);
            }
            ShardReport::ActorPoolFailed { shard, key, error } => {
                tracing::error!(%shard, actor = %key, %error, "shard cannot build the actor's pool");
                self.on_pool_report(shard, &key);
            }
            ShardReport::HttpListen { shard, address, error } => self.on_http_listen(shard, address, error),
            ShardReport::PolicyQuery { shard, pair } => {
                tracing::debug!(%shard, ?pair, "shard asks for a policy decision");
                self.on_policy_query(pair);
            }
        }
    }
}
