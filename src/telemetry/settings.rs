//! What the operator asked of OpenTelemetry, read from the 0.82 flags and the standard `OTEL_*`
//! variables: whether to export, where, which sampler, under which service name. Pure: the
//! environment is passed in (as `config_compat` does), nothing is connected here.
//!
//! As the 0.82 host: `--otel-traces-exporter otlp` (`OTEL_TRACES_EXPORTER`) turns on traces and
//! logs over OTLP/HTTP with protobuf bodies; `--otel-exporter-otlp-endpoint`
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318`) is the collector's base
//! URL, to which `/v1/traces` and `/v1/logs` are added. Beyond 0.82 (which always samples and
//! reads nothing else): the per-signal endpoints, `OTEL_TRACES_SAMPLER`/`_ARG`,
//! `OTEL_SERVICE_NAME` and `OTEL_LOGS_EXPORTER=none`. The SDK itself reads `OTEL_BSP_*`,
//! `OTEL_BLRP_*`, `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT` and `OTEL_RESOURCE_ATTRIBUTES`.

use super::sampler::SamplerSpec;

/// The collector's base URL when none is given (OTLP/HTTP's default port).
pub const OTLP_ENDPOINT_DEFAULT: &str = "http://localhost:4318";
/// 0.82's service name, kept so dashboards built for it find this host.
pub const SERVICE_NAME_DEFAULT: &str = "wasmcloud-host";

/// The `OTEL_*` variables this host acts on when it exports (the rest are named in the
/// start-up warning about settings not acted on).
pub const OTEL_ENV_ACTED_ON: [&str; 24] = [
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_LOGS_EXPORTER",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
];

/// Export settings, present only when traces are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// Where spans are POSTed (`…/v1/traces`).
    pub traces_url: String,
    /// Where log records are POSTed (`…/v1/logs`); `None`: logs are not exported.
    pub logs_url: Option<String>,
    pub sampler: SamplerSpec,
    pub service_name: String,
}

/// The outcome of reading the settings: what to export, and warnings for settings given that
/// cannot be honoured (the host still starts, as 0.82 does).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetryPlan {
    pub settings: Option<TelemetrySettings>,
    pub warnings: Vec<String>,
    /// The exporter and endpoint as given (flag, else variable): what providers get in
    /// HostData's `otel_config`, as 0.82 hands its own settings on.
    pub given_exporter: Option<String>,
    pub given_endpoint: Option<String>,
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, v)| k == key && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

/// `base` with the signal's path added (OTLP exporter spec: one `/` between them).
fn signal_url(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// Read the settings. `exporter` and `endpoint` are the flag values (clap already falls back
/// to `OTEL_TRACES_EXPORTER`/`OTEL_EXPORTER_OTLP_ENDPOINT`); the rest comes from `env`.
pub fn plan(exporter: Option<&str>, endpoint: Option<&str>, env: &[(String, String)]) -> TelemetryPlan {
    let given = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    TelemetryPlan {
        given_exporter: given(exporter),
        given_endpoint: given(endpoint),
        ..read(exporter, endpoint, env)
    }
}

fn read(exporter: Option<&str>, endpoint: Option<&str>, env: &[(String, String)]) -> TelemetryPlan {
    let mut warnings = Vec::new();
    let exporter = exporter.map(str::trim).filter(|e| !e.is_empty());
    match exporter.map(str::to_ascii_lowercase).as_deref() {
        None | Some("none") => return TelemetryPlan::default(),
        Some("otlp") => {}
        Some(other) => {
            warnings.push(format!(
                "traces exporter {other:?} is not supported (only \"otlp\"): no traces or logs are exported"
            ));
            return TelemetryPlan {
                warnings,
                ..TelemetryPlan::default()
            };
        }
    }
    for key in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    ] {
        if let Some(protocol) = env_value(env, key).filter(|p| *p != "http/protobuf") {
            warnings.push(format!(
                "{key}={protocol} is not supported: exporting with http/protobuf (as the 0.82 host does)"
            ));
        }
    }
    let base = endpoint
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .unwrap_or(OTLP_ENDPOINT_DEFAULT);
    let traces_url = env_value(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .map(str::to_string)
        .unwrap_or_else(|| signal_url(base, "v1/traces"));
    let logs_off = env_value(env, "OTEL_LOGS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let logs_url = (!logs_off).then(|| {
        env_value(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
            .map(str::to_string)
            .unwrap_or_else(|| signal_url(base, "v1/logs"))
    });
    if let Some(other) = env_value(env, "OTEL_LOGS_EXPORTER").filter(|v| !matches!(*v, "otlp" | "none")) {
        warnings.push(format!(
            "OTEL_LOGS_EXPORTER={other} is not supported: logs go over OTLP"
        ));
    }
    let (sampler, sampler_warning) = SamplerSpec::from_env(
        env_value(env, "OTEL_TRACES_SAMPLER"),
        env_value(env, "OTEL_TRACES_SAMPLER_ARG"),
    );
    warnings.extend(sampler_warning);
    let service_name = env_value(env, "OTEL_SERVICE_NAME")
        .unwrap_or(SERVICE_NAME_DEFAULT)
        .to_string();
    TelemetryPlan {
        settings: Some(TelemetrySettings {
            traces_url,
            logs_url,
            sampler,
            service_name,
        }),
        warnings,
        ..TelemetryPlan::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn off_unless_the_exporter_is_otlp() {
        let off = plan(None, Some("http://c:4318"), &[]);
        assert_eq!(
            (off.settings, off.given_endpoint.as_deref()),
            (None, Some("http://c:4318"))
        );
        assert_eq!(plan(Some("none"), None, &[]).settings, None);
        let jaeger = plan(Some("jaeger"), None, &[]);
        assert_eq!(jaeger.settings, None);
        assert!(jaeger.warnings[0].contains("\"jaeger\" is not supported"), "{jaeger:?}");
    }

    #[test]
    fn the_082_way_base_endpoint_with_signal_paths() {
        let got = plan(Some("OTLP"), Some("http://collector:4318/"), &[])
            .settings
            .unwrap();
        assert_eq!(got.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(got.logs_url.as_deref(), Some("http://collector:4318/v1/logs"));
        assert_eq!(got.sampler, SamplerSpec::default());
        assert_eq!(got.service_name, SERVICE_NAME_DEFAULT);
        let default = plan(Some("otlp"), None, &[]).settings.unwrap();
        assert_eq!(default.traces_url, "http://localhost:4318/v1/traces");
    }

    #[test]
    fn per_signal_endpoints_sampler_service_and_logs_off() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            ("OTEL_SERVICE_NAME", "edge-7"),
        ]);
        let got = plan(Some("otlp"), None, &vars);
        assert!(got.warnings.is_empty(), "{got:?}");
        let got = got.settings.unwrap();
        assert_eq!(got.traces_url, "http://t:1/custom");
        assert_eq!(got.logs_url, None);
        assert_eq!(
            got.sampler,
            SamplerSpec::ParentBased(super::super::sampler::Root::Ratio(0.01))
        );
        assert_eq!(got.service_name, "edge-7");
    }

    #[test]
    fn unsupported_protocols_warn_and_export_anyway() {
        let got = plan(Some("otlp"), None, &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]));
        assert!(got.settings.is_some());
        assert!(got.warnings[0].contains("grpc is not supported"), "{got:?}");
    }
}
