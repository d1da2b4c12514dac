//! The lattice RPC structures (PROTOCOL §2): decoding an inbound `Invocation` into a view that
//! borrows the socket bytes ([`InvocationRef`]), the `WasmCloudEntity` URL form used by the
//! anti-forgery check (§2.2), and encoding `InvocationResponse` replies and outbound
//! `Invocation`s straight into a growable buffer.
//!
//! Plane: pure code on the shards' hot path. No I/O, no async; decoding allocates nothing and
//! encoding allocates only when the output buffer grows.
//!
//! Must never: panic on any input, or accept a shape the first-party decoders (rmp-serde with
//! serde derive) would read differently. Liberal where they are liberal (PROTOCOL §16): keys in
//! any order, unknown keys skipped, the positional array form, `nil` for empty entity strings,
//! `msg` as `str`, `content_length` and `traceContext` optional.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BufMut;

use super::msgpack::{self, Kind, MsgpackError, Reader};

/// `wasmbus://`, the scheme of every entity URL.
pub const URL_SCHEME: &str = "wasmbus://";

/// Field positions in the array form of `Invocation`: serde derive writes a struct as an array
/// of its fields in declaration order when rmp-serde is not told to write names. This is the
/// order of wasmbus-rpc's `Invocation` (and of the table in PROTOCOL §2.3). Elements past the
/// last known position are skipped; `content_length` and `traceContext` may be absent at the end.
const ARRAY_FIELDS: [Field; 9] = [
    Field::Origin,
    Field::Target,
    Field::Operation,
    Field::Msg,
    Field::Id,
    Field::EncodedClaims,
    Field::HostId,
    Field::ContentLength,
    Field::TraceContext,
];

/// Field positions in the array form of `WasmCloudEntity` (wasmbus-rpc declaration order).
const ENTITY_ARRAY_FIELDS: [Field; 3] = [Field::PublicKey, Field::LinkName, Field::ContractId];

/// A field of `Invocation` or of its entities, for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Origin,
    Target,
    Operation,
    Msg,
    Id,
    EncodedClaims,
    HostId,
    ContentLength,
    TraceContext,
    PublicKey,
    LinkName,
    ContractId,
    /// `InvocationResponse.invocation_id`.
    InvocationId,
    /// `InvocationResponse.error`.
    Error,
}

impl Field {
    /// The msgpack key as it appears on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Field::Origin => "origin",
            Field::Target => "target",
            Field::Operation => "operation",
            Field::Msg => "msg",
            Field::Id => "id",
            Field::EncodedClaims => "encoded_claims",
            Field::HostId => "host_id",
            Field::ContentLength => "content_length",
            Field::TraceContext => "traceContext",
            Field::PublicKey => "public_key",
            Field::LinkName => "link_name",
            Field::ContractId => "contract_id",
            Field::InvocationId => "invocation_id",
            Field::Error => "error",
        }
    }

    fn invocation_field(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"origin" => Field::Origin,
            b"target" => Field::Target,
            b"operation" => Field::Operation,
            b"msg" => Field::Msg,
            b"id" => Field::Id,
            b"encoded_claims" => Field::EncodedClaims,
            b"host_id" => Field::HostId,
            b"content_length" => Field::ContentLength,
            b"traceContext" => Field::TraceContext,
            _ => return None,
        })
    }

    fn entity_field(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"public_key" => Field::PublicKey,
            b"link_name" => Field::LinkName,
            b"contract_id" => Field::ContractId,
            _ => return None,
        })
    }
}

/// Why an invocation could not be decoded. [`DecodeError::Truncated`] is the only "incomplete"
/// case; since a NATS frame carries the whole payload, the shard treats every variant as a
/// rejected invocation and replies with [`DecodeError::message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invocation ends in the middle of a value")]
    Truncated,
    #[error("invocation is not a msgpack map or array")]
    NotAStruct,
    #[error("invocation field `{}` has the wrong msgpack type", .0.name())]
    FieldType(Field),
    #[error("invocation field `{}` is not valid UTF-8", .0.name())]
    FieldUtf8(Field),
    #[error("invocation field `{}` appears more than once", .0.name())]
    DuplicateField(Field),
    #[error("invocation has no `{}` field", .0.name())]
    MissingField(Field),
    #[error("invocation is not valid msgpack: {0}")]
    Malformed(MsgpackError),
    #[error("bytes follow the invocation")]
    TrailingBytes,
}

impl DecodeError {
    /// The text for `InvocationResponse.error`. Starts as the OTP and Rust hosts' reply does
    /// (PROTOCOL §9.5), then says which rule failed.
    pub fn message(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "Failed to deserialize invocation: truncated",
            DecodeError::NotAStruct => "Failed to deserialize invocation: not a msgpack map or array",
            DecodeError::FieldType(_) => "Failed to deserialize invocation: a field has the wrong type",
            DecodeError::FieldUtf8(_) => "Failed to deserialize invocation: a string field is not valid UTF-8",
            DecodeError::DuplicateField(_) => "Failed to deserialize invocation: duplicate field",
            DecodeError::MissingField(_) => "Failed to deserialize invocation: missing required field",
            DecodeError::Malformed(_) => "Failed to deserialize invocation: invalid msgpack",
            DecodeError::TrailingBytes => "Failed to deserialize invocation: trailing bytes",
        }
    }

    /// `true` when the bytes end too early (they may be a prefix of a valid invocation).
    pub fn is_truncated(&self) -> bool {
        *self == DecodeError::Truncated
    }

    /// Attribute a reader error to `field`.
    fn at(field: Field) -> impl Fn(MsgpackError) -> DecodeError {
        move |error| match error {
            MsgpackError::Truncated => DecodeError::Truncated,
            MsgpackError::UnexpectedType => DecodeError::FieldType(field),
            MsgpackError::InvalidUtf8 => DecodeError::FieldUtf8(field),
            other => DecodeError::Malformed(other),
        }
    }
}

