//! The policy service (`--policy-topic`; PROTOCOL §17, the 0.82 host's protocol): before an
//! actor start, a provider start and an invocation the host asks the service and **fails
//! closed** — no reply within `--policy-timeout-ms`, a transport error or a reply that is not a
//! decision denies, with the reason.
//!
//! Decisions are cached per (source, target, action) for the host's lifetime; denials from
//! errors and timeouts are not cached, so the next request asks again. A decision announced on
//! `--policy-changes-topic` (the reply's shape) replaces the cached decision of the request
//! with that id. Control plane (tokio): the shards never wait on this module for a decision
//! they have seen — invocation decisions reach them as a share-nothing table
//! ([`crate::plane::PolicyVerdict`]), see `control/policy_plane.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub mod plane;
pub mod request;

pub use request::{Action, HostInfo, Response, Source, Target};

/// Default `--policy-timeout-ms` (0.82's).
pub const POLICY_TIMEOUT_MS_DEFAULT: u64 = 1_000;

/// What a decision is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub source: Source,
    pub target: Target,
    pub action: Action,
}

/// A decision: from the service, or a denial the host made because the service did not give
/// one (then `from_service` is false and nothing is cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub request_id: String,
    pub permitted: bool,
    pub message: Option<String>,
    pub from_service: bool,
}

impl Decision {
    /// The error a denied action is answered with, starting "Policy denied".
    pub fn denial(&self, action: Action) -> String {
        format!(
            "Policy denied request to {} `{}`: {}",
            action.verb(),
            self.request_id,
            self.message.as_deref().unwrap_or("the policy service gave no reason")
        )
    }
}

#[derive(Default)]
struct Cache {
    decisions: HashMap<Key, Decision>,
    /// Request id → the key its decision is cached under (for the changes topic).
    requests: HashMap<String, Key>,
}

/// Asks the policy service and keeps its decisions.
pub struct PolicyManager {
    nats: async_nats::Client,
    topic: String,
    timeout: Duration,
    host: HostInfo,
    cache: Mutex<Cache>,
}

impl PolicyManager {
    pub fn new(nats: async_nats::Client, topic: String, timeout: Duration, host: HostInfo) -> PolicyManager {
        PolicyManager {
            nats,
            topic,
            timeout,
            host,
            cache: Mutex::default(),
        }
    }

    /// The topic asked.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn cached(&self, key: &Key) -> Option<Decision> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.decisions.get(key).cloned()
    }

    fn remember(&self, key: Key, decision: &Decision) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.requests.insert(decision.request_id.clone(), key.clone());
        cache.decisions.insert(key, decision.clone());
    }

    /// The decision for `action` on `target` by `source`: the cached one, or the service's
    /// answer (cached), or a denial saying why there is none (not cached).
    pub async fn evaluate(&self, source: Source, target: Target, action: Action) -> Decision {
        let key = Key { source, target, action };
        if let Some(decision) = self.cached(&key) {
            return decision;
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        match self.ask(&request_id, &key).await {
            Ok(reply) => {
                let decision = Decision {
                    request_id: reply.request_id,
                    permitted: reply.permitted,
                    message: reply.message,
                    from_service: true,
                };
                self.remember(key, &decision);
                decision
            }
            Err(reason) => {
                tracing::warn!(topic = %self.topic, action = ?action, %reason, "policy service gave no decision: denied");
                Decision {
                    request_id,
                    permitted: false,
                    message: Some(reason),
                    from_service: false,
                }
            }
        }
    }

    async fn ask(&self, request_id: &str, key: &Key) -> Result<Response, String> {
        let request = request::Request {
            request_id,
            source: &key.source,
            target: &key.target,
            host: &self.host,
            action: key.action,
        };
        let payload = serde_json::to_vec(&request).map_err(|e| format!("cannot encode the policy request: {e}"))?;
        let nats_request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(self.timeout));
        let reply = self
            .nats
            .send_request(self.topic.clone(), nats_request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::client::RequestErrorKind::TimedOut => format!(
                    "the policy service on {} did not answer within {} ms",
                    self.topic,
                    self.timeout.as_millis()
                ),
                async_nats::client::RequestErrorKind::NoResponders => {
                    format!("no policy service answers on {}", self.topic)
                }
                _ => format!("the policy request on {} failed: {e}", self.topic),
            })?;
        serde_json::from_slice::<Response>(&reply.payload)
            .map_err(|e| format!("the policy service's reply is not a decision ({e})"))
    }

    /// Apply a change announced on the changes topic: the cached decision of its request is
    /// replaced. Returns the key and the new decision, or `None` for a request this host never
    /// made (ignored, as 0.82 does).
    pub fn apply_change(&self, payload: &[u8]) -> Result<Option<(Key, Decision)>, String> {
        let change: Response =
            serde_json::from_slice(payload).map_err(|e| format!("a policy change that is not a decision: {e}"))?;
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(key) = cache.requests.get(&change.request_id).cloned() else {
            return Ok(None);
        };
        let decision = Decision {
            request_id: change.request_id,
            permitted: change.permitted,
            message: change.message,
            from_service: true,
        };
        cache.decisions.insert(key.clone(), decision.clone());
        Ok(Some((key, decision)))
    }
}

/// Seconds since the Unix epoch (for `expired`).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
