//! A shard's own NATS connection: the core protocol over the shard runtime's `TcpStream`, with one read
//! buffer and one write buffer, no tokio and no async-nats.
//!
//! Data plane. Frames are parsed by [`crate::wire::nats`]; a message payload is handed out as a
//! `Bytes` slice of the read buffer (no copy). `PING`s are answered and `INFO` updates (new
//! `max_payload`, cluster `connect_urls`) applied while reading. When the connection breaks,
//! [`Conn::reconnect`] tries every known server with exponential backoff, sends `CONNECT`
//! again (signing the new nonce) and re-subscribes every subscription under its old sid.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use serde::Deserialize;

use super::notify::Notify;
use super::rt::{self, TcpStream};

use crate::config::NatsAuth;
pub use crate::plane::ConnConfig;
use crate::wire::nats::{self as proto, ConnectOptions, ProtocolError, ServerOp};

/// Bytes asked of the socket per read; the buffer grows to hold one whole frame if needed.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Smallest free space offered to a read before the buffer is extended by a chunk.
pub const READ_MIN_BYTES: usize = 16 << 10;
/// Largest payload we accept before the server told us its own `max_payload`.
pub const MAX_PAYLOAD_BYTES_DEFAULT: usize = 1 << 20;
/// Longest a TCP connect may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Longest the handshake (INFO, CONNECT, PING → PONG) may take.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// First and largest wait between reconnect rounds. The cap bounds how long a shard stays
/// away after its server is back (one round at most): with 5 s, a 2 s outage left the shards
/// silent for 1.1 s after NATS returned; at 100 ms a down server costs each shard 10 refused
/// connects a second, which loopback and a LAN carry easily.
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 50;
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 100;
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

/// A subscription to restore after a reconnect.
#[derive(Debug, Clone)]
struct Subscription {
    subject: String,
    queue: Option<String>,
}

/// The write side of a shard's connection, shared (in an `Rc`) by every task of the shard.
///
/// Publishing appends a frame to a buffer and wakes the connection's writer task, which sends
/// everything queued in one `write` when it next runs: replies finished in the same executor
/// turn leave together. Protocol frames (`SUB`, `UNSUB`, `PONG`) and publications are kept
/// apart: after a reconnect the former are rebuilt from the subscription table while queued
/// publications are sent on the new connection (a reply is never dropped because the socket
/// broke before it left).
#[derive(Default)]
pub struct Outbox {
    control: RefCell<Vec<u8>>,
    data: RefCell<Vec<u8>>,
    ready: Notify,
    drained: Notify,
    subscriptions: RefCell<BTreeMap<u64, Subscription>>,
    next_sid: Cell<u64>,
    max_payload: Cell<usize>,
    /// Set by the writer when a write failed; the reader then ends its read with an error.
    writer_failed: Cell<bool>,
    failure_waker: Cell<Option<Waker>>,
    /// `PING`s we sent after the handshake and `PONG`s that answered them.
    pings_sent: Cell<u64>,
    pongs_received: Cell<u64>,
    pong: Notify,
    /// Successful socket writes and the bytes they carried.
    writes: Cell<u64>,
    bytes_written: Cell<u64>,
}

impl Outbox {
    /// An empty outbox; frames queued before the connection exists leave once it does.
    pub fn new() -> Outbox {
        let outbox = Outbox::default();
        outbox.next_sid.set(1);
        outbox.max_payload.set(MAX_PAYLOAD_BYTES_DEFAULT);
        outbox
    }

    /// The server's `max_payload` (or our default before it said).
    pub fn max_payload(&self) -> usize {
        self.max_payload.get()
    }

    /// Subscribe to `subject` (in queue group `queue`); returns the sid. Restored after every
    /// reconnect until [`Outbox::unsubscribe`].
    pub fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<u64, ConnError> {
        let sid = self.next_sid.get();
        proto::write_sub(&mut *self.control.borrow_mut(), subject, queue, sid)
            .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.next_sid.set(sid + 1);
        let subscription = Subscription {
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
        };
        self.subscriptions.borrow_mut().insert(sid, subscription);
        self.ready.notify();
        Ok(sid)
    }

    /// Drop subscription `sid` (unknown sids are ignored).
    pub fn unsubscribe(&self, sid: u64) {
        if self.subscriptions.borrow_mut().remove(&sid).is_some() {
            proto::write_unsub(&mut *self.control.borrow_mut(), sid, None);
            self.ready.notify();
        }
    }

