//! NATS core client protocol, both directions, as pure functions over bytes.
//!
//! Owns: the parser for what a server sends ([`parse_server_op`]: `INFO`, `MSG`, `HMSG`, `PING`,
//! `PONG`, `+OK`, `-ERR`), the `NATS/1.0` header-block parser ([`parse_headers`]), and the
//! encoders for what a client sends (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`).
//!
//! Plane: data plane. Each shard's own connection reads into one buffer and calls
//! [`parse_server_op`] until it answers "need more bytes". No I/O, no async, no locks, and no
//! allocation on the `MSG`/`HMSG` path; no input can make it panic (it is fuzzed).
//!
//! # Incomplete versus invalid
//! As in mini-redis, the parser tells the two apart: `Ok(None)` means the bytes so far are a
//! prefix of a frame that more bytes may complete; `Err` means no continuation can make them
//! valid, so the connection must be dropped. A control line is rejected as soon as it is longer
//! than its limit or starts with something that cannot become a verb, without waiting for CRLF.
//!
//! # Zero copy: offsets, not copies
//! A `MSG`/`HMSG` payload (and header block) is handed out as a `Range<usize>` of offsets into
//! the `buf` passed in, which starts at the frame. The shard keeps its socket bytes in a
//! `BytesMut` and, after routing on the borrowed subject, does
//! `let frame = read_buf.split_to(used).freeze(); let payload = frame.slice(range);`: one
//! reference-counted view, no copy. Subject, reply and error text borrow `&str` from `buf`; to
//! keep one of them past `split_to`, turn it into offsets first with [`offset_range`].
//! Offsets were chosen over taking `&Bytes` so that the same parser runs on a plain `&[u8]` (the
//! fuzzer, the tests, a growable read buffer that is not frozen yet).
//!
//! # Encoders
//! Encoders append one whole frame to a [`WriteBuffer`] (`Vec<u8>` or `BytesMut`) or return an
//! [`EncodeError`] having written nothing: subjects are checked, so no malformed frame is ever
//! sent. In debug builds each encoder re-checks its frame with the checks the decoder applies.

use std::ops::Range;

use bytes::BytesMut;
use serde::Serialize;

/// Longest control line (the text before CRLF) accepted or written, in bytes: nats-server's
/// default `max_control_line`. A longer line without CRLF is invalid, not "need more bytes", so
/// a peer cannot make the read buffer grow without bound.
pub const CONTROL_LINE_BYTES_MAX: usize = 4096;

/// Longest `INFO` line accepted, in bytes. `INFO` is the one line the server may make longer
/// than [`CONTROL_LINE_BYTES_MAX`]: in a cluster it lists every `connect_urls` entry.
pub const INFO_LINE_BYTES_MAX: usize = 64 * 1024;

/// Status code a server puts in the header block of a reply when a request had no responders.
pub const STATUS_NO_RESPONDERS: u16 = 503;

/// The version tag that opens every header block.
const HEADER_VERSION: &[u8] = b"NATS/1.0";

/// `HMSG` has the most arguments: subject, sid, reply, header bytes, total bytes.
const ARGS_COUNT_MAX: usize = 5;

const _: () = assert!(INFO_LINE_BYTES_MAX >= CONTROL_LINE_BYTES_MAX);

