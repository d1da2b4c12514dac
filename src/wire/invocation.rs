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
    pub(super) fn at(field: Field) -> impl Fn(MsgpackError) -> DecodeError {
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

pub(super) fn set_once<T>(slot: &mut Option<T>, value: T, field: Field) -> Result<(), DecodeError> {
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
pub(super) fn read_key<'a>(reader: &mut Reader<'a>) -> Result<Option<&'a [u8]>, DecodeError> {
    match reader.peek_kind()? {
        Kind::Str | Kind::Bin => Ok(Some(reader.read_bin_or_str()?)),
        _ => {
            reader.skip_value()?;
            Ok(None)
        }
    }
}

/// Read a struct header: `(true, len)` for a map, `(false, len)` for an array.
pub(super) fn read_struct_header(reader: &mut Reader<'_>, field: Option<Field>) -> Result<(bool, u32), DecodeError> {
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

pub(super) fn write_trace_context(out: &mut impl BufMut, trace_context: &[(&str, &str)]) {
    msgpack::write_map_len(out, trace_context.len());
    for (key, value) in trace_context {
        msgpack::write_str(out, key);
        msgpack::write_str(out, value);
    }
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
#[path = "invocation_mirror.rs"]
pub(crate) mod mirror;

#[cfg(test)]
#[path = "invocation_tests.rs"]
mod tests;
