//! The write side of a shard's NATS connection: the [`Outbox`] every task of the shard queues
//! frames into, and the writer task that hands them to the socket in one write per executor
//! turn. Data plane; frames are encoded by [`crate::wire::nats`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::task::Waker;

use futures::io::WriteHalf;
use futures::AsyncWriteExt;

use super::link::{ConnError, MAX_PAYLOAD_BYTES_DEFAULT, READ_CHUNK_BYTES};
use super::notify::Notify;
use super::stream::NatsStream;
use crate::wire::nats as proto;

/// A subscription to restore after a reconnect.
#[derive(Debug, Clone)]
struct Subscription {
    subject: String,
    queue: Option<String>,
}

/// The write side of a shard's connection, shared (in an `Rc`) by every task of the shard.
///
/// Publishing appends a frame to a buffer and wakes the connection's writer task, which sends
/// everything queued in one `write` when it next runs: replies finished in the same executor
/// turn leave together. Protocol frames (`SUB`, `UNSUB`, `PONG`) and publications are kept
/// apart: after a reconnect the former are rebuilt from the subscription table while queued
/// publications are sent on the new connection (a reply is never dropped because the socket
/// broke before it left).
#[derive(Default)]
pub struct Outbox {
    pub(super) control: RefCell<Vec<u8>>,
    data: RefCell<Vec<u8>>,
    pub(super) ready: Notify,
    drained: Notify,
    subscriptions: RefCell<BTreeMap<u64, Subscription>>,
    next_sid: Cell<u64>,
    pub(super) max_payload: Cell<usize>,
    /// Set by the writer when a write failed; the reader then ends its read with an error.
    pub(super) writer_failed: Cell<bool>,
    pub(super) failure_waker: Cell<Option<Waker>>,
    /// `PING`s we sent after the handshake and `PONG`s that answered them.
    pings_sent: Cell<u64>,
    pub(super) pongs_received: Cell<u64>,
    pong: Notify,
    /// Successful socket writes and the bytes they carried.
    writes: Cell<u64>,
    bytes_written: Cell<u64>,
}

impl Outbox {
    /// An empty outbox; frames queued before the connection exists leave once it does.
    pub fn new() -> Outbox {
        let outbox = Outbox::default();
        outbox.next_sid.set(1);
        outbox.max_payload.set(MAX_PAYLOAD_BYTES_DEFAULT);
        outbox
    }

    /// The server's `max_payload` (or our default before it said).
    pub fn max_payload(&self) -> usize {
        self.max_payload.get()
    }

    /// Subscribe to `subject` (in queue group `queue`); returns the sid. Restored after every
    /// reconnect until [`Outbox::unsubscribe`].
    pub fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<u64, ConnError> {
        let sid = self.next_sid.get();
        proto::write_sub(&mut *self.control.borrow_mut(), subject, queue, sid)
            .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.next_sid.set(sid + 1);
        let subscription = Subscription {
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
        };
        self.subscriptions.borrow_mut().insert(sid, subscription);
        self.ready.notify();
        Ok(sid)
    }

    /// Drop subscription `sid` (unknown sids are ignored).
    pub fn unsubscribe(&self, sid: u64) {
        if self.subscriptions.borrow_mut().remove(&sid).is_some() {
            proto::write_unsub(&mut *self.control.borrow_mut(), sid, None);
            self.ready.notify();
        }
    }

    /// Queue a publication. A payload over the server's `max_payload` is an error here rather
    /// than a connection the server closes.
    pub fn publish(&self, subject: &str, reply: Option<&str>, payload: &[u8]) -> Result<(), ConnError> {
        proto::write_pub(
            &mut *self.data.borrow_mut(),
            subject,
            reply,
            payload,
            self.max_payload(),
        )
        .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.ready.notify();
        Ok(())
    }

