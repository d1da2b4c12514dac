//! The wasmCloud 0.82 command line beyond what `config.rs`'s clap attributes can say. Shared,
//! start-up only: it runs before either plane exists and never touches the data path.
//!
//! What lives here:
//! - the 0.82 flags `config::HostArgs` flattens in from [`CompatArgs`]: the default NATS credentials
//!   (`--nats-jwt`, `--nats-seed`), one registry's OCI credentials, the policy and
//!   OpenTelemetry flags (read by `control::policy` and `telemetry`), and those accepted for
//!   compatibility that this host does not act on (config service, IPv6);
//! - second environment names clap cannot attach to an argument: 0.82's misspelt
//!   `WASMCOULD_NATS_SEED`, and the `OCI_REGISTRY*` names this host read before it read 0.82's
//!   `WASMCLOUD_OCI_REGISTRY*`;
//! - how the ctl, rpc and prov-rpc connections fall back to one another and to the default
//!   credentials;
//! - `--log-level` parsed as 0.82 parses it, and `RUST_LOG` layered on top of it;
//! - the names for the one start-up warning about what was given and is not acted on.
//!
//! It never reads the process environment: [`Config::from_args`](crate::config::Config::from_args)
//! passes it in, so tests need not change it (clap still reads the `env = …` names itself).

use anyhow::{anyhow, bail, Result};
use clap::Args as ClapArgs;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::EnvFilter;

use crate::config_nats::ConnArgs;

/// 0.82's name for the `--nats-seed` variable, misspelt there; read beside `WASMCLOUD_NATS_SEED`.
pub const NATS_SEED_ENV_082: &str = "WASMCOULD_NATS_SEED";
/// The names this host read the OCI credentials from before it read 0.82's `WASMCLOUD_OCI_*`
/// (registry, user, password); still read when the 0.82 names are not set.
pub const OCI_ENV_EARLIER: [&str; 3] = ["OCI_REGISTRY", "OCI_REGISTRY_USER", "OCI_REGISTRY_PASSWORD"];
/// Prefix of the OpenTelemetry variables (those the exporters do not read are named in the
/// start-up warning).
pub const OTEL_ENV_PREFIX: &str = "OTEL_";
/// Directives after `--log-level` that quiet chatty crates; `RUST_LOG` comes after them, so it
/// can turn them up again.
const LOG_QUIET_DIRECTIVES: [&str; 2] = ["async_nats=warn", "cranelift_codegen=warn"];

/// Where and how long to ask the policy service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// `--policy-topic`: requests go here.
    pub topic: String,
    /// `--policy-changes-topic`: changed decisions are announced here.
    pub changes_topic: Option<String>,
    /// `--policy-timeout-ms`: no reply within it denies.
    pub timeout: std::time::Duration,
}

/// Registry credentials given on the command line.
#[derive(Debug, Clone)]
pub struct OciCredential {
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// The 0.82 flags kept out of `config.rs` (flattened into `config::HostArgs`).
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct CompatArgs {
    /// User JWT of the default NATS connection: the ctl, rpc and prov-rpc connections use it
    /// (with --nats-seed) unless they are given credentials of their own.
    #[arg(long = "nats-jwt", env = "WASMCLOUD_NATS_JWT", hide_env_values = true)]
    pub nats_jwt: Option<String>,
    /// User nkey seed (`SU…`) for --nats-jwt (0.82's misspelt `WASMCOULD_NATS_SEED` is read
    /// too).
    #[arg(long = "nats-seed", env = "WASMCLOUD_NATS_SEED", hide_env_values = true)]
    pub nats_seed: Option<String>,

    /// OCI registry whose credentials --oci-user and --oci-password give (`OCI_REGISTRY` is
    /// read too).
    #[arg(long = "oci-registry", env = "WASMCLOUD_OCI_REGISTRY")]
    pub oci_registry: Option<String>,
    /// User name for --oci-registry (`OCI_REGISTRY_USER` is read too).
    #[arg(long = "oci-user", env = "WASMCLOUD_OCI_REGISTRY_USER")]
    pub oci_user: Option<String>,
    /// Password for --oci-registry (`OCI_REGISTRY_PASSWORD` is read too).
    #[arg(
        long = "oci-password",
        env = "WASMCLOUD_OCI_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub oci_password: Option<String>,

    /// Policy service topic: every actor start, provider start and invocation is asked there
    /// first, and denied when it does not answer.
    #[arg(long = "policy-topic", env = "WASMCLOUD_POLICY_TOPIC")]
    pub policy_topic: Option<String>,
    /// Topic on which the policy service announces changed decisions (needs --policy-topic).
    #[arg(
        long = "policy-changes-topic",
        env = "WASMCLOUD_POLICY_CHANGES_TOPIC",
        requires = "policy_topic"
    )]
    pub policy_changes_topic: Option<String>,
    /// How long a policy request may take before the action is denied, ms (default 1000;
    /// needs --policy-topic).
    #[arg(
        long = "policy-timeout-ms",
        env = "WASMCLOUD_POLICY_TIMEOUT",
        requires = "policy_topic"
    )]
    pub policy_timeout_ms: Option<u64>,
    /// Ask a config service for settings at start (accepted for compatibility; not asked).
    #[arg(long = "config-service-enabled", env = "WASMCLOUD_CONFIG_SERVICE")]
    pub config_service_enabled: bool,
    /// Enable IPv6 addressing (accepted for compatibility; NATS hosts resolve to either family).
    #[arg(long = "enable-ipv6", env = "WASMCLOUD_ENABLE_IPV6")]
    pub enable_ipv6: bool,
    /// Trace exporter, `otlp` (accepted for compatibility; the host exports no traces yet).
    #[arg(long = "otel-traces-exporter", env = "OTEL_TRACES_EXPORTER")]
    pub otel_traces_exporter: Option<String>,
    /// Endpoint of the OTLP exporter (accepted for compatibility; the host exports no traces
    /// yet).
    #[arg(long = "otel-exporter-otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
}

