//! Host identity: the host's server nkey, the cluster key that signs invocations, the set of
//! cluster issuers we trust, labels and the friendly name (PROTOCOL §3.4, §5.2, §5.3).
//!
//! Shared by both planes; pure apart from key generation and the environment passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{bail, Result};
use nkeys::{KeyPair, KeyPairType};

/// Prefix of environment variables that become host labels (Rust 0.8x host).
pub const LABEL_ENV_PREFIX: &str = "WASMCLOUD_LABEL_";

/// Keys and trust set of one host process.
#[derive(Clone)]
pub struct Identity {
    /// Server key (`N…`): the host id.
    pub host_key: Arc<KeyPair>,
    /// Cluster key (`C…`): signs outbound invocations; its public key is the `issuer`.
    pub cluster_key: Arc<KeyPair>,
    /// Whether the cluster key was generated at this start (and so is known to no other host).
    pub cluster_key_generated: bool,
    /// Public cluster keys whose invocation tokens are accepted: configured ∪ own.
    pub cluster_issuers: BTreeSet<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host_id", &self.host_id())
            .field("issuer", &self.issuer())
            .field("cluster_key_generated", &self.cluster_key_generated)
            .field("cluster_issuers", &self.cluster_issuers)
            .finish()
    }
}

fn key_from_seed(seed: &str, expected: KeyPairType, what: &str, prefix: &str) -> Result<KeyPair> {
    let kp = KeyPair::from_seed(seed.trim()).map_err(|e| anyhow::anyhow!("{what} is not a valid nkey seed: {e}"))?;
    if kp.key_pair_type() != expected {
        bail!(
            "{what} must be a {expected:?} seed ({prefix}…), got a {:?} seed",
            kp.key_pair_type()
        );
    }
    Ok(kp)
}

impl Identity {
    /// Build the identity from the optional seeds and configured issuers. A host seed must be a
    /// server seed and a cluster seed a cluster seed; every issuer must be a cluster public key.
    pub fn new(host_seed: Option<&str>, cluster_seed: Option<&str>, issuers: &[String]) -> Result<Identity> {
        let host_key = match host_seed {
            Some(seed) => key_from_seed(seed, KeyPairType::Server, "host seed", "SN")?,
            None => KeyPair::new_server(),
        };
        let (cluster_key, cluster_key_generated) = match cluster_seed {
            Some(seed) => (key_from_seed(seed, KeyPairType::Cluster, "cluster seed", "SC")?, false),
            None => (KeyPair::new_cluster(), true),
        };
        let mut cluster_issuers = BTreeSet::new();
        for issuer in issuers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let kp = KeyPair::from_public_key(issuer)
                .map_err(|e| anyhow::anyhow!("cluster issuer `{issuer}` is not a valid public key: {e}"))?;
            if kp.key_pair_type() != KeyPairType::Cluster {
                bail!("cluster issuer `{issuer}` is not a cluster public key (C…)");
            }
            cluster_issuers.insert(issuer.to_string());
        }
        cluster_issuers.insert(cluster_key.public_key());
        Ok(Identity {
            host_key: Arc::new(host_key),
            cluster_key: Arc::new(cluster_key),
            cluster_key_generated,
            cluster_issuers,
        })
    }

    /// The host id (`N…`).
    pub fn host_id(&self) -> String {
        self.host_key.public_key()
    }

    /// The cluster public key (`C…`), reported as `issuer`.
    pub fn issuer(&self) -> String {
        self.cluster_key.public_key()
    }

    /// Cluster issuers joined with commas, as `ping.hosts` reports them.
    pub fn cluster_issuers_joined(&self) -> String {
        self.cluster_issuers
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Labels every host reports (`hostcore.*`, as the Rust host derives them from
/// `std::env::consts`), then `WASMCLOUD_LABEL_*` variables, then `--label` flags, later ones
/// winning. Keys keep their case, as on the 0.82 host: `WASMCLOUD_LABEL_ZONE=x` is label `ZONE`.
pub fn host_labels(env: &[(String, String)], flags: &[(String, String)]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("hostcore.arch".to_string(), std::env::consts::ARCH.to_string());
    labels.insert("hostcore.os".to_string(), std::env::consts::OS.to_string());
    labels.insert("hostcore.osfamily".to_string(), std::env::consts::FAMILY.to_string());
    for (key, value) in env {
        if let Some(label) = key.strip_prefix(LABEL_ENV_PREFIX) {
            if !label.is_empty() {
                labels.insert(label.to_string(), value.clone());
            }
        }
    }
    for (key, value) in flags {
        labels.insert(key.clone(), value.clone());
    }
    labels
}

const ADJECTIVES: &[&str] = &[
    "ancient", "bold", "calm", "damp", "eager", "fancy", "gentle", "hidden", "icy", "jolly", "keen", "lively", "misty",
    "noisy", "odd", "proud", "quiet", "rapid", "shy", "tiny", "urban", "vast", "wild", "young",
];
const NOUNS: &[&str] = &[
    "anchor", "breeze", "canyon", "dawn", "ember", "forest", "glacier", "harbor", "island", "jungle", "kettle",
    "lagoon", "meadow", "nebula", "orchard", "pebble", "quartz", "river", "summit", "tundra", "valley", "willow",
];

/// A random `adjective-noun-NNNN` friendly name, like the 0.x hosts make.
pub fn friendly_name() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let adjective = ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())];
    let noun = NOUNS[rng.gen_range(0..NOUNS.len())];
    format!("{adjective}-{noun}-{:04}", rng.gen_range(0..10_000))
}

/// Uptime as the hosts print it: `1h 2m 3s` (days when over 24 h).
pub fn uptime_human(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_trusts_itself() {
        let id = Identity::new(None, None, &[]).unwrap();
        assert!(id.host_id().starts_with('N') && id.host_id().len() == 56);
        assert!(id.issuer().starts_with('C'));
        assert!(id.cluster_key_generated);
        assert_eq!(id.cluster_issuers_joined(), id.issuer());
    }

    #[test]
    fn given_seeds_are_used_and_issuers_merged() {
        let host = KeyPair::new_server();
        let cluster = KeyPair::new_cluster();
        let other = KeyPair::new_cluster().public_key();
        let id = Identity::new(
            Some(&host.seed().unwrap()),
            Some(&cluster.seed().unwrap()),
            std::slice::from_ref(&other),
        )
        .unwrap();
        assert_eq!(id.host_id(), host.public_key());
        assert_eq!(id.issuer(), cluster.public_key());
        assert!(!id.cluster_key_generated);
        assert!(id.cluster_issuers.contains(&other) && id.cluster_issuers.contains(&cluster.public_key()));
    }

    #[test]
    fn wrong_key_types_are_refused() {
        let account_seed = KeyPair::new_account().seed().unwrap();
        assert!(Identity::new(Some(&account_seed), None, &[]).is_err());
        assert!(Identity::new(None, Some(&account_seed), &[]).is_err());
        let server_pub = KeyPair::new_server().public_key();
        assert!(Identity::new(None, None, &[server_pub]).is_err());
        assert!(Identity::new(None, Some("SCgarbage"), &[]).is_err());
    }

    #[test]
    fn uptime_formats() {
        assert_eq!(uptime_human(5), "5s");
        assert_eq!(uptime_human(65), "1m 5s");
        assert_eq!(uptime_human(3_725), "1h 2m 5s");
        assert_eq!(uptime_human(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn friendly_names_have_three_parts() {
        assert_eq!(friendly_name().split('-').count(), 3);
    }
}
