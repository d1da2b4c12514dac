//! Actor lifecycle over the control interface: `la`, `scale`, `sa`, `upd` and actor auctions.
//!
//! Control plane. A start or update acks at once; fetching, claims validation and compiling
//! run in a background task (compiling on a blocking thread), and the control loop applies the
//! result: alias check, actor table, KV (`CLAIMS_…`, `REFMAP_…`), shard pools, events. Every
//! failure is reported through the `…_failed` events with a reason; nothing runs unsigned.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use tracing::Instrument as _;

use crate::auth::claims::{self, ActorClaims};
use crate::lattice::RefMap;
use crate::plane::{ShardCommand, ShardId};
use crate::runtime::Tier;

use super::actors::{self, RunningActor};
use super::memory::warm_per_shard;
use super::prepare::{Optimized, Prepared};
use super::ControlPlane;
use crate::wire::ctl::{
    ack_err, ack_ok, labels_satisfy, Annotations, ScaleActorCommand, ScaleTarget, StartActorCommand, StopActorCommand,
    UpdateActorCommand,
};

/// Capacity of the channel that brings finished fetch/compile jobs back to the control loop.
pub const ACTOR_JOBS_CHANNEL_CAPACITY: usize = 64;

/// A control request that needs a module first.
#[derive(Debug, Clone)]
pub enum ActorRequest {
    Start {
        reference: String,
        count: u16,
        annotations: Annotations,
    },
    Scale {
        reference: String,
        target: ScaleTarget,
        annotations: Annotations,
    },
    Update {
        actor_id: String,
        reference: String,
        annotations: Annotations,
    },
}

impl ActorRequest {
    /// The span name of the job (`actor start`, `actor scale`, `actor update`).
    fn span_name(&self) -> &'static str {
        match self {
            ActorRequest::Start { .. } => "actor start",
            ActorRequest::Scale { .. } => "actor scale",
            ActorRequest::Update { .. } => "actor update",
        }
    }

    fn reference(&self) -> &str {
        match self {
            ActorRequest::Start { reference, .. }
            | ActorRequest::Scale { reference, .. }
            | ActorRequest::Update { reference, .. } => reference,
        }
    }

    fn annotations(&self) -> &Annotations {
        match self {
            ActorRequest::Start { annotations, .. }
            | ActorRequest::Scale { annotations, .. }
            | ActorRequest::Update { annotations, .. } => annotations,
        }
    }
}

/// A finished background job.
pub struct ActorJob {
    pub request: ActorRequest,
    pub result: Result<Prepared, String>,
    /// The span of the start, scale or update: it ends when the last of its work does.
    pub span: tracing::Span,
}

