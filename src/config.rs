//! Command line, environment and the validated [`Config`] — shared by both planes.
//!
//! The flags and environment variables are those of the wasmCloud 0.82 Rust host (`wasmcloud`
//! binary), so an operator swaps the binary name and nothing else. Flags of our own carry the
//! `SHARDHOST_` environment prefix. Every limit has its unit in its name and is checked once, in
//! [`Config::from_args`]; a bad value stops the process at start with a one-line reason. What of
//! the 0.82 command line needs more than a clap attribute (second variable names, connection
//! fallbacks, flags accepted and not acted on) is in [`crate::config_compat`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::config_compat::{self, CompatArgs};
pub use crate::config_compat::{OciCredential, PolicySettings};
use crate::config_nats::{port_parser, resolve_auth};
pub use crate::config_nats::{read_creds, ConnArgs, CtlConnArgs, NatsAuth, NatsEndpoint, ProvRpcConnArgs, RpcConnArgs};
use crate::identity::{self, Identity};
use crate::plane::{resolve_shard_io, ShardBackend, ShardIo};
use crate::runtime::limits::{
    instance_slots_for_memory, memory_keep_resident_for, EXECUTION_DEADLINE_MS_DEFAULT, INSTANCE_SLOTS_TOTAL_DEFAULT,
};

/// Default of `--http-header-read-timeout-ms`.
pub const HTTP_HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default NATS port when a host is named but no port.
pub const NATS_PORT_DEFAULT: u16 = 4222;
/// Default lattice (prefix) name.
pub const LATTICE_DEFAULT: &str = "default";
/// Default control topic prefix.
pub const CTL_TOPIC_PREFIX_DEFAULT: &str = "wasmbus.ctl";
/// Heartbeat period of the OTP and Rust hosts (PROTOCOL §10).
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// Shortest heartbeat period we accept (tests use short ones; below this it is a flood).
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 100;
/// Most shards one process may run (one per core; more is a configuration mistake).
pub const SHARD_COUNT_MAX: usize = 1024;
/// io_uring registered buffer memory per shard. glommio refuses below 512 KiB and the
/// memlock limit on our target machines is 8 MiB, so keep it small: shards do no file DMA.
pub const SHARD_IO_MEMORY_BYTES: usize = 512 << 10;
/// Capacity of each control → shard command channel. Commands are rare (actor start/stop,
/// routing snapshots); a full channel means a shard is stuck, which the control plane reports.
pub const SHARD_COMMAND_CHANNEL_CAPACITY: usize = 64;
/// Capacity of the shared shard → control report channel.
pub const SHARD_REPORT_CHANNEL_CAPACITY: usize = 1024;
/// How long a graceful stop waits for a shard thread to finish.
pub const SHARD_STOP_TIMEOUT_MS: u64 = 5_000;
/// Default of `--shard-inflight-max`: invocations one shard runs at once.
pub const SHARD_INFLIGHT_MAX_DEFAULT: u64 = 1_024;
/// Largest `--shard-inflight-max` accepted.
pub const SHARD_INFLIGHT_MAX_LIMIT: u64 = 1 << 20;
/// Default timeout of outbound RPC (`WASMCLOUD_RPC_TIMEOUT_MS`).
pub const RPC_TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// Default start-up budget for reaching NATS (an edge node starts NATS and the host together).
pub const NATS_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 30_000;
pub use crate::plane::DRAIN_TIMEOUT_MS_DEFAULT;
/// Longest `--drain-timeout-ms`.
pub const DRAIN_TIMEOUT_MS_MAX: u64 = 600_000;
/// Most replicas a JetStream stream may have (nats-server refuses more than 5).
pub const KV_REPLICAS_MAX: u8 = 5;
/// Default period of provider health checks (PROTOCOL §8.4).
pub const PROVIDER_HEALTH_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// Shortest accepted health-check period.
pub const PROVIDER_HEALTH_INTERVAL_MS_MIN: u64 = 100;
/// Default delay between a provider shutdown request and killing its process.
pub const PROVIDER_SHUTDOWN_DELAY_MS_DEFAULT: u64 = 300;
/// Longest wait for the managed nats-server to accept connections.
pub const MANAGED_NATS_START_TIMEOUT_MS: u64 = 10_000;
/// Default seconds before a shard releases the warm instances its recent concurrency did not
/// need (`--warm-release-secs`): long enough that a bursty caller finds them warm, short enough
/// that a quiet edge node gives the memory back within minutes.
pub const WARM_RELEASE_SECS_DEFAULT: u64 = 60;