    /// Queue a publication. A payload over the server's `max_payload` is an error here rather
    /// than a connection the server closes.
    pub fn publish(&self, subject: &str, reply: Option<&str>, payload: &[u8]) -> Result<(), ConnError> {
        proto::write_pub(
            &mut *self.data.borrow_mut(),
            subject,
            reply,
            payload,
            self.max_payload(),
        )
        .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.ready.notify();
        Ok(())
    }

    /// Queue a publication whose `payload_len` bytes `encode` writes straight into the write
    /// buffer (see [`proto::write_pub_with`]).
    pub fn publish_with(
        &self,
        subject: &str,
        reply: Option<&str>,
        payload_len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), ConnError> {
        let max = self.max_payload();
        proto::write_pub_with(&mut self.data.borrow_mut(), subject, reply, payload_len, max, encode)
            .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.ready.notify();
        Ok(())
    }

    /// Take the queued publications (the in-process shard's output).
    pub fn take_data(&self) -> Vec<u8> {
        std::mem::take(&mut *self.data.borrow_mut())
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn pending_bytes(&self) -> usize {
        self.control.borrow().len() + self.data.borrow().len()
    }

    /// Socket writes so far and the bytes they carried.
    pub fn write_counts(&self) -> (u64, u64) {
        (self.writes.get(), self.bytes_written.get())
    }

    /// Wait until everything queued so far has been written to the socket (one waiter at a
    /// time).
    pub async fn drained(&self) {
        while self.pending_bytes() > 0 {
            self.drained.notified().await;
        }
    }

    /// Wait until the server has processed everything queued so far: send a `PING` and wait
    /// for its `PONG` (the server handles one connection's commands in order). One waiter at a
    /// time; bound the wait, as a connection may be down.
    pub async fn confirmed(&self) {
        let wanted = self.ping();
        while !self.answered(wanted) {
            self.pong.notified().await;
        }
    }

    /// Send a `PING` after everything queued so far; returns its number for [`Self::answered`]
    /// (for a task that must not wait, such as the reader that will receive the `PONG`).
    pub fn ping(&self) -> u64 {
        let number = self.pings_sent.get() + 1;
        self.pings_sent.set(number);
        proto::write_ping(&mut *self.control.borrow_mut());
        self.ready.notify();
        number
    }

    /// Whether `PING` number `number` was answered (or lost with a connection whose
    /// subscriptions are being sent again).
    pub fn answered(&self, number: u64) -> bool {
        self.pongs_received.get() >= number
    }

    fn on_pong(&self) {
        self.pongs_received.set(self.pongs_received.get() + 1);
        self.pong.notify();
    }

    /// Start over on a new connection: protocol frames queued for the old one are dropped and
    /// every subscription is sent again under its sid, ahead of the queued publications.
    fn restart(&self) -> Result<(), ConnError> {
        let mut control = self.control.borrow_mut();
        control.clear();
        for (sid, sub) in self.subscriptions.borrow().iter() {
            proto::write_sub(&mut *control, &sub.subject, sub.queue.as_deref(), *sid)
                .map_err(|e| ConnError::Encode(e.to_string()))?;
        }
        self.writer_failed.set(false);
        // PINGs lost with the old connection will never be answered: count them as answered
        // (the subscriptions they confirmed are being sent again).
        self.pongs_received.set(self.pings_sent.get());
        self.pong.notify();
        self.ready.notify();
        Ok(())
    }

    fn count_write(&self, bytes: usize) {
        self.writes.set(self.writes.get() + 1);
        self.bytes_written.set(self.bytes_written.get() + bytes as u64);
    }

    fn fail_writer(&self) {
        self.writer_failed.set(true);
        if let Some(waker) = self.failure_waker.take() {
            waker.wake();
        }
    }
}

/// Publications taken out of the outbox for one write. Unless the write completed, dropping it
/// (a failed write, or the writer task cancelled by a reconnect) puts them back at the front of
/// the queue, to be sent on the next connection: delivery across a reconnect is at least once
/// (a frame the old socket did send goes again), never silently lost.
struct Sending<'a> {
    outbox: &'a Outbox,
    buf: Vec<u8>,
    written: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.written || self.buf.is_empty() {
            return;
        }
        let mut data = self.outbox.data.borrow_mut();
        self.buf.extend_from_slice(&data);
        std::mem::swap(&mut *data, &mut self.buf);
    }
}

