//! The hub: which connection follows which channel, and fan-out.
//!
//! Channels appear on first subscribe and vanish with their last subscriber.
//! The hub knows nothing about transports or history: the broker hands it each
//! message once, in channel order, and it pushes an `Arc` of that message into
//! every subscriber's [`Inbox`] without waiting on any of them.
//!
//! A connection subscribes from the serving loop it lives on, and the hub
//! keeps that loop beside it: fan-out sends each loop with subscribers on
//! the channel one job, and the loop pushes into its own connections'
//! inboxes (`relay.rs`), so one message reaches the loops side by side and
//! no subscriber costs the broker's thread a cross-thread wake-up. Each
//! message starts its pushes one place further along each loop's list
//! (a channel's subscribers are listed per loop), so no subscriber is
//! always woken last and a loop walks only its own.
//!
//! A subscription is a [`Subscription`] guard: dropping it takes the inbox
//! off its channel, so a session cannot forget to. The locks are
//! `parking_lot`'s, which do not poison: a panic elsewhere never leaves a
//! subscription half made or a channel that cannot be left.

pub mod inbox;
mod relay;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

pub use crate::model::{Cursor, Message, cursor, message};
pub use inbox::{Drained, Inbox};

use crate::model::SlowClient;
use relay::{Delivery, Relay};

const SHARDS: usize = 32;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    shards: Vec<Mutex<HashMap<Arc<str>, Arc<Subscribers>>>>,
    hasher: RandomState,
    next_id: AtomicU64,
    /// Each serving loop's relay, by loop number (`loops::current`); made
    /// when the loop's first connection subscribes. Slot 0 stays empty: a
    /// subscriber on no loop is pushed to by fan-out itself.
    relays: Vec<OnceLock<Arc<Relay>>>,
}

#[derive(Default)]
struct Subscribers {
    list: RwLock<Members>,
}

/// A channel's subscribers, kept apart by the loop they live on: a loop's
/// job touches only its own connections, so one message costs each loop
/// its own subscribers, not a walk of the whole channel (with one list,
/// every loop read every subscriber to find its own).
#[derive(Default)]
struct Members {
    /// One list per loop with subscribers on the channel, by loop number
    /// (0: on no loop) ascending; a list that empties is taken away.
    places: Vec<Place>,
    /// Subscribers over every list.
    count: usize,
    /// Bit `place % 64` is set when some list is loop `place`'s: fan-out
    /// sends no job to a loop with no subscriber on the channel (two loops
    /// sharing a bit at worst get a job that finds no list).
    bits: u64,
}

/// The subscribers of one channel on one loop.
struct Place {
    place: usize,
    all: Vec<Subscriber>,
    /// Where the next message's pushes start (see [`rotated`]).
    turn: AtomicUsize,
}

struct Subscriber {
    id: u64,
    inbox: Inbox,
    policy: SlowClient,
}

impl Subscribers {
    /// Push `msg` into the inboxes of the subscribers on loop `place`.
    fn push(&self, place: usize, msg: &Arc<Message>) {
        let list = self.list.read();
        let Some(own) = list.of(place) else { return };
        let start = own.turn.fetch_add(1, Ordering::Relaxed);
        for s in rotated(&own.all, start) {
            s.inbox.push(msg, s.policy);
        }
    }

    /// Tell the subscribers on loop `place` that `channel` lost messages.
    fn mark_lost(&self, place: usize, channel: &Arc<str>) {
        let list = self.list.read();
        for s in list.of(place).map_or(&[][..], |own| &own.all) {
            s.inbox.mark_lost(channel);
        }
    }
}

impl Members {
    fn place_bit(place: usize) -> u64 {
        1 << (place % 64)
    }

    /// Loop `place`'s list, if it has subscribers.
    fn of(&self, place: usize) -> Option<&Place> {
        self.places.iter().find(|p| p.place == place)
    }

    fn add(&mut self, place: usize, subscriber: Subscriber) {
        let at = self.places.partition_point(|p| p.place < place);
        if self.places.get(at).is_none_or(|p| p.place != place) {
            // Most channels (a user's private one) have one subscriber, on
            // one loop: sized for exactly that, not the 4 a first push
            // would reserve. A list that grows past it grows as usual.
            if self.places.is_empty() {
                self.places.reserve_exact(1);
            }
            self.places.insert(
                at,
                Place {
                    place,
                    all: Vec::with_capacity(1),
                    turn: AtomicUsize::new(0),
                },
            );
            self.bits |= Members::place_bit(place);
        }
        if let Some(own) = self.places.get_mut(at) {
            own.all.push(subscriber);
            self.count += 1;
        }
    }

