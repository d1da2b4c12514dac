//! What the host says about itself: the `ping.hosts` reply (§5.2), the inventory (§5.3), the
//! heartbeat in the OTP/Rust ≤ 0.81 map form (§10) and the host lifecycle event bodies.
//!
//! Control plane; pure builders over [`HostInfo`] so they are unit-tested without NATS.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::identity::{uptime_human, Identity};

/// Host version reported on the lattice.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Static facts about this host plus its start time.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub identity: Identity,
    pub labels: BTreeMap<String, String>,
    pub friendly_name: String,
    pub lattice: String,
    pub js_domain: Option<String>,
    pub ctl_url: String,
    pub rpc_url: String,
    pub prov_rpc_url: String,
    pub started: Instant,
}

impl HostInfo {
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Reply to `ping.hosts`.
    pub fn ping_reply(&self) -> Value {
        let uptime = self.uptime_seconds();
        json!({
            "id": self.identity.host_id(),
            "issuer": self.identity.issuer(),
            "labels": self.labels,
            "friendly_name": self.friendly_name,
            "uptime_seconds": uptime,
            "uptime_human": uptime_human(uptime),
            "version": HOST_VERSION,
            "cluster_issuers": self.identity.cluster_issuers_joined(),
            "js_domain": self.js_domain,
            "ctl_host": self.ctl_url,
            "rpc_host": self.rpc_url,
            "prov_rpc_host": self.prov_rpc_url,
            "lattice_prefix": self.lattice,
            "lattice": self.lattice,
        })
    }

    /// Reply to `get.{host}.inv`. `actors` and `providers` are already in wire form.
    pub fn inventory(&self, actors: Vec<Value>, providers: Vec<Value>) -> Value {
        let uptime = self.uptime_seconds();
        json!({
            "host_id": self.identity.host_id(),
            "issuer": self.identity.issuer(),
            "friendly_name": self.friendly_name,
            "labels": self.labels,
            "version": self.version(),
            "uptime_seconds": uptime,
            "uptime_human": uptime_human(uptime),
            "actors": actors,
            "providers": providers,
        })
    }

    /// `host_heartbeat` data: `actors` maps actor key → instance count, `providers` lists
    /// `{public_key, link_name, contract_id}`.
    pub fn heartbeat(&self, actor_counts: &BTreeMap<String, u64>, providers: Vec<Value>) -> Value {
        let uptime = self.uptime_seconds();
        json!({
            "actors": actor_counts,
            "providers": providers,
            "labels": self.labels,
            "friendly_name": self.friendly_name,
            "version": self.version(),
            "uptime_seconds": uptime,
            "uptime_human": uptime_human(uptime),
        })
    }

    /// `host_started` data.
    pub fn started_event(&self) -> Value {
        json!({
            "labels": self.labels,
            "friendly_name": self.friendly_name,
            "uptime_seconds": self.uptime_seconds(),
            "version": self.version(),
        })
    }

    /// `host_stopped` data.
    pub fn stopped_event(&self) -> Value {
        json!({ "labels": self.labels })
    }

    fn version(&self) -> &'static str {
        HOST_VERSION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> HostInfo {
        HostInfo {
            identity: Identity::new(None, None, &[]).unwrap(),
            labels: [("hostcore.os".to_string(), "linux".to_string())].into(),
            friendly_name: "calm-river-0001".into(),
            lattice: "lat".into(),
            js_domain: None,
            ctl_url: "nats://127.0.0.1:4222".into(),
            rpc_url: "nats://127.0.0.1:4222".into(),
            prov_rpc_url: "nats://127.0.0.1:4222".into(),
            started: Instant::now(),
        }
    }

    #[test]
    fn ping_reply_fields_and_types() {
        let i = info();
        let p = i.ping_reply();
        assert_eq!(p["id"], i.identity.host_id());
        assert_eq!(p["issuer"], i.identity.issuer());
        assert_eq!(p["cluster_issuers"], i.identity.issuer());
        assert!(p["uptime_seconds"].is_u64());
        assert!(p["js_domain"].is_null());
        assert_eq!(p["lattice"], "lat");
        assert_eq!(p["lattice_prefix"], "lat");
        assert_eq!(p["labels"]["hostcore.os"], "linux");
    }

    #[test]
    fn heartbeat_uses_map_form() {
        let counts = [("Mabc".to_string(), 2u64)].into();
        let hb = info().heartbeat(&counts, vec![]);
        assert_eq!(hb["actors"]["Mabc"], 2);
        assert!(hb["providers"].as_array().unwrap().is_empty());
        assert!(hb["uptime_human"].is_string());
    }

    #[test]
    fn inventory_has_host_fields() {
        let i = info();
        let inv = i.inventory(vec![], vec![]);
        assert_eq!(inv["host_id"], i.identity.host_id());
        assert!(inv["actors"].as_array().unwrap().is_empty());
        assert_eq!(inv["friendly_name"], "calm-river-0001");
    }
}
