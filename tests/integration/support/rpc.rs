//! Signed invocations for the integration tests, written independently of shardhost's code:
//! wasmbus-rpc's `Invocation` encoded with rmp-serde and signed with wascap's invocation claims
//! (PROTOCOL §2.3, §3), the reply check, and [`Lab`]: a host with a known cluster key, its
//! NATS client and event subscription.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shardhost::wire::response::decode_response;

use super::{assert_accepted, expect_event, request_json, unique_lattice, Host, HostOptions, Nats, SignedActor};

pub const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A new key from `make` that wascap's nkeys (0.3.2) can read back from its own seed.
///
/// That nkeys reads the checksum from the first two bytes instead of the last two and inverts
/// the comparison, so `from_seed` refuses the ~1 in 65,536 keys whose CRC equals their prefix
/// bytes (one such cluster key failed a CI run). Tests that copy a key through its seed take
/// their keys from here; shardhost itself uses nkeys 0.4, which has no such bug.
pub fn reloadable_key(make: fn() -> wascap::prelude::KeyPair) -> wascap::prelude::KeyPair {
    const TRIES: usize = 16;
    for _ in 0..TRIES {
        let key = make();
        if wascap::prelude::KeyPair::from_seed(&key.seed().expect("seed")).is_ok() {
            return key;
        }
    }
    panic!("{TRIES} keys in a row that nkeys 0.3.2 cannot read back")
}

/// `msg` as msgpack bin, as serde_bytes writes it.
pub struct Bin<'a>(pub &'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// wasmbus-rpc's `WasmCloudEntity`.
#[derive(Serialize, Clone)]
pub struct Entity {
    pub public_key: String,
    pub link_name: String,
    pub contract_id: String,
}

impl Entity {
    pub fn actor(key: &str) -> Entity {
        Entity {
            public_key: key.to_string(),
            link_name: String::new(),
            contract_id: String::new(),
        }
    }

    pub fn provider(key: &str, contract_id: &str, link_name: &str) -> Entity {
        Entity {
            public_key: key.to_string(),
            link_name: link_name.to_string(),
            contract_id: contract_id.to_string(),
        }
    }

    /// PROTOCOL §2.2, written out independently of shardhost's code.
    pub fn url(&self) -> String {
        if self.public_key.to_uppercase().starts_with('M') {
            format!("wasmbus://{}", self.public_key)
        } else {
            let contract = self.contract_id.replace(':', "/").replace(' ', "_").to_lowercase();
            let link = self.link_name.replace(' ', "_").to_lowercase();
            format!("wasmbus://{contract}/{link}/{}", self.public_key)
        }
    }
}

/// wasmbus-rpc's `Invocation`.
#[derive(Serialize)]
pub struct Invocation<'a> {
    pub origin: Entity,
    pub target: Entity,
    pub operation: &'a str,
    pub msg: Bin<'a>,
    pub id: String,
    pub encoded_claims: String,
    pub host_id: String,
    pub content_length: u64,
    /// W3C trace context (`traceparent`, `tracestate`), omitted when `None` as wasmbus-rpc does.
    #[serde(rename = "traceContext", skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<std::collections::BTreeMap<String, String>>,
}

/// Sign and encode an invocation the way wasmbus-rpc does, with wascap's invocation claims.
/// `hash_msg` is what the hash covers (the full payload; `msg` may be empty when chunked).
pub fn invocation(
    signer: &wascap::prelude::KeyPair,
    origin: Entity,
    target: Entity,
    operation: &str,
    msg: &[u8],
    hash_msg: &[u8],
) -> (String, Vec<u8>) {
    invocation_with(signer, origin, target, operation, msg, hash_msg, |_| {})
}

/// [`invocation`], letting `tamper` change the signed token before it is encoded.
pub fn invocation_with(
    signer: &wascap::prelude::KeyPair,
    origin: Entity,
    target: Entity,
    operation: &str,
    msg: &[u8],
    hash_msg: &[u8],
    tamper: impl FnOnce(&mut String),
) -> (String, Vec<u8>) {
    signed_invocation(signer, origin, target, (operation, msg, hash_msg), tamper, None)
}

