//! Control plane: one tokio thread that joins the lattice and runs everything low-rate — the
//! control interface, events and heartbeat, the lattice KV bucket, and the fan-out of routing
//! snapshots to the shards.
//!
//! It may allocate and use `anyhow`; one bad request is answered with an error and logged, and
//! never stops the plane. It never touches shard state except through [`ShardSet`].

pub mod actor_ops;
pub mod actors;
pub mod chunks;
pub mod events;
pub mod fetch;
pub mod heartbeat;
pub mod http_routes;
pub mod kv;
pub mod kv_watch;
pub mod managed_nats;
mod memory;
pub mod messaging_routes;
pub mod metrics;
pub mod nats;
pub mod policy;
pub mod prepare;
pub mod probes;
pub mod providers;
pub mod registries;
mod shard_reports;
pub mod shards;
mod startup;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tracing::Instrument as _;

use crate::config::{Config, SHARD_STOP_TIMEOUT_MS};
use crate::lattice::{Change, LatticeState, LinkDefinition};
use crate::plane::{ShardCommand, ShardCounters, ShardId, ShardStats};
use crate::routing::RoutingSnapshot;
use crate::runtime::{CompiledActor, Runtime};
use crate::wire::ctl::{self, ack_err, ack_ok, CtlBody, CtlRequest};
use actor_ops::{ActorJob, ACTOR_JOBS_CHANNEL_CAPACITY};
use actors::ActorTable;
use events::{Events, NatsEventSink};
use heartbeat::HostInfo;
use kv::LatticeStore;
use kv_watch::LatticeWatch;
use prepare::Preparer;
use registries::Registries;
use shards::ShardSet;

/// How long shards may take to report that they run.
pub const SHARD_START_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for NATS at shutdown (publishing host_stopped and flushing).
pub const SHUTDOWN_NATS_BUDGET_MS: u64 = 3_000;

/// Why the host stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `cmd.{host}.stop`, with the graceful timeout it asked for.
    Command { timeout: Duration },
    /// SIGINT or SIGTERM.
    Signal(&'static str),
}

/// The control plane and everything it owns.
pub struct ControlPlane {
    config: Config,
    info: HostInfo,
    ctl: async_nats::Client,
    prov_rpc: async_nats::Client,
    lattice_store: LatticeStore,
    state: LatticeState,
    routing_version: u64,
    shards: ShardSet,
    events: Events,
    registries: Registries,
    shard_stats: BTreeMap<ShardId, ShardStats>,
    /// Actors running on this host.
    actors: ActorTable,
    /// Compiled module of each running actor, by key.
    compiled: std::collections::HashMap<String, CompiledActor>,
    /// Fetch + validate + compile, run in background tasks.
    preparer: Preparer,
    jobs_tx: tokio::sync::mpsc::Sender<ActorJob>,
    jobs_rx: tokio::sync::mpsc::Receiver<ActorJob>,
    /// Cranelift's code for modules that started on the baseline compiler.
    optimized_rx: tokio::sync::mpsc::UnboundedReceiver<prepare::Optimized>,
    /// Pool commands waiting for every shard's report (events wait on them).
    pool_barriers: Vec<actor_ops::PoolBarrier>,
    /// Capability provider processes and their supervisors.
    providers: providers::Providers,
    /// Host levels for the metrics endpoint, stored after each handled event.
    gauges: Arc<metrics::HostGauges>,
    /// Which shards' NATS connections are up.
    shards_connected: BTreeMap<ShardId, bool>,
    /// The policy service (`--policy-topic`), if any.
    policy: Option<policy::plane::PolicyPlane>,
    /// What `/livez` and `/readyz` judge: the loop's own tick, connections, KV, draining.
    probes: Arc<probes::ProbeState>,
    /// The built-in HTTP server's routes last handed to the shards.
    http_routes: Arc<Vec<crate::builtin::routes::HttpRoute>>,
    /// The built-in messaging provider's routes last handed to the shards.
    messaging_routes: Arc<Vec<crate::builtin::routes::MessagingRoute>>,
}

