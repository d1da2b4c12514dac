//! `shardhost-loadtest`: drives a wasmCloud 0.x lattice with signed invocations and reports
//! throughput, latency percentiles and CPU per invocation as JSON (loadtest/README.md).
//!
//! Subcommands: `gen-seed` (keys), `prepare-echo` (compile and sign the echo actor),
//! `start-actor` (launch it on a host over the control interface), `start-provider` and
//! `put-link` (the actor-to-provider scenario's provider and link), `start-times` (the `start`
//! scenario), `run` (the load generator), `responder` (the raw floor), `http` and
//! `http-floor` (the HTTP scenario and its bare floor), `summarize` (the table) and `plot`
//! (the latency spectra). A separate binary outside both planes of the
//! host; it uses the library's own signer and encoder so it sends exactly what a wasmCloud
//! host or provider would.

// Bad input, a dead NATS server or a missing process is an error message, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod ctl;
#[cfg(test)]
mod e2e;
mod echo;
mod engine;
mod error;
mod http;
mod otlp_sink;
mod plot;
mod policy;
mod pool;
mod procstat;
mod providers;
mod raw;
mod schedule;
mod starts;
mod stats;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};

use crate::echo::{SeedKind, ECHO_CAP_DEFAULT};
use crate::engine::{RunConfig, DURATION_MS_MAX};
use crate::error::LoadtestError;
use crate::pool::{Origin, POOL_INVOCATIONS_DEFAULT};
use crate::schedule::Pacing;

/// Longest `start-actor --wait-secs`.
const START_WAIT_SECS_MAX: u64 = 3_600;
/// Default open-loop cap on outstanding requests.
const OUTSTANDING_MAX_DEFAULT: usize = 10_000;
const MILLIS_PER_SEC: f64 = 1_000.0;

