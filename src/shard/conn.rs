//! A shard's own NATS connection: the core protocol over a glommio `TcpStream`, with one read
//! buffer and one write buffer, no tokio and no async-nats.
//!
//! Data plane. Frames are parsed by [`crate::wire::nats`]; a message payload is handed out as a
//! `Bytes` slice of the read buffer (no copy). `PING`s are answered and `INFO` updates (new
//! `max_payload`, cluster `connect_urls`) applied while reading. When the connection breaks,
//! [`Conn::reconnect`] tries every known server with exponential backoff, sends `CONNECT`
//! again (signing the new nonce) and re-subscribes every subscription under its old sid.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use serde::Deserialize;

use crate::config::NatsAuth;
use crate::wire::nats::{self as proto, ConnectOptions, ProtocolError, ServerOp};

/// Bytes asked of the socket per read; the buffer grows to hold one whole frame if needed.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Largest payload we accept before the server told us its own `max_payload`.
pub const MAX_PAYLOAD_BYTES_DEFAULT: usize = 1 << 20;
/// Longest a TCP connect may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Longest the handshake (INFO, CONNECT, PING → PONG) may take.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// First and largest wait between reconnect rounds.
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 50;
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 5_000;
/// Most servers remembered from `connect_urls`.
pub const SERVERS_MAX: usize = 64;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("NATS protocol violation: {0}")]
    Protocol(ProtocolError),
    #[error("server refused us: {0}")]
    Rejected(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("handshake did not finish in time")]
    Timeout,
    #[error("bad INFO from the server: {0}")]
    BadInfo(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// The fields of `INFO` we use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub server_id: String,
    #[serde(default)]
    pub max_payload: usize,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub connect_urls: Vec<String>,
    #[serde(default)]
    pub headers: bool,
}

/// A message delivered to one of our subscriptions. Every field is a slice of the read
/// buffer's frame (no copy).
#[derive(Debug, Clone)]
pub struct Inbound {
    pub sid: u64,
    subject: Bytes,
    reply: Option<Bytes>,
    /// The `NATS/1.0` header block of an `HMSG`.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

impl Inbound {
    pub fn subject(&self) -> &str {
        std::str::from_utf8(&self.subject).unwrap_or_default()
    }

    pub fn reply(&self) -> Option<&str> {
        self.reply.as_deref().and_then(|r| std::str::from_utf8(r).ok())
    }
}

/// Settings of a shard connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// `host:port` of each configured server.
    pub servers: Vec<String>,
    pub auth: NatsAuth,
    /// Name shown in the server's monitoring.
    pub name: String,
}

/// A subscription to restore after a reconnect.
#[derive(Debug, Clone)]
struct Subscription {
    subject: String,
    queue: Option<String>,
}

/// One shard's NATS connection.
pub struct Conn {
    config: ConnConfig,
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    info: ServerInfo,
    /// Configured servers first, then those the cluster announced.
    servers: Vec<String>,
    subscriptions: BTreeMap<u64, Subscription>,
    next_sid: u64,
    /// Completed reconnects, for the shard's report.
    pub reconnects: u64,
}

fn resolve(server: &str) -> Result<SocketAddr, ConnError> {
    let server = server.trim_start_matches("nats://").trim_start_matches("tls://");
    server
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConnError::Resolve(server.to_string()))
}

/// Read a `.creds` file: the user JWT and the nkey seed between their armour lines.
fn read_creds(path: &str) -> Result<(String, String), ConnError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConnError::Credentials(format!("{path}: {e}")))?;
    let block = |marker: &str| {
        let mut lines = text
            .lines()
            .skip_while(|l| !(l.contains("BEGIN") && l.contains(marker)))
            .skip(1);
        lines
            .find(|l| !l.trim().is_empty() && !l.starts_with("---"))
            .map(|l| l.trim().to_string())
    };
    match (block("JWT"), block("SEED")) {
        (Some(jwt), Some(seed)) => Ok((jwt, seed)),
        _ => Err(ConnError::Credentials(format!("{path} holds no user JWT and seed"))),
    }
}