/// The writer task of one connection: sends whatever is queued, protocol frames first, until a
/// write fails.
async fn write_loop(outbox: Rc<Outbox>, mut socket: WriteHalf<TcpStream>) {
    let mut spare = Vec::with_capacity(READ_CHUNK_BYTES);
    loop {
        if outbox.pending_bytes() == 0 {
            outbox.drained.notify();
            outbox.ready.notified().await;
            continue;
        }
        // Protocol frames: lost with a broken connection (rebuilt by `restart`).
        let control = std::mem::take(&mut *outbox.control.borrow_mut());
        if !control.is_empty() {
            if let Err(error) = socket.write_all(&control).await {
                tracing::debug!(%error, "shard NATS write failed");
                outbox.fail_writer();
                return;
            }
            outbox.count_write(control.len());
        }
        spare.clear();
        std::mem::swap(&mut *outbox.data.borrow_mut(), &mut spare);
        let mut sending = Sending {
            outbox: &outbox,
            buf: std::mem::take(&mut spare),
            written: false,
        };
        if !sending.buf.is_empty() {
            if let Err(error) = socket.write_all(&sending.buf).await {
                tracing::debug!(%error, "shard NATS write failed");
                drop(sending);
                outbox.fail_writer();
                return;
            }
            outbox.count_write(sending.buf.len());
        }
        sending.written = true;
        spare = std::mem::take(&mut sending.buf);
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
    read: ReadHalf<TcpStream>,
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

/// Read a `.creds` file: the user JWT and the nkey seed between their armour lines.
pub fn read_creds(path: &str) -> Result<(String, String), ConnError> {
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
    async fn open(server: &str, config: &ConnConfig) -> Result<(TcpStream, BytesMut, ServerInfo), ConnError> {
        let addr = resolve(server)?;
        let mut stream = TcpStream::connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await?;
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
        let deadline = rt::sleep(Duration::from_millis(HANDSHAKE_TIMEOUT_MS));
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn a_reconnect_resends_subscriptions_once_and_keeps_publications() {
        let outbox = Outbox::new();
        let a = outbox.subscribe("wasmbus.rpc.l.Ma", Some("wasmbus.rpc.l.Ma")).unwrap();
        let b = outbox.subscribe("_INBOX.x.*", None).unwrap();
        outbox.unsubscribe(a);
        outbox.publish("_INBOX.r.1", None, b"reply").unwrap();
        outbox.restart().unwrap();
        // Only the live subscription, under its old sid; the stale SUB/UNSUB frames are gone.
        assert_eq!(text(&outbox.control.borrow()), format!("SUB _INBOX.x.* {b}\r\n"));
        assert_eq!(text(&outbox.data.borrow()), "PUB _INBOX.r.1 5\r\nreply\r\n");
    }

    #[test]
    fn publications_of_an_unfinished_write_go_back_to_the_front() {
        let outbox = Outbox::new();
        outbox.publish("a", None, b"1").unwrap();
        let taken = std::mem::take(&mut *outbox.data.borrow_mut());
        let sending = Sending {
            outbox: &outbox,
            buf: taken,
            written: false,
        };
        outbox.publish("b", None, b"2").unwrap();
        drop(sending);
        assert_eq!(text(&outbox.data.borrow()), "PUB a 1\r\n1\r\nPUB b 1\r\n2\r\n");
        // A finished write is not requeued.
        let taken = std::mem::take(&mut *outbox.data.borrow_mut());
        drop(Sending {
            outbox: &outbox,
            buf: taken,
            written: true,
        });
        assert_eq!(outbox.pending_bytes(), 0);
    }

    #[test]
    fn replies_encoded_in_place_and_miscounts_rolled_back() {
        let outbox = Outbox::new();
        outbox
            .publish_with("r", None, 3, |buf| buf.extend_from_slice(b"abc"))
            .unwrap();
        assert!(outbox
            .publish_with("r", None, 2, |buf| buf.extend_from_slice(b"abc"))
            .is_err());
        assert_eq!(text(&outbox.take_data()), "PUB r 3\r\nabc\r\n");
    }
}
