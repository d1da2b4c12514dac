//! [`Turns`]: at most [`GUESTS_RUNNING_MAX`] guests of one shard on its CPU at once; the rest
//! wait for a turn in arrival order.
//!
//! Why: guests yield to each other at every epoch tick, so without a bound every accepted
//! invocation runs at once and they share the core round robin. For a CPU-bound actor under
//! overload that means each call takes (calls in flight × its own CPU time): at ten times the
//! capacity every call ran past its caller's timeout and nothing was served
//! (`overload::ten_times_the_capacity_of_a_cpu_bound_actor…`). With turns, a call takes at
//! most `GUESTS_RUNNING_MAX` × its CPU time once it runs, and one that waited past
//! [`GUEST_TURN_WAIT_MS_MAX`] is refused as overloaded instead of run for nobody.
//!
//! A guest awaiting an outbound call leaves the CPU ([`Turns::step_off`]) and comes back without
//! waiting ([`Turns::step_on`]), so callers never hold turns their callees need. Shard-local
//! (`Rc`, `Cell`): no atomics, no locks.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Guests of one shard that run guest code at once (the others wait for a turn). Enough that a
/// few runaway guests (each holding its turn until its deadline) leave room for the rest.
pub const GUESTS_RUNNING_MAX: usize = 16;
/// Longest an invocation may wait (from its read) for its turn; past it the shard refuses it as
/// overloaded. Under overload the wait grows to this bound, so it is also about what a served
/// call waits then: well inside the 0.x hosts' default rpc timeout of 2 s, with room for the
/// time the message spent reaching the shard.
pub const GUEST_TURN_WAIT_MS_MAX: u64 = 500;

/// One waiting guest: set when a leaving guest hands it the turn.
#[derive(Default)]
struct Waiter {
    granted: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// The turns of one shard.
pub struct Turns {
    max: usize,
    running: Cell<usize>,
    waiting: RefCell<VecDeque<Rc<Waiter>>>,
    /// Set while the shard polls a guest that holds a turn (see [`InTurn`]).
    polling_in_turn: Cell<bool>,
}

impl Turns {
    pub fn new(max: usize) -> Turns {
        Turns {
            max: max.max(1),
            running: Cell::new(0),
            waiting: RefCell::new(VecDeque::new()),
            polling_in_turn: Cell::new(false),
        }
    }

    /// Guests on the CPU now.
    pub fn running(&self) -> usize {
        self.running.get()
    }

    /// Guests waiting for a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.borrow().len()
    }

    /// Wait for a turn (at once when one is free and nobody waits before us).
    pub fn take(&self) -> TakeTurn<'_> {
        TakeTurn {
            turns: self,
            waiter: None,
        }
    }

    /// Give a turn back: to the first guest still waiting, else to the pool.
    fn release(&self) {
        loop {
            let next = self.waiting.borrow_mut().pop_front();
            match next {
                // Only the queue holds it: that wait was dropped.
                Some(waiter) if Rc::strong_count(&waiter) == 1 => continue,
                Some(waiter) => {
                    waiter.granted.set(true);
                    if let Some(waker) = waiter.waker.take() {
                        waker.wake();
                    }
                    return;
                }
                None => {
                    self.running.set(self.running.get().saturating_sub(1));
                    return;
                }
            }
        }
    }

    /// The guest being polled leaves the CPU to await an outbound call, if it holds a turn;
    /// returns whether it did (then [`Turns::step_on`] must follow).
    pub fn step_off(&self) -> bool {
        if !self.polling_in_turn.get() {
            return false;
        }
        self.release();
        true
    }

    /// Back from an outbound call: on the CPU again at once (never waits, so a caller is
    /// never stuck behind the work it called; the bound is briefly exceeded instead).
    pub fn step_on(&self) {
        self.running.set(self.running.get() + 1);
    }
}

/// Holds a turn; gives it back when dropped.
pub struct Turn<'a> {
    turns: &'a Turns,
}

impl Turn<'_> {
    /// Run `future` (the guest call) in this turn: outbound calls it makes step off the CPU.
    pub fn run<F: Future>(&self, future: F) -> InTurn<'_, F> {
        InTurn {
            turns: self.turns,
            future: Box::pin(future),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.release();
    }
}

