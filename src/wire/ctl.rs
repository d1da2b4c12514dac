//! The control interface's wire shapes (PROTOCOL §1.2, §5): which subjects a host subscribes,
//! with which queue groups; the pure router from a subject to a [`CtlRequest`] (a tuple match in
//! the manner of the 0.82 host's `handle_ctl_message`); every JSON request body, read liberally
//! (both the OTP/≤0.29 and the 0.30+ shapes, §16) and checked for what needs no host state by
//! [`decode_body`]; and the ack format.
//!
//! Pure code, no I/O: the control plane answers from what [`decode_body`] returns, and the
//! `ctl_json` fuzz target feeds it arbitrary subjects and bodies.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::lattice::LinkDefinition;

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

impl CtlRequest {
    /// The name of the span that serves it (low cardinality: no host or lattice in it).
    pub fn span_name(&self) -> &'static str {
        match self {
            CtlRequest::PingHosts => "ctl ping.hosts",
            CtlRequest::RegistriesPut => "ctl registries.put",
            CtlRequest::LinkdefsPut => "ctl linkdefs.put",
            CtlRequest::LinkdefsDel => "ctl linkdefs.del",
            CtlRequest::GetLinks => "ctl get.links",
            CtlRequest::GetClaims => "ctl get.claims",
            CtlRequest::Inventory => "ctl get.inv",
            CtlRequest::AuctionActor => "ctl auction.actor",
            CtlRequest::AuctionProvider => "ctl auction.provider",
            CtlRequest::Command(HostCommand::LaunchActor) => "ctl cmd.la",
            CtlRequest::Command(HostCommand::ScaleActor) => "ctl cmd.scale",
            CtlRequest::Command(HostCommand::StopActor) => "ctl cmd.sa",
            CtlRequest::Command(HostCommand::UpdateActor) => "ctl cmd.upd",
            CtlRequest::Command(HostCommand::LaunchProvider) => "ctl cmd.lp",
            CtlRequest::Command(HostCommand::StopProvider) => "ctl cmd.sp",
            CtlRequest::Command(HostCommand::StopHost) => "ctl cmd.stop",
            CtlRequest::LabelPut => "ctl labels.put",
            CtlRequest::LabelDel => "ctl labels.del",
            CtlRequest::Config => "ctl config",
            CtlRequest::Unknown => "ctl unknown",
        }
    }
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

/// Annotations attached to a start request; instances are grouped by them.
pub type Annotations = BTreeMap<String, String>;

/// Most instances one request may ask for (the wire type is u16).
pub const ACTOR_INSTANCES_MAX: u16 = u16::MAX;

/// Link name used when a request names none (the control client's default).
pub const LINK_NAME_DEFAULT: &str = "default";

/// Label keys the host owns (`hostcore.os`, …): never changed by `labels.*`.
pub const HOST_LABEL_PREFIX: &str = "hostcore.";

fn one() -> u16 {
    1
}

fn link_name_default() -> String {
    LINK_NAME_DEFAULT.to_string()
}

/// `cmd.{host}.la` (deprecated, still sent by OTP-era clients).
#[derive(Debug, Clone, Deserialize)]
pub struct StartActorCommand {
    pub actor_ref: String,
    #[serde(default = "one")]
    pub count: u16,
    #[serde(default)]
    pub annotations: Option<Annotations>,
}

/// `cmd.{host}.scale`, both shapes: with `actor_id`, `count` is the OTP instance count; without,
/// it is the 0.30+ max concurrency (`null`/absent = unbounded, `0` = stop).
#[derive(Debug, Clone, Deserialize)]
pub struct ScaleActorCommand {
    #[serde(default)]
    pub actor_id: Option<String>,
    pub actor_ref: String,
    #[serde(default)]
    pub count: Option<u16>,
    #[serde(default)]
    pub annotations: Option<Annotations>,
}

/// `cmd.{host}.sa`: `actor_ref` is in practice the actor's public key. `count` absent = stop
/// every matching instance (client ≥ 0.30 no longer sends it).
#[derive(Debug, Clone, Deserialize)]
pub struct StopActorCommand {
    pub actor_ref: String,
    #[serde(default)]
    pub count: Option<u16>,
    #[serde(default)]
    pub annotations: Option<Annotations>,
}

