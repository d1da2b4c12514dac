//! One task per provider instance: it spawns the process, health-checks it, restarts it with
//! exponential backoff when it exits on its own, and stops it on request (shutdown request,
//! `--provider-shutdown-delay`, then SIGKILL of its process group).
//!
//! Control plane (tokio). The task owns the process; the control loop only hears about it
//! through [`ProviderReport`]s and talks to it through a [`StopRequest`]. Events are emitted here,
//! where the facts are known. A crash loop costs this task's timers only: it never blocks the
//! control loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::health::{self, CheckOutcome};
use super::hostdata::{HostDataBase, InstanceData};
use super::process::{self, ProviderProcess};
use super::ProviderSpec;
use crate::control::events::Events;
use crate::lattice::LinkDefinition;

/// Restarts tried after the provider exits on its own before the host gives up.
pub const PROVIDER_RESTARTS_MAX: u32 = 5;
/// Wait before the first restart; doubled for each further one.
pub const PROVIDER_RESTART_BACKOFF_MS_BASE: u64 = 250;
/// Longest wait between two restarts.
pub const PROVIDER_RESTART_BACKOFF_MS_MAX: u64 = 30_000;
/// A provider that ran this long before exiting starts its restart count afresh.
pub const PROVIDER_STABLE_RUN_MS: u64 = 60_000;
/// Shortest wait for the provider's reply to the shutdown request.
pub const PROVIDER_SHUTDOWN_REPLY_MS_MIN: u64 = 100;

/// What the supervisor tells the control loop.
#[derive(Debug, Clone)]
pub struct ProviderReport {
    pub provider_key: String,
    pub link_name: String,
    pub kind: ReportKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportKind {
    /// The process runs (first start or a restart); `restarts` so far.
    Running { pid: u32, restarts: u32 },
    /// A health check finished.
    Health { healthy: bool },
    /// The process exited on its own and will be restarted.
    Restarting { attempt: u32 },
    /// The supervisor is done: the provider is gone from this host.
    Gone,
}

/// Asks the supervisor to stop the provider; `done` fires once it is gone.
pub struct StopRequest {
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What every supervisor shares.
#[derive(Clone)]
pub struct SupervisorContext {
    /// The provider RPC connection: health and shutdown requests.
    pub nats: async_nats::Client,
    pub events: Events,
    pub host: Arc<HostDataBase>,
    /// Every link in the lattice (a provider's HostData gets those naming it).
    pub links: tokio::sync::watch::Receiver<Arc<Vec<LinkDefinition>>>,
    pub health_interval: Duration,
    pub rpc_timeout: Duration,
    pub shutdown_delay: Duration,
    pub reports: tokio::sync::mpsc::Sender<ProviderReport>,
}

/// Backoff before restart `attempt` (1-based).
pub fn restart_backoff(attempt: u32) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(20);
    Duration::from_millis(
        PROVIDER_RESTART_BACKOFF_MS_BASE
            .saturating_mul(factor)
            .min(PROVIDER_RESTART_BACKOFF_MS_MAX),
    )
}

/// How one run of the process ended.
enum RunEnd {
    Exited(String),
    StopRequested(StopRequest),
}

impl SupervisorContext {
    pub(super) fn subject(&self, spec: &ProviderSpec, suffix: &str) -> String {
        format!(
            "wasmbus.rpc.{}.{}.{}.{suffix}",
            self.host.lattice_rpc_prefix, spec.claims.subject, spec.link_name
        )
    }

    pub(super) async fn report(&self, spec: &ProviderSpec, kind: ReportKind) {
        let report = ProviderReport {
            provider_key: spec.claims.subject.clone(),
            link_name: spec.link_name.clone(),
            kind,
        };
        if self.reports.send(report).await.is_err() {
            tracing::debug!("provider report after the control plane stopped");
        }
    }

    pub(super) fn entity(&self, spec: &ProviderSpec) -> Value {
        json!({
            "public_key": spec.claims.subject,
            "contract_id": spec.claims.capid,
            "link_name": spec.link_name,
            "host_id": self.host.host_id,
        })
    }

    /// The links of this provider and link name, as HostData carries them.
    fn links_for(&self, spec: &ProviderSpec) -> Vec<LinkDefinition> {
        self.links
            .borrow()
            .iter()
            .filter(|l| l.provider_id == spec.claims.subject && l.link_name == spec.link_name)
            .cloned()
            .collect()
    }

