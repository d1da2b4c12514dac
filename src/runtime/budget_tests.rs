//! The host-wide memory budget (`--memory-budget-mib`) against real instances: instantiation
//! past it fails with its own error, a guest's `memory.grow` past it fails the way a full
//! machine would, and what instances held comes back when they go. Test-only.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::budget::BYTES_PER_MIB;
use super::tests::{compile, limits, parker, pool, ECHO, GROW};
use super::*;

const PAGE_BYTES: u64 = 64 << 10;

fn runtime_with_budget(bytes: u64) -> Runtime {
    Runtime::new(&RuntimeLimits {
        memory_budget_bytes: bytes,
        ..limits()
    })
    .unwrap()
}

#[tokio::test]
async fn instances_past_the_budget_are_refused_and_their_memory_comes_back() {
    // The echo starts with one 64 KiB page: a budget of three pages holds three instances.
    let runtime = runtime_with_budget(3 * PAGE_BYTES);
    let budget = Arc::clone(runtime.memory_budget());
    assert_eq!(compile(&runtime, ECHO).initial_memory_bytes(), PAGE_BYTES);
    let mut three = pool(&runtime, ECHO, 3).await;
    assert_eq!(budget.used_bytes() as u64, 3 * PAGE_BYTES);

    // A fourth, on demand, does not fit: its own error, not a trap or an allocator message.
    let lease: Vec<_> = (0..3).map(|_| three.try_lease().unwrap()).collect();
    let error = three.lease_on_demand().await.err().expect("over the budget");
    assert_eq!(
        error,
        InvokeError::MemoryBudget {
            used_bytes: 3 * PAGE_BYTES,
            budget_bytes: 3 * PAGE_BYTES
        }
    );
    assert!(error.to_string().contains("memory budget"), "{error}");
    // A pool that cannot be filled says why.
    let compiled = compile(&runtime, ECHO);
    let refused = ActorPool::new(&runtime, &compiled, "MOTHER", &[], Arc::new(NoHostCalls), parker(), 1).await;
    assert!(
        matches!(
            &refused,
            Err(RuntimeError::Instantiate {
                reason: InvokeError::MemoryBudget { .. },
                ..
            })
        ),
        "{:?}",
        refused.err()
    );

    for instance in lease {
        let _ = three.give_back(instance);
    }
    drop(three);
    assert_eq!(budget.used_bytes(), 0, "every instance gave its memory back");
    let mut again = pool(&runtime, ECHO, 3).await;
    assert_eq!(invoke(&mut again, "Echo", b"hi").await.unwrap(), b"hi");
}

#[tokio::test]
async fn a_guest_growing_past_the_budget_fails_like_on_a_full_machine() {
    // Instance limit 4 MiB (tests' limits), host budget 1 MiB: the budget stops the hog first.
    let runtime = runtime_with_budget(BYTES_PER_MIB as u64);
    let budget = Arc::clone(runtime.memory_budget());
    let mut hog = pool(&runtime, GROW, 1).await;
    let error = invoke(&mut hog, "Grow", b"").await.unwrap_err();
    assert!(
        matches!(error, InvokeError::MemoryBudget { budget_bytes, .. } if budget_bytes == BYTES_PER_MIB as u64),
        "{error}"
    );
    // The hog was retired and replaced by a fresh one-page instance: the budget holds what
    // lives now, not what the retired instance grew to.
    assert_eq!(hog.stats().retired, 1);
    assert_eq!(budget.used_bytes() as u64, PAGE_BYTES);
    // Without a budget the instance limit is what stops it, as before.
    let unbounded = Runtime::new(&limits()).unwrap();
    let mut hog = pool(&unbounded, GROW, 1).await;
    assert_eq!(
        invoke(&mut hog, "Grow", b"").await.unwrap_err(),
        InvokeError::OutOfMemory {
            memory_bytes_max: 4 << 20
        }
    );
}