/// The wait for a turn ([`Turns::take`]). Dropped after it was granted, it passes the turn on.
pub struct TakeTurn<'a> {
    turns: &'a Turns,
    waiter: Option<Rc<Waiter>>,
}

impl<'a> Future for TakeTurn<'a> {
    type Output = Turn<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn<'a>> {
        let turns = self.turns;
        match &self.waiter {
            None if turns.running.get() < turns.max && turns.waiting.borrow().is_empty() => {
                turns.running.set(turns.running.get() + 1);
                Poll::Ready(Turn { turns })
            }
            None => {
                let waiter = Rc::new(Waiter::default());
                waiter.waker.set(Some(cx.waker().clone()));
                turns.waiting.borrow_mut().push_back(Rc::clone(&waiter));
                self.waiter = Some(waiter);
                Poll::Pending
            }
            Some(waiter) if waiter.granted.get() => {
                self.waiter = None;
                Poll::Ready(Turn { turns })
            }
            Some(waiter) => {
                waiter.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

impl Drop for TakeTurn<'_> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            if waiter.granted.get() {
                // Handed a turn it will never use.
                self.turns.release();
            }
            // Otherwise the queue's copy is now the only one: `release` skips it.
        }
    }
}

/// A guest call polled inside its turn (see [`Turns::step_off`]).
pub struct InTurn<'a, F> {
    turns: &'a Turns,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for InTurn<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = self.turns.polling_in_turn.replace(true);
        let result = self.future.as_mut().poll(cx);
        self.turns.polling_in_turn.set(before);
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::shard::rt;

    /// Run `test` on each backend's executor.
    fn on_each_backend<F: std::future::Future<Output = ()> + 'static>(test: fn() -> F) {
        for backend in rt::BACKENDS {
            rt::run_on(backend, test).unwrap();
        }
    }

    #[test]
    fn turns_are_granted_in_arrival_order_and_passed_on() {
        on_each_backend(|| async {
            let turns = Rc::new(Turns::new(2));
            let order = Rc::new(RefCell::new(Vec::new()));
            let a = turns.take().await;
            let b = turns.take().await;
            assert_eq!((turns.running(), turns.waiting()), (2, 0));
            let mut tasks = Vec::new();
            for n in 0..3 {
                let (turns, order) = (Rc::clone(&turns), Rc::clone(&order));
                tasks.push(rt::spawn_local(async move {
                    let _turn = turns.take().await;
                    order.borrow_mut().push(n);
                    rt::yield_now().await;
                }));
            }
            rt::yield_now().await;
            assert_eq!(turns.waiting(), 3);
            drop(a);
            drop(b);
            for task in tasks {
                task.await;
            }
            assert_eq!(*order.borrow(), vec![0, 1, 2]);
            assert_eq!((turns.running(), turns.waiting()), (0, 0));
        });
    }

    #[test]
    fn a_dropped_wait_gives_up_its_place_or_its_turn() {
        on_each_backend(|| async {
            let turns = Turns::new(1);
            let held = turns.take().await;
            // Waits, then is dropped before it is granted: skipped.
            let mut abandoned = Box::pin(turns.take());
            assert!(futures::poll!(abandoned.as_mut()).is_pending());
            drop(abandoned);
            // Waits and is granted, then dropped before it runs: the turn is passed on.
            let mut granted = Box::pin(turns.take());
            assert!(futures::poll!(granted.as_mut()).is_pending());
            let mut last = Box::pin(turns.take());
            assert!(futures::poll!(last.as_mut()).is_pending());
            drop(held);
            drop(granted);
            let turn = last.await;
            assert_eq!((turns.running(), turns.waiting()), (1, 0));
            drop(turn);
            assert_eq!(turns.running(), 0);
        });
    }

    #[test]
    fn a_guest_awaiting_a_call_steps_off_only_inside_its_turn() {
        on_each_backend(|| async {
            let turns = Turns::new(1);
            assert!(!turns.step_off(), "outside a turn nothing is given back");
            let turn = turns.take().await;
            let stepped = turn
                .run(async {
                    let stepped = turns.step_off();
                    // Off the CPU: another guest can take the turn meanwhile.
                    let other = turns.take().await;
                    drop(other);
                    turns.step_on();
                    stepped
                })
                .await;
            assert!(stepped);
            assert_eq!(turns.running(), 1);
            drop(turn);
            assert_eq!(turns.running(), 0);
        });
    }
}