    /// Spawn the process with its HostData; the process and the links HostData carried.
    async fn start_process(&self, spec: &ProviderSpec) -> anyhow::Result<(ProviderProcess, Vec<LinkDefinition>)> {
        let links = self.links_for(spec);
        let data = self.host.for_instance(InstanceData {
            provider_key: &spec.claims.subject,
            link_name: &spec.link_name,
            instance_id: &spec.instance_id,
            config_json: spec.config_json.as_deref(),
            links: &links,
            user_jwt: spec.credentials.as_ref().map(|c| c.jwt.as_str()),
            user_seed: spec.credentials.as_ref().map(|c| c.seed.as_str()),
        });
        let line = data.to_stdin_line()?;
        let process = process::spawn(&spec.binary_path, &line, &spec.tag()).await?;
        Ok((process, links))
    }
}

/// Run one provider instance until it is stopped or given up. Emits `provider_started` when
/// the process is up (and again after each restart), `provider_start_failed` if it cannot be
/// spawned at all, and `provider_stopped` at the end.
pub async fn supervise(
    ctx: SupervisorContext,
    spec: Arc<ProviderSpec>,
    mut stop_rx: tokio::sync::mpsc::Receiver<StopRequest>,
) {
    let mut restarts: u32 = 0;
    let mut attempt: u32 = 0;
    loop {
        let (mut proc, handed) = match ctx.start_process(&spec).await {
            Ok(started) => started,
            Err(e) if restarts == 0 => {
                let error = format!("{e:#}");
                tracing::error!(provider = %spec.tag(), %error, "provider start failed");
                let data = json!({ "provider_ref": spec.image_ref, "link_name": spec.link_name, "error": error });
                ctx.events.emit("provider_start_failed", data).await;
                ctx.report(&spec, ReportKind::Gone).await;
                return;
            }
            Err(e) => {
                let why = format!("restart failed: {e:#}");
                return give_up(&ctx, &spec, &why).await;
            }
        };
        tracing::info!(provider = %spec.tag(), pid = proc.pid, restarts, "provider process started");
        ctx.report(
            &spec,
            ReportKind::Running {
                pid: proc.pid,
                restarts,
            },
        )
        .await;
        ctx.events
            .emit("provider_started", spec.started_event(&ctx.host.host_id))
            .await;
        let started = Instant::now();
        let health = tokio::spawn(health_loop(ctx.clone(), Arc::clone(&spec), handed));
        let end = tokio::select! {
            status = proc.child.wait() => RunEnd::Exited(match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            }),
            Some(request) = stop_rx.recv() => RunEnd::StopRequested(request),
        };
        health.abort();
        match end {
            RunEnd::StopRequested(request) => {
                stop_process(&ctx, &spec, &mut proc).await;
                return stopped(&ctx, &spec, "normal", request).await;
            }
            RunEnd::Exited(status) => {
                proc.kill_group();
                if started.elapsed() >= Duration::from_millis(PROVIDER_STABLE_RUN_MS) {
                    attempt = 0;
                }
                attempt += 1;
                if attempt > PROVIDER_RESTARTS_MAX {
                    let why = format!("exited ({status}); gave up after {PROVIDER_RESTARTS_MAX} restarts");
                    return give_up(&ctx, &spec, &why).await;
                }
                let backoff = restart_backoff(attempt);
                tracing::warn!(provider = %spec.tag(), %status, attempt, ?backoff, "provider exited on its own; restarting");
                ctx.report(&spec, ReportKind::Restarting { attempt }).await;
                let mut data = ctx.entity(&spec);
                data["instance_id"] = json!(spec.instance_id);
                data["exit_status"] = json!(status);
                data["attempt"] = json!(attempt);
                data["attempts_max"] = json!(PROVIDER_RESTARTS_MAX);
                data["backoff_ms"] = json!(backoff.as_millis() as u64);
                ctx.events.emit("provider_restarting", data).await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    Some(request) = stop_rx.recv() => return stopped(&ctx, &spec, "normal", request).await,
                }
                restarts += 1;
            }
        }
    }
}

async fn give_up(ctx: &SupervisorContext, spec: &ProviderSpec, why: &str) {
    tracing::error!(provider = %spec.tag(), reason = why, "provider given up");
    stopped(ctx, spec, why, StopRequest { done: None }).await;
}

async fn stopped(ctx: &SupervisorContext, spec: &ProviderSpec, reason: &str, request: StopRequest) {
    let mut data = ctx.entity(spec);
    data["instance_id"] = json!(spec.instance_id);
    data["annotations"] = json!(spec.annotations);
    data["reason"] = json!(reason);
    ctx.events.emit("provider_stopped", data).await;
    ctx.report(spec, ReportKind::Gone).await;
    if let Some(done) = request.done {
        let _ = done.send(());
    }
}