impl From<MsgpackError> for DecodeError {
    fn from(error: MsgpackError) -> Self {
        match error {
            MsgpackError::Truncated => DecodeError::Truncated,
            other => DecodeError::Malformed(other),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entities and their URL form
// ---------------------------------------------------------------------------------------------

/// A `WasmCloudEntity` (PROTOCOL §2.2) borrowed from the invocation bytes. An actor has empty
/// `link_name` and `contract_id` (`nil` on the wire reads as empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntityRef<'a> {
    pub public_key: &'a str,
    pub link_name: &'a str,
    pub contract_id: &'a str,
}

/// Where URL text goes: a `String` being built, a hasher, or a comparison in progress.
pub trait UrlSink {
    fn push_str(&mut self, text: &str);
    fn push_char(&mut self, c: char);
}

impl UrlSink for String {
    fn push_str(&mut self, text: &str) {
        String::push_str(self, text);
    }

    fn push_char(&mut self, c: char) {
        self.push(c);
    }
}

/// Compares pushed text against an expected string without building it.
struct UrlMatcher<'e> {
    expected: &'e [u8],
    matched_bytes: usize,
    equal: bool,
}

impl<'e> UrlMatcher<'e> {
    fn new(expected: &'e str) -> Self {
        UrlMatcher {
            expected: expected.as_bytes(),
            matched_bytes: 0,
            equal: true,
        }
    }

    fn finish(self) -> bool {
        self.equal && self.matched_bytes == self.expected.len()
    }
}

impl UrlSink for UrlMatcher<'_> {
    fn push_str(&mut self, text: &str) {
        if !self.equal {
            return;
        }
        let end = self.matched_bytes.saturating_add(text.len());
        self.equal = self.expected.get(self.matched_bytes..end) == Some(text.as_bytes());
        self.matched_bytes = end;
    }

    fn push_char(&mut self, c: char) {
        let mut utf8 = [0u8; 4];
        self.push_str(c.encode_utf8(&mut utf8));
    }
}

impl<'a> EntityRef<'a> {
    /// An actor: its key, uppercased, starts with `M` (the rule every implementation uses).
    pub fn is_actor(&self) -> bool {
        self.public_key.starts_with(['M', 'm'])
    }

    /// Append the URL form (PROTOCOL §2.2) to `out`: `wasmbus://{public_key}` for an actor,
    /// else `wasmbus://{contract}/{link}/{public_key}` with `:` → `/` (contract only), space →
    /// `_`, lowercased. Allocates nothing beyond `out`'s growth (one rare case aside, see
    /// [`push_url_segment`]).
    pub fn url(&self, out: &mut String) {
        self.write_url(out);
    }

    /// [`EntityRef::url`] into any sink.
    pub fn write_url<S: UrlSink>(&self, out: &mut S) {
        out.push_str(URL_SCHEME);
        if !self.is_actor() {
            push_url_segment(out, self.contract_id, true);
            out.push_char('/');
            push_url_segment(out, self.link_name, false);
            out.push_char('/');
        }
        out.push_str(self.public_key);
    }

    /// Append the target URL: the entity URL, `/`, then `operation`.
    pub fn target_url(&self, operation: &str, out: &mut String) {
        self.write_target_url(operation, out);
    }

    /// [`EntityRef::target_url`] into any sink.
    pub fn write_target_url<S: UrlSink>(&self, operation: &str, out: &mut S) {
        self.write_url(out);
        out.push_char('/');
        out.push_str(operation);
    }

    /// Whether `expected` is exactly this entity's URL. Allocates nothing.
    pub fn url_eq(&self, expected: &str) -> bool {
        let mut matcher = UrlMatcher::new(expected);
        self.write_url(&mut matcher);
        matcher.finish()
    }

    /// Whether `expected` is exactly the target URL for `operation`. Allocates nothing.
    pub fn target_url_eq(&self, operation: &str, expected: &str) -> bool {
        let mut matcher = UrlMatcher::new(expected);
        self.write_target_url(operation, &mut matcher);
        matcher.finish()
    }
}

/// One contract or link segment: replace (`:` → `/` when `colon_to_slash`, space → `_`), then
/// lowercase, exactly as `str::replace` followed by `str::to_lowercase` would. Per-char
/// lowercasing equals `str::to_lowercase` except for `Σ`, whose lowercase depends on its
/// neighbours (final sigma); that one case goes through `str::to_lowercase` and allocates.
fn push_url_segment<S: UrlSink>(out: &mut S, segment: &str, colon_to_slash: bool) {
    let replace = |c: char| match c {
        ':' if colon_to_slash => '/',
        ' ' => '_',
        other => other,
    };
    if segment.is_ascii() {
        let mut buf = [0u8; 64];
        for chunk in segment.as_bytes().chunks(buf.len()) {
            for (slot, byte) in buf.iter_mut().zip(chunk) {
                *slot = (replace(char::from(*byte)) as u8).to_ascii_lowercase();
            }
            // ASCII in, ASCII out: always valid UTF-8.
            if let Ok(text) = std::str::from_utf8(&buf[..chunk.len()]) {
                out.push_str(text);
            }
        }
    } else if segment.contains('Σ') {
        let replaced: String = segment.chars().map(replace).collect();
        out.push_str(&replaced.to_lowercase());
    } else {
        for c in segment.chars() {
            for lower in replace(c).to_lowercase() {
                out.push_char(lower);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Invocation decoding
// ---------------------------------------------------------------------------------------------

/// `traceContext`: a map of string to string, checked at decode time and iterated lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceContextRef<'a> {
    /// The encoded key/value pairs, after the map header.
    entries: &'a [u8],
    /// Number of pairs.
    len: u32,
}

impl<'a> TraceContextRef<'a> {
    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut reader = Reader::new(self.entries);
        // Checked at decode time, so reading cannot fail; a failure would only end the walk.
        (0..self.len).map_while(move |_| Some((reader.read_str().ok()?, reader.read_str().ok()?)))
    }

    /// Read a `traceContext` value: a map of str → str, or `nil` (empty).
    fn decode(reader: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = DecodeError::at(Field::TraceContext);
        if reader.try_read_nil().map_err(&at)? {
            return Ok(TraceContextRef::default());
        }
        let len = reader.read_map_len().map_err(&at)?;
        let entries_start = reader.remaining();
        let start = reader.position();
        for _ in 0..len {
            reader.read_str().map_err(&at)?;
            reader.read_str().map_err(&at)?;
        }
        let entries = entries_start.get(..reader.position() - start).unwrap_or(&[]);
        Ok(TraceContextRef { entries, len })
    }
}

/// An inbound `Invocation` (PROTOCOL §2.3) borrowed from the NATS payload. Strings are checked
/// UTF-8; nothing else is validated here (anti-forgery: `auth::antiforgery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationRef<'a> {
    pub origin: EntityRef<'a>,
    pub target: EntityRef<'a>,
    /// e.g. `HttpServer.HandleRequest`; no namespace prefix on the wire.
    pub operation: &'a str,
    /// The payload; empty when chunked (`content_length > msg.len()`, PROTOCOL §2.6).
    pub msg: &'a [u8],
    /// Opaque invocation id; the reply's `invocation_id` must equal it.
    pub id: &'a str,
    /// The signed invocation JWT (PROTOCOL §3.2).
    pub encoded_claims: &'a str,
    /// The sending host's public key (`N…`), checked by the anti-forgery rules.
    pub host_id: &'a str,
    /// Full payload length; absent from some senders (then `msg.len()` is the full length).
    pub content_length: Option<u64>,
    pub trace_context: TraceContextRef<'a>,
}

impl InvocationRef<'_> {
    /// `content_length`, or `msg.len()` when the sender omitted it.
    pub fn content_length_or_msg(&self) -> u64 {
        self.content_length.unwrap_or(self.msg.len() as u64)
    }
}

