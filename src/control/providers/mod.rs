//! Capability providers (PROTOCOL §8): native processes started from provider archives.
//!
//! - [`credentials`]: scoped NATS user JWTs per provider instance (`nats-io-jwt`).
//! - [`hostdata`]: the HostData line a provider reads at start (pure).
//! - [`health`]: the health reply and the change-only health events (pure).
//! - [`process`]: the binary in the cache, spawning with a cleared environment, own process
//!   group and parent-death signal, output into the host log.
//! - [`supervisor`]: one task per provider instance: health checks, restarts with backoff,
//!   stop (shutdown request, grace, kill).
//! - [`ops`]: the control-interface side (`lp`, `sp`, `auction.provider`), KV claims, the
//!   fetch-and-check jobs and the reports coming back from the supervisors.
//!
//! - [`builtin`]: built-in providers (`wasmcloud+builtin://…`): the same events, health and
//!   inventory with no process; the shards serve them.
//!
//! PAR reading and claims checks are pure code in [`crate::auth::par`]. Control plane (tokio).

pub mod builtin;
pub mod credentials;
pub mod health;
pub mod hostdata;
pub mod ops;
pub mod process;
pub mod supervisor;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::par::ProviderClaims;
use crate::control::actors::{human_time, Annotations};
use crate::lattice::{LatticeState, LinkDefinition};
use supervisor::{ProviderReport, StopRequest, SupervisorContext};

/// Capacity of the channel bringing finished fetch jobs back to the control loop.
pub const PROVIDER_JOBS_CHANNEL_CAPACITY: usize = 16;
/// Capacity of the channel bringing supervisor reports to the control loop.
pub const PROVIDER_REPORTS_CHANNEL_CAPACITY: usize = 256;

/// Everything needed to (re)start one provider instance.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub claims: ProviderClaims,
    /// The reference it was started from, as the request gave it.
    pub image_ref: String,
    pub link_name: String,
    pub annotations: Annotations,
    pub config_json: Option<String>,
    /// The extracted executable in the cache.
    pub binary_path: PathBuf,
    pub instance_id: String,
    /// NATS credentials minted for this instance (else the host's `--prov-rpc-*` ones).
    pub credentials: Option<ProviderCredentials>,
    /// Set for a built-in provider: no process, no binary (`binary_path` is empty).
    pub builtin: Option<crate::builtin::identity::BuiltinProvider>,
}

/// A NATS user JWT and the seed of its key.
#[derive(Clone)]
pub struct ProviderCredentials {
    pub jwt: String,
    pub seed: String,
}

impl std::fmt::Debug for ProviderCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderCredentials(..)")
    }
}

impl ProviderSpec {
    /// `V…/link` for logs.
    pub fn tag(&self) -> String {
        format!("{}/{}", self.claims.subject, self.link_name)
    }

    /// `provider_started` data (§6), with the Rust host's `host_id`.
    pub fn started_event(&self, host_id: &str) -> Value {
        json!({
            "public_key": self.claims.subject,
            "image_ref": self.image_ref,
            "link_name": self.link_name,
            "contract_id": self.claims.capid,
            "instance_id": self.instance_id,
            "annotations": self.annotations,
            "host_id": host_id,
            "claims": {
                "issuer": self.claims.issuer,
                // wadm 0.10 reads provider tags as one comma-joined string or null.
                "tags": Value::Null,
                "name": self.claims.name.clone().unwrap_or_default(),
                "version": self.claims.ver.clone().unwrap_or_default(),
                "revision": self.claims.revision_or_iat(),
                "not_before_human": human_time(self.claims.nbf_secs),
                "expires_human": human_time(self.claims.exp_secs),
            },
        })
    }
}

/// One provider instance as the control loop sees it.
pub struct RunningProvider {
    pub spec: Arc<ProviderSpec>,
    pub healthy: bool,
    pub pid: Option<u32>,
    pub restarts: u32,
    stop_tx: tokio::sync::mpsc::Sender<StopRequest>,
}

impl RunningProvider {
    /// Inventory entry (§5.3) plus the supervision state.
    pub fn inventory_entry(&self) -> Value {
        let spec = &self.spec;
        json!({
            "id": spec.claims.subject,
            "link_name": spec.link_name,
            "contract_id": spec.claims.capid,
            "image_ref": spec.image_ref,
            "name": spec.claims.name,
            "revision": spec.claims.revision_or_iat(),
            "annotations": spec.annotations,
            "instance_id": spec.instance_id,
            "healthy": self.healthy,
            "restarts": self.restarts,
        })
    }
}

/// Providers on this host: running ones by (key, link name), starts in flight by (reference,
/// link name), and the channels to their supervisors.
pub struct Providers {
    pub running: BTreeMap<(String, String), RunningProvider>,
    pub pending: BTreeSet<(String, String)>,
    pub jobs_tx: tokio::sync::mpsc::Sender<ops::ProviderJob>,
    pub jobs_rx: tokio::sync::mpsc::Receiver<ops::ProviderJob>,
    pub reports_rx: tokio::sync::mpsc::Receiver<ProviderReport>,
    ctx: SupervisorContext,
    links_tx: tokio::sync::watch::Sender<Arc<Vec<LinkDefinition>>>,
    /// Root of the `wasmcloudcache/` tree (PROTOCOL §8.1).
    pub cache_root: PathBuf,
    /// Signs per-instance credentials when set (`--prov-rpc-account-seed`).
    pub account: Option<Arc<nkeys::KeyPair>>,
    /// The built-in HTTP server's listeners, as the shards reported them.
    pub builtin_health: Arc<builtin::BuiltinHealth>,
}

