//! CloudEvents 1.0 (structured JSON) for the lattice event stream (PROTOCOL §6).
//!
//! Control plane. Each event goes to `wasmbus.evt.{lattice}` (OTP and Rust ≤ 0.80 listeners)
//! and again to `wasmbus.evt.{lattice}.{name}` (Rust 0.81+ and control client 0.33
//! `events_receiver`). [`EventSink`] lets tests capture events without NATS.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// Prefix of CloudEvent `type`s.
pub const EVENT_TYPE_PREFIX: &str = "com.wasmcloud.lattice.";

/// Build one event envelope. `name` is the short name (`host_started`).
pub fn cloud_event(name: &str, source: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": format!("{EVENT_TYPE_PREFIX}{name}"),
        "source": source,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// Where events go.
pub trait EventSink: Send + Sync {
    /// Publish one event (already enveloped) named `name`.
    fn publish(&self, name: &str, event: Value) -> futures::future::BoxFuture<'_, Result<()>>;
    /// Make sure everything published so far has left the process.
    fn flush(&self) -> futures::future::BoxFuture<'_, Result<()>>;
}

/// Events published on NATS.
pub struct NatsEventSink {
    client: async_nats::Client,
    lattice: String,
}

impl NatsEventSink {
    pub fn new(client: async_nats::Client, lattice: &str) -> Self {
        NatsEventSink {
            client,
            lattice: lattice.to_string(),
        }
    }
}

impl EventSink for NatsEventSink {
    fn publish(&self, name: &str, event: Value) -> futures::future::BoxFuture<'_, Result<()>> {
        let name = name.to_string();
        Box::pin(async move {
            let payload: bytes::Bytes = serde_json::to_vec(&event).context("encode event")?.into();
            let base = format!("wasmbus.evt.{}", self.lattice);
            self.client
                .publish(format!("{base}.{name}"), payload.clone())
                .await
                .with_context(|| format!("publish {name}"))?;
            self.client
                .publish(base, payload)
                .await
                .with_context(|| format!("publish {name}"))?;
            Ok(())
        })
    }

    fn flush(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.client.flush().await.context("flush events") })
    }
}

/// Events kept in memory (tests).
#[derive(Default, Clone)]
pub struct MemoryEventSink {
    pub events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl EventSink for MemoryEventSink {
    fn publish(&self, name: &str, event: Value) -> futures::future::BoxFuture<'_, Result<()>> {
        if let Ok(mut events) = self.events.lock() {
            events.push((name.to_string(), event));
        }
        Box::pin(async { Ok(()) })
    }

    fn flush(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Publishes events as one host (`source` = host id), logging failures instead of failing
/// the caller: an event that cannot be sent must not stop the control plane.
#[derive(Clone)]
pub struct Events {
    sink: Arc<dyn EventSink>,
    source: String,
}

impl Events {
    pub fn new(sink: Arc<dyn EventSink>, source: String) -> Self {
        Events { sink, source }
    }

    /// Envelope `data` as event `name` and publish it.
    pub async fn emit(&self, name: &str, data: Value) {
        let event = cloud_event(name, &self.source, data);
        if let Err(e) = self.sink.publish(name, event).await {
            tracing::warn!(event = name, error = %e, "cannot publish event");
        }
    }

    /// Flush published events (used before exit).
    pub async fn flush(&self) {
        if let Err(e) = self.sink.flush().await {
            tracing::warn!(error = %e, "cannot flush events");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_cloudevents_fields() {
        let e = cloud_event("host_started", "Nhost", json!({"a": 1}));
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "com.wasmcloud.lattice.host_started");
        assert_eq!(e["source"], "Nhost");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["data"]["a"], 1);
        assert_eq!(e["id"].as_str().map(str::len), Some(36));
        let time = e["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }

    #[tokio::test]
    async fn memory_sink_collects() {
        let sink = MemoryEventSink::default();
        let events = Events::new(Arc::new(sink.clone()), "N1".into());
        events.emit("host_stopped", json!({"labels": {}})).await;
        let got = sink.events.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "host_stopped");
        assert_eq!(got[0].1["source"], "N1");
    }
}
