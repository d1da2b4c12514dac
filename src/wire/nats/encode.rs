//! The NATS encoders: what a client sends (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`,
//! `PONG`). Each appends one whole frame to a [`WriteBuffer`] (`Vec<u8>` or `BytesMut`) or
//! returns an [`EncodeError`] having written nothing: subjects are checked, so no malformed
//! frame is ever sent. In debug builds each encoder re-checks its frame with the checks the
//! decoder applies.
//!
//! Plane: data plane, pure. No I/O, no async, no locks; a `PUB` costs at most one allocation
//! (growing the buffer). Imports the parser's limits; the parser imports nothing from here.

use bytes::BytesMut;
use serde::Serialize;

use super::parse::{parse_headers, CONTROL_LINE_BYTES_MAX, HEADER_VERSION};

/// Why a frame could not be encoded. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// Subject empty, with an empty token, with whitespace or control characters, or with a
    /// wildcard where none is allowed (publishing) or `>` not last (subscribing).
    InvalidSubject,
    /// Reply subject invalid, by the rules for publishing subjects.
    InvalidReply,
    /// Queue group empty or with whitespace or control characters.
    InvalidQueueGroup,
    /// Header name empty, or with whitespace, control characters, a colon or non-ASCII bytes.
    InvalidHeaderName,
    /// Header value with CR, LF or another control character, or with leading or trailing
    /// whitespace (the decoder trims it, so it would not come back unchanged).
    InvalidHeaderValue,
    /// The control line would be longer than [`CONTROL_LINE_BYTES_MAX`].
    ControlLineTooLong,
    /// Payload (headers included) larger than the server's `max_payload`: the server would
    /// close the connection.
    PayloadTooLarge,
    /// The `CONNECT` options did not serialize to JSON.
    ConnectJson,
    /// A payload encoder wrote another number of bytes than it announced (our bug).
    PayloadLengthMismatch,
}

impl EncodeError {
    /// A static description (no formatting on the data path).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSubject => "nats: invalid subject",
            Self::InvalidReply => "nats: invalid reply subject",
            Self::InvalidQueueGroup => "nats: invalid queue group",
            Self::InvalidHeaderName => "nats: invalid header name",
            Self::InvalidHeaderValue => "nats: invalid header value",
            Self::ControlLineTooLong => "nats: control line too long",
            Self::PayloadTooLarge => "nats: payload exceeds max_payload",
            Self::ConnectJson => "nats: CONNECT options are not serializable",
            Self::PayloadLengthMismatch => "nats: payload encoder wrote another length than announced",
        }
    }
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for EncodeError {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for bytes::BytesMut {}
}

/// A growable buffer the encoders append to: `Vec<u8>` or `BytesMut`. Growable on purpose (no
/// fixed slice that could overflow), and readable back so debug builds can check each frame.
pub trait WriteBuffer: sealed::Sealed {
    /// Bytes written so far.
    fn written(&self) -> &[u8];
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Makes room for `additional` more bytes, so a frame costs at most one allocation.
    fn reserve_bytes(&mut self, additional: usize);
}

