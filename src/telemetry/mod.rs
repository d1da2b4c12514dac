//! OpenTelemetry export (OTLP/HTTP, protobuf), the 0.82 way: traces and logs to a collector
//! when `--otel-traces-exporter otlp` is given ([`settings`]).
//!
//! Two span sources, one resource:
//! - the control plane's spans (ctl commands, actor and provider starts and stops, OCI pulls,
//!   compiles) are `tracing` spans, turned into OpenTelemetry spans by `tracing-opentelemetry`
//!   and exported through the SDK's batch span processor; its log records go through the
//!   SDK's batch log processor (`opentelemetry-appender-tracing`);
//! - each shard builds its invocation spans itself (`shard/trace.rs`) and hands them to a batch
//!   span processor of its own ([`ShardExport::pipeline`]): its own bounded queue, worker thread
//!   and HTTP client, so no shard shares a queue, a counter or a lock with another. A full queue
//!   drops the span (counted by the SDK), never blocks the shard.
//!
//! Every queue and exporter is the SDK's: nothing here writes OTLP by hand. With telemetry off
//! (the default) nothing here is built and the shards get no pipeline at all.

pub mod sampler;
pub mod settings;

use std::time::Duration;

use anyhow::{Context as _, Result};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanProcessor as _};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{Layer, Registry};

pub use sampler::SamplerSpec;

use crate::wire::trace::TraceParent;
pub use settings::{plan, TelemetryPlan, TelemetrySettings};

/// Longest a stopping host waits for its last spans and logs to reach the collector.
pub const EXPORT_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// The instrumentation scope of every span and log record this host makes.
pub const SCOPE_NAME: &str = "shardhost";

/// A `tracing` layer of the host's subscriber.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The running export pipelines.
pub struct Telemetry {
    tracer: SdkTracerProvider,
    logger: Option<SdkLoggerProvider>,
    shards: ShardExport,
}

/// The resource every span and record carries: the service name (0.82's `wasmcloud-host`
/// unless `OTEL_SERVICE_NAME` says otherwise), the host's key as the service instance, and
/// what `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource(settings: &TelemetrySettings, host_id: &str) -> Resource {
    Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.instance.id", host_id.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("wasmcloud.host.implementation", "shardhost"),
        ])
        .build()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn span_exporter(url: &str) -> Result<opentelemetry_otlp::SpanExporter> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .with_context(|| format!("OTLP span exporter for {url}"))
}

impl Telemetry {
    /// Build the control plane's tracer and logger and the shards' pipeline factory. Nothing
    /// connects yet: an unreachable collector shows as failed exports, not a failed start.
    pub fn start(settings: &TelemetrySettings, host_id: &str) -> Result<Telemetry> {
        // reqwest is built without a default rustls provider (no aws-lc-rs): an `https://`
        // collector uses ring. An error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resource = resource(settings, host_id);
        let processor = BatchSpanProcessor::builder(span_exporter(&settings.traces_url)?).build();
        let tracer = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(settings.sampler.sdk())
            .with_resource(resource.clone())
            .build();
        let logger = match &settings.logs_url {
            Some(url) => {
                let exporter = opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(url)
                    .build()
                    .with_context(|| format!("OTLP log exporter for {url}"))?;
                Some(
                    SdkLoggerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource.clone())
                        .build(),
                )
            }
            None => None,
        };
        Ok(Telemetry {
            tracer,
            logger,
            shards: ShardExport {
                traces_url: settings.traces_url.clone(),
                sampler: settings.sampler,
                resource,
            },
        })
    }

    /// The subscriber layers: control-plane spans to OpenTelemetry (this crate's spans at
    /// info and above, whatever `--log-level` says), and log records filtered by
    /// `log_filter` (as the console log is), never the exporter's own crates (a failed
    /// export must not log itself into the next export).
    pub fn layers(&self, log_filter: tracing_subscriber::EnvFilter) -> Vec<BoxedLayer> {
        let spans = Targets::new().with_target("shardhost", tracing::Level::INFO);
        let tracer = self.tracer.tracer_with_scope(scope());
        let mut layers: Vec<BoxedLayer> = vec![tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans)
            .boxed()];
        if let Some(logger) = &self.logger {
            let quiet = Targets::new()
                .with_default(tracing::Level::TRACE)
                .with_target("opentelemetry", tracing::level_filters::LevelFilter::OFF)
                .with_target("opentelemetry_sdk", tracing::level_filters::LevelFilter::OFF)
                .with_target("opentelemetry_otlp", tracing::level_filters::LevelFilter::OFF)
                .with_target("reqwest", tracing::level_filters::LevelFilter::OFF)
                .with_target("hyper", tracing::level_filters::LevelFilter::OFF)
                .with_target("hyper_util", tracing::level_filters::LevelFilter::OFF);
            let bridge = opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(logger);
            layers.push(bridge.with_filter(log_filter).with_filter(quiet).boxed());
        }
        layers
    }

    /// What the shards build their span pipelines from.
    pub fn shard_export(&self) -> ShardExport {
        self.shards.clone()
    }

    /// Export what is queued and stop (at the end of `main`).
    pub fn shutdown(&self) {
        let timeout = Duration::from_millis(EXPORT_SHUTDOWN_TIMEOUT_MS);
        if let Err(e) = self.tracer.shutdown_with_timeout(timeout) {
            eprintln!("shardhost: the last control-plane spans were not exported: {e}");
        }
        if let Some(logger) = &self.logger {
            if let Err(e) = logger.shutdown_with_timeout(timeout) {
                eprintln!("shardhost: the last log records were not exported: {e}");
            }
        }
    }
}

