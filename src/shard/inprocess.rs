//! [`InProcessShard`]: the shard pipeline without a socket, for benches and tests.
//!
//! It runs on the calling glommio executor with the same [`ShardCore`] a real shard uses: the
//! caller feeds it NATS messages ([`Inbound`]) as one read would deliver them, and gets back
//! the bytes the shard would have written (its `PUB` replies). Decode, batch verification,
//! checks, leasing, the guest call and reply encoding are the production code; only the socket
//! is missing.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::plane::{ShardConfig, ShardId, ShardStats};
use crate::routing::RoutingSnapshot;
use crate::runtime::{CompiledActor, Runtime};

use super::batch::Job;
use super::calls;
use super::conn::{Inbound, Outbox};
use super::core::ShardCore;

/// A shard pipeline on the current glommio executor, without NATS.
pub struct InProcessShard {
    core: Rc<ShardCore>,
    runtime: Runtime,
    jobs: Vec<Job>,
}

impl InProcessShard {
    /// A pipeline with `config` (its `conn` is ignored). Installs itself as this thread's
    /// shard for outbound calls.
    pub fn new(config: ShardConfig, runtime: Runtime) -> InProcessShard {
        let config = ShardConfig { conn: None, ..config };
        let core = Rc::new(ShardCore::new(ShardId(0), config, Rc::new(Outbox::new())));
        calls::install(Some(Rc::clone(&core)));
        InProcessShard {
            core,
            runtime,
            jobs: Vec::new(),
        }
    }

    /// Start serving `key` with `warm_instances` warm instances; returns the sid its messages
    /// must carry.
    pub async fn add_actor(
        &self,
        key: &str,
        compiled: CompiledActor,
        caps: Vec<String>,
        warm_instances: u32,
    ) -> Result<u64, String> {
        super::set_pool(&self.core, &self.runtime, key, compiled, Arc::new(caps), warm_instances).await?;
        let slot_sid = self.core.actors().borrow().get(key).map(|slot| slot.sid);
        slot_sid.ok_or_else(|| format!("actor {key} has no subscription"))
    }

    /// Swap in routing tables (trusted issuers, claims, links).
    pub fn set_routing(&self, snapshot: RoutingSnapshot) {
        self.core.set_routing(Arc::new(snapshot));
    }

    /// Run one batch as one socket read would deliver it and wait until every invocation in
    /// it has replied. Returns the bytes the shard would write.
    pub async fn run_batch(&mut self, batch: &[Inbound]) -> Vec<u8> {
        self.core.on_batch(batch, &mut self.jobs);
        for job in self.jobs.drain(..) {
            self.core.admit_or_queue(job);
        }
        while self.core.inflight() > 0 {
            self.core.quiet().notified().await;
        }
        self.core.outbox().take_data()
    }

    /// The shard's counters.
    pub fn stats(&self) -> ShardStats {
        self.core.stats()
    }
}

impl Drop for InProcessShard {
    fn drop(&mut self) {
        calls::install(None);
    }
}

/// A message as the NATS parser would hand it out (for feeding [`InProcessShard`]).
pub fn inbound(sid: u64, subject: &str, reply: Option<&str>, payload: Bytes) -> Inbound {
    Inbound::new(sid, subject, reply, payload)
}
