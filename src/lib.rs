//! # shardhost
//!
//! A wasmCloud 0.x ("wasmbus") lattice host built for invocation throughput on many-core edge
//! nodes. One process, two planes:
//!
//! ```text
//!             NATS (the lattice)
//!        ▲ ctl / events / KV / provider health          ▲ wasmbus.rpc.{lattice}.{actor} (queue group)
//!        │                                              │
//! ┌──────┴─────────────────────────┐          ┌─────────┴─────────────┐   ┌──────────────┐
//! │ control plane (1 thread)       │ commands │ shard 0 (glommio,     │ … │ shard N-1    │
//! │ tokio + async-nats             ├─────────►│   pinned to core 0)   │   │              │
//! │ ctl interface, events,         │ snapshots│ own NATS connection,  │   │              │
//! │ heartbeat, KV bucket, OCI,     │◄─────────┤ decode, batch verify, │   │              │
//! │ compile, providers             │ reports  │ warm instance pools   │   │              │
//! └────────────────────────────────┘          └───────────────────────┘   └──────────────┘
//! ```
//!
//! Module map:
//! - data plane: [`shard`] (one executor per core: glommio on io_uring, or tokio on epoll), [`runtime`] (wasmtime engine,
//!   compiled actors, warm instance pools, the wasmbus ABI).
//! - between the planes: [`plane`] (commands and reports), [`routing`] (immutable snapshots).
//! - control plane: [`control`] (ctl interface, events, heartbeat, KV, managed NATS).
//! - shared: [`config`] (flags and limits), [`config_nats`] (one NATS connection's flags and
//!   credentials), [`config_compat`] (the rest of the wasmCloud 0.82 command line), [`identity`] (keys, labels), [`lattice`] (KV entry types and parsers;
//!   pure), [`tls`] (the NATS connections' TLS settings), [`telemetry`] (OpenTelemetry export: the
//!   control plane's spans and logs, each shard's own span pipeline).

pub mod auth;
#[cfg(feature = "host")]
pub mod builtin;
#[cfg(feature = "host")]
pub mod config;
#[cfg(feature = "host")]
pub mod config_compat;
#[cfg(feature = "host")]
pub mod config_nats;
#[cfg(feature = "host")]
pub mod control;
#[cfg(feature = "host")]
pub mod identity;
#[cfg(feature = "host")]
pub mod inspect;
pub mod lattice;
#[cfg(feature = "host")]
pub mod plane;
#[cfg(feature = "host")]
pub mod routing;
#[cfg(feature = "host")]
pub mod runtime;
#[cfg(feature = "host")]
pub mod shard;
#[cfg(feature = "host")]
pub mod telemetry;
#[cfg(test)]
mod tidy;
#[cfg(feature = "host")]
pub mod tls;
pub mod wire;