#[derive(Debug, Parser)]
#[command(
    name = "shardhost-loadtest",
    version,
    about = "Load generator for wasmCloud 0.x lattices (shardhost)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new nkey seed on stdout (its public key on stderr).
    GenSeed {
        #[arg(value_enum)]
        kind: SeedKind,
    },
    /// Compile the echo actor and sign it; prints its public key (M…) on stdout.
    PrepareEcho(PrepareEchoArgs),
    /// Launch an actor from a file on a host and wait for it to start; prints its key.
    StartActor(StartActorArgs),
    /// The `start` scenario: time `la` → start event for an actor on one host, first and
    /// again after each of `--rounds` stops (JSON on stdout or --json).
    StartTimes {
        #[command(flatten)]
        start: StartActorArgs,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Write the JSON report here instead of stdout.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Start a capability provider from an archive on a host and wait for its
    /// `provider_started` and first passed health check; prints its key (V…). For the
    /// actor-to-provider scenario.
    StartProvider(StartProviderArgs),
    /// Link an actor to a provider (`linkdefs.put`), acked.
    PutLink(PutLinkArgs),
    /// Generate load and report (JSON on stdout or --json, a summary on stderr).
    Run(Box<RunArgs>),
    /// The `raw` floor's trivial responder: answer every request on a subject with its own
    /// bytes (prints "ready" on stdout once subscribed; stops on SIGTERM/SIGINT or --max-secs).
    Responder(ResponderArgs),
    /// A policy service that permits every request on --topic (prints "ready" once
    /// subscribed; stops on SIGTERM/SIGINT): the `policy` echo variant's service.
    PolicyResponder {
        #[arg(long)]
        nats: String,
        #[arg(long)]
        topic: String,
    },
    /// The `http` scenario: a closed loop of keep-alive connections sending `GET --path` to
    /// --address (JSON report on stdout or --json, as `run`'s).
    Http(HttpArgs),
    /// The `http` scenario's floor: hyper answering every request 200 with a fixed body on
    /// --threads tokio workers (prints "ready <address>"; stops on SIGTERM/SIGINT).
    HttpFloor {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// An OTLP/HTTP collector that accepts every export and counts spans and log records per
    /// host (prints "ready <url>" once listening; on SIGTERM/SIGINT writes the counts as JSON
    /// to --json or stdout): the tracing variants' collector.
    OtlpSink {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Write claims for a provider origin key into a lattice's bucket, so a host with a policy
    /// service knows the load's caller.
    PutClaims {
        #[arg(long)]
        nats: String,
        #[arg(long)]
        lattice: String,
        /// The origin's public key (V…), as given to `run --origin-key`.
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "wasmcloud:httpserver")]
        contract: String,
    },
    /// Print the suite's table (medians per scenario and pacing, against the raw floor) from
    /// the JSON reports in a results directory.
    Summarize {
        /// Directory of `{scenario}-….json` reports.
        dir: PathBuf,
    },
    /// Draw the latency percentile spectrum of a results directory's reports: one SVG per
    /// pacing (`latency-closed-64.svg`…), one line per scenario with its rounds merged,
    /// written into the directory; prints their paths.
    Plot {
        /// Directory of `{scenario}-….json` reports.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ResponderArgs {
    /// NATS server, e.g. 127.0.0.1:4222 or nats://host:port.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    /// Subject to serve (also its queue group); `run --raw-subject` sends to it.
    #[arg(long, default_value = "shardhost.loadtest.raw")]
    subject: String,
    /// Stop after this many seconds at the latest.
    #[arg(long = "max-secs", default_value_t = 3_600)]
    max_secs: u64,
}

#[derive(Debug, clap::Args)]
struct PrepareEchoArgs {
    /// Where to write the signed module.
    #[arg(long)]
    out: PathBuf,
    /// Sign this WAT module instead of the echo (e.g. loadtest/http_echo.wat for `http`).
    #[arg(long)]
    wat: Option<PathBuf>,
    /// Account seed (SA…) that signs the claims; a new account when absent.
    #[arg(long = "issuer-seed", env = "SHARDHOST_ISSUER_SEED", hide_env_values = true)]
    issuer_seed: Option<String>,
    #[arg(long, default_value = "loadtest-echo")]
    name: String,
    /// Capability claims (repeatable).
    #[arg(long = "cap", default_values_t = [ECHO_CAP_DEFAULT.to_string()])]
    caps: Vec<String>,
    #[arg(long = "call-alias")]
    call_alias: Option<String>,
}

#[derive(Debug, clap::Args)]
struct StartActorArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The signed actor module (the host needs --allow-file-load).
    #[arg(long)]
    file: PathBuf,
    #[arg(long, default_value_t = 1)]
    count: u16,
}

/// Which host of which lattice a control command goes to, and how long it may take.
#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// NATS server, e.g. 127.0.0.1:4222 or nats://host:port.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value = "default")]
    lattice: String,
    /// Host id (N…); default: the first host answering ping.hosts.
    #[arg(long)]
    host: Option<String>,
    #[arg(long = "ctl-prefix", default_value = "wasmbus.ctl")]
    ctl_prefix: String,
    /// Bound on the whole command, seconds.
    #[arg(long = "wait-secs", default_value_t = 60)]
    wait_secs: u64,
}

impl TargetArgs {
    fn target(&self) -> ctl::HostTarget {
        ctl::HostTarget {
            nats_url: self.nats.clone(),
            lattice: self.lattice.clone(),
            ctl_prefix: self.ctl_prefix.clone(),
            host_id: self.host.clone(),
        }
    }

