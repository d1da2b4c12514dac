//! TLS and credentials on every NATS connection of the host — the control plane's and each
//! shard's own — against nats-servers configured with a CA made in the test: TLS with and
//! without client verification, operator mode with user JWTs from a credentials file over TLS,
//! and a server whose certificate does not chain to the given CA (refused, in one line).

use std::time::Duration;

use crate::provider_credentials::operator_mode_config;
use crate::support::rpc::Lab;
use crate::support::tls::make_ca;
use crate::support::{spawn_host_process, unique_lattice, HostOptions, Nats};

/// A host on a TLS-only nats-server (`verify`: the server asks for client certificates),
/// with every connection asking for TLS.
async fn tls_lab(tag: &str, verify: bool) -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(dir.path(), "lattice");
    let mut nats = Nats::start_with_conf(&ca.server_block(verify));
    nats.tls = Some(ca.client_files(verify));
    let mut options = HostOptions::new(&unique_lattice(tag)).arg("--rpc-timeout-ms", "1500");
    options.args.extend(["--ctl-tls".to_string(), "--rpc-tls".to_string()]);
    for (flag, value) in ca.host_flags(verify) {
        options = options.arg(&flag, &value);
    }
    Lab::start_on(nats, options, dir).await
}

#[tokio::test]
async fn tls_without_client_verification_serves_echo_on_every_shard() {
    let mut lab = tls_lab("tlsplain", false).await;
    lab.serves_echo_on_every_shard().await;
}

#[tokio::test]
async fn tls_with_client_certificates_serves_echo_on_every_shard() {
    let mut lab = tls_lab("tlsmutual", true).await;
    lab.serves_echo_on_every_shard().await;
}

#[tokio::test]
async fn operator_mode_credentials_over_tls_authenticate_every_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_ca(dir.path(), "operator");
    let (config, _account, (jwt, seed)) = operator_mode_config("");
    let mut nats = Nats::start_with_conf(&format!("{config}\n{}", ca.server_block(false)));
    nats.credentials = Some((jwt.clone(), seed.clone()));
    nats.tls = Some(ca.client_files(false));
    let creds = dir.path().join("host.creds");
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    std::fs::write(&creds, text).expect("write creds");
    let creds = creds.display().to_string();
    let mut options = HostOptions::new(&unique_lattice("tlsjwt"))
        .arg("--rpc-timeout-ms", "1500")
        .arg("--ctl-credsfile", &creds)
        .arg("--rpc-credsfile", &creds)
        .arg("--prov-rpc-credsfile", &creds)
        .arg("--tls-ca-file", &ca.ca.display().to_string());
    options.args.extend(["--ctl-tls".to_string(), "--rpc-tls".to_string()]);
    let mut lab = Lab::start_on(nats, options, dir).await;
    lab.serves_echo_on_every_shard().await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = make_ca(dir.path(), "server");
    let other_ca = make_ca(dir.path(), "other");
    let nats = Nats::start_with_conf(&server_ca.server_block(false));
    let args: Vec<String> = [
        "--ctl-tls",
        "--rpc-tls",
        "--nats-connect-timeout-ms",
        "500",
        "--tls-ca-file",
        &other_ca.ca.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut child, stderr_file) = spawn_host_process(nats.port, &unique_lattice("tlsbadca"), &args, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the host") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the host did not give up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(stderr_file.path()).expect("host stderr");
    assert_eq!(status.code(), Some(1), "exit 1:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("shardhost: "),
        "the last line is the host's own: {last}"
    );
    assert!(
        last.contains("certificate") && last.contains("--tls-ca-file"),
        "the line says the certificate does not chain to the given CA: {last}"
    );
}
