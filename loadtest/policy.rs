//! What the `policy` variant of the echo scenario needs: a policy service that permits every
//! request (`shardhost-loadtest policy-responder`), so a run measures what asking and caching
//! cost the host, not a policy; and the load's caller made known to the host
//! (`put-claims`: a `CLAIMS_` entry in the lattice bucket), since a host with a policy service
//! denies an invocation whose caller's claims it does not know (as 0.82 does).

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::error::LoadtestError;

/// How long `put-claims` waits for the lattice bucket to exist.
const BUCKET_WAIT_MS: u64 = 10_000;

fn nats_error(what: &str, error: impl std::fmt::Display) -> LoadtestError {
    LoadtestError::Nats {
        what: what.to_string(),
        reason: error.to_string(),
    }
}

async fn connect(url: &str) -> Result<async_nats::Client, LoadtestError> {
    async_nats::connect(url).await.map_err(|e| LoadtestError::Connect {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// Permit every request on `topic` until `stop` resolves; `ready` once subscribed. Returns the
/// requests answered.
pub async fn permit_all(
    url: &str,
    topic: &str,
    ready: impl FnOnce(),
    stop: impl std::future::Future<Output = ()>,
) -> Result<u64, LoadtestError> {
    let nc = connect(url).await?;
    let mut requests = nc
        .subscribe(topic.to_string())
        .await
        .map_err(|e| nats_error("subscribe", e))?;
    nc.flush().await.map_err(|e| nats_error("flush", e))?;
    ready();
    let mut answered = 0;
    let mut stop = std::pin::pin!(stop);
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            _ = &mut stop => None,
        };
        let Some(message) = message else { return Ok(answered) };
        let Some(reply) = message.reply else { continue };
        let request: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        let decision = json!({"requestId": request["requestId"], "permitted": true, "message": null});
        nc.publish(reply, decision.to_string().into())
            .await
            .map_err(|e| nats_error("publish", e))?;
        answered += 1;
    }
}

/// Write claims for `key` (a provider of `contract_id`) into the lattice bucket.
pub async fn put_claims(url: &str, lattice: &str, key: &str, contract_id: &str) -> Result<(), LoadtestError> {
    let nc = connect(url).await?;
    let js = async_nats::jetstream::new(nc);
    let bucket = format!("LATTICEDATA_{lattice}");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(BUCKET_WAIT_MS);
    let store = loop {
        match js.get_key_value(bucket.clone()).await {
            Ok(store) => break store,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(nats_error(&format!("open {bucket}"), e)),
        }
    };
    let account = nkeys::KeyPair::new_account().public_key();
    let claims = json!({
        "sub": key, "iss": account, "contract_id": contract_id, "name": "shardhost-loadtest origin",
        "call_alias": "", "caps": "", "rev": "0", "tags": "", "version": "",
    });
    store
        .put(format!("CLAIMS_{key}"), claims.to_string().into())
        .await
        .map_err(|e| nats_error("put claims", e))?;
    Ok(())
}