/// `value` unless it is empty: an empty flag or variable counts as not given.
fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// The value of `key` in `env`, unless absent or empty.
fn env_value(env: &[(String, String)], key: &str) -> Option<String> {
    env.iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
}

/// Whether a connection was given credentials of its own (a JWT, a seed or a creds file).
fn has_credentials(conn: &ConnArgs) -> bool {
    conn.jwt.is_some() || conn.seed.is_some() || conn.credsfile.is_some()
}

/// `--nats-jwt` and `--nats-seed`, both or neither; the seed must be a user seed.
fn default_credentials(compat: &CompatArgs, env: &[(String, String)]) -> Result<Option<(String, String)>> {
    let seed = given(&compat.nats_seed).or_else(|| env_value(env, NATS_SEED_ENV_082));
    match (given(&compat.nats_jwt), seed) {
        (None, None) => Ok(None),
        (Some(jwt), Some(seed)) => {
            let key =
                nkeys::KeyPair::from_seed(&seed).map_err(|e| anyhow!("--nats-seed is not a valid nkey seed: {e}"))?;
            if key.key_pair_type() != nkeys::KeyPairType::User {
                bail!("--nats-seed must be a user seed (SU…)");
            }
            Ok(Some((jwt, seed)))
        }
        (Some(_), None) => bail!("--nats-jwt needs --nats-seed (WASMCLOUD_NATS_SEED or {NATS_SEED_ENV_082})"),
        (None, Some(_)) => bail!("--nats-seed needs --nats-jwt (WASMCLOUD_NATS_JWT)"),
    }
}

/// The ctl, rpc and prov-rpc settings after 0.82's fallbacks, in that order. prov-rpc takes the
/// host, the port and the credentials it was not given from rpc (0.82 hands its providers the
/// rpc connection); then each connection without credentials of its own uses
/// `--nats-jwt`/`--nats-seed`, as 0.82's ctl and rpc do. Addresses still left unset fall back to
/// `--nats-host`/`--nats-port` in `config.rs`; TLS stays each connection's own setting.
pub fn connections(conns: [ConnArgs; 3], compat: &CompatArgs, env: &[(String, String)]) -> Result<[ConnArgs; 3]> {
    let default_auth = default_credentials(compat, env)?;
    let [ctl, rpc, mut prov_rpc] = conns;
    prov_rpc.host = prov_rpc.host.or_else(|| rpc.host.clone());
    prov_rpc.port = prov_rpc.port.or(rpc.port);
    if !has_credentials(&prov_rpc) {
        prov_rpc.jwt = rpc.jwt.clone();
        prov_rpc.seed = rpc.seed.clone();
        prov_rpc.credsfile = rpc.credsfile.clone();
    }
    let mut conns = [ctl, rpc, prov_rpc];
    if let Some((jwt, seed)) = default_auth {
        for conn in conns.iter_mut().filter(|c| !has_credentials(c)) {
            conn.jwt = Some(jwt.clone());
            conn.seed = Some(seed.clone());
        }
    }
    Ok(conns)
}

/// The one registry's credentials: each of the three from its flag or 0.82 variable, else from
/// the earlier `OCI_REGISTRY*` name; all three or none.
pub fn oci_credential(compat: &CompatArgs, env: &[(String, String)]) -> Result<Option<OciCredential>> {
    let [registry_env, user_env, password_env] = OCI_ENV_EARLIER;
    let registry = given(&compat.oci_registry).or_else(|| env_value(env, registry_env));
    let username = given(&compat.oci_user).or_else(|| env_value(env, user_env));
    let password = given(&compat.oci_password).or_else(|| env_value(env, password_env));
    match (registry, username, password) {
        (Some(registry), Some(username), Some(password)) => Ok(Some(OciCredential {
            registry,
            username,
            password,
        })),
        (None, None, None) => Ok(None),
        _ => bail!("--oci-registry, --oci-user and --oci-password must be given together"),
    }
}

/// `--log-level` as 0.82 reads it (tracing's level names in any case, or 1–5 for error to
/// trace), returned as the lowercase name.
pub fn log_level(raw: &str) -> Result<String> {
    let level: tracing::Level = raw
        .parse()
        .map_err(|_| anyhow!("--log-level `{raw}` is not one of trace, debug, info, warn, error (or 5 to 1)"))?;
    Ok(level.as_str().to_ascii_lowercase())
}

