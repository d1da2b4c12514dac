//! Integration tests: a real `nats-server` (JetStream) and the `shardhost` binary, driven over
//! the wasmCloud 0.x control interface, event stream and lattice KV bucket (PROTOCOL.md §1.2,
//! §1.3, §5, §6, §7, §10). One binary; each test starts its own nats-server and host.
//!
//! nats-server is found through `$SHARDHOST_NATS_SERVER`, `PATH`, or `.tools/venv/bin`
//! (`scripts/setup` installs it there).

mod actors;
mod builtin_http;
mod builtin_messaging;
mod cli082;
mod cluster;
mod data_path;
mod drain;
mod faults;
mod harness;
mod host;
mod interop;
mod lattice;
mod local_calls;
mod memory_budget;
mod metrics;
mod nats_tls;
mod oci;
mod overload;
mod policy;
mod probes;
mod provider_credentials;
mod provider_supervision;
mod providers;
mod shard_conn;
mod shard_io;
mod soak;
mod support;
mod telemetry;
mod tiering;
mod wadm;
mod warm_release;
mod wash;
