//! A connection's inbox: the bounded queue between fan-out and the transport
//! that writes to the socket.
//!
//! The rule: fan-out never waits and never grows memory. A push takes a short
//! lock and returns; when the queue is full, the channel's slow-client policy
//! decides: `disconnect` evicts the connection (the transport closes it with a
//! resume cursor), `drop_oldest` discards the oldest queued message and records
//! a gap for its channel, `conflate` replaces the queued message of the same
//! channel with the newer one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use tokio::sync::Notify;

use crate::alarm::Alarm;

use super::message::Message;
use crate::config::SlowClient;

#[derive(Clone)]
pub struct Inbox {
    shared: Arc<InboxState>,
}

struct InboxState {
    queue: Mutex<Queue>,
    ready: Notify,
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
                ready: Notify::new(),
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
                        self.shared.ready.notify_one();
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
        self.shared.ready.notify_one();
    }

    /// Wait until something was pushed, or the inbox was kicked or evicted:
    /// every caller checks [`Inbox::is_kicked`] and [`Inbox::is_evicted`]
    /// when it returns (the wake-up is consumed here).
    pub async fn ready(&self) {
        self.shared.ready.notified().await
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
        self.shared.ready.notify_one();
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
        self.shared.ready.notify_one();
    }

    /// Wake the next [`Inbox::ready`] (a wake-up taken by a wait that
    /// did not use it, given back).
    pub fn wake(&self) {
        self.shared.ready.notify_one();
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
