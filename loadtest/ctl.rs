//! `start-actor`: the control-interface side of a load test. Find a host (`ping.hosts`), ask
//! it to launch an actor from a file (`cmd.{host}.la`, PROTOCOL §5.1) and wait, bounded, for
//! the CloudEvent that says it started or failed (§6).
//!
//! Runs outside the measured path; every wait has a deadline.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::LoadtestError;

/// How long one `ping.hosts` round waits for a first answer before asking again (a host that
/// is still starting subscribes a moment later).
const PING_ROUND_MS: u64 = 500;
/// How long the `la` request waits for the host's ack.
pub(crate) const ACK_TIMEOUT_MS: u64 = 5_000;
pub(crate) const EVENT_TYPE_PREFIX: &str = "com.wasmcloud.lattice.";

/// Where a control command goes: a lattice over a NATS server, and the host in it.
#[derive(Debug, Clone)]
pub struct HostTarget {
    pub nats_url: String,
    pub lattice: String,
    pub ctl_prefix: String,
    /// `None`: the first host to answer `ping.hosts`.
    pub host_id: Option<String>,
}

impl HostTarget {
    /// `{ctl_prefix}.{lattice}.{rest}`.
    pub fn subject(&self, rest: &str) -> String {
        format!("{}.{}.{rest}", self.ctl_prefix, self.lattice)
    }

    /// Connect and pick the host (`host_id`, or the first to answer `ping.hosts` before
    /// `deadline`).
    pub async fn connect(&self, deadline: Instant) -> Result<(async_nats::Client, String), LoadtestError> {
        let client = connect(&self.nats_url).await?;
        let host_id = match &self.host_id {
            Some(host_id) => host_id.clone(),
            None => first_host(&client, &self.ctl_prefix, &self.lattice, deadline).await?,
        };
        Ok((client, host_id))
    }

    /// [`Self::connect`], then subscribe to the lattice's events — before any command is sent,
    /// so its event cannot be missed.
    pub(crate) async fn connect_with_events(
        &self,
        deadline: Instant,
    ) -> Result<(async_nats::Client, String, LatticeEvents), LoadtestError> {
        let (client, host_id) = self.connect(deadline).await?;
        let events = LatticeEvents::subscribe(&client, &self.lattice).await?;
        Ok((client, host_id, events))
    }
}

/// What `start-actor` needs.
#[derive(Debug, Clone)]
pub struct StartActor {
    pub target: HostTarget,
    /// `file://…` with an absolute path.
    pub actor_ref: String,
    pub count: u16,
    /// Bound on the whole command (finding the host, the ack and the start event).
    pub wait: Duration,
}

/// The started actor and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub public_key: String,
    pub host_id: String,
    /// From sending `la` to the start event (what a `wash start` user waits for).
    pub elapsed: Duration,
}

/// `file://` URL of `path`, made absolute (the host resolves it, maybe from another cwd).
pub fn file_ref(path: &Path) -> Result<String, LoadtestError> {
    let absolute = std::fs::canonicalize(path).map_err(|e| LoadtestError::io(path, e))?;
    Ok(format!("file://{}", absolute.display()))
}

/// What one lattice event means for the launch we are waiting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventVerdict {
    /// `actors_started` for our reference: done.
    Started { public_key: String },
    /// `actor_started` for our reference: one instance (hosts that only send these finish
    /// after `count` of them).
    InstanceStarted { public_key: String },
    /// `actors_start_failed` / `actor_start_failed` for our reference.
    Failed { error: String },
    /// Anything else (other actors, heartbeats, other hosts).
    Unrelated,
}

/// Classify a CloudEvent (PROTOCOL §6) for the launch of `actor_ref` on `host_id`.
pub fn classify_event(event: &Value, actor_ref: &str, host_id: &str) -> EventVerdict {
    let Some(name) = event["type"].as_str().and_then(|t| t.strip_prefix(EVENT_TYPE_PREFIX)) else {
        return EventVerdict::Unrelated;
    };
    let data = &event["data"];
    // Events carry the host as `source`; `host_id` in data where present.
    let from_host = event["source"].as_str() == Some(host_id) || data["host_id"].as_str() == Some(host_id);
    if !from_host {
        return EventVerdict::Unrelated;
    }
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_string();
    match name {
        "actors_started" if data["image_ref"] == actor_ref => EventVerdict::Started {
            public_key: text("public_key"),
        },
        "actor_started" if data["image_ref"] == actor_ref => EventVerdict::InstanceStarted {
            public_key: text("public_key"),
        },
        "actors_start_failed" if data["image_ref"] == actor_ref => EventVerdict::Failed { error: text("error") },
        "actor_start_failed" if data["actor_ref"] == actor_ref => EventVerdict::Failed { error: text("error") },
        _ => EventVerdict::Unrelated,
    }
}

pub(crate) fn remaining_ms(deadline: Instant) -> u64 {
    u64::try_from(deadline.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX)
}