impl ControlPlane {
    /// Cranelift finished a module that started on baseline code: every actor running that
    /// module's baseline code gets pools of the optimised code (swapped like `upd` swaps
    /// them: new pools complete first, running calls finish on the old ones).
    pub(super) fn on_optimized(&mut self, done: Optimized) {
        let compiled = match done.result {
            Ok(compiled) => compiled,
            Err(error) => {
                tracing::warn!(module_hash = %done.module_hash, %error, "Cranelift cannot compile the module; its actors keep running baseline code");
                return;
            }
        };
        let keys: Vec<String> = self
            .compiled
            .iter()
            .filter(|(_, c)| c.module_hash() == done.module_hash && c.tier() == Tier::Baseline)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.compiled.insert(key.clone(), compiled.clone());
            drop(self.sync_shard_pools(&key));
            tracing::info!(actor = %key, compile_us = done.compile_us, "actor moves to optimised code");
        }
    }

    /// `la`: ack, then fetch/validate/compile in the background.
    pub(super) fn actor_launch(&mut self, cmd: StartActorCommand) -> Value {
        let request = ActorRequest::Start {
            reference: cmd.actor_ref,
            count: cmd.count,
            annotations: cmd.annotations.unwrap_or_default(),
        };
        self.spawn_job(request).map_or_else(ack_err, |()| ack_ok())
    }

    /// `scale`: both shapes. Scaling a running actor of the same reference needs no fetch.
    pub(super) fn actor_scale(&mut self, cmd: ScaleActorCommand) -> Value {
        let target = cmd.target();
        let annotations = cmd.annotations.clone().unwrap_or_default();
        let running = self
            .actors
            .find(&cmd.actor_ref)
            .or_else(|| self.actors.find(cmd.actor_id.as_deref()?));
        match running {
            Some(actor) => {
                let template = actor.clone();
                let key = template.claims.subject.clone();
                let budget = self.compiled.get(&key).map(|compiled| {
                    self.check_memory_budget(&key, compiled, |table| {
                        table.scale(template.clone(), annotations.clone(), target);
                    })
                });
                if let Some(Err(e)) = budget {
                    return ack_err(e);
                }
                self.apply_scale(template, annotations, target);
            }
            None if matches!(target, ScaleTarget::Stop | ScaleTarget::Instances(0)) => {
                return ack_err(format!("actor {} is not running on this host", cmd.actor_ref));
            }
            None => {
                let request = ActorRequest::Scale {
                    reference: cmd.actor_ref,
                    target,
                    annotations,
                };
                if let Err(e) = self.spawn_job(request) {
                    return ack_err(e);
                }
            }
        }
        ack_ok()
    }

    /// `sa`: stop matching instances now.
    pub(super) fn actor_stop(&mut self, cmd: StopActorCommand) -> Value {
        let key = self.resolve_key(&cmd.actor_ref);
        let span = tracing::info_span!("actor_stop", otel.name = "actor stop", actor = %key);
        let _in_span = span.enter();
        let annotations = cmd.annotations.unwrap_or_default();
        let image_ref = self.actors.actors.get(&key).map(|a| a.image_ref.clone());
        match self.actors.stop(&key, &annotations, cmd.count.filter(|c| *c > 0)) {
            Ok(stopped) => {
                let count = stopped.len();
                self.after_stop(&key, image_ref.unwrap_or_default(), &annotations, stopped, count);
                ack_ok()
            }
            Err(e) => ack_err(e),
        }
    }

    /// `upd`: ack, then fetch the new module; it must have the same public key.
    pub(super) fn actor_update(&mut self, cmd: UpdateActorCommand) -> Value {
        if !self.actors.actors.contains_key(&cmd.actor_id) {
            return ack_err(format!("actor {} is not running on this host", cmd.actor_id));
        }
        let annotations = cmd.annotations.unwrap_or_default();
        let request = ActorRequest::Update {
            actor_id: cmd.actor_id,
            reference: cmd.new_actor_ref,
            annotations,
        };
        self.spawn_job(request).map_or_else(ack_err, |()| ack_ok())
    }

    /// `auction.actor`: bid only when our labels hold every constraint.
    pub(super) fn actor_auction(&self, actor_ref: String, constraints: BTreeMap<String, String>) -> Option<Value> {
        if !labels_satisfy(&self.info.labels, &constraints) {
            tracing::debug!(%actor_ref, "not bidding: labels do not satisfy the constraints");
            return None;
        }
        Some(json!({ "actor_ref": actor_ref, "constraints": constraints, "host_id": self.info.identity.host_id() }))
    }

    /// An actor key from `sa`'s `actor_ref`: a key as is, or the key of the running actor
    /// started from that reference.
    fn resolve_key(&self, actor_ref: &str) -> String {
        self.actors
            .find(actor_ref)
            .map_or_else(|| actor_ref.to_string(), |a| a.claims.subject.clone())
    }

    /// Check the reference against the fetch policy (so `file://` without the flag or `:latest`
    /// are refused in the ack), then fetch, validate and compile in the background.
    fn spawn_job(&self, request: ActorRequest) -> Result<(), String> {
        super::fetch::ActorRef::parse(
            request.reference(),
            &super::fetch::FetchPolicy::from_config(&self.config),
        )
        .map_err(|e| format!("{e:#}"))?;
        let preparer = self.preparer.clone();
        let registries = self.registries.clone();
        let done = self.jobs_tx.clone();
        let policy = self.policy.as_ref().map(super::policy::plane::PolicyPlane::manager);
        let span = tracing::info_span!("actor_job", otel.name = request.span_name(), actor_ref = %request.reference());
        let job_span = span.clone();
        let job = async move {
            let mut result = preparer.prepare(request.reference(), &registries).await;
            if let Ok(prepared) = &result {
                let target = super::policy::Target::actor(&prepared.claims);
                if let Err(denial) =
                    super::policy::plane::gate_start(policy, target, super::policy::Action::StartActor).await
                {
                    result = Err(denial);
                }
            }
            let job = ActorJob {
                request,
                result,
                span: job_span,
            };
            if done.send(job).await.is_err() {
                tracing::warn!("actor job finished after the control plane stopped");
            }
        };
        tokio::spawn(job.instrument(span));
        Ok(())
    }

    /// Apply a finished job in the control loop.
    pub(super) async fn on_actor_job(&mut self, job: ActorJob) {
        let ActorJob { request, result, .. } = job;
        let prepared = match result {
            Ok(p) => p,
            Err(error) => return self.job_failed(&request, None, &error).await,
        };
        let lattice_alias_owner = prepared.claims.call_alias.as_deref().and_then(|alias| {
            let owner = self.state.claims.values().find(|c| c.call_alias() == Some(alias))?;
            owner.subject().map(str::to_string)
        });
        if let Err(e) = self
            .actors
            .check_alias(&prepared.claims, lattice_alias_owner.as_deref())
        {
            return self
                .job_failed(&request, Some(&prepared.claims.subject), &e.to_string())
                .await;
        }
        let template = RunningActor {
            claims: prepared.claims.clone(),
            image_ref: request.reference().to_string(),
            module_hash: prepared.claims.hash.clone(),
            groups: Vec::new(),
        };
        let key = prepared.claims.subject.clone();
        let budget = self.check_memory_budget(&key, &prepared.compiled, |table| match &request {
            ActorRequest::Start { count, annotations, .. } => {
                table.add_instances(template.clone(), annotations.clone(), *count);
            }
            ActorRequest::Scale {
                target, annotations, ..
            } => {
                table.scale(template.clone(), annotations.clone(), *target);
            }
            ActorRequest::Update { .. } => {}
        });
        if let Err(e) = budget {
            return self.job_failed(&request, Some(&key), &e).await;
        }
        self.compiled.insert(key, prepared.compiled.clone());
        match request {
            ActorRequest::Start { count, annotations, .. } => {
                let (actor, ids) = self.actors.add_instances(template, annotations.clone(), count);
                let actor = actor.clone();
                self.store_actor_metadata(&actor, prepared.fetched.digest.is_some())
                    .await;
                let ready = self.sync_shard_pools(&actor.claims.subject);
                let events = self.events.clone();
                let host_id = self.info.identity.host_id();
                // The job's span ends once `actor_started` is out.
                let announce = async move {
                    // Announce once every shard serves it (bounded: a stuck shard delays, never blocks).
                    wait_ready(ready).await;
                    emit_started_with(&events, &host_id, &actor, &annotations, &ids, ids.len()).await;
                };
                tokio::spawn(announce.in_current_span());
            }
            ActorRequest::Scale {
                target, annotations, ..
            } => {
                let store = prepared.fetched.digest.is_some();
                self.apply_scale(template.clone(), annotations, target);
                self.store_actor_metadata(&template, store).await;
            }
            ActorRequest::Update { actor_id, .. } => {
                self.apply_update(&actor_id, template, prepared.fetched.digest.is_some())
                    .await;
            }
        }
    }

    fn apply_scale(&mut self, template: RunningActor, annotations: Annotations, target: ScaleTarget) {
        let key = template.claims.subject.clone();
        let image_ref = template.image_ref.clone();
        let change = self.actors.scale(template, annotations.clone(), target);
        let events = self.events.clone();
        let actor = self.actors.actors.get(&key).cloned();
        let ready = if change.stopped_count > 0 {
            self.after_stop(&key, image_ref, &annotations, change.stopped, change.stopped_count);
            None
        } else {
            Some(self.sync_shard_pools(&key))
        };
        if let (Some(actor), true) = (actor, change.started_count > 0) {
            let host_id = self.info.identity.host_id();
            let (started, count) = (change.started, change.started_count);
            let announce = async move {
                if let Some(ready) = ready {
                    wait_ready(ready).await;
                }
                emit_started_with(&events, &host_id, &actor, &annotations, &started, count).await
            };
            tokio::spawn(announce.in_current_span());
        }
    }

    /// Every instance of the actor moves to the new module (annotations select nothing here,
    /// as on the OTP host).
    async fn apply_update(&mut self, actor_id: &str, template: RunningActor, store: bool) {
        let Some(current) = self.actors.actors.get_mut(actor_id) else {
            let error = format!("actor {actor_id} stopped before its update was ready");
            return self.update_failed(actor_id, &template.claims, &error).await;
        };
        if template.claims.subject != actor_id {
            let error = format!("the new module's key {} is not {actor_id}", template.claims.subject);
            return self.update_failed(actor_id, &template.claims, &error).await;
        }
        current.claims = template.claims.clone();
        current.image_ref = template.image_ref.clone();
        current.module_hash = template.module_hash.clone();
        let updated = current.clone();
        self.store_actor_metadata(&updated, store).await;
        // Shards build the new pool before dropping the old one: calls in flight finish on
        // their leased instances, new calls take new instances. Announced once all swapped.
        let ready = self.sync_shard_pools(actor_id);
        let revision = updated.claims.revision_or_iat();
        let events = self.events.clone();
        let actor_id = actor_id.to_string();
        tokio::spawn(async move {
            wait_ready(ready).await;
            for group in &updated.groups {
                for id in &group.instance_ids {
                    let data = json!({ "public_key": actor_id, "revision": revision, "instance_id": id });
                    events.emit("actor_updated", data).await;
                }
            }
        });
    }

    async fn update_failed(&self, actor_id: &str, claims: &ActorClaims, reason: &str) {
        tracing::warn!(actor_id, reason, "actor update failed");
        let data = json!({ "public_key": actor_id, "revision": claims.revision_or_iat(), "instance_id": "", "reason": reason });
        self.events.emit("actor_update_failed", data).await;
    }

    async fn job_failed(&self, request: &ActorRequest, key: Option<&str>, error: &str) {
        tracing::warn!(reference = request.reference(), error, "actor start failed");
        if let ActorRequest::Update { actor_id, .. } = request {
            let data = json!({ "public_key": actor_id, "revision": 0, "instance_id": "", "reason": error });
            return self.events.emit("actor_update_failed", data).await;
        }
        self.events
            .emit(
                "actor_start_failed",
                json!({ "actor_ref": request.reference(), "error": error }),
            )
            .await;
        let data = json!({
            "public_key": key.unwrap_or_default(),
            "image_ref": request.reference(),
            "annotations": request.annotations(),
            "host_id": self.info.identity.host_id(),
            "error": error,
        });
        self.events.emit("actors_start_failed", data).await;
    }

    /// After instances stopped (or max concurrency went down by `count`): shard pools, events,
    /// and forgetting the module when no instance remains.
    fn after_stop(
        &mut self,
        key: &str,
        image_ref: String,
        annotations: &Annotations,
        stopped: Vec<String>,
        count: usize,
    ) {
        let remaining = self.actors.actors.get(key).map_or(0, RunningActor::reported_count);
        self.sync_shard_pools(key);
        if !self.actors.actors.contains_key(key) {
            self.compiled.remove(key);
        }
        let events = self.events.clone();
        let host_id = self.info.identity.host_id();
        let (key, annotations) = (key.to_string(), annotations.clone());
        let announce = async move {
            let stop = Stopped {
                key: &key,
                image_ref: &image_ref,
                annotations: &annotations,
                ids: &stopped,
                count,
                remaining,
            };
            emit_stopped(&events, &host_id, stop).await;
        };
        tokio::spawn(announce.in_current_span());
    }

    /// At host stop: every actor's instances stop, with their events (as the OTP host does).
    pub(super) async fn stop_all_actors(&mut self) {
        let host_id = self.info.identity.host_id();
        for (key, actor) in std::mem::take(&mut self.actors.actors) {
            for group in &actor.groups {
                let stop = Stopped {
                    key: &key,
                    image_ref: &actor.image_ref,
                    annotations: &group.annotations,
                    ids: &group.instance_ids,
                    count: group.weight(),
                    remaining: 0,
                };
                emit_stopped(&self.events, &host_id, stop).await;
            }
        }
        self.compiled.clear();
    }

    /// Tell every shard how many warm instances of `key` to keep (0 = drop the pool). The
    /// receiver completes when every shard has applied it (see [`PoolBarrier`]).
    fn sync_shard_pools(&mut self, key: &str) -> tokio::sync::oneshot::Receiver<()> {
        let shards = self.shards.len().max(1) as u32;
        let command = match (self.actors.actors.get(key), self.compiled.get(key)) {
            (Some(actor), Some(compiled)) => ShardCommand::ActorPool {
                key: key.to_string(),
                compiled: compiled.clone(),
                caps: Arc::new(actor.claims.caps.clone()),
                warm_instances: warm_per_shard(actor, shards),
            },
            _ => ShardCommand::ActorStop { key: key.to_string() },
        };
        let (done, ready) = tokio::sync::oneshot::channel();
        match self.shards.broadcast(&command) {
            Ok(()) => self.pool_barriers.push(PoolBarrier {
                key: key.to_string(),
                pending: (0..self.shards.len()).map(|i| ShardId(i as u16)).collect(),
                done,
            }),
            // `done` dropped: nobody waits for a command that did not reach every shard.
            Err(e) => tracing::error!(actor = key, error = %e, "cannot hand the actor's pool to a shard"),
        }
        ready
    }

    /// A shard applied (or failed) the latest pool command for `key`.
    pub(super) fn on_pool_report(&mut self, shard: ShardId, key: &str) {
        if let Some(barrier) = self
            .pool_barriers
            .iter_mut()
            .find(|b| b.key == key && b.pending.contains(&shard))
        {
            barrier.pending.remove(&shard);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pool_barriers)
            .into_iter()
            .partition(|b| b.pending.is_empty());
        self.pool_barriers = waiting;
        for barrier in done {
            let _ = barrier.done.send(());
        }
    }

    /// `CLAIMS_{key}` (OTP shape) and, for OCI references, `REFMAP_…`.
    async fn store_actor_metadata(&self, actor: &RunningActor, oci: bool) {
        let stored = claims::to_stored_claims(&actor.claims);
        let key = format!("{}{}", crate::lattice::CLAIMS_PREFIX, actor.claims.subject);
        let value: Bytes = serde_json::to_vec(&stored.0).unwrap_or_default().into();
        if let Err(e) = self.lattice_store.store.put(&key, value).await {
            tracing::warn!(%key, error = %e, "cannot store claims");
        }
        if oci {
            let map = RefMap {
                oci_url: actor.image_ref.clone(),
                public_key: actor.claims.subject.clone(),
            };
            let value: Bytes = serde_json::to_vec(&map).unwrap_or_default().into();
            if let Err(e) = self.lattice_store.store.put(map.kv_key(), value).await {
                tracing::warn!(oci_url = %map.oci_url, error = %e, "cannot store refmap");
            }
        }
    }
}

