//! The embedded broker: ids from one atomic counter, history in a per-channel
//! ring bounded by size and TTL, fan-out through the local hub.
//!
//! Ordering: a channel's log is locked while its message gets an id, enters
//! history and is fanned out, so subscribers see each channel in id order.
//! Gaps: each log keeps a `floor`, the newest id it can no longer replay
//! (evicted by size or TTL, or lost when an idle log was dropped). A resume
//! from below the floor is a [`Replay::Gap`], never a silent hole. The epoch
//! is random per process, so every cursor from before a restart resets.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use futures_util::future::{self, BoxFuture};

use super::{Broker, BrokerError, HistoryPolicy, Publish, Replay};
use crate::hub::{Hub, Message};

const SHARDS: usize = 32;

type Shard = Mutex<HashMap<Arc<str>, Arc<Mutex<ChannelLog>>>>;

pub struct MemoryBroker {
    hub: Hub,
    epoch: u64,
    seq: AtomicU64,
    shards: Vec<Shard>,
    hasher: RandomState,
    /// Highest floor of any log dropped while idle: a recreated log starts there.
    dropped_floor: AtomicU64,
}

struct ChannelLog {
    ring: VecDeque<Arc<Message>>,
    floor: u64,
    policy: HistoryPolicy,
    /// Set when the sweeper removed this log; a publisher holding it must look again.
    dead: bool,
}

impl ChannelLog {
    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.ring.front() {
            let too_many = self.ring.len() > self.policy.size;
            let too_old = now.saturating_duration_since(front.published_at) > self.policy.ttl;
            if !(too_many || too_old) {
                break;
            }
            self.floor = front.seq;
            self.ring.pop_front();
        }
    }
}

impl MemoryBroker {
    pub fn new(hub: Hub) -> Arc<MemoryBroker> {
        // Non-zero, random: distinguishes this process's ids from a previous one's.
        let epoch = rand::random::<u64>() >> 12 | 1;
        Arc::new(MemoryBroker {
            hub,
            epoch,
            seq: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            dropped_floor: AtomicU64::new(0),
        })
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(channel) as usize % SHARDS]
    }

    fn log(&self, channel: &Arc<str>, policy: HistoryPolicy) -> Arc<Mutex<ChannelLog>> {
        let mut map = self.shard(channel).lock();
        let log = map.entry(channel.clone()).or_insert_with(|| {
            Arc::new(Mutex::new(ChannelLog {
                ring: VecDeque::new(),
                floor: self.dropped_floor.load(Ordering::Acquire),
                policy,
                dead: false,
            }))
        });
        log.clone()
    }

    fn publish_now(&self, p: Publish) -> Result<Arc<Message>, BrokerError> {
        loop {
            let log = self.log(&p.channel, p.history);
            let mut log = log.lock();
            if log.dead {
                continue;
            }
            log.policy = p.history;
            if let Some(key) = &p.key {
                if let Some(prev) = log.ring.iter().rev().find(|m| m.key.as_ref() == Some(key)) {
                    return Ok(prev.clone());
                }
            }
            let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
            let mut msg = Message::encoded(
                p.channel, p.event, &p.data, seq, p.key, self.epoch, p.binary,
            );
            msg.origin = p.origin.map(Box::new);
            let msg = Arc::new(msg);
            log.ring.push_back(msg.clone());
            log.expire(msg.published_at);
            self.hub.fanout(&msg);
            return Ok(msg);
        }
    }

    fn replay_now(&self, channel: &str, after: u64, limit: usize) -> Replay {
        if after > self.seq.load(Ordering::Acquire) {
            return Replay::Gap;
        }
        let log = self.shard(channel).lock().get(channel).cloned();
        let Some(log) = log else {
            return if after >= self.dropped_floor.load(Ordering::Acquire) {
                Replay::Messages(Vec::new())
            } else {
                Replay::Gap
            };
        };
        let mut log = log.lock();
        log.expire(Instant::now());
        if after < log.floor {
            return Replay::Gap;
        }
        let start = log.ring.partition_point(|m| m.seq <= after);
        Replay::Messages(log.ring.range(start..).take(limit).cloned().collect())
    }

    /// Drop expired messages everywhere and forget logs left empty.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            let mut map = shard.lock();
            map.retain(|_, log| {
                let mut log = log.lock();
                log.expire(now);
                if log.ring.is_empty() {
                    log.dead = true;
                    self.dropped_floor.fetch_max(log.floor, Ordering::AcqRel);
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Sweep periodically until the gateway drains.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration, lifecycle: &Lifecycle) {
        let weak = Arc::downgrade(self);
        lifecycle.spawn_until_drain(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(b) => b.sweep(),
                    None => return,
                }
            }
        });
    }
}

