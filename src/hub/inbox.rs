//! A connection's inbox: the bounded queue between fan-out and the transport
//! that writes to the socket.
//!
//! The rule: fan-out never waits and never grows memory. A push takes a short
//! lock and returns; when the queue is full, the channel's slow-client policy
//! decides: `disconnect` evicts the connection (the transport closes it with a
//! resume cursor), `drop_oldest` discards the oldest queued message and records
//! a gap for its channel, `conflate` replaces the queued message of the same
//! channel with the newer one.
//!
//! The wake-up is one readiness flag and one registered waker ([`Ready`]):
//! an inbox has one reader (the connection's task), so a `Notify`'s list of
//! waiters, locked on every registration and every push, bought nothing.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::alarm::Alarm;

use super::message::Message;
use crate::config::SlowClient;

#[derive(Clone)]
pub struct Inbox {
    shared: Arc<InboxState>,
}

struct InboxState {
    queue: Mutex<Queue>,
    ready: Ready,
    /// Rung once, when the connection fell too far behind under `disconnect`
    /// (a alarm, not a token: it is checked on every push, and a token's
    /// check takes a lock). `ready` fires too.
    evicted: Arc<Alarm>,
    /// Also rung on eviction (a transport's connection killer).
    linked: std::sync::OnceLock<Arc<Alarm>>,
    /// Set when an operator disconnects the connection (`POST /disconnect`);
    /// `ready` fires too. Here rather than a alarm of its own: the session
    /// already wakes for its inbox, and a alarm per connection cost ~190
    /// bytes and a poll on every delivery.
    kicked: AtomicBool,
    capacity: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Arc<Message>>,
    /// Channels that lost messages to `drop_oldest` since the last drain (a
    /// conflated channel only ever skips to its newest value: no gap to report).
    gaps: Vec<Arc<str>>,
    /// Channels whose messages the broker could not deliver (history did not
    /// cover a broker outage).
    lost: Vec<Arc<str>>,
}

/// What a drain produced.
#[derive(Default)]
pub struct Drained {
    pub messages: Vec<Arc<Message>>,
    /// Channels that lost messages because this connection was slow.
    pub gaps: Vec<Arc<str>>,
    /// Channels that lost messages upstream of the hub.
    pub lost: Vec<Arc<str>>,
}

