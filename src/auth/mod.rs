//! Authentication and trust checks: claims embedded in actor modules and in provider archives,
//! the wascap JWTs they share, invocation anti-forgery and the batched Ed25519 verification of
//! invocation tokens.
//!
//! Everything here is pure code shared by both planes: no I/O, no async, no clock (callers pass
//! `now` in). Input reaches these functions straight from the network or from a module file, so
//! nothing in `auth` may panic on any input.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod antiforgery;
pub mod claims;
pub mod jwt;
pub mod par;
#[cfg(test)]
pub(crate) mod testkit;
pub mod verify_batch;
