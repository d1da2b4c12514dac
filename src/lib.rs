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
//! - data plane: [`shard`] (glommio executors, one per core), [`runtime`] (wasmtime engine,
//!   compiled actors, warm instance pools, the wasmbus ABI).
//! - between the planes: [`plane`] (commands and reports), [`routing`] (immutable snapshots).
//! - control plane: [`control`] (ctl interface, events, heartbeat, KV, managed NATS).
//! - shared: [`config`] (flags and limits), [`identity`] (keys, labels), [`lattice`] (KV
//!   entry types and parsers; pure).

pub mod auth;
pub mod config;
pub mod control;
pub mod identity;
pub mod inspect;
pub mod lattice;
pub mod plane;
pub mod routing;
pub mod runtime;
pub mod shard;
#[cfg(test)]
mod tidy;
pub mod wire;