    /// Queue a publication with NATS headers (`HPUB`; `headers` in order). The header block
    /// counts against `max_payload` with the payload, as the server counts it.
    pub fn publish_headers(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ConnError> {
        let max = self.max_payload();
        proto::write_hpub(&mut *self.data.borrow_mut(), subject, reply, headers, payload, max)
            .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.ready.notify();
        Ok(())
    }

    /// Queue a publication whose `payload_len` bytes `encode` writes straight into the write
    /// buffer (see [`proto::write_pub_with`]).
    pub fn publish_with(
        &self,
        subject: &str,
        reply: Option<&str>,
        payload_len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), ConnError> {
        let max = self.max_payload();
        proto::write_pub_with(&mut self.data.borrow_mut(), subject, reply, payload_len, max, encode)
            .map_err(|e| ConnError::Encode(e.to_string()))?;
        self.ready.notify();
        Ok(())
    }

    /// Take the queued publications (the in-process shard's output).
    pub fn take_data(&self) -> Vec<u8> {
        std::mem::take(&mut *self.data.borrow_mut())
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn pending_bytes(&self) -> usize {
        self.control.borrow().len() + self.data.borrow().len()
    }

    /// Socket writes so far and the bytes they carried.
    pub fn write_counts(&self) -> (u64, u64) {
        (self.writes.get(), self.bytes_written.get())
    }

    /// Wait until everything queued so far has been written to the socket (one waiter at a
    /// time).
    pub async fn drained(&self) {
        while self.pending_bytes() > 0 {
            self.drained.notified().await;
        }
    }

    /// Wait until the server has processed everything queued so far: send a `PING` and wait
    /// for its `PONG` (the server handles one connection's commands in order). One waiter at a
    /// time; bound the wait, as a connection may be down.
    pub async fn confirmed(&self) {
        let wanted = self.ping();
        while !self.answered(wanted) {
            self.pong.notified().await;
        }
    }

    /// Send a `PING` after everything queued so far; returns its number for [`Self::answered`]
    /// (for a task that must not wait, such as the reader that will receive the `PONG`).
    pub fn ping(&self) -> u64 {
        let number = self.pings_sent.get() + 1;
        self.pings_sent.set(number);
        proto::write_ping(&mut *self.control.borrow_mut());
        self.ready.notify();
        number
    }

    /// Whether `PING` number `number` was answered (or lost with a connection whose
    /// subscriptions are being sent again).
    pub fn answered(&self, number: u64) -> bool {
        self.pongs_received.get() >= number
    }

    pub(super) fn on_pong(&self) {
        self.pongs_received.set(self.pongs_received.get() + 1);
        self.pong.notify();
    }

    /// Start over on a new connection: protocol frames queued for the old one are dropped and
    /// every subscription is sent again under its sid, ahead of the queued publications.
    pub(super) fn restart(&self) -> Result<(), ConnError> {
        let mut control = self.control.borrow_mut();
        control.clear();
        for (sid, sub) in self.subscriptions.borrow().iter() {
            proto::write_sub(&mut *control, &sub.subject, sub.queue.as_deref(), *sid)
                .map_err(|e| ConnError::Encode(e.to_string()))?;
        }
        self.writer_failed.set(false);
        // PINGs lost with the old connection will never be answered: count them as answered
        // (the subscriptions they confirmed are being sent again).
        self.pongs_received.set(self.pings_sent.get());
        self.pong.notify();
        self.ready.notify();
        Ok(())
    }

    fn count_write(&self, bytes: usize) {
        self.writes.set(self.writes.get() + 1);
        self.bytes_written.set(self.bytes_written.get() + bytes as u64);
    }

    fn fail_writer(&self) {
        self.writer_failed.set(true);
        if let Some(waker) = self.failure_waker.take() {
            waker.wake();
        }
    }
}

/// Write `bytes` and flush them (a TLS stream keeps the last record until flushed; a plain
/// socket's flush does nothing).
async fn write_out(socket: &mut WriteHalf<NatsStream>, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}

/// Publications taken out of the outbox for one write. Unless the write completed, dropping it
/// (a failed write, or the writer task cancelled by a reconnect) puts them back at the front of
/// the queue, to be sent on the next connection: delivery across a reconnect is at least once
/// (a frame the old socket did send goes again), never silently lost.
struct Sending<'a> {
    outbox: &'a Outbox,
    buf: Vec<u8>,
    written: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.written || self.buf.is_empty() {
            return;
        }
        let mut data = self.outbox.data.borrow_mut();
        self.buf.extend_from_slice(&data);
        std::mem::swap(&mut *data, &mut self.buf);
    }
}

