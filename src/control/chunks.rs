//! The object store worker: moves payloads over 900 KiB through the JetStream object store
//! bucket named after the lattice (PROTOCOL §2.6) on behalf of the shards.
//!
//! Control plane (tokio + async-nats). Shards send [`ChunkRequest`]s over a bounded channel and
//! await the answer as a future, so a slow store never stalls a shard. Each request runs in its
//! own task; the bucket is opened (or created with default settings) on first use and reopened
//! after an error.

use std::sync::Arc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use async_nats::jetstream::{self, object_store};

use crate::plane::{ChunkOp, ChunkRequest};

/// Requests the shards may queue before `try_send` reports the worker busy.
pub const CHUNK_CHANNEL_CAPACITY: usize = 256;

/// The bucket, opened lazily.
struct Bucket {
    js: jetstream::Context,
    name: String,
    store: Mutex<Option<object_store::ObjectStore>>,
}

impl Bucket {
    async fn store(&self) -> Result<object_store::ObjectStore, String> {
        let mut slot = self.store.lock().await;
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store = match self.js.get_object_store(&self.name).await {
            Ok(store) => store,
            Err(_) => {
                let config = object_store::Config {
                    bucket: self.name.clone(),
                    ..Default::default()
                };
                self.js
                    .create_object_store(config)
                    .await
                    .map_err(|e| format!("cannot open object store {}: {e}", self.name))?
            }
        };
        *slot = Some(store.clone());
        Ok(store)
    }

    async fn forget(&self) {
        *self.store.lock().await = None;
    }

    async fn run(&self, op: ChunkOp) -> Result<Bytes, String> {
        let store = self.store().await?;
        let result = match op {
            ChunkOp::Take(key) => {
                let read = async {
                    let mut object = store.get(&key).await.map_err(|e| format!("get {key}: {e}"))?;
                    let mut bytes = Vec::new();
                    object
                        .read_to_end(&mut bytes)
                        .await
                        .map_err(|e| format!("read {key}: {e}"))?;
                    Ok::<_, String>(bytes)
                };
                let bytes = read.await?;
                if let Err(e) = store.delete(&key).await {
                    tracing::warn!(%key, error = %e, "cannot delete a fetched chunked payload");
                }
                Ok(Bytes::from(bytes))
            }
            ChunkOp::Put(key, bytes) => {
                let mut reader: &[u8] = &bytes;
                store
                    .put(key.as_str(), &mut reader)
                    .await
                    .map(|_| Bytes::new())
                    .map_err(|e| format!("put {key}: {e}"))
            }
        };
        if result.is_err() {
            self.forget().await;
        }
        result
    }
}

/// Serve the shards' object store requests until every sender is gone.
pub async fn serve(
    client: async_nats::Client,
    lattice: String,
    js_domain: Option<String>,
    mut requests: mpsc::Receiver<ChunkRequest>,
) {
    let js = match js_domain {
        Some(domain) => jetstream::with_domain(client, domain),
        None => jetstream::new(client),
    };
    let bucket = Arc::new(Bucket {
        js,
        name: lattice,
        store: Mutex::new(None),
    });
    while let Some(ChunkRequest { op, done }) = requests.next().await {
        let bucket = Arc::clone(&bucket);
        tokio::spawn(async move {
            let result = bucket.run(op).await;
            if let Err(error) = &result {
                tracing::warn!(%error, "object store request failed");
            }
            let _ = done.send(result);
        });
    }
}