/// `shardhost` — a wasmCloud 0.x lattice host (drop-in for the `wasmcloud` 0.82 binary).
#[derive(Debug, Parser)]
#[command(name = "shardhost", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Subcommands next to the default "run the host".
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host (the same as giving no subcommand).
    Up(Box<HostArgs>),
    /// Work with the claims embedded in actor modules.
    Claims {
        #[command(subcommand)]
        action: ClaimsCommand,
    },
}

/// `shardhost claims …`.
#[derive(Debug, Subcommand)]
pub enum ClaimsCommand {
    /// Print the decoded claims of a signed actor module and whether they are valid now
    /// (exit status 1 when they are not).
    Inspect {
        /// Path of the `.wasm` module.
        file: std::path::PathBuf,
    },
}

/// Host flags (wasmCloud 0.82 names and environment variables, plus our own).
#[derive(Debug, Clone, ClapArgs)]
pub struct HostArgs {
    /// Log level (trace, debug, info, warn, error).
    #[arg(
        long = "log-level",
        alias = "structured-log-level",
        env = "WASMCLOUD_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Emit logs as JSON lines.
    #[arg(
        long = "enable-structured-logging",
        alias = "structured-logging",
        env = "WASMCLOUD_STRUCTURED_LOGGING_ENABLED"
    )]
    pub structured_logging: bool,

    /// NATS server host. When neither this nor any other NATS address is given and nothing
    /// listens on 127.0.0.1:4222, shardhost starts its own nats-server with JetStream.
    #[arg(long = "nats-host", env = "NATS_HOST")]
    pub nats_host: Option<String>,
    /// NATS server port.
    #[arg(long = "nats-port", env = "NATS_PORT", value_parser = port_parser())]
    pub nats_port: Option<u16>,
    /// Path of the nats-server binary used for a managed local NATS.
    #[arg(long = "nats-server-bin", env = "SHARDHOST_NATS_SERVER")]
    pub nats_server_bin: Option<String>,

    /// The lattice this host joins (`WASMCLOUD_LATTICE_PREFIX` is read as an alias).
    #[arg(short = 'x', long = "lattice", alias = "lattice-prefix", env = "WASMCLOUD_LATTICE")]
    pub lattice: Option<String>,
    /// Seed of the host's server nkey (`SN…`); a new key is made at each start without it.
    #[arg(long = "host-seed", env = "WASMCLOUD_HOST_SEED", hide_env_values = true)]
    pub host_seed: Option<String>,
    /// Seed of the cluster nkey (`SC…`) that signs invocations; generated when absent.
    #[arg(long = "cluster-seed", env = "WASMCLOUD_CLUSTER_SEED", hide_env_values = true)]
    pub cluster_seed: Option<String>,
    /// Comma-separated cluster public keys (`C…`) whose signed invocations are accepted.
    #[arg(long = "cluster-issuers", env = "WASMCLOUD_CLUSTER_ISSUERS", value_delimiter = ',')]
    pub cluster_issuers: Vec<String>,
    /// Delay in ms between asking a provider to shut down and killing it.
    #[arg(long = "provider-shutdown-delay", env = "WASMCLOUD_PROV_SHUTDOWN_DELAY_MS", default_value_t = PROVIDER_SHUTDOWN_DELAY_MS_DEFAULT)]
    pub provider_shutdown_delay_ms: u64,
    /// Allow pulling OCI references tagged `latest`.
    #[arg(long = "allow-latest", env = "WASMCLOUD_OCI_ALLOW_LATEST")]
    pub allow_latest: bool,
    /// Comma-separated OCI registries that may be reached over plain HTTP.
    #[arg(
        long = "allowed-insecure",
        env = "WASMCLOUD_OCI_ALLOWED_INSECURE",
        value_delimiter = ','
    )]
    pub allowed_insecure: Vec<String>,
    /// JetStream domain of the lattice KV bucket.
    #[arg(long = "js-domain", alias = "wasmcloud-js-domain", env = "WASMCLOUD_JS_DOMAIN")]
    pub js_domain: Option<String>,
    /// Replicas of the lattice KV bucket when this host creates it (ours; 3 on a JetStream
    /// cluster keeps the bucket readable and writable when one node is lost). A bucket that
    /// exists already keeps its own setting.
    #[arg(long = "kv-replicas", env = "SHARDHOST_KV_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=KV_REPLICAS_MAX as i64))]
    pub kv_replicas: u8,
    /// Allow `file://` actor and provider references.
    #[arg(long = "allow-file-load", env = "WASMCLOUD_ALLOW_FILE_LOAD")]
    pub allow_file_load: bool,
    /// Longest run of one actor invocation, in ms.
    #[arg(long = "max-execution-time", alias = "max-time", env = "WASMCLOUD_MAX_EXECUTION_TIME_MS", default_value_t = EXECUTION_DEADLINE_MS_DEFAULT)]
    pub max_execution_time_ms: u64,
    /// Start actors that are not in the compile cache on code from the baseline compiler
    /// (Winch, ~4× faster to compile) and swap in Cranelift's code when it is ready (ours).
    #[arg(long = "baseline-compiler", env = "SHARDHOST_BASELINE_COMPILER", default_value_t = true, action = clap::ArgAction::Set)]
    pub baseline_compiler: bool,
    /// Extra host label `KEY=VALUE` (repeatable; `WASMCLOUD_LABEL_KEY=VALUE` works too).
    #[arg(short = 'l', long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    #[command(flatten)]
    pub ctl: CtlConnArgs,
    #[command(flatten)]
    pub rpc: RpcConnArgs,
    #[command(flatten)]
    pub prov_rpc: ProvRpcConnArgs,

    /// Prefix of every control-interface subject.
    #[arg(long = "ctl-topic-prefix", env = "WASMCLOUD_CTL_TOPIC_PREFIX", default_value = CTL_TOPIC_PREFIX_DEFAULT)]
    pub ctl_topic_prefix: String,
    /// Timeout of outbound RPC calls, in ms.
    #[arg(long = "rpc-timeout-ms", env = "WASMCLOUD_RPC_TIMEOUT_MS", default_value_t = RPC_TIMEOUT_MS_DEFAULT)]
    pub rpc_timeout_ms: u64,

    /// The rest of the 0.82 command line: default NATS credentials, OCI credentials, and the
    /// flags accepted and not acted on (`config_compat.rs`).
    #[command(flatten)]
    pub compat: CompatArgs,

    /// Number of data-plane shards (glommio executors, one pinned per core). Default: the cores
    /// this process may run on.
    #[arg(long = "shards", env = "SHARDHOST_SHARDS", value_parser = clap::value_parser!(u64).range(1..=SHARD_COUNT_MAX as u64))]
    pub shards: Option<u64>,
    /// Invocations one shard runs at once; beyond it the shard stops reading its socket and
    /// NATS hands the work to other subscribers (other shards and hosts) or queues it.
    #[arg(long = "shard-inflight-max", env = "SHARDHOST_SHARD_INFLIGHT_MAX", default_value_t = SHARD_INFLIGHT_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=SHARD_INFLIGHT_MAX_LIMIT))]
    pub shard_inflight_max: u64,
    /// Serve a guest's call to an actor running on this host on the calling shard, with the
    /// lattice's checks (call alias, policy) and no signing, socket or verification; `false`
    /// sends every call through NATS (as 0.82 does).
    #[arg(long = "local-calls", env = "SHARDHOST_LOCAL_CALLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_calls: bool,
    /// How long a client of the built-in HTTP server may take to send a request's head
    /// (request line and headers); a slower one (slowloris) is disconnected.
    #[arg(long = "http-header-read-timeout-ms", env = "SHARDHOST_HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = HTTP_HEADER_READ_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_read_timeout_ms: u64,
    /// Account seed (`SA…`) that signs a scoped NATS user JWT for each provider instance (its
    /// own subjects, actor RPC subjects and `_INBOX.>` only), handed over in HostData instead of
    /// the `--prov-rpc-*` credentials.
    #[arg(
        long = "prov-rpc-account-seed",
        env = "SHARDHOST_PROV_RPC_ACCOUNT_SEED",
        hide_env_values = true
    )]
    pub prov_rpc_account_seed: Option<String>,
    /// Address of the Prometheus text endpoint (`GET /metrics`), e.g. 127.0.0.1:9464; off
    /// unless given.
    #[arg(long = "metrics-addr", env = "SHARDHOST_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long the first NATS connection may be retried at start (with backoff, each attempt
    /// logged) before the host gives up; 0 = one attempt.
    #[arg(long = "nats-connect-timeout-ms", env = "SHARDHOST_NATS_CONNECT_TIMEOUT_MS", default_value_t = NATS_CONNECT_TIMEOUT_MS_DEFAULT)]
    pub nats_connect_timeout_ms: u64,
    /// At a stop (SIGTERM, SIGINT, ctl `stop`), how long in ms to wait for the invocations
    /// already accepted once the subscriptions are gone (ours).
    #[arg(long = "drain-timeout-ms", env = "SHARDHOST_DRAIN_TIMEOUT_MS", default_value_t = DRAIN_TIMEOUT_MS_DEFAULT)]
    pub drain_timeout_ms: u64,
    /// Period of provider health checks in ms (the first check comes after at most 5 s).
    #[arg(long = "provider-health-interval-ms", env = "SHARDHOST_PROVIDER_HEALTH_INTERVAL_MS", default_value_t = PROVIDER_HEALTH_INTERVAL_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(PROVIDER_HEALTH_INTERVAL_MS_MIN..))]
    pub provider_health_interval_ms: u64,
    /// Heartbeat period in ms.
    #[arg(long = "heartbeat-interval-ms", env = "SHARDHOST_HEARTBEAT_INTERVAL_MS", default_value_t = HEARTBEAT_INTERVAL_MS_DEFAULT)]
    pub heartbeat_interval_ms: u64,
    /// Invocations one warm actor instance serves before it is replaced; 0 = never (guest state
    /// may persist between calls), 1 = a fresh instance per call.
    #[arg(
        long = "instance-max-invocations",
        env = "SHARDHOST_INSTANCE_MAX_INVOCATIONS",
        default_value_t = 0
    )]
    pub instance_max_invocations: u64,
    /// Linear memory one actor instance may grow to, in MiB.
    #[arg(
        long = "actor-memory-max-mib",
        env = "SHARDHOST_ACTOR_MEMORY_MAX_MIB",
        default_value_t = 64
    )]
    pub actor_memory_max_mib: u64,
    /// Linear memory all actor instances together may hold, in MiB (0 = unbounded): past it a
    /// scale is refused with an error reply and a memory.grow fails, instead of an OOM kill.
    #[arg(long = "memory-budget-mib", env = "SHARDHOST_MEMORY_BUDGET_MIB", default_value_t = 0)]
    pub memory_budget_mib: u64,
    /// Instance slots the pooling allocator reserves (warm instances of all actors on all
    /// shards). Default: 1000, fewer on machines under 10 GiB of RAM (110 on 1 GiB), so the
    /// slots' fiber stacks and tables commit at most an eighth of it.
    #[arg(long = "instance-slots", env = "SHARDHOST_INSTANCE_SLOTS")]
    pub instance_slots: Option<u32>,
    /// Linear memory in MiB a warm instance may have grown to and still be reused (0 = any):
    /// one that grew past it is dropped when its call ends, its pages released, and replaced.
    #[arg(
        long = "instance-memory-keep-mib",
        env = "SHARDHOST_INSTANCE_MEMORY_KEEP_MIB",
        default_value_t = crate::runtime::limits::INSTANCE_MEMORY_KEEP_BYTES_DEFAULT >> 20
    )]
    pub instance_memory_keep_mib: u64,
    /// Seconds a shard's warm instances may sit unused before it releases those its recent
    /// concurrency did not need (keeping at least one per actor); 0 = never.
    #[arg(
        long = "warm-release-secs",
        env = "SHARDHOST_WARM_RELEASE_SECS",
        default_value_t = WARM_RELEASE_SECS_DEFAULT
    )]
    pub warm_release_secs: u64,
    /// Directory for compiled-module and pulled-module caches (reused across restarts).
    #[arg(long = "cache-dir", env = "SHARDHOST_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Friendly name shown by `wash get hosts` (a random adjective-noun-number by default).
    #[arg(long = "friendly-name", env = "SHARDHOST_FRIENDLY_NAME")]
    pub friendly_name: Option<String>,
    /// How the shards do I/O: `auto` (io_uring when a probe ring can be set up, else epoll
    /// with a warning), `io-uring` (refuse to start without it) or `epoll`.
    #[arg(long = "shard-io", env = "SHARDHOST_SHARD_IO", default_value = "auto")]
    pub shard_io: ShardIo,
    /// Extra CA certificates (PEM) trusted for TLS to NATS, beside the system's roots.
    #[arg(long = "tls-ca-file", env = "SHARDHOST_TLS_CA_FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) presented to NATS servers that verify clients.
    #[arg(long = "tls-client-cert", env = "SHARDHOST_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-client-cert.
    #[arg(long = "tls-client-key", env = "SHARDHOST_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<std::path::PathBuf>,
}