impl Inbox {
    pub fn new(capacity: usize) -> Inbox {
        Inbox {
            shared: Arc::new(InboxState {
                queue: Mutex::new(Queue::default()),
                ready: Ready::default(),
                evicted: Alarm::new(),
                linked: std::sync::OnceLock::new(),
                kicked: AtomicBool::new(false),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Queue `msg` for this connection without waiting.
    pub fn push(&self, msg: &Arc<Message>, policy: SlowClient) {
        if self.is_evicted() {
            return;
        }
        {
            let mut q = self.shared.queue.lock();
            if q.items.len() >= self.shared.capacity {
                match policy {
                    SlowClient::Disconnect => {
                        // Under the queue lock, like `link_eviction`: one of
                        // the two always sees the other.
                        self.shared.evicted.ring();
                        let linked = self.shared.linked.get().cloned();
                        drop(q);
                        if let Some(linked) = linked {
                            linked.ring();
                        }
                        self.shared.ready.set();
                        return;
                    }
                    SlowClient::Conflate => {
                        if let Some(slot) =
                            q.items.iter_mut().rev().find(|m| m.channel == msg.channel)
                        {
                            *slot = msg.clone();
                            return;
                        }
                        drop_oldest(&mut q);
                    }
                    SlowClient::DropOldest => drop_oldest(&mut q),
                }
            }
            q.items.push_back(msg.clone());
        }
        self.shared.ready.set();
    }

    /// Wait until something was pushed, or the inbox was kicked or evicted:
    /// every caller checks [`Inbox::is_kicked`] and [`Inbox::is_evicted`]
    /// when it returns (the wake-up is consumed here). One task waits on an
    /// inbox at a time (its connection's); a wake-up that comes while
    /// nobody waits is kept for the next wait, as `Notify`'s permit was.
    pub async fn ready(&self) {
        self.shared.ready.wait().await
    }

    /// Take everything queued.
    pub fn drain(&self, out: &mut Drained) {
        {
            let mut q = self.shared.queue.lock();
            out.messages.extend(q.items.drain(..));
            out.gaps.append(&mut q.gaps);
            out.lost.append(&mut q.lost);
        }
    }

    /// Take everything queued: each message, in order, handed to `each`
    /// (under the inbox's lock: `each` must not touch the inbox), the
    /// channel marks appended to `marks` (whose messages stay untouched).
    /// For a delivery path that has its own list to put messages in: no
    /// list is made per drain (one allocation per delivery, measured).
    pub fn drain_each(&self, marks: &mut Drained, mut each: impl FnMut(Arc<Message>)) {
        let mut q = self.shared.queue.lock();
        for m in q.items.drain(..) {
            each(m);
        }
        marks.gaps.append(&mut q.gaps);
        marks.lost.append(&mut q.lost);
    }

    /// Record that `channel` lost messages before they reached the hub.
    pub fn mark_lost(&self, channel: &Arc<str>) {
        {
            let mut q = self.shared.queue.lock();
            note_gap(&mut q.lost, channel);
        }
        self.shared.ready.set();
    }

    pub fn len(&self) -> usize {
        self.shared.queue.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ring `alarm` too when this inbox is evicted: for transports where
    /// nothing would notice an eviction while the client's socket is full.
    pub fn link_eviction(&self, alarm: Arc<Alarm>) {
        // Linked and checked under the queue lock, where `push` evicts: an
        // eviction is either seen here or rings the linked alarm there.
        let evicted = {
            let _q = self.shared.queue.lock();
            let _ = self.shared.linked.set(alarm.clone());
            self.is_evicted()
        };
        if evicted {
            alarm.ring();
        }
    }

    /// Ask the connection to end: an operator disconnected it.
    pub fn kick(&self) {
        self.shared.kicked.store(true, Ordering::Release);
        self.shared.ready.set();
    }

    /// Wake the next [`Inbox::ready`] (a wake-up taken by a wait that
    /// did not use it, given back).
    pub fn wake(&self) {
        self.shared.ready.set();
    }

    /// Whether an operator disconnected the connection (check when
    /// [`Inbox::ready`] returns).
    pub fn is_kicked(&self) -> bool {
        self.shared.kicked.load(Ordering::Acquire)
    }

    /// Whether the connection fell too far behind under `disconnect`.
    pub fn is_evicted(&self) -> bool {
        self.shared.evicted.has_rung()
    }

    /// Rung on eviction, for transports that must notice it mid-write.
    pub fn eviction(&self) -> &Arc<Alarm> {
        &self.shared.evicted
    }
}

/// A readiness flag and the one waker to call when it is set: what a
/// single reader needs from `Notify`, with no list to lock. `set` after the
/// change it announces (made under the queue's lock); `wait` consumes the
/// flag, so the reader drains after it and sees every change made before.
#[derive(Default)]
struct Ready {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Ready {
    fn set(&self) {
        // Already set: the reader has not consumed the last wake-up yet, and
        // when it does it sees this change too (the swap orders them); its
        // waker was (or is being) called by whoever set the flag first.
        if !self.set.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // Set between the check and the registration: its `wake` may
            // have found no waker, so look again.
            if self.set.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

fn drop_oldest(q: &mut Queue) {
    if let Some(old) = q.items.pop_front() {
        note_gap(&mut q.gaps, &old.channel);
    }
}

fn note_gap(gaps: &mut Vec<Arc<str>>, channel: &Arc<str>) {
    if !gaps.contains(channel) {
        gaps.push(channel.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(channel: &str, seq: u64) -> Arc<Message> {
        let data = serde_json::value::RawValue::from_string(seq.to_string()).unwrap();
        Arc::new(Message::new(
            channel.into(),
            "message".into(),
            &data,
            seq,
            None,
            1,
        ))
    }

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, std::task::Waker) {
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        (count.clone(), std::task::Waker::from(count))
    }

    fn poll_ready(inbox: &Inbox, waker: &std::task::Waker) -> Poll<()> {
        use std::future::Future;
        let fut = std::pin::pin!(inbox.ready());
        fut.poll(&mut std::task::Context::from_waker(waker))
    }

    #[test]
    fn a_push_wakes_the_waiting_reader_once_and_the_wake_up_is_consumed() {
        let inbox = Inbox::new(8);
        let (count, waker) = counting();
        assert!(poll_ready(&inbox, &waker).is_pending());
        inbox.push(&msg("a", 1), SlowClient::Disconnect);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // More pushes before the reader runs: no further wake-up, the one
        // pending covers them.
        inbox.push(&msg("a", 2), SlowClient::Disconnect);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(poll_ready(&inbox, &waker).is_ready());
        // Consumed: the next wait waits, and the next push wakes it again.
        assert!(poll_ready(&inbox, &waker).is_pending());
        inbox.push(&msg("a", 3), SlowClient::Disconnect);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(poll_ready(&inbox, &waker).is_ready());
    }

    #[test]
    fn a_wake_up_with_nobody_waiting_is_kept_for_the_next_wait() {
        let (count, waker) = counting();
        let inbox = Inbox::new(8);
        inbox.push(&msg("a", 1), SlowClient::Disconnect);
        assert!(poll_ready(&inbox, &waker).is_ready());
        let kicked = Inbox::new(8);
        kicked.kick();
        assert!(poll_ready(&kicked, &waker).is_ready() && kicked.is_kicked());
        let lost = Inbox::new(8);
        lost.mark_lost(&Arc::from("a"));
        assert!(poll_ready(&lost, &waker).is_ready());
        let evicted = Inbox::new(1);
        assert!(poll_ready(&evicted, &waker).is_pending());
        evicted.push(&msg("a", 1), SlowClient::Disconnect);
        assert!(poll_ready(&evicted, &waker).is_ready());
        assert!(poll_ready(&evicted, &waker).is_pending());
        evicted.push(&msg("a", 2), SlowClient::Disconnect);
        assert!(evicted.is_evicted());
        assert!(poll_ready(&evicted, &waker).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn disconnect_policy_evicts_and_stays_bounded() {
        let inbox = Inbox::new(2);
        for i in 0..10 {
            inbox.push(&msg("a", i), SlowClient::Disconnect);
        }
        assert_eq!(inbox.len(), 2);
        assert!(inbox.is_evicted());
    }

    #[test]
    fn drop_oldest_keeps_newest_and_records_gap() {
        let inbox = Inbox::new(2);
        for i in 1..=5 {
            inbox.push(&msg("a", i), SlowClient::DropOldest);
        }
        let mut d = Drained::default();
        inbox.drain(&mut d);
        let seqs: Vec<u64> = d.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert_eq!(d.gaps, vec![Arc::<str>::from("a")]);
        assert!(!inbox.is_evicted());
    }

    #[test]
    fn drain_each_hands_over_messages_in_order_and_the_marks_apart() {
        let inbox = Inbox::new(2);
        for i in 1..=3 {
            inbox.push(&msg("a", i), SlowClient::DropOldest);
        }
        inbox.mark_lost(&Arc::from("b"));
        let mut marks = Drained::default();
        let mut seqs = Vec::new();
        inbox.drain_each(&mut marks, |m| seqs.push(m.seq));
        assert_eq!(seqs, vec![2, 3]);
        assert!(marks.messages.is_empty());
        assert_eq!(marks.gaps, vec![Arc::<str>::from("a")]);
        assert_eq!(marks.lost, vec![Arc::<str>::from("b")]);
        assert!(inbox.is_empty());
        // Nothing is handed over twice.
        let mut again = Drained::default();
        inbox.drain_each(&mut again, |_| panic!("drained twice"));
        assert!(again.gaps.is_empty() && again.lost.is_empty());
    }

    #[test]
    fn conflate_replaces_same_channel() {
        let inbox = Inbox::new(2);
        inbox.push(&msg("a", 1), SlowClient::Conflate);
        inbox.push(&msg("b", 2), SlowClient::Conflate);
        inbox.push(&msg("a", 3), SlowClient::Conflate);
        inbox.push(&msg("a", 4), SlowClient::Conflate);
        let mut d = Drained::default();
        inbox.drain(&mut d);
        let seqs: Vec<u64> = d.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![4, 2]);
    }
}
