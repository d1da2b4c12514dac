//! The control plane's side of the policy service: asking it for the shards (a
//! [`ShardReport::PolicyQuery`] becomes one request per undecided pair, its answer a
//! [`ShardCommand::Policy`] for every shard), carrying announced changes to the shards, and
//! gating actor and provider starts.
//!
//! [`ShardReport::PolicyQuery`]: crate::plane::ShardReport::PolicyQuery

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;

use super::{now_secs, Action, Decision, HostInfo, PolicyManager, Source, Target};
use crate::config::PolicySettings;
use crate::plane::{PolicyPair, PolicyVerdict, ShardCommand};

/// Verdicts waiting to be handed to the shards.
const VERDICT_CHANNEL_CAPACITY: usize = 1_024;

/// The policy manager and the verdicts on their way to the shards.
pub struct PolicyPlane {
    manager: Arc<PolicyManager>,
    verdicts_tx: tokio::sync::mpsc::Sender<(PolicyPair, PolicyVerdict)>,
    verdicts_rx: tokio::sync::mpsc::Receiver<(PolicyPair, PolicyVerdict)>,
    /// Pairs asked of the service and not answered yet (shards asking again wait for the same
    /// answer).
    asking: HashSet<PolicyPair>,
}

impl PolicyPlane {
    /// The manager for `settings`, subscribed to its changes topic if one is given.
    pub async fn start(nats: &async_nats::Client, settings: &PolicySettings, host: HostInfo) -> Result<PolicyPlane> {
        let manager = Arc::new(PolicyManager::new(
            nats.clone(),
            settings.topic.clone(),
            settings.timeout,
            host,
        ));
        let (verdicts_tx, verdicts_rx) = tokio::sync::mpsc::channel(VERDICT_CHANNEL_CAPACITY);
        if let Some(topic) = &settings.changes_topic {
            let changes = nats
                .subscribe(topic.clone())
                .await
                .with_context(|| format!("cannot subscribe to the policy changes topic {topic}"))?;
            tokio::spawn(follow_changes(changes, Arc::clone(&manager), verdicts_tx.clone()));
        }
        tracing::info!(topic = %settings.topic, changes = ?settings.changes_topic, timeout_ms = settings.timeout.as_millis() as u64,
            "policy service: starts and invocations are decided by it (denied when it does not answer)");
        Ok(PolicyPlane {
            manager,
            verdicts_tx,
            verdicts_rx,
            asking: HashSet::new(),
        })
    }

    pub fn manager(&self) -> Arc<PolicyManager> {
        Arc::clone(&self.manager)
    }

    /// The next verdict for the shards.
    pub async fn next_verdict(&mut self) -> Option<(PolicyPair, PolicyVerdict)> {
        let next = self.verdicts_rx.recv().await;
        if let Some((pair, _)) = &next {
            self.asking.remove(pair);
        }
        next
    }

    /// Ask for `pair` (unless already asking) with what the host knows of both ends; the answer
    /// comes back through [`Self::next_verdict`].
    pub fn ask(&mut self, pair: PolicyPair, source: Option<Source>, target: Option<Target>) {
        if !self.asking.insert(pair.clone()) {
            return;
        }
        let (manager, verdicts) = (Arc::clone(&self.manager), self.verdicts_tx.clone());
        tokio::spawn(async move {
            let verdict = match (source, target) {
                (Some(source), Some(target)) => {
                    let decision = manager.evaluate(source, target, Action::PerformInvocation).await;
                    verdict_of(&decision, decision.from_service)
                }
                // 0.82 fails an invocation whose ends' claims it does not know.
                (source, _) => PolicyVerdict {
                    denial: Some(Arc::from(format!(
                        "Policy denied request to invoke actor {}: the claims of {} are unknown to this host",
                        pair.target,
                        if source.is_none() { &pair.origin } else { &pair.target }
                    ))),
                    lasting: false,
                },
            };
            let _ = verdicts.send((pair, verdict)).await;
        });
    }
}

