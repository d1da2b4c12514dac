//! Tests of the 0.82 command line beyond clap's attributes ([`super`]), through
//! [`Config::from_args`] as the host runs it. Variables clap reads itself (`env = …`) come from the
//! process environment, which these tests leave alone; the integration test `cli082` sets them.

use clap::Parser;

use super::*;
use crate::config::{Cli, Config, NatsAuth};

fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<Config> {
    let mut full = vec!["shardhost"];
    full.extend_from_slice(argv);
    let cli = Cli::try_parse_from(full).map_err(|e| anyhow!("{e}"))?;
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_args(cli.host, &env)
}

fn user() -> (String, String) {
    let key = nkeys::KeyPair::new_user();
    (format!("jwt-of-{}", key.public_key()), key.seed().unwrap())
}

fn jwt_seed(jwt: &str, seed: &str) -> NatsAuth {
    NatsAuth::JwtSeed {
        jwt: jwt.to_string(),
        seed: seed.to_string(),
    }
}

#[test]
fn nats_credentials_are_the_default_of_every_connection() {
    let (jwt, seed) = user();
    let c = config(&["--nats-jwt", &jwt, "--nats-seed", &seed], &[]).unwrap();
    for endpoint in [&c.ctl, &c.rpc, &c.prov_rpc] {
        assert_eq!(endpoint.auth, jwt_seed(&jwt, &seed));
    }
}

