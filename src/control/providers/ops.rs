//! The control-interface side of providers: `cmd.{host}.lp`, `cmd.{host}.sp` and
//! `auction.provider` (PROTOCOL §5.1, §5.6), the background fetch-and-check job, and what the
//! control loop does with its result (duplicate check, KV claims and refmap, supervisor).
//!
//! Control plane. `lp` acks at once; the PAR is fetched, read, checked and extracted in a
//! background task (the checks on a blocking thread), so `ping.hosts` and `get.inv` keep being
//! answered while a large archive downloads. Every refusal is a `provider_start_failed` event
//! with the reason; nothing unchecked is written to disk or spawned.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::process::{binary_path, install_binary};
use super::ProviderSpec;
use crate::auth::par::{host_target, read_par, ProviderClaims};
use crate::builtin::identity::BuiltinProvider;
use crate::control::fetch::{ActorRef, FetchPolicy};
use crate::control::ControlPlane;
use crate::lattice::RefMap;
use crate::wire::ctl::{ack_err, ack_ok, labels_satisfy, StartProviderCommand, StopProviderCommand};

/// A provider request waiting for its archive.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub reference: String,
    pub link_name: String,
    pub annotations: crate::control::actors::Annotations,
    pub config_json: Option<String>,
}

/// An archive fetched, checked and extracted.
pub struct Prepared {
    pub claims: ProviderClaims,
    pub binary_path: std::path::PathBuf,
    /// Whether it came from a registry (then a `REFMAP_` entry is written).
    pub oci: bool,
}