impl ControlPlane {
    /// Connect, open and load the lattice bucket, and start the shards.
    pub async fn start(config: Config) -> Result<ControlPlane> {
        let host_id = config.identity.host_id();
        let (ctl, prov_rpc) = startup::connect(&config, &host_id).await?;
        let (lattice_store, state) = startup::load_lattice(&ctl, &config).await?;
        let runtime = Runtime::new(&config.runtime_limits).context("cannot start the actor runtime")?;
        tracing::info!(limits = %config.runtime_limits, "actor runtime ready");
        let (preparer, optimized_rx) = startup::preparer(&config, &runtime)?;
        let (chunks_tx, chunks_rx) = futures::channel::mpsc::channel(chunks::CHUNK_CHANNEL_CAPACITY);
        tokio::spawn(chunks::serve(
            ctl.clone(),
            config.lattice.clone(),
            config.js_domain.clone(),
            chunks_rx,
        ));
        let counters: Arc<Vec<ShardCounters>> =
            Arc::new((0..config.shard_count).map(|_| ShardCounters::default()).collect());
        let shard_config = startup::shard_config(&config, &host_id, chunks_tx, Arc::clone(&counters));
        let shards = ShardSet::start(
            config.shard_count,
            Duration::from_millis(SHARD_START_TIMEOUT_MS),
            runtime,
            shard_config,
        )
        .await
        .context("cannot start the shards")?;
        let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(ACTOR_JOBS_CHANNEL_CAPACITY);
        let mut registries = Registries::default();
        if let Some(cred) = &config.oci_credential {
            registries.insert_basic(&cred.registry, &cred.username, &cred.password);
        }
        let info = startup::host_info(&config);
        let events = Events::new(Arc::new(NatsEventSink::new(ctl.clone(), &config.lattice)), host_id);
        let gauges = Arc::new(metrics::HostGauges::default());
        let probes = Arc::new(probes::ProbeState::new(config.shard_count));
        if let Some(addr) = config.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
            tracing::info!(%addr, "metrics endpoint listening (GET /metrics, /livez, /readyz)");
            let (gauges, probes) = (Arc::clone(&gauges), Arc::clone(&probes));
            tokio::spawn(metrics::serve(
                listener,
                counters,
                gauges,
                probes,
                ctl.clone(),
                info.started,
            ));
        }
        let policy = match &config.policy {
            Some(settings) => {
                Some(policy::plane::PolicyPlane::start(&ctl, settings, policy::plane::host_info(&info)).await?)
            }
            None => None,
        };
        let providers = startup::providers(&config, &state, &prov_rpc, &events)?;
        let mut plane = ControlPlane {
            config,
            info,
            ctl,
            prov_rpc,
            lattice_store,
            state,
            routing_version: 0,
            shards,
            events,
            registries,
            shard_stats: BTreeMap::new(),
            actors: ActorTable::default(),
            compiled: std::collections::HashMap::new(),
            preparer,
            jobs_tx,
            jobs_rx,
            optimized_rx,
            pool_barriers: Vec::new(),
            providers,
            gauges,
            shards_connected: BTreeMap::new(),
            policy,
            probes,
            http_routes: Arc::default(),
            messaging_routes: Arc::default(),
        };
        plane.publish_routing();
        Ok(plane)
    }

    /// Serve until a stop command or signal, then stop gracefully.
    pub async fn run(mut self) -> Result<StopReason> {
        let mut ctl_messages = self.subscribe_ctl().await?;
        let mut watch = LatticeWatch::open(&self.lattice_store, Arc::clone(&self.gauges)).await?;
        self.probes.set_lattice_loaded();
        // Without events the loop still turns over: /livez sees a wedged loop by its stale tick.
        let mut tick = tokio::time::interval(Duration::from_millis(probes::CONTROL_TICK_INTERVAL_MS));
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.heartbeat_interval,
            self.config.heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

        for report in std::mem::take(&mut self.shards.early) {
            self.on_shard_report(report);
        }
        self.store_gauges();
        self.events.emit("host_started", self.info.started_event()).await;
        self.log_started();

        let reason = loop {
            tokio::select! {
                Some(msg) = ctl_messages.next() => {
                    let host_id = self.info.identity.host_id();
                    let request = ctl::route(&self.config.ctl_topic_prefix, &self.config.lattice, &host_id, &msg.subject);
                    let span = ctl_span(&msg, &request);
                    if let Some(reason) = self.handle_ctl(msg, request).instrument(span).await {
                        break reason;
                    }
                }
                _ = heartbeat.tick() => self.emit_heartbeat().await,
                entry = watch.next(&self.lattice_store) => {
                    let change = self.lattice_store.apply(entry, &mut self.state);
                    self.on_change(change).await;
                }
                Some(report) = self.shards.reports.next() => self.on_shard_report(report),
                Some(job) = self.jobs_rx.recv() => {
                    let span = job.span.clone();
                    self.on_actor_job(job).instrument(span).await;
                }
                Some(done) = self.optimized_rx.recv() => self.on_optimized(done),
                Some(job) = self.providers.jobs_rx.recv() => {
                    let span = job.span.clone();
                    self.on_provider_job(job).instrument(span).await;
                }
                Some(report) = self.providers.reports_rx.recv() => self.on_provider_report(report),
                Some((pair, verdict)) = policy::plane::next_verdict(&mut self.policy) => self.on_policy_verdict(pair, verdict),
                _ = sigterm.recv() => break StopReason::Signal("SIGTERM"),
                _ = sigint.recv() => break StopReason::Signal("SIGINT"),
                _ = tick.tick() => {}
            }
            self.store_gauges();
        };
        // Not ready from now on, before providers stop and the shards drain.
        self.probes.set_draining();
        self.shutdown(&reason).await;
        Ok(reason)
    }

    async fn subscribe_ctl(&self) -> Result<futures::stream::SelectAll<async_nats::Subscriber>> {
        let host_id = self.info.identity.host_id();
        let mut subs = Vec::new();
        for s in ctl::subscriptions(&self.config.ctl_topic_prefix, &self.config.lattice, &host_id) {
            let sub = match &s.queue_group {
                Some(q) => self.ctl.queue_subscribe(s.subject.clone(), q.clone()).await,
                None => self.ctl.subscribe(s.subject.clone()).await,
            }
            .with_context(|| format!("subscribe {}", s.subject))?;
            subs.push(sub);
        }
        // Make sure the server has every subscription before we announce ourselves.
        self.ctl.flush().await.context("flush subscriptions")?;
        Ok(futures::stream::select_all(subs))
    }

    fn log_started(&self) {
        tracing::info!(
            host_id = %self.info.identity.host_id(),
            issuer = %self.info.identity.issuer(),
            lattice = %self.config.lattice,
            friendly_name = %self.info.friendly_name,
            shards = self.shards.len(),
            ctl = %self.info.ctl_url,
            "shardhost started"
        );
    }

    /// Answer one control request (`request`: its routed subject). Returns a reason when the
    /// host must stop.
    async fn handle_ctl(&mut self, msg: async_nats::Message, request: CtlRequest) -> Option<StopReason> {
        tracing::debug!(subject = %msg.subject, ?request, "control request");
        let body = match ctl::decode_body(&request, &msg.payload) {
            Ok(body) => body,
            Err(e) if matches!(request, CtlRequest::AuctionActor | CtlRequest::AuctionProvider) => {
                // Auctions are answered with bids only.
                tracing::warn!(subject = %msg.subject, error = %e, "malformed auction");
                return None;
            }
            Err(e) => {
                self.reply(&msg, &ack_err(e)).await;
                return None;
            }
        };
        let mut stop = None;
        let reply: Option<Value> = match body {
            CtlBody::Unread => Some(match request {
                CtlRequest::PingHosts => self.info.ping_reply(),
                CtlRequest::Inventory => self.info.inventory(self.actors.inventory(), self.providers.inventory()),
                CtlRequest::GetLinks => {
                    let links: Vec<Value> = self.state.links.values().map(LinkDefinition::to_json_with_id).collect();
                    json!({ "links": links })
                }
                CtlRequest::GetClaims => {
                    let claims: Vec<&BTreeMap<String, String>> = self.state.claims.values().map(|c| &c.0).collect();
                    json!({ "claims": claims })
                }
                CtlRequest::Config => ack_err("the config service subjects are not supported yet by shardhost"),
                _ => ack_err(format!("unsupported subject {}", msg.subject)),
            }),
            CtlBody::RegistriesPut(map) => Some(self.registries_put(map)),
            CtlBody::LinkPut(link) => Some(self.linkdefs_put(link).await),
            CtlBody::LinkDel(del) => Some(self.linkdefs_del(del).await),
            CtlBody::Label { key, value } => Some(self.label_change(key, value)),
            CtlBody::AuctionActor { actor_ref, constraints } => self.actor_auction(actor_ref, constraints),
            CtlBody::AuctionProvider {
                provider_ref,
                link_name,
                constraints,
            } => self.provider_auction(provider_ref, link_name, constraints),
            CtlBody::NoBid => None,
            CtlBody::LaunchActor(cmd) => Some(self.actor_launch(cmd)),
            CtlBody::ScaleActor(cmd) => Some(self.actor_scale(cmd)),
            CtlBody::StopActor(cmd) => Some(self.actor_stop(cmd)),
            CtlBody::UpdateActor(cmd) => Some(self.actor_update(cmd)),
            CtlBody::LaunchProvider(cmd) => Some(self.provider_launch(cmd).await),
            CtlBody::StopProvider(cmd) => Some(self.provider_stop(cmd)),
            CtlBody::StopHost(cmd) => {
                let timeout = Duration::from_millis(cmd.timeout.unwrap_or(SHARD_STOP_TIMEOUT_MS));
                stop = Some(StopReason::Command { timeout });
                Some(ack_ok())
            }
        };
        if let Some(body) = reply {
            self.reply(&msg, &body).await;
        }
        stop
    }

    async fn reply(&self, msg: &async_nats::Message, body: &Value) {
        let Some(reply_to) = msg.reply.clone() else {
            tracing::debug!(subject = %msg.subject, "control request without a reply subject");
            return;
        };
        let bytes: Bytes = serde_json::to_vec(body).unwrap_or_default().into();
        if let Err(e) = self.ctl.publish(reply_to, bytes).await {
            tracing::warn!(subject = %msg.subject, error = %e, "cannot send control reply");
        }
    }

    fn registries_put(&mut self, map: BTreeMap<String, ctl::RegistryCredential>) -> Value {
        let (kept, dropped) = self.registries.merge(map);
        if !dropped.is_empty() {
            tracing::warn!(
                ?dropped,
                "registries.put: entries without registryType oci or credentials dropped"
            );
        }
        tracing::info!(kept, total = self.registries.len(), "registry credentials updated");
        ack_ok()
    }

    async fn linkdefs_put(&mut self, link: LinkDefinition) -> Value {
        if let Some(refusal) =
            http_routes::link_put_refusal(&link).or_else(|| messaging_routes::link_put_refusal(&link))
        {
            return ack_err(refusal);
        }
        let value: Bytes = serde_json::to_vec(&link.to_json_with_id()).unwrap_or_default().into();
        match self.lattice_store.store.put(link.kv_key(), value).await {
            Ok(_) => ack_ok(),
            Err(e) => ack_err(format!("cannot store link definition: {e}")),
        }
    }

    async fn linkdefs_del(&mut self, del: ctl::LinkDelRequest) -> Value {
        let key = crate::lattice::linkdef_key(&del.actor_id, &del.contract_id, &del.link_name);
        match self.lattice_store.store.delete(&key).await {
            Ok(()) => ack_ok(),
            Err(e) => ack_err(format!("cannot delete link definition: {e}")),
        }
    }

    fn label_change(&mut self, key: String, value: Option<String>) -> Value {
        match value {
            Some(value) => {
                self.info.labels.insert(key, value);
                ack_ok()
            }
            None => match self.info.labels.remove(&key) {
                Some(_) => ack_ok(),
                None => ack_err(format!("label `{key}` is not set")),
            },
        }
    }

    async fn emit_heartbeat(&self) {
        let data = self
            .info
            .heartbeat(&self.actors.heartbeat_counts(), self.providers.heartbeat());
        self.events.emit("host_heartbeat", data).await;
        metrics::log_shard_counters(&self.shard_stats);
    }

    /// React to a lattice change seen after start: events, forwarding to providers, and a
    /// new routing snapshot for the shards.
    async fn on_change(&mut self, change: Change) {
        match &change {
            Change::LinkSet(link) => {
                self.events.emit("linkdef_set", link.to_json_with_id()).await;
                self.forward_link(link, "put").await;
                self.providers.links_changed(&self.state);
            }
            Change::LinkDeleted(link) => {
                self.events.emit("linkdef_deleted", link.to_json_with_id()).await;
                self.forward_link(link, "del").await;
                self.providers.links_changed(&self.state);
            }
            Change::ClaimsSet(c) | Change::ClaimsDeleted(c) => {
                tracing::debug!(subject = ?c.subject(), "claims changed")
            }
            Change::RefMapSet(m) | Change::RefMapDeleted(m) => tracing::debug!(oci_url = %m.oci_url, "refmap changed"),
            Change::None => return,
        }
        self.publish_routing();
        if matches!(change, Change::LinkSet(_) | Change::LinkDeleted(_)) {
            self.publish_builtin_routes();
        }
    }

    /// Tell the link's provider (wherever it runs) about it: msgpack on
    /// `wasmbus.rpc.{lattice}.{provider}.{link}.linkdefs.{put|del}`.
    async fn forward_link(&self, link: &LinkDefinition, op: &str) {
        let subject = format!(
            "wasmbus.rpc.{}.{}.{}.linkdefs.{op}",
            self.config.lattice, link.provider_id, link.link_name
        );
        match rmp_serde::to_vec_named(link) {
            Ok(body) => {
                if let Err(e) = self.prov_rpc.publish(subject.clone(), body.into()).await {
                    tracing::warn!(%subject, error = %e, "cannot forward link definition");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode link definition"),
        }
    }

    fn publish_routing(&mut self) {
        self.routing_version += 1;
        let snapshot = RoutingSnapshot::build(self.routing_version, &self.state, &self.info.identity.cluster_issuers);
        if let Err(e) = self.shards.broadcast(&ShardCommand::Routing(Arc::new(snapshot))) {
            tracing::error!(error = %e, version = self.routing_version, "cannot hand routing snapshot to a shard");
        }
    }

    async fn shutdown(mut self, reason: &StopReason) {
        tracing::info!(?reason, "stopping host");
        let timeout = match reason {
            StopReason::Command { timeout } => *timeout,
            // The shards' own drain, plus the time to write the last replies and join.
            StopReason::Signal(_) => self.config.drain_timeout + Duration::from_millis(SHARD_STOP_TIMEOUT_MS),
        };
        // NATS may be gone: never wait on it longer than the budget.
        let budget = Duration::from_millis(SHUTDOWN_NATS_BUDGET_MS);
        // Providers first (they may still call actors), each: shutdown request, grace, kill.
        let providers_budget = self.config.provider_shutdown_delay * 2 + budget;
        self.providers.stop_all(providers_budget).await;
        if tokio::time::timeout(budget, self.stop_all_actors()).await.is_err() {
            tracing::warn!(?budget, "could not publish the actors' stop events: NATS unreachable");
        }
        let finals = self.shards.stop(timeout).await;
        tracing::info!(stopped = finals.len(), "shards stopped");
        let farewell = async {
            self.events.emit("host_stopped", self.info.stopped_event()).await;
            self.events.flush().await;
        };
        if tokio::time::timeout(budget, farewell).await.is_err() {
            tracing::warn!(?budget, "could not publish host_stopped: NATS unreachable");
        }
    }
}

/// The span a control request is served in (an OpenTelemetry server span when telemetry is
/// on), parented on the caller's trace headers.
fn ctl_span(msg: &async_nats::Message, request: &CtlRequest) -> tracing::Span {
    let span = tracing::info_span!(
        "ctl",
        otel.name = request.span_name(),
        otel.kind = "server",
        messaging.destination.name = %msg.subject,
    );
    crate::telemetry::parent_on_headers(&span, msg.headers.as_ref());
    span
}