/// Fields seen so far; `None` = not yet seen.
#[derive(Default)]
struct InvocationSlots<'a> {
    origin: Option<EntityRef<'a>>,
    target: Option<EntityRef<'a>>,
    operation: Option<&'a str>,
    msg: Option<&'a [u8]>,
    id: Option<&'a str>,
    encoded_claims: Option<&'a str>,
    host_id: Option<&'a str>,
    content_length: Option<Option<u64>>,
    trace_context: Option<TraceContextRef<'a>>,
}

fn set_once<T>(slot: &mut Option<T>, value: T, field: Field) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateField(field));
    }
    *slot = Some(value);
    Ok(())
}

impl<'a> InvocationSlots<'a> {
    /// Read the value of `field` from `reader` into its slot.
    fn read(&mut self, field: Field, reader: &mut Reader<'a>) -> Result<(), DecodeError> {
        let at = DecodeError::at(field);
        match field {
            Field::Origin => set_once(&mut self.origin, decode_entity(reader, field)?, field),
            Field::Target => set_once(&mut self.target, decode_entity(reader, field)?, field),
            Field::Operation => set_once(&mut self.operation, reader.read_str().map_err(at)?, field),
            // serde_bytes also accepts a str for a byte field; so do we.
            Field::Msg => set_once(&mut self.msg, reader.read_bin_or_str().map_err(at)?, field),
            Field::Id => set_once(&mut self.id, reader.read_str().map_err(at)?, field),
            Field::EncodedClaims => set_once(&mut self.encoded_claims, reader.read_str().map_err(at)?, field),
            Field::HostId => set_once(&mut self.host_id, reader.read_str().map_err(at)?, field),
            Field::ContentLength => {
                let value = if reader.try_read_nil().map_err(&at)? {
                    None
                } else {
                    Some(reader.read_u64().map_err(at)?)
                };
                set_once(&mut self.content_length, value, field)
            }
            Field::TraceContext => set_once(&mut self.trace_context, TraceContextRef::decode(reader)?, field),
            // Entity and response fields never reach here; skipping keeps the function total.
            Field::PublicKey | Field::LinkName | Field::ContractId | Field::InvocationId | Field::Error => {
                reader.skip_value().map_err(at)
            }
        }
    }

    fn finish(self) -> Result<InvocationRef<'a>, DecodeError> {
        let missing = DecodeError::MissingField;
        Ok(InvocationRef {
            origin: self.origin.ok_or(missing(Field::Origin))?,
            target: self.target.ok_or(missing(Field::Target))?,
            operation: self.operation.ok_or(missing(Field::Operation))?,
            msg: self.msg.ok_or(missing(Field::Msg))?,
            id: self.id.ok_or(missing(Field::Id))?,
            encoded_claims: self.encoded_claims.ok_or(missing(Field::EncodedClaims))?,
            host_id: self.host_id.ok_or(missing(Field::HostId))?,
            content_length: self.content_length.flatten(),
            trace_context: self.trace_context.unwrap_or_default(),
        })
    }
}

/// A map key we can match: `str` (what everyone writes) or `bin` (serde derive accepts both).
/// `None` for any other key type, whose entry is then skipped.
fn read_key<'a>(reader: &mut Reader<'a>) -> Result<Option<&'a [u8]>, DecodeError> {
    match reader.peek_kind()? {
        Kind::Str | Kind::Bin => Ok(Some(reader.read_bin_or_str()?)),
        _ => {
            reader.skip_value()?;
            Ok(None)
        }
    }
}

/// Read a struct header: `(true, len)` for a map, `(false, len)` for an array.
fn read_struct_header(reader: &mut Reader<'_>, field: Option<Field>) -> Result<(bool, u32), DecodeError> {
    let wrong = field.map_or(DecodeError::NotAStruct, DecodeError::FieldType);
    match reader.peek_kind()? {
        Kind::Map => Ok((true, reader.read_map_len()?)),
        Kind::Array => Ok((false, reader.read_array_len()?)),
        _ => Err(wrong),
    }
}

/// Decode an inbound invocation (PROTOCOL §2.3) without copying: every string and the payload
/// borrow `bytes`. Accepts the named map form (any key order, unknown keys skipped, `str` or
/// `bin` keys) and the positional array form (order: [`ARRAY_FIELDS`]). Required: `origin`,
/// `target`, `operation`, `msg`, `id`, `encoded_claims`, `host_id`. Rejects duplicate keys (as
/// serde derive does) and bytes after the value (a NATS payload is exactly one invocation).
pub fn decode_invocation(bytes: &[u8]) -> Result<InvocationRef<'_>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut slots = InvocationSlots::default();
    let (is_map, len) = read_struct_header(&mut reader, None)?;
    for index in 0..len {
        let field = if is_map {
            read_key(&mut reader)?.and_then(Field::invocation_field)
        } else {
            ARRAY_FIELDS.get(index as usize).copied()
        };
        match field {
            Some(field) => slots.read(field, &mut reader)?,
            None => reader.skip_value()?,
        }
    }
    if !reader.is_at_end() {
        return Err(DecodeError::TrailingBytes);
    }
    slots.finish()
}

/// A string field of an entity: `str`, or `nil` read as empty (OTP writes nil).
fn read_entity_str<'a>(reader: &mut Reader<'a>, field: Field) -> Result<&'a str, DecodeError> {
    let at = DecodeError::at(field);
    if reader.try_read_nil().map_err(&at)? {
        return Ok("");
    }
    reader.read_str().map_err(at)
}