    /// Take subscriber `id` off loop `place`'s list; whether it was there.
    /// The order of a list is not kept: each message starts elsewhere in
    /// it anyway.
    fn remove(&mut self, place: usize, id: u64) -> bool {
        let Some(at) = self.places.iter().position(|p| p.place == place) else {
            return false;
        };
        let own = &mut self.places[at];
        let Some(i) = own.all.iter().position(|s| s.id == id) else {
            return false;
        };
        own.all.swap_remove(i);
        self.count -= 1;
        if own.all.is_empty() {
            self.places.remove(at);
            self.bits = self
                .places
                .iter()
                .fold(0, |bits, p| bits | Members::place_bit(p.place));
        }
        true
    }

    /// Every subscriber, loop by loop.
    fn iter(&self) -> impl Iterator<Item = &Subscriber> {
        self.places.iter().flat_map(|p| &p.all)
    }
}

/// `list` from index `start % len` to its end, then from its beginning: the
/// order one message's pushes (hence wake-ups, hence writes) go in. A
/// different start for each message keeps any one subscriber from always
/// being served last.
fn rotated<T>(list: &[T], start: usize) -> impl Iterator<Item = &T> {
    let split = start.checked_rem(list.len()).unwrap_or(0);
    let (head, tail) = list.split_at(split);
    tail.iter().chain(head)
}

