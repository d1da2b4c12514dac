//! Wire formats: pure codecs over byte slices for what the data plane speaks (NATS frames,
//! invocations, msgpack) and for the control interface's JSON requests (`ctl`).
//!
//! Plane: pure code, called by the shards (and the fuzz targets). Nothing here does I/O, awaits,
//! locks, or panics on input: every byte reaching these parsers comes from the network, so a
//! malformed frame is an error value and an incomplete one is "read more".

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod ctl;
pub mod http;
pub mod invocation;
pub mod messaging;
pub mod msgpack;
pub mod nats;
pub mod response;
pub mod trace;
