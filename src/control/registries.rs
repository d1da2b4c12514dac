//! OCI registry credentials: from `--oci-registry`/`--oci-user`/`--oci-password` and from
//! `registries.put` (PROTOCOL §5.1, §11), kept for the OCI pulls of actors.
//!
//! Control plane; pure apart from the in-memory map.

use std::collections::BTreeMap;

pub use crate::wire::ctl::RegistryCredential;

/// Credentials by registry host (`localhost:5000`, `ghcr.io`).
#[derive(Debug, Clone, Default)]
pub struct Registries {
    by_host: BTreeMap<String, RegistryCredential>,
}

impl Registries {
    /// Merge a `registries.put` body; returns how many entries were kept and which were dropped.
    pub fn merge(&mut self, map: BTreeMap<String, RegistryCredential>) -> (usize, Vec<String>) {
        let mut kept = 0;
        let mut dropped = Vec::new();
        for (host, cred) in map {
            if cred.usable() {
                self.by_host.insert(host, cred);
                kept += 1;
            } else {
                dropped.push(host);
            }
        }
        (kept, dropped)
    }

    /// Add the command-line credential.
    pub fn insert_basic(&mut self, host: &str, username: &str, password: &str) {
        let cred = RegistryCredential {
            registry_type: Some("oci".into()),
            username: Some(username.into()),
            password: Some(password.into()),
            token: None,
        };
        self.by_host.insert(host.to_string(), cred);
    }

    /// Credentials for a registry host, if any.
    pub fn get(&self, host: &str) -> Option<&RegistryCredential> {
        self.by_host.get(host)
    }

    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_usable_entries() {
        let mut r = Registries::default();
        let body = br#"{"localhost:5000":{"registryType":"oci","username":"u","password":"p"},
                        "ghcr.io":{"registryType":"oci","token":"t"},
                        "nocred.io":{"registryType":"oci","username":"u"},
                        "notype.io":{"password":"p"}}"#;
        let (kept, mut dropped) = r.merge(serde_json::from_slice(body).unwrap());
        dropped.sort();
        assert_eq!(kept, 2);
        assert_eq!(dropped, ["nocred.io", "notype.io"]);
        assert_eq!(r.get("localhost:5000").and_then(|c| c.username.as_deref()), Some("u"));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut r = Registries::default();
        r.insert_basic("h", "user", "hunter2");
        assert!(!format!("{:?}", r.get("h").unwrap()).contains("hunter2"));
    }
}
