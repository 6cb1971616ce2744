//! One server's connection limit (`max_connections`) and the queue in front
//! of it (`queue: { size, timeout }`), as HAProxy's `maxconn`, `maxqueue`
//! and `timeout queue` for a server.
//!
//! A slot is one request the server is working on for this gateway: taken
//! before a connection is leased or opened, given back when the request's
//! [`InFlight`](super::server::InFlight) guard drops (its answer read to the
//! end, or abandoned). A request that finds every slot taken waits in line,
//! first come first served; a released slot goes straight to the first in
//! line, so a newcomer never overtakes a waiter. A full line, or a wait past
//! the timeout, is refused at once ([`Refused`]): the caller answers 503
//! rather than letting the request sit until `backend.timeout`.
//!
//! The slots held and the line are live state on the server, which a reload
//! keeps while it lists the same server; only the terms are swapped
//! ([`Limit::set_terms`]). A reload that raises the limit or removes it lets
//! waiters in at once, one that lowers it applies to the next acquisition,
//! and a waiter always ends admitted or refused, never forgotten.

use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::ConnLimit;

/// Why a request got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every slot was taken and the queue held `queue.size` already.
    #[error("every connection to the server is in use and its queue is full")]
    Full,
    /// No slot came free within `queue.timeout`.
    #[error("no connection to the server came free within queue.timeout")]
    TimedOut,
}

/// A server's slots and the requests waiting for one.
pub struct Limit {
    /// `max_connections` in force, 0 for none: read without the lock, so a
    /// server without a limit costs its requests nothing.
    max: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    terms: Option<ConnLimit>,
    /// Slots taken (they outlive a reload that removed the limit, and are
    /// given back all the same).
    held: usize,
    /// Oldest first.
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

/// A request in line. Taken out of the line by anyone but itself only to
/// be given a slot (`admit_waiters`): that is how it knows it has one.
struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

impl State {
    /// Give freed slots to the first in line while there is room.
    fn admit_waiters(&mut self) {
        let max = self.terms.as_ref().map(|t| t.max_connections);
        while max.is_none_or(|max| self.held < max) {
            let Some(waiter) = self.waiters.pop_front() else {
                return;
            };
            // Its receiver lives while it is in line (`Queued` leaves the
            // line before it drops); should it not, the slot stays free.
            if waiter.wake.send(()).is_ok() {
                self.held += 1;
            }
        }
    }

    fn release(&mut self) {
        self.held = self.held.saturating_sub(1);
        self.admit_waiters();
    }

