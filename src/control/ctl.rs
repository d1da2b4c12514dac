//! Control-interface subjects (PROTOCOL §1.2): which ones the host subscribes, with which
//! queue groups, and the pure router from a subject to a [`CtlRequest`] — a tuple match in the
//! manner of the 0.82 host's `handle_ctl_message`. Plus the small JSON request types and the
//! ack format.
//!
//! Control plane; no I/O here.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

/// One subscription the control plane opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlSubscription {
    pub subject: String,
    pub queue_group: Option<String>,
}

/// The subjects a host listens on, with the Rust 0.80+ queue groups.
pub fn subscriptions(prefix: &str, lattice: &str, host_id: &str) -> Vec<CtlSubscription> {
    let base = format!("{prefix}.{lattice}");
    let plain = |s: String| CtlSubscription {
        subject: s,
        queue_group: None,
    };
    let queued = |s: String, q: String| CtlSubscription {
        subject: s,
        queue_group: Some(q),
    };
    vec![
        plain(format!("{base}.registries.put")),
        plain(format!("{base}.ping.hosts")),
        queued(format!("{base}.linkdefs.*"), format!("{base}.linkdefs")),
        queued(format!("{base}.get.*"), format!("{base}.get")),
        plain(format!("{base}.get.{host_id}.inv")),
        plain(format!("{base}.auction.>")),
        plain(format!("{base}.cmd.{host_id}.*")),
        plain(format!("{base}.labels.{host_id}.*")),
        queued(format!("{base}.config.>"), format!("{base}.config")),
        queued(format!("{base}.get.config.>"), format!("{base}.get.config")),
    ]
}

/// Host-specific commands under `cmd.{host}.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCommand {
    LaunchActor,
    ScaleActor,
    StopActor,
    UpdateActor,
    LaunchProvider,
    StopProvider,
    StopHost,
}

impl HostCommand {
    /// Name used in replies and logs.
    pub fn describe(self) -> &'static str {
        match self {
            HostCommand::LaunchActor => "launch actor (la)",
            HostCommand::ScaleActor => "scale actor",
            HostCommand::StopActor => "stop actor (sa)",
            HostCommand::UpdateActor => "update actor (upd)",
            HostCommand::LaunchProvider => "launch provider (lp)",
            HostCommand::StopProvider => "stop provider (sp)",
            HostCommand::StopHost => "stop host",
        }
    }
}

/// A routed control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlRequest {
    PingHosts,
    RegistriesPut,
    LinkdefsPut,
    LinkdefsDel,
    GetLinks,
    GetClaims,
    Inventory,
    AuctionActor,
    AuctionProvider,
    Command(HostCommand),
    LabelPut,
    LabelDel,
    /// `config.*` and `get.config.*` (Rust 0.81+ config service).
    Config,
    /// A subject we subscribe to but do not know (or one for another host).
    Unknown,
}

/// Route `subject` (already known to start with our subscriptions) to a request.
pub fn route(prefix: &str, lattice: &str, host_id: &str, subject: &str) -> CtlRequest {
    let Some(rest) = subject.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
        return CtlRequest::Unknown;
    };
    let Some(rest) = rest.strip_prefix(lattice).and_then(|r| r.strip_prefix('.')) else {
        return CtlRequest::Unknown;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        ["ping", "hosts"] => CtlRequest::PingHosts,
        ["registries", "put"] => CtlRequest::RegistriesPut,
        ["linkdefs", "put"] => CtlRequest::LinkdefsPut,
        ["linkdefs", "del"] => CtlRequest::LinkdefsDel,
        ["get", "links"] => CtlRequest::GetLinks,
        ["get", "claims"] => CtlRequest::GetClaims,
        ["get", "config", ..] | ["config", ..] => CtlRequest::Config,
        ["get", host, "inv"] if *host == host_id => CtlRequest::Inventory,
        ["auction", "actor"] => CtlRequest::AuctionActor,
        ["auction", "provider"] => CtlRequest::AuctionProvider,
        ["labels", host, "put"] if *host == host_id => CtlRequest::LabelPut,
        ["labels", host, "del"] if *host == host_id => CtlRequest::LabelDel,
        ["cmd", host, cmd] if *host == host_id => match *cmd {
            "la" => CtlRequest::Command(HostCommand::LaunchActor),
            "scale" => CtlRequest::Command(HostCommand::ScaleActor),
            "sa" => CtlRequest::Command(HostCommand::StopActor),
            "upd" => CtlRequest::Command(HostCommand::UpdateActor),
            "lp" => CtlRequest::Command(HostCommand::LaunchProvider),
            "sp" => CtlRequest::Command(HostCommand::StopProvider),
            "stop" => CtlRequest::Command(HostCommand::StopHost),
            _ => CtlRequest::Unknown,
        },
        _ => CtlRequest::Unknown,
    }
}

/// `{"accepted":true,"error":""}`.
pub fn ack_ok() -> Value {
    json!({ "accepted": true, "error": "" })
}

/// `{"accepted":false,"error":reason}`.
pub fn ack_err(reason: impl std::fmt::Display) -> Value {
    json!({ "accepted": false, "error": reason.to_string() })
}

/// Parse a JSON body; an empty body is read as `{}` so commands whose fields are all optional
/// accept it.
pub fn parse_body<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("failed to deserialize {what} request: {e}"))
}

