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
//!
//! # Files
//! - [`parse`]: what a server sends: [`parse_server_op`], [`parse_headers`], [`ProtocolError`],
//!   and the line limits both directions share.
//! - [`encode`]: what a client sends: the `write_*` encoders, [`EncodeError`], [`WriteBuffer`],
//!   [`ConnectOptions`]. It imports the parser's limits and, in debug builds, its header check;
//!   the parser imports nothing from it.

mod encode;
mod parse;
#[cfg(test)]
mod strategies;

pub use encode::{
    write_connect, write_hpub, write_ping, write_pong, write_pub, write_pub_with, write_sub, write_unsub,
    ConnectOptions, EncodeError, WriteBuffer,
};
pub use parse::{
    offset_range, parse_headers, parse_server_op, HeaderIter, Headers, ProtocolError, ServerOp, CONTROL_LINE_BYTES_MAX,
    INFO_LINE_BYTES_MAX, STATUS_NO_RESPONDERS,
};