impl Broker for MemoryBroker {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn follow<'a>(&'a self, _channel: &'a Arc<str>) -> BoxFuture<'a, Result<u64, BrokerError>> {
        // The hub registration already routes every later publish here.
        Box::pin(future::ready(Ok(self.seq.load(Ordering::Acquire))))
    }

    fn unfollow(&self, _channel: &str) {}

    fn publish(&self, msg: Publish) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>> {
        Box::pin(future::ready(self.publish_now(msg)))
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        after: u64,
        _ttl: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, BrokerError>> {
        // Each log carries its own policy, updated on every publish.
        Box::pin(future::ready(Ok(self.replay_now(channel, after, limit))))
    }

    fn history_info<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, (usize, Option<u64>)> {
        Box::pin(future::ready(self.history_now(channel)))
    }

    fn is_ready(&self) -> bool {
        true
    }
}

impl MemoryBroker {
    fn history_now(&self, channel: &str) -> (usize, Option<u64>) {
        let log = self.shard(channel).lock().get(channel).cloned();
        log.and_then(|l| Some(l.lock()).map(|l| (l.ring.len(), l.ring.front().map(|m| m.seq))))
            .unwrap_or((0, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(b: &MemoryBroker, channel: &str, size: usize, ttl: Duration) -> u64 {
        let p = Publish {
            channel: channel.into(),
            event: "message".into(),
            data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            key: None,
            history: HistoryPolicy { size, ttl },
            origin: None,
            binary: false,
        };
        b.publish_now(p).unwrap().seq
    }

    fn seqs(r: Replay) -> Option<Vec<u64>> {
        match r {
            Replay::Messages(m) => Some(m.iter().map(|m| m.seq).collect()),
            Replay::Gap => None,
        }
    }

    #[test]
    fn replay_in_order_and_gap_after_eviction() {
        let b = MemoryBroker::new(Hub::new());
        let ttl = Duration::from_secs(60);
        let ids: Vec<u64> = (0..5).map(|_| publish(&b, "a", 3, ttl)).collect();
        publish(&b, "b", 3, ttl);
        assert_eq!(
            seqs(b.replay_now("a", ids[2], usize::MAX)),
            Some(vec![ids[3], ids[4]])
        );
        assert_eq!(
            seqs(b.replay_now("a", ids[1], usize::MAX)),
            Some(vec![ids[2], ids[3], ids[4]])
        );
        assert_eq!(
            seqs(b.replay_now("a", ids[0], usize::MAX)),
            None,
            "ids[1] was evicted"
        );
        assert_eq!(
            seqs(b.replay_now("a", 10_000, usize::MAX)),
            None,
            "future position"
        );
        assert_eq!(
            seqs(b.replay_now("a", ids[1], 2)),
            Some(vec![ids[2], ids[3]]),
            "a page: the oldest after the position"
        );
        assert_eq!(
            seqs(b.replay_now("never", b.seq.load(Ordering::Acquire), usize::MAX)),
            Some(vec![])
        );
    }

    #[test]
    fn ttl_expiry_is_a_gap_and_swept_logs_are_remembered() {
        let b = MemoryBroker::new(Hub::new());
        let first = publish(&b, "a", 10, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        b.sweep();
        assert_eq!(b.history_now("a"), (0, None));
        assert_eq!(seqs(b.replay_now("a", first - 1, usize::MAX)), None);
        assert_eq!(seqs(b.replay_now("a", first, usize::MAX)), Some(vec![]));
    }

    #[test]
    fn idempotency_key_returns_first_id() {
        let b = MemoryBroker::new(Hub::new());
        let mk = || Publish {
            channel: "a".into(),
            event: "message".into(),
            data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
            key: Some("k1".into()),
            history: HistoryPolicy {
                size: 10,
                ttl: Duration::from_secs(60),
            },
            origin: None,
            binary: false,
        };
        let a = b.publish_now(mk()).unwrap().seq;
        let c = b.publish_now(mk()).unwrap().seq;
        assert_eq!(a, c);
        assert_eq!(b.history_now("a").0, 1);
    }
}
