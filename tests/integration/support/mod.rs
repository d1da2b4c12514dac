//! Shared fixture for the integration tests: a private `nats-server` (JetStream on, loopback
//! only) and a `shardhost` child process, both killed on drop, plus small helpers for the
//! control-interface requests, CloudEvents and the lattice KV bucket.
//!
//! Every wait here is bounded; every failure message says what was awaited and, for the host,
//! its stderr is printed when a test panics.

#![allow(dead_code)]

mod actors;
pub mod cluster;
pub mod harness;
pub mod http;
pub mod otlp;
pub mod policy;
pub mod provider;
mod registry;
pub mod rpc;
pub mod seccomp;
pub mod tls;

pub use actors::*;
pub use registry::*;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Upper bound for any single control-interface request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a host to publish `host_started` after spawn (debug build, cold caches).
pub const HOST_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for a host to exit after stop / SIGTERM.
pub const HOST_EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for nats-server to accept TCP connections.
const NATS_START_TIMEOUT: Duration = Duration::from_secs(10);

pub const CTL_PREFIX: &str = "wasmbus.ctl";

// ---------------------------------------------------------------------------------------------
// nats-server
// ---------------------------------------------------------------------------------------------

/// Locates the nats-server binary: `$SHARDHOST_NATS_SERVER`, then `nats-server` on `PATH`,
/// then `<repo>/.tools/venv/bin/nats-server`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHARDHOST_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SHARDHOST_NATS_SERVER={} does not name a file",
            path.display()
        );
        return path;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    panic!(
        "no nats-server found (looked at $SHARDHOST_NATS_SERVER, PATH and {}); \
         run `scripts/setup` to install one",
        venv.display()
    );
}

/// A port that was free a moment ago on 127.0.0.1.
/// A loopback port nothing listens on now, for a server a test starts next. Picked below
/// Linux's ephemeral range (32768–60999 by default), not by binding port 0: a port from that
/// range, free when picked, could be handed to another test's outgoing connection before the
/// server bound it (CI saw a cluster node's route port taken that way: "address already in
/// use"). Outgoing connections never get a port from below the range.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..FREE_PORT_TRIES {
        let port = rng.gen_range(FREE_PORT_RANGE);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FREE_PORT_RANGE:?} after {FREE_PORT_TRIES} tries");
}

/// Where [`free_port`] picks from: registered ports no service here uses, below the
/// ephemeral range.
const FREE_PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
/// Random picks [`free_port`] tries before it gives up.
const FREE_PORT_TRIES: usize = 1_000;

/// A private nats-server with JetStream, listening on 127.0.0.1 only.
pub struct Nats {
    child: Child,
    pub port: u16,
    _store_dir: tempfile::TempDir,
    /// User JWT and seed the test clients connect with (operator mode), if any.
    pub credentials: Option<(String, String)>,
    /// TLS the test clients connect with (a server started with a `tls` block), if any.
    pub tls: Option<tls::ClientFiles>,
}

impl Nats {
    pub fn start() -> Nats {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (a restart after [`Nats::kill`] reuses the old port).
    pub fn start_on(port: u16) -> Nats {
        let store_dir = tempfile::tempdir().expect("tempdir for JetStream");
        let mut command = Command::new(nats_server_binary());
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir.path());
        Self::spawn(command, port, store_dir)
    }

    /// Starts a server from a configuration: `config` is appended to the `listen` and
    /// `jetstream` lines (e.g. an operator, a resolver and preloaded accounts). Test clients
    /// connect with `credentials`.
    pub fn start_with_config(config: &str, credentials: (String, String)) -> Nats {
        let mut nats = Self::start_with_conf(config);
        nats.credentials = Some(credentials);
        nats
    }

    /// Starts a server from a configuration: `config` is appended to the `listen` and
    /// `jetstream` lines.
    pub fn start_with_conf(config: &str) -> Nats {
        let port = free_port();
        let store_dir = tempfile::tempdir().expect("tempdir for JetStream");
        let file = store_dir.path().join("nats.conf");
        let text = format!(
            "listen: 127.0.0.1:{port}\njetstream: {{ store_dir: \"{}\" }}\n{config}\n",
            store_dir.path().join("js").display()
        );
        std::fs::write(&file, text).expect("write nats.conf");
        let mut command = Command::new(nats_server_binary());
        command.arg("-c").arg(&file);
        Self::spawn(command, port, store_dir)
    }