    /// Take `id` out of the line; false when it is no longer there (it was
    /// given a slot).
    fn leave(&mut self, id: u64) -> bool {
        match self.waiters.iter().position(|w| w.id == id) {
            Some(at) => {
                self.waiters.remove(at);
                true
            }
            None => false,
        }
    }
}

impl Limit {
    pub fn new(terms: Option<ConnLimit>) -> Limit {
        Limit {
            max: AtomicUsize::new(terms.as_ref().map_or(0, |t| t.max_connections)),
            state: Mutex::new(State {
                terms,
                held: 0,
                waiters: VecDeque::new(),
                next_id: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The terms a reload put in force. Slots held stay held; waiters the
    /// new terms make room for are let in now.
    pub fn set_terms(&self, terms: Option<ConnLimit>) {
        let mut state = self.state();
        self.max.store(
            terms.as_ref().map_or(0, |t| t.max_connections),
            Ordering::Relaxed,
        );
        state.terms = terms;
        state.admit_waiters();
    }

    /// Whether a request would get a slot without waiting.
    pub fn has_room(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return true;
        }
        let state = self.state();
        state.waiters.is_empty() && state.held < max
    }

    /// Requests waiting in line now.
    pub fn queued(&self) -> usize {
        if self.max.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.state().waiters.len()
    }

    /// Slots taken now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.state().held
    }

    /// Take a slot, waiting in line for one when none is free; `Ok(false)`
    /// when the server has no limit (nothing is held, nothing to give
    /// back). `Ok(true)` is a slot the caller gives back with
    /// [`Limit::release`]. Cancel-safe: a wait that is dropped leaves the
    /// line, or gives back the slot it was handed meanwhile.
    ///
    /// `ahead`: at the head of the line, even a full one (a health check:
    /// one per server at a time, and one that waited behind a line of
    /// requests on a hung server would never get to tell it is hung).
    pub async fn acquire(&self, ahead: bool) -> Result<bool, Refused> {
        if self.max.load(Ordering::Relaxed) == 0 {
            return Ok(false);
        }
        let (queued, timeout) = {
            let mut state = self.state();
            let Some(terms) = &state.terms else {
                return Ok(false);
            };
            let timeout = terms.queue.timeout;
            if state.waiters.is_empty() && state.held < terms.max_connections {
                state.held += 1;
                return Ok(true);
            }
            if !ahead && state.waiters.len() >= terms.queue.size {
                return Err(Refused::Full);
            }
            let id = state.next_id;
            state.next_id += 1;
            let (wake, woken) = oneshot::channel();
            let waiter = Waiter { id, wake };
            if ahead {
                state.waiters.push_front(waiter);
            } else {
                state.waiters.push_back(waiter);
            }
            (
                Queued {
                    limit: self,
                    id,
                    woken,
                    done: false,
                },
                timeout,
            )
        };
        queued.wait(timeout).await
    }

    /// Give back a slot [`Limit::acquire`] handed out.
    pub fn release(&self) {
        self.state().release();
    }
}

/// A request in line, until it has a slot or has given up.
struct Queued<'a> {
    limit: &'a Limit,
    id: u64,
    woken: oneshot::Receiver<()>,
    done: bool,
}

impl Queued<'_> {
    async fn wait(mut self, timeout: Duration) -> Result<bool, Refused> {
        let woken = tokio::time::timeout(timeout, &mut self.woken).await;
        self.done = true;
        if let Ok(Ok(())) = woken {
            return Ok(true);
        }
        // Timed out, but a slot may have been handed over just now: out of
        // the line means admitted.
        if self.limit.state().leave(self.id) {
            Err(Refused::TimedOut)
        } else {
            Ok(true)
        }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The wait was dropped (its client left): out of the line, or give
        // back the slot it was handed and nobody will use.
        let mut state = self.limit.state();
        if !state.leave(self.id) {
            state.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Queue;

    fn limit(max: usize, size: usize, timeout_ms: u64) -> ConnLimit {
        ConnLimit {
            max_connections: max,
            queue: Queue {
                size,
                timeout: Duration::from_millis(timeout_ms),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_limit_requests_wait_in_order_then_are_refused() {
        let l = std::sync::Arc::new(Limit::new(Some(limit(1, 2, 1000))));
        assert_eq!(l.acquire(false).await, Ok(true));
        assert!(!l.has_room());
        let (a, b) = (l.clone(), l.clone());
        let first = tokio::spawn(async move { a.acquire(false).await });
        tokio::task::yield_now().await;
        let second = tokio::spawn(async move { b.acquire(false).await });
        tokio::task::yield_now().await;
        assert_eq!(l.queued(), 2);
        assert_eq!(
            l.acquire(false).await,
            Err(Refused::Full),
            "the line is full"
        );
        l.release();
        assert_eq!(first.await.unwrap(), Ok(true), "first in line first");
        assert_eq!(l.queued(), 1);
        assert_eq!(second.await.unwrap(), Err(Refused::TimedOut));
        assert_eq!((l.queued(), l.held()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ahead_goes_first_even_past_a_full_line() {
        let l = std::sync::Arc::new(Limit::new(Some(limit(1, 1, 1000))));
        assert_eq!(l.acquire(false).await, Ok(true));
        let a = l.clone();
        let request = tokio::spawn(async move { a.acquire(false).await });
        tokio::task::yield_now().await;
        let b = l.clone();
        let check = tokio::spawn(async move { b.acquire(true).await });
        tokio::task::yield_now().await;
        assert_eq!(l.queued(), 2, "the line was full, the check joined it");
        l.release();
        assert_eq!(check.await.unwrap(), Ok(true), "the check first");
        assert_eq!(l.queued(), 1);
        l.release();
        assert_eq!(request.await.unwrap(), Ok(true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_leaves_the_line_and_frees_what_it_was_given() {
        let l = Limit::new(Some(limit(1, 5, 1000)));
        assert_eq!(l.acquire(false).await, Ok(true));
        {
            use futures_util::FutureExt;
            let wait = l.acquire(false);
            tokio::pin!(wait);
            assert!((&mut wait).now_or_never().is_none());
            assert_eq!(l.queued(), 1);
            // Handed the slot, then dropped before it looked.
            l.release();
            assert_eq!(l.held(), 1);
        }
        assert_eq!((l.queued(), l.held()), (0, 0), "the slot came back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_that_lowers_the_limit_applies_to_the_next_acquisition() {
        let l = std::sync::Arc::new(Limit::new(Some(limit(2, 5, 60_000))));
        assert_eq!(l.acquire(false).await, Ok(true));
        assert_eq!(l.acquire(false).await, Ok(true));
        l.set_terms(Some(limit(1, 5, 60_000)));
        assert_eq!(l.held(), 2, "the requests at work keep their slots");
        let a = l.clone();
        let waiting = tokio::spawn(async move { a.acquire(false).await });
        tokio::task::yield_now().await;
        l.release();
        tokio::task::yield_now().await;
        assert_eq!((l.queued(), l.held()), (1, 1), "one at work: the new limit");
        l.release();
        assert_eq!(waiting.await.unwrap(), Ok(true));
        assert_eq!(l.held(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_that_lifts_the_limit_lets_waiters_in() {
        let l = std::sync::Arc::new(Limit::new(Some(limit(1, 5, 60_000))));
        assert_eq!(l.acquire(false).await, Ok(true));
        let a = l.clone();
        let waiting = tokio::spawn(async move { a.acquire(false).await });
        tokio::task::yield_now().await;
        l.set_terms(Some(limit(2, 5, 60_000)));
        assert_eq!(waiting.await.unwrap(), Ok(true));
        assert_eq!(l.held(), 2);
        l.set_terms(None);
        assert_eq!(l.acquire(false).await, Ok(false), "no limit: nothing held");
        l.release();
        l.release();
        assert_eq!(l.held(), 0);
    }
}
