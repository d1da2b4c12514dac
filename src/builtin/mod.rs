//! Built-in capability providers (issue 20): providers the host serves itself, on the shards,
//! with no provider process and no NATS hop — `wasmcloud+builtin://http-server` and
//! `wasmcloud+builtin://messaging-nats`.
//!
//! - [`identity`]: references, contracts and the provider identity, the same on every host.
//! - [`http_settings`]: a `wasmcloud:httpserver` link's values, read as httpserver 0.19.1 does.
//! - [`messaging_settings`]: a `wasmcloud:messaging` link's values, as the NATS messaging
//!   provider 0.17 reads them.
//! - [`routes`]: which addresses the shards listen on, and which subjects they subscribe to,
//!   for which actor.
//!
//! All pure. The control plane's side (start/stop, events, health, the routes handed to the
//! shards) is in `control::providers::builtin` and `control::http_routes`; the serving side in
//! `shard::http`; the `HttpRequest`/`HttpResponse` payloads in `wire::http`.

pub mod http_settings;
pub mod identity;
pub mod messaging_settings;
pub mod routes;