/// The log filter: `level` for everything, the quiet crates, then `RUST_LOG`'s directives on top
/// (as 0.82 does; a directive for the same target replaces the earlier one). A `RUST_LOG` with a
/// directive that does not parse is ignored whole, and why is returned for the caller to log once
/// logging is up.
pub fn log_filter(level: &str, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let base = std::iter::once(level)
        .chain(LOG_QUIET_DIRECTIVES)
        .collect::<Vec<_>>()
        .join(",");
    let mut filter = EnvFilter::builder().parse_lossy(base);
    let Some(rust_log) = rust_log.filter(|r| !r.trim().is_empty()) else {
        return (filter, None);
    };
    let parsed: std::result::Result<Vec<Directive>, _> = rust_log
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::parse)
        .collect();
    match parsed {
        Ok(directives) => {
            for directive in directives {
                filter = filter.add_directive(directive);
            }
            (filter, None)
        }
        Err(e) => (filter, Some(format!("RUST_LOG `{rust_log}` ignored: {e}"))),
    }
}

/// How a given setting is named in the warning: by its variable when the value came from there
/// (a switch's variable counts when set), else by its flag.
fn setting_name(flag: &str, env_key: &str, value: Option<&str>, env: &[(String, String)]) -> String {
    match (env_value(env, env_key), value) {
        (Some(from_env), Some(value)) if from_env == value => env_key.to_string(),
        (Some(_), None) => env_key.to_string(),
        _ => flag.to_string(),
    }
}

/// The policy service settings, when `--policy-topic` is given.
pub fn policy_settings(compat: &CompatArgs) -> anyhow::Result<Option<PolicySettings>> {
    let Some(topic) = compat.policy_topic.clone().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    for (flag, subject) in [
        ("--policy-topic", Some(&topic)),
        ("--policy-changes-topic", compat.policy_changes_topic.as_ref()),
    ] {
        if let Some(subject) = subject {
            if subject.split('.').any(str::is_empty) || subject.contains(char::is_whitespace) {
                anyhow::bail!("{flag} `{subject}` is not a NATS subject");
            }
        }
    }
    let timeout_ms = compat
        .policy_timeout_ms
        .unwrap_or(crate::control::policy::POLICY_TIMEOUT_MS_DEFAULT);
    if timeout_ms == 0 {
        anyhow::bail!("--policy-timeout-ms must be at least 1");
    }
    Ok(Some(PolicySettings {
        topic,
        changes_topic: compat.policy_changes_topic.clone().filter(|t| !t.is_empty()),
        timeout: std::time::Duration::from_millis(timeout_ms),
    }))
}

/// The flags and variables given that this host accepts for 0.82 compatibility and does not act
/// on, in a stable order: the `--otel-*` flags, the config-service and IPv6
/// switches, then every other `OTEL_*` variable set (sorted). With `exporting` (telemetry on)
/// the `--otel-*` flags and the variables the exporters read act and are not named.
pub fn not_acted_on(compat: &CompatArgs, env: &[(String, String)], exporting: bool) -> Vec<String> {
    let options: [(&str, &str, Option<String>); 2] = [
        (
            "--otel-traces-exporter",
            "OTEL_TRACES_EXPORTER",
            given(&compat.otel_traces_exporter),
        ),
        (
            "--otel-exporter-otlp-endpoint",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            given(&compat.otel_exporter_otlp_endpoint),
        ),
    ];
    let switches: [(&str, &str, bool); 2] = [
        (
            "--config-service-enabled",
            "WASMCLOUD_CONFIG_SERVICE",
            compat.config_service_enabled,
        ),
        ("--enable-ipv6", "WASMCLOUD_ENABLE_IPV6", compat.enable_ipv6),
    ];
    let mut names: Vec<String> = Vec::new();
    for (flag, env_key, value) in &options {
        if exporting {
            break;
        }
        if let Some(value) = value {
            names.push(setting_name(flag, env_key, Some(value), env));
        }
    }
    for (flag, env_key, on) in switches {
        if on {
            names.push(setting_name(flag, env_key, None, env));
        }
    }
    let mut otel: Vec<&String> = env
        .iter()
        .filter(|(k, v)| k.starts_with(OTEL_ENV_PREFIX) && !v.is_empty() && !names.contains(k))
        .filter(|(k, _)| !(exporting && crate::telemetry::settings::OTEL_ENV_ACTED_ON.contains(&k.as_str())))
        .map(|(k, _)| k)
        .collect();
    otel.sort();
    otel.dedup();
    names.extend(otel.into_iter().cloned());
    names
}

/// The start-up warning: one line naming what was given and is not acted on (none when
/// everything given acts).
pub fn warn_not_acted_on(names: &[String]) {
    if !names.is_empty() {
        tracing::warn!(
            given = %names.join(", "),
            "accepted for wasmCloud 0.82 compatibility and not acted on by this host"
        );
    }
}

#[cfg(test)]
#[path = "config_compat_tests.rs"]
mod tests;
