//! Warm sets that follow the load: a pool releases the idle instances its recent concurrency
//! did not need and grows back when calls need more; an instance whose memory grew past
//! `instance_memory_keep_bytes` is dropped on return and replaced; the default slot count
//! follows the machine's memory. Test-only.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::limits::{instance_slots_for_memory, INSTANCE_SLOTS_MACHINE_MIN, INSTANCE_SLOTS_TOTAL_DEFAULT};
use super::tests::{limits, pool, ECHO};
use super::*;

/// Grows its memory by 32 pages (2 MiB) on every call and succeeds.
const GROWS_2_MIB: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (drop (memory.grow (i32.const 32)))
    i32.const 1))"#;

fn held(pool: &ActorPool) -> usize {
    pool.idle_count() + pool.leased_count()
}

#[tokio::test]
async fn an_idle_pool_keeps_what_its_last_period_leased_at_once_and_grows_back_on_demand() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 6).await;
    assert_eq!((held(&pool), pool.target()), (6, 6));

    // Three calls at once in this period: the release keeps three, the least recently used go.
    let leased: Vec<_> = (0..3).map(|_| pool.try_lease().unwrap()).collect();
    for instance in leased {
        assert!(matches!(pool.give_back(instance), GiveBack::Idle));
    }
    assert_eq!(pool.release_idle(1), 3);
    assert_eq!((held(&pool), pool.target(), pool.stats().released_idle), (3, 3, 3));
    assert!(!pool.needs_refill(), "a release must not be undone by the next refill");

    // A quiet period: down to the floor of one.
    assert_eq!(pool.release_idle(1), 2);
    assert_eq!((held(&pool), pool.target()), (1, 1));
    assert_eq!(pool.release_idle(1), 0, "never below the floor");

    // Four at once: one warm, three made on demand; all four stay once given back.
    let mut leased = vec![pool.try_lease().unwrap()];
    assert!(pool.try_lease().is_none());
    for _ in 0..3 {
        leased.push(pool.lease_on_demand().await.unwrap());
    }
    for mut instance in leased {
        instance.invoke("Echo", b"x").await.unwrap();
        assert!(matches!(pool.give_back(instance), GiveBack::Idle));
    }
    assert_eq!((held(&pool), pool.target()), (4, 4));
    // That period leased four at once: the next release keeps them.
    assert_eq!(pool.release_idle(1), 0);
    assert_eq!(held(&pool), 4);
    // Never above the size, whatever the floor.
    assert_eq!(pool.release_idle(99), 0);
    assert!(pool.target() <= pool.size());
    assert_eq!(pool.stats().invocations, 4);
}

#[tokio::test]
async fn a_release_while_instances_are_leased_keeps_them_and_their_replacements() {
    let runtime = Runtime::new(&limits()).unwrap();
    let mut pool = pool(&runtime, ECHO, 4).await;
    let a = pool.try_lease().unwrap();
    let b = pool.try_lease().unwrap();
    // Two leased now: two idle go, the two leased stay counted.
    assert_eq!(pool.release_idle(1), 2);
    assert_eq!((pool.idle_count(), pool.leased_count(), pool.target()), (0, 2, 2));
    assert!(matches!(pool.give_back(a), GiveBack::Idle));
    assert!(matches!(pool.give_back(b), GiveBack::Idle));
    assert_eq!(held(&pool), 2);
}

#[tokio::test]
async fn an_instance_grown_past_the_keep_bound_is_replaced_not_reused() {
    let runtime = Runtime::new(&RuntimeLimits {
        instance_memory_keep_bytes: 1 << 20,
        ..limits()
    })
    .unwrap();
    let mut pool = pool(&runtime, GROWS_2_MIB, 2).await;
    let before = pool.memory_bytes();
    let mut instance = pool.try_lease().unwrap();
    instance.invoke("Grow", b"").await.unwrap();
    assert!(instance.memory_bytes() > 2 << 20);
    assert!(matches!(pool.give_back(instance), GiveBack::Shed));
    assert_eq!(pool.stats().released_memory, 1);
    assert_eq!(
        pool.memory_bytes(),
        before / 2,
        "the shed instance's memory is no longer counted"
    );
    assert!(pool.needs_refill(), "its replacement is due");
    assert_eq!(pool.refill().await.unwrap(), 1);
    assert_eq!((held(&pool), pool.memory_bytes()), (2, before));

    // Unbounded (0): the grown instance goes back to the pool.
    let keep_all = Runtime::new(&RuntimeLimits {
        instance_memory_keep_bytes: 0,
        ..limits()
    })
    .unwrap();
    let mut pool = super::tests::pool(&keep_all, GROWS_2_MIB, 1).await;
    let mut instance = pool.try_lease().unwrap();
    instance.invoke("Grow", b"").await.unwrap();
    assert!(matches!(pool.give_back(instance), GiveBack::Idle));
    assert_eq!(pool.stats().released_memory, 0);
}

#[test]
fn default_slots_follow_the_machines_memory() {
    const GIB: u64 = 1 << 30;
    let per_slot = RuntimeLimits {
        instance_slots_total: 1,
        ..RuntimeLimits::default()
    }
    .reservation()
    .unwrap()
    .committed_bytes();
    // A fiber stack and its guard page plus a table: about 1.2 MiB of commit per slot.
    assert_eq!(per_slot, (1 << 20) + 4096 + 20_000 * 8);
    assert_eq!(instance_slots_for_memory(GIB), 110);
    assert_eq!(instance_slots_for_memory(GIB / 2), INSTANCE_SLOTS_MACHINE_MIN);
    assert_eq!(instance_slots_for_memory(0), INSTANCE_SLOTS_MACHINE_MIN);
    assert_eq!(instance_slots_for_memory(10 * GIB), INSTANCE_SLOTS_TOTAL_DEFAULT);
    assert_eq!(instance_slots_for_memory(u64::MAX), INSTANCE_SLOTS_TOTAL_DEFAULT);
    // What the 1 GiB default commits at start: within an eighth of the machine.
    let one_gib = RuntimeLimits {
        instance_slots_total: instance_slots_for_memory(GIB),
        ..RuntimeLimits::default()
    };
    assert!(one_gib.reservation().unwrap().committed_bytes() <= GIB / 8);
}