/// Ask `ping.hosts` until a host answers or `deadline` passes; return its id.
pub async fn first_host(
    client: &async_nats::Client,
    ctl_prefix: &str,
    lattice: &str,
    deadline: Instant,
) -> Result<String, LoadtestError> {
    let subject = format!("{ctl_prefix}.{lattice}.ping.hosts");
    let started = Instant::now();
    while Instant::now() < deadline {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| LoadtestError::nats("subscribe for ping replies", e))?;
        client
            .publish_with_reply(subject.clone(), inbox, "".into())
            .await
            .map_err(|e| LoadtestError::nats("ping.hosts", e))?;
        let round_end = (Instant::now() + Duration::from_millis(PING_ROUND_MS)).min(deadline);
        // Within a round, skip what is not a host's answer: the server's "no responders" status
        // (empty, while no host has subscribed yet) or a reply we cannot read.
        while let Ok(Some(message)) = tokio::time::timeout_at(round_end, replies.next()).await {
            if message.status.is_some() {
                continue;
            }
            match serde_json::from_slice::<Value>(&message.payload) {
                Ok(reply) => match reply["id"].as_str() {
                    Some(id) => return Ok(id.to_string()),
                    None => eprintln!("ignoring a ping.hosts reply without \"id\": {reply}"),
                },
                Err(e) => eprintln!("ignoring a ping.hosts reply that is not JSON: {e}"),
            }
        }
        tokio::time::sleep_until(round_end).await;
    }
    Err(LoadtestError::NoHost {
        subject,
        wait_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// A NATS client for the control interface, or a setup error naming `url`.
pub async fn connect(url: &str) -> Result<async_nats::Client, LoadtestError> {
    async_nats::connect(url).await.map_err(|e| LoadtestError::Connect {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// Send a control command and require `{"accepted": true}` before `deadline`.
pub(crate) async fn command_acked(
    client: &async_nats::Client,
    subject: &str,
    command: &Value,
    deadline: Instant,
) -> Result<(), LoadtestError> {
    let ack = tokio::time::timeout_at(
        deadline,
        client.request(subject.to_string(), command.to_string().into()),
    )
    .await
    .map_err(|_| LoadtestError::Timeout {
        what: format!("the ack on {subject}"),
        wait_ms: remaining_ms(deadline),
    })?
    .map_err(|e| LoadtestError::nats(subject.to_string(), e))?;
    let ack: Value = serde_json::from_slice(&ack.payload).map_err(|e| LoadtestError::BadReply {
        what: subject.to_string(),
        reason: e.to_string(),
    })?;
    if ack["accepted"] != true {
        return Err(LoadtestError::Refused(
            ack["error"].as_str().unwrap_or("no reason given").to_string(),
        ));
    }
    Ok(())
}

/// The lattice's event stream, subscribed before a command is sent so its event cannot be
/// missed.
pub(crate) struct LatticeEvents {
    subject: String,
    subscription: async_nats::Subscriber,
}

impl LatticeEvents {
    pub(crate) async fn subscribe(client: &async_nats::Client, lattice: &str) -> Result<LatticeEvents, LoadtestError> {
        let subject = format!("wasmbus.evt.{lattice}");
        let subscription = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| LoadtestError::nats(format!("subscribe {subject}"), e))?;
        Ok(LatticeEvents { subject, subscription })
    }

    /// The next event that parses as JSON; past `deadline`, the error `timed_out` makes.
    pub(crate) async fn next(
        &mut self,
        deadline: Instant,
        timed_out: impl Fn() -> LoadtestError,
    ) -> Result<Value, LoadtestError> {
        loop {
            let message = match tokio::time::timeout_at(deadline, self.subscription.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(LoadtestError::nats(self.subject.clone(), "subscription closed")),
                Err(_) => return Err(timed_out()),
            };
            if let Ok(event) = serde_json::from_slice::<Value>(&message.payload) {
                return Ok(event);
            }
        }
    }
}

/// Launch the actor and wait for it to start.
pub async fn start_actor(request: &StartActor) -> Result<Started, LoadtestError> {
    let deadline = Instant::now() + request.wait;
    let (client, host_id, mut events) = request.target.connect_with_events(deadline).await?;

    let command = json!({ "actor_ref": request.actor_ref, "count": request.count, "host_id": host_id });
    let subject = request.target.subject(&format!("cmd.{host_id}.la"));
    let sent = Instant::now();
    let ack_wait = Duration::from_millis(ACK_TIMEOUT_MS.min(remaining_ms(deadline)));
    command_acked(&client, &subject, &command, Instant::now() + ack_wait).await?;

    let mut instances_started: u16 = 0;
    loop {
        let event = events
            .next(deadline, || LoadtestError::Timeout {
                what: format!("actors_started for {} on {host_id}", request.actor_ref),
                wait_ms: u64::try_from(request.wait.as_millis()).unwrap_or(u64::MAX),
            })
            .await?;
        let public_key = match classify_event(&event, &request.actor_ref, &host_id) {
            EventVerdict::Started { public_key } => public_key,
            EventVerdict::InstanceStarted { public_key } => {
                instances_started = instances_started.saturating_add(1);
                if instances_started < request.count {
                    continue;
                }
                public_key
            }
            EventVerdict::Failed { error } => return Err(LoadtestError::StartFailed(error)),
            EventVerdict::Unrelated => continue,
        };
        return Ok(Started {
            public_key,
            host_id,
            elapsed: sent.elapsed(),
        });
    }
}

/// Stop every instance of actor `public_key` on `host_id` (`cmd.{host}.sa`) and wait, until
/// `deadline`, for its `actors_stopped` / `actor_stopped` event.
pub async fn stop_actor(
    client: &async_nats::Client,
    ctl_prefix: &str,
    lattice: &str,
    host_id: &str,
    public_key: &str,
    deadline: Instant,
) -> Result<Duration, LoadtestError> {
    let mut events = LatticeEvents::subscribe(client, lattice).await?;
    let subject = format!("{ctl_prefix}.{lattice}.cmd.{host_id}.sa");
    let command = json!({ "actor_ref": public_key, "count": 0, "host_id": host_id });
    let sent = Instant::now();
    command_acked(client, &subject, &command, deadline).await?;
    loop {
        let event = events
            .next(deadline, || LoadtestError::Timeout {
                what: format!("actors_stopped for {public_key} on {host_id}"),
                wait_ms: u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .await?;
        let name = event["type"].as_str().and_then(|t| t.strip_prefix(EVENT_TYPE_PREFIX));
        let ours = event["source"].as_str() == Some(host_id) && event["data"]["public_key"] == public_key;
        if ours && matches!(name, Some("actors_stopped" | "actor_stopped")) {
            return Ok(sent.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "NHOST";
    const REF: &str = "file:///tmp/echo.wasm";

    fn event(name: &str, data: Value) -> Value {
        json!({ "specversion": "1.0", "type": format!("{EVENT_TYPE_PREFIX}{name}"), "source": HOST, "data": data })
    }

    #[test]
    fn events_for_our_launch_are_recognised() {
        let started = event(
            "actors_started",
            json!({ "public_key": "MECHO", "image_ref": REF, "count": 1 }),
        );
        assert_eq!(
            classify_event(&started, REF, HOST),
            EventVerdict::Started {
                public_key: "MECHO".into()
            }
        );
        let instance = event("actor_started", json!({ "public_key": "MECHO", "image_ref": REF }));
        assert_eq!(
            classify_event(&instance, REF, HOST),
            EventVerdict::InstanceStarted {
                public_key: "MECHO".into()
            }
        );
        let failed = event(
            "actors_start_failed",
            json!({ "image_ref": REF, "error": "bad claims" }),
        );
        assert_eq!(
            classify_event(&failed, REF, HOST),
            EventVerdict::Failed {
                error: "bad claims".into()
            }
        );
        let failed = event("actor_start_failed", json!({ "actor_ref": REF, "error": "no file" }));
        assert_eq!(
            classify_event(&failed, REF, HOST),
            EventVerdict::Failed {
                error: "no file".into()
            }
        );
    }

    #[test]
    fn other_events_are_unrelated() {
        let other_ref = event(
            "actors_started",
            json!({ "public_key": "MX", "image_ref": "file:///other" }),
        );
        assert_eq!(classify_event(&other_ref, REF, HOST), EventVerdict::Unrelated);
        let mut other_host = event("actors_started", json!({ "public_key": "MX", "image_ref": REF }));
        other_host["source"] = json!("NOTHER");
        assert_eq!(classify_event(&other_host, REF, HOST), EventVerdict::Unrelated);
        // data.host_id alone is enough (a host that puts another value in source).
        other_host["data"]["host_id"] = json!(HOST);
        assert!(matches!(
            classify_event(&other_host, REF, HOST),
            EventVerdict::Started { .. }
        ));
        let heartbeat = event("host_heartbeat", json!({ "actors": {} }));
        assert_eq!(classify_event(&heartbeat, REF, HOST), EventVerdict::Unrelated);
        assert_eq!(classify_event(&json!({"type": 3}), REF, HOST), EventVerdict::Unrelated);
        assert_eq!(classify_event(&json!("x"), REF, HOST), EventVerdict::Unrelated);
    }

    #[test]
    fn file_refs_are_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wasm");
        std::fs::write(&path, b"x").unwrap();
        let url = file_ref(&path).unwrap();
        assert!(url.starts_with("file:///"), "{url}");
        assert!(url.ends_with("/a.wasm"));
        assert!(matches!(
            file_ref(&dir.path().join("missing")),
            Err(LoadtestError::Io { .. })
        ));
    }
}