/// Where the host's NATS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsPlan {
    /// Every connection address was given or defaulted explicitly.
    Given,
    /// Nothing was given: use 127.0.0.1:4222 if something listens there, else start a managed
    /// nats-server with JetStream on a free loopback port.
    LocalOrManaged,
}

/// The validated configuration of one host process.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_level: String,
    pub structured_logging: bool,
    pub nats_plan: NatsPlan,
    pub nats_server_bin: Option<String>,
    pub ctl: NatsEndpoint,
    pub rpc: NatsEndpoint,
    pub prov_rpc: NatsEndpoint,
    pub lattice: String,
    pub ctl_topic_prefix: String,
    pub js_domain: Option<String>,
    /// Replicas of the lattice bucket if this host creates it (`--kv-replicas`).
    pub kv_replicas: u8,
    pub identity: Identity,
    pub labels: BTreeMap<String, String>,
    pub friendly_name: String,
    pub allow_latest: bool,
    pub allowed_insecure: Vec<String>,
    pub allow_file_load: bool,
    pub oci_credential: Option<OciCredential>,
    pub rpc_timeout: Duration,
    pub provider_shutdown_delay: Duration,
    pub provider_health_interval: Duration,
    /// Where the metrics endpoint listens (`--metrics-addr`); None = off.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long a stop waits for accepted invocations (`--drain-timeout-ms`).
    pub drain_timeout: Duration,
    /// How long warm instances may sit unused before a shard releases the ones it did not need
    /// (`--warm-release-secs`); `None` = never.
    pub warm_release: Option<Duration>,
    /// Start-up budget for the first NATS connection (`--nats-connect-timeout-ms`).
    pub nats_connect_timeout: Duration,
    /// Signs the providers' scoped NATS credentials (`--prov-rpc-account-seed`).
    pub prov_rpc_account: Option<std::sync::Arc<nkeys::KeyPair>>,
    pub max_execution_time: Duration,
    pub heartbeat_interval: Duration,
    pub shard_count: usize,
    pub shard_inflight_max: usize,
    /// `--local-calls`.
    pub local_calls: bool,
    /// `--http-header-read-timeout-ms`.
    pub http_header_read_timeout: Duration,
    /// Flags and variables given that are accepted for 0.82 compatibility and not acted on;
    /// logged in one warning at start.
    pub not_acted_on: Vec<String>,
    /// The policy service (`--policy-topic`); `None`: every action is permitted.
    pub policy: Option<PolicySettings>,
    /// OpenTelemetry export (`--otel-traces-exporter otlp`) and the warnings reading it gave.
    pub telemetry: crate::telemetry::TelemetryPlan,
    /// The shards' span pipelines, set by `main` once the exporters are built.
    pub shard_traces: Option<crate::telemetry::ShardExport>,
    /// Actor runtime limits (validated here, at start).
    pub runtime_limits: crate::runtime::RuntimeLimits,
    pub cache_dir: Option<std::path::PathBuf>,
    /// What `--shard-io` asked for, the backend it resolved to (io_uring probed once, here)
    /// and, when `auto` fell back to epoll, the warning to log.
    pub shard_io: ShardIo,
    pub shard_backend: ShardBackend,
    pub shard_io_warning: Option<String>,
    /// The TLS client settings every NATS connection uses when it asks for TLS or its server
    /// requires it (built at start, so a bad file stops the start).
    pub tls: std::sync::Arc<rustls::ClientConfig>,
}