    /// `--wait-secs` within 1 ..= [`START_WAIT_SECS_MAX`].
    fn wait(&self) -> Result<Duration, LoadtestError> {
        if self.wait_secs == 0 || self.wait_secs > START_WAIT_SECS_MAX {
            return Err(LoadtestError::Arg {
                flag: "--wait-secs",
                reason: format!("1 to {START_WAIT_SECS_MAX}"),
            });
        }
        Ok(Duration::from_secs(self.wait_secs))
    }
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("pacing").required(true).args(["in_flight", "rate"])))]
struct RunArgs {
    /// NATS server, e.g. 127.0.0.1:4222 or nats://host:port.
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value = "default")]
    lattice: String,
    /// Target actor public key (M…).
    #[arg(long)]
    actor: String,
    /// Cluster seed (SC…) that signs every invocation; the host must trust its public key.
    #[arg(long = "cluster-seed", env = "WASMCLOUD_CLUSTER_SEED", hide_env_values = true)]
    cluster_seed: String,
    /// Send as a provider of this contract (e.g. wasmcloud:httpserver) instead of as an actor.
    #[arg(long = "origin-contract")]
    origin_contract: Option<String>,
    /// Link name of the provider origin.
    #[arg(long = "origin-link", default_value = "default")]
    origin_link: String,
    /// The origin's public key (default: a new one per run), e.g. one whose claims
    /// `put-claims` wrote.
    #[arg(long = "origin-key")]
    origin_key: Option<String>,
    #[arg(long, default_value = "HttpServer.HandleRequest")]
    operation: String,
    #[arg(long = "payload-bytes", default_value_t = 64)]
    payload_bytes: usize,
    /// NATS connections, used round-robin.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Closed loop: keep this many requests outstanding.
    #[arg(long = "in-flight")]
    in_flight: Option<usize>,
    /// Open loop: invocations per second on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests outstanding (past it the sender waits; the wait is latency).
    #[arg(long = "outstanding-max", default_value_t = OUTSTANDING_MAX_DEFAULT)]
    outstanding_max: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long = "timeout-ms", default_value_t = 2_000)]
    timeout_ms: u64,
    /// Invocations signed before the run and cycled through.
    #[arg(long = "pool", default_value_t = POOL_INVOCATIONS_DEFAULT)]
    pool: usize,
    /// Host process whose CPU time is read from /proc before and after the window.
    #[arg(long = "host-pid")]
    host_pid: Option<u32>,
    /// Require every ok reply to carry the payload back (the echo actor does).
    #[arg(long = "verify-echo")]
    verify_echo: bool,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `raw` floor: send to this subject (served by `responder`) instead of the actor's;
    /// `--actor` then only names the invocations' target.
    #[arg(long = "raw-subject")]
    raw_subject: Option<String>,
    /// With --raw-subject: the subject is served by an actor through the built-in messaging
    /// provider (a message round trip), not by the floor's responder; reported as scenario
    /// `messaging`.
    #[arg(long, requires = "raw_subject")]
    messaging: bool,
    /// A progress line on stderr (ok so far, rate, errors, p50/p99) every this many seconds of
    /// the window; 0 = none.
    #[arg(long = "progress-secs", default_value_t = 10)]
    progress_secs: u64,
}

#[derive(Debug, clap::Args)]
struct StartProviderArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// A provider archive file (the host needs --allow-file-load) …
    #[arg(long, conflicts_with = "reference", required_unless_present = "reference")]
    file: Option<PathBuf>,
    /// … or an OCI reference the host pulls.
    #[arg(long = "ref")]
    reference: Option<String>,
    #[arg(long = "link-name", default_value = "default")]
    link_name: String,
    /// `HostData.config_json` for the provider.
    #[arg(long = "config-json")]
    config_json: Option<String>,
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// The server, e.g. 127.0.0.1:8080.
    #[arg(long)]
    address: std::net::SocketAddr,
    #[arg(long, default_value = "/")]
    path: String,
    /// Connections, each with one request outstanding.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warmup seconds (sent, not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long = "timeout-ms", default_value_t = 5_000)]
    timeout_ms: u64,
    /// The server's pid, for its CPU per request.
    #[arg(long = "host-pid")]
    host_pid: Option<u32>,
    /// Report this run as the floor (`scenario: raw`) that `summarize` divides by.
    #[arg(long)]
    floor: bool,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct PutLinkArgs {
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value = "default")]
    lattice: String,
    /// The calling actor (M…).
    #[arg(long)]
    actor: String,
    /// The provider (V…).
    #[arg(long)]
    provider: String,
    #[arg(long)]
    contract: String,
    #[arg(long = "link-name", default_value = "default")]
    link_name: String,
    #[arg(long = "ctl-prefix", default_value = "wasmbus.ctl")]
    ctl_prefix: String,
    /// A link value `KEY=VALUE` (repeatable), e.g. `address=127.0.0.1:8080`.
    #[arg(long = "value", value_parser = key_value)]
    values: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

