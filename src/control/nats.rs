//! async-nats connections of the control plane (ctl and provider RPC), built from a
//! [`NatsEndpoint`]: credentials, TLS, endless reconnects, connection events in the log.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{NatsAuth, NatsEndpoint};

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// First wait between start-up connection attempts; doubled after each failure.
pub const CONNECT_RETRY_BACKOFF_MS_BASE: u64 = 100;
/// Longest wait between two start-up connection attempts.
pub const CONNECT_RETRY_BACKOFF_MS_MAX: u64 = 2_000;

/// [`connect`], retried with backoff until `budget` has passed (an edge node starts NATS and
/// the host together; the host must not lose that race). Each failed attempt is logged; after
/// the budget the error says how long and how often it tried. A zero budget tries once.
pub async fn connect_with_retry(
    endpoint: &NatsEndpoint,
    name: &str,
    budget: Duration,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<async_nats::Client> {
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(CONNECT_RETRY_BACKOFF_MS_BASE);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match connect(endpoint, name, tls).await {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        let elapsed = started.elapsed();
        if elapsed + backoff > budget {
            return Err(error.context(format!(
                "NATS at {} not reachable after {attempts} attempts in {} ms (--nats-connect-timeout-ms {})",
                endpoint.url(),
                elapsed.as_millis(),
                budget.as_millis()
            )));
        }
        tracing::warn!(
            conn = name,
            attempt = attempts,
            retry_in_ms = backoff.as_millis() as u64,
            error = %format!("{error:#}"),
            "NATS not reachable yet; retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(CONNECT_RETRY_BACKOFF_MS_MAX));
    }
}

/// Connect to `endpoint`, naming the connection `name` on the server; TLS with `tls` when the
/// endpoint asks for it or the server requires it.
pub async fn connect(
    endpoint: &NatsEndpoint,
    name: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .max_reconnects(None)
        .require_tls(endpoint.tls)
        .tls_client_config(rustls::ClientConfig::clone(tls));
    let label = name.to_string();
    opts = opts.event_callback(move |event| {
        let label = label.clone();
        async move {
            match event {
                async_nats::Event::Connected => tracing::info!(conn = %label, "NATS connected"),
                async_nats::Event::Disconnected => tracing::warn!(conn = %label, "NATS disconnected; reconnecting"),
                other => tracing::debug!(conn = %label, event = %other, "NATS event"),
            }
        }
    });
    opts = match &endpoint.auth {
        NatsAuth::None => opts,
        NatsAuth::JwtSeed { jwt, seed } => {
            let key = Arc::new(nkeys::KeyPair::from_seed(seed).context("NATS user seed")?);
            opts.jwt(jwt.clone(), move |nonce| {
                let key = key.clone();
                async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
            })
        }
        NatsAuth::CredsFile(path) => opts
            .credentials_file(path)
            .await
            .with_context(|| format!("read NATS credentials file {path}"))?,
    };
    let url = endpoint.url();
    match opts.connect(url.as_str()).await {
        Ok(client) => Ok(client),
        Err(error) if error.to_string().contains("certificate") => Err(anyhow::Error::new(error).context(format!(
            "cannot connect to NATS at {url}: its TLS certificate is not trusted (it must chain to \
             --tls-ca-file or to the system's roots, and name the host connected to)"
        ))),
        Err(error) => Err(anyhow::Error::new(error).context(format!("cannot connect to NATS at {url}"))),
    }
}