/// One operation sent by a NATS server, borrowed from the read buffer.
///
/// Ranges are byte offsets into the `buf` given to [`parse_server_op`] (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO {json}`: the raw JSON object, for the connection to deserialize (it carries
    /// `max_payload`, `headers`, `connect_urls`, the nonce to sign, ...).
    Info(&'a [u8]),
    /// `MSG <subject> <sid> [reply-to] <#bytes>`: a message without headers.
    Msg {
        subject: &'a str,
        /// The subscription id given in `SUB`: tells which subscription this is for.
        sid: u64,
        /// Where the answer goes, for a request.
        reply: Option<&'a str>,
        payload: Range<usize>,
    },
    /// `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>`: a message with a
    /// `NATS/1.0` header block; read it with [`parse_headers`] (a 503 status means "no
    /// responders"). Only its framing is checked here.
    HMsg {
        subject: &'a str,
        sid: u64,
        reply: Option<&'a str>,
        headers: Range<usize>,
        payload: Range<usize>,
    },
    /// `PING`: the server checks we are alive; answer with [`write_pong`].
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK`: acknowledgement, only sent in verbose mode.
    Ok,
    /// `-ERR '<message>'`: the message without its quotes. Most errors close the connection.
    Err(&'a str),
}

/// Why bytes from a server are not the NATS protocol. Each has a static message
/// ([`ProtocolError::as_str`]); any of them means the connection must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The line does not start with a known verb (or cannot become one).
    UnknownVerb,
    /// The control line is longer than its limit.
    ControlLineTooLong,
    /// A CR not followed by LF, or an LF not preceded by CR, in a control line.
    BadLineEnding,
    /// Too few or too many arguments for the verb.
    ArgumentCount,
    /// A subject, reply or error text that is not UTF-8.
    InvalidUtf8,
    /// A sid or size that is not a plain decimal number, or overflows.
    InvalidNumber,
    /// `HMSG` header size larger than its total size.
    HeaderSizeExceedsTotal,
    /// Payload (headers included) larger than the `max_payload` the server announced.
    PayloadTooLarge,
    /// The payload is not followed by CRLF.
    MissingPayloadTerminator,
    /// The header block does not open with `NATS/1.0`, or its status is not three digits.
    InvalidHeaderStatusLine,
    /// A header line is not `Name: value`, or holds a stray CR or LF.
    InvalidHeaderLine,
    /// The header block does not end with an empty line.
    MissingHeaderTerminator,
}

impl ProtocolError {
    /// A static description, for logs and error responses (no formatting on the data path).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownVerb => "nats: unknown protocol verb",
            Self::ControlLineTooLong => "nats: control line too long",
            Self::BadLineEnding => "nats: control line not terminated by CRLF",
            Self::ArgumentCount => "nats: wrong number of arguments",
            Self::InvalidUtf8 => "nats: subject or text is not UTF-8",
            Self::InvalidNumber => "nats: malformed number",
            Self::HeaderSizeExceedsTotal => "nats: header size exceeds total size",
            Self::PayloadTooLarge => "nats: payload exceeds max_payload",
            Self::MissingPayloadTerminator => "nats: payload not followed by CRLF",
            Self::InvalidHeaderStatusLine => "nats: malformed header status line",
            Self::InvalidHeaderLine => "nats: malformed header line",
            Self::MissingHeaderTerminator => "nats: header block not terminated",
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ProtocolError {}

/// The verbs a server sends. Matched without regard to ASCII case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Msg,
    HMsg,
    Ping,
    Pong,
    Ok,
    Err,
    Info,
}

const VERBS: [(&[u8], Verb); 7] = [
    (b"MSG", Verb::Msg),
    (b"HMSG", Verb::HMsg),
    (b"PING", Verb::Ping),
    (b"PONG", Verb::Pong),
    (b"+OK", Verb::Ok),
    (b"-ERR", Verb::Err),
    (b"INFO", Verb::Info),
];

fn is_separator(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn verb_of(token: &[u8]) -> Option<Verb> {
    VERBS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(token))
        .map(|(_, verb)| *verb)
}

/// Whether `partial` (a token cut off by the end of the buffer) may still grow into a verb.
fn may_become_verb(partial: &[u8]) -> bool {
    VERBS.iter().any(|(name, _)| {
        name.get(..partial.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(partial))
    })
}

/// Parses the first server operation in `buf`.
///
/// Returns `Ok(Some((op, used)))` with `used` the length of the whole frame (control line,
/// payload and both CRLFs; always `<= buf.len()`), `Ok(None)` when `buf` is a prefix of a frame
/// that more bytes may complete, or `Err` for a protocol violation. `max_payload_bytes` is the
/// server's `max_payload` from `INFO`; for `HMSG` it bounds headers and payload together.
pub fn parse_server_op(buf: &[u8], max_payload_bytes: usize) -> Result<Option<(ServerOp<'_>, usize)>, ProtocolError> {
    let Some(line_len) = find_control_line(buf)? else {
        return Ok(None);
    };
    let line = buf.get(..line_len).unwrap_or_default();
    let body_start = line_len + 2;
    let verb_len = line.iter().position(|b| is_separator(*b)).unwrap_or(line.len());
    let (verb, args) = line.split_at(verb_len);
    let verb = verb_of(verb).ok_or(ProtocolError::UnknownVerb)?;
    let line_bytes_max = if verb == Verb::Info {
        INFO_LINE_BYTES_MAX
    } else {
        CONTROL_LINE_BYTES_MAX
    };
    if line_len > line_bytes_max {
        return Err(ProtocolError::ControlLineTooLong);
    }
    let op = match verb {
        Verb::Msg => return parse_msg(buf, args, body_start, max_payload_bytes),
        Verb::HMsg => return parse_hmsg(buf, args, body_start, max_payload_bytes),
        Verb::Ping => no_args(args, ServerOp::Ping)?,
        Verb::Pong => no_args(args, ServerOp::Pong)?,
        Verb::Ok => no_args(args, ServerOp::Ok)?,
        Verb::Info => match trim_separators(args) {
            [] => return Err(ProtocolError::ArgumentCount),
            json => ServerOp::Info(json),
        },
        Verb::Err => ServerOp::Err(error_text(args)?),
    };
    Ok(Some((op, body_start)))
}

/// Finds the end of the control line: `Ok(Some(len))` when `buf[len..len + 2]` is CRLF,
/// `Ok(None)` when the line may still be completed, `Err` when it never can.
fn find_control_line(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    // The longest line anywhere is an INFO line: no need to look further than that.
    let window = buf.get(..INFO_LINE_BYTES_MAX + 2).unwrap_or(buf);
    match memchr::memchr2(b'\r', b'\n', window) {
        Some(at) if window.get(at) == Some(&b'\r') => match window.get(at + 1) {
            Some(b'\n') => Ok(Some(at)),
            Some(_) => Err(ProtocolError::BadLineEnding),
            None => check_partial_line(window.get(..at).unwrap_or_default()).map(|()| None),
        },
        Some(_) => Err(ProtocolError::BadLineEnding),
        None => check_partial_line(window).map(|()| None),
    }
}

/// Rejects an unterminated line that no more bytes can make valid: one already longer than the
/// limit for its verb, or one whose first token cannot become a verb.
fn check_partial_line(line: &[u8]) -> Result<(), ProtocolError> {
    let verb_end = line.iter().position(|b| is_separator(*b));
    let token = line.get(..verb_end.unwrap_or(line.len())).unwrap_or_default();
    let known = match verb_end {
        Some(_) => verb_of(token).is_some(),
        None => may_become_verb(token),
    };
    if !known {
        return Err(ProtocolError::UnknownVerb);
    }
    let may_be_info = token.len() <= 4
        && b"INFO"
            .get(..token.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(token));
    let line_bytes_max = if may_be_info {
        INFO_LINE_BYTES_MAX
    } else {
        CONTROL_LINE_BYTES_MAX
    };
    if line.len() > line_bytes_max {
        return Err(ProtocolError::ControlLineTooLong);
    }
    Ok(())
}

fn trim_separators(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_separator(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_separator(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn no_args(args: &[u8], op: ServerOp<'static>) -> Result<ServerOp<'static>, ProtocolError> {
    if trim_separators(args).is_empty() {
        Ok(op)
    } else {
        Err(ProtocolError::ArgumentCount)
    }
}

/// The text of `-ERR 'text'`, without the quotes the server puts around it.
fn error_text(args: &[u8]) -> Result<&str, ProtocolError> {
    let text = trim_separators(args);
    let text = match text {
        [b'\'', inner @ .., b'\''] => inner,
        _ => text,
    };
    std::str::from_utf8(text).map_err(|_| ProtocolError::InvalidUtf8)
}

/// Splits the arguments of a control line on runs of spaces and tabs into `out`. Searches for
/// separators with `memchr2` rather than byte by byte: subjects are long (≈ 80 bytes).
fn split_args<'a>(mut args: &'a [u8], out: &mut [&'a [u8]; ARGS_COUNT_MAX]) -> Result<usize, ProtocolError> {
    let mut count = 0;
    loop {
        while let [first, rest @ ..] = args {
            if !is_separator(*first) {
                break;
            }
            args = rest;
        }
        if args.is_empty() {
            return Ok(count);
        }
        let token_len = memchr::memchr2(b' ', b'\t', args).unwrap_or(args.len());
        let (token, rest) = args.split_at(token_len);
        *out.get_mut(count).ok_or(ProtocolError::ArgumentCount)? = token;
        count += 1;
        args = rest;
    }
}

fn parse_decimal(digits: &[u8]) -> Result<u64, ProtocolError> {
    if digits.is_empty() {
        return Err(ProtocolError::InvalidNumber);
    }
    let mut value: u64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ProtocolError::InvalidNumber);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(ProtocolError::InvalidNumber)?;
    }
    Ok(value)
}

fn parse_size(digits: &[u8]) -> Result<usize, ProtocolError> {
    usize::try_from(parse_decimal(digits)?).map_err(|_| ProtocolError::InvalidNumber)
}

fn parse_text(bytes: &[u8]) -> Result<&str, ProtocolError> {
    std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8)
}

/// Checks that the `total` bytes after `body_start` are followed by CRLF. Returns the frame
/// length, `None` if bytes are missing, `Err` if the terminator is wrong.
fn finish_body(buf: &[u8], body_start: usize, total: usize) -> Result<Option<usize>, ProtocolError> {
    let body_end = body_start.checked_add(total).ok_or(ProtocolError::PayloadTooLarge)?;
    match buf.get(body_end..) {
        None | Some([]) | Some([b'\r']) => Ok(None),
        Some([b'\r', b'\n', ..]) => Ok(Some(body_end + 2)),
        Some(_) => Err(ProtocolError::MissingPayloadTerminator),
    }
}

type Parsed<'a> = Result<Option<(ServerOp<'a>, usize)>, ProtocolError>;

/// `MSG <subject> <sid> [reply-to] <#bytes>`
fn parse_msg<'a>(buf: &'a [u8], args: &'a [u8], body_start: usize, max_payload_bytes: usize) -> Parsed<'a> {
    let mut tokens: [&[u8]; ARGS_COUNT_MAX] = [&[]; ARGS_COUNT_MAX];
    let count = split_args(args, &mut tokens)?;
    let (subject, sid, reply, size) = match tokens.get(..count).unwrap_or_default() {
        [subject, sid, size] => (*subject, *sid, None, *size),
        [subject, sid, reply, size] => (*subject, *sid, Some(*reply), *size),
        _ => return Err(ProtocolError::ArgumentCount),
    };
    let subject = parse_text(subject)?;
    let sid = parse_decimal(sid)?;
    let reply = reply.map(parse_text).transpose()?;
    let total = parse_size(size)?;
    if total > max_payload_bytes {
        return Err(ProtocolError::PayloadTooLarge);
    }
    let Some(used) = finish_body(buf, body_start, total)? else {
        return Ok(None);
    };
    let payload = body_start..body_start + total;
    Ok(Some((
        ServerOp::Msg {
            subject,
            sid,
            reply,
            payload,
        },
        used,
    )))
}

/// `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>`
fn parse_hmsg<'a>(buf: &'a [u8], args: &'a [u8], body_start: usize, max_payload_bytes: usize) -> Parsed<'a> {
    let mut tokens: [&[u8]; ARGS_COUNT_MAX] = [&[]; ARGS_COUNT_MAX];
    let count = split_args(args, &mut tokens)?;
    let (subject, sid, reply, header_size, total_size) = match tokens.get(..count).unwrap_or_default() {
        [subject, sid, header_size, total_size] => (*subject, *sid, None, *header_size, *total_size),
        [subject, sid, reply, header_size, total_size] => (*subject, *sid, Some(*reply), *header_size, *total_size),
        _ => return Err(ProtocolError::ArgumentCount),
    };
    let subject = parse_text(subject)?;
    let sid = parse_decimal(sid)?;
    let reply = reply.map(parse_text).transpose()?;
    let header_bytes = parse_size(header_size)?;
    let total = parse_size(total_size)?;
    if header_bytes > total {
        return Err(ProtocolError::HeaderSizeExceedsTotal);
    }
    if total > max_payload_bytes {
        return Err(ProtocolError::PayloadTooLarge);
    }
    let Some(used) = finish_body(buf, body_start, total)? else {
        return Ok(None);
    };
    let headers = body_start..body_start + header_bytes;
    let payload = body_start + header_bytes..body_start + total;
    Ok(Some((
        ServerOp::HMsg {
            subject,
            sid,
            reply,
            headers,
            payload,
        },
        used,
    )))
}

/// Where `part` lies inside `buf`, as offsets, if it is a sub-slice of it. Lets the shard keep
/// a borrowed subject or reply (say, from a [`ServerOp::Msg`]) as a range into the frozen frame
/// after `split_to`, without copying it.
pub fn offset_range(buf: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= buf.len()).then_some(start..end)
}