/// The writer task of one connection: sends whatever is queued, protocol frames first, until a
/// write fails.
pub(super) async fn write_loop(outbox: Rc<Outbox>, mut socket: WriteHalf<NatsStream>) {
    let mut spare = Vec::with_capacity(READ_CHUNK_BYTES);
    loop {
        if outbox.pending_bytes() == 0 {
            outbox.drained.notify();
            outbox.ready.notified().await;
            continue;
        }
        // Protocol frames: lost with a broken connection (rebuilt by `restart`).
        let control = std::mem::take(&mut *outbox.control.borrow_mut());
        if !control.is_empty() {
            if let Err(error) = write_out(&mut socket, &control).await {
                tracing::debug!(%error, "shard NATS write failed");
                outbox.fail_writer();
                return;
            }
            outbox.count_write(control.len());
        }
        spare.clear();
        std::mem::swap(&mut *outbox.data.borrow_mut(), &mut spare);
        let mut sending = Sending {
            outbox: &outbox,
            buf: std::mem::take(&mut spare),
            written: false,
        };
        if !sending.buf.is_empty() {
            if let Err(error) = write_out(&mut socket, &sending.buf).await {
                tracing::debug!(%error, "shard NATS write failed");
                drop(sending);
                outbox.fail_writer();
                return;
            }
            outbox.count_write(sending.buf.len());
        }
        sending.written = true;
        spare = std::mem::take(&mut sending.buf);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn a_reconnect_resends_subscriptions_once_and_keeps_publications() {
        let outbox = Outbox::new();
        let a = outbox.subscribe("wasmbus.rpc.l.Ma", Some("wasmbus.rpc.l.Ma")).unwrap();
        let b = outbox.subscribe("_INBOX.x.*", None).unwrap();
        outbox.unsubscribe(a);
        outbox.publish("_INBOX.r.1", None, b"reply").unwrap();
        outbox.restart().unwrap();
        // Only the live subscription, under its old sid; the stale SUB/UNSUB frames are gone.
        assert_eq!(text(&outbox.control.borrow()), format!("SUB _INBOX.x.* {b}\r\n"));
        assert_eq!(text(&outbox.data.borrow()), "PUB _INBOX.r.1 5\r\nreply\r\n");
    }

    #[test]
    fn publications_of_an_unfinished_write_go_back_to_the_front() {
        let outbox = Outbox::new();
        outbox.publish("a", None, b"1").unwrap();
        let taken = std::mem::take(&mut *outbox.data.borrow_mut());
        let sending = Sending {
            outbox: &outbox,
            buf: taken,
            written: false,
        };
        outbox.publish("b", None, b"2").unwrap();
        drop(sending);
        assert_eq!(text(&outbox.data.borrow()), "PUB a 1\r\n1\r\nPUB b 1\r\n2\r\n");
        // A finished write is not requeued.
        let taken = std::mem::take(&mut *outbox.data.borrow_mut());
        drop(Sending {
            outbox: &outbox,
            buf: taken,
            written: true,
        });
        assert_eq!(outbox.pending_bytes(), 0);
    }

    #[test]
    fn replies_encoded_in_place_and_miscounts_rolled_back() {
        let outbox = Outbox::new();
        outbox
            .publish_with("r", None, 3, |buf| buf.extend_from_slice(b"abc"))
            .unwrap();
        assert!(outbox
            .publish_with("r", None, 2, |buf| buf.extend_from_slice(b"abc"))
            .is_err());
        assert_eq!(text(&outbox.take_data()), "PUB r 3\r\nabc\r\n");
    }
}