impl StartProviderArgs {
    fn request(&self) -> Result<providers::StartProvider, LoadtestError> {
        let provider_ref = match (&self.file, &self.reference) {
            (Some(file), _) => ctl::file_ref(file)?,
            (None, Some(reference)) => reference.clone(),
            (None, None) => {
                return Err(LoadtestError::Arg {
                    flag: "--file",
                    reason: "a provider archive (--file) or reference (--ref) is needed".to_string(),
                })
            }
        };
        Ok(providers::StartProvider {
            target: self.target.target(),
            provider_ref,
            link_name: self.link_name.clone(),
            configuration: self.config_json.clone(),
            wait: self.target.wait()?,
        })
    }
}

impl StartActorArgs {
    fn request(&self) -> Result<ctl::StartActor, LoadtestError> {
        Ok(ctl::StartActor {
            target: self.target.target(),
            actor_ref: ctl::file_ref(&self.file)?,
            count: self.count.max(1),
            wait: self.target.wait()?,
        })
    }
}

fn seconds_to_ms(flag: &'static str, secs: f64) -> Result<u64, LoadtestError> {
    let ms = secs * MILLIS_PER_SEC;
    if !ms.is_finite() || ms < 0.0 || ms > DURATION_MS_MAX as f64 {
        return Err(LoadtestError::Arg {
            flag,
            reason: format!(
                "{secs} is not a number of seconds between 0 and {}",
                DURATION_MS_MAX / 1000
            ),
        });
    }
    Ok(ms.round() as u64)
}

impl RunArgs {
    fn config(&self) -> Result<RunConfig, LoadtestError> {
        let pacing = match (self.in_flight, self.rate) {
            (Some(in_flight_count), _) => Pacing::Closed { in_flight_count },
            (None, Some(rate_per_sec)) => Pacing::Open {
                rate_per_sec,
                outstanding_max: self.outstanding_max,
            },
            (None, None) => {
                return Err(LoadtestError::Arg {
                    flag: "--in-flight/--rate",
                    reason: "one of them is required".to_string(),
                })
            }
        };
        let mut origin = match &self.origin_contract {
            Some(contract_id) => Origin::new_provider(contract_id, &self.origin_link),
            None => Origin::new_actor(),
        };
        if let Some(key) = &self.origin_key {
            origin.public_key = key.clone();
        }
        Ok(RunConfig {
            nats_url: self.nats.clone(),
            lattice: self.lattice.clone(),
            actor: self.actor.clone(),
            operation: self.operation.clone(),
            payload_bytes: self.payload_bytes,
            connections: self.connections,
            pacing,
            duration_ms: seconds_to_ms("--duration", self.duration)?,
            warmup_ms: seconds_to_ms("--warmup", self.warmup)?,
            timeout_ms: self.timeout_ms,
            pool_invocations: self.pool,
            origin,
            host_pid: self.host_pid,
            verify_echo: self.verify_echo,
            raw_subject: self.raw_subject.clone(),
            raw_is_messaging: self.messaging,
            progress_every: Duration::from_secs(self.progress_secs),
        })
    }
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn runtime() -> Result<tokio::runtime::Runtime, LoadtestError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadtestError::Runtime)
}