/// [`invocation`] carrying a `traceContext` (e.g. a caller's `traceparent`).
pub fn traced_invocation(
    signer: &wascap::prelude::KeyPair,
    origin: Entity,
    target: Entity,
    operation: &str,
    msg: &[u8],
    trace_context: &[(&str, &str)],
) -> (String, Vec<u8>) {
    let trace = trace_context
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    signed_invocation(signer, origin, target, (operation, msg, msg), |_| {}, Some(trace))
}

fn signed_invocation(
    signer: &wascap::prelude::KeyPair,
    origin: Entity,
    target: Entity,
    (operation, msg, hash_msg): (&str, &[u8], &[u8]),
    tamper: impl FnOnce(&mut String),
    trace_context: Option<std::collections::BTreeMap<String, String>>,
) -> (String, Vec<u8>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let target_url = format!("{}/{operation}", target.url());
    let origin_url = origin.url();
    let mut hasher = Sha256::new();
    hasher.update(origin_url.as_bytes());
    hasher.update(target_url.as_bytes());
    hasher.update(operation.as_bytes());
    hasher.update(hash_msg);
    let hash: String = hasher.finalize().iter().map(|b| format!("{b:02X}")).collect();
    let claims = wascap::jwt::Claims::<wascap::jwt::Invocation>::new(
        signer.public_key(),
        id.clone(),
        &target_url,
        &origin_url,
        &hash,
    );
    let mut encoded_claims = claims.encode(signer).expect("wascap signs the invocation");
    tamper(&mut encoded_claims);
    let inv = Invocation {
        origin,
        target,
        operation,
        msg: Bin(msg),
        id: id.clone(),
        encoded_claims,
        host_id: nkeys::KeyPair::new_server().public_key(),
        content_length: hash_msg.len() as u64,
        trace_context,
    };
    let bytes = rmp_serde::to_vec_named(&inv).expect("encode invocation");
    super::capture_message(&format!("wasmbus.rpc.capture.{}", inv.target.public_key), &bytes);
    (id, bytes)
}

/// The reply: Ok(msg) or Err(error), after checking that it answers `id`.
pub fn outcome(reply: &[u8], id: &str) -> Result<Vec<u8>, String> {
    super::capture_message("_INBOX.capture.reply", reply);
    let response = decode_response(reply).expect("reply is an InvocationResponse");
    if !id.is_empty() {
        assert_eq!(response.invocation_id, id, "reply answers the invocation");
    }
    match response.error {
        Some(error) => Err(error.to_string()),
        None => Ok(response.msg.to_vec()),
    }
}

/// A host with two shards, a known cluster key, and a NATS client.
pub struct Lab {
    pub nats: Nats,
    pub host: Host,
    pub nc: async_nats::Client,
    pub events: async_nats::Subscriber,
    pub cluster: wascap::prelude::KeyPair,
    pub dir: tempfile::TempDir,
}

pub async fn lab(tag: &str) -> Lab {
    lab_with(tag, &[]).await
}

pub async fn lab_with(tag: &str, extra: &[(&str, &str)]) -> Lab {
    let mut options = HostOptions::new(&unique_lattice(tag))
        .arg("--heartbeat-interval-ms", "500")
        .arg("--rpc-timeout-ms", "1500");
    for (flag, value) in extra {
        options = options.arg(flag, value);
    }
    Lab::start_on(Nats::start(), options, tempfile::tempdir().expect("tempdir")).await
}

impl Lab {
    /// A host started on `nats` with `options` plus a new cluster key (`--cluster-seed`) and
    /// `--allow-file-load`, its event subscription, and `dir` for the test's files.
    pub async fn start_on(nats: Nats, options: HostOptions, dir: tempfile::TempDir) -> Lab {
        let cluster = reloadable_key(wascap::prelude::KeyPair::new_cluster);
        let mut options = options.arg("--cluster-seed", &cluster.seed().expect("cluster seed"));
        options.args.push("--allow-file-load".to_string());
        let (host, nc, events) = crate::support::host_with_events(&nats, options).await;
        Lab {
            nats,
            host,
            nc,
            events,
            cluster,
            dir,
        }
    }
}