/// Shutdown request (PROTOCOL §8.5), a grace period for the process to exit, then SIGKILL of
/// its process group (which also ends anything the provider started).
async fn stop_process(ctx: &SupervisorContext, spec: &ProviderSpec, proc: &mut ProviderProcess) {
    let body: Bytes = serde_json::to_vec(&json!({ "host_id": ctx.host.host_id }))
        .unwrap_or_default()
        .into();
    let reply_wait = ctx
        .shutdown_delay
        .max(Duration::from_millis(PROVIDER_SHUTDOWN_REPLY_MS_MIN));
    let subject = ctx.subject(spec, "shutdown");
    match tokio::time::timeout(reply_wait, ctx.nats.request(subject, body)).await {
        Ok(Ok(_)) => tracing::debug!(provider = %spec.tag(), "provider acknowledged shutdown"),
        Ok(Err(e)) => tracing::warn!(provider = %spec.tag(), error = %e, "provider shutdown request failed"),
        Err(_) => tracing::warn!(provider = %spec.tag(), ?reply_wait, "provider did not answer the shutdown request"),
    }
    if tokio::time::timeout(ctx.shutdown_delay, proc.child.wait())
        .await
        .is_err()
    {
        tracing::info!(provider = %spec.tag(), "provider still running after the shutdown delay; killing it");
    }
    proc.kill_group();
    let _ = proc.child.wait().await;
}

/// Link changes the provider may have missed while it was starting: between its spawn (its
/// HostData, `handed`) and its SDK's subscription to `linkdefs.put|del`, the control plane's
/// forwards reach NATS with nobody listening, and a wasmbus-rpc provider then refuses the
/// actor's calls as "unlinked actor". Once the first health check passes the provider is
/// subscribed: links put since the spawn are sent again (`put`), links deleted since are
/// deleted again (`del`). The SDK ignores a put it already has.
async fn resend_missed_links(ctx: &SupervisorContext, spec: &ProviderSpec, handed: &[LinkDefinition]) {
    let now = ctx.links_for(spec);
    let put = now.iter().filter(|l| !handed.contains(l));
    let deleted = handed.iter().filter(|l| !now.contains(l));
    let mut sent = 0;
    for (op, link) in put
        .map(|l| ("linkdefs.put", l))
        .chain(deleted.map(|l| ("linkdefs.del", l)))
    {
        let subject = ctx.subject(spec, op);
        match rmp_serde::to_vec_named(link) {
            Ok(body) => match ctx.nats.publish(subject.clone(), body.into()).await {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(provider = %spec.tag(), %subject, error = %e, "cannot resend a link change"),
            },
            Err(e) => tracing::error!(provider = %spec.tag(), error = %e, "cannot encode a link definition"),
        }
    }
    if sent > 0 {
        tracing::info!(provider = %spec.tag(), sent, "link changes since the start sent again now that the provider answers");
    }
}

/// Health checks for one run of the process: first within 5 s, then every interval; events on
/// change (§8.4). After the first passed check, the link changes it may have missed while it
/// started ([`resend_missed_links`]). Aborted when the process ends.
async fn health_loop(ctx: SupervisorContext, spec: Arc<ProviderSpec>, handed: Vec<LinkDefinition>) {
    let mut missed_links_sent = false;
    let first = ctx
        .health_interval
        .min(Duration::from_millis(health::HEALTH_FIRST_CHECK_MS_MAX));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first, ctx.health_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = false;
    let subject = ctx.subject(&spec, "health");
    loop {
        ticks.tick().await;
        let outcome = match tokio::time::timeout(ctx.rpc_timeout, ctx.nats.request(subject.clone(), Bytes::new())).await
        {
            Ok(Ok(message)) => CheckOutcome::from_reply(&message.payload),
            Ok(Err(e)) => CheckOutcome::NoReply(format!("health request failed: {e}")),
            Err(_) => CheckOutcome::NoReply(format!("no health reply within {:?}", ctx.rpc_timeout)),
        };
        let (event, now_healthy) = health::transition(healthy, &outcome);
        if let Some(problem) = outcome.problem() {
            tracing::warn!(provider = %spec.tag(), %problem, "provider health check failed");
        }
        healthy = now_healthy;
        if healthy && !missed_links_sent {
            resend_missed_links(&ctx, &spec, &handed).await;
            missed_links_sent = true;
        }
        ctx.report(&spec, ReportKind::Health { healthy }).await;
        ctx.events.emit(event, ctx.entity(&spec)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(restart_backoff(1), Duration::from_millis(250));
        assert_eq!(restart_backoff(2), Duration::from_millis(500));
        assert_eq!(restart_backoff(5), Duration::from_millis(4_000));
        assert_eq!(
            restart_backoff(40),
            Duration::from_millis(PROVIDER_RESTART_BACKOFF_MS_MAX)
        );
    }
}
