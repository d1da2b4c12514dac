//! [`AssertSend`]: lets a shard-local (`!Send`) future cross a `Send` bound that wasmtime puts
//! on async host functions and epoch yields.
//!
//! Soundness rests on one invariant: every future wrapped here is created on a shard thread and
//! polled only there. glommio's `spawn_local` never moves a task to another thread, a shard's
//! wasmtime `Store`s and pools never leave the shard that built them, and wasmtime polls a
//! yield future on the fiber of the call that produced it, on the same thread. The wrapper must
//! not be used anywhere that could hand the future to another thread (a tokio multi-thread
//! runtime, a channel, a `spawn`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future asserted to stay on the thread that made it (see the module doc).
pub struct AssertSend<F>(pub F);

// SAFETY: see the module doc — the wrapped future is created and polled on one shard thread.
unsafe impl<F> Send for AssertSend<F> {}
// SAFETY: as for `Send`: the value never leaves its shard's thread, so no other thread can
// hold a reference to it (hyper asks `Sync` of its timer's sleeps, which stay on the shard).
unsafe impl<F> Sync for AssertSend<F> {}

impl<F: Future> Future for AssertSend<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        inner.poll(cx)
    }
}