/// A parsed `NATS/1.0` header block, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    /// Three-digit status from the first line (`NATS/1.0 503`), for replies the server makes.
    status_code: Option<u16>,
    /// The text after the status code (`Request Timeout`), if any.
    description: Option<&'a str>,
    /// The `Name: value` lines, each ending in CRLF, checked by [`parse_headers`].
    fields: &'a str,
}

impl<'a> Headers<'a> {
    /// The status code of the first line, if it has one.
    pub fn status_code(&self) -> Option<u16> {
        self.status_code
    }

    /// The description after the status code, if any.
    pub fn description(&self) -> Option<&'a str> {
        self.description
    }

    /// Whether this is the server's "no responders" reply to a request (status 503).
    pub fn is_no_responders(&self) -> bool {
        self.status_code == Some(STATUS_NO_RESPONDERS)
    }

    /// The `(name, value)` pairs in order; values without surrounding spaces or tabs.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.fields }
    }

    /// The first value for `name` (matched exactly, as NATS clients do).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(field, _)| *field == name).map(|(_, value)| value)
    }
}

impl<'a> IntoIterator for &Headers<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = HeaderIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the fields of [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // `parse_headers` checked every line, so each step below succeeds.
        let lf = self.rest.find('\n')?;
        let line = self.rest.get(..lf)?.strip_suffix('\r')?;
        self.rest = self.rest.get(lf + 1..)?;
        let (name, value) = line.split_once(':')?;
        Some((name, value.trim_matches([' ', '\t'])))
    }
}

/// Parses an `HMSG` header block: `NATS/1.0[ <status>[ <description>]]\r\n`, then
/// `Name: value\r\n` lines, then an empty line. Checks every line once, so that iterating the
/// result cannot fail.
pub fn parse_headers(block: &[u8]) -> Result<Headers<'_>, ProtocolError> {
    let after_version = block
        .strip_prefix(HEADER_VERSION)
        .ok_or(ProtocolError::InvalidHeaderStatusLine)?;
    let (status_line, after_status) = next_line(after_version).ok_or(ProtocolError::MissingHeaderTerminator)?;
    let status_line = status_line
        .strip_suffix(b"\r")
        .ok_or(ProtocolError::InvalidHeaderStatusLine)?;
    let (status_code, description) = parse_status(status_line)?;
    let fields = after_status
        .strip_suffix(b"\r\n")
        .ok_or(ProtocolError::MissingHeaderTerminator)?;
    let mut rest = fields;
    while !rest.is_empty() {
        let (line, after) = next_line(rest).ok_or(ProtocolError::MissingHeaderTerminator)?;
        check_header_line(line.strip_suffix(b"\r").ok_or(ProtocolError::InvalidHeaderLine)?)?;
        rest = after;
    }
    let fields = std::str::from_utf8(fields).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok(Headers {
        status_code,
        description,
        fields,
    })
}

/// Splits `bytes` after its first LF: the line before it (a CR, if any, kept) and the rest.
fn next_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let lf = memchr::memchr(b'\n', bytes)?;
    Some((bytes.get(..lf)?, bytes.get(lf + 1..)?))
}

