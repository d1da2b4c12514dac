//! The `shardhost` binary: parse flags, start a managed NATS when none is given, run the
//! control plane (which starts the shards), and exit 0 after a graceful stop.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args as _, CommandFactory as _, FromArgMatches as _};

use shardhost::config::{ClaimsCommand, Cli, Command, Config, NatsPlan};
use shardhost::config_compat;
use shardhost::control::managed_nats::{self, ManagedNats};
use shardhost::control::ControlPlane;
use shardhost::inspect::SignArgs;
use shardhost::telemetry::{self, Telemetry};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the command line asks for: the host's own flags and subcommands, or `claims sign`.
enum Parsed {
    Cli(Box<Cli>),
    ClaimsSign(Box<SignArgs>),
}

/// `Cli` plus `claims sign`, whose arguments live next to the signer in `inspect.rs`.
fn cli_command() -> clap::Command {
    Cli::command().mut_subcommand("claims", |claims| {
        // `about` after `augment_args`: the derive would put the struct's doc comment there.
        claims.subcommand(SignArgs::augment_args(clap::Command::new("sign")).about(
            "Sign a wasm module as an actor: embed new claims (a new module key) signed by an account seed, \
             and print the module key",
        ))
    })
}

fn parse() -> Result<Parsed, clap::Error> {
    let matches = cli_command().try_get_matches()?;
    if let Some(("claims", claims)) = matches.subcommand() {
        if let Some(("sign", sign)) = claims.subcommand() {
            return Ok(Parsed::ClaimsSign(Box::new(SignArgs::from_arg_matches(sign)?)));
        }
    }
    Ok(Parsed::Cli(Box::new(Cli::from_arg_matches(&matches)?)))
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(Parsed::Cli(cli)) => *cli,
        Ok(Parsed::ClaimsSign(args)) => return claims_sign(&args),
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, as operators grep for it; clap's long form follows on --help.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("shardhost: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let args = match cli.command {
        Some(Command::Up(args)) => *args,
        Some(Command::Claims {
            action: ClaimsCommand::Inspect { file },
        }) => return claims_inspect(&file),
        None => cli.host,
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut config = match Config::from_args(args, &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("shardhost: {e:#}");
            return ExitCode::from(1);
        }
    };
    let telemetry = match config.telemetry.settings.as_ref() {
        Some(settings) => match Telemetry::start(settings, &config.identity.host_key.public_key()) {
            Ok(telemetry) => Some(telemetry),
            Err(e) => {
                eprintln!("shardhost: cannot export OpenTelemetry: {e:#}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    config.shard_traces = telemetry.as_ref().map(Telemetry::shard_export);
    init_logging(&config, telemetry.as_ref());
    match &config.shard_io_warning {
        Some(warning) => tracing::warn!("{warning}"),
        None => tracing::info!(backend = %config.shard_backend, asked = ?config.shard_io, "shard I/O backend"),
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("control")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardhost: cannot start the control plane runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("shardhost: {e:#}");
            ExitCode::from(1)
        }
    };
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    code
}

fn claims_inspect(file: &std::path::Path) -> ExitCode {
    match shardhost::inspect::inspect_file(file) {
        Ok((report, valid)) => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("shardhost: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints the new module key alone on stdout, so scripts can capture it.
fn claims_sign(args: &SignArgs) -> ExitCode {
    match shardhost::inspect::sign_file(args) {
        Ok(module_key) => {
            println!("{module_key}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shardhost: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The console log (stderr, plain or JSON) filtered by `--log-level`/`RUST_LOG`, and with
/// telemetry on, the OpenTelemetry span and log layers.
fn init_logging(config: &Config, telemetry: Option<&Telemetry>) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, rust_log_refused) = config_compat::log_filter(&config.log_level, rust_log.as_deref());
    // Colours only for a person at a terminal: never in files, journald or pipes.
    let console = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Events only: the control plane's spans are for OpenTelemetry, not log-line prefixes.
    let events_only = tracing_subscriber::filter::filter_fn(|meta| meta.is_event());
    let mut layers: Vec<telemetry::BoxedLayer> = Vec::new();
    if config.structured_logging {
        layers.push(console.json().with_filter(filter).with_filter(events_only).boxed());
    } else {
        layers.push(console.with_filter(filter).with_filter(events_only).boxed());
    }
    if let Some(telemetry) = telemetry {
        let (log_filter, _) = config_compat::log_filter(&config.log_level, rust_log.as_deref());
        layers.extend(telemetry.layers(log_filter));
    }
    tracing_subscriber::registry().with(layers).init();
    if let Some(reason) = rust_log_refused {
        tracing::error!("{reason}");
    }
    config_compat::warn_not_acted_on(&config.not_acted_on);
    for warning in &config.telemetry.warnings {
        tracing::warn!("OpenTelemetry: {warning}");
    }
    if let Some(settings) = &config.telemetry.settings {
        tracing::info!(
            traces = %settings.traces_url,
            logs = settings.logs_url.as_deref().unwrap_or("off"),
            sampler = ?settings.sampler,
            service = %settings.service_name,
            "exporting OpenTelemetry traces and logs over OTLP/HTTP"
        );
    }
}

async fn run(mut config: Config) -> Result<()> {
    if config.identity.cluster_key_generated {
        tracing::warn!(
            cluster_key = %config.identity.issuer(),
            "no cluster seed given: generated one; only this host will trust invocations it signs \
             (pass --cluster-seed to share one across the lattice)"
        );
    }
    let mut managed = None;
    if config.nats_plan == NatsPlan::LocalOrManaged && !managed_nats::listening(managed_nats::LOCAL_NATS_ADDR).await {
        let nats = ManagedNats::start(config.nats_server_bin.as_deref()).await?;
        config.use_local_nats("127.0.0.1", nats.port);
        managed = Some(nats);
    }
    let result = async {
        let plane = ControlPlane::start(config).await?;
        plane.run().await
    }
    .await;
    if let Some(nats) = managed {
        nats.stop().await;
    }
    let reason = result?;
    tracing::info!(?reason, "host stopped");
    Ok(())
}