/// `cmd.{host}.upd`.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateActorCommand {
    pub actor_id: String,
    pub new_actor_ref: String,
    #[serde(default)]
    pub annotations: Option<Annotations>,
}

/// What a scale request asks for, once both shapes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleTarget {
    /// OTP / client ≤ 0.29: exactly this many instances (0 stops them).
    Instances(u16),
    /// Client ≥ 0.30: one instance group with this max concurrency (None = unbounded).
    MaxConcurrent(Option<u16>),
    /// Client ≥ 0.30 with count 0.
    Stop,
}

impl ScaleActorCommand {
    pub fn target(&self) -> ScaleTarget {
        match (&self.actor_id, self.count) {
            (Some(_), Some(n)) => ScaleTarget::Instances(n),
            (Some(_), None) => ScaleTarget::Instances(1),
            (None, Some(0)) => ScaleTarget::Stop,
            (None, count) => ScaleTarget::MaxConcurrent(count),
        }
    }
}

/// `cmd.{host}.lp` (PROTOCOL §5.1).
#[derive(Debug, Clone, Deserialize)]
pub struct StartProviderCommand {
    pub provider_ref: String,
    #[serde(default = "link_name_default")]
    pub link_name: String,
    #[serde(default)]
    pub annotations: Option<Annotations>,
    /// Passed to the provider as `HostData.config_json`.
    #[serde(default)]
    pub configuration: Option<String>,
}

/// `cmd.{host}.sp`: `provider_ref` is the provider's public key (or, liberally, the
/// reference it was started from).
#[derive(Debug, Clone, Deserialize)]
pub struct StopProviderCommand {
    pub provider_ref: String,
    #[serde(default = "link_name_default")]
    pub link_name: String,
    #[serde(default)]
    pub contract_id: Option<String>,
}

/// One registry's credentials in a `registries.put` body.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryCredential {
    #[serde(rename = "registryType", default)]
    pub registry_type: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("RegistryCredential")
            .field("registry_type", &self.registry_type)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl RegistryCredential {
    /// OTP drops entries without a type or without any credential; so do we. Only `oci` is
    /// usable (bindle is OTP-only and gone).
    pub fn usable(&self) -> bool {
        let has_secret = self.password.is_some() || self.token.is_some();
        self.registry_type.as_deref() == Some("oci") && has_secret
    }
}

/// A link name as a request gives it: empty means the default.
fn link_name_or_default(link_name: String) -> String {
    if link_name.is_empty() {
        link_name_default()
    } else {
        link_name
    }
}

/// A request body read and checked as far as it can be without the host's state.
#[derive(Debug)]
pub enum CtlBody {
    /// Requests whose body is not read (`ping.hosts`, `get.*`, `config.*`, unknown subjects).
    Unread,
    RegistriesPut(BTreeMap<String, RegistryCredential>),
    /// A valid link definition.
    LinkPut(LinkDefinition),
    LinkDel(LinkDelRequest),
    /// `labels.{host}.put` (with its value) or `.del` (`value` None), for a key the host does
    /// not own.
    Label {
        key: String,
        value: Option<String>,
    },
    /// `auction.actor` with an actor reference (an auction without one gets no bid).
    AuctionActor {
        actor_ref: String,
        constraints: BTreeMap<String, String>,
    },
    /// `auction.provider` with a provider reference, the link name defaulted.
    AuctionProvider {
        provider_ref: String,
        link_name: String,
        constraints: BTreeMap<String, String>,
    },
    /// A non-empty reference and a count of at least 1.
    LaunchActor(StartActorCommand),
    /// A non-empty reference.
    ScaleActor(ScaleActorCommand),
    StopActor(StopActorCommand),
    UpdateActor(UpdateActorCommand),
    /// The link name defaulted.
    LaunchProvider(StartProviderCommand),
    /// The link name defaulted.
    StopProvider(StopProviderCommand),
    StopHost(StopHostCommand),
    /// An auction the host cannot bid on (no reference): no reply.
    NoBid,
}