/// How a shard builds its own span pipeline (cloned into every shard's configuration).
#[derive(Debug, Clone)]
pub struct ShardExport {
    traces_url: String,
    sampler: SamplerSpec,
    resource: Resource,
}

impl ShardExport {
    /// One shard's pipeline: a batch span processor (own queue, `OTEL_BSP_*` sizes, own worker
    /// thread) over an OTLP exporter of its own.
    pub fn pipeline(&self) -> Result<ShardSpans> {
        let mut processor = BatchSpanProcessor::builder(span_exporter(&self.traces_url)?).build();
        processor.set_resource(&self.resource);
        Ok(ShardSpans {
            processor,
            sampler: self.sampler,
            scope: scope(),
        })
    }
}

/// A shard's span pipeline (owned by that shard alone).
#[derive(Debug)]
pub struct ShardSpans {
    processor: BatchSpanProcessor,
    sampler: SamplerSpec,
    scope: InstrumentationScope,
}

impl ShardSpans {
    pub fn sampler(&self) -> &SamplerSpec {
        &self.sampler
    }

    /// The scope a shard's spans carry (a cheap clone: static strings).
    pub fn scope(&self) -> &InstrumentationScope {
        &self.scope
    }

    /// Queue a finished span for export: a bounded channel send, dropped when full.
    pub fn export(&self, span: SpanData) {
        self.processor.on_end(span);
    }

    /// Export what is queued and stop the worker (at shard stop).
    pub fn shutdown(&self) {
        let timeout = Duration::from_millis(EXPORT_SHUTDOWN_TIMEOUT_MS);
        if let Err(e) = self.processor.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "a shard's last spans were not exported");
        }
    }
}

/// Parent `span` on a remote caller's span: the `traceparent`/`tracestate` NATS headers that
/// wash, wadm and the control-interface client put on control requests (PROTOCOL §1.5). A
/// missing or malformed `traceparent` leaves the span a root.
pub fn parent_on_headers(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let Some(headers) = headers else { return };
    let value = |key: &str| headers.get(key).map(|v| v.as_str());
    let entries = [
        (crate::wire::trace::TRACEPARENT, value(crate::wire::trace::TRACEPARENT)),
        (crate::wire::trace::TRACESTATE, value(crate::wire::trace::TRACESTATE)),
    ];
    let present = entries.iter().filter_map(|(k, v)| v.map(|v| (*k, v)));
    let Ok(Some(caller)) = crate::wire::trace::extract(present) else {
        return;
    };
    let remote = span_context(&caller.parent, caller.state.as_deref(), true);
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The OpenTelemetry span context of `span` (trace, span id, flags) with its `tracestate`
/// when that parses (W3C lets a participant drop one it cannot read).
pub fn span_context(span: &TraceParent, state: Option<&str>, remote: bool) -> SpanContext {
    let state = state.and_then(|s| s.parse::<TraceState>().ok()).unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(span.trace_id),
        SpanId::from_bytes(span.span_id),
        TraceFlags::new(span.flags),
        remote,
        state,
    )
}
