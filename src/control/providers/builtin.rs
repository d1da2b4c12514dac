//! Built-in providers on the control plane (issue 20): what wash, wadm and the
//! control-interface client see of a `wasmcloud+builtin://` provider is what they see of a PAR
//! provider — `provider_started`/`provider_stopped`, health answers on `…{link}.health` and the
//! health events, inventory and heartbeat entries (the supervisor's [`ProviderReport`]s feed
//! those), `CLAIMS_V…` in the lattice bucket, auctions — with no process: the shards serve it.
//!
//! [`supervise`] is the built-in's counterpart of `supervisor::supervise`: one task per
//! (built-in, link name). Its health is the shards' listeners: healthy while none failed to
//! listen ([`BuiltinHealth`], fed from the shards' `HttpListen` reports). Control plane (tokio).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::health::{self, CheckOutcome, HealthCheckResponse, HEALTH_FIRST_CHECK_MS_MAX};
use super::supervisor::{ReportKind, StopRequest, SupervisorContext};
use super::ProviderSpec;

/// What the shards reported about the built-in HTTP server's listeners: address → the last
/// failure to listen there (a shard that then listens clears it).
#[derive(Debug, Default)]
pub struct BuiltinHealth {
    listen_errors: Mutex<BTreeMap<SocketAddr, String>>,
}

impl BuiltinHealth {
    /// A shard's `HttpListen` report.
    pub fn listened(&self, address: SocketAddr, error: Option<String>) {
        let mut errors = self
            .listen_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            Some(error) => {
                errors.insert(address, error);
            }
            None => {
                errors.remove(&address);
            }
        }
    }

    /// Forget addresses no route uses any more.
    pub fn retain(&self, addresses: &[SocketAddr]) {
        let mut errors = self
            .listen_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        errors.retain(|address, _| addresses.contains(address));
    }

    /// The health reply, as a provider would send it.
    pub fn check(&self) -> HealthCheckResponse {
        let errors = self
            .listen_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.is_empty() {
            return HealthCheckResponse {
                healthy: true,
                message: None,
            };
        }
        let message = errors
            .iter()
            .map(|(address, error)| format!("cannot listen on {address}: {error}"))
            .collect::<Vec<_>>()
            .join("; ");
        HealthCheckResponse {
            healthy: false,
            message: Some(message),
        }
    }
}

/// Why a link put for `builtin` is refused: the wrong contract, or values `read` refuses
/// (`None`: the link is not the built-in's, or it is fine).
pub fn link_refusal<T>(
    link: &crate::lattice::LinkDefinition,
    builtin: crate::builtin::identity::BuiltinProvider,
    what: &str,
    read: impl FnOnce(&BTreeMap<String, String>) -> Result<T, String>,
) -> Option<String> {
    if link.provider_id != builtin.key() {
        return None;
    }
    if link.contract_id != builtin.contract_id() {
        return Some(format!(
            "the built-in {what} serves {}, not {}",
            builtin.contract_id(),
            link.contract_id
        ));
    }
    read(&link.values)
        .err()
        .map(|reason| format!("link values refused by the built-in {what}: {reason}"))
}

/// msgpack of a health reply (wasmbus-rpc's named map).
fn encode_health(response: &HealthCheckResponse) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Reply<'a> {
        healthy: bool,
        message: &'a Option<String>,
    }
    rmp_serde::to_vec_named(&Reply {
        healthy: response.healthy,
        message: &response.message,
    })
    .unwrap_or_default()
}

/// Run one built-in provider instance until it is stopped: `provider_started`, then health
/// answers and events every `--provider-health-interval` (first within 5 s), then
/// `provider_stopped`.
pub async fn supervise(
    ctx: SupervisorContext,
    spec: Arc<ProviderSpec>,
    mut stop_rx: tokio::sync::mpsc::Receiver<StopRequest>,
    health: Arc<BuiltinHealth>,
) {
    let subject = ctx.subject(&spec, "health");
    let mut requests = match ctx.nats.subscribe(subject.clone()).await {
        Ok(sub) => Some(sub),
        Err(e) => {
            tracing::warn!(provider = %spec.tag(), %subject, error = %e, "built-in provider cannot answer health requests");
            None
        }
    };
    tracing::info!(provider = %spec.tag(), reference = %spec.image_ref, "built-in provider started (served by the shards)");
    ctx.report(&spec, ReportKind::Running { pid: 0, restarts: 0 }).await;
    ctx.events
        .emit("provider_started", spec.started_event(&ctx.host.host_id))
        .await;
    let first = ctx
        .health_interval
        .min(Duration::from_millis(HEALTH_FIRST_CHECK_MS_MAX));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first, ctx.health_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = false;
    let request = loop {
        let asked = async {
            match requests.as_mut() {
                Some(sub) => sub.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(request) = stop_rx.recv() => break request,
            Some(message) = asked => {
                if let Some(reply) = message.reply {
                    let body = encode_health(&health.check());
                    if let Err(e) = ctx.nats.publish(reply, body.into()).await {
                        tracing::debug!(provider = %spec.tag(), error = %e, "cannot answer a health request");
                    }
                }
            }
            _ = ticks.tick() => {
                let outcome = CheckOutcome::Reply(health.check());
                if let Some(problem) = outcome.problem() {
                    tracing::warn!(provider = %spec.tag(), %problem, "built-in provider health check failed");
                }
                let (event, now_healthy) = health::transition(healthy, &outcome);
                healthy = now_healthy;
                ctx.report(&spec, ReportKind::Health { healthy }).await;
                ctx.events.emit(event, ctx.entity(&spec)).await;
            }
        }
    };
    if let Some(mut sub) = requests {
        let _ = sub.unsubscribe().await;
    }
    let mut data = ctx.entity(&spec);
    data["instance_id"] = json!(spec.instance_id);
    data["annotations"] = json!(spec.annotations);
    data["reason"] = json!("normal");
    ctx.events.emit("provider_stopped", data).await;
    ctx.report(&spec, ReportKind::Gone).await;
    if let Some(done) = request.done {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_listeners_and_encodes_as_the_sdk_reads_it() {
        let health = BuiltinHealth::default();
        assert!(health.check().healthy);
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        health.listened(addr, Some("Address in use".into()));
        let bad = health.check();
        assert!(!bad.healthy);
        assert!(bad
            .message
            .as_deref()
            .unwrap()
            .contains("127.0.0.1:8080: Address in use"));
        let outcome = CheckOutcome::from_reply(&encode_health(&bad));
        assert_eq!(outcome, CheckOutcome::Reply(bad));
        health.retain(&[]);
        assert!(health.check().healthy);
    }
}