/// Read `body` as the request `request` routes to. `Err` is the reason for an error ack (for
/// an auction: for a log line, since auctions are answered only with bids).
pub fn decode_body(request: &CtlRequest, body: &[u8]) -> Result<CtlBody, String> {
    Ok(match request {
        CtlRequest::PingHosts
        | CtlRequest::GetLinks
        | CtlRequest::GetClaims
        | CtlRequest::Inventory
        | CtlRequest::Config
        | CtlRequest::Unknown => CtlBody::Unread,
        CtlRequest::RegistriesPut => CtlBody::RegistriesPut(
            serde_json::from_slice(body).map_err(|e| format!("failed to deserialize registries.put request: {e}"))?,
        ),
        CtlRequest::LinkdefsPut => {
            let link: LinkDefinition = parse_body("linkdefs.put", body)?;
            link.validate().map_err(|e| format!("invalid link definition: {e}"))?;
            CtlBody::LinkPut(link)
        }
        CtlRequest::LinkdefsDel => CtlBody::LinkDel(parse_body("linkdefs.del", body)?),
        CtlRequest::LabelPut | CtlRequest::LabelDel => {
            let label: LabelRequest = parse_body("label", body)?;
            if label.key.is_empty() || label.key.starts_with(HOST_LABEL_PREFIX) {
                return Err(format!("label `{}` cannot be changed", label.key));
            }
            match (request, label.value) {
                (CtlRequest::LabelPut, None) => return Err("label put needs a value".into()),
                (CtlRequest::LabelPut, value) => CtlBody::Label { key: label.key, value },
                _ => CtlBody::Label {
                    key: label.key,
                    value: None,
                },
            }
        }
        CtlRequest::AuctionActor => {
            let auction: AuctionRequest = parse_body("actor auction", body)?;
            match auction.actor_ref {
                Some(actor_ref) => CtlBody::AuctionActor {
                    actor_ref,
                    constraints: auction.constraints,
                },
                None => CtlBody::NoBid,
            }
        }
        CtlRequest::AuctionProvider => {
            let auction: AuctionRequest = parse_body("provider auction", body)?;
            match auction.provider_ref {
                Some(provider_ref) => CtlBody::AuctionProvider {
                    provider_ref,
                    link_name: link_name_or_default(auction.link_name.unwrap_or_default()),
                    constraints: auction.constraints,
                },
                None => CtlBody::NoBid,
            }
        }
        CtlRequest::Command(command) => decode_command(*command, body)?,
    })
}