impl Lab {
    /// A second host on this lab's lattice with the same cluster key, connected to `nats` (the
    /// lab's server when None), running `actor` (count 1).
    pub async fn second_host_on(&mut self, nats: Option<&Nats>, actor: &SignedActor, extra: &[(&str, &str)]) -> Host {
        let mut options = HostOptions::new(&self.host.lattice)
            .arg("--cluster-seed", &self.cluster.seed().expect("cluster seed"))
            .arg("--heartbeat-interval-ms", "500");
        for (flag, value) in extra {
            options = options.arg(flag, value);
        }
        options.args.push("--allow-file-load".to_string());
        let host = Host::start(nats.unwrap_or(&self.nats), options).await;
        let path = self.dir.path().join("second.wasm");
        std::fs::write(&path, &actor.bytes).expect("write actor");
        let body = json!({ "actor_ref": format!("file://{}", path.display()), "count": 1, "host_id": host.id });
        let ack = request_json(&self.nc, &host.cmd("la"), body.to_string().as_bytes()).await;
        assert_accepted(&ack, "la on the second host");
        loop {
            let event = super::next_event(&mut self.events, "actor_started", START_TIMEOUT)
                .await
                .expect("actor_started from the second host");
            if event["source"] == host.id.as_str() {
                return host;
            }
        }
    }

    /// A caller actor (count 1) linked as `wasmcloud:keyvalue` link `silent` to a provider
    /// that subscribes and never answers: each `Caller.Call` waits the whole rpc timeout.
    /// Returns the caller and the provider's subscription (what it was sent).
    pub async fn caller_of_a_silent_provider(&mut self) -> (SignedActor, async_nats::Subscriber) {
        let silent_key = nkeys::KeyPair::new_service().public_key();
        let caller = super::signed_caller("silent", "wasmcloud:keyvalue", "KeyValue.Get");
        self.start("caller.wasm", &caller, 1).await;
        let silent = self
            .nc
            .subscribe(format!("wasmbus.rpc.{}.{silent_key}.silent", self.host.lattice))
            .await
            .expect("silent provider");
        let link = json!({ "actor_id": caller.key, "provider_id": silent_key, "link_name": "silent", "contract_id": "wasmcloud:keyvalue", "values": {} });
        let ack = request_json(&self.nc, &self.host.ctl("linkdefs.put"), link.to_string().as_bytes()).await;
        assert_accepted(&ack, "linkdefs.put");
        (caller, silent)
    }

    pub fn subject(&self, actor: &str) -> String {
        format!("wasmbus.rpc.{}.{actor}", self.host.lattice)
    }