fn parse_label(raw: &str) -> std::result::Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label `{raw}` is not KEY=VALUE")),
    }
}

/// A NATS subject token must be non-empty and free of wildcards, dots and whitespace.
fn check_subject_token(what: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
    {
        bail!("{what} `{value}` is not a valid NATS subject token");
    }
    Ok(())
}

/// A subject prefix may contain dots but no empty tokens or wildcards.
fn check_subject_prefix(what: &str, value: &str) -> Result<()> {
    for token in value.split('.') {
        check_subject_token(what, token).with_context(|| format!("{what} `{value}`"))?;
    }
    Ok(())
}

impl Config {
    /// Validate parsed arguments plus the environment (labels, lattice alias) into a config.
    /// `env` is passed in so tests need not touch the process environment.
    pub fn from_args(args: HostArgs, env: &[(String, String)]) -> Result<Config> {
        let lattice = args
            .lattice
            .clone()
            .or_else(|| env_get(env, "WASMCLOUD_LATTICE_PREFIX"))
            .unwrap_or_else(|| LATTICE_DEFAULT.to_string());
        check_subject_token("lattice", &lattice)?;
        check_subject_prefix("ctl topic prefix", &args.ctl_topic_prefix)?;
        if let Some(domain) = &args.js_domain {
            check_subject_token("JetStream domain", domain)?;
        }
        if args.heartbeat_interval_ms < HEARTBEAT_INTERVAL_MS_MIN {
            bail!("--heartbeat-interval-ms must be at least {HEARTBEAT_INTERVAL_MS_MIN}");
        }
        if args.drain_timeout_ms > DRAIN_TIMEOUT_MS_MAX {
            bail!("--drain-timeout-ms must be at most {DRAIN_TIMEOUT_MS_MAX}");
        }
        if args.rpc_timeout_ms == 0 {
            bail!("--rpc-timeout-ms must be greater than 0");
        }
        if args.max_execution_time_ms == 0 {
            bail!("--max-execution-time must be greater than 0");
        }
        let log_level = config_compat::log_level(&args.log_level)?;

        let identity = identity::Identity::new(
            args.host_seed.as_deref(),
            args.cluster_seed.as_deref(),
            &args.cluster_issuers,
        )?;

        let (ctl, rpc, prov_rpc, nats_plan) = resolve_endpoints(&args, env)?;
        let prov_rpc_account = match args.prov_rpc_account_seed.as_deref().filter(|s| !s.is_empty()) {
            Some(seed) => {
                let key = nkeys::KeyPair::from_seed(seed)
                    .ok()
                    .filter(|k| k.key_pair_type() == nkeys::KeyPairType::Account)
                    .ok_or_else(|| anyhow::anyhow!("--prov-rpc-account-seed must be an account seed (SA…)"))?;
                Some(std::sync::Arc::new(key))
            }
            None => None,
        };
        let labels = identity::host_labels(env, &args.labels);
        let friendly_name = args.friendly_name.clone().unwrap_or_else(identity::friendly_name);
        let shard_count = match args.shards {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
        .min(SHARD_COUNT_MAX);
        let runtime_limits = crate::runtime::RuntimeLimits {
            memory_bytes_max: args.actor_memory_max_mib.saturating_mul(1 << 20),
            memory_budget_bytes: args.memory_budget_mib.saturating_mul(1 << 20),
            instance_slots_total: args.instance_slots.unwrap_or_else(|| {
                machine_memory_bytes().map_or(INSTANCE_SLOTS_TOTAL_DEFAULT, instance_slots_for_memory)
            }),
            instance_memory_keep_bytes: args.instance_memory_keep_mib.saturating_mul(1 << 20),
            instance_max_invocations: args.instance_max_invocations,
            memory_keep_resident_bytes: memory_keep_resident_for(args.instance_max_invocations),
            execution_deadline_ms: args.max_execution_time_ms,
            baseline_compiler: args.baseline_compiler,
            ..Default::default()
        };
        runtime_limits.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let oci_credential = config_compat::oci_credential(&args.compat, env)?;
        let telemetry = crate::telemetry::plan(
            args.compat.otel_traces_exporter.as_deref(),
            args.compat.otel_exporter_otlp_endpoint.as_deref(),
            env,
        );
        let not_acted_on = config_compat::not_acted_on(&args.compat, env, telemetry.settings.is_some());
        let policy = config_compat::policy_settings(&args.compat)?;
        let (shard_backend, shard_io_warning) = resolve_shard_io(args.shard_io).map_err(anyhow::Error::msg)?;
        let tls = crate::tls::client_config(&crate::tls::TlsFiles {
            ca_file: args.tls_ca_file.clone(),
            client_cert: args.tls_client_cert.clone(),
            client_key: args.tls_client_key.clone(),
        })?;
        Ok(Config {
            log_level,
            structured_logging: args.structured_logging,
            nats_plan,
            nats_server_bin: args.nats_server_bin,
            ctl,
            rpc,
            prov_rpc,
            lattice,
            ctl_topic_prefix: args.ctl_topic_prefix,
            js_domain: args.js_domain,
            kv_replicas: args.kv_replicas,
            identity,
            labels,
            friendly_name,
            allow_latest: args.allow_latest,
            allowed_insecure: args.allowed_insecure.into_iter().filter(|s| !s.is_empty()).collect(),
            allow_file_load: args.allow_file_load,
            oci_credential,
            rpc_timeout: Duration::from_millis(args.rpc_timeout_ms),
            provider_shutdown_delay: Duration::from_millis(args.provider_shutdown_delay_ms),
            provider_health_interval: Duration::from_millis(args.provider_health_interval_ms),
            nats_connect_timeout: Duration::from_millis(args.nats_connect_timeout_ms),
            drain_timeout: Duration::from_millis(args.drain_timeout_ms),
            warm_release: (args.warm_release_secs > 0).then(|| Duration::from_secs(args.warm_release_secs)),
            metrics_addr: args.metrics_addr,
            prov_rpc_account,
            max_execution_time: Duration::from_millis(args.max_execution_time_ms),
            heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
            shard_count,
            shard_inflight_max: args.shard_inflight_max as usize,
            local_calls: args.local_calls,
            http_header_read_timeout: Duration::from_millis(args.http_header_read_timeout_ms),
            not_acted_on,
            policy,
            telemetry,
            shard_traces: None,
            runtime_limits,
            cache_dir: args.cache_dir,
            shard_io: args.shard_io,
            shard_backend,
            shard_io_warning,
            tls,
        })
    }

    /// Point every connection that used the default address at a managed or local server.
    pub fn use_local_nats(&mut self, host: &str, port: u16) {
        for ep in [&mut self.ctl, &mut self.rpc, &mut self.prov_rpc] {
            ep.host = host.to_string();
            ep.port = port;
        }
    }
}

fn env_get(env: &[(String, String)], key: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

type Endpoints = (NatsEndpoint, NatsEndpoint, NatsEndpoint, NatsPlan);

fn resolve_endpoints(args: &HostArgs, env: &[(String, String)]) -> Result<Endpoints> {
    let given = [
        args.ctl.clone().into(),
        args.rpc.clone().into(),
        args.prov_rpc.clone().into(),
    ];
    let [ctl, rpc, prov_rpc] = config_compat::connections(given, &args.compat, env)?;
    let conns: [(ConnArgs, &str); 3] = [(ctl, "ctl"), (rpc, "rpc"), (prov_rpc, "prov-rpc")];
    let any_given = args.nats_host.is_some()
        || args.nats_port.is_some()
        || conns.iter().any(|(c, _)| c.host.is_some() || c.port.is_some());
    let default_host = args.nats_host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
    let default_port = args.nats_port.unwrap_or(NATS_PORT_DEFAULT);
    let endpoint = |(c, what): &(ConnArgs, &str)| -> Result<NatsEndpoint> {
        let host = c.host.clone().unwrap_or_else(|| default_host.clone());
        if host.is_empty() {
            bail!("--{what}-host must not be empty");
        }
        Ok(NatsEndpoint {
            host,
            port: c.port.unwrap_or(default_port),
            auth: resolve_auth(c, what)?,
            tls: c.tls,
        })
    };
    let plan = if any_given {
        NatsPlan::Given
    } else {
        NatsPlan::LocalOrManaged
    };
    Ok((endpoint(&conns[0])?, endpoint(&conns[1])?, endpoint(&conns[2])?, plan))
}

/// The machine's RAM (`MemTotal` of /proc/meminfo), or `None` where it cannot be read.
fn machine_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