/// Decode a `WasmCloudEntity` (map or array form). `public_key` is required; `link_name` and
/// `contract_id` default to empty. `parent` names the invocation field for type errors.
fn decode_entity<'a>(reader: &mut Reader<'a>, parent: Field) -> Result<EntityRef<'a>, DecodeError> {
    let (is_map, len) = read_struct_header(reader, Some(parent))?;
    let mut public_key = None;
    let mut link_name = None;
    let mut contract_id = None;
    for index in 0..len {
        let field = if is_map {
            read_key(reader)?.and_then(Field::entity_field)
        } else {
            ENTITY_ARRAY_FIELDS.get(index as usize).copied()
        };
        match field {
            Some(Field::PublicKey) => set_once(
                &mut public_key,
                read_entity_str(reader, Field::PublicKey)?,
                Field::PublicKey,
            )?,
            Some(Field::LinkName) => set_once(
                &mut link_name,
                read_entity_str(reader, Field::LinkName)?,
                Field::LinkName,
            )?,
            Some(Field::ContractId) => set_once(
                &mut contract_id,
                read_entity_str(reader, Field::ContractId)?,
                Field::ContractId,
            )?,
            _ => reader.skip_value()?,
        }
    }
    Ok(EntityRef {
        public_key: public_key.ok_or(DecodeError::MissingField(Field::PublicKey))?,
        link_name: link_name.unwrap_or(""),
        contract_id: contract_id.unwrap_or(""),
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encode an `InvocationResponse` (PROTOCOL §2.4) as a named map, as rmp-serde's
/// `to_vec_named` writes wasmbus-rpc's struct: `msg` (bin), `invocation_id`, `error` only when
/// set, and `content_length` always (the Rust host requires it). On error, pass an empty `msg`.
pub fn encode_response(
    out: &mut impl BufMut,
    invocation_id: &str,
    msg: &[u8],
    error: Option<&str>,
    content_length: u64,
) {
    encode_response_traced(out, invocation_id, msg, error, content_length, &[]);
}

/// [`encode_response`] with a `traceContext` (written only when non-empty): the span that
/// served the call, as the 0.82 host answers.
pub fn encode_response_traced(
    out: &mut impl BufMut,
    invocation_id: &str,
    msg: &[u8],
    error: Option<&str>,
    content_length: u64,
    trace_context: &[(&str, &str)],
) {
    let fields = 3 + usize::from(error.is_some()) + usize::from(!trace_context.is_empty());
    msgpack::write_map_len(out, fields);
    msgpack::write_str(out, "msg");
    msgpack::write_bin(out, msg);
    msgpack::write_str(out, "invocation_id");
    msgpack::write_str(out, invocation_id);
    if let Some(error) = error {
        msgpack::write_str(out, "error");
        msgpack::write_str(out, error);
    }
    msgpack::write_str(out, "content_length");
    msgpack::write_uint(out, content_length);
    if !trace_context.is_empty() {
        msgpack::write_str(out, "traceContext");
        write_trace_context(out, trace_context);
    }
}

fn write_trace_context(out: &mut impl BufMut, trace_context: &[(&str, &str)]) {
    msgpack::write_map_len(out, trace_context.len());
    for (key, value) in trace_context {
        msgpack::write_str(out, key);
        msgpack::write_str(out, value);
    }
}

/// Bytes [`encode_response`] writes for these arguments, so a reply can be framed (`PUB …
/// <#bytes>`) before it is encoded straight into the write buffer.
pub fn response_len(invocation_id: &str, msg_len: usize, error: Option<&str>, content_length: u64) -> usize {
    response_len_traced(invocation_id, msg_len, error, content_length, &[])
}

/// Bytes [`encode_response_traced`] writes for these arguments.
pub fn response_len_traced(
    invocation_id: &str,
    msg_len: usize,
    error: Option<&str>,
    content_length: u64,
    trace_context: &[(&str, &str)],
) -> usize {
    let key = |name: &str| msgpack::str_bytes(name.len());
    let fields = 3 + usize::from(error.is_some()) + usize::from(!trace_context.is_empty());
    let mut len = msgpack::map_header_bytes(fields);
    len += key("msg") + msgpack::bin_bytes(msg_len);
    len += key("invocation_id") + msgpack::str_bytes(invocation_id.len());
    if let Some(error) = error {
        len += key("error") + msgpack::str_bytes(error.len());
    }
    len += key("content_length") + msgpack::uint_bytes(content_length);
    if !trace_context.is_empty() {
        len += key("traceContext") + msgpack::map_header_bytes(trace_context.len());
        for (k, v) in trace_context {
            len += key(k) + msgpack::str_bytes(v.len());
        }
    }
    len
}

/// A decoded `InvocationResponse` (PROTOCOL §2.4), borrowing the reply bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseRef<'a> {
    pub msg: &'a [u8],
    pub invocation_id: &'a str,
    /// Present (and non-nil) ⇒ the call failed and `msg` means nothing.
    pub error: Option<&'a str>,
    /// Full result length; OTP error replies omit it.
    pub content_length: Option<u64>,
}

/// Field order of the positional (array) form of `InvocationResponse`.
const RESPONSE_ARRAY_FIELDS: [Field; 4] = [Field::Msg, Field::InvocationId, Field::Error, Field::ContentLength];

fn response_field(key: &[u8]) -> Option<Field> {
    Some(match key {
        b"msg" => Field::Msg,
        b"invocation_id" => Field::InvocationId,
        b"error" => Field::Error,
        b"content_length" => Field::ContentLength,
        _ => return None,
    })
}

/// Decode a reply to one of our invocations, leniently (§16): map or array form, unknown keys
/// (`traceContext`, OTP's `instance_id`) skipped, `error` and `content_length` optional or nil,
/// `msg` missing only when `error` is set. Bytes after the value are ignored, as rmp-serde does.
pub fn decode_response(bytes: &[u8]) -> Result<ResponseRef<'_>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let (is_map, len) = read_struct_header(&mut reader, None)?;
    let mut msg = None;
    let mut invocation_id = None;
    let mut error = None;
    let mut content_length = None;
    for index in 0..len {
        let field = if is_map {
            read_key(&mut reader)?.and_then(response_field)
        } else {
            RESPONSE_ARRAY_FIELDS.get(index as usize).copied()
        };
        let Some(field) = field else {
            reader.skip_value()?;
            continue;
        };
        let at = DecodeError::at(field);
        if reader.try_read_nil().map_err(&at)? {
            continue;
        }
        match field {
            Field::Msg => set_once(&mut msg, reader.read_bin_or_str().map_err(at)?, field)?,
            Field::InvocationId => set_once(&mut invocation_id, reader.read_str().map_err(at)?, field)?,
            Field::Error => set_once(&mut error, reader.read_str().map_err(at)?, field)?,
            _ => set_once(&mut content_length, reader.read_u64().map_err(at)?, field)?,
        }
    }
    let msg = match (msg, error) {
        (Some(msg), _) => msg,
        (None, Some(_)) => &[],
        (None, None) => return Err(DecodeError::MissingField(Field::Msg)),
    };
    Ok(ResponseRef {
        msg,
        invocation_id: invocation_id.ok_or(DecodeError::MissingField(Field::InvocationId))?,
        error,
        content_length,
    })
}