    /// Start `actor` from a file and wait until the host serves it (the first signed echo
    /// invocation that comes back).
    pub async fn start(&mut self, name: &str, actor: &SignedActor, count: u32) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, &actor.bytes).expect("write actor");
        let body =
            json!({ "actor_ref": format!("file://{}", path.display()), "count": count, "host_id": self.host.id });
        let ack = request_json(&self.nc, &self.host.cmd("la"), body.to_string().as_bytes()).await;
        assert_accepted(&ack, "la");
        // Other actors' events may still be on the way (started by other means): wait for this one's.
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = expect_event(&mut self.events, "actors_started", left, name).await;
            if event["data"]["public_key"] == actor.key.as_str() {
                return;
            }
        }
    }

    pub async fn send(&self, subject: &str, bytes: Vec<u8>) -> Vec<u8> {
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.nc.request(subject.to_string(), bytes.into()))
            .await
            .expect("reply in time")
            .expect("request");
        reply.payload.to_vec()
    }

    /// An invocation of `target` from a wash-like actor origin, signed with the host's key.
    pub async fn call(&self, target: &str, operation: &str, msg: &[u8]) -> Result<Vec<u8>, String> {
        let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
        let (id, bytes) = invocation(&self.cluster, origin, Entity::actor(target), operation, msg, msg);
        outcome(&self.send(&self.subject(target), bytes).await, &id)
    }

    /// An invocation of `target` from `origin`, signed with the host's key.
    pub async fn call_from(
        &self,
        origin: Entity,
        target: &str,
        operation: &str,
        msg: &[u8],
    ) -> Result<Vec<u8>, String> {
        let (id, bytes) = invocation(&self.cluster, origin, Entity::actor(target), operation, msg, msg);
        outcome(&self.send(&self.subject(target), bytes).await, &id)
    }

    /// An invocation of `target` from a wash-like actor origin, sent now in a task of its own
    /// (a future not yet polled would be sent only when first awaited); its outcome.
    pub fn spawn_call(
        &self,
        target: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> tokio::task::JoinHandle<Result<Vec<u8>, String>> {
        let nc = self.nc.clone();
        let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
        let (id, bytes) = invocation(
            &self.cluster,
            origin,
            Entity::actor(target),
            operation,
            &payload,
            &payload,
        );
        let subject = self.subject(target);
        tokio::spawn(async move {
            let reply = nc.request(subject, bytes.into()).await.expect("a reply");
            outcome(&reply.payload, &id)
        })
    }

    /// [`Lab::call`] that gives up after `timeout`: the reply's payload, or None when nothing
    /// (or an error) came back — for polling while the host reconnects.
    pub async fn try_call(&self, target: &str, operation: &str, msg: &[u8], timeout: Duration) -> Option<Vec<u8>> {
        let origin = Entity::actor(&nkeys::KeyPair::new_module().public_key());
        let (id, bytes) = invocation(&self.cluster, origin, Entity::actor(target), operation, msg, msg);
        let reply = tokio::time::timeout(timeout, self.nc.request(self.subject(target), bytes.into()))
            .await
            .ok()?
            .ok()?;
        outcome(&reply.payload, &id).ok()
    }

    /// The shard counters the host logged last for `shard`, as `name=value` text.
    /// Counters `names` summed over both shards' last logged lines, once `ready` holds for
    /// the sums (within [`EVENT_TIMEOUT`]).
    pub async fn shard_sums(&self, names: &[&str], ready: impl Fn(&[u64]) -> bool) -> Vec<u64> {
        super::eventually(EVENT_TIMEOUT, "shard counters", || async {
            let mut sums = vec![0u64; names.len()];
            for shard in ["shard-0", "shard-1"] {
                let line = self.shard_counters(shard)?;
                for (sum, name) in sums.iter_mut().zip(names) {
                    *sum += counter(&line, name);
                }
            }
            ready(&sums).then_some(sums)
        })
        .await
    }

    pub fn shard_counters(&self, shard: &str) -> Option<String> {
        let log = self.host.stderr();
        log.lines()
            .rev()
            .find(|l| l.contains("shard counters") && l.contains(&format!("shard={shard} ")))
            .map(str::to_string)
    }
}

/// A counter of a shard's counters line: `name=N` (the metrics reporter's info line) or
/// `name: N,` (the control plane's debug line of a shard's report).
pub fn counter(line: &str, name: &str) -> u64 {
    let mut fields = line.split_whitespace();
    while let Some(field) = fields.next() {
        if let Some(value) = field.strip_prefix(&format!("{name}=")) {
            return value.parse().unwrap_or(0);
        }
        if field == format!("{name}:") {
            return fields
                .next()
                .and_then(|v| v.trim_end_matches(',').parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

impl Lab {
    /// Echo on every shard: 32 calls in flight at once, each answered with its payload, and
    /// both shards' counters showing served invocations.
    pub async fn serves_echo_on_every_shard(&mut self) {
        use futures::StreamExt;
        let echo = super::signed_echo(super::ActorSpec::default());
        self.start("echo.wasm", &echo, 2).await;
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..32u32 {
            let payload = format!("payload-{i}").into_bytes();
            let (lab, key) = (&*self, echo.key.clone());
            pending.push(async move {
                let result = lab.call(&key, "HttpServer.HandleRequest", &payload).await;
                (payload, result)
            });
        }
        while let Some((payload, result)) = pending.next().await {
            assert_eq!(result.expect("echo served"), payload);
        }
        for shard in ["shard-0", "shard-1"] {
            super::eventually(EVENT_TIMEOUT, &format!("{shard} served some"), || async {
                self.shard_counters(shard).filter(|line| counter(line, "served") > 0)
            })
            .await;
        }
    }
}
