//! `InvocationResponse` (PROTOCOL §2.4): encoding our replies straight into the write buffer
//! (with the exact length for framing first) and decoding the replies to our own calls,
//! leniently (§16).
//!
//! Plane: pure code on the shards' hot path. No I/O, no async; decoding allocates nothing.

use bytes::BufMut;

use super::invocation::{read_key, read_struct_header, set_once, write_trace_context, DecodeError, Field};
use super::msgpack::{self, Reader};

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