/// One inbox on one channel: while it lives the channel's messages reach
/// the inbox, and dropping it takes the inbox off the channel.
#[must_use = "dropping a subscription ends it at once"]
pub struct Subscription {
    hub: Hub,
    pub channel: Arc<str>,
    id: u64,
    /// The loop the subscriber was listed under.
    place: usize,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.channel, self.place, self.id);
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                next_id: AtomicU64::new(1),
                relays: (0..=crate::loops::count())
                    .map(|_| OnceLock::new())
                    .collect(),
            }),
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<HashMap<Arc<str>, Arc<Subscribers>>> {
        let i = self.inner.hasher.hash_one(channel) as usize % SHARDS;
        &self.inner.shards[i]
    }

    /// Add `inbox` to `channel`'s subscribers until the returned guard is
    /// dropped. The inbox is registered when this returns.
    pub fn subscribe(&self, channel: &Arc<str>, inbox: &Inbox, policy: SlowClient) -> Subscription {
        self.subscribe_at(channel, inbox, policy, self.place(crate::loops::current()))
    }

    /// [`Hub::subscribe`] for a subscriber on loop `place` (see [`Hub::place`]).
    fn subscribe_at(
        &self,
        channel: &Arc<str>,
        inbox: &Inbox,
        policy: SlowClient,
        place: usize,
    ) -> Subscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Under the shard's lock, as `unsubscribe` takes a list away: never
        // into a list already gone from the map.
        let mut map = self.shard(channel).lock();
        let mut list = map.entry(channel.clone()).or_default().list.write();
        list.add(
            place,
            Subscriber {
                id,
                inbox: inbox.clone(),
                policy,
            },
        );
        drop(list);
        drop(map);
        Subscription {
            hub: self.clone(),
            channel: channel.clone(),
            id,
            place,
        }
    }

    /// Where a subscriber on loop `place`, on this thread, is delivered
    /// to: that loop, with its relay made if this is its first subscriber
    /// (the runtime this thread is in is the loop's); 0, by fan-out itself,
    /// when on no loop.
    fn place(&self, place: usize) -> usize {
        let Some(slot) = self.inner.relays.get(place).filter(|_| place > 0) else {
            return 0;
        };
        if slot.get().is_none() {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return 0;
            };
            let _ = slot.set(Relay::new(place, handle));
        }
        place
    }

    /// What dropping a [`Subscription`] does.
    fn unsubscribe(&self, channel: &Arc<str>, place: usize, id: u64) {
        let mut map = self.shard(channel).lock();
        let empty = map.get(channel).is_some_and(|subs| {
            let mut list = subs.list.write();
            list.remove(place, id);
            list.count == 0
        });
        if empty {
            map.remove(channel);
        }
    }

    /// Run `f` over `channel`'s local subscribers (none: `f` is not called);
    /// the shard lock is released first, only the channel's list is held.
    fn with_subscribers<R>(&self, channel: &str, f: impl FnOnce(&Members) -> R) -> Option<R> {
        let subs = self.shard(channel).lock().get(channel).cloned()?;
        let list = subs.list.read();
        Some(f(&list))
    }

    /// Deliver `msg` to every local subscriber of its channel; returns how
    /// many. Subscribers on no loop have it when this returns; each loop's
    /// have it once the loop has run its relay, in the order sent.
    pub fn fanout(&self, msg: &Arc<Message>) -> usize {
        self.deliver(&msg.channel, || Delivery::Message(msg.clone()))
    }

    /// Tell every local subscriber of `channel` that messages were lost
    /// before reaching the hub, so each client gets an explicit reset (after
    /// the messages fanned out before, by the same road).
    pub fn lost(&self, channel: &Arc<str>) {
        self.deliver(channel, || Delivery::Lost(channel.clone()));
    }

    /// Hand `delivery` to each loop with subscribers on `channel`, and do it
    /// here for those on none; returns how many subscribers there are.
    fn deliver(&self, channel: &str, delivery: impl Fn() -> Delivery) -> usize {
        let Some(subs) = self.shard(channel).lock().get(channel).cloned() else {
            return 0;
        };
        let (count, places) = {
            let list = subs.list.read();
            (list.count, list.bits)
        };
        for (place, slot) in self.inner.relays.iter().enumerate() {
            if places & Members::place_bit(place) == 0 {
                continue;
            }
            match (slot.get(), delivery()) {
                (Some(relay), delivery) => relay.send(&subs, delivery),
                (None, Delivery::Message(msg)) => subs.push(place, &msg),
                (None, Delivery::Lost(channel)) => subs.mark_lost(place, &channel),
            }
        }
        count
    }

    /// Messages waiting in the inboxes of `channel`'s subscribers (all of
    /// their channels): what slow clients are holding in memory right now.
    pub fn queued(&self, channel: &str) -> usize {
        self.with_subscribers(channel, |list| list.iter().map(|s| s.inbox.len()).sum())
            .unwrap_or(0)
    }

    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.with_subscribers(channel, |list| list.count)
            .unwrap_or(0)
    }

    /// Number of channels with at least one local subscriber.
    pub fn channel_count(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// The channels whose names start with `prefix` and that have local
    /// subscribers, with how many, sorted by name (the Pusher API's channel
    /// list). Walks every shard, as [`Hub::busiest`] does.
    pub fn occupied(&self, prefix: &str) -> Vec<(Arc<str>, usize)> {
        let mut all: Vec<(Arc<str>, usize)> = Vec::new();
        for shard in &self.inner.shards {
            let map = shard.lock();
            all.extend(
                map.iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(name, subs)| (name.clone(), subs.list.read().count))
                    .filter(|(_, n)| *n > 0),
            );
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The `n` channels with the most local subscribers, most first (for the
    /// dashboard). Walks every shard, so call it about once a second, not per message.
    pub fn busiest(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        let mut all: Vec<(Arc<str>, usize)> = Vec::new();
        for shard in &self.inner.shards {
            let map = shard.lock();
            all.extend(
                map.iter()
                    .map(|(name, subs)| (name.clone(), subs.list.read().count)),
            );
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_come_and_go_with_subscribers() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let i1 = Inbox::new(8);
        let i2 = Inbox::new(8);
        let s1 = hub.subscribe(&a, &i1, SlowClient::Disconnect);
        let s2 = hub.subscribe(&a, &i2, SlowClient::Disconnect);
        assert_eq!(hub.channel_count(), 1);
        let data = serde_json::value::RawValue::from_string("1".into()).unwrap();
        let m = Arc::new(Message::new(a.clone(), "message".into(), &data, 1, None, 1));
        assert_eq!(hub.fanout(&m), 2);
        assert_eq!(i1.len(), 1);
        drop(s1);
        assert_eq!(hub.subscriber_count("a"), 1);
        drop(s2);
        assert_eq!(hub.channel_count(), 0);
        assert_eq!(hub.fanout(&m), 0);
    }

    #[test]
    fn each_message_starts_its_pushes_one_place_further() {
        let list = [0, 1, 2, 3];
        let order = |start| rotated(&list, start).copied().collect::<Vec<_>>();
        assert_eq!(order(0), vec![0, 1, 2, 3]);
        assert_eq!(order(1), vec![1, 2, 3, 0]);
        assert_eq!(order(3), vec![3, 0, 1, 2]);
        assert_eq!(order(6), vec![2, 3, 0, 1]);
        assert_eq!(rotated(&[] as &[u8], 5).count(), 0);
        // Through the hub: the subscriber pushed to last changes each message.
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let inboxes: Vec<Inbox> = (0..3).map(|_| Inbox::new(8)).collect();
        let _subs: Vec<Subscription> = inboxes
            .iter()
            .map(|i| hub.subscribe(&a, i, SlowClient::Disconnect))
            .collect();
        let data = serde_json::value::RawValue::from_string("1".into()).unwrap();
        let m = Arc::new(Message::new(a.clone(), "message".into(), &data, 1, None, 1));
        let subs = hub.shard(&a).lock().get(&a).cloned().unwrap();
        let mut firsts = Vec::new();
        for _ in 0..3 {
            let list = subs.list.read();
            let own = list.of(0).unwrap();
            let start = own.turn.load(Ordering::Relaxed);
            let first = rotated(&own.all, start).next().unwrap().id;
            drop(list);
            hub.fanout(&m);
            firsts.push(first);
        }
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts.len(), 3, "every subscriber had a turn first");
    }

    #[test]
    fn occupied_lists_channels_by_prefix_and_name() {
        let hub = Hub::new();
        let inbox = Inbox::new(8);
        let names: Vec<Arc<str>> = ["p:b", "p:a", "q:a"].map(Arc::from).to_vec();
        let subs: Vec<Subscription> = names
            .iter()
            .map(|n| hub.subscribe(n, &inbox, SlowClient::Disconnect))
            .collect();
        let twice = hub.subscribe(&names[0], &Inbox::new(8), SlowClient::Disconnect);
        assert_eq!(
            hub.occupied("p:"),
            vec![(names[1].clone(), 1), (names[0].clone(), 2)]
        );
        assert_eq!(hub.occupied("").len(), 3);
        drop(subs);
        drop(twice);
        assert!(hub.occupied("").is_empty());
    }

    /// A message numbered `seq` on `channel` (the relay's tests use it too).
    pub(super) fn message(channel: &Arc<str>, seq: u64) -> Arc<Message> {
        let data = serde_json::value::RawValue::from_string(seq.to_string()).unwrap();
        Arc::new(Message::new(
            channel.clone(),
            "message".into(),
            &data,
            seq,
            None,
            1,
        ))
    }

    #[test]
    fn a_loops_job_touches_only_its_own_subscribers() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        // Three subscribers on loop 1, two on loop 2, one on none; the
        // lists are the hub's own (no relay: the pushes are made here).
        let on = |place: usize, n: usize| -> Vec<(Inbox, Subscription)> {
            (0..n)
                .map(|_| {
                    let inbox = Inbox::new(8);
                    let sub = hub.subscribe_at(&a, &inbox, SlowClient::Disconnect, place);
                    (inbox, sub)
                })
                .collect()
        };
        let (one, two, none) = (on(1, 3), on(2, 2), on(0, 1));
        let subs = hub.shard(&a).lock().get(&a).cloned().unwrap();
        {
            let list = subs.list.read();
            let sizes: Vec<(usize, usize)> =
                list.places.iter().map(|p| (p.place, p.all.len())).collect();
            assert_eq!(sizes, vec![(0, 1), (1, 3), (2, 2)]);
            assert_eq!(list.count, 6);
            assert_eq!(list.bits, 0b111);
        }
        assert_eq!(hub.subscriber_count("a"), 6);
        subs.push(1, &message(&a, 1));
        subs.mark_lost(2, &a);
        let lens = |list: &[(Inbox, Subscription)]| -> Vec<usize> {
            list.iter().map(|(i, _)| i.len()).collect()
        };
        assert_eq!(lens(&one), vec![1, 1, 1]);
        assert_eq!(lens(&two), vec![0, 0], "loop 1's job reached loop 2");
        assert_eq!(lens(&none), vec![0]);
        assert_eq!(hub.queued("a"), 3);
        for (inbox, _) in &two {
            let mut d = Drained::default();
            inbox.drain(&mut d);
            assert_eq!(d.lost, vec![a.clone()]);
        }
        for (inbox, _) in &one {
            let mut d = Drained::default();
            inbox.drain(&mut d);
            assert!(d.lost.is_empty(), "loop 2's lost mark reached loop 1");
        }
        // A job for a loop with no list here is no work and no panic.
        subs.push(7, &message(&a, 2));
        subs.mark_lost(7, &a);
        assert_eq!(hub.queued("a"), 0);
    }

    #[test]
    fn leaving_takes_the_subscriber_off_its_own_loops_list_only() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let i1 = Inbox::new(8);
        let i2 = Inbox::new(8);
        let i3 = Inbox::new(8);
        let s1 = hub.subscribe_at(&a, &i1, SlowClient::Disconnect, 1);
        let s2 = hub.subscribe_at(&a, &i2, SlowClient::DropOldest, 1);
        let s3 = hub.subscribe_at(&a, &i3, SlowClient::Disconnect, 2);
        let subs = hub.shard(&a).lock().get(&a).cloned().unwrap();
        // An id listed under another loop is not taken from this one.
        assert!(!subs.list.write().remove(2, s1.id));
        assert_eq!(subs.list.read().count, 3);
        drop(s1);
        {
            let list = subs.list.read();
            let ids: Vec<u64> = list.iter().map(|s| s.id).collect();
            assert_eq!(ids, vec![s2.id, s3.id]);
            assert_eq!(list.bits, 0b110);
        }
        // Loop 2's list empties and goes: its bit with it.
        drop(s3);
        {
            let list = subs.list.read();
            assert_eq!(list.places.len(), 1);
            assert_eq!(list.bits, 0b010);
            assert_eq!(list.count, 1);
        }
        // The remaining subscriber keeps its policy: drop_oldest, not eviction.
        for seq in 1..=10 {
            subs.push(1, &message(&a, seq));
        }
        assert!(!i2.is_evicted());
        assert_eq!(i2.len(), 8);
        drop(s2);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn a_channel_with_one_subscriber_allocates_room_for_one() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let inboxes: Vec<Inbox> = (0..3).map(|_| Inbox::new(8)).collect();
        let first = hub.subscribe_at(&a, &inboxes[0], SlowClient::Disconnect, 1);
        let subs = hub.shard(&a).lock().get(&a).cloned().unwrap();
        {
            let list = subs.list.read();
            assert_eq!(list.places.capacity(), 1);
            assert_eq!(list.places[0].all.capacity(), 1);
        }
        // More subscribers and loops still fit, growing as any list does.
        let second = hub.subscribe_at(&a, &inboxes[1], SlowClient::Disconnect, 1);
        let third = hub.subscribe_at(&a, &inboxes[2], SlowClient::Disconnect, 2);
        {
            let list = subs.list.read();
            assert_eq!(list.places.len(), 2);
            assert_eq!(list.places[0].all.len(), 2);
            assert_eq!(list.count, 3);
        }
        drop((first, second, third));
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn each_loops_list_starts_each_message_one_place_further() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        let inboxes: Vec<Inbox> = (0..5).map(|_| Inbox::new(8)).collect();
        // Two on loop 1, three on loop 2.
        let _subs: Vec<Subscription> = inboxes
            .iter()
            .enumerate()
            .map(|(n, i)| hub.subscribe_at(&a, i, SlowClient::Disconnect, 1 + usize::from(n >= 2)))
            .collect();
        let subs = hub.shard(&a).lock().get(&a).cloned().unwrap();
        for (place, size) in [(1, 2), (2, 3)] {
            let mut firsts = Vec::new();
            for seq in 0..size as u64 {
                let list = subs.list.read();
                let own = list.of(place).unwrap();
                let start = own.turn.load(Ordering::Relaxed);
                firsts.push(rotated(&own.all, start).next().unwrap().id);
                drop(list);
                subs.push(place, &message(&a, seq));
            }
            firsts.sort_unstable();
            firsts.dedup();
            assert_eq!(
                firsts.len(),
                size,
                "loop {place}: every subscriber had a turn first"
            );
        }
    }

    #[test]
    fn a_subscription_is_registered_even_after_a_panic_under_the_lock() {
        let hub = Hub::new();
        let a: Arc<str> = "a".into();
        // A panic while a shard's lock is held (a std lock would be
        // poisoned and the subscription skipped).
        let h = hub.clone();
        let ch = a.clone();
        let panicked = std::thread::spawn(move || {
            let _held = h.shard(&ch).lock();
            panic!("while holding the shard");
        })
        .join();
        assert!(panicked.is_err());
        let inbox = Inbox::new(8);
        let sub = hub.subscribe(&a, &inbox, SlowClient::Disconnect);
        assert_eq!(
            hub.subscriber_count("a"),
            1,
            "the id returned is registered"
        );
        drop(sub);
        assert_eq!(hub.channel_count(), 0, "and taken back");
    }
}