impl Providers {
    /// `ctx_of` builds the supervisors' context around the reports sender and links receiver.
    pub fn new(
        state: &LatticeState,
        cache_root: PathBuf,
        account: Option<Arc<nkeys::KeyPair>>,
        ctx_of: impl FnOnce(
            tokio::sync::mpsc::Sender<ProviderReport>,
            tokio::sync::watch::Receiver<Arc<Vec<LinkDefinition>>>,
        ) -> SupervisorContext,
    ) -> Providers {
        let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(PROVIDER_JOBS_CHANNEL_CAPACITY);
        let (reports_tx, reports_rx) = tokio::sync::mpsc::channel(PROVIDER_REPORTS_CHANNEL_CAPACITY);
        let (links_tx, links_rx) = tokio::sync::watch::channel(all_links(state));
        Providers {
            running: BTreeMap::new(),
            pending: BTreeSet::new(),
            jobs_tx,
            jobs_rx,
            reports_rx,
            ctx: ctx_of(reports_tx, links_rx),
            links_tx,
            cache_root,
            account,
            builtin_health: Arc::default(),
        }
    }

    /// Hand the lattice's links to the supervisors (read at each (re)start).
    pub fn links_changed(&self, state: &LatticeState) {
        self.links_tx.send_replace(all_links(state));
    }

    /// Inventory entries of every running provider.
    pub fn inventory(&self) -> Vec<Value> {
        self.running.values().map(RunningProvider::inventory_entry).collect()
    }

    /// Heartbeat list (§10): `{public_key, link_name, contract_id}`.
    pub fn heartbeat(&self) -> Vec<Value> {
        self.running
            .values()
            .map(|p| json!({ "public_key": p.spec.claims.subject, "link_name": p.spec.link_name, "contract_id": p.spec.claims.capid }))
            .collect()
    }

    /// Whether a provider from `reference` with `link_name` runs or is being started.
    pub fn has(&self, reference: &str, link_name: &str) -> bool {
        self.pending.contains(&(reference.to_string(), link_name.to_string()))
            || self.running.values().any(|p| {
                p.spec.link_name == link_name && (p.spec.image_ref == reference || p.spec.claims.subject == reference)
            })
    }

    /// Start the supervisor of a checked provider.
    pub fn launch(&mut self, spec: ProviderSpec) {
        let spec = Arc::new(spec);
        let (stop_tx, stop_rx) = tokio::sync::mpsc::channel(1);
        if spec.builtin.is_some() {
            let health = Arc::clone(&self.builtin_health);
            tokio::spawn(builtin::supervise(self.ctx.clone(), Arc::clone(&spec), stop_rx, health));
        } else {
            tokio::spawn(supervisor::supervise(self.ctx.clone(), Arc::clone(&spec), stop_rx));
        }
        let key = (spec.claims.subject.clone(), spec.link_name.clone());
        self.running.insert(
            key,
            RunningProvider {
                spec,
                healthy: false,
                pid: None,
                restarts: 0,
                stop_tx,
            },
        );
    }

    /// The link names built-in `which` runs under on this host.
    pub fn builtin_links(&self, which: crate::builtin::identity::BuiltinProvider) -> BTreeSet<String> {
        self.running
            .values()
            .filter(|p| p.spec.builtin == Some(which))
            .map(|p| p.spec.link_name.clone())
            .collect()
    }

    /// Ask one provider to stop. `Ok` also when a stop is already under way.
    pub fn request_stop(&self, key: &(String, String), done: Option<tokio::sync::oneshot::Sender<()>>) -> bool {
        match self.running.get(key) {
            Some(p) => {
                let _ = p.stop_tx.try_send(StopRequest { done });
                true
            }
            None => false,
        }
    }

    /// Stop every provider and wait (bounded by `budget`) until they are gone.
    pub async fn stop_all(&mut self, budget: std::time::Duration) {
        let mut waits = Vec::new();
        for key in self.running.keys() {
            let (done, wait) = tokio::sync::oneshot::channel();
            self.request_stop(key, Some(done));
            waits.push(wait);
        }
        if waits.is_empty() {
            return;
        }
        let count = waits.len();
        if tokio::time::timeout(budget, futures::future::join_all(waits))
            .await
            .is_err()
        {
            tracing::warn!(?budget, "not every provider confirmed its stop in time");
        }
        tracing::info!(count, "providers stopped");
        self.running.clear();
    }

    /// Apply a supervisor's report.
    pub fn on_report(&mut self, report: ProviderReport) {
        use supervisor::ReportKind;
        let key = (report.provider_key, report.link_name);
        if report.kind == ReportKind::Gone {
            self.running.remove(&key);
            return;
        }
        let Some(entry) = self.running.get_mut(&key) else {
            return;
        };
        match report.kind {
            ReportKind::Running { pid, restarts } => {
                entry.pid = Some(pid);
                entry.restarts = restarts;
                entry.healthy = false;
            }
            ReportKind::Health { healthy } => entry.healthy = healthy,
            ReportKind::Restarting { .. } => {
                entry.pid = None;
                entry.healthy = false;
            }
            ReportKind::Gone => {}
        }
    }
}

fn all_links(state: &LatticeState) -> Arc<Vec<LinkDefinition>> {
    Arc::new(state.links.values().cloned().collect())
}
