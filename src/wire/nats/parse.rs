//! The NATS parser: every operation a server sends ([`parse_server_op`]: `INFO`, `MSG`, `HMSG`,
//! `PING`, `PONG`, `+OK`, `-ERR`) and the `NATS/1.0` header block ([`parse_headers`]), borrowed
//! from the read buffer (see [`super`] for incomplete versus invalid and the zero-copy ranges).
//! Also owns the protocol's line limits, which the encoders import.
//!
//! Plane: data plane, pure. No I/O, no async, no locks, no allocation on the `MSG`/`HMSG` path;
//! no input can make it panic (it is fuzzed).

use std::ops::Range;

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
pub(super) const HEADER_VERSION: &[u8] = b"NATS/1.0";

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

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
