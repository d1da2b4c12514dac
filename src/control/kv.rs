//! The lattice metadata bucket `LATTICEDATA_{lattice}` (PROTOCOL §7): open or create it, load
//! what it holds, and follow its changes.
//!
//! Control plane. Loading is silent (as in the Rust host); changes after start are returned to
//! the caller, which emits events and forwards links. A watch that ends (server restart,
//! stream recreated) is reopened from the last revision seen, so no change is missed
//! (`kv_watch.rs` follows it).

use anyhow::{Context, Result};
use futures::StreamExt;

use async_nats::jetstream::{self, kv};

use crate::lattice::{bucket_name, parse_entry, Change, LatticeState};

/// The bucket plus the revision up to which the state has been brought.
pub struct LatticeStore {
    pub store: kv::Store,
    pub bucket: String,
    /// Highest stream sequence applied.
    pub revision: u64,
}

/// A change read from the watch, already applied to the state.
pub type Applied = Change;

impl LatticeStore {
    /// Open the bucket, creating it with history 1 and `replicas` replicas when missing.
    pub async fn open(
        client: async_nats::Client,
        lattice: &str,
        js_domain: Option<&str>,
        replicas: u8,
    ) -> Result<LatticeStore> {
        let js = match js_domain {
            Some(domain) => jetstream::with_domain(client, domain),
            None => jetstream::new(client),
        };
        let bucket = bucket_name(lattice);
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(get_err) => {
                tracing::info!(%bucket, replicas, reason = %get_err, "creating lattice bucket");
                let config = kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    num_replicas: usize::from(replicas),
                    ..Default::default()
                };
                match js.create_key_value(config).await {
                    Ok(store) => store,
                    // Another host may have created it in the meantime.
                    Err(create_err) => js
                        .get_key_value(&bucket)
                        .await
                        .with_context(|| format!("cannot open or create KV bucket {bucket}: {create_err}"))?,
                }
            }
        };
        Ok(LatticeStore {
            store,
            bucket,
            revision: 0,
        })
    }

    /// Load every key into `state` without reporting changes. Returns how many entries were
    /// skipped as malformed (each is logged).
    pub async fn load(&mut self, state: &mut LatticeState) -> Result<usize> {
        let last = self.last_sequence().await?;
        let mut keys = self
            .store
            .keys()
            .await
            .with_context(|| format!("list keys of {}", self.bucket))?;
        let mut skipped = 0;
        while let Some(key) = keys.next().await {
            let key = key.with_context(|| format!("list keys of {}", self.bucket))?;
            let Some(entry) = self.store.entry(&key).await.with_context(|| format!("read {key}"))? else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            match parse_entry(&key, &entry.value) {
                Ok(parsed) => {
                    state.put(parsed);
                }
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(%key, error = %e, "skipping malformed lattice entry");
                }
            }
        }
        self.revision = last;
        Ok(skipped)
    }

    /// The bucket's last stream sequence, asked of the server now.
    pub async fn last_sequence(&self) -> Result<u64> {
        let info = self
            .store
            .stream
            .get_info()
            .await
            .with_context(|| format!("stream info of {}", self.bucket))?;
        Ok(info.state.last_sequence)
    }

    /// Watch every key from the revision after the last one applied.
    pub async fn watch(&self) -> Result<kv::Watch> {
        self.store
            .watch_all_from_revision(self.revision + 1)
            .await
            .with_context(|| format!("watch {}", self.bucket))
    }

    /// Apply one watched entry to `state`. Malformed values are logged and skipped.
    pub fn apply(&mut self, entry: kv::Entry, state: &mut LatticeState) -> Applied {
        self.revision = self.revision.max(entry.revision);
        match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => state.delete(&entry.key),
            kv::Operation::Put => match parse_entry(&entry.key, &entry.value) {
                Ok(parsed) => state.put(parsed),
                Err(e) => {
                    tracing::warn!(key = %entry.key, error = %e, "skipping malformed lattice entry");
                    Change::None
                }
            },
        }
    }
}
