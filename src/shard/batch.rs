//! What the accepted invocations of a batch become: [`Job`]s, each owning slices of the frame
//! it came in, waiting for room to run (the shard's waiting room holds them).
//!
//! Data plane, plain data: nothing here replies, counts or touches the shard's state.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

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