fn decode_command(command: HostCommand, body: &[u8]) -> Result<CtlBody, String> {
    Ok(match command {
        HostCommand::LaunchActor => {
            let cmd: StartActorCommand = parse_body("launch actor", body)?;
            if cmd.actor_ref.is_empty() {
                return Err("actor_ref must not be empty".into());
            }
            if cmd.count == 0 {
                return Err("count must be at least 1".into());
            }
            CtlBody::LaunchActor(cmd)
        }
        HostCommand::ScaleActor => {
            let cmd: ScaleActorCommand = parse_body("scale actor", body)?;
            if cmd.actor_ref.is_empty() {
                return Err("actor_ref must not be empty".into());
            }
            CtlBody::ScaleActor(cmd)
        }
        HostCommand::StopActor => CtlBody::StopActor(parse_body("stop actor", body)?),
        HostCommand::UpdateActor => CtlBody::UpdateActor(parse_body("update actor", body)?),
        HostCommand::LaunchProvider => {
            // An empty reference is refused by the control plane, with a
            // `provider_start_failed` event, like every other reference it cannot start.
            let mut cmd: StartProviderCommand = parse_body("launch provider", body)?;
            cmd.link_name = link_name_or_default(cmd.link_name);
            CtlBody::LaunchProvider(cmd)
        }
        HostCommand::StopProvider => {
            let mut cmd: StopProviderCommand = parse_body("stop provider", body)?;
            cmd.link_name = link_name_or_default(cmd.link_name);
            CtlBody::StopProvider(cmd)
        }
        HostCommand::StopHost => CtlBody::StopHost(parse_body("stop host", body)?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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

    #[test]
    fn scale_shapes_are_read() {
        let otp: ScaleActorCommand =
            serde_json::from_str(r#"{"actor_id":"Ma","actor_ref":"r","count":3,"host_id":"N"}"#).unwrap();
        assert_eq!(otp.target(), ScaleTarget::Instances(3));
        let new: ScaleActorCommand = serde_json::from_str(r#"{"actor_ref":"r","count":null}"#).unwrap();
        assert_eq!(new.target(), ScaleTarget::MaxConcurrent(None));
        let absent: ScaleActorCommand = serde_json::from_str(r#"{"actor_ref":"r"}"#).unwrap();
        assert_eq!(absent.target(), ScaleTarget::MaxConcurrent(None));
        let stop: ScaleActorCommand = serde_json::from_str(r#"{"actor_ref":"r","count":0}"#).unwrap();
        assert_eq!(stop.target(), ScaleTarget::Stop);
        let sa: StopActorCommand = serde_json::from_str(r#"{"actor_ref":"Ma"}"#).unwrap();
        assert!(sa.count.is_none());
        let la: StartActorCommand = serde_json::from_str(r#"{"actor_ref":"r"}"#).unwrap();
        assert_eq!(la.count, 1);
    }

    #[test]
    fn commands_take_both_shapes_and_default_the_link_name() {
        let lp: StartProviderCommand =
            serde_json::from_str(r#"{"provider_ref":"file:///p.par","host_id":"N","configuration":"{}"}"#).unwrap();
        assert_eq!(lp.link_name, "default");
        assert_eq!(lp.configuration.as_deref(), Some("{}"));
        let sp: StopProviderCommand =
            serde_json::from_str(r#"{"provider_ref":"Vx","link_name":"other","contract_id":"wasmcloud:keyvalue"}"#)
                .unwrap();
        assert_eq!(sp.link_name, "other");
        assert!(serde_json::from_str::<StartProviderCommand>("{}").is_err());
    }

    #[test]
    fn decode_checks_what_needs_no_state() {
        let la = CtlRequest::Command(HostCommand::LaunchActor);
        assert!(decode_body(&la, br#"{"actor_ref":""}"#).unwrap_err().contains("empty"));
        assert!(decode_body(&la, br#"{"actor_ref":"r","count":0}"#)
            .unwrap_err()
            .contains("at least 1"));
        assert!(matches!(decode_body(&la, br#"{"actor_ref":"r"}"#), Ok(CtlBody::LaunchActor(c)) if c.count == 1));
        let lp = CtlRequest::Command(HostCommand::LaunchProvider);
        assert!(
            matches!(decode_body(&lp, br#"{"provider_ref":"p","link_name":""}"#), Ok(CtlBody::LaunchProvider(c)) if c.link_name == "default")
        );
        let put = CtlRequest::LabelPut;
        assert!(decode_body(&put, br#"{"key":"hostcore.os","value":"x"}"#)
            .unwrap_err()
            .contains("cannot be changed"));
        assert!(decode_body(&put, br#"{"key":"zone"}"#)
            .unwrap_err()
            .contains("needs a value"));
        assert!(matches!(
            decode_body(&CtlRequest::LabelDel, br#"{"key":"zone","value":"ignored"}"#),
            Ok(CtlBody::Label { value: None, .. })
        ));
        assert!(matches!(
            decode_body(&CtlRequest::AuctionActor, b"{}"),
            Ok(CtlBody::NoBid)
        ));
        assert!(decode_body(&CtlRequest::AuctionProvider, b"[").is_err());
        assert!(matches!(
            decode_body(&CtlRequest::AuctionProvider, br#"{"provider_ref":"p"}"#),
            Ok(CtlBody::AuctionProvider { link_name, .. }) if link_name == "default"
        ));
        assert!(decode_body(
            &CtlRequest::LinkdefsPut,
            br#"{"actor_id":"","contract_id":"c","link_name":"d","provider_id":"V"}"#
        )
        .is_err());
        assert!(matches!(
            decode_body(&CtlRequest::PingHosts, b"\xff garbage"),
            Ok(CtlBody::Unread)
        ));
        assert!(decode_body(&CtlRequest::RegistriesPut, b"[1,2]").is_err());
    }
}