/// `cmd.{host}.stop`.
#[derive(Debug, Deserialize, Default)]
pub struct StopHostCommand {
    #[serde(default)]
    pub host_id: Option<String>,
    /// Milliseconds to allow for a graceful stop.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// `linkdefs.del`.
#[derive(Debug, Deserialize)]
pub struct LinkDelRequest {
    pub actor_id: String,
    pub contract_id: String,
    pub link_name: String,
}

/// `labels.{host}.put` / `.del`.
#[derive(Debug, Deserialize)]
pub struct LabelRequest {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// `auction.actor` and `auction.provider` (the fields both share).
#[derive(Debug, Deserialize)]
pub struct AuctionRequest {
    #[serde(default)]
    pub actor_ref: Option<String>,
    #[serde(default)]
    pub provider_ref: Option<String>,
    #[serde(default)]
    pub link_name: Option<String>,
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}

/// A host bids only if its labels hold every constraint (OTP behaviour; PROTOCOL §5.6).
pub fn labels_satisfy(labels: &BTreeMap<String, String>, constraints: &BTreeMap<String, String>) -> bool {
    constraints.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "NHOST";

    fn r(s: &str) -> CtlRequest {
        route("wasmbus.ctl", "lat", H, s)
    }

    #[test]
    fn routes_every_known_subject() {
        assert_eq!(r("wasmbus.ctl.lat.ping.hosts"), CtlRequest::PingHosts);
        assert_eq!(r("wasmbus.ctl.lat.registries.put"), CtlRequest::RegistriesPut);
        assert_eq!(r("wasmbus.ctl.lat.linkdefs.put"), CtlRequest::LinkdefsPut);
        assert_eq!(r("wasmbus.ctl.lat.linkdefs.del"), CtlRequest::LinkdefsDel);
        assert_eq!(r("wasmbus.ctl.lat.get.links"), CtlRequest::GetLinks);
        assert_eq!(r("wasmbus.ctl.lat.get.claims"), CtlRequest::GetClaims);
        assert_eq!(r("wasmbus.ctl.lat.get.NHOST.inv"), CtlRequest::Inventory);
        assert_eq!(r("wasmbus.ctl.lat.auction.actor"), CtlRequest::AuctionActor);
        assert_eq!(r("wasmbus.ctl.lat.auction.provider"), CtlRequest::AuctionProvider);
        assert_eq!(
            r("wasmbus.ctl.lat.cmd.NHOST.stop"),
            CtlRequest::Command(HostCommand::StopHost)
        );
        assert_eq!(
            r("wasmbus.ctl.lat.cmd.NHOST.scale"),
            CtlRequest::Command(HostCommand::ScaleActor)
        );
        assert_eq!(r("wasmbus.ctl.lat.labels.NHOST.put"), CtlRequest::LabelPut);
        assert_eq!(r("wasmbus.ctl.lat.config.put.Mx.k"), CtlRequest::Config);
        assert_eq!(r("wasmbus.ctl.lat.get.config.Mx"), CtlRequest::Config);
    }

    #[test]
    fn unknown_or_foreign_subjects() {
        assert_eq!(r("wasmbus.ctl.lat.cmd.NHOST.bogus"), CtlRequest::Unknown);
        assert_eq!(r("wasmbus.ctl.lat.cmd.NOTME.stop"), CtlRequest::Unknown);
        assert_eq!(r("wasmbus.ctl.other.ping.hosts"), CtlRequest::Unknown);
        assert_eq!(r("wasmbus.ctlx.lat.ping.hosts"), CtlRequest::Unknown);
        assert_eq!(r("wasmbus.ctl.lat.auction.thing"), CtlRequest::Unknown);
    }

    #[test]
    fn every_subscription_routes() {
        // Each concrete subject a subscription can deliver routes to something known.
        for (subject, want) in [
            ("wasmbus.ctl.lat.get.links", CtlRequest::GetLinks),
            (
                "wasmbus.ctl.lat.cmd.NHOST.sa",
                CtlRequest::Command(HostCommand::StopActor),
            ),
        ] {
            assert_eq!(r(subject), want);
        }
        let subs = subscriptions("wasmbus.ctl", "lat", H);
        assert!(subs
            .iter()
            .any(|s| s.subject == "wasmbus.ctl.lat.get.*" && s.queue_group.as_deref() == Some("wasmbus.ctl.lat.get")));
        assert!(subs
            .iter()
            .any(|s| s.subject == "wasmbus.ctl.lat.cmd.NHOST.*" && s.queue_group.is_none()));
    }

    #[test]
    fn bodies_and_acks() {
        let stop: StopHostCommand = parse_body("stop", b"").unwrap();
        assert!(stop.host_id.is_none());
        assert!(parse_body::<StopHostCommand>("stop", b"{not json")
            .unwrap_err()
            .contains("stop"));
        assert_eq!(ack_ok()["accepted"], true);
        assert_eq!(ack_err("x")["error"], "x");
    }

    #[test]
    fn auction_constraints() {
        let labels: BTreeMap<String, String> = [("zone".into(), "a".into()), ("os".into(), "linux".into())].into();
        assert!(labels_satisfy(&labels, &BTreeMap::new()));
        assert!(labels_satisfy(&labels, &[("zone".into(), "a".into())].into()));
        assert!(!labels_satisfy(&labels, &[("zone".into(), "b".into())].into()));
        assert!(!labels_satisfy(&labels, &[("gpu".into(), "yes".into())].into()));
    }
}
