//! What one socket read becomes on its way through the pipeline: the [`Candidate`]s that
//! passed the screening, the batch verification over them ([`verify_candidates`], a function
//! over slices), the [`BatchBuffers`] those stages reuse from batch to batch, and the [`Job`]s
//! the accepted invocations become.
//!
//! Data plane, pure: nothing here replies, counts or touches the shard's state (the stages
//! that do are in [`super::serve`]). Once the buffers have grown to the largest batch seen, a
//! batch allocates nothing for its bookkeeping. Must never panic on input: a bad token or key
//! only leaves its item unverified.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::antiforgery::DecodedInvocationToken;
use crate::auth::verify_batch::{verify_batch, IssuerKeyCache, VerifyItem, VERIFY_BATCH_ITEMS_MAX};
use crate::wire::invocation::InvocationRef;

use super::conn::Inbound;
use super::trace::InboundTrace;

/// An invocation that passed the screening, borrowed from the batch: its signature is checked
/// next, with the others of its batch.
pub(super) struct Candidate<'a> {
    pub msg: &'a Inbound,
    pub actor: Rc<str>,
    pub inv: InvocationRef<'a>,
    pub token: DecodedInvocationToken<'a>,
}

/// Scratch of the batch verification, one slice of at most [`VERIFY_BATCH_ITEMS_MAX`] at a
/// time.
#[derive(Default)]
pub(crate) struct VerifyScratch {
    /// The slice's items (kept empty between batches: its borrows end with the batch).
    items: Vec<VerifyItem<'static>>,
    /// For each item, the index of its candidate.
    indices: Vec<usize>,
    /// For each item, whether it verified.
    ok: Vec<bool>,
}

/// The buffers of the batch stages, kept by the shard and reused by every batch (the borrowed
/// ones are kept empty between batches and lent to each with [`recycle`]).
#[derive(Default)]
pub(crate) struct BatchBuffers {
    /// Stage 1's output: the invocations worth a signature check.
    pub(super) candidates: Vec<Candidate<'static>>,
    /// Stage 2's output: `verified[i]` says whether candidate `i`'s signature holds.
    pub(super) verified: Vec<bool>,
    pub(super) verify: VerifyScratch,
}

/// `buffer`, emptied, as a buffer of another item type on the same allocation: lets a buffer
/// of borrowed items (`T` and `U` the same type with other lifetimes) outlive the batch they
/// borrowed from. The standard library collects a `Vec`'s `into_iter` in place when the item
/// layouts match, so this keeps the allocation (`recycle_keeps_the_allocation` checks it); were
/// it ever to stop doing so, the buffers would only allocate again, never misbehave.
pub(super) fn recycle<T, U>(mut buffer: Vec<T>) -> Vec<U> {
    buffer.clear();
    buffer.into_iter().filter_map(|_| None).collect()
}

/// Stage 2, batch verification: one Ed25519 batch equation per slice of
/// [`VERIFY_BATCH_ITEMS_MAX`] candidates. Sets `verified[i]` to whether candidate `i`'s token
/// signature holds; a candidate whose issuer key does not decode stays out of the batch and
/// unverified.
pub(super) fn verify_candidates(
    keys: &mut IssuerKeyCache,
    candidates: &[Candidate<'_>],
    scratch: &mut VerifyScratch,
    verified: &mut Vec<bool>,
) {
    verified.clear();
    verified.resize(candidates.len(), false);
    for candidate in candidates {
        // A bad key leaves the item out of the batch; it fails the checks.
        let _ = keys.insert(&candidate.token.issuer);
    }
    let keys: &IssuerKeyCache = keys;
    let mut items: Vec<VerifyItem<'_>> = recycle(std::mem::take(&mut scratch.items));
    for (start, chunk) in candidates.chunks(VERIFY_BATCH_ITEMS_MAX).enumerate() {
        items.clear();
        scratch.indices.clear();
        for (offset, candidate) in chunk.iter().enumerate() {
            if let Some(key) = keys.get(&candidate.token.issuer) {
                items.push(VerifyItem {
                    message: candidate.token.signed_part.as_bytes(),
                    signature: candidate.token.signature,
                    key,
                });
                scratch.indices.push(start * VERIFY_BATCH_ITEMS_MAX + offset);
            }
        }
        scratch.ok.clear();
        scratch.ok.resize(items.len(), false);
        verify_batch(&items, &mut scratch.ok);
        for (index, ok) in scratch.indices.iter().zip(&scratch.ok) {
            verified[*index] = *ok;
        }
    }
    scratch.items = recycle(items);
}

/// An accepted invocation, owning slices of the frame it came in.
pub(crate) struct Dispatch {
    /// When it was ready to run: the read that carried it was handled, or, for a chunked one,
    /// its payload was fetched (its wait for a turn counts from here).
    pub(super) arrived: Instant,
    pub(super) actor: Rc<str>,
    pub(super) operation: Bytes,
    pub(super) msg: Bytes,
    pub(super) id: Bytes,
    pub(super) reply: Option<Bytes>,
    /// The trace it runs in: `None` with telemetry off and no caller trace context.
    pub(super) trace: Option<Box<InboundTrace>>,
}

impl Dispatch {
    pub(super) fn operation(&self) -> &str {
        std::str::from_utf8(&self.operation).unwrap_or_default()
    }

    pub(super) fn id(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    pub(super) fn reply(&self) -> Option<&str> {
        self.reply.as_deref().and_then(|r| std::str::from_utf8(r).ok())
    }
}

/// An invocation that passed every check, waiting for room to run.
pub(crate) enum Job {
    Serve(Dispatch),
    /// Chunked: its payload is fetched (and its hash checked) first.
    Chunked(Dechunk),
}

impl Job {
    pub(super) fn dispatch(&self) -> &Dispatch {
        match self {
            Job::Serve(dispatch) => dispatch,
            Job::Chunked(dechunk) => &dechunk.dispatch,
        }
    }
}

/// What a chunked invocation still needs checked once its payload is fetched.
pub(crate) struct Dechunk {
    pub(super) dispatch: Dispatch,
    pub(super) content_length: u64,
    pub(super) origin_url: String,
    pub(super) target_url: String,
    pub(super) hash: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The buffers are only worth keeping if a lent buffer is the kept allocation.
    #[test]
    fn recycle_keeps_the_allocation() {
        let kept: Vec<Candidate<'static>> = Vec::with_capacity(64);
        let (pointer, capacity) = (kept.as_ptr() as usize, kept.capacity());
        let lent: Vec<Candidate<'_>> = recycle(kept);
        assert_eq!((lent.as_ptr() as usize, lent.capacity()), (pointer, capacity));
        let back: Vec<Candidate<'static>> = recycle(lent);
        assert_eq!((back.as_ptr() as usize, back.capacity()), (pointer, capacity));
    }
}
