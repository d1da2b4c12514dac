//! What the parts of a shard's NATS connection share — the reading side ([`super::conn`]), the
//! write side ([`super::outbox`]) and the stream ([`super::stream`]): its limits and its error
//! type. Kept apart so none of those imports another for them (no import cycles).

use crate::wire::nats::ProtocolError;

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
    #[error("TLS: {0}")]
    Tls(String),
}