async fn run(args: &RunArgs) -> Result<(), LoadtestError> {
    let config = args.config()?;
    let cluster_key = nkeys::KeyPair::from_seed(args.cluster_seed.trim()).map_err(|e| LoadtestError::Arg {
        flag: "--cluster-seed",
        reason: e.to_string(),
    })?;
    let report = engine::run(&config, &cluster_key).await?;
    let json = engine::report_json(&report);
    match &args.json {
        Some(path) => std::fs::write(path, json).map_err(|e| LoadtestError::io(path, e))?,
        None => print!("{json}"),
    }
    eprint!("{}", stats::human_summary(&report));
    Ok(())
}

/// The table of every run report in `dir` (other JSON files are skipped).
/// `(file name, text)` of every `*.json` file in `dir`.
fn json_files(dir: &std::path::Path) -> Result<Vec<(String, String)>, LoadtestError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LoadtestError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| LoadtestError::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).map_err(|e| LoadtestError::io(&path, e))?;
            files.push((name, text));
        }
    }
    Ok(files)
}

fn no_reports(dir: &std::path::Path) -> LoadtestError {
    LoadtestError::Arg {
        flag: "DIR",
        reason: format!("no run reports (*.json) in {}", dir.display()),
    }
}

fn summarize(dir: &std::path::Path) -> Result<String, LoadtestError> {
    let reports: Vec<_> = json_files(dir)?
        .iter()
        .filter_map(|(name, text)| summary::read_report(name, text))
        .collect();
    if reports.is_empty() {
        return Err(no_reports(dir));
    }
    Ok(summary::table(&summary::rows(&reports)))
}