/// An outbound invocation to encode (the host's own calls: actor → provider, actor → actor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationFields<'a> {
    pub origin: EntityRef<'a>,
    pub target: EntityRef<'a>,
    pub operation: &'a str,
    pub msg: &'a [u8],
    pub id: &'a str,
    pub encoded_claims: &'a str,
    pub host_id: &'a str,
    /// Full payload length: `msg.len()` unless the payload was chunked.
    pub content_length: u64,
    /// Written only when non-empty (as wasmbus-rpc does).
    pub trace_context: &'a [(&'a str, &'a str)],
}

fn write_entity(out: &mut impl BufMut, entity: &EntityRef<'_>) {
    msgpack::write_map_len(out, 3);
    msgpack::write_str(out, "public_key");
    msgpack::write_str(out, entity.public_key);
    msgpack::write_str(out, "link_name");
    msgpack::write_str(out, entity.link_name);
    msgpack::write_str(out, "contract_id");
    msgpack::write_str(out, entity.contract_id);
}

/// Encode an `Invocation` as the named map wasmbus-rpc and the Rust host decode: entities with
/// all three strings, `msg` as bin, `content_length` always, `traceContext` when non-empty.
pub fn encode_invocation(out: &mut impl BufMut, fields: &InvocationFields<'_>) {
    debug_assert!(
        fields.content_length >= fields.msg.len() as u64,
        "content_length is the full payload length"
    );
    let has_trace = !fields.trace_context.is_empty();
    msgpack::write_map_len(out, if has_trace { 9 } else { 8 });
    msgpack::write_str(out, "origin");
    write_entity(out, &fields.origin);
    msgpack::write_str(out, "target");
    write_entity(out, &fields.target);
    msgpack::write_str(out, "operation");
    msgpack::write_str(out, fields.operation);
    msgpack::write_str(out, "msg");
    msgpack::write_bin(out, fields.msg);
    msgpack::write_str(out, "id");
    msgpack::write_str(out, fields.id);
    msgpack::write_str(out, "encoded_claims");
    msgpack::write_str(out, fields.encoded_claims);
    msgpack::write_str(out, "host_id");
    msgpack::write_str(out, fields.host_id);
    msgpack::write_str(out, "content_length");
    msgpack::write_uint(out, fields.content_length);
    if has_trace {
        msgpack::write_str(out, "traceContext");
        write_trace_context(out, fields.trace_context);
    }
}