/// The shards' form of a decision.
fn verdict_of(decision: &Decision, lasting: bool) -> PolicyVerdict {
    PolicyVerdict {
        denial: (!decision.permitted).then(|| Arc::from(decision.denial(Action::PerformInvocation))),
        lasting,
    }
}

/// Apply each change announced on the changes topic; invocation decisions go to the shards.
async fn follow_changes(
    mut changes: async_nats::Subscriber,
    manager: Arc<PolicyManager>,
    verdicts: tokio::sync::mpsc::Sender<(PolicyPair, PolicyVerdict)>,
) {
    while let Some(message) = changes.next().await {
        match manager.apply_change(&message.payload) {
            Ok(Some((key, decision))) => {
                tracing::info!(request_id = %decision.request_id, permitted = decision.permitted, action = ?key.action, "policy decision changed");
                if key.action != Action::PerformInvocation {
                    continue;
                }
                let (Some(origin), Some(target)) = (key.source.public_key, key.target.public_key) else {
                    continue;
                };
                let pair = PolicyPair {
                    origin,
                    link_name: key.source.link_name.unwrap_or_default(),
                    target,
                };
                if verdicts.send((pair, verdict_of(&decision, true))).await.is_err() {
                    return;
                }
            }
            Ok(None) => tracing::warn!("policy change for a request this host did not make: ignored"),
            Err(error) => tracing::warn!(%error, "policy change ignored"),
        }
    }
}

impl super::super::ControlPlane {
    /// A shard holds invocations of `pair`: ask the service with the claims of both ends.
    pub(in crate::control) fn on_policy_query(&mut self, pair: PolicyPair) {
        let now = now_secs();
        // The full claims of an actor running here; else what the lattice stores (which may
        // lack the issue time).
        let source = match self.actors.actors.get(&pair.origin) {
            Some(actor) => Some(Source::actor(&actor.claims, now)),
            None => self
                .state
                .claims
                .get(&pair.origin)
                .map(|claims| Source::stored(claims, Some(&pair.link_name), now)),
        };
        let target = match self.actors.actors.get(&pair.target) {
            Some(actor) => Some(Target::actor(&actor.claims)),
            None => self.state.claims.get(&pair.target).map(Target::stored),
        };
        match &mut self.policy {
            Some(policy) => policy.ask(pair, source, target),
            // Shards ask only when a policy service is configured; answer anyway.
            None => self.on_policy_verdict(
                pair,
                PolicyVerdict {
                    denial: None,
                    lasting: true,
                },
            ),
        }
    }

    /// Hand a verdict to every shard.
    pub(in crate::control) fn on_policy_verdict(&mut self, pair: PolicyPair, verdict: PolicyVerdict) {
        if let Err(error) = self.shards.broadcast(&ShardCommand::Policy { pair, verdict }) {
            tracing::error!(%error, "cannot hand a policy verdict to a shard");
        }
    }
}

/// The host as the policy service sees it.
pub fn host_info(info: &crate::control::heartbeat::HostInfo) -> HostInfo {
    HostInfo {
        public_key: info.identity.host_id(),
        lattice_id: info.lattice.clone(),
        labels: info.labels.clone(),
        cluster_issuers: info.identity.cluster_issuers.iter().cloned().collect(),
    }
}

/// The next verdict when a policy service is configured; never otherwise.
pub async fn next_verdict(policy: &mut Option<PolicyPlane>) -> Option<(PolicyPair, PolicyVerdict)> {
    match policy {
        Some(policy) => policy.next_verdict().await,
        None => std::future::pending().await,
    }
}

/// Whether `source` may start `target` (`action` a start); `Err` is the denial.
pub async fn gate_start(manager: Option<Arc<PolicyManager>>, target: Target, action: Action) -> Result<(), String> {
    let Some(manager) = manager else { return Ok(()) };
    let decision = manager.evaluate(Source::default(), target, action).await;
    if decision.permitted {
        Ok(())
    } else {
        Err(decision.denial(action))
    }
}