/// A finished background job.
pub struct ProviderJob {
    pub request: ProviderRequest,
    pub result: Result<Prepared, String>,
    /// The span of the start (fetch, checks, policy, launch).
    pub span: tracing::Span,
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ControlPlane {
    /// `lp`: policy and duplicate checks answer in the ack; the rest runs in the background.
    pub(crate) async fn provider_launch(&mut self, cmd: StartProviderCommand) -> Value {
        let request = ProviderRequest {
            reference: cmd.provider_ref,
            link_name: cmd.link_name,
            annotations: cmd.annotations.unwrap_or_default(),
            config_json: cmd.configuration,
        };
        let refused = if request.reference.is_empty() {
            Some("provider_ref must not be empty".to_string())
        } else if self.providers.has(&request.reference, &request.link_name) {
            Some(format!(
                "provider {} with link name {} is already running on this host",
                request.reference, request.link_name
            ))
        } else if let Some(refusal) = crate::builtin::identity::refusal(&request.reference) {
            Some(refusal)
        } else if BuiltinProvider::from_ref(&request.reference).is_some() {
            None
        } else {
            ActorRef::parse(&request.reference, &FetchPolicy::from_config(&self.config))
                .err()
                .map(|e| format!("{e:#}"))
        };
        if let Some(error) = refused {
            self.provider_start_failed(&request, &error).await;
            return ack_err(error);
        }
        self.providers
            .pending
            .insert((request.reference.clone(), request.link_name.clone()));
        let fetcher = self.preparer.fetcher.clone();
        let registries = self.registries.clone();
        let cache_root = self.providers.cache_root.clone();
        let done = self.providers.jobs_tx.clone();
        let policy = self
            .policy
            .as_ref()
            .map(crate::control::policy::plane::PolicyPlane::manager);
        let span = tracing::info_span!(
            "provider_job",
            otel.name = "provider start",
            provider_ref = %request.reference,
            link_name = %request.link_name,
        );
        let job_span = span.clone();
        let job = async move {
            let mut result = prepare(&fetcher, &registries, &request, cache_root).await;
            if let Ok(prepared) = &result {
                let target = crate::control::policy::Target::provider(&prepared.claims);
                let action = crate::control::policy::Action::StartProvider;
                if let Err(denial) = crate::control::policy::plane::gate_start(policy, target, action).await {
                    result = Err(denial);
                }
            }
            let job = ProviderJob {
                request,
                result,
                span: job_span,
            };
            if done.send(job).await.is_err() {
                tracing::warn!("provider job finished after the control plane stopped");
            }
        };
        tokio::spawn(tracing::Instrument::instrument(job, span));
        ack_ok()
    }

    /// `sp`: the supervisor stops the process and emits `provider_stopped`.
    pub(crate) fn provider_stop(&mut self, cmd: StopProviderCommand) -> Value {
        let span = tracing::info_span!(
            "provider_stop",
            otel.name = "provider stop",
            provider_ref = %cmd.provider_ref,
            link_name = %cmd.link_name,
        );
        let _in_span = span.enter();
        let link_name = cmd.link_name.as_str();
        let found = self.providers.running.iter().find(|(_, p)| {
            p.spec.link_name == link_name
                && (p.spec.claims.subject == cmd.provider_ref || p.spec.image_ref == cmd.provider_ref)
                && cmd
                    .contract_id
                    .as_deref()
                    .is_none_or(|c| c.is_empty() || c == p.spec.claims.capid)
        });
        match found.map(|(key, _)| key.clone()) {
            Some(key) => {
                self.providers.request_stop(&key, None);
                ack_ok()
            }
            None => ack_err(format!(
                "provider {} with link name {link_name} is not running on this host",
                cmd.provider_ref
            )),
        }
    }

    /// `auction.provider`: bid when our labels hold every constraint and this provider and
    /// link name are not running (or starting) here (OTP's rules, §5.6).
    pub(crate) fn provider_auction(
        &self,
        provider_ref: String,
        link_name: String,
        constraints: BTreeMap<String, String>,
    ) -> Option<Value> {
        if !labels_satisfy(&self.info.labels, &constraints) {
            tracing::debug!(%provider_ref, "not bidding: labels do not satisfy the constraints");
            return None;
        }
        if self.providers.has(&provider_ref, &link_name) {
            tracing::debug!(%provider_ref, %link_name, "not bidding: already running here");
            return None;
        }
        Some(json!({
            "provider_ref": provider_ref,
            "link_name": link_name,
            "constraints": constraints,
            "host_id": self.info.identity.host_id(),
        }))
    }

    /// Apply a finished job in the control loop.
    pub(crate) async fn on_provider_job(&mut self, job: ProviderJob) {
        let ProviderJob { request, result, .. } = job;
        self.providers
            .pending
            .remove(&(request.reference.clone(), request.link_name.clone()));
        let prepared = match result {
            Ok(p) => p,
            Err(error) => return self.provider_start_failed(&request, &error).await,
        };
        let key = (prepared.claims.subject.clone(), request.link_name.clone());
        if self.providers.running.contains_key(&key) {
            let error = format!(
                "provider {} with link name {} is already running on this host",
                key.0, key.1
            );
            return self.provider_start_failed(&request, &error).await;
        }
        let builtin = BuiltinProvider::from_ref(&request.reference);
        let credentials = match &self.providers.account {
            Some(_) if builtin.is_some() => None,
            Some(account) => match super::credentials::mint(account, &self.config.lattice, &key.0, &key.1) {
                Ok(c) => Some(c),
                Err(e) => return self.provider_start_failed(&request, &format!("{e:#}")).await,
            },
            None => None,
        };
        self.store_provider_metadata(&prepared.claims, &request.reference, prepared.oci)
            .await;
        let spec = ProviderSpec {
            claims: prepared.claims,
            image_ref: request.reference,
            link_name: request.link_name,
            annotations: request.annotations,
            config_json: request.config_json,
            binary_path: prepared.binary_path,
            instance_id: uuid::Uuid::new_v4().to_string(),
            credentials,
            builtin,
        };
        tracing::info!(provider = %spec.tag(), image_ref = %spec.image_ref, "starting provider");
        self.providers.launch(spec);
        if builtin.is_some() {
            self.publish_builtin_routes();
        }
    }

    async fn provider_start_failed(&self, request: &ProviderRequest, error: &str) {
        tracing::warn!(reference = %request.reference, link_name = %request.link_name, error, "provider start failed");
        let data = json!({ "provider_ref": request.reference, "link_name": request.link_name, "error": error });
        self.events.emit("provider_start_failed", data).await;
    }

    /// `CLAIMS_{V…}` (OTP shape) and, for OCI references, `REFMAP_…` (`CLAIMS_` stay after the
    /// provider stops, as in wasmCloud).
    async fn store_provider_metadata(&self, claims: &ProviderClaims, reference: &str, oci: bool) {
        let key = format!("{}{}", crate::lattice::CLAIMS_PREFIX, claims.subject);
        let value: Bytes = serde_json::to_vec(&claims.to_stored_claims().0)
            .unwrap_or_default()
            .into();
        if let Err(e) = self.lattice_store.store.put(&key, value).await {
            tracing::warn!(%key, error = %e, "cannot store provider claims");
        }
        if oci {
            let map = RefMap {
                oci_url: reference.to_string(),
                public_key: claims.subject.clone(),
            };
            let value: Bytes = serde_json::to_vec(&map).unwrap_or_default().into();
            if let Err(e) = self.lattice_store.store.put(map.kv_key(), value).await {
                tracing::warn!(oci_url = %map.oci_url, error = %e, "cannot store refmap");
            }
        }
    }
}

/// Fetch the archive, read and check it for this platform, and extract the binary into the
/// cache (reused when the same bytes are there).
async fn prepare(
    fetcher: &tokio::sync::Mutex<crate::control::fetch::Fetcher>,
    registries: &crate::control::registries::Registries,
    request: &ProviderRequest,
    cache_root: std::path::PathBuf,
) -> Result<Prepared, String> {
    if let Some(builtin) = BuiltinProvider::from_ref(&request.reference) {
        // Nothing to fetch or extract: the shards serve it.
        return Ok(Prepared {
            claims: builtin.claims(),
            binary_path: std::path::PathBuf::new(),
            oci: false,
        });
    }
    let fetched = fetcher
        .lock()
        .await
        .fetch_provider(&request.reference, registries)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let oci = fetched.digest.is_some();
    let reference = request.reference.clone();
    let link_name = request.link_name.clone();
    let now = unix_now_secs();
    tokio::task::spawn_blocking(move || {
        let archive = read_par(&fetched.bytes, &host_target(), now)
            .map_err(|e| format!("provider archive {reference} refused: {e}"))?;
        let claims = archive.claims;
        let path = binary_path(
            &cache_root,
            &claims.subject,
            claims.revision_or_iat(),
            &claims.capid,
            &link_name,
        );
        install_binary(&path, &archive.binary, &archive.binary_hash).map_err(|e| format!("{e:#}"))?;
        Ok(Prepared {
            claims,
            binary_path: path,
            oci,
        })
    })
    .await
    .map_err(|e| format!("provider archive check failed: {e}"))?
}
