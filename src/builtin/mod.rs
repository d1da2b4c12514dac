//! Built-in capability providers (issue 20): providers the host serves itself, on the shards,
//! with no provider process and no NATS hop — `wasmcloud+builtin://http-server` first. What is
//! here so far is the ground they stand on, pure and tested: the httpserver link settings
//! ([`http_settings`]); the `HttpRequest`/`HttpResponse` payloads are in `wire::http`. The
//! listener, the provider identity and `lp`/link handling are not built yet: an `lp` of a
//! `wasmcloud+builtin://` reference is still refused (unsupported reference scheme).

pub mod http_settings;
