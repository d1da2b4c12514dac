//! `start-provider` and `put-link`: what the actor-to-provider scenario needs on the lattice —
//! a capability provider started from a provider archive (`cmd.{host}.lp`, PROTOCOL §5.3),
//! waited for, bounded, until its `provider_started` (or `provider_start_failed`) event and
//! its first `health_check_passed` (§6, §8.4: the provider answers on its subjects, so a link
//! put now reaches it), and a link definition from the calling actor to it (`linkdefs.put`,
//! §5.5). Without the second wait, on a host that forwards each link change once, a link put
//! a moment after `provider_started` can reach the NATS server before the provider's SDK has
//! subscribed to `linkdefs.put`, and every call is then refused "unlinked actor" (seen with
//! wasmbus-rpc 0.15 under shardhost, which since sends such links again after the first
//! passed check).
//!
//! Runs outside the measured path; every wait has a deadline. Works against any 0.x host.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::ctl::{command_acked, connect, remaining_ms, HostTarget, ACK_TIMEOUT_MS, EVENT_TYPE_PREFIX};
use crate::error::LoadtestError;

/// What `start-provider` needs.
#[derive(Debug, Clone)]
pub struct StartProvider {
    pub target: HostTarget,
    /// `file://…` (absolute) or an OCI reference.
    pub provider_ref: String,
    pub link_name: String,
    /// Handed to the provider as `HostData.config_json`.
    pub configuration: Option<String>,
    /// Bound on the whole command.
    pub wait: Duration,
}

/// What one lattice event means for the provider start we are waiting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderVerdict {
    Started {
        public_key: String,
    },
    Failed {
        error: String,
    },
    /// `health_check_passed` of this provider key and link name.
    Healthy {
        public_key: String,
    },
    Unrelated,
}

/// Classify a CloudEvent for the start of `provider_ref` / `link_name` on `host_id`.
pub fn classify_provider_event(event: &Value, provider_ref: &str, link_name: &str, host_id: &str) -> ProviderVerdict {
    let Some(name) = event["type"].as_str().and_then(|t| t.strip_prefix(EVENT_TYPE_PREFIX)) else {
        return ProviderVerdict::Unrelated;
    };
    let data = &event["data"];
    let from_host = event["source"].as_str() == Some(host_id) || data["host_id"].as_str() == Some(host_id);
    if !from_host || data["link_name"].as_str() != Some(link_name) {
        return ProviderVerdict::Unrelated;
    }
    match name {
        "provider_started" if data["image_ref"] == provider_ref => ProviderVerdict::Started {
            public_key: data["public_key"].as_str().unwrap_or_default().to_string(),
        },
        "provider_start_failed" if data["provider_ref"] == provider_ref => ProviderVerdict::Failed {
            error: data["error"].as_str().unwrap_or("no reason given").to_string(),
        },
        "health_check_passed" => ProviderVerdict::Healthy {
            public_key: data["public_key"].as_str().unwrap_or_default().to_string(),
        },
        _ => ProviderVerdict::Unrelated,
    }
}

/// Start the provider and wait for its `provider_started` and first passed health check; its
/// public key (`V…`).
pub async fn start_provider(request: &StartProvider) -> Result<String, LoadtestError> {
    let deadline = Instant::now() + request.wait;
    let (client, host_id, mut events) = request.target.connect_with_events(deadline).await?;
    let command = json!({
        "host_id": host_id,
        "provider_ref": request.provider_ref,
        "link_name": request.link_name,
        "configuration": request.configuration,
    });
    let subject = request.target.subject(&format!("cmd.{host_id}.lp"));
    let ack_wait = Duration::from_millis(ACK_TIMEOUT_MS.min(remaining_ms(deadline)));
    command_acked(&client, &subject, &command, Instant::now() + ack_wait).await?;
    let mut started: Option<String> = None;
    loop {
        let event = events
            .next(deadline, || LoadtestError::Timeout {
                what: match &started {
                    None => format!("provider_started for {} on {host_id}", request.provider_ref),
                    Some(key) => format!("the first health_check_passed of {key} on {host_id}"),
                },
                wait_ms: u64::try_from(request.wait.as_millis()).unwrap_or(u64::MAX),
            })
            .await?;
        match classify_provider_event(&event, &request.provider_ref, &request.link_name, &host_id) {
            ProviderVerdict::Started { public_key } => started = Some(public_key),
            ProviderVerdict::Healthy { public_key } if started.as_ref() == Some(&public_key) => return Ok(public_key),
            ProviderVerdict::Failed { error } => return Err(LoadtestError::StartFailed(error)),
            ProviderVerdict::Healthy { .. } | ProviderVerdict::Unrelated => {}
        }
    }
}

/// A link definition from an actor to a provider.
#[derive(Debug, Clone)]
pub struct PutLink {
    /// The lattice (a link is the lattice's, not a host's: `host_id` is not used).
    pub target: HostTarget,
    pub actor_id: String,
    pub provider_id: String,
    pub contract_id: String,
    pub link_name: String,
    pub values: std::collections::BTreeMap<String, String>,
    pub wait: Duration,
}

/// `linkdefs.put`, acked.
pub async fn put_link(request: &PutLink) -> Result<(), LoadtestError> {
    let deadline = Instant::now() + request.wait;
    let client = connect(&request.target.nats_url).await?;
    let subject = request.target.subject("linkdefs.put");
    let link = json!({
        "actor_id": request.actor_id,
        "provider_id": request.provider_id,
        "contract_id": request.contract_id,
        "link_name": request.link_name,
        "values": request.values,
    });
    command_acked(&client, &subject, &link, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, source: &str, data: Value) -> Value {
        json!({ "type": format!("{EVENT_TYPE_PREFIX}{kind}"), "source": source, "data": data })
    }

    #[test]
    fn only_our_providers_start_or_failure_on_our_host_counts() {
        let ours = |kind: &str, data: Value| {
            classify_provider_event(&event(kind, "NHOST", data), "file:///p.par", "default", "NHOST")
        };
        assert_eq!(
            ours(
                "provider_started",
                json!({ "image_ref": "file:///p.par", "link_name": "default", "public_key": "VKEY" })
            ),
            ProviderVerdict::Started {
                public_key: "VKEY".into()
            }
        );
        assert_eq!(
            ours(
                "provider_start_failed",
                json!({ "provider_ref": "file:///p.par", "link_name": "default", "error": "bad hash" })
            ),
            ProviderVerdict::Failed {
                error: "bad hash".into()
            }
        );
        // Another link name, another archive, another host, another event: not ours.
        for (kind, data) in [
            (
                "provider_started",
                json!({ "image_ref": "file:///p.par", "link_name": "other" }),
            ),
            (
                "provider_started",
                json!({ "image_ref": "file:///q.par", "link_name": "default" }),
            ),
            (
                "actor_started",
                json!({ "image_ref": "file:///p.par", "link_name": "default" }),
            ),
        ] {
            assert_eq!(ours(kind, data), ProviderVerdict::Unrelated);
        }
        let elsewhere = event(
            "provider_started",
            "NOTHER",
            json!({ "image_ref": "file:///p.par", "link_name": "default" }),
        );
        assert_eq!(
            classify_provider_event(&elsewhere, "file:///p.par", "default", "NHOST"),
            ProviderVerdict::Unrelated
        );
    }
}
