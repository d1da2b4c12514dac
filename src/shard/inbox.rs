//! [`Calls`]: the shard's private inbox `_INBOX.{random}.*` and the outbound calls waiting for
//! a reply on it, matched by the last token of the reply subject.
//!
//! Data plane. Held by [`super::core::ShardCore`]; the reader hands it every message on the
//! inbox ([`Calls::deliver`]) and [`super::calls`] registers and forgets calls. Shard-local
//! (`Cell`, `RefCell`): no locks; a late reply (its call timed out) is dropped, never queued.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use futures::channel::oneshot;

use crate::plane::ShardId;

use super::conn::Inbound;

/// Replies awaited by outbound calls of one shard.
pub(crate) struct Calls {
    /// `_INBOX.{random}`; replies come on `{prefix}.{n}`.
    pub inbox_prefix: String,
    inbox_sid: Cell<Option<u64>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Inbound>>>,
    next: Cell<u64>,
}

impl Calls {
    pub fn new(shard: ShardId) -> Calls {
        Calls {
            inbox_prefix: format!("_INBOX.{}{}", uuid::Uuid::new_v4().simple(), shard.0),
            inbox_sid: Cell::new(None),
            pending: RefCell::new(HashMap::new()),
            next: Cell::new(1),
        }
    }

    #[inline]
    pub fn inbox_sid(&self) -> Option<u64> {
        self.inbox_sid.get()
    }

    pub fn set_inbox_sid(&self, sid: u64) {
        self.inbox_sid.set(Some(sid));
    }

    /// Hand a reply to the call waiting for it; late replies (the call timed out) are dropped.
    pub fn deliver(&self, msg: &Inbound) {
        let token = msg.subject().rsplit('.').next().and_then(|t| t.parse::<u64>().ok());
        let waiter = token.and_then(|token| self.pending.borrow_mut().remove(&token));
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(msg.clone());
            }
            None => tracing::debug!(subject = msg.subject(), "late or unknown reply dropped"),
        }
    }

    /// Register a call; returns its reply subject, its token and the receiver of its reply.
    pub(super) fn register(&self) -> (String, u64, oneshot::Receiver<Inbound>) {
        let token = self.next.get();
        self.next.set(token + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(token, tx);
        (format!("{}.{token}", self.inbox_prefix), token, rx)
    }

    /// Give up on every call still waiting (a stopping shard past its drain timeout): each
    /// guest gets an error from its `__host_call` and can finish, so its invocation is
    /// answered. Returns how many.
    pub fn cancel_all(&self) -> usize {
        let mut pending = self.pending.borrow_mut();
        let cancelled = pending.len();
        pending.clear();
        cancelled
    }

    pub(super) fn forget(&self, token: u64) {
        self.pending.borrow_mut().remove(&token);
    }
}