/// The part of the first line after `NATS/1.0`: empty, or ` 503`, or ` 408 Request Timeout`.
fn parse_status(line: &[u8]) -> Result<(Option<u16>, Option<&str>), ProtocolError> {
    if line.is_empty() {
        return Ok((None, None));
    }
    if !line.first().copied().is_some_and(is_separator) || line.contains(&b'\r') {
        return Err(ProtocolError::InvalidHeaderStatusLine);
    }
    let line = trim_separators(line);
    let code_len = line.iter().position(|b| is_separator(*b)).unwrap_or(line.len());
    let (code, description) = line.split_at(code_len);
    if code.len() != 3 {
        return Err(ProtocolError::InvalidHeaderStatusLine);
    }
    let code = parse_decimal(code).map_err(|_| ProtocolError::InvalidHeaderStatusLine)?;
    let code = u16::try_from(code).map_err(|_| ProtocolError::InvalidHeaderStatusLine)?;
    let description = match trim_separators(description) {
        [] => None,
        text => Some(parse_text(text)?),
    };
    Ok((Some(code), description))
}

/// `Name: value` (the line without its CRLF). No LF can be left in it; a CR could.
fn check_header_line(line: &[u8]) -> Result<(), ProtocolError> {
    let colon = memchr::memchr(b':', line).ok_or(ProtocolError::InvalidHeaderLine)?;
    let (name, value) = line.split_at(colon);
    if !is_header_name(name) || value.contains(&b'\r') {
        return Err(ProtocolError::InvalidHeaderLine);
    }
    Ok(())
}

/// A header name: not empty, no whitespace, control characters or colon.
fn is_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| *b > b' ' && *b != 0x7f && *b != b':')
}

// ---------------------------------------------------------------------------------------------
// Encoders (client → server).
// ---------------------------------------------------------------------------------------------

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