impl WriteBuffer for Vec<u8> {
    fn written(&self) -> &[u8] {
        self
    }
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl WriteBuffer for BytesMut {
    fn written(&self) -> &[u8] {
        self
    }
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn reserve_bytes(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

/// The fields of `CONNECT`. Borrowed strings: build it once per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectOptions<'a> {
    /// `+OK` after every command; off, as it doubles the traffic for nothing.
    pub verbose: bool,
    /// Extra server-side checks of subjects; off, the encoders check them.
    pub pedantic: bool,
    /// Whether the client requires TLS.
    pub tls_required: bool,
    /// Connection name shown in the server's monitoring (say, the host and shard index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Client language, `rust`.
    pub lang: &'a str,
    /// Client version.
    pub version: &'a str,
    /// 1: the server may send `INFO` updates (cluster topology changes) at any time.
    pub protocol: u8,
    /// Whether the server delivers our own publications back to our subscriptions.
    pub echo: bool,
    /// We understand `HMSG`.
    pub headers: bool,
    /// A request without responders gets an immediate 503 `HMSG` instead of a timeout.
    pub no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<&'a str>,
    /// User JWT for decentralized auth; sent with `sig`, the signed server nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<&'a str>,
    /// Public nkey for nkey auth; sent with `sig`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey: Option<&'a str>,
    /// The server's `INFO` nonce signed with the user's key, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<&'a str>,
}

impl<'a> ConnectOptions<'a> {
    /// Options for this client: not verbose, not pedantic, protocol 1, echo on (the NATS
    /// default), headers and no-responders on, no credentials.
    pub fn new(version: &'a str) -> Self {
        Self {
            verbose: false,
            pedantic: false,
            tls_required: false,
            name: None,
            lang: "rust",
            version,
            protocol: 1,
            echo: true,
            headers: true,
            no_responders: true,
            user: None,
            pass: None,
            auth_token: None,
            jwt: None,
            nkey: None,
            sig: None,
        }
    }
}

/// Appends `CONNECT {json}\r\n`. Runs once per connection, so it may allocate.
pub fn write_connect<B: WriteBuffer>(out: &mut B, options: &ConnectOptions<'_>) -> Result<(), EncodeError> {
    let json = serde_json::to_vec(options).map_err(|_| EncodeError::ConnectJson)?;
    // JSON escapes control characters, so the line cannot end early.
    debug_assert!(!json.contains(&b'\r') && !json.contains(&b'\n'));
    out.reserve_bytes(json.len() + 10);
    out.put(b"CONNECT ");
    out.put(&json);
    out.put(b"\r\n");
    Ok(())
}

/// Appends `PUB <subject> [reply] <#bytes>\r\n<payload>\r\n`. `payload_bytes_max` is the
/// server's `max_payload`: a larger payload is an error here rather than a closed connection.
pub fn write_pub<B: WriteBuffer>(
    out: &mut B,
    subject: &str,
    reply: Option<&str>,
    payload: &[u8],
    payload_bytes_max: usize,
) -> Result<(), EncodeError> {
    let start = out.written().len();
    let line_bytes = put_pub_line(out, subject, reply, payload.len(), payload_bytes_max)?;
    out.put(payload);
    out.put(b"\r\n");
    debug_assert_eq!(out.written().len() - start, line_bytes + payload.len() + 2);
    Ok(())
}

/// Appends a `PUB` whose payload of `payload_len` bytes `encode` writes straight into `out`
/// (no intermediate buffer). If `encode` writes any other number of bytes the frame is removed
/// again and [`EncodeError::PayloadLengthMismatch`] returned, so a miscount can never
/// desynchronise the stream.
pub fn write_pub_with(
    out: &mut Vec<u8>,
    subject: &str,
    reply: Option<&str>,
    payload_len: usize,
    payload_bytes_max: usize,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EncodeError> {
    let start = out.len();
    put_pub_line(out, subject, reply, payload_len, payload_bytes_max)?;
    let payload_start = out.len();
    encode(out);
    if out.len() - payload_start != payload_len {
        out.truncate(start);
        return Err(EncodeError::PayloadLengthMismatch);
    }
    out.put(b"\r\n");
    Ok(())
}

/// Checks a publication and appends its control line `PUB <subject> [reply] <#bytes>\r\n`,
/// reserving room for the payload that follows. Returns the control line's length (CRLF
/// included). Nothing is written on error.
fn put_pub_line<B: WriteBuffer>(
    out: &mut B,
    subject: &str,
    reply: Option<&str>,
    payload_len: usize,
    payload_bytes_max: usize,
) -> Result<usize, EncodeError> {
    check_publish_subjects(subject, reply)?;
    if payload_len > payload_bytes_max {
        return Err(EncodeError::PayloadTooLarge);
    }
    let total = Decimal::new(payload_len as u64);
    let line_bytes = "PUB ".len() + subject.len() + reply.map_or(0, |r| r.len() + 1) + 1 + total.len();
    if line_bytes > CONTROL_LINE_BYTES_MAX {
        return Err(EncodeError::ControlLineTooLong);
    }
    out.reserve_bytes(line_bytes + payload_len + 4);
    out.put(b"PUB ");
    put_subjects(out, subject, reply);
    out.put(total.as_bytes());
    out.put(b"\r\n");
    Ok(line_bytes + 2)
}

/// Appends `HPUB <subject> [reply] <#header bytes> <#total bytes>\r\n<headers><payload>\r\n`,
/// with a `NATS/1.0` header block holding `headers` in order. `payload_bytes_max` bounds header
/// block and payload together, as the server does.
pub fn write_hpub<B: WriteBuffer>(
    out: &mut B,
    subject: &str,
    reply: Option<&str>,
    headers: &[(&str, &str)],
    payload: &[u8],
    payload_bytes_max: usize,
) -> Result<(), EncodeError> {
    check_publish_subjects(subject, reply)?;
    let header_bytes = header_block_len(headers)?;
    let total_bytes = header_bytes.saturating_add(payload.len());
    if total_bytes > payload_bytes_max {
        return Err(EncodeError::PayloadTooLarge);
    }
    let header_size = Decimal::new(header_bytes as u64);
    let total_size = Decimal::new(total_bytes as u64);
    let line_bytes =
        "HPUB ".len() + subject.len() + reply.map_or(0, |r| r.len() + 1) + 1 + header_size.len() + 1 + total_size.len();
    if line_bytes > CONTROL_LINE_BYTES_MAX {
        return Err(EncodeError::ControlLineTooLong);
    }
    let start = out.written().len();
    out.reserve_bytes(line_bytes + total_bytes + 4);
    out.put(b"HPUB ");
    put_subjects(out, subject, reply);
    out.put(header_size.as_bytes());
    out.put(b" ");
    out.put(total_size.as_bytes());
    out.put(b"\r\n");
    let block_start = out.written().len();
    put_header_block(out, headers);
    debug_assert!(out
        .written()
        .get(block_start..)
        .is_some_and(|block| block.len() == header_bytes && parse_headers(block).is_ok()));
    out.put(payload);
    out.put(b"\r\n");
    debug_assert_eq!(out.written().len() - start, line_bytes + total_bytes + 4);
    Ok(())
}

/// Appends `SUB <subject> [queue group] <sid>\r\n`. The subject may hold wildcards.
pub fn write_sub<B: WriteBuffer>(out: &mut B, subject: &str, queue: Option<&str>, sid: u64) -> Result<(), EncodeError> {
    if !is_subject(subject, Wildcards::Allowed) {
        return Err(EncodeError::InvalidSubject);
    }
    if queue.is_some_and(|q| !is_token(q)) {
        return Err(EncodeError::InvalidQueueGroup);
    }
    let sid = Decimal::new(sid);
    let line_bytes = "SUB ".len() + subject.len() + queue.map_or(0, |q| q.len() + 1) + 1 + sid.len();
    if line_bytes > CONTROL_LINE_BYTES_MAX {
        return Err(EncodeError::ControlLineTooLong);
    }
    out.reserve_bytes(line_bytes + 2);
    out.put(b"SUB ");
    put_subjects(out, subject, queue);
    out.put(sid.as_bytes());
    out.put(b"\r\n");
    Ok(())
}

/// Appends `UNSUB <sid> [max msgs]\r\n`: with `max_msgs`, the server unsubscribes by itself
/// after that many messages in all.
pub fn write_unsub<B: WriteBuffer>(out: &mut B, sid: u64, max_msgs: Option<u64>) {
    out.put(b"UNSUB ");
    out.put(Decimal::new(sid).as_bytes());
    if let Some(max_msgs) = max_msgs {
        out.put(b" ");
        out.put(Decimal::new(max_msgs).as_bytes());
    }
    out.put(b"\r\n");
}

/// Appends `PING\r\n`.
pub fn write_ping<B: WriteBuffer>(out: &mut B) {
    out.put(b"PING\r\n");
}

/// Appends `PONG\r\n`, the answer to a server's [`super::ServerOp::Ping`].
pub fn write_pong<B: WriteBuffer>(out: &mut B) {
    out.put(b"PONG\r\n");
}

fn check_publish_subjects(subject: &str, reply: Option<&str>) -> Result<(), EncodeError> {
    if !is_subject(subject, Wildcards::Forbidden) {
        return Err(EncodeError::InvalidSubject);
    }
    if reply.is_some_and(|r| !is_subject(r, Wildcards::Forbidden)) {
        return Err(EncodeError::InvalidReply);
    }
    Ok(())
}

/// Writes `<first> [second] ` (with the trailing space before the next argument).
fn put_subjects<B: WriteBuffer>(out: &mut B, first: &str, second: Option<&str>) {
    out.put(first.as_bytes());
    out.put(b" ");
    if let Some(second) = second {
        out.put(second.as_bytes());
        out.put(b" ");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcards {
    /// `*` and `>` tokens are patterns (`SUB`); `>` only as the last token.
    Allowed,
    /// `*` and `>` tokens are not allowed (`PUB`, reply subjects).
    Forbidden,
}

/// A subject: dot-separated tokens, none empty, no whitespace or control characters.
fn is_subject(subject: &str, wildcards: Wildcards) -> bool {
    if !is_token(subject) {
        return false;
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        let is_last = tokens.peek().is_none();
        let valid = match token {
            "" => false,
            "*" => wildcards == Wildcards::Allowed,
            ">" => wildcards == Wildcards::Allowed && is_last,
            _ => true,
        };
        if !valid {
            return false;
        }
    }
    true
}

/// One protocol argument: not empty, no whitespace or control characters (so it cannot split
/// into two arguments or end the line).
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// `NATS/1.0\r\n` + `name: value\r\n` per header + `\r\n`, after checking each header.
fn header_block_len(headers: &[(&str, &str)]) -> Result<usize, EncodeError> {
    let mut block_bytes = HEADER_VERSION.len() + 2 + 2;
    for (name, value) in headers {
        if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') || name.is_empty() {
            return Err(EncodeError::InvalidHeaderName);
        }
        let has_control = value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f);
        if has_control || value.trim_matches([' ', '\t']).len() != value.len() {
            return Err(EncodeError::InvalidHeaderValue);
        }
        block_bytes = block_bytes.saturating_add(name.len() + 2 + value.len() + 2);
    }
    Ok(block_bytes)
}

fn put_header_block<B: WriteBuffer>(out: &mut B, headers: &[(&str, &str)]) {
    out.put(HEADER_VERSION);
    out.put(b"\r\n");
    for (name, value) in headers {
        out.put(name.as_bytes());
        out.put(b": ");
        out.put(value.as_bytes());
        out.put(b"\r\n");
    }
    out.put(b"\r\n");
}

/// A `u64` in decimal, formatted on the stack.
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(value: u64) -> Self {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        let mut rest = value;
        // u64::MAX has 20 digits, so `start` stays in bounds.
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.digits.len() - self.start
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
