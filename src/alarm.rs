//! An alarm: rung once in a while, it wakes every listener, for the rare
//! events a connection must notice while it delivers: shutdown, a reload,
//! its own eviction. (An operator's disconnect rides
//! on the connection's inbox, which its session already listens to.)
//!
//! Why not `CancellationToken` or `Notify`: a future waiting on either locks
//! a mutex every time it is polled (and a token's `is_cancelled` locks too),
//! and a connection's task is polled on every delivery. With thousands of
//! connections waiting on one shutdown token, that shared lock was the hottest
//! user-space symbol on the SSE delivery path. A [`Listener`] registers its
//! task's waker once; after that a poll is one atomic load and a waker
//! comparison. Ringing takes the lock once and wakes every listener.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Alarm {
    /// How many times it rang.
    rung: AtomicU64,
    waiters: Mutex<Waiters>,
}

/// Registered wakers in reusable slots: most alarms belong to one
/// connection and have a single listener, and a slot vector costs that
/// connection 64 bytes where a hash map cost about 150.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Waiters {
    fn insert(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(waker);
                i
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i)
            && slot.take().is_some()
        {
            self.free.push(i);
        }
    }
}

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarm").field("rung", &self.rung()).finish()
    }
}

impl Alarm {
    pub fn new() -> Arc<Alarm> {
        Arc::new(Alarm::default())
    }

    /// Wake every listener; each hears this ring once.
    pub fn ring(&self) {
        self.rung.fetch_add(1, Ordering::AcqRel);
        // Listeners stay registered: their tasks' wakers remain valid for the
        // next ring, and a listener re-registers only if its task changes.
        // Woken outside the lock: with a listener per connection the list
        // is long, and connections opening or closing meanwhile must not wait.
        let wakers: Vec<Waker> = self.waiters().slots.iter().flatten().cloned().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// The waiter list (parking_lot's lock does not poison: a panic
    /// elsewhere while it was held loses no wake-up).
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock()
    }

    /// Whether it ever rang (for one-shot alarms: shutdown, a kick).
    pub fn has_rung(&self) -> bool {
        self.rung() > 0
    }

    fn rung(&self) -> u64 {
        self.rung.load(Ordering::Acquire)
    }

    /// A listener that hears the rings after this call.
    pub fn listen(self: &Arc<Self>) -> Listener {
        self.listener(self.rung())
    }

    /// A listener that also hears a ring from before this call: for
    /// one-shot alarms, where a late listener must still see the event.
    pub fn listen_from_start(self: &Arc<Self>) -> Listener {
        self.listener(0)
    }

    fn listener(self: &Arc<Self>, seen: u64) -> Listener {
        Listener {
            seen,
            alarm: self.clone(),
            key: None,
            waker: None,
        }
    }
}

/// One connection's ear on a [`Alarm`]; keep it for the connection's life.
pub struct Listener {
    alarm: Arc<Alarm>,
    seen: u64,
    key: Option<usize>,
    /// The waker registered with the alarm, to skip re-registering.
    waker: Option<Waker>,
}

impl Listener {
    /// Ready once per ring heard (several rings since the last poll count once).
    pub fn poll_rung(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.take_ring() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let mut w = self.alarm.waiters();
        match self.key {
            Some(key) => {
                if let Some(slot) = w.slots.get_mut(key) {
                    *slot = Some(cx.waker().clone());
                }
            }
            None => self.key = Some(w.insert(cx.waker().clone())),
        }
        drop(w);
        self.waker = Some(cx.waker().clone());
        // A ring between the first check and the registration would have
        // missed this waker; it did not miss the counter.
        if self.take_ring() {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Hear one ring at once, on top of those to come: for a listener made
    /// after the event it must not miss may already have rung (a reload
    /// between a connection's opening and its first turn).
    pub fn owe_one(&mut self) {
        self.seen = self.seen.wrapping_sub(1);
    }

    /// Wait for the next ring.
    pub async fn rung(&mut self) {
        poll_fn(|cx| self.poll_rung(cx)).await
    }

    fn take_ring(&mut self) -> bool {
        let now = self.alarm.rung();
        if now != self.seen {
            self.seen = now;
            return true;
        }
        false
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.alarm.waiters().remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_listener_hears_each_ring_once() {
        let alarm = Alarm::new();
        let mut a = alarm.listen();
        let mut b = alarm.listen();
        let waiting = tokio::spawn(async move {
            a.rung().await;
            a
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        alarm.ring();
        let mut a = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("the ring wakes a waiting listener")
            .unwrap();
        // b was not waiting but still hears it, once.
        tokio::time::timeout(Duration::from_secs(2), b.rung())
            .await
            .expect("a ring is heard by a listener that polls later");
        let again = tokio::time::timeout(Duration::from_millis(50), b.rung()).await;
        assert!(again.is_err(), "one ring is heard once");
        // The same listener hears the next ring too (registration kept).
        alarm.ring();
        tokio::time::timeout(Duration::from_secs(2), a.rung())
            .await
            .expect("a second ring");
    }

    #[tokio::test]
    async fn late_listeners_and_drop() {
        let alarm = Alarm::new();
        alarm.ring();
        let mut late = alarm.listen();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), late.rung())
                .await
                .is_err(),
            "listen() ignores earlier rings"
        );
        let mut from_start = alarm.listen_from_start();
        tokio::time::timeout(Duration::from_secs(1), from_start.rung())
            .await
            .expect("listen_from_start() hears an earlier ring");
        assert!(alarm.has_rung());
        drop(late);
        drop(from_start);
        let w = alarm.waiters.lock();
        assert!(w.slots.iter().all(Option::is_none));
        assert_eq!(w.free.len(), w.slots.len(), "every slot is reusable");
    }

    #[test]
    fn ring_from_many_threads_wakes_all_waiters() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let alarm = Alarm::new();
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let mut l = alarm.listen_from_start();
                    tokio::spawn(async move { l.rung().await })
                })
                .collect();
            let ringer = {
                let alarm = alarm.clone();
                std::thread::spawn(move || alarm.ring())
            };
            ringer.join().unwrap();
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(5), t)
                    .await
                    .expect("every waiter woken")
                    .unwrap();
            }
        });
    }
}