/// Appends `PONG\r\n`, the answer to a server's [`ServerOp::Ping`].
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    /// An owned server operation: what the test encoder writes and what parsing should give.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TestOp {
        Info(Vec<u8>),
        Msg {
            subject: String,
            sid: u64,
            reply: Option<String>,
            payload: Vec<u8>,
        },
        HMsg {
            subject: String,
            sid: u64,
            reply: Option<String>,
            headers: Vec<u8>,
            payload: Vec<u8>,
        },
        Ping,
        Pong,
        Ok,
        Err(String),
    }

    /// How the test encoder spells a frame: verb case and argument separator vary, as servers
    /// and the protocol allow.
    #[derive(Debug, Clone)]
    struct Spelling {
        lowercase: bool,
        separator: &'static str,
    }

    fn encode(op: &TestOp, spelling: &Spelling, out: &mut Vec<u8>) {
        let sep = spelling.separator;
        let verb = |v: &str| {
            if spelling.lowercase {
                v.to_ascii_lowercase()
            } else {
                v.to_string()
            }
        };
        let reply_arg = |r: &Option<String>| r.as_ref().map(|r| format!("{r}{sep}")).unwrap_or_default();
        match op {
            TestOp::Info(json) => {
                out.extend_from_slice(format!("{}{sep}", verb("INFO")).as_bytes());
                out.extend_from_slice(json);
                out.extend_from_slice(b"\r\n");
            }
            TestOp::Msg {
                subject,
                sid,
                reply,
                payload,
            } => {
                let line = format!(
                    "{}{sep}{subject}{sep}{sid}{sep}{}{}\r\n",
                    verb("MSG"),
                    reply_arg(reply),
                    payload.len()
                );
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            TestOp::HMsg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } => {
                let total = headers.len() + payload.len();
                let line = format!(
                    "{}{sep}{subject}{sep}{sid}{sep}{}{}{sep}{total}\r\n",
                    verb("HMSG"),
                    reply_arg(reply),
                    headers.len()
                );
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(headers);
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            TestOp::Ping => out.extend_from_slice(format!("{}\r\n", verb("PING")).as_bytes()),
            TestOp::Pong => out.extend_from_slice(format!("{}\r\n", verb("PONG")).as_bytes()),
            TestOp::Ok => out.extend_from_slice(format!("{}\r\n", verb("+OK")).as_bytes()),
            TestOp::Err(text) => out.extend_from_slice(format!("{}{sep}'{text}'\r\n", verb("-ERR")).as_bytes()),
        }
    }

    fn to_owned(buf: &[u8], op: &ServerOp<'_>) -> TestOp {
        match op {
            ServerOp::Info(json) => TestOp::Info(json.to_vec()),
            ServerOp::Msg {
                subject,
                sid,
                reply,
                payload,
            } => TestOp::Msg {
                subject: subject.to_string(),
                sid: *sid,
                reply: reply.map(str::to_string),
                payload: buf[payload.clone()].to_vec(),
            },
            ServerOp::HMsg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } => TestOp::HMsg {
                subject: subject.to_string(),
                sid: *sid,
                reply: reply.map(str::to_string),
                headers: buf[headers.clone()].to_vec(),
                payload: buf[payload.clone()].to_vec(),
            },
            ServerOp::Ping => TestOp::Ping,
            ServerOp::Pong => TestOp::Pong,
            ServerOp::Ok => TestOp::Ok,
            ServerOp::Err(text) => TestOp::Err(text.to_string()),
        }
    }

    /// Feeds `stream` to a reader in chunks whose ends are `cuts`, parsing every complete frame
    /// after each chunk, as the shard does after each socket read.
    fn parse_in_chunks(stream: &[u8], cuts: &[usize]) -> Vec<TestOp> {
        let mut pending = Vec::new();
        let mut ops = Vec::new();
        let mut fed = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(fed, stream.len());
            pending.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            while let Some((op, used)) = parse_server_op(&pending, MAX).expect("valid stream") {
                assert!(used <= pending.len());
                ops.push(to_owned(&pending, &op));
                pending.drain(..used);
            }
        }
        assert!(pending.is_empty(), "left over: {pending:?}");
        ops
    }

    fn encode_all(ops: &[(TestOp, Spelling)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (op, spelling) in ops {
            encode(op, spelling, &mut out);
        }
        out
    }

    // ---- strategies ----

    fn subject() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_\\-]{1,10}(\\.[A-Za-z0-9_\\-*>]{1,10}){0,3}"
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            // Dense in CR and LF, so the payload often holds what looks like a frame end.
            proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'M'), any::<u8>()], 0..64),
        ]
    }

    fn header_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9\\-]{0,12}", "([!-~]([ -~]{0,20}[!-~])?)?"), 0..4)
    }

    fn status() -> impl Strategy<Value = Option<(u16, Option<String>)>> {
        proptest::option::of((100u16..1000, proptest::option::of("[A-Za-z][A-Za-z ]{0,15}[A-Za-z]")))
    }

    fn header_block(status: &Option<(u16, Option<String>)>, pairs: &[(String, String)]) -> Vec<u8> {
        let mut block = b"NATS/1.0".to_vec();
        if let Some((code, description)) = status {
            block.extend_from_slice(format!(" {code}").as_bytes());
            if let Some(description) = description {
                block.extend_from_slice(format!(" {description}").as_bytes());
            }
        }
        block.extend_from_slice(b"\r\n");
        for (name, value) in pairs {
            block.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        block.extend_from_slice(b"\r\n");
        block
    }

    fn msg_op() -> impl Strategy<Value = TestOp> {
        (subject(), any::<u64>(), proptest::option::of(subject()), payload()).prop_map(
            |(subject, sid, reply, payload)| TestOp::Msg {
                subject,
                sid,
                reply,
                payload,
            },
        )
    }

    fn hmsg_op() -> impl Strategy<Value = TestOp> {
        (
            subject(),
            any::<u64>(),
            proptest::option::of(subject()),
            status(),
            header_pairs(),
            payload(),
        )
            .prop_map(|(subject, sid, reply, status, pairs, payload)| TestOp::HMsg {
                subject,
                sid,
                reply,
                headers: header_block(&status, &pairs),
                payload,
            })
    }

    fn server_op() -> impl Strategy<Value = TestOp> {
        prop_oneof![
            3 => msg_op(),
            2 => hmsg_op(),
            1 => "\\{\"[a-z_]{1,10}\":[0-9]{1,7}\\}".prop_map(|json| TestOp::Info(json.into_bytes())),
            1 => Just(TestOp::Ping),
            1 => Just(TestOp::Pong),
            1 => Just(TestOp::Ok),
            1 => "[A-Za-z]([A-Za-z ]{0,30}[A-Za-z])?".prop_map(TestOp::Err),
        ]
    }

    fn spelling() -> impl Strategy<Value = Spelling> {
        (
            any::<bool>(),
            prop_oneof![Just(" "), Just("\t"), Just("  "), Just(" \t ")],
        )
            .prop_map(|(lowercase, separator)| Spelling { lowercase, separator })
    }

    fn stream() -> impl Strategy<Value = Vec<(TestOp, Spelling)>> {
        proptest::collection::vec((server_op(), spelling()), 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// (a) A valid stream split at every offset parses to the same operations.
        #[test]
        fn split_at_every_offset_yields_same_ops(ops in stream()) {
            let bytes = encode_all(&ops);
            let expected: Vec<TestOp> = ops.iter().map(|(op, _)| op.clone()).collect();
            for cut in 0..=bytes.len() {
                prop_assert_eq!(&parse_in_chunks(&bytes, &[cut]), &expected, "cut at {}", cut);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// (a) ... and in random chunkings, as socket reads deliver it.
        #[test]
        fn random_chunking_yields_same_ops(
            ops in stream(),
            chunks in proptest::collection::vec(1usize..80, 0..40),
        ) {
            let bytes = encode_all(&ops);
            let cuts: Vec<usize> = chunks.iter().scan(0, |end, len| { *end += len; Some(*end) }).collect();
            let expected: Vec<TestOp> = ops.iter().map(|(op, _)| op.clone()).collect();
            prop_assert_eq!(parse_in_chunks(&bytes, &cuts), expected);
        }

        /// (b) Random bytes never panic; `used` and every range stay inside the buffer.
        #[test]
        fn random_bytes_never_panic(
            prefix in prop_oneof![
                Just(""), Just("MSG "), Just("HMSG "), Just("msg a 1 "), Just("HMSG a 1 b "), Just("-ERR "),
                Just("INFO "), Just("PING"),
            ],
            tail in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'5'), any::<u8>()], 0..300),
            max in prop_oneof![Just(0usize), Just(16), Just(MAX), Just(usize::MAX)],
        ) {
            let mut buf = prefix.as_bytes().to_vec();
            buf.extend_from_slice(&tail);
            if let Ok(Some((op, used))) = parse_server_op(&buf, max) {
                prop_assert!(used <= buf.len());
                match op {
                    ServerOp::Msg { payload, .. } => prop_assert!(payload.end + 2 == used),
                    ServerOp::HMsg { headers, payload, .. } => {
                        prop_assert!(headers.end == payload.start && payload.end + 2 == used);
                        let _ = parse_headers(&buf[headers]);
                    }
                    _ => {}
                }
            }
            let _ = parse_headers(&buf);
            let mut block = b"NATS/1.0".to_vec();
            block.extend_from_slice(&tail);
            let _ = parse_headers(&block).map(|h| h.iter().count());
        }

        /// (c) MSG and HMSG round-trip, binary payloads (with CRLF in them) included.
        #[test]
        fn msg_and_hmsg_round_trip(op in prop_oneof![msg_op(), hmsg_op()], spelling in spelling()) {
            let mut bytes = Vec::new();
            encode(&op, &spelling, &mut bytes);
            let (parsed, used) = parse_server_op(&bytes, MAX).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(to_owned(&bytes, &parsed), op);
        }

        /// (c) Header blocks round-trip: status, description and fields in order.
        #[test]
        fn header_block_round_trip(status in status(), pairs in header_pairs()) {
            let block = header_block(&status, &pairs);
            let headers = parse_headers(&block).unwrap();
            prop_assert_eq!(headers.status_code(), status.as_ref().map(|(code, _)| *code));
            prop_assert_eq!(headers.description(), status.as_ref().and_then(|(_, d)| d.as_deref()));
            let parsed: Vec<(String, String)> =
                headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            prop_assert_eq!(parsed, pairs);
        }

        /// (d) `Ok(None)` only for a prefix that the rest of the frame completes: every strict
        /// prefix of a valid frame is "need more", the whole frame parses, and bytes after it
        /// do not change the result.
        #[test]
        fn need_more_only_for_prefixes_of_a_frame(
            op in server_op(),
            spelling in spelling(),
            after in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut frame = Vec::new();
            encode(&op, &spelling, &mut frame);
            for end in 0..frame.len() {
                prop_assert_eq!(parse_server_op(&frame[..end], MAX), Ok(None), "prefix of {} bytes", end);
            }
            let mut longer = frame.clone();
            longer.extend_from_slice(&after);
            let (parsed, used) = parse_server_op(&longer, MAX).unwrap().unwrap();
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(to_owned(&longer, &parsed), op);
        }

        /// (d) Conversely, a "need more" answer on arbitrary bytes always starts like a verb.
        #[test]
        fn need_more_on_noise_starts_like_a_verb(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            if parse_server_op(&bytes, MAX) == Ok(None) {
                let token: Vec<u8> = bytes.iter().copied().take_while(|b| !is_separator(*b)).collect();
                let token = token.split(|b| *b == b'\r').next().unwrap();
                prop_assert!(may_become_verb(token), "{:?}", bytes);
            }
        }

        /// The client encoders: PUB/HPUB frames have the declared sizes, and the header block
        /// written by HPUB parses back to the same fields.
        #[test]
        fn pub_and_hpub_frames_are_well_formed(
            subject in "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,3}",
            reply in proptest::option::of("_INBOX\\.[A-Za-z0-9]{1,22}"),
            pairs in header_pairs(),
            payload in payload(),
        ) {
            let mut out = Vec::new();
            write_pub(&mut out, &subject, reply.as_deref(), &payload, MAX).unwrap();
            let (line, body) = split_frame(&out);
            let args: Vec<&str> = line.split(' ').collect();
            prop_assert_eq!(args[0], "PUB");
            prop_assert_eq!(args[1], subject.as_str());
            prop_assert_eq!(args[args.len() - 1].parse::<usize>().unwrap(), payload.len());
            prop_assert_eq!(body, &[payload.as_slice(), b"\r\n"].concat()[..]);

            let mut out = BytesMut::new();
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            write_hpub(&mut out, &subject, reply.as_deref(), &borrowed, &payload, MAX).unwrap();
            let (line, body) = split_frame(&out);
            let args: Vec<&str> = line.split(' ').collect();
            prop_assert_eq!(args[0], "HPUB");
            let header_bytes: usize = args[args.len() - 2].parse().unwrap();
            let total: usize = args[args.len() - 1].parse().unwrap();
            prop_assert_eq!(body.len(), total + 2);
            let headers = parse_headers(&body[..header_bytes]).unwrap();
            prop_assert_eq!(headers.iter().collect::<Vec<_>>(), borrowed);
            prop_assert_eq!(&body[header_bytes..total], payload.as_slice());
        }
    }

    fn split_frame(frame: &[u8]) -> (&str, &[u8]) {
        let line_end = frame.windows(2).position(|w| w == b"\r\n").unwrap();
        (std::str::from_utf8(&frame[..line_end]).unwrap(), &frame[line_end + 2..])
    }

    fn parse(bytes: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, ProtocolError> {
        parse_server_op(bytes, MAX)
    }

    fn parse_err(bytes: &[u8]) -> ProtocolError {
        parse(bytes).expect_err("should be invalid")
    }

    // ---- parser: accepted forms ----

    #[test]
    fn parses_msg_with_and_without_reply() {
        let buf = b"MSG a.b 7 5\r\nhello\r\nMSG a.b 8 _INBOX.x 0\r\n\r\n";
        let (op, used) = parse(buf).unwrap().unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "a.b",
                sid: 7,
                reply: None,
                payload: 13..18
            }
        );
        assert_eq!(&buf[13..18], b"hello");
        assert_eq!(used, 20);
        let (op, used) = parse(&buf[20..]).unwrap().unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "a.b",
                sid: 8,
                reply: Some("_INBOX.x"),
                payload: 22..22
            }
        );
        assert_eq!(used, buf.len() - 20);
    }

    #[test]
    fn parses_hmsg_ranges() {
        let buf = b"HMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (op, used) = parse(buf).unwrap().unwrap();
        let ServerOp::HMsg {
            subject,
            sid,
            reply,
            headers,
            payload,
        } = op
        else {
            panic!("{op:?}")
        };
        assert_eq!((subject, sid, reply), ("a", 1, Some("r")));
        assert_eq!(&buf[headers.clone()], b"NATS/1.0\r\n\r\n");
        assert_eq!(&buf[payload], b"hi");
        assert_eq!(used, buf.len());
        assert_eq!(parse_headers(&buf[headers]).unwrap().status_code(), None);
    }

    #[test]
    fn verbs_are_case_insensitive_and_separators_flexible() {
        assert_eq!(parse(b"ping\r\n").unwrap(), Some((ServerOp::Ping, 6)));
        assert_eq!(parse(b"PoNg\r\n").unwrap(), Some((ServerOp::Pong, 6)));
        assert_eq!(parse(b"+ok\r\n").unwrap(), Some((ServerOp::Ok, 5)));
        assert_eq!(parse(b"PING \t\r\n").unwrap(), Some((ServerOp::Ping, 8)));
        let buf = b"msg\tsubj \t 3\t\t_INBOX.1   2\r\nab\r\n";
        let (op, _) = parse(buf).unwrap().unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "subj",
                sid: 3,
                reply: Some("_INBOX.1"),
                payload: 28..30
            }
        );
    }

    #[test]
    fn parses_info_and_err() {
        let buf = b"INFO {\"max_payload\":1048576}  \r\n";
        assert_eq!(
            parse(buf).unwrap(),
            Some((ServerOp::Info(b"{\"max_payload\":1048576}"), buf.len()))
        );
        let buf = b"-ERR 'Authorization Violation'\r\n";
        assert_eq!(
            parse(buf).unwrap(),
            Some((ServerOp::Err("Authorization Violation"), buf.len()))
        );
        assert_eq!(parse(b"-ERR\r\n").unwrap(), Some((ServerOp::Err(""), 6)));
    }

    #[test]
    fn info_may_be_longer_than_a_control_line() {
        let mut buf = b"INFO {\"connect_urls\":\"".to_vec();
        buf.resize(CONTROL_LINE_BYTES_MAX * 4, b'x');
        assert_eq!(parse(&buf), Ok(None));
        buf.extend_from_slice(b"\"}\r\n");
        assert!(matches!(parse(&buf), Ok(Some((ServerOp::Info(_), _)))));
        let mut too_long = b"INFO ".to_vec();
        too_long.resize(INFO_LINE_BYTES_MAX + 1, b'x');
        assert_eq!(parse_err(&too_long), ProtocolError::ControlLineTooLong);
    }

    #[test]
    fn need_more_bytes() {
        for partial in [
            &b""[..],
            b"M",
            b"MS",
            b"MSG",
            b"MSG a 1 5",
            b"MSG a 1 5\r",
            b"MSG a 1 5\r\nhel",
        ] {
            assert_eq!(parse(partial), Ok(None), "{partial:?}");
        }
        assert_eq!(parse(b"MSG a 1 5\r\nhello"), Ok(None));
        assert_eq!(parse(b"MSG a 1 5\r\nhello\r"), Ok(None));
        assert_eq!(parse(b"+O"), Ok(None));
        assert_eq!(parse(b"-er"), Ok(None));
    }

    #[test]
    fn offset_range_locates_borrowed_parts() {
        let buf = b"MSG a.b 7 _INBOX.9 2\r\nhi\r\n";
        let Some((ServerOp::Msg { reply: Some(reply), .. }, _)) = parse(buf).unwrap() else {
            panic!()
        };
        let range = offset_range(buf, reply.as_bytes()).unwrap();
        assert_eq!(&buf[range], b"_INBOX.9");
        assert_eq!(offset_range(buf, b"elsewhere"), None);
        assert_eq!(offset_range(&buf[..4], &buf[2..8]), None);
    }

    // ---- parser: each error ----

    #[test]
    fn unknown_verb_is_invalid_even_before_crlf() {
        assert_eq!(parse_err(b"FOO\r\n"), ProtocolError::UnknownVerb);
        assert_eq!(parse_err(b"X"), ProtocolError::UnknownVerb);
        assert_eq!(parse_err(b"MSGX"), ProtocolError::UnknownVerb);
        assert_eq!(parse_err(b"PIN "), ProtocolError::UnknownVerb);
        assert_eq!(parse_err(b" PING\r\n"), ProtocolError::UnknownVerb);
        assert_eq!(parse_err(b"\r\n"), ProtocolError::UnknownVerb);
        // A publish verb is client → server only.
        assert_eq!(parse_err(b"PUB a 1\r\nx\r\n"), ProtocolError::UnknownVerb);
    }

    #[test]
    fn control_line_too_long_is_invalid_without_crlf() {
        let mut line = b"MSG ".to_vec();
        line.resize(CONTROL_LINE_BYTES_MAX, b'a');
        assert_eq!(parse(&line), Ok(None));
        line.push(b'a');
        assert_eq!(parse_err(&line), ProtocolError::ControlLineTooLong);
        line.extend_from_slice(b" 1 0\r\n\r\n");
        assert_eq!(parse_err(&line), ProtocolError::ControlLineTooLong);
    }

    #[test]
    fn bad_line_endings() {
        assert_eq!(parse_err(b"PING\n"), ProtocolError::BadLineEnding);
        assert_eq!(parse_err(b"PING\rX\n"), ProtocolError::BadLineEnding);
        assert_eq!(parse_err(b"MSG a\n1 0\r\n\r\n"), ProtocolError::BadLineEnding);
    }

    #[test]
    fn argument_counts() {
        assert_eq!(parse_err(b"MSG a 1\r\n"), ProtocolError::ArgumentCount);
        assert_eq!(parse_err(b"MSG a 1 r 2 3\r\n"), ProtocolError::ArgumentCount);
        assert_eq!(parse_err(b"HMSG a 1 2\r\n"), ProtocolError::ArgumentCount);
        assert_eq!(parse_err(b"HMSG a 1 r 2 3 4\r\n"), ProtocolError::ArgumentCount);
        assert_eq!(parse_err(b"PING x\r\n"), ProtocolError::ArgumentCount);
        assert_eq!(parse_err(b"+OK now\r\n"), ProtocolError::ArgumentCount);
        assert_eq!(parse_err(b"INFO  \r\n"), ProtocolError::ArgumentCount);
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(parse_err(b"MSG a x 1\r\n"), ProtocolError::InvalidNumber);
        assert_eq!(parse_err(b"MSG a 1 -1\r\n"), ProtocolError::InvalidNumber);
        assert_eq!(parse_err(b"MSG a 1 +1\r\n"), ProtocolError::InvalidNumber);
        assert_eq!(
            parse_err(b"MSG a 18446744073709551616 1\r\n"),
            ProtocolError::InvalidNumber
        );
        assert_eq!(parse_err(b"HMSG a 1 1x 2\r\n"), ProtocolError::InvalidNumber);
        assert_eq!(parse(b"MSG a 18446744073709551615 0\r\n\r\n").unwrap().unwrap().1, 32);
    }

    #[test]
    fn non_utf8_subject_reply_or_error() {
        assert_eq!(parse_err(b"MSG a\xff 1 0\r\n\r\n"), ProtocolError::InvalidUtf8);
        assert_eq!(parse_err(b"MSG a 1 \xc3 0\r\n\r\n"), ProtocolError::InvalidUtf8);
        assert_eq!(parse_err(b"-ERR '\xff'\r\n"), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn payload_over_max_is_invalid_before_it_arrives() {
        assert_eq!(
            parse_server_op(b"MSG a 1 11\r\n", 10),
            Err(ProtocolError::PayloadTooLarge)
        );
        assert_eq!(parse_server_op(b"MSG a 1 10\r\n", 10), Ok(None));
        assert_eq!(
            parse_server_op(b"HMSG a 1 8 11\r\n", 10),
            Err(ProtocolError::PayloadTooLarge)
        );
        assert_eq!(parse_err(b"MSG a 1 99999999999999\r\n"), ProtocolError::PayloadTooLarge);
    }

    #[test]
    fn header_size_over_total() {
        assert_eq!(parse_err(b"HMSG a 1 13 12\r\n"), ProtocolError::HeaderSizeExceedsTotal);
    }

    #[test]
    fn missing_crlf_after_payload() {
        assert_eq!(
            parse_err(b"MSG a 1 2\r\nhiX\r\n"),
            ProtocolError::MissingPayloadTerminator
        );
        assert_eq!(
            parse_err(b"MSG a 1 2\r\nhi\rX"),
            ProtocolError::MissingPayloadTerminator
        );
        assert_eq!(parse_err(b"MSG a 1 2\r\nhi\n"), ProtocolError::MissingPayloadTerminator);
        assert_eq!(
            parse_err(b"MSG a 1 1\r\nhi\r\n"),
            ProtocolError::MissingPayloadTerminator
        );
    }

    // ---- headers ----

    #[test]
    fn no_responders_status_is_detectable() {
        let buf = b"HMSG _INBOX.abc.1 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
        let Some((ServerOp::HMsg { headers, payload, .. }, used)) = parse(buf).unwrap() else {
            panic!()
        };
        assert_eq!(used, buf.len());
        assert!(payload.is_empty());
        let headers = parse_headers(&buf[headers]).unwrap();
        assert!(headers.is_no_responders());
        assert_eq!(headers.status_code(), Some(STATUS_NO_RESPONDERS));
        assert_eq!(headers.description(), None);
        assert_eq!(headers.iter().count(), 0);
    }

    #[test]
    fn status_with_description_and_fields() {
        let block = b"NATS/1.0 408 Request Timeout\r\nNats-Expected: 1\r\nX: a: b \r\nX: second\r\nEmpty:\r\n\r\n";
        let headers = parse_headers(block).unwrap();
        assert_eq!(headers.status_code(), Some(408));
        assert_eq!(headers.description(), Some("Request Timeout"));
        assert!(!headers.is_no_responders());
        let fields: Vec<_> = headers.iter().collect();
        assert_eq!(
            fields,
            [("Nats-Expected", "1"), ("X", "a: b"), ("X", "second"), ("Empty", "")]
        );
        assert_eq!(headers.get("X"), Some("a: b"));
        assert_eq!(headers.get("x"), None);
        assert_eq!((&headers).into_iter().count(), 4);
    }

    #[test]
    fn header_errors() {
        let cases: [(&[u8], ProtocolError); 11] = [
            (b"", ProtocolError::InvalidHeaderStatusLine),
            (b"HTTP/1.1\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
            (b"NATS/1.0 50\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
            (b"NATS/1.0 5034\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
            (b"NATS/1.0 abc\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
            (b"NATS/1.0503\r\n\r\n", ProtocolError::InvalidHeaderStatusLine),
            (b"NATS/1.0\r\n", ProtocolError::MissingHeaderTerminator),
            (b"NATS/1.0\r\nA: b\r\n", ProtocolError::MissingHeaderTerminator),
            (b"NATS/1.0\r\nno colon\r\n\r\n", ProtocolError::InvalidHeaderLine),
            (b"NATS/1.0\r\n: empty name\r\n\r\n", ProtocolError::InvalidHeaderLine),
            (b"NATS/1.0\r\nA: b\nc\r\n\r\n", ProtocolError::InvalidHeaderLine),
        ];
        for (block, error) in cases {
            assert_eq!(parse_headers(block), Err(error), "{:?}", String::from_utf8_lossy(block));
        }
        assert_eq!(
            parse_headers(b"NATS/1.0\r\nA: \xff\r\n\r\n"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    // ---- encoders ----

    #[test]
    fn encodes_client_frames() {
        let mut out = Vec::new();
        write_pub(&mut out, "wasmbus.rpc.x", Some("_INBOX.1"), b"a\r\nb", MAX).unwrap();
        write_pub(&mut out, "a", None, b"", MAX).unwrap();
        write_sub(&mut out, "wasmbus.rpc.default.>", Some("workers"), 42).unwrap();
        write_sub(&mut out, "a.*.c", None, 0).unwrap();
        write_unsub(&mut out, 42, None);
        write_unsub(&mut out, u64::MAX, Some(1));
        write_ping(&mut out);
        write_pong(&mut out);
        let expected = "PUB wasmbus.rpc.x _INBOX.1 4\r\na\r\nb\r\nPUB a 0\r\n\r\n\
                        SUB wasmbus.rpc.default.> workers 42\r\nSUB a.*.c 0\r\n\
                        UNSUB 42\r\nUNSUB 18446744073709551615 1\r\nPING\r\nPONG\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let mut out = BytesMut::new();
        write_hpub(&mut out, "a.b", None, &[("K", "v 1"), ("K", "v2")], b"xyz", MAX).unwrap();
        assert_eq!(
            &out[..],
            b"HPUB a.b 27 30\r\nNATS/1.0\r\nK: v 1\r\nK: v2\r\n\r\nxyz\r\n"
        );
    }

    #[test]
    fn encoders_reject_without_writing() {
        let mut out = b"kept".to_vec();
        let bad_subjects = [
            "", " a", "a b", "a\tb", "a\r\nb", ".a", "a.", "a..b", "a.*", "a.>", ">", "a\u{7f}",
        ];
        for subject in bad_subjects {
            assert_eq!(
                write_pub(&mut out, subject, None, b"x", MAX),
                Err(EncodeError::InvalidSubject),
                "{subject:?}"
            );
            assert_eq!(
                write_hpub(&mut out, subject, None, &[], b"x", MAX),
                Err(EncodeError::InvalidSubject)
            );
        }
        assert_eq!(
            write_pub(&mut out, "a", Some("r r"), b"x", MAX),
            Err(EncodeError::InvalidReply)
        );
        assert_eq!(
            write_pub(&mut out, "a", Some("_INBOX.*"), b"x", MAX),
            Err(EncodeError::InvalidReply)
        );
        assert_eq!(write_sub(&mut out, "a.>.b", None, 1), Err(EncodeError::InvalidSubject));
        assert_eq!(write_sub(&mut out, "", None, 1), Err(EncodeError::InvalidSubject));
        assert_eq!(
            write_sub(&mut out, "a", Some(""), 1),
            Err(EncodeError::InvalidQueueGroup)
        );
        assert_eq!(
            write_sub(&mut out, "a", Some("q q"), 1),
            Err(EncodeError::InvalidQueueGroup)
        );
        let bad_names = ["", "a b", "a:b", "é", "a\r\n"];
        for name in bad_names {
            let result = write_hpub(&mut out, "a", None, &[(name, "v")], b"", MAX);
            assert_eq!(result, Err(EncodeError::InvalidHeaderName), "{name:?}");
        }
        for value in ["a\r\nb", "a\nb", " lead", "trail\t", "\u{0}"] {
            let result = write_hpub(&mut out, "a", None, &[("K", value)], b"", MAX);
            assert_eq!(result, Err(EncodeError::InvalidHeaderValue), "{value:?}");
        }
        assert_eq!(
            write_pub(&mut out, "a", None, b"12345", 4),
            Err(EncodeError::PayloadTooLarge)
        );
        assert_eq!(
            write_hpub(&mut out, "a", None, &[], b"12", 13),
            Err(EncodeError::PayloadTooLarge)
        );
        let long = "a".repeat(CONTROL_LINE_BYTES_MAX);
        assert_eq!(
            write_pub(&mut out, &long, None, b"", MAX),
            Err(EncodeError::ControlLineTooLong)
        );
        assert_eq!(
            write_hpub(&mut out, &long, None, &[], b"", MAX),
            Err(EncodeError::ControlLineTooLong)
        );
        assert_eq!(
            write_sub(&mut out, &long, None, 1),
            Err(EncodeError::ControlLineTooLong)
        );
        assert_eq!(out, b"kept");
    }

    #[test]
    fn pub_with_encoder_matches_pub_and_rolls_back_a_miscount() {
        let mut expected = Vec::new();
        write_pub(&mut expected, "a.b", Some("_INBOX.x"), b"hello", 1024).unwrap();
        let mut out = b"PING\r\n".to_vec();
        write_pub_with(&mut out, "a.b", Some("_INBOX.x"), 5, 1024, |o| {
            o.extend_from_slice(b"hello")
        })
        .unwrap();
        assert_eq!(&out[6..], &expected[..]);
        let before = out.clone();
        let wrong = write_pub_with(&mut out, "a.b", None, 4, 1024, |o| o.extend_from_slice(b"hello"));
        assert_eq!(wrong, Err(EncodeError::PayloadLengthMismatch));
        assert_eq!(out, before, "nothing of the bad frame stays");
        assert_eq!(
            write_pub_with(&mut out, "a.b", None, 5, 4, |_| {}),
            Err(EncodeError::PayloadTooLarge)
        );
    }

    #[test]
    fn hpub_fits_exactly_at_max_payload() {
        let mut out = Vec::new();
        // "NATS/1.0\r\n\r\n" is 12 bytes.
        write_hpub(&mut out, "a", None, &[], b"12", 14).unwrap();
        assert_eq!(out, b"HPUB a 12 14\r\nNATS/1.0\r\n\r\n12\r\n");
    }

    #[test]
    fn connect_json() {
        let mut options = ConnectOptions::new("0.1.0");
        options.name = Some("shardhost shard 3");
        options.jwt = Some("eyJ0");
        options.sig = Some("c2ln");
        let mut out = Vec::new();
        write_connect(&mut out, &options).unwrap();
        let line = std::str::from_utf8(&out).unwrap();
        let json = line.strip_prefix("CONNECT ").unwrap().strip_suffix("\r\n").unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let expected = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": false, "name": "shardhost shard 3",
            "lang": "rust", "version": "0.1.0", "protocol": 1, "echo": true, "headers": true,
            "no_responders": true, "jwt": "eyJ0", "sig": "c2ln",
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn errors_have_static_messages() {
        assert_eq!(
            ProtocolError::PayloadTooLarge.to_string(),
            "nats: payload exceeds max_payload"
        );
        assert_eq!(EncodeError::InvalidSubject.to_string(), "nats: invalid subject");
    }
}
