//! The policy service's wire shapes (PROTOCOL §17, the 0.82 host's): the JSON request a host
//! sends on `--policy-topic` and the reply (also the shape of a change announced on
//! `--policy-changes-topic`). Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::claims::ActorClaims;
use crate::auth::par::ProviderClaims;
use crate::lattice::StoredClaims;

/// What the host asks permission for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    #[serde(rename = "start_actor")]
    StartActor,
    #[serde(rename = "start_provider")]
    StartProvider,
    #[serde(rename = "perform_invocation")]
    PerformInvocation,
}

impl Action {
    /// The words of a denial: "start actor", "invoke actor".
    pub fn verb(self) -> &'static str {
        match self {
            Action::StartActor => "start actor",
            Action::StartProvider => "start provider",
            Action::PerformInvocation => "invoke actor",
        }
    }
}

/// The caller of an invocation (empty, all null, for starts). Every field is always present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Source {
    #[serde(rename = "publicKey")]
    pub public_key: Option<String>,
    #[serde(rename = "contractId")]
    pub contract_id: Option<String>,
    #[serde(rename = "linkName")]
    pub link_name: Option<String>,
    pub capabilities: Vec<String>,
    pub issuer: Option<String>,
    #[serde(rename = "issuedOn")]
    pub issued_on: Option<String>,
    #[serde(rename = "expiresAt")]
    pub expires_at: Option<u64>,
    /// Computed by the host: a policy service written as an actor has no clock.
    pub expired: bool,
}

impl Source {
    /// An actor calling: its key, capabilities and claims' issuer and times.
    pub fn actor(claims: &ActorClaims, now_secs: u64) -> Source {
        Source {
            public_key: Some(claims.subject.clone()),
            capabilities: claims.caps.clone(),
            issuer: Some(claims.issuer.clone()),
            issued_on: Some(claims.iat_secs.to_string()),
            expires_at: claims.exp_secs,
            expired: claims.exp_secs.is_some_and(|exp| now_secs > exp),
            ..Source::default()
        }
    }

    /// A provider calling under `link_name`.
    pub fn provider(claims: &ProviderClaims, link_name: &str, now_secs: u64) -> Source {
        Source {
            public_key: Some(claims.subject.clone()),
            contract_id: Some(claims.capid.clone()),
            link_name: Some(link_name.to_string()),
            issuer: Some(claims.issuer.clone()),
            issued_on: Some(claims.iat_secs.to_string()),
            expires_at: claims.exp_secs,
            expired: claims.exp_secs.is_some_and(|exp| now_secs > exp),
            ..Source::default()
        }
    }
}

impl Source {
    /// The caller of an invocation from the claims the lattice stores for it (an actor's or a
    /// provider's); `link_name` is the invocation origin's (providers only).
    pub fn stored(claims: &StoredClaims, link_name: Option<&str>, now_secs: u64) -> Source {
        let field = |name: &str| claims.0.get(name).filter(|v| !v.is_empty()).cloned();
        let expires_at = field("exp").and_then(|v| v.parse().ok());
        let contract_id = field("contract_id");
        Source {
            public_key: claims.subject().map(str::to_string),
            link_name: contract_id.as_ref().and(link_name.map(str::to_string)),
            contract_id,
            capabilities: claims.caps().map(str::to_string).collect(),
            issuer: field("iss"),
            issued_on: field("iat"),
            expires_at,
            expired: expires_at.is_some_and(|exp: u64| now_secs > exp),
        }
    }
}

/// The actor invoked or started, or the provider started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    #[serde(rename = "publicKey")]
    pub public_key: Option<String>,
    pub issuer: Option<String>,
    #[serde(rename = "contractId")]
    pub contract_id: Option<String>,
    #[serde(rename = "linkName")]
    pub link_name: Option<String>,
}

impl Target {
    pub fn actor(claims: &ActorClaims) -> Target {
        Target {
            public_key: Some(claims.subject.clone()),
            issuer: Some(claims.issuer.clone()),
            ..Target::default()
        }
    }

    /// The invoked actor, from the claims the lattice stores for it.
    pub fn stored(claims: &StoredClaims) -> Target {
        Target {
            public_key: claims.subject().map(str::to_string),
            issuer: claims.0.get("iss").filter(|v| !v.is_empty()).cloned(),
            ..Target::default()
        }
    }

    /// A provider's claims carry no link name, so none is sent (as 0.82 does).
    pub fn provider(claims: &ProviderClaims) -> Target {
        Target {
            public_key: Some(claims.subject.clone()),
            issuer: Some(claims.issuer.clone()),
            contract_id: Some(claims.capid.clone()),
            link_name: None,
        }
    }
}

/// The host asking.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    #[serde(rename = "publicKey")]
    pub public_key: String,
    #[serde(rename = "latticeId")]
    pub lattice_id: String,
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "clusterIssuers")]
    pub cluster_issuers: Vec<String>,
}

/// One request on the policy topic.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    pub source: &'a Source,
    pub target: &'a Target,
    pub host: &'a HostInfo,
    pub action: Action,
}

/// The service's answer, and a change announced on the changes topic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Response {
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub permitted: bool,
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_request_has_every_field_of_the_0_82_shape() {
        let host = HostInfo {
            public_key: "NHOST".into(),
            lattice_id: "default".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            cluster_issuers: vec!["CISSUER".into()],
        };
        let target = Target {
            public_key: Some("MACTOR".into()),
            issuer: Some("AISSUER".into()),
            ..Target::default()
        };
        let request = Request {
            request_id: "r1",
            source: &Source::default(),
            target: &target,
            host: &host,
            action: Action::StartActor,
        };
        let json: serde_json::Value = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "requestId": "r1",
                "source": {"publicKey": null, "contractId": null, "linkName": null, "capabilities": [],
                           "issuer": null, "issuedOn": null, "expiresAt": null, "expired": false},
                "target": {"publicKey": "MACTOR", "issuer": "AISSUER", "contractId": null, "linkName": null},
                "host": {"publicKey": "NHOST", "latticeId": "default", "labels": {"zone": "a"},
                         "clusterIssuers": ["CISSUER"]},
                "action": "start_actor"
            })
        );
    }

    #[test]
    fn a_reply_without_a_message_parses_and_garbage_does_not() {
        let reply: Response = serde_json::from_str(r#"{"requestId":"r","permitted":true}"#).unwrap();
        assert!(reply.permitted && reply.message.is_none());
        assert!(serde_json::from_str::<Response>(r#"{"permitted":"yes"}"#).is_err());
    }
}