/// Test-only mirrors of wasmbus-rpc's structs, encoded by rmp-serde: the third-party side of
/// the interop tests (shared with `auth::antiforgery`).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod mirror {
    use std::collections::HashMap;

    use serde::{Deserialize, Serialize};

    /// `#[serde(with = "serde_bytes")]` without the dependency: bin out, bin/str/seq in.
    pub mod bin {
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(bytes)
        }

        struct BytesVisitor;

        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(byte) = seq.next_element()? {
                    out.push(byte);
                }
                Ok(out)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    pub struct WasmCloudEntity {
        #[serde(default)]
        pub public_key: String,
        #[serde(default)]
        pub link_name: String,
        #[serde(default)]
        pub contract_id: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    pub struct Invocation {
        pub origin: WasmCloudEntity,
        pub target: WasmCloudEntity,
        #[serde(default)]
        pub operation: String,
        #[serde(with = "bin", default)]
        pub msg: Vec<u8>,
        #[serde(default)]
        pub id: String,
        #[serde(default)]
        pub encoded_claims: String,
        #[serde(default)]
        pub host_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub content_length: Option<u64>,
        #[serde(rename = "traceContext", default, skip_serializing_if = "HashMap::is_empty")]
        pub trace_context: HashMap<String, String>,
    }

    /// The Rust host's (0.78+) response: `content_length` required.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    pub struct InvocationResponse {
        #[serde(with = "bin", default)]
        pub msg: Vec<u8>,
        pub invocation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        pub content_length: u64,
        #[serde(rename = "traceContext", default, skip_serializing_if = "HashMap::is_empty")]
        pub trace_context: HashMap<String, String>,
    }

    impl WasmCloudEntity {
        pub fn new(public_key: &str, link_name: &str, contract_id: &str) -> Self {
            WasmCloudEntity {
                public_key: public_key.to_string(),
                link_name: link_name.to_string(),
                contract_id: contract_id.to_string(),
            }
        }
    }

    /// The URL form as wasmbus-rpc writes it (`replace` then `to_lowercase`, `format!`), kept
    /// independent of our implementation on purpose.
    pub fn reference_url(entity: &WasmCloudEntity) -> String {
        if entity.public_key.to_uppercase().starts_with('M') {
            format!("wasmbus://{}", entity.public_key)
        } else {
            format!(
                "wasmbus://{}/{}/{}",
                entity.contract_id.replace(':', "/").replace(' ', "_").to_lowercase(),
                entity.link_name.replace(' ', "_").to_lowercase(),
                entity.public_key
            )
        }
    }

    /// The invocation hash as the third-party implementations compute it: one concatenated
    /// buffer, SHA-256, `{:02X}` per byte.
    pub fn reference_hash(inv: &Invocation) -> String {
        use sha2::{Digest, Sha256};
        let target_url = format!("{}/{}", reference_url(&inv.target), inv.operation);
        let mut all = Vec::new();
        all.extend_from_slice(reference_url(&inv.origin).as_bytes());
        all.extend_from_slice(target_url.as_bytes());
        all.extend_from_slice(inv.operation.as_bytes());
        all.extend_from_slice(&inv.msg);
        Sha256::digest(&all).iter().map(|b| format!("{b:02X}")).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::mirror::{reference_url, WasmCloudEntity};
    use super::*;
    use proptest::prelude::*;

    fn entity(public_key: &str, link_name: &str, contract_id: &str) -> WasmCloudEntity {
        WasmCloudEntity::new(public_key, link_name, contract_id)
    }

    fn sample() -> mirror::Invocation {
        mirror::Invocation {
            origin: entity("MB2ACTOR", "", ""),
            target: entity("VPROVIDER", "default", "wasmcloud:keyvalue"),
            operation: "KeyValue.Get".into(),
            msg: b"\x81\xa3key\xa1k".to_vec(),
            id: "5d4d6ba3b1c44a5e8e1b7f3b3cf7e6b1".into(),
            encoded_claims: "aaa.bbb.ccc".into(),
            host_id: format!("N{}", "A".repeat(55)),
            content_length: Some(9),
            trace_context: [("traceparent".to_string(), "00-ab-cd-01".to_string())].into(),
        }
    }

    fn assert_matches(ours: &InvocationRef<'_>, theirs: &mirror::Invocation) {
        let entity_eq = |a: &EntityRef<'_>, b: &WasmCloudEntity| {
            a.public_key == b.public_key && a.link_name == b.link_name && a.contract_id == b.contract_id
        };
        assert!(entity_eq(&ours.origin, &theirs.origin));
        assert!(entity_eq(&ours.target, &theirs.target));
        assert_eq!(ours.operation, theirs.operation);
        assert_eq!(ours.msg, theirs.msg.as_slice());
        assert_eq!(ours.id, theirs.id);
        assert_eq!(ours.encoded_claims, theirs.encoded_claims);
        assert_eq!(ours.host_id, theirs.host_id);
        assert_eq!(ours.content_length, theirs.content_length);
        let trace: std::collections::HashMap<String, String> = ours
            .trace_context
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(trace, theirs.trace_context);
    }

    fn fields_of<'a>(inv: &'a mirror::Invocation, trace: &'a [(&'a str, &'a str)]) -> InvocationFields<'a> {
        let e = |x: &'a WasmCloudEntity| EntityRef {
            public_key: &x.public_key,
            link_name: &x.link_name,
            contract_id: &x.contract_id,
        };
        InvocationFields {
            origin: e(&inv.origin),
            target: e(&inv.target),
            operation: &inv.operation,
            msg: &inv.msg,
            id: &inv.id,
            encoded_claims: &inv.encoded_claims,
            host_id: &inv.host_id,
            content_length: inv.content_length.unwrap_or(inv.msg.len() as u64),
            trace_context: trace,
        }
    }

    #[test]
    fn decodes_rmp_serde_named_and_array_forms() {
        let inv = sample();
        let named = rmp_serde::to_vec_named(&inv).unwrap();
        assert_matches(&decode_invocation(&named).unwrap(), &inv);
        // Positional form (rmp_serde::to_vec): the field order documented at ARRAY_FIELDS.
        let positional = rmp_serde::to_vec(&inv).unwrap();
        assert_eq!(positional[0] & 0xf0, 0x90, "rmp-serde writes an array");
        assert_matches(&decode_invocation(&positional).unwrap(), &inv);
        // Without content_length / traceContext.
        let mut bare = inv.clone();
        bare.content_length = None;
        bare.trace_context.clear();
        for bytes in [
            rmp_serde::to_vec_named(&bare).unwrap(),
            rmp_serde::to_vec(&bare).unwrap(),
        ] {
            let decoded = decode_invocation(&bytes).unwrap();
            assert_matches(&decoded, &bare);
            assert_eq!(decoded.content_length_or_msg(), bare.msg.len() as u64);
        }
    }

    /// Write a map by hand: keys in the given order, values as pre-encoded bytes.
    fn hand_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::write_map_len(&mut out, entries.len());
        for (key, value) in entries {
            msgpack::write_str(&mut out, key);
            out.extend_from_slice(value);
        }
        out
    }

    fn s(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::write_str(&mut out, text);
        out
    }

    fn b(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::write_bin(&mut out, bytes);
        out
    }

    const NIL: &[u8] = &[0xc0];

    fn base_entries() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("host_id", s("NHOST")),
            ("unknown_extra", hand_map(&[("nested", vec![0x92, 0x01, 0xc3])])),
            ("target", hand_map(&[("public_key", s("MTARGET"))])),
            (
                "origin",
                hand_map(&[
                    ("contract_id", NIL.to_vec()),
                    ("public_key", s("MORIGIN")),
                    ("link_name", s("")),
                    ("future_field", vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0]),
                ]),
            ),
            ("operation", s("Op.Do")),
            ("msg", b(b"payload")),
            ("encoded_claims", s("t.o.k")),
            ("id", s("id-1")),
        ]
    }

    #[test]
    fn any_key_order_unknown_keys_nil_entities_and_str_msg() {
        let bytes = hand_map(&base_entries());
        let decoded = decode_invocation(&bytes).unwrap();
        assert_eq!(
            decoded.origin,
            EntityRef {
                public_key: "MORIGIN",
                link_name: "",
                contract_id: ""
            }
        );
        assert_eq!(
            decoded.target,
            EntityRef {
                public_key: "MTARGET",
                link_name: "",
                contract_id: ""
            }
        );
        assert_eq!(decoded.msg, b"payload");
        assert_eq!(decoded.content_length, None);
        assert!(decoded.trace_context.is_empty());

        let mut entries = base_entries();
        entries[5].1 = s("payload as str");
        entries.push(("content_length", NIL.to_vec()));
        entries.push(("traceContext", NIL.to_vec()));
        let bytes = hand_map(&entries);
        let decoded = decode_invocation(&bytes).unwrap();
        assert_eq!(decoded.msg, b"payload as str");
        assert_eq!(decoded.content_length, None);

        // Entity as an array: [public_key, link_name, contract_id].
        let mut entries = base_entries();
        entries[2].1 = [vec![0x93], s("VPROV"), NIL.to_vec(), s("wasmcloud:messaging")].concat();
        let bytes = hand_map(&entries);
        let decoded = decode_invocation(&bytes).unwrap();
        assert_eq!(
            decoded.target,
            EntityRef {
                public_key: "VPROV",
                link_name: "",
                contract_id: "wasmcloud:messaging"
            }
        );

        // A bin key is a key too (serde derive accepts bytes identifiers); an integer key is skipped.
        let mut bytes = hand_map(&base_entries());
        bytes[0] += 2;
        bytes.extend(b(b"content_length"));
        msgpack::write_uint(&mut bytes, 42);
        bytes.extend([0x07, 0xc3]);
        assert_eq!(decode_invocation(&bytes).unwrap().content_length, Some(42));
    }

    #[test]
    fn missing_duplicate_and_wrong_fields_are_typed_errors() {
        for (index, field) in [
            (0, Field::HostId),
            (2, Field::Target),
            (3, Field::Origin),
            (4, Field::Operation),
            (5, Field::Msg),
            (6, Field::EncodedClaims),
            (7, Field::Id),
        ] {
            let mut entries = base_entries();
            entries.remove(index);
            assert_eq!(
                decode_invocation(&hand_map(&entries)),
                Err(DecodeError::MissingField(field))
            );
        }
        let mut entries = base_entries();
        entries[2].1 = hand_map(&[("link_name", s("x"))]);
        assert_eq!(
            decode_invocation(&hand_map(&entries)),
            Err(DecodeError::MissingField(Field::PublicKey))
        );

        let mut entries = base_entries();
        entries.push(("id", s("again")));
        assert_eq!(
            decode_invocation(&hand_map(&entries)),
            Err(DecodeError::DuplicateField(Field::Id))
        );

        let cases: [(usize, Vec<u8>, DecodeError); 6] = [
            (0, vec![0x05], DecodeError::FieldType(Field::HostId)),
            (0, NIL.to_vec(), DecodeError::FieldType(Field::HostId)),
            (2, s("not an entity"), DecodeError::FieldType(Field::Target)),
            (5, vec![0x90], DecodeError::FieldType(Field::Msg)),
            (4, vec![0xa2, 0xff, 0xfe], DecodeError::FieldUtf8(Field::Operation)),
            (4, vec![0xc1], DecodeError::Malformed(MsgpackError::ReservedMarker)),
        ];
        for (index, value, expected) in cases {
            let mut entries = base_entries();
            entries[index].1 = value;
            assert_eq!(decode_invocation(&hand_map(&entries)), Err(expected));
        }
        let mut entries = base_entries();
        entries.push(("content_length", vec![0xff]));
        assert_eq!(
            decode_invocation(&hand_map(&entries)),
            Err(DecodeError::Malformed(MsgpackError::IntegerRange))
        );
        let mut entries = base_entries();
        entries.push(("traceContext", hand_map(&[("k", vec![0x01])])));
        assert_eq!(
            decode_invocation(&hand_map(&entries)),
            Err(DecodeError::FieldType(Field::TraceContext))
        );

        assert_eq!(decode_invocation(&s("hello")), Err(DecodeError::NotAStruct));
        assert_eq!(decode_invocation(&[]), Err(DecodeError::Truncated));
        let mut trailing = hand_map(&base_entries());
        trailing.push(0xc0);
        assert_eq!(decode_invocation(&trailing), Err(DecodeError::TrailingBytes));
        assert!(DecodeError::Truncated.is_truncated());
        assert!(DecodeError::TrailingBytes
            .message()
            .starts_with("Failed to deserialize invocation"));
    }

    #[test]
    fn url_form_matches_protocol_examples() {
        let provider = EntityRef {
            public_key: "Vxxx",
            link_name: "default",
            contract_id: "wasmcloud:messaging",
        };
        let mut url = String::new();
        provider.target_url("OP_TESTING", &mut url);
        assert_eq!(url, "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTING");
        assert!(provider.target_url_eq("OP_TESTING", "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTING"));
        assert!(!provider.target_url_eq("OP_TESTING", "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTIN"));
        assert!(!provider.target_url_eq("OP_TESTING", "wasmbus://wasmcloud/messaging/default/Vxxx/OP_TESTINGG"));
        assert!(provider.url_eq("wasmbus://wasmcloud/messaging/default/Vxxx"));

        let odd = EntityRef {
            public_key: "VKEY",
            link_name: "My Link",
            contract_id: "Acme:Key Value",
        };
        url.clear();
        odd.url(&mut url);
        assert_eq!(url, "wasmbus://acme/key_value/my_link/VKEY");

        for key in ["MACTOR", "mactor"] {
            let actor = EntityRef {
                public_key: key,
                link_name: "ignored",
                contract_id: "ignored",
            };
            url.clear();
            actor.url(&mut url);
            assert_eq!(url, format!("wasmbus://{key}"));
        }
        let wash = EntityRef {
            public_key: "__WASH__",
            link_name: "",
            contract_id: "",
        };
        url.clear();
        wash.url(&mut url);
        assert_eq!(url, reference_url(&entity("__WASH__", "", "")));
    }

    #[test]
    fn response_len_is_exact_and_decode_response_reads_every_shape() {
        let big = vec![7u8; 70_000];
        for (error, msg) in [
            (None, b"result".as_slice()),
            (None, big.as_slice()),
            (Some("Anti-forgery check failed: x"), b"".as_slice()),
        ] {
            for id in ["i", "0123456789abcdef0123456789abcdef", &"x".repeat(300)] {
                let mut out = Vec::new();
                encode_response(&mut out, id, msg, error, msg.len() as u64);
                assert_eq!(out.len(), response_len(id, msg.len(), error, msg.len() as u64));
                let decoded = decode_response(&out).unwrap();
                assert_eq!((decoded.msg, decoded.invocation_id, decoded.error), (msg, id, error));
                assert_eq!(decoded.content_length, Some(msg.len() as u64));
            }
        }
        // OTP's error reply: no content_length, an extra instance_id, a nil msg.
        #[derive(serde::Serialize)]
        struct Otp<'a> {
            msg: Option<()>,
            invocation_id: &'a str,
            error: &'a str,
            instance_id: &'a str,
        }
        let otp = rmp_serde::to_vec_named(&Otp {
            msg: None,
            invocation_id: "id",
            error: "boom",
            instance_id: "x",
        })
        .unwrap();
        let decoded = decode_response(&otp).unwrap();
        assert_eq!(
            (decoded.msg, decoded.error, decoded.content_length),
            (&b""[..], Some("boom"), None)
        );
        // Positional form, and a reply with neither msg nor error is refused.
        let array = rmp_serde::to_vec(&(serde_bytes_vec(b"ok"), "id", Option::<String>::None, 2u64)).unwrap();
        assert_eq!(decode_response(&array).unwrap().msg, b"ok");
        let empty = rmp_serde::to_vec_named(&std::collections::HashMap::from([("invocation_id", "id")])).unwrap();
        assert_eq!(decode_response(&empty), Err(DecodeError::MissingField(Field::Msg)));
        assert!(decode_response(b"\xc1").is_err());
    }

    /// A `Vec<u8>` serialized as msgpack bin.
    fn serde_bytes_vec(bytes: &[u8]) -> rmpv_bin::Bin {
        rmpv_bin::Bin(bytes.to_vec())
    }

    mod rmpv_bin {
        pub struct Bin(pub Vec<u8>);
        impl serde::Serialize for Bin {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn encode_response_is_rmp_serde_compatible() {
        for (error, msg) in [
            (None, b"result".as_slice()),
            (Some("Anti-forgery check failed: x"), b"".as_slice()),
        ] {
            let mut out = Vec::new();
            encode_response(&mut out, "id-7", msg, error, msg.len() as u64);
            let theirs: mirror::InvocationResponse = rmp_serde::from_slice(&out).unwrap();
            assert_eq!(theirs.invocation_id, "id-7");
            assert_eq!(theirs.msg, msg);
            assert_eq!(theirs.error.as_deref(), error);
            assert_eq!(theirs.content_length, msg.len() as u64);
            // Byte-identical to what wasmbus-rpc's serde writes.
            let expected = mirror::InvocationResponse {
                msg: msg.to_vec(),
                invocation_id: "id-7".into(),
                error: error.map(str::to_string),
                content_length: msg.len() as u64,
                trace_context: Default::default(),
            };
            assert_eq!(out, rmp_serde::to_vec_named(&expected).unwrap());
        }
        let mut out = bytes::BytesMut::new();
        encode_response(&mut out, "id", b"x", None, 1);
        assert_eq!(
            rmp_serde::from_slice::<mirror::InvocationResponse>(&out).unwrap().msg,
            b"x"
        );
    }

    #[test]
    fn a_traced_response_carries_its_trace_context_and_is_framed_exactly() {
        let trace = [
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ];
        for error in [None, Some("guest trapped")] {
            let mut out = Vec::new();
            encode_response_traced(&mut out, "id-9", b"ok", error, 2, &trace);
            assert_eq!(out.len(), response_len_traced("id-9", 2, error, 2, &trace));
            let theirs: mirror::InvocationResponse = rmp_serde::from_slice(&out).unwrap();
            assert_eq!(theirs.trace_context.len(), 2);
            assert_eq!(theirs.trace_context["tracestate"], "congo=t61rcWkgMzE");
            assert_eq!(theirs.error.as_deref(), error);
            // Our own lenient decoder skips it.
            assert_eq!(decode_response(&out).unwrap().invocation_id, "id-9");
        }
    }

    #[test]
    fn encode_invocation_is_rmp_serde_compatible() {
        let inv = sample();
        let trace = [("traceparent", "00-ab-cd-01")];
        let mut out = Vec::new();
        encode_invocation(&mut out, &fields_of(&inv, &trace));
        assert_eq!(
            out,
            rmp_serde::to_vec_named(&inv).unwrap(),
            "same bytes as to_vec_named"
        );
        let theirs: mirror::Invocation = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(theirs, inv);
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[A-Z0-9]{1,56}",
            any::<String>(),
            "[a-zA-Z:ΣσßİK ]{0,12}",
        ]
    }

    fn arb_entity() -> impl Strategy<Value = WasmCloudEntity> {
        (arb_text(), arb_text(), arb_text()).prop_map(|(p, l, c)| WasmCloudEntity {
            public_key: p,
            link_name: l,
            contract_id: c,
        })
    }

    prop_compose! {
        fn arb_invocation()(
            origin in arb_entity(),
            target in arb_entity(),
            operation in arb_text(),
            msg in prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 0..300)],
            id in arb_text(),
            encoded_claims in arb_text(),
            host_id in arb_text(),
            content_length in any::<Option<u64>>(),
            trace_context in proptest::collection::hash_map(arb_text(), arb_text(), 0..3),
        ) -> mirror::Invocation {
            mirror::Invocation { origin, target, operation, msg, id, encoded_claims, host_id, content_length, trace_context }
        }
    }

    proptest! {
        #[test]
        fn round_trip_ours_and_rmp_serde(inv in arb_invocation()) {
            let trace: Vec<(&str, &str)> = inv.trace_context.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut inv = inv.clone();
            inv.content_length = Some(inv.content_length.unwrap_or(0).max(inv.msg.len() as u64));
            let mut ours = Vec::new();
            encode_invocation(&mut ours, &fields_of(&inv, &trace));
            assert_matches(&decode_invocation(&ours).unwrap(), &inv);
            prop_assert_eq!(&rmp_serde::from_slice::<mirror::Invocation>(&ours).unwrap(), &inv);
            assert_matches(&decode_invocation(&rmp_serde::to_vec_named(&inv).unwrap()).unwrap(), &inv);
            assert_matches(&decode_invocation(&rmp_serde::to_vec(&inv).unwrap()).unwrap(), &inv);
        }

        #[test]
        fn truncations_are_errors(inv in arb_invocation()) {
            let bytes = rmp_serde::to_vec_named(&inv).unwrap();
            for end in 0..bytes.len() {
                prop_assert_eq!(decode_invocation(&bytes[..end]), Err(DecodeError::Truncated), "cut at {}", end);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_invocation(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn responses_round_trip_and_mutations_never_panic(
            msg in proptest::collection::vec(any::<u8>(), 0..300),
            id in arb_text(),
            error in proptest::option::of(arb_text()),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let msg = if error.is_some() { Vec::new() } else { msg };
            let mut bytes = Vec::new();
            encode_response(&mut bytes, &id, &msg, error.as_deref(), msg.len() as u64);
            prop_assert_eq!(bytes.len(), response_len(&id, msg.len(), error.as_deref(), msg.len() as u64));
            let decoded = decode_response(&bytes).unwrap();
            prop_assert_eq!((decoded.msg, decoded.invocation_id, decoded.error), (&msg[..], id.as_str(), error.as_deref()));
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = decode_response(&bytes);
        }

        #[test]
        fn mutated_invocations_never_panic(inv in arb_invocation(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = rmp_serde::to_vec_named(&inv).unwrap();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = decode_invocation(&bytes);
        }

        #[test]
        fn url_equals_the_reference(e in arb_entity(), operation in arb_text()) {
            let ours = EntityRef { public_key: &e.public_key, link_name: &e.link_name, contract_id: &e.contract_id };
            let mut url = String::new();
            ours.url(&mut url);
            let reference = reference_url(&e);
            prop_assert_eq!(&url, &reference);
            prop_assert!(ours.url_eq(&reference));
            let target = format!("{reference}/{operation}");
            prop_assert!(ours.target_url_eq(&operation, &target));
            let longer = format!("{}x", target);
            prop_assert!(!ours.target_url_eq(&operation, &longer));
        }
    }
}
