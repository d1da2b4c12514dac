//! `HostData` (PROTOCOL §8.2): the one base64 JSON line a provider reads from its stdin at
//! start, built from the host's identity, the provider's spec and the links known for it.
//!
//! Control plane; pure builders (a `--prov-rpc-credsfile` is read once, at start), unit-tested
//! against the field list the wasmbus-rpc 0.15 SDK
//! (and wasmcloud-core) require.

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use crate::config::{Config, NatsAuth};
use crate::lattice::LinkDefinition;

/// What every provider of this host gets, whatever its key and link name.
#[derive(Debug, Clone, Default)]
pub struct HostDataBase {
    pub host_id: String,
    pub lattice_rpc_prefix: String,
    /// `nats://host:port` of the provider RPC connection (`--prov-rpc-*`).
    pub lattice_rpc_url: String,
    /// The NATS user JWT and seed for that connection ("" for none).
    pub lattice_rpc_user_jwt: String,
    pub lattice_rpc_user_seed: String,
    pub lattice_rpc_tls: bool,
    /// The cluster seed (`SC…`): providers sign their invocations with it.
    pub invocation_seed: String,
    pub cluster_issuers: Vec<String>,
    pub default_rpc_timeout_ms: u64,
    pub structured_logging: bool,
    pub log_level: Option<String>,
    pub js_domain: Option<String>,
    /// `--otel-traces-exporter` and `--otel-exporter-otlp-endpoint` (or their variables).
    pub otel_config: OtelConfig,
}

/// The JSON object on the wire, field names as wasmbus-rpc 0.15 and wasmcloud-core read them.
/// `env_values`, `link_definitions`, `cluster_issuers` and `otel_config` are always present
/// (required by one SDK or the other).
#[derive(Debug, Clone, Serialize)]
pub struct HostData<'a> {
    pub host_id: &'a str,
    pub lattice_rpc_prefix: &'a str,
    pub link_name: &'a str,
    pub lattice_rpc_user_jwt: &'a str,
    pub lattice_rpc_user_seed: &'a str,
    pub lattice_rpc_url: &'a str,
    pub lattice_rpc_tls: bool,
    pub provider_key: &'a str,
    pub invocation_seed: &'a str,
    pub env_values: serde_json::Map<String, serde_json::Value>,
    pub instance_id: &'a str,
    pub link_definitions: &'a [LinkDefinition],
    pub cluster_issuers: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_json: Option<&'a str>,
    pub default_rpc_timeout_ms: u64,
    pub structured_logging: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<&'a str>,
    pub otel_config: OtelConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub js_domain: Option<&'a str>,
}

/// wasmcloud-core's `OtelConfig` (both fields optional; the object itself is required there).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OtelConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_exporter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporter_otlp_endpoint: Option<String>,
}

/// What is specific to one provider instance.
#[derive(Debug, Clone, Copy)]
pub struct InstanceData<'a> {
    pub provider_key: &'a str,
    pub link_name: &'a str,
    pub instance_id: &'a str,
    pub config_json: Option<&'a str>,
    /// Links already known for this provider and link name.
    pub links: &'a [LinkDefinition],
    /// Scoped credentials minted for this instance, replacing the base ones.
    pub user_jwt: Option<&'a str>,
    pub user_seed: Option<&'a str>,
}

impl HostDataBase {
    /// What every provider's HostData shares (PROTOCOL §8.2): the provider RPC connection and its
    /// credentials, the cluster seed that signs the providers' invocations, the trusted issuers.
    pub fn from_config(config: &Config) -> Result<HostDataBase> {
        let (jwt, seed) = match &config.prov_rpc.auth {
            NatsAuth::None => (String::new(), String::new()),
            NatsAuth::JwtSeed { jwt, seed } => (jwt.clone(), seed.clone()),
            NatsAuth::CredsFile(path) => {
                crate::config::read_creds(path).map_err(|e| anyhow::anyhow!("provider RPC credentials: {e}"))?
            }
        };
        let invocation_seed = config
            .identity
            .cluster_key
            .seed()
            .context("the cluster key has no seed to hand to providers")?;
        Ok(HostDataBase {
            host_id: config.identity.host_id(),
            lattice_rpc_prefix: config.lattice.clone(),
            lattice_rpc_url: config.prov_rpc.url(),
            lattice_rpc_user_jwt: jwt,
            lattice_rpc_user_seed: seed,
            lattice_rpc_tls: config.prov_rpc.tls,
            invocation_seed,
            cluster_issuers: config.identity.cluster_issuers.iter().cloned().collect(),
            default_rpc_timeout_ms: config.rpc_timeout.as_millis() as u64,
            structured_logging: config.structured_logging,
            log_level: None,
            js_domain: config.js_domain.clone(),
            otel_config: OtelConfig {
                traces_exporter: config.telemetry.given_exporter.clone(),
                exporter_otlp_endpoint: config.telemetry.given_endpoint.clone(),
            },
        })
    }