/// Write one latency-spectrum SVG per pacing into `dir`; their paths.
fn plot(dir: &std::path::Path) -> Result<Vec<PathBuf>, LoadtestError> {
    let reports: Vec<(String, serde_json::Value)> = json_files(dir)?
        .into_iter()
        .filter_map(|(name, text)| Some((name, serde_json::from_str(&text).ok()?)))
        .collect();
    let charts = plot::charts(&reports);
    if charts.is_empty() {
        return Err(no_reports(dir));
    }
    let mut written = Vec::new();
    for chart in charts {
        let title = format!("latency, {} ({})", chart.pacing, dir.display());
        let path = dir.join(chart.file_name());
        std::fs::write(&path, plot::render_svg(&title, &chart)).map_err(|e| LoadtestError::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

fn execute(command: Command) -> Result<(), LoadtestError> {
    match command {
        Command::GenSeed { kind } => {
            let (seed, public_key) = echo::gen_seed(kind)?;
            println!("{seed}");
            eprintln!("public key: {public_key}");
        }
        Command::PrepareEcho(args) => {
            let wat = match &args.wat {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| LoadtestError::io(path, e))?),
                None => None,
            };
            let echo = echo::prepare_echo(
                &args.out,
                wat.as_deref(),
                args.issuer_seed.as_deref(),
                &args.name,
                &args.caps,
                args.call_alias.as_deref(),
                unix_now_secs(),
            )?;
            if args.issuer_seed.is_none() {
                eprintln!("signed by a new account {} (its seed was not kept)", echo.issuer);
            }
            eprintln!("wrote {}", args.out.display());
            println!("{}", echo.public_key);
        }
        Command::StartActor(args) => {
            let request = args.request()?;
            let started = runtime()?.block_on(ctl::start_actor(&request))?;
            eprintln!(
                "started on host {} in {} ms",
                started.host_id,
                started.elapsed.as_millis()
            );
            println!("{}", started.public_key);
        }
        Command::StartTimes { start, rounds, json } => {
            let request = start.request()?;
            let times = runtime()?.block_on(starts::run(&request, rounds))?;
            let text = serde_json::to_string_pretty(&times).map_err(|e| LoadtestError::BadReply {
                what: "the start times".to_string(),
                reason: e.to_string(),
            })?;
            match json {
                Some(path) => std::fs::write(&path, text + "\n").map_err(|e| LoadtestError::io(&path, e))?,
                None => println!("{text}"),
            }
            eprintln!(
                "first start {} ms; again after a stop {:?} ms (median {:?})",
                times.first_start_ms, times.start_again_ms, times.start_again_median_ms
            );
        }
        Command::StartProvider(args) => {
            let request = args.request()?;
            println!("{}", runtime()?.block_on(providers::start_provider(&request))?);
        }
        Command::PutLink(args) => {
            let request = providers::PutLink {
                target: ctl::HostTarget {
                    nats_url: args.nats,
                    lattice: args.lattice,
                    ctl_prefix: args.ctl_prefix,
                    host_id: None,
                },
                actor_id: args.actor,
                provider_id: args.provider,
                contract_id: args.contract,
                link_name: args.link_name,
                values: args.values.into_iter().collect(),
                wait: Duration::from_millis(ctl::ACK_TIMEOUT_MS),
            };
            runtime()?.block_on(providers::put_link(&request))?;
        }
        Command::Run(args) => runtime()?.block_on(run(&args))?,
        Command::Summarize { dir } => print!("{}", summarize(&dir)?),
        Command::Plot { dir } => {
            for path in plot(&dir)? {
                println!("{}", path.display());
            }
        }
        Command::PolicyResponder { nats, topic } => {
            let answered =
                runtime()?.block_on(policy::permit_all(&nats, &topic, || println!("ready"), stop_signal()))?;
            eprintln!("policy responder on {topic}: {answered} requests permitted");
        }
        Command::Http(args) => {
            let seconds = |flag: &'static str, value: f64| {
                Duration::try_from_secs_f64(value).map_err(|_| LoadtestError::Arg {
                    flag,
                    reason: "must be a number of seconds".to_string(),
                })
            };
            let run = http::HttpRun {
                address: args.address,
                path: args.path,
                connections: args.connections.max(1),
                duration: seconds("--duration", args.duration)?,
                warmup: seconds("--warmup", args.warmup)?,
                timeout: Duration::from_millis(args.timeout_ms),
                host_pid: args.host_pid,
                floor: args.floor,
            };
            let report = runtime()?.block_on(http::run(&run))?;
            eprint!("{}", stats::human_summary(&report));
            let json = engine::report_json(&report);
            match &args.json {
                Some(path) => std::fs::write(path, json).map_err(|e| LoadtestError::io(path, e))?,
                None => print!("{json}"),
            }
        }
        Command::HttpFloor { listen, threads } => http::serve_floor(listen, threads)?,
        Command::OtlpSink { listen, json } => {
            let counts = runtime()?.block_on(otlp_sink::run(listen, |url| println!("ready {url}"), stop_signal()))?;
            let text = serde_json::to_string_pretty(&counts).unwrap_or_default();
            match json {
                Some(path) => std::fs::write(&path, text).map_err(|source| LoadtestError::Io { path, source })?,
                None => println!("{text}"),
            }
        }
        Command::PutClaims {
            nats,
            lattice,
            key,
            contract,
        } => runtime()?.block_on(policy::put_claims(&nats, &lattice, &key, &contract))?,
        Command::Responder(args) => {
            if args.max_secs == 0 || args.max_secs > raw::RESPONDER_SECS_MAX {
                return Err(LoadtestError::Arg {
                    flag: "--max-secs",
                    reason: format!("1 to {}", raw::RESPONDER_SECS_MAX),
                });
            }
            let served = runtime()?.block_on(async {
                let stop = stop_signal();
                let ready = || println!("ready");
                raw::respond(
                    &args.nats,
                    &args.subject,
                    Duration::from_secs(args.max_secs),
                    ready,
                    stop,
                )
                .await
            })?;
            eprintln!(
                "responder on {}: {} replies, {} requests without a reply subject",
                args.subject, served.replies, served.without_reply
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardhost-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
