//! Linear memory accounting: each instance's own limit (`--actor-memory-max-mib`) and the
//! host-wide budget (`--memory-budget-mib`) that all instances of all actors on all shards
//! share.
//!
//! Every store's [`MemoryLimit`] (its wasmtime `ResourceLimiter`) reserves from one
//! [`MemoryBudget`] before its memory is created or grown, and gives the reservation back when
//! the store is dropped. Past the budget, an instantiation fails ("memory budget exhausted")
//! and a `memory.grow` returns -1 — what a guest sees on any full machine, and what an edge
//! node wants instead of the kernel's OOM killer. The control plane checks the same budget
//! before it scales an actor up, so a scale that cannot fit is refused with an error reply
//! instead of failing instance by instance. Shared across shard threads: one atomic counter,
//! touched only when a memory is created, grows or goes away (never per call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use wasmtime::ResourceLimiter;

/// Bytes per MiB, for the flag and the messages.
pub const BYTES_PER_MIB: usize = 1 << 20;

/// The host-wide linear-memory budget.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    /// `None`: unbounded (the default; instances are then bounded by their own limit and the
    /// pooling allocator's slots only).
    limit_bytes: Option<usize>,
    used_bytes: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit_bytes: Option<usize>) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit_bytes,
            used_bytes: AtomicUsize::new(0),
        })
    }

    pub fn limit_bytes(&self) -> Option<usize> {
        self.limit_bytes
    }

    /// Linear memory reserved by live instances now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more would still fit (a check, not a reservation).
    pub fn fits(&self, bytes: usize) -> bool {
        self.limit_bytes
            .is_none_or(|limit| self.used_bytes().saturating_add(bytes) <= limit)
    }

    /// Reserve `bytes`; `false` (and nothing reserved) when they do not fit.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let Some(limit) = self.limit_bytes else {
            self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
            return true;
        };
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Give back `bytes` reserved earlier.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Why the last `memory.grow` (or memory creation) of a store was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Past the instance's own limit (`--actor-memory-max-mib`), or the allocator failed.
    InstanceLimit,
    /// Past the host's budget (`--memory-budget-mib`).
    HostBudget,
}

/// One store's limiter: its instance limit, its share of the budget, and a record of the last
/// denial so a trap that follows a refused `memory.grow` reads as out-of-memory.
#[derive(Debug)]
pub struct MemoryLimit {
    pub bytes_max: usize,
    pub denied: Option<Denial>,
    budget: Arc<MemoryBudget>,
    /// Bytes this store holds of the budget: its memory's current size.
    reserved: usize,
    /// Reserved by the last permitted grow, until it is known to have succeeded.
    pending: usize,
}

impl MemoryLimit {
    pub fn new(bytes_max: usize, budget: Arc<MemoryBudget>) -> MemoryLimit {
        MemoryLimit {
            bytes_max,
            denied: None,
            budget,
            reserved: 0,
            pending: 0,
        }
    }

    /// Bytes of the budget this store holds.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.bytes_max {
            self.denied = Some(Denial::InstanceLimit);
            return Ok(false);
        }
        let more = desired.saturating_sub(self.reserved);
        if !self.budget.try_reserve(more) {
            self.denied = Some(Denial::HostBudget);
            return Ok(false);
        }
        self.reserved += more;
        self.pending = more;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Permitted, then the allocator could not: give the reservation back.
        self.budget.release(self.pending);
        self.reserved -= self.pending;
        self.pending = 0;
        self.denied = Some(Denial::InstanceLimit);
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= super::limits::TABLE_ELEMENTS_MAX)
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: usize = BYTES_PER_MIB;

    #[test]
    fn reservations_stop_at_the_limit_and_come_back() {
        let budget = MemoryBudget::new(Some(3 * MIB));
        assert!(budget.try_reserve(2 * MIB));
        assert!(budget.fits(MIB) && !budget.fits(MIB + 1));
        assert!(!budget.try_reserve(2 * MIB), "past the limit");
        assert_eq!(budget.used_bytes(), 2 * MIB, "a refused reservation takes nothing");
        budget.release(2 * MIB);
        assert!(budget.try_reserve(3 * MIB));
        // Releasing more than is held cannot wrap around.
        budget.release(10 * MIB);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn an_unbounded_budget_counts_but_never_refuses() {
        let budget = MemoryBudget::new(None);
        assert!(budget.try_reserve(usize::MAX / 2) && budget.fits(usize::MAX / 4));
        assert_eq!(budget.used_bytes(), usize::MAX / 2);
    }

    #[test]
    fn a_store_reserves_what_it_grows_by_and_releases_it_when_dropped() {
        let budget = MemoryBudget::new(Some(4 * MIB));
        let mut a = MemoryLimit::new(64 * MIB, budget.clone());
        let mut b = MemoryLimit::new(64 * MIB, budget.clone());
        assert!(a.memory_growing(0, MIB, None).unwrap(), "creation");
        assert!(a.memory_growing(MIB, 3 * MIB, None).unwrap(), "growth by 2 MiB");
        assert_eq!((a.reserved_bytes(), budget.used_bytes()), (3 * MIB, 3 * MIB));
        assert!(!b.memory_growing(0, 2 * MIB, None).unwrap(), "only 1 MiB left");
        assert_eq!(b.denied, Some(Denial::HostBudget));
        assert!(!a.memory_growing(3 * MIB, 65 * MIB, None).unwrap());
        assert_eq!(a.denied, Some(Denial::InstanceLimit), "its own limit comes first");
        // A permitted grow the allocator then fails gives its reservation back.
        assert!(b.memory_growing(0, MIB, None).unwrap());
        b.memory_grow_failed(wasmtime::Error::msg("no slot")).unwrap();
        assert_eq!(budget.used_bytes(), 3 * MIB);
        drop(a);
        assert_eq!(budget.used_bytes(), 0);
        assert!(
            b.memory_growing(0, 4 * MIB, None).unwrap(),
            "the whole budget is free again"
        );
    }
}
