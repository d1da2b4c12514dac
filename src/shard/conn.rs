//! A shard's own NATS connection, its read and connect side: the core protocol over the shard
//! runtime's TCP stream (TLS when asked or required: [`super::stream`]), with one read buffer,
//! no tokio and no async-nats. The write side is [`super::outbox`].
//!
//! Data plane. Frames are parsed by [`crate::wire::nats`]; a message payload is handed out as a
//! `Bytes` slice of the read buffer (no copy). `PING`s are answered and `INFO` updates (new
//! `max_payload`, cluster `connect_urls`) applied while reading. When the connection breaks,
//! [`Conn::reconnect`] tries every known server with exponential backoff, sends `CONNECT`
//! again (signing the new nonce) and re-subscribes every subscription under its old sid.

use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::io::ReadHalf;
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use serde::Deserialize;

pub use super::link::{
    ConnError, CONNECT_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, MAX_PAYLOAD_BYTES_DEFAULT, READ_CHUNK_BYTES, READ_MIN_BYTES,
    RECONNECT_BACKOFF_MS_MAX, RECONNECT_BACKOFF_MS_MIN, SERVERS_MAX,
};
use super::outbox::write_loop;
pub use super::outbox::Outbox;
use super::rt::{self, TcpStream};
use super::stream::{self as tls_stream, NatsStream};

use crate::config::NatsAuth;
pub use crate::plane::ConnConfig;
use crate::wire::nats::{self as proto, ConnectOptions, ServerOp};

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
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub tls_available: bool,
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
    /// A message built by hand (tests, benches and the in-process shard).
    pub fn new(sid: u64, subject: &str, reply: Option<&str>, payload: Bytes) -> Inbound {
        Inbound {
            sid,
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            reply: reply.map(|r| Bytes::copy_from_slice(r.as_bytes())),
            headers: None,
            payload,
        }
    }

    pub fn subject(&self) -> &str {
        std::str::from_utf8(&self.subject).unwrap_or_default()
    }

    pub fn reply(&self) -> Option<&str> {
        self.reply.as_deref().and_then(|r| std::str::from_utf8(r).ok())
    }

    /// The reply subject as a slice of the frame (kept by tasks that answer later).
    pub fn reply_bytes(&self) -> Option<Bytes> {
        self.reply.clone()
    }
}

/// Bytes read but not yet parsed, in a buffer whose tail past `filled` is already initialised
/// (so a read does not zero 64 KiB first).
struct ReadBuf {
    buf: BytesMut,
    filled: usize,
}

impl ReadBuf {
    fn new(leftover: BytesMut) -> ReadBuf {
        let filled = leftover.len();
        ReadBuf { buf: leftover, filled }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.filled).unwrap_or_default()
    }

    /// Cut the first `used` bytes off as a frozen frame.
    fn take(&mut self, used: usize) -> Bytes {
        self.filled -= used;
        self.buf.split_to(used).freeze()
    }

    /// Drop the first `used` bytes.
    fn skip(&mut self, used: usize) {
        let _ = self.take(used);
    }

    /// Space to read into: at least [`READ_MIN_BYTES`] past `filled`.
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.filled < READ_MIN_BYTES {
            self.buf.resize(self.filled + READ_CHUNK_BYTES, 0);
        }
        &mut self.buf[self.filled..]
    }
}

/// One shard's NATS connection: the reading side (this struct, owned by the shard's reader)
/// plus a writer task and the shared [`Outbox`].
pub struct Conn {
    config: ConnConfig,
    read: ReadHalf<NatsStream>,
    read_buf: ReadBuf,
    info: ServerInfo,
    /// Configured servers first, then those the cluster announced.
    servers: Vec<String>,
    outbox: Rc<Outbox>,
    writer: Option<rt::Task<()>>,
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

impl Conn {
    /// Connect to the first server that answers and start the writer task. Must run on a
    /// shard executor ([`rt`]).
    pub async fn connect(config: ConnConfig) -> Result<Conn, ConnError> {
        Self::connect_with(config, Rc::new(Outbox::new())).await
    }

