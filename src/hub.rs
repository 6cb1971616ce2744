//! The hub: which connection follows which channel, and fan-out.
//!
//! Channels appear on first subscribe and vanish with their last subscriber.
//! The hub knows nothing about transports or history: the broker hands it each
//! message once, in channel order, and it pushes an `Arc` of that message into
//! every subscriber's [`Inbox`] without waiting on any of them.
//!
//! A subscription is a [`Subscription`] guard: dropping it takes the inbox
//! off its channel, so a session cannot forget to. The locks are
//! `parking_lot`'s, which do not poison: a panic elsewhere never leaves a
//! subscription half made or a channel that cannot be left.

pub mod inbox;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

pub use crate::model::{Cursor, Message, cursor, message};
pub use inbox::{Drained, Inbox};

use crate::model::SlowClient;

const SHARDS: usize = 32;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    shards: Vec<Mutex<HashMap<Arc<str>, Arc<Subscribers>>>>,
    hasher: RandomState,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Subscribers {
    list: RwLock<Vec<Subscriber>>,
}

struct Subscriber {
    id: u64,
    inbox: Inbox,
    policy: SlowClient,
}

/// One inbox on one channel: while it lives the channel's messages reach
/// the inbox, and dropping it takes the inbox off the channel.
#[must_use = "dropping a subscription ends it at once"]
pub struct Subscription {
    hub: Hub,
    pub channel: Arc<str>,
    id: u64,
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
        self.hub.unsubscribe(&self.channel, self.id);
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
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.shard(channel)
            .lock()
            .entry(channel.clone())
            .or_default()
            .list
            .write()
            .push(Subscriber {
                id,
                inbox: inbox.clone(),
                policy,
            });
        Subscription {
            hub: self.clone(),
            channel: channel.clone(),
            id,
        }
    }

    /// What dropping a [`Subscription`] does.
    fn unsubscribe(&self, channel: &Arc<str>, id: u64) {
        let mut map = self.shard(channel).lock();
        let empty = map.get(channel).is_some_and(|subs| {
            let mut list = subs.list.write();
            list.retain(|s| s.id != id);
            list.is_empty()
        });
        if empty {
            map.remove(channel);
        }
    }

    /// Run `f` over `channel`'s local subscribers (none: `f` is not called);
    /// the shard lock is released first, only the channel's list is held.
    fn with_subscribers<R>(&self, channel: &str, f: impl FnOnce(&[Subscriber]) -> R) -> Option<R> {
        let subs = self.shard(channel).lock().get(channel).cloned()?;
        let list = subs.list.read();
        Some(f(&list))
    }

    /// Deliver `msg` to every local subscriber of its channel; returns how many.
    pub fn fanout(&self, msg: &Arc<Message>) -> usize {
        self.with_subscribers(&msg.channel, |list| {
            for s in list {
                s.inbox.push(msg, s.policy);
            }
            list.len()
        })
        .unwrap_or(0)
    }

    /// Tell every local subscriber of `channel` that messages were lost
    /// before reaching the hub, so each client gets an explicit reset.
    pub fn lost(&self, channel: &Arc<str>) {
        self.with_subscribers(channel, |list| {
            for s in list {
                s.inbox.mark_lost(channel);
            }
        });
    }

    /// Messages waiting in the inboxes of `channel`'s subscribers (all of
    /// their channels): what slow clients are holding in memory right now.
    pub fn queued(&self, channel: &str) -> usize {
        self.with_subscribers(channel, |list| list.iter().map(|s| s.inbox.len()).sum())
            .unwrap_or(0)
    }

    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.with_subscribers(channel, <[Subscriber]>::len)
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
                    .map(|(name, subs)| (name.clone(), subs.list.read().len()))
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
                    .map(|(name, subs)| (name.clone(), subs.list.read().len())),
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