#[test]
fn a_connection_with_credentials_of_its_own_keeps_them() {
    let (jwt, seed) = user();
    let (ctl_jwt, ctl_seed) = user();
    let c = config(
        &[
            "--nats-jwt",
            &jwt,
            "--nats-seed",
            &seed,
            "--ctl-jwt",
            &ctl_jwt,
            "--ctl-seed",
            &ctl_seed,
            "--rpc-credsfile",
            "/etc/rpc.creds",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.ctl.auth, jwt_seed(&ctl_jwt, &ctl_seed));
    assert_eq!(c.rpc.auth, NatsAuth::CredsFile("/etc/rpc.creds".into()));
    // Providers get the rpc connection's credentials, as 0.82 hands them the rpc connection.
    assert_eq!(c.prov_rpc.auth, NatsAuth::CredsFile("/etc/rpc.creds".into()));
}

#[test]
fn the_misspelt_082_seed_variable_is_read() {
    let (jwt, seed) = user();
    let c = config(&["--nats-jwt", &jwt], &[(NATS_SEED_ENV_082, seed.as_str())]).unwrap();
    assert_eq!(c.rpc.auth, jwt_seed(&jwt, &seed));
    // The correctly spelt name (here its flag) wins over the misspelt one.
    let (_, other_seed) = user();
    let c = config(
        &["--nats-jwt", &jwt, "--nats-seed", &other_seed],
        &[(NATS_SEED_ENV_082, seed.as_str())],
    )
    .unwrap();
    assert_eq!(c.ctl.auth, jwt_seed(&jwt, &other_seed));
}

#[test]
fn nats_credentials_come_in_pairs_of_a_user_seed() {
    let (jwt, seed) = user();
    let jwt_alone = config(&["--nats-jwt", &jwt], &[]).unwrap_err().to_string();
    assert!(jwt_alone.contains("--nats-seed"), "{jwt_alone}");
    let seed_alone = config(&["--nats-seed", &seed], &[]).unwrap_err().to_string();
    assert!(seed_alone.contains("--nats-jwt"), "{seed_alone}");
    let account_seed = nkeys::KeyPair::new_account().seed().unwrap();
    let wrong = config(&["--nats-jwt", &jwt, "--nats-seed", &account_seed], &[]).unwrap_err();
    assert!(wrong.to_string().contains("user seed"), "{wrong}");
}

#[test]
fn prov_rpc_falls_back_to_rpc_then_to_nats() {
    let c = config(
        &[
            "--nats-host",
            "10.0.0.1",
            "--rpc-host",
            "10.0.0.2",
            "--rpc-port",
            "5000",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.ctl.url(), "nats://10.0.0.1:4222");
    assert_eq!(c.rpc.url(), "nats://10.0.0.2:5000");
    assert_eq!(c.prov_rpc.url(), "nats://10.0.0.2:5000");
    let c = config(
        &[
            "--nats-host",
            "10.0.0.1",
            "--rpc-host",
            "10.0.0.2",
            "--prov-rpc-port",
            "6000",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.prov_rpc.url(), "nats://10.0.0.2:6000");
    let c = config(&["--nats-port", "4333"], &[]).unwrap();
    assert_eq!(c.prov_rpc.url(), "nats://127.0.0.1:4333");
}

#[test]
fn tls_stays_each_connections_own() {
    let c = config(&["--rpc-tls"], &[]).unwrap();
    assert!(c.rpc.tls);
    assert!(!c.prov_rpc.tls && !c.ctl.tls);
}

#[test]
fn oci_credentials_from_flags_or_the_earlier_variable_names() {
    let c = config(
        &[
            "--oci-registry",
            "r.example:5000",
            "--oci-user",
            "u",
            "--oci-password",
            "p",
        ],
        &[],
    )
    .unwrap();
    let cred = c.oci_credential.expect("credential");
    assert_eq!(
        (cred.registry.as_str(), cred.username.as_str(), cred.password.as_str()),
        ("r.example:5000", "u", "p")
    );
    let earlier = [
        ("OCI_REGISTRY", "old.example"),
        ("OCI_REGISTRY_USER", "ou"),
        ("OCI_REGISTRY_PASSWORD", "op"),
    ];
    let cred = config(&[], &earlier).unwrap().oci_credential.expect("credential");
    assert_eq!(cred.registry, "old.example");
    // A flag (or its 0.82 variable) wins over the earlier name.
    let cred = config(&["--oci-user", "new"], &earlier)
        .unwrap()
        .oci_credential
        .expect("credential");
    assert_eq!(cred.username, "new");
    let partial = config(&["--oci-registry", "r.example"], &[]).unwrap_err();
    assert!(partial.to_string().contains("together"), "{partial}");
}

#[test]
fn log_levels_as_082_reads_them() {
    for (given, level) in [
        ("WARN", "warn"),
        ("Info", "info"),
        ("5", "trace"),
        ("1", "error"),
        ("3", "info"),
    ] {
        assert_eq!(
            config(&["--log-level", given], &[]).unwrap().log_level,
            level,
            "{given}"
        );
    }
    for bad in ["loud", "0", "6", ""] {
        assert!(config(&["--log-level", bad], &[]).is_err(), "{bad}");
    }
}

#[test]
fn rust_log_goes_on_top_of_the_level() {
    let (filter, refused) = log_filter("info", None);
    assert_eq!(refused, None);
    assert_eq!(filter.max_level_hint(), Some(tracing::level_filters::LevelFilter::INFO));
    let (filter, refused) = log_filter("info", Some("async_nats=debug, shardhost::shard=trace"));
    assert_eq!(refused, None);
    let shown = filter.to_string();
    assert!(
        shown.contains("async_nats=debug") && !shown.contains("async_nats=warn"),
        "RUST_LOG replaces the quiet directive for the same target: {shown}"
    );
    assert!(
        shown.contains("shardhost::shard=trace") && shown.contains("cranelift_codegen=warn"),
        "{shown}"
    );
    let (filter, refused) = log_filter("warn", Some("debug"));
    assert_eq!(refused, None);
    assert_eq!(
        filter.max_level_hint(),
        Some(tracing::level_filters::LevelFilter::DEBUG)
    );
    let (filter, refused) = log_filter("info", Some("async_nats=debug,=bad=x=y"));
    assert!(refused
        .expect("refused")
        .starts_with("RUST_LOG `async_nats=debug,=bad=x=y` ignored"));
    assert!(filter.to_string().contains("async_nats=warn"), "ignored whole");
}

#[test]
fn the_warning_names_what_was_given_and_is_not_acted_on() {
    assert!(config(&[], &[]).unwrap().not_acted_on.is_empty());
    let c = config(
        &[
            "--policy-topic",
            "wasmcloud.policy",
            "--policy-timeout-ms",
            "900",
            "--config-service-enabled",
            "--otel-traces-exporter",
            "otlp",
        ],
        &[
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=b"),
            ("OTEL_EMPTY", ""),
        ],
    )
    .unwrap();
    // Exporting: the exporter flag and the variables the exporters read act.
    assert_eq!(c.not_acted_on, ["--config-service-enabled"]);
    assert!(c.telemetry.settings.is_some());
    let c = config(
        &["--otel-exporter-otlp-endpoint", "http://c:4318"],
        &[("OTEL_SERVICE_NAME", "edge"), ("OTEL_SOMETHING_ELSE", "x")],
    )
    .unwrap();
    // Not exporting: nothing of it acts.
    assert_eq!(
        c.not_acted_on,
        [
            "--otel-exporter-otlp-endpoint",
            "OTEL_SERVICE_NAME",
            "OTEL_SOMETHING_ELSE"
        ]
    );
}

#[test]
fn a_setting_is_named_by_its_variable_when_it_came_from_there() {
    let env = vec![
        ("OTEL_TRACES_EXPORTER".to_string(), "otlp".to_string()),
        ("WASMCLOUD_ENABLE_IPV6".to_string(), "true".to_string()),
    ];
    let compat = CompatArgs {
        otel_traces_exporter: Some("otlp".into()),
        otel_exporter_otlp_endpoint: Some("http://collector:4318".into()),
        enable_ipv6: true,
        ..CompatArgs::default()
    };
    assert_eq!(
        not_acted_on(&compat, &env, false),
        [
            "OTEL_TRACES_EXPORTER",
            "--otel-exporter-otlp-endpoint",
            "WASMCLOUD_ENABLE_IPV6"
        ]
    );
}

#[test]
fn policy_settings_need_the_policy_topic_as_in_082() {
    for flag in ["--policy-changes-topic", "--policy-timeout-ms"] {
        assert!(config(&[flag, "1"], &[]).is_err(), "{flag} alone");
    }
    let c = config(&["--policy-topic", "p", "--policy-changes-topic", "c"], &[]).unwrap();
    assert!(c.not_acted_on.is_empty(), "the policy service is acted on");
    let policy = c.policy.expect("policy settings");
    assert_eq!(
        (policy.topic.as_str(), policy.changes_topic.as_deref()),
        ("p", Some("c"))
    );
    assert_eq!(
        policy.timeout,
        std::time::Duration::from_millis(1_000),
        "0.82's default"
    );
    let c = config(
        &["--policy-topic", "wasmcloud.policy", "--policy-timeout-ms", "250"],
        &[],
    )
    .unwrap();
    assert_eq!(c.policy.expect("policy").timeout, std::time::Duration::from_millis(250));
    assert!(config(&["--policy-topic", "a..b"], &[]).is_err(), "not a subject");
    assert!(config(&["--policy-topic", "p", "--policy-timeout-ms", "0"], &[]).is_err());
    assert!(config(&[], &[]).unwrap().policy.is_none());
}

#[test]
fn label_keys_keep_their_case() {
    let c = config(
        &["-l", "app=web"],
        &[("WASMCLOUD_LABEL_ZONE", "x"), ("WASMCLOUD_LABEL_app", "env")],
    )
    .unwrap();
    assert_eq!(c.labels.get("ZONE").map(String::as_str), Some("x"));
    assert!(!c.labels.contains_key("zone"));
    assert_eq!(
        c.labels.get("app").map(String::as_str),
        Some("web"),
        "a flag wins over the variable"
    );
}