    /// [`Conn::connect`] with an outbox made earlier: subscriptions and publications queued
    /// in it are sent once connected.
    pub async fn connect_with(config: ConnConfig, outbox: Rc<Outbox>) -> Result<Conn, ConnError> {
        let mut last = ConnError::Resolve("no NATS server configured".to_string());
        for server in config.servers.clone() {
            match Self::open(&server, &config).await {
                Ok((stream, leftover, info)) => {
                    let servers = config.servers.clone();
                    let (read, write) = stream.split();
                    outbox.restart()?;
                    let writer = rt::spawn_local(write_loop(Rc::clone(&outbox), write));
                    let mut conn = Conn {
                        config,
                        read,
                        read_buf: ReadBuf::new(leftover),
                        info: ServerInfo::default(),
                        servers,
                        outbox,
                        writer: Some(writer),
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
    async fn open(server: &str, config: &ConnConfig) -> Result<(NatsStream, BytesMut, ServerInfo), ConnError> {
        let addr = resolve(server)?;
        let tcp = TcpStream::connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await?;
        let handshake = async {
            let mut tcp = tcp;
            let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
            let info = loop {
                if let Some((ServerOp::Info(json), used)) = Self::parse_first(&buf)? {
                    let info: ServerInfo =
                        serde_json::from_slice(json).map_err(|e| ConnError::BadInfo(e.to_string()))?;
                    let _ = buf.split_to(used);
                    break info;
                }
                fill(&mut tcp, &mut buf).await?;
            };
            let mut stream = match tls_for(server, config, &info)? {
                Some(tls) => tls_stream::upgrade(tcp, tls, host_of(server)).await?,
                None => NatsStream::Plain(tcp),
            };
            let mut out = Vec::new();
            write_connect(&mut out, config, &info)?;
            proto::write_ping(&mut out);
            stream.write_all(&out).await?;
            stream.flush().await?;
            loop {
                match Self::parse_first(&buf)? {
                    Some((ServerOp::Pong, used)) => {
                        let _ = buf.split_to(used);
                        return Ok((stream, buf, info));
                    }
                    Some((ServerOp::Err(message), _)) => return Err(ConnError::Rejected(message.to_string())),
                    Some((_, used)) => {
                        let _ = buf.split_to(used);
                    }
                    None => fill(&mut stream, &mut buf).await?,
                }
            }
        };
        match rt::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
            Some(result) => result,
            None => Err(ConnError::Timeout),
        }
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
        if info.max_payload > 0 {
            self.outbox.max_payload.set(info.max_payload);
        }
        self.info = info;
    }

    /// The write side, to share with the shard's tasks.
    pub fn outbox(&self) -> Rc<Outbox> {
        Rc::clone(&self.outbox)
    }

    /// The server's `max_payload` (or our default before it said).
    pub fn max_payload(&self) -> usize {
        self.outbox.max_payload()
    }

    /// The id of the server we are connected to.
    pub fn server_id(&self) -> &str {
        &self.info.server_id
    }

    /// The servers we know, configured and announced.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Wait for bytes and return every complete message they completed (at least one, unless
    /// a `PONG` came: then perhaps none, so a caller waiting on [`Outbox::answered`] sees it),
    /// answering `PING` and applying `INFO` on the way. Messages are
    /// slices of the read buffer. Ends with an error when the socket closes or the writer
    /// failed, after which [`Conn::reconnect`] restores the connection.
    pub async fn read_batch(&mut self, out: &mut Vec<Inbound>) -> Result<(), ConnError> {
        loop {
            let pongs = self.outbox.pongs_received.get();
            self.parse_available(out)?;
            if !out.is_empty() || self.outbox.pongs_received.get() != pongs {
                return Ok(());
            }
            poll_fn(|cx| self.poll_fill(cx)).await?;
        }
    }

    /// One read into the buffer; also ends when the writer reports a failed write.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnError>> {
        if self.outbox.writer_failed.get() {
            return Poll::Ready(Err(ConnError::Closed));
        }
        self.outbox.failure_waker.set(Some(cx.waker().clone()));
        let spare = self.read_buf.spare();
        match Pin::new(&mut self.read).poll_read(cx, spare) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(Err(ConnError::Closed)),
            Poll::Ready(Ok(n)) => {
                self.read_buf.filled += n;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(ConnError::Io(e))),
        }
    }

    /// Parse every complete frame in the buffer.
    fn parse_available(&mut self, out: &mut Vec<Inbound>) -> Result<(), ConnError> {
        loop {
            let max_payload = self.max_payload();
            let buf = self.read_buf.bytes();
            let parsed = proto::parse_server_op(buf, max_payload).map_err(ConnError::Protocol)?;
            let Some((op, used)) = parsed else { return Ok(()) };
            match op {
                ServerOp::Msg {
                    sid,
                    subject,
                    reply,
                    payload,
                } => {
                    let parts = (sid, offset(buf, subject), reply.map(|r| offset(buf, r)), None, payload);
                    out.push(self.take_message(parts, used));
                }
                ServerOp::HMsg {
                    sid,
                    subject,
                    reply,
                    headers,
                    payload,
                } => {
                    let reply = reply.map(|r| offset(buf, r));
                    let parts = (sid, offset(buf, subject), reply, Some(headers), payload);
                    out.push(self.take_message(parts, used));
                }
                ServerOp::Ping => {
                    self.read_buf.skip(used);
                    proto::write_pong(&mut *self.outbox.control.borrow_mut());
                    self.outbox.ready.notify();
                }
                ServerOp::Info(json) => {
                    let info =
                        serde_json::from_slice::<ServerInfo>(json).map_err(|e| ConnError::BadInfo(e.to_string()));
                    self.read_buf.skip(used);
                    self.apply_info(info?);
                }
                ServerOp::Err(message) => {
                    let message = message.to_string();
                    self.read_buf.skip(used);
                    tracing::warn!(%message, "NATS server error");
                    if message.to_ascii_lowercase().contains("permissions violation") {
                        continue;
                    }
                    return Err(ConnError::Rejected(message));
                }
                ServerOp::Pong => {
                    self.read_buf.skip(used);
                    self.outbox.on_pong();
                }
                ServerOp::Ok => self.read_buf.skip(used),
            }
        }
    }

    /// Cut one message frame of `used` bytes off the read buffer and slice its parts out of it.
    fn take_message(&mut self, parts: MessageParts, used: usize) -> Inbound {
        let (sid, subject, reply, headers, payload) = parts;
        let frame = self.read_buf.take(used);
        Inbound {
            sid,
            subject: frame.slice(subject),
            reply: reply.map(|r| frame.slice(r)),
            headers: headers.map(|h| frame.slice(h)),
            payload: frame.slice(payload),
        }
    }

    /// Reconnect after a failure: every known server in turn, with exponential backoff
    /// between rounds; then the subscriptions are sent again under their sids and queued
    /// publications follow. Gives up after `rounds_max` rounds (None = never).
    pub async fn reconnect(&mut self, rounds_max: Option<u32>) -> Result<(), ConnError> {
        if let Some(writer) = self.writer.take() {
            writer.cancel().await;
        }
        let mut backoff = RECONNECT_BACKOFF_MS_MIN;
        let mut round = 0u32;
        loop {
            let mut last = None;
            for server in self.servers.clone() {
                match Self::open(&server, &self.config).await {
                    Ok((stream, leftover, info)) => {
                        let (read, write) = stream.split();
                        self.read = read;
                        self.read_buf = ReadBuf::new(leftover);
                        self.apply_info(info);
                        self.outbox.restart()?;
                        self.writer = Some(rt::spawn_local(write_loop(Rc::clone(&self.outbox), write)));
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
            rt::sleep(Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MS_MAX);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping a shard task cancels it; the writer must not outlive its connection.
        drop(self.writer.take());
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

/// The TLS settings to upgrade with, or `None` for a plain connection: TLS when the operator
/// asked for it (`--rpc-tls`, a `tls://` address) or the server requires it. Asked for and not
/// offered, or required and not configured, is an error naming the cause.
fn tls_for(
    server: &str,
    config: &ConnConfig,
    info: &ServerInfo,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, ConnError> {
    let asked = config.require_tls || server.starts_with("tls://");
    if !asked && !info.tls_required {
        return Ok(None);
    }
    if asked && !info.tls_required && !info.tls_available {
        return Err(ConnError::Tls(format!(
            "{server} does not offer TLS, which this connection requires"
        )));
    }
    match &config.tls {
        Some(tls) => Ok(Some(std::sync::Arc::clone(tls))),
        None => Err(ConnError::Tls(format!(
            "{server} requires TLS and no TLS settings were given (--rpc-tls, --tls-ca-file)"
        ))),
    }
}

/// The host part of a server address (`tls://host:port`, `[::1]:4222`), for the certificate
/// check.
fn host_of(server: &str) -> &str {
    let address = server.trim_start_matches("nats://").trim_start_matches("tls://");
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Read at least one byte more into `buf`; a closed socket is an error.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), ConnError> {
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
            let (jwt, seed) = crate::config::read_creds(path).map_err(ConnError::Credentials)?;
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
