//! The steps of [`super::ControlPlane::start`]: the NATS connections, the lattice state, the
//! actor preparer, the shards' settings, the host's description and the provider supervisor's
//! context, each built from the [`Config`].

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::events::Events;
use super::fetch::{FetchPolicy, Fetcher};
use super::heartbeat::HostInfo;
use super::kv::LatticeStore;
use super::prepare::{Optimized, Preparer};
use super::{nats, providers};
use crate::config::Config;
use crate::lattice::LatticeState;
use crate::plane::{ConnConfig, ShardConfig, ShardCounters};
use crate::runtime::{CompileCache, Runtime};

/// The control connection, and the provider RPC one (the same client when they are alike).
pub async fn connect(config: &Config, host_id: &str) -> Result<(async_nats::Client, async_nats::Client)> {
    let budget = config.nats_connect_timeout;
    let ctl = nats::connect_with_retry(&config.ctl, &format!("shardhost ctl {host_id}"), budget, &config.tls).await?;
    let prov_rpc = if config.prov_rpc == config.ctl {
        ctl.clone()
    } else {
        let name = format!("shardhost prov-rpc {host_id}");
        nats::connect_with_retry(&config.prov_rpc, &name, budget, &config.tls).await?
    };
    Ok((ctl, prov_rpc))
}

/// Open (or create) the lattice bucket and load its links, claims and refmaps.
pub async fn load_lattice(ctl: &async_nats::Client, config: &Config) -> Result<(LatticeStore, LatticeState)> {
    let mut store = LatticeStore::open(
        ctl.clone(),
        &config.lattice,
        config.js_domain.as_deref(),
        config.kv_replicas,
    )
    .await?;
    let mut state = LatticeState::default();
    let skipped = store.load(&mut state).await?;
    tracing::info!(
        bucket = %store.bucket,
        links = state.links.len(),
        claims = state.claims.len(),
        refmaps = state.refmaps.len(),
        skipped,
        "lattice state loaded"
    );
    Ok((store, state))
}

/// Fetch, validate and compile in the background, with the caches `config` names.
pub fn preparer(
    config: &Config,
    runtime: &Runtime,
) -> Result<(Preparer, tokio::sync::mpsc::UnboundedReceiver<Optimized>)> {
    let module_cache_dir = config.cache_dir.as_ref().map(|d| d.join("modules"));
    let compile_cache = CompileCache::new(runtime, module_cache_dir.as_deref()).context("compile cache")?;
    let mut fetcher = Fetcher::new(FetchPolicy::from_config(config));
    if let Some(dir) = &config.cache_dir {
        fetcher = fetcher.with_cache_dir(dir.join("oci"));
    }
    let (optimized_tx, optimized_rx) = tokio::sync::mpsc::unbounded_channel();
    let preparer = Preparer {
        fetcher: Arc::new(tokio::sync::Mutex::new(fetcher)),
        compile_cache: Arc::new(std::sync::Mutex::new(compile_cache)),
        runtime: runtime.clone(),
        optimized_tx,
        optimizing: Arc::default(),
    };
    Ok((preparer, optimized_rx))
}

/// What every shard runs with: its own rpc connection (TLS and credentials as the control
/// plane's), limits, the object store worker and the counters.
pub fn shard_config(
    config: &Config,
    host_id: &str,
    chunks: futures::channel::mpsc::Sender<crate::plane::ChunkRequest>,
    counters: Arc<Vec<ShardCounters>>,
) -> ShardConfig {
    let rpc_host = if config.rpc.host.contains(':') && !config.rpc.host.starts_with('[') {
        format!("[{}]", config.rpc.host)
    } else {
        config.rpc.host.clone()
    };
    ShardConfig {
        conn: Some(ConnConfig {
            servers: vec![format!("{rpc_host}:{}", config.rpc.port)],
            auth: config.rpc.auth.clone(),
            name: format!("shardhost rpc {host_id}"),
            tls: Some(Arc::clone(&config.tls)),
            require_tls: config.rpc.tls,
        }),
        lattice: config.lattice.clone(),
        host_id: host_id.to_string(),
        cluster_key: Arc::clone(&config.identity.cluster_key),
        rpc_timeout: config.rpc_timeout,
        inflight_max: config.shard_inflight_max,
        chunks: Some(chunks),
        counters,
        drain_timeout: config.drain_timeout,
        warm_release: config.warm_release,
        backend: config.shard_backend,
        policy: config.policy.is_some(),
        traces: config.shard_traces.clone(),
        local_calls: config.local_calls,
        http_header_read_timeout: config.http_header_read_timeout,
    }
}

/// The host as ping, heartbeat and inventory describe it.
pub fn host_info(config: &Config) -> HostInfo {
    HostInfo {
        identity: config.identity.clone(),
        labels: config.labels.clone(),
        friendly_name: config.friendly_name.clone(),
        lattice: config.lattice.clone(),
        js_domain: config.js_domain.clone(),
        ctl_url: config.ctl.url(),
        rpc_url: config.rpc.url(),
        prov_rpc_url: config.prov_rpc.url(),
        started: Instant::now(),
    }
}

/// The provider table and the context its supervisors run with.
pub fn providers(
    config: &Config,
    state: &LatticeState,
    prov_rpc: &async_nats::Client,
    events: &Events,
) -> Result<providers::Providers> {
    let host_data = Arc::new(providers::hostdata::HostDataBase::from_config(config)?);
    Ok(providers::Providers::new(
        state,
        config.cache_dir.clone().unwrap_or_else(std::env::temp_dir),
        config.prov_rpc_account.clone(),
        |reports, links| providers::supervisor::SupervisorContext {
            nats: prov_rpc.clone(),
            events: events.clone(),
            host: host_data,
            links,
            health_interval: config.provider_health_interval,
            rpc_timeout: config.rpc_timeout,
            shutdown_delay: config.provider_shutdown_delay,
            reports,
        },
    ))
}