    pub(crate) fn spawn(mut command: Command, port: u16, store_dir: tempfile::TempDir) -> Nats {
        let binary = nats_server_binary();
        let log_path = store_dir.path().join("nats-server.log");
        let log = std::fs::File::create(&log_path).expect("nats-server log file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let deadline = Instant::now() + NATS_START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("nats-server exited early ({status}) on port {port}:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server did not accept connections on port {port} within {NATS_START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            child,
            port,
            _store_dir: store_dir,
            credentials: None,
            tls: None,
        }
    }

    /// Kills the server now (SIGKILL) and reaps it: the lattice's NATS is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A fresh async-nats 0.51 client, connected (bounded), with the server's test credentials.
    pub async fn client(&self) -> async_nats::Client {
        let mut options = match &self.credentials {
            Some((jwt, seed)) => jwt_options(jwt, seed),
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(tls) = &self.tls {
            options = tls.apply(options);
        }
        tokio::time::timeout(REQUEST_TIMEOUT, options.connect(self.url()))
            .await
            .expect("timed out connecting to nats-server")
            .expect("connect to nats-server")
    }

    /// A fresh async-nats 0.33 client, as the wasmCloud control-interface 0.33 crate wants.
    pub async fn client_033(&self) -> async_nats_033::Client {
        tokio::time::timeout(REQUEST_TIMEOUT, async_nats_033::connect(self.url()))
            .await
            .expect("timed out connecting to nats-server (0.33 client)")
            .expect("connect to nats-server (0.33 client)")
    }
}

/// async-nats options that authenticate with a user JWT and sign the nonce with `seed`.
pub fn jwt_options(jwt: &str, seed: &str) -> async_nats::ConnectOptions {
    let key = std::sync::Arc::new(nkeys::KeyPair::from_seed(seed).expect("user seed"));
    async_nats::ConnectOptions::with_jwt(jwt.to_string(), move |nonce| {
        let key = key.clone();
        async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
    })
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// shardhost
// ---------------------------------------------------------------------------------------------

/// A lattice name unique to this test run: `{tag}_{pid}_{counter}_{nanos}` (subject- and
/// bucket-name safe).
pub fn unique_lattice(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// How to start a host. `args` are appended after the NATS/lattice flags.
pub struct HostOptions {
    pub lattice: String,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

impl HostOptions {
    pub fn new(lattice: &str) -> HostOptions {
        HostOptions {
            lattice: lattice.to_string(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    pub fn arg(mut self, flag: &str, value: &str) -> HostOptions {
        self.args.push(flag.to_string());
        self.args.push(value.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> HostOptions {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running `shardhost` process. Killed (and reaped) on drop; its stderr is printed if the
/// test is panicking.
pub struct Host {
    child: Option<Child>,
    stderr_file: tempfile::NamedTempFile,
    pub lattice: String,
    /// Host public key (`N…`), from the `host_started` event's `source`.
    pub id: String,
    /// The `host_started` CloudEvent.
    pub started_event: Value,
}

/// The host binary under test: `$SHARDHOST_BIN` if set (e.g. a release build), else the
/// `shardhost` binary cargo built for this test run.
pub fn host_binary() -> PathBuf {
    std::env::var_os("SHARDHOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shardhost")))
}

/// Spawns `shardhost` with the standard flags for `nats` plus `args`, stderr to a temp file.
pub fn spawn_host_process(
    nats_port: u16,
    lattice: &str,
    args: &[String],
    envs: &[(String, String)],
) -> (Child, tempfile::NamedTempFile) {
    let stderr_file = tempfile::NamedTempFile::new().expect("temp file for host stderr");
    let stderr = stderr_file.reopen().expect("reopen host stderr file");
    let mut command = Command::new(host_binary());
    command
        .args(["--nats-host", "127.0.0.1", "--nats-port"])
        .arg(nats_port.to_string())
        .args(["--lattice", lattice, "--shards", "2", "--log-level", "debug"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    // Hermetic: the host also reads its settings from WASMCLOUD_* / NATS_* variables (labels,
    // issuers, JS domain, ...); none from the developer's shell may leak into a test.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("WASMCLOUD_") || key_text.starts_with("NATS_") {
            command.env_remove(key);
        }
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    if seccomp::wanted(envs) {
        seccomp::block_io_uring(&mut command);
    }
    if let Some(kib) = seccomp::memlock_kib(envs) {
        seccomp::limit_memlock(&mut command, kib);
    }
    let child = command.spawn().expect("spawn shardhost");
    (child, stderr_file)
}

impl Host {
    /// Starts a host and waits (bounded) for its `host_started` event on `wasmbus.evt.{lattice}`.
    pub async fn start(nats: &Nats, options: HostOptions) -> Host {
        let nc = nats.client().await;
        let mut events = nc
            .subscribe(format!("wasmbus.evt.{}", options.lattice))
            .await
            .expect("subscribe to events");
        nc.flush().await.expect("flush subscription");

        let (child, stderr_file) = spawn_host_process(nats.port, &options.lattice, &options.args, &options.envs);
        let mut host = Host {
            child: Some(child),
            stderr_file,
            lattice: options.lattice,
            id: String::new(),
            started_event: Value::Null,
        };

        let deadline = Instant::now() + HOST_START_TIMEOUT;
        loop {
            if let Some(status) = host.try_exit_status() {
                panic!("shardhost exited ({status}) before host_started (stderr below)");
            }
            if Instant::now() > deadline {
                panic!("no host_started event within {HOST_START_TIMEOUT:?} (stderr below)");
            }
            let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<Value>(&msg.payload) else {
                continue;
            };
            if event["type"] == "com.wasmcloud.lattice.host_started" {
                host.id = event["source"]
                    .as_str()
                    .expect("host_started source is a string")
                    .to_string();
                host.started_event = event;
                return host;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("host child").id()
    }

    /// The host's stderr so far.
    pub fn stderr(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = self.stderr_file.reopen() {
            let _ = file.read_to_end(&mut bytes);
        }
        // Lossy: one stray byte in a log line must not hide the whole log.
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `Some(status)` if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded by `timeout`) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "host did not exit within {timeout:?} (stderr below)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal (`TERM`, `INT`, …) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// `{ctl}.{lattice}.{rest}` with the default ctl prefix.
    pub fn ctl(&self, rest: &str) -> String {
        format!("{CTL_PREFIX}.{}.{rest}", self.lattice)
    }

    /// `{ctl}.{lattice}.cmd.{host}.{command}`.
    pub fn cmd(&self, command: &str) -> String {
        self.ctl(&format!("cmd.{}.{command}", self.id))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- shardhost stderr (lattice {}) ---\n{}\n--- end of shardhost stderr ---",
                self.lattice,
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// requests, acks, events
// ---------------------------------------------------------------------------------------------

/// Sends a request and parses the reply as JSON (bounded).
pub async fn request_json(nc: &async_nats::Client, subject: &str, body: &[u8]) -> Value {
    capture_ctl_request(subject, body);
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, nc.request(subject.to_string(), body.to_vec().into()))
        .await
        .unwrap_or_else(|_| panic!("no reply on {subject} within {REQUEST_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("request on {subject} failed: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
        panic!(
            "reply on {subject} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&reply.payload)
        )
    })
}

/// Asserts an ack has exactly the shape `{"accepted": bool, "error": string}` and returns
/// `(accepted, error)`.
pub fn parse_ack(ack: &Value) -> (bool, String) {
    let accepted = ack["accepted"]
        .as_bool()
        .unwrap_or_else(|| panic!("ack.accepted is not a bool: {ack}"));
    let error = ack["error"]
        .as_str()
        .unwrap_or_else(|| panic!("ack.error is not a string: {ack}"))
        .to_string();
    (accepted, error)
}

/// Asserts `{"accepted": true, "error": ""}`.
pub fn assert_accepted(ack: &Value, what: &str) {
    let (accepted, error) = parse_ack(ack);
    assert!(accepted, "{what}: expected accepted=true, got {ack}");
    assert_eq!(error, "", "{what}: accepted ack must carry an empty error: {ack}");
}

/// Asserts `{"accepted": false, "error": "<non-empty>"}` and returns the error.
pub fn assert_refused(ack: &Value, what: &str) -> String {
    let (accepted, error) = parse_ack(ack);
    assert!(!accepted, "{what}: expected accepted=false, got {ack}");
    assert!(!error.trim().is_empty(), "{what}: refusal must say why: {ack}");
    error
}

/// Waits (bounded) for the next CloudEvent of type `com.wasmcloud.lattice.{name}` on `sub`,
/// skipping others. Returns `None` on timeout.
pub async fn next_event(sub: &mut async_nats::Subscriber, name: &str, timeout: Duration) -> Option<Value> {
    let wanted = format!("com.wasmcloud.lattice.{name}");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next()).await.ok()??;
        let event: Value = serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
            panic!(
                "event on {} is not JSON ({e}): {:?}",
                msg.subject,
                String::from_utf8_lossy(&msg.payload)
            )
        });
        if event["type"] == wanted.as_str() {
            return Some(event);
        }
    }
}

/// Like [`next_event`] but panics with `what` on timeout.
pub async fn expect_event(sub: &mut async_nats::Subscriber, name: &str, timeout: Duration, what: &str) -> Value {
    next_event(sub, name, timeout)
        .await
        .unwrap_or_else(|| panic!("{what}: no {name} event within {timeout:?}"))
}

/// Asserts the CloudEvents 1.0 envelope shape for an event of type `name` from `host_id`.
pub fn assert_envelope(event: &Value, name: &str, host_id: &str) {
    let object = event
        .as_object()
        .unwrap_or_else(|| panic!("event is not a JSON object: {event}"));
    assert_eq!(event["specversion"], "1.0", "specversion: {event}");
    assert_eq!(
        event["type"],
        format!("com.wasmcloud.lattice.{name}").as_str(),
        "type: {event}"
    );
    assert_eq!(event["source"], host_id, "source must be the host key: {event}");
    assert_eq!(event["datacontenttype"], "application/json", "datacontenttype: {event}");
    let id = event["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {event}"));
    assert!(!id.is_empty(), "id is empty: {event}");
    let time = event["time"]
        .as_str()
        .unwrap_or_else(|| panic!("time is not a string: {event}"));
    assert_rfc3339(time);
    assert!(
        object.get("data").is_some_and(Value::is_object),
        "data must be a JSON object: {event}"
    );
}

/// A loose RFC 3339 check: `YYYY-MM-DDTHH:MM:SS` then optional fraction then `Z` or `±HH:MM`.
pub fn assert_rfc3339(time: &str) {
    let bytes = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape_ok = bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && (bytes[10] == b'T' || bytes[10] == b't')
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    let tail = &time[19..];
    let tail = tail
        .strip_prefix('.')
        .map(|t| t.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(tail);
    let zone_ok = tail == "Z"
        || tail == "z"
        || (tail.len() == 6 && (tail.starts_with('+') || tail.starts_with('-')) && tail.as_bytes()[3] == b':');
    assert!(shape_ok && zone_ok, "time is not RFC 3339: {time:?}");
}

/// Asserts `value` is a JSON object whose values are all strings; returns it as a map.
pub fn string_map(value: &Value, what: &str) -> std::collections::BTreeMap<String, String> {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not a JSON object: {value}"));
    object
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("{what}.{k} is not a string: {value}"));
            (k.clone(), v.to_string())
        })
        .collect()
}

/// Asserts a string is a valid nkey public key with the given prefix (`N`, `C`, …).
pub fn assert_public_key(key: &str, prefix: char, what: &str) {
    assert_eq!(key.len(), 56, "{what} must be 56 chars: {key:?}");
    assert!(key.starts_with(prefix), "{what} must start with {prefix}: {key:?}");
    assert!(
        nkeys::from_public_key(key).is_ok(),
        "{what} is not a valid nkey: {key:?}"
    );
}

/// Start a host on `nats` and subscribe to its lattice's events (before anything happens on
/// it): the host, a client, and the event subscription.
pub async fn host_with_events(nats: &Nats, options: HostOptions) -> (Host, async_nats::Client, async_nats::Subscriber) {
    let host = Host::start(nats, options).await;
    let nc = nats.client().await;
    let events = nc
        .subscribe(format!("wasmbus.evt.{}", host.lattice))
        .await
        .expect("subscribe events");
    nc.flush().await.expect("flush");
    (host, nc, events)
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not true within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// lattice data
// ---------------------------------------------------------------------------------------------

/// `HEX_UPPER(SHA256(actor_id ‖ contract_id ‖ link_name))` (PROTOCOL.md §7.2).
pub fn linkdef_id(actor_id: &str, contract_id: &str, link_name: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(actor_id.as_bytes());
    hasher.update(contract_id.as_bytes());
    hasher.update(link_name.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

/// The lattice KV bucket as the host created it (bounded wait for it to exist).
pub async fn lattice_kv(nc: &async_nats::Client, lattice: &str) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(nc.clone());
    let bucket = format!("LATTICEDATA_{lattice}");
    eventually(REQUEST_TIMEOUT, &format!("KV bucket {bucket} exists"), || {
        let js = js.clone();
        let bucket = bucket.clone();
        async move { js.get_key_value(bucket).await.ok() }
    })
    .await
}

/// `get.links` → the `links` array.
pub async fn get_links(nc: &async_nats::Client, lattice: &str) -> Vec<Value> {
    let reply = request_json(nc, &format!("{CTL_PREFIX}.{lattice}.get.links"), b"").await;
    reply["links"]
        .as_array()
        .unwrap_or_else(|| panic!("get.links reply has no links array: {reply}"))
        .clone()
}

/// `get.claims` → the `claims` array.
pub async fn get_claims(nc: &async_nats::Client, lattice: &str) -> Vec<Value> {
    let reply = request_json(nc, &format!("{CTL_PREFIX}.{lattice}.get.claims"), b"").await;
    reply["claims"]
        .as_array()
        .unwrap_or_else(|| panic!("get.claims reply has no claims array: {reply}"))
        .clone()
}

/// A LinkDefinition JSON body (without `id`).
pub fn linkdef_json(actor_id: &str, provider_id: &str, contract_id: &str, link_name: &str) -> Value {
    serde_json::json!({
        "actor_id": actor_id,
        "provider_id": provider_id,
        "link_name": link_name,
        "contract_id": contract_id,
        "values": {"a": "b"},
    })
}

pub fn new_actor_key() -> String {
    nkeys::KeyPair::new_module().public_key()
}

pub fn new_provider_key() -> String {
    nkeys::KeyPair::new_service().public_key()
}

pub fn new_account_key() -> String {
    nkeys::KeyPair::new_account().public_key()
}

/// Seconds since the epoch.
pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Writes `record` as `$SHARDHOST_FAULTS_OUT/{scenario}.json` when that is set (the fault
/// suite, `loadtest/faults.sh`, collects them). Called at the end of a scenario, after its
/// assertions: a record means its verdict was green.
pub fn fault_record(scenario: &str, record: Value) {
    let Some(dir) = std::env::var_os("SHARDHOST_FAULTS_OUT") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("fault records folder");
    let text = serde_json::to_string_pretty(
        &serde_json::json!({ "scenario": scenario, "verdict": "pass", "figures": record }),
    )
    .expect("record JSON");
    std::fs::write(dir.join(format!("{scenario}.json")), text).expect("write the fault record");
}

/// Largest input kept for a fuzz seed corpus.
const FUZZ_SEED_BYTES_MAX: usize = 64 << 10;

/// With `$SHARDHOST_FUZZ_CAPTURE` set (`fuzz/capture.sh`), keeps `bytes` as a seed of fuzz
/// target `target`: real traffic and artefacts of the integration tests (signed invocations
/// and the replies to them as NATS `MSG` frames and as payloads, signed actor modules, provider
/// archives), named by content so repeats collapse.
pub fn capture_seed(target: &str, bytes: &[u8]) {
    let Some(dir) = std::env::var_os("SHARDHOST_FUZZ_CAPTURE") else {
        return;
    };
    if bytes.is_empty() || bytes.len() > FUZZ_SEED_BYTES_MAX {
        return;
    }
    let dir = PathBuf::from(dir).join(target);
    let name: String = Sha256::digest(bytes)
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(name), bytes);
    }
}

/// [`capture_seed`] of `payload` for the invocation decoder and, framed as the server sends it
/// (`MSG subject sid reply len`), for the NATS frame parser.
pub fn capture_message(subject: &str, payload: &[u8]) {
    capture_seed("invocation", payload);
    let mut frame = format!("MSG {subject} 1 _INBOX.capture {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    // The nats_frame target reads its first byte as a max_payload (x 64 bytes); 0xff = 16 KiB.
    let mut seed = vec![0xff];
    seed.extend_from_slice(&frame);
    capture_seed("nats_frame", &seed);
}

/// [`capture_seed`] of a control request for the `ctl_json` target, which reads the subject
/// below `wasmbus.ctl.{lattice}.` on the first line (host ids as `NFUZZ`) and the body after it.
pub fn capture_ctl_request(subject: &str, body: &[u8]) {
    let Some(rest) = subject
        .strip_prefix("wasmbus.ctl.")
        .and_then(|s| s.split_once('.'))
        .map(|(_, r)| r)
    else {
        return;
    };
    let rest: Vec<&str> = rest
        .split('.')
        .map(|part| {
            if part.len() == 56 && part.starts_with('N') {
                "NFUZZ"
            } else {
                part
            }
        })
        .collect();
    let mut seed = rest.join(".").into_bytes();
    seed.push(b'\n');
    seed.extend_from_slice(body);
    capture_seed("ctl_json", &seed);
}

/// VmRSS of process `pid` in bytes, from `/proc/{pid}/status`.
pub fn vm_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib << 10
}
