//! [`RoutingSnapshot`]: the immutable tables a shard consults while serving invocations —
//! links, capability claims, call aliases and the trusted cluster issuers.
//!
//! Built by the control plane from its [`LatticeState`](crate::lattice::LatticeState) whenever
//! that changes, shared with every shard as an `Arc`, and swapped in by a shard between
//! batches. Lookups are hash lookups; nothing here allocates once built.

use std::collections::{HashMap, HashSet};

use crate::lattice::LatticeState;

/// Where an actor's call on (contract, link name) goes: the provider's public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkKey {
    pub actor_id: String,
    pub contract_id: String,
    pub link_name: String,
}

/// One version of the lattice routing tables.
#[derive(Debug, Clone, Default)]
pub struct RoutingSnapshot {
    /// Increases by one with every snapshot the control plane builds.
    pub version: u64,
    /// (actor, contract, link name) → provider public key.
    pub links: HashMap<LinkKey, String>,
    /// Public key → capability contract ids from its claims.
    pub caps: HashMap<String, HashSet<String>>,
    /// Call alias → actor public key (first claimant wins; clashes are logged by the builder).
    pub aliases: HashMap<String, String>,
    /// Cluster public keys whose invocation tokens are trusted.
    pub cluster_issuers: HashSet<String>,
}

impl RoutingSnapshot {
    /// Build version `version` of the tables from the lattice state and trusted issuers.
    pub fn build<'a>(version: u64, state: &LatticeState, issuers: impl IntoIterator<Item = &'a String>) -> Self {
        let links = state
            .links
            .values()
            .map(|l| {
                let key = LinkKey {
                    actor_id: l.actor_id.clone(),
                    contract_id: l.contract_id.clone(),
                    link_name: l.link_name.clone(),
                };
                (key, l.provider_id.clone())
            })
            .collect();
        let mut caps = HashMap::with_capacity(state.claims.len());
        let mut aliases = HashMap::new();
        for (subject, claims) in &state.claims {
            caps.insert(subject.clone(), claims.caps().map(str::to_string).collect());
            if let Some(alias) = claims.call_alias() {
                // BTreeMap order makes the winner deterministic across hosts.
                aliases.entry(alias.to_string()).or_insert_with(|| subject.clone());
            }
        }
        RoutingSnapshot {
            version,
            links,
            caps,
            aliases,
            cluster_issuers: issuers.into_iter().cloned().collect(),
        }
    }

    /// The provider an actor reaches on (contract, link name), if linked.
    pub fn provider_for(&self, actor_id: &str, contract_id: &str, link_name: &str) -> Option<&str> {
        let key = LinkKey {
            actor_id: actor_id.to_string(),
            contract_id: contract_id.to_string(),
            link_name: link_name.to_string(),
        };
        self.links.get(&key).map(String::as_str)
    }

    /// Whether `subject`'s claims grant `contract_id`.
    pub fn has_capability(&self, subject: &str, contract_id: &str) -> bool {
        self.caps.get(subject).is_some_and(|c| c.contains(contract_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::{parse_entry, LinkDefinition};

    #[test]
    fn builds_links_caps_and_aliases() {
        let mut state = LatticeState::default();
        let link = LinkDefinition {
            actor_id: "Ma".into(),
            provider_id: "Vp".into(),
            link_name: "default".into(),
            contract_id: "wasmcloud:keyvalue".into(),
            values: Default::default(),
        };
        state.put(parse_entry(&link.kv_key(), &serde_json::to_vec(&link).unwrap()).unwrap());
        let claims = br#"{"sub":"Ma","caps":"wasmcloud:keyvalue","call_alias":"team/a"}"#;
        state.put(parse_entry("CLAIMS_Ma", claims).unwrap());
        let issuers = vec!["Cx".to_string()];
        let snap = RoutingSnapshot::build(7, &state, &issuers);
        assert_eq!(snap.version, 7);
        assert_eq!(snap.provider_for("Ma", "wasmcloud:keyvalue", "default"), Some("Vp"));
        assert_eq!(snap.provider_for("Ma", "wasmcloud:keyvalue", "other"), None);
        assert!(snap.has_capability("Ma", "wasmcloud:keyvalue"));
        assert!(!snap.has_capability("Ma", "wasmcloud:httpserver"));
        assert_eq!(snap.aliases.get("team/a").map(String::as_str), Some("Ma"));
        assert!(snap.cluster_issuers.contains("Cx"));
    }
}