    /// The HostData object for one instance.
    pub fn for_instance<'a>(&'a self, instance: InstanceData<'a>) -> HostData<'a> {
        HostData {
            host_id: &self.host_id,
            lattice_rpc_prefix: &self.lattice_rpc_prefix,
            link_name: instance.link_name,
            lattice_rpc_user_jwt: instance.user_jwt.unwrap_or(&self.lattice_rpc_user_jwt),
            lattice_rpc_user_seed: instance.user_seed.unwrap_or(&self.lattice_rpc_user_seed),
            lattice_rpc_url: &self.lattice_rpc_url,
            lattice_rpc_tls: self.lattice_rpc_tls,
            provider_key: instance.provider_key,
            invocation_seed: &self.invocation_seed,
            env_values: serde_json::Map::new(),
            instance_id: instance.instance_id,
            link_definitions: instance.links,
            cluster_issuers: &self.cluster_issuers,
            config_json: instance.config_json,
            default_rpc_timeout_ms: self.default_rpc_timeout_ms,
            structured_logging: self.structured_logging,
            log_level: self.log_level.as_deref(),
            otel_config: self.otel_config.clone(),
            js_domain: self.js_domain.as_deref(),
        }
    }
}

impl HostData<'_> {
    /// The stdin line: standard base64 (padded) of the JSON, then CRLF as the Rust host writes
    /// it (providers trim the line).
    pub fn to_stdin_line(&self) -> Result<String, serde_json::Error> {
        let json = serde_json::to_vec(self)?;
        Ok(format!("{}\r\n", STANDARD.encode(json)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_field_is_present_and_the_line_decodes() {
        let base = HostDataBase {
            host_id: "NHOST".into(),
            lattice_rpc_prefix: "lat".into(),
            lattice_rpc_url: "nats://127.0.0.1:4222".into(),
            invocation_seed: "SCSEED".into(),
            cluster_issuers: vec!["CKEY".into()],
            default_rpc_timeout_ms: 2000,
            otel_config: OtelConfig {
                traces_exporter: Some("otlp".into()),
                exporter_otlp_endpoint: Some("http://collector:4318".into()),
            },
            ..HostDataBase::default()
        };
        let link = LinkDefinition {
            actor_id: "Mactor".into(),
            provider_id: "Vprov".into(),
            link_name: "default".into(),
            contract_id: "wasmcloud:keyvalue".into(),
            values: [("k".to_string(), "v".to_string())].into(),
        };
        let links = [link];
        let data = base.for_instance(InstanceData {
            provider_key: "Vprov",
            link_name: "default",
            instance_id: "i-1",
            config_json: Some("{\"a\":1}"),
            links: &links,
            user_jwt: None,
            user_seed: None,
        });
        let line = data.to_stdin_line().unwrap();
        assert!(line.ends_with("\r\n"));
        let json: serde_json::Value = serde_json::from_slice(&STANDARD.decode(line.trim()).unwrap()).unwrap();
        for field in [
            "host_id",
            "lattice_rpc_prefix",
            "link_name",
            "lattice_rpc_user_jwt",
            "lattice_rpc_user_seed",
            "lattice_rpc_url",
            "provider_key",
            "invocation_seed",
            "env_values",
            "instance_id",
            "link_definitions",
            "cluster_issuers",
            "default_rpc_timeout_ms",
            "structured_logging",
            "otel_config",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["config_json"], "{\"a\":1}");
        assert_eq!(json["link_definitions"][0]["actor_id"], "Mactor");
        assert_eq!(json["link_definitions"][0]["values"]["k"], "v");
        assert_eq!(json["cluster_issuers"][0], "CKEY");
        assert_eq!(json["invocation_seed"], "SCSEED");
        assert_eq!(json["otel_config"]["traces_exporter"], "otlp");
        assert_eq!(json["otel_config"]["exporter_otlp_endpoint"], "http://collector:4318");
    }

    #[test]
    fn scoped_credentials_replace_the_base_ones() {
        let base = HostDataBase {
            lattice_rpc_user_jwt: "host-jwt".into(),
            lattice_rpc_user_seed: "host-seed".into(),
            ..HostDataBase::default()
        };
        let data = base.for_instance(InstanceData {
            provider_key: "V",
            link_name: "default",
            instance_id: "i",
            config_json: None,
            links: &[],
            user_jwt: Some("own-jwt"),
            user_seed: Some("own-seed"),
        });
        assert_eq!(
            (data.lattice_rpc_user_jwt, data.lattice_rpc_user_seed),
            ("own-jwt", "own-seed")
        );
        let json = serde_json::to_value(&data).unwrap();
        assert!(json.get("config_json").is_none());
    }
}
