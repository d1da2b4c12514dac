//! [`Notify`]: a single-waiter wake-up flag for tasks of one shard (no atomics, no locks).
//!
//! `notify` before `notified` is remembered (one pending wake-up, not a count), so a wake-up
//! sent while the waiter is busy is never lost. Only one task may wait at a time: a second
//! waiter replaces the first one's waker. Shard-local: `!Send`, like everything in an `Rc`.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// A remembered wake-up for one waiting task.
#[derive(Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Wake the waiter, or let its next wait return at once.
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Wait for a wake-up (returns at once if one is pending) and consume it.
    pub async fn notified(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_wake_up_before_the_wait_is_kept_and_consumed_once() {
        for backend in crate::shard::rt::BACKENDS {
            crate::shard::rt::run_on(backend, || async {
                let notify = Rc::new(Notify::default());
                notify.notify();
                notify.notify();
                notify.notified().await;
                let waiter = {
                    let notify = Rc::clone(&notify);
                    crate::shard::rt::spawn_local(async move {
                        notify.notified().await;
                        7
                    })
                };
                crate::shard::rt::yield_now().await;
                notify.notify();
                assert_eq!(waiter.await, 7);
            })
            .unwrap();
        }
    }
}