/// What an `actors_stopped` reports: the instance ids stopped (one `actor_stopped` each), and
/// the `count`/`remaining` (instances, or max concurrency for 0.30+ scales; see
/// [`actors::ScaleChange`]).
struct Stopped<'a> {
    key: &'a str,
    image_ref: &'a str,
    annotations: &'a Annotations,
    ids: &'a [String],
    count: usize,
    remaining: usize,
}

/// `actor_stopped` per instance, then one `actors_stopped`.
async fn emit_stopped(events: &super::events::Events, host_id: &str, stop: Stopped<'_>) {
    let Stopped {
        key,
        image_ref,
        annotations,
        ids,
        count,
        remaining,
    } = stop;
    for id in ids {
        let data = json!({ "public_key": key, "instance_id": id, "annotations": annotations });
        events.emit("actor_stopped", data).await;
    }
    let data = json!({
        "host_id": host_id, "public_key": key, "count": count, "remaining": remaining,
        "annotations": annotations, "image_ref": image_ref,
    });
    events.emit("actors_stopped", data).await;
}

/// `actor_started` per new instance id, then one `actors_started` with `count` (instances, or
/// the max concurrency added by a 0.30+ scale).
async fn emit_started_with(
    events: &super::events::Events,
    host_id: &str,
    actor: &RunningActor,
    annotations: &Annotations,
    ids: &[String],
    count: usize,
) {
    let claims = actors::event_claims(&actor.claims);
    for id in ids {
        let data = json!({
            "public_key": actor.claims.subject, "image_ref": actor.image_ref, "api_version": "n/a",
            "instance_id": id, "annotations": annotations, "claims": claims, "host_id": host_id,
        });
        events.emit("actor_started", data).await;
    }
    let data = json!({
        "public_key": actor.claims.subject, "image_ref": actor.image_ref, "annotations": annotations,
        "host_id": host_id, "claims": claims, "count": count,
    });
    events.emit("actors_started", data).await;
}

/// Longest an event waits for the shards to apply an actor's pool before it is emitted anyway.
pub const POOL_READY_WAIT_MS: u64 = 10_000;

/// Waits for every shard to report on one pool command for `key` (each shard answers its
/// commands in order, so the oldest barrier still waiting on a shard is the one it answered).
pub struct PoolBarrier {
    pub key: String,
    pub pending: std::collections::BTreeSet<ShardId>,
    pub done: tokio::sync::oneshot::Sender<()>,
}

/// Wait (bounded) until the shards applied a pool command.
async fn wait_ready(ready: tokio::sync::oneshot::Receiver<()>) {
    let limit = std::time::Duration::from_millis(POOL_READY_WAIT_MS);
    if tokio::time::timeout(limit, ready).await.is_err() {
        tracing::warn!(
            ?limit,
            "shards did not confirm the actor's pool in time; announcing anyway"
        );
    }
}
