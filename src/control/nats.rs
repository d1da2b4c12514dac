//! async-nats connections of the control plane (ctl and provider RPC), built from a
//! [`NatsEndpoint`]: credentials, TLS, endless reconnects, connection events in the log.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{NatsAuth, NatsEndpoint};

/// How long the first connect may take before start-up fails.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Connect to `endpoint`, naming the connection `name` on the server.
pub async fn connect(endpoint: &NatsEndpoint, name: &str) -> Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .max_reconnects(None)
        .require_tls(endpoint.tls);
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
    opts.connect(url.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}