impl Conn {
    /// Connect to the first server that answers.
    pub async fn connect(config: ConnConfig) -> Result<Conn, ConnError> {
        let mut last = ConnError::Resolve("no NATS server configured".to_string());
        for server in config.servers.clone() {
            match Self::open(&server, &config).await {
                Ok((stream, read_buf, info)) => {
                    let servers = config.servers.clone();
                    let mut conn = Conn {
                        config,
                        stream,
                        read_buf,
                        write_buf: Vec::with_capacity(READ_CHUNK_BYTES),
                        info: ServerInfo::default(),
                        servers,
                        subscriptions: BTreeMap::new(),
                        next_sid: 1,
                        reconnects: 0,
                    };
                    conn.apply_info(info);
                    return Ok(conn);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// TCP connect, read INFO, send CONNECT + PING, wait for PONG.
    async fn open(server: &str, config: &ConnConfig) -> Result<(TcpStream, BytesMut, ServerInfo), ConnError> {
        let addr = resolve(server)?;
        let mut stream = TcpStream::connect_timeout(addr, Duration::from_millis(CONNECT_TIMEOUT_MS))
            .await
            .map_err(|e| ConnError::Io(e.into()))?;
        stream.set_nodelay(true).map_err(|e| ConnError::Io(e.into()))?;
        let handshake = async {
            let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
            let info = loop {
                if let Some((ServerOp::Info(json), used)) = Self::parse_first(&buf)? {
                    let info: ServerInfo =
                        serde_json::from_slice(json).map_err(|e| ConnError::BadInfo(e.to_string()))?;
                    let _ = buf.split_to(used);
                    break info;
                }
                fill(&mut stream, &mut buf).await?;
            };
            let mut out = Vec::new();
            write_connect(&mut out, config, &info)?;
            proto::write_ping(&mut out);
            stream.write_all(&out).await?;
            loop {
                match Self::parse_first(&buf)? {
                    Some((ServerOp::Pong, used)) => {
                        let _ = buf.split_to(used);
                        return Ok((buf, info));
                    }
                    Some((ServerOp::Err(message), _)) => return Err(ConnError::Rejected(message.to_string())),
                    Some((_, used)) => {
                        let _ = buf.split_to(used);
                    }
                    None => fill(&mut stream, &mut buf).await?,
                }
            }
        };
        let deadline = glommio::timer::sleep(Duration::from_millis(HANDSHAKE_TIMEOUT_MS));
        let (buf, info) = match futures::future::select(Box::pin(handshake), Box::pin(deadline)).await {
            futures::future::Either::Left((result, _)) => result?,
            futures::future::Either::Right(_) => return Err(ConnError::Timeout),
        };
        Ok((stream, buf, info))
    }

    fn parse_first(buf: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, ConnError> {
        proto::parse_server_op(buf, MAX_PAYLOAD_BYTES_DEFAULT.max(64 << 20)).map_err(ConnError::Protocol)
    }

    fn apply_info(&mut self, info: ServerInfo) {
        for url in &info.connect_urls {
            if self.servers.len() < SERVERS_MAX && !self.servers.contains(url) {
                self.servers.push(url.clone());
            }
        }
        self.info = info;
    }

    /// The server's `max_payload` (or our default before it said).
    pub fn max_payload(&self) -> usize {
        if self.info.max_payload == 0 {
            MAX_PAYLOAD_BYTES_DEFAULT
        } else {
            self.info.max_payload
        }
    }

    /// The servers we know, configured and announced.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Queue a subscription; returns its sid. Sent with the next [`Conn::flush`].
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> Result<u64, ConnError> {
        let sid = self.next_sid;
        proto::write_sub(&mut self.write_buf, subject, queue, sid).map_err(|e| ConnError::Encode(e.to_string()))?;
        self.next_sid += 1;
        let subscription = Subscription {
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
        };
        self.subscriptions.insert(sid, subscription);
        Ok(sid)
    }

    /// Queue an unsubscribe.
    pub fn unsubscribe(&mut self, sid: u64) {
        if self.subscriptions.remove(&sid).is_some() {
            proto::write_unsub(&mut self.write_buf, sid, None);
        }
    }

    /// Queue a publication. A payload over the server's `max_payload` is an error here rather
    /// than a connection the server closes.
    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) -> Result<(), ConnError> {
        let max = self.max_payload();
        proto::write_pub(&mut self.write_buf, subject, reply, payload, max)
            .map_err(|e| ConnError::Encode(e.to_string()))
    }

    /// Bytes queued and not yet written.
    pub fn pending_write_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Write everything queued, in one write when it fits.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        Ok(())
    }

    /// Read once from the socket and return every complete message it completed, answering
    /// `PING` and applying `INFO` on the way. Messages are slices of one frozen buffer.
    pub async fn read_batch(&mut self, out: &mut Vec<Inbound>) -> Result<(), ConnError> {
        fill(&mut self.stream, &mut self.read_buf).await?;
        loop {
            let max_payload = self.max_payload();
            let parsed = proto::parse_server_op(&self.read_buf, max_payload).map_err(ConnError::Protocol)?;
            let Some((op, used)) = parsed else { break };
            match op {
                ServerOp::Msg {
                    sid,
                    subject,
                    reply,
                    payload,
                } => {
                    let parts = (
                        sid,
                        offset(&self.read_buf, subject),
                        reply.map(|r| offset(&self.read_buf, r)),
                        None,
                        payload,
                    );
                    out.push(self.take_message(parts, used));
                }
                ServerOp::HMsg {
                    sid,
                    subject,
                    reply,
                    headers,
                    payload,
                } => {
                    let reply = reply.map(|r| offset(&self.read_buf, r));
                    let parts = (sid, offset(&self.read_buf, subject), reply, Some(headers), payload);
                    out.push(self.take_message(parts, used));
                }
                ServerOp::Ping => {
                    let _ = self.read_buf.split_to(used);
                    proto::write_pong(&mut self.write_buf);
                }
                ServerOp::Info(json) => {
                    let info =
                        serde_json::from_slice::<ServerInfo>(json).map_err(|e| ConnError::BadInfo(e.to_string()));
                    let _ = self.read_buf.split_to(used);
                    self.apply_info(info?);
                }
                ServerOp::Err(message) => {
                    let message = message.to_string();
                    let _ = self.read_buf.split_to(used);
                    tracing::warn!(%message, "NATS server error");
                    if message.to_ascii_lowercase().contains("permissions violation") {
                        continue;
                    }
                    return Err(ConnError::Rejected(message));
                }
                ServerOp::Pong | ServerOp::Ok => {
                    let _ = self.read_buf.split_to(used);
                }
            }
        }
        // Answer PINGs promptly even when the caller has nothing to send.
        self.flush().await
    }

    /// Cut one message frame of `used` bytes off the read buffer and slice its parts out of it.
    fn take_message(&mut self, parts: MessageParts, used: usize) -> Inbound {
        let (sid, subject, reply, headers, payload) = parts;
        let frame = self.read_buf.split_to(used).freeze();
        Inbound {
            sid,
            subject: frame.slice(subject),
            reply: reply.map(|r| frame.slice(r)),
            headers: headers.map(|h| frame.slice(h)),
            payload: frame.slice(payload),
        }
    }

    /// Reconnect after a failure: every known server in turn, with exponential backoff
    /// between rounds, then re-subscribe everything under the old sids. Gives up after
    /// `rounds_max` rounds (None = never).
    pub async fn reconnect(&mut self, rounds_max: Option<u32>) -> Result<(), ConnError> {
        let mut backoff = RECONNECT_BACKOFF_MS_MIN;
        let mut round = 0u32;
        loop {
            let mut last = None;
            for server in self.servers.clone() {
                match Self::open(&server, &self.config).await {
                    Ok((stream, read_buf, info)) => {
                        self.stream = stream;
                        self.read_buf = read_buf;
                        self.write_buf.clear();
                        self.apply_info(info);
                        for (sid, sub) in &self.subscriptions {
                            proto::write_sub(&mut self.write_buf, &sub.subject, sub.queue.as_deref(), *sid)
                                .map_err(|e| ConnError::Encode(e.to_string()))?;
                        }
                        self.flush().await?;
                        self.reconnects += 1;
                        tracing::info!(%server, reconnects = self.reconnects, "shard NATS connection restored");
                        return Ok(());
                    }
                    Err(e) => last = Some(e),
                }
            }
            round += 1;
            if rounds_max.is_some_and(|max| round >= max) {
                return Err(last.unwrap_or(ConnError::Closed));
            }
            tracing::debug!(round, backoff_ms = backoff, error = ?last, "shard NATS reconnect failed; backing off");
            glommio::timer::sleep(Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MS_MAX);
        }
    }
}

/// sid and the byte ranges of subject, reply, header block and payload of a `MSG`/`HMSG`.
type MessageParts = (
    u64,
    Range<usize>,
    Option<Range<usize>>,
    Option<Range<usize>>,
    Range<usize>,
);

/// Offsets of `part` (a sub-slice of `buf`) within `buf`.
fn offset(buf: &[u8], part: &str) -> Range<usize> {
    proto::offset_range(buf, part.as_bytes()).unwrap_or(0..0)
}

/// Read at least one byte more into `buf`; a closed socket is an error.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ConnError> {
    let len = buf.len();
    buf.resize(len + READ_CHUNK_BYTES, 0);
    let read = stream.read(&mut buf[len..]).await;
    match read {
        Ok(0) => {
            buf.truncate(len);
            Err(ConnError::Closed)
        }
        Ok(n) => {
            buf.truncate(len + n);
            Ok(())
        }
        Err(e) => {
            buf.truncate(len);
            Err(ConnError::Io(e))
        }
    }
}

fn write_connect(out: &mut Vec<u8>, config: &ConnConfig, info: &ServerInfo) -> Result<(), ConnError> {
    let (jwt, seed) = match &config.auth {
        NatsAuth::None => (None, None),
        NatsAuth::JwtSeed { jwt, seed } => (Some(jwt.clone()), Some(seed.clone())),
        NatsAuth::CredsFile(path) => {
            let (jwt, seed) = read_creds(path)?;
            (Some(jwt), Some(seed))
        }
    };
    let sig = match (&seed, &info.nonce) {
        (Some(seed), Some(nonce)) => {
            let key = nkeys::KeyPair::from_seed(seed).map_err(|e| ConnError::Credentials(e.to_string()))?;
            let signature = key
                .sign(nonce.as_bytes())
                .map_err(|e| ConnError::Credentials(e.to_string()))?;
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature))
        }
        _ => None,
    };
    let mut options = ConnectOptions::new(env!("CARGO_PKG_VERSION"));
    options.name = Some(&config.name);
    options.jwt = jwt.as_deref();
    options.sig = sig.as_deref();
    proto::write_connect(out, &options).map_err(|e| ConnError::Encode(e.to_string()))
}
