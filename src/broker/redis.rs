//! The multi-node broker: Redis holds the ids, the history and the fan-out
//! between instances; each instance's hub still does the local fan-out.
//!
//! - Ids come from one Redis counter under one epoch, so a cursor issued by
//!   any instance resumes on any other. The epoch is a random value stored in
//!   Redis (`SET NX`); if Redis loses its data the epoch changes and every old
//!   cursor gets an honest `reset`, never a silent hole.
//! - A publish is one Lua script (`redis/publish.lua`): next id, append to the
//!   channel's history (a sorted set scored by id), trim by size and age,
//!   remember the newest evicted id (the channel's floor), and `PUBLISH` the
//!   message to the channel's pub/sub topic — atomically, so every instance
//!   sees a channel's messages in id order.
//! - An instance subscribes to a channel's topic only while it has local
//!   subscribers ([`Link`], in `redis/link.rs`): no node receives traffic it
//!   cannot deliver.
//! - While Redis is unreachable, publishes fail with [`BrokerError::Unavailable`]
//!   (answered 503: never acknowledged and dropped), `/readyz` says not ready,
//!   live connections stay open, and after the link returns every followed
//!   channel is caught up from history before live delivery resumes.

mod head;
mod keys;
mod link;
mod presence;
mod queued;
mod scripts;
mod stored;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, oneshot};

use keys::Keys;
use scripts::{Published, ReplayAnswer};
use stored::{decode_member, encode_body};

use super::{Broker, BrokerError, Publish, Replay};
use crate::config::RedisConfig;
use crate::hub::{Hub, Message};

/// How long a subscribe waits for the channel's Redis subscription.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on any single Redis command, so an outage answers instead of hanging.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Sessions' replays (a page of a channel's history each) in progress at
/// once in one process. A reconnect storm brings thousands at once; all of
/// them written to the one command connection queue there, each one's
/// timeout running while it waits behind the others, until they answer 503
/// and delay the link's own commands. Redis answers a page in tens of
/// microseconds, so 256 waiting there cost milliseconds; the bound must not
/// be much lower, for each place is also held while the session's task
/// waits for its turn to run on a busy process. Beyond it a replay waits its
/// turn in arrival order, within one [`COMMAND_TIMEOUT`] for the wait and
/// the command together; a client that leaves while waiting gives its place
/// up. Replays waiting for the same page share one read (`redis/queued.rs`).
const SESSION_READS: usize = 256;

/// One channel this instance follows because local clients subscribe to it.
#[derive(Default)]
struct Follow {
    /// Local subscriptions (sessions) following the channel.
    count: usize,
    /// Whether the Redis subscription is confirmed on the current link.
    subscribed: bool,
    /// Newest id handed to the hub; older or equal ids are duplicates.
    last: u64,
    /// Head when the channel was first followed: catch-up starts here when
    /// nothing was delivered yet.
    base: u64,
    /// Set when the link was lost while following: replay before going live.
    catch_up: bool,
    /// When `count` last dropped to zero: the subscription lingers a moment,
    /// so long-poll clients coming back do not churn SUBSCRIBE/UNSUBSCRIBE.
    idle_since: Option<Instant>,
    waiters: Vec<oneshot::Sender<()>>,
}

pub struct RedisBroker {
    hub: Hub,
    keys: Keys,
    client: redis::Client,
    /// Command connection; reconnects by itself. `None` until first created.
    commands: ArcSwapOption<ConnectionManager>,
    epoch: AtomicU64,
    /// The pub/sub link is up (drives `/readyz`).
    linked: AtomicBool,
    follows: Mutex<HashMap<Arc<str>, Follow>>,
    /// Bound on sessions' reads in progress ([`SESSION_READS`]).
    session_reads: tokio::sync::Semaphore,
    /// Sessions' reads waiting for a place, shared by identical asks.
    queued_replays: queued::QueuedReplays,
    /// This broker, for the queued reads, which outlive no session.
    me: std::sync::Weak<RedisBroker>,
    /// Follows' reads of the id counter, shared while one is queued.
    heads: head::HeadReads,
    /// Wakes the link task to reconcile subscriptions with `follows`.
    wake: Notify,
    publish_script: redis::Script,
    replay_script: redis::Script,
    presence_join_script: redis::Script,
    presence_refresh_script: redis::Script,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("broker.redis.url: {0}")]
    Url(#[from] redis::RedisError),
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("redis: {e}"))
}

impl RedisBroker {
    /// Create the broker; [`RedisBroker::spawn_link`] connects it.
    pub fn new(hub: Hub, config: &RedisConfig) -> Result<Arc<RedisBroker>, RedisSetupError> {
        let client = redis::Client::open(config.url.as_str())?;
        let broker = Arc::new_cyclic(|me| RedisBroker {
            me: me.clone(),
            queued_replays: queued::QueuedReplays::default(),
            hub,
            keys: Keys::new(&config.prefix),
            client,
            commands: ArcSwapOption::empty(),
            epoch: AtomicU64::new(0),
            linked: AtomicBool::new(false),
            follows: Mutex::new(HashMap::new()),
            session_reads: tokio::sync::Semaphore::new(SESSION_READS),
            heads: head::HeadReads::default(),
            wake: Notify::new(),
            publish_script: redis::Script::new(include_str!("redis/publish.lua")),
            replay_script: redis::Script::new(include_str!("redis/replay.lua")),
            presence_join_script: redis::Script::new(include_str!("redis/presence_join.lua")),
            presence_refresh_script: redis::Script::new(include_str!("redis/presence_refresh.lua")),
        });
        Ok(broker)
    }

    /// Start the link to Redis in the background until the gateway has
    /// drained (it carries the draining connections' publishes). Redis need
    /// not be up yet: the link retries with backoff, and until it is up the
    /// broker reports not ready and refuses publishes.
    pub fn spawn_link(self: &Arc<Self>, lifecycle: &Lifecycle) {
        let stopped = lifecycle.stopped().clone();
        lifecycle.spawn_until_stopped(link::run(Arc::downgrade(self), stopped));
    }

    fn connection(&self) -> Result<ConnectionManager, BrokerError> {
        self.commands
            .load_full()
            .map(|c| (*c).clone())
            .ok_or_else(|| unavailable("not connected yet"))
    }

    /// Run a command with the bound every Redis call here has.
    async fn call<T: redis::FromRedisValue>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("command timed out")),
        }
    }

    /// Read the shared epoch, creating it when Redis has none (first start,
    /// or Redis lost its data).
    async fn establish_epoch(&self) -> Result<u64, BrokerError> {
        let mut conn = self.connection()?;
        let fresh = format!("{:x}", rand::random::<u64>() >> 12 | 1);
        let key = self.keys.epoch();
        let (current,): (Option<String>,) = self
            .call(
                redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(&fresh)
                    .arg("NX")
                    .ignore()
                    .cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn),
            )
            .await?;
        let epoch = current
            .and_then(|e| u64::from_str_radix(&e, 16).ok())
            .ok_or_else(|| unavailable("epoch key holds no epoch"))?;
        self.adopt_epoch(epoch);
        Ok(epoch)
    }

    /// Switch to `epoch` (read from Redis, or seen on a message the publish
    /// script stamped after checking it). When it differs from a previous
    /// one, Redis lost its data: ids restart, so per-channel dedupe restarts
    /// too, and every local subscriber is told its history is gone.
    fn adopt_epoch(&self, epoch: u64) {
        let old = self.epoch.swap(epoch, Ordering::AcqRel);
        if old == 0 || old == epoch {
            return;
        }
        tracing::warn!(
            old = format_args!("{old:x}"),
            new = format_args!("{epoch:x}"),
            "redis epoch changed (redis lost its data): clients resume with a reset"
        );
        let channels: Vec<Arc<str>> = self
            .follows
            .lock()
            .iter_mut()
            .map(|(name, f)| {
                f.last = 0;
                f.base = 0;
                f.catch_up = false;
                name.clone()
            })
            .collect();
        for c in &channels {
            self.hub.lost(c);
        }
    }

    async fn head_now(&self) -> Result<u64, BrokerError> {
        let conn = self.connection()?;
        self.heads.read(conn, self.keys.seq()).await
    }

    /// A session's replay, within the bound on reads in progress. One that
    /// gets a place at once runs as if there were no bound: its command's
    /// own timeout, and no look at the pub/sub link (replays use the command
    /// connection, which may well work while the link is away). One that
    /// must wait is refused at once when the link is down, and otherwise
    /// has one deadline, [`COMMAND_TIMEOUT`] from its arrival, for the wait
    /// and the command together: it runs inside the session's own serving
    /// loop, which reads nothing and sends no heartbeat meanwhile, so a
    /// storm delays a session by at most what a slow Redis did before the
    /// bound, and the client hears the usual "unavailable" answer.
    async fn session_replay(
        &self,
        channel: &str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> Result<Replay, BrokerError> {
        if let Ok(_place) = self.session_reads.try_acquire() {
            return self.replay_checked(channel, after, ttl, limit).await;
        }
        if !self.linked.load(Ordering::Acquire) {
            return Err(unavailable("not connected"));
        }
        let read = self
            .queued_replays
            .join_or_queue(self.me.clone(), channel, after, ttl, limit);
        match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
            Ok(answer) => queued::answer(answer),
            Err(_) => Err(unavailable("replay timed out waiting for its turn")),
        }
    }

    fn epoch_hex(&self) -> String {
        format!("{:x}", self.epoch.load(Ordering::Acquire))
    }

    /// Replay for the link's catch-up and for sessions. A position from an
    /// epoch Redis no longer has is a gap (after adopting the new epoch).
    async fn replay_checked(
        &self,
        channel: &str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> Result<Replay, BrokerError> {
        match self.replay_once(channel, after, ttl, limit).await? {
            Some(ReplayAnswer::Messages(m)) => Ok(Replay::Messages(m)),
            Some(ReplayAnswer::Gap) => Ok(Replay::Gap),
            None => {
                self.establish_epoch().await?;
                Ok(Replay::Gap)
            }
        }
    }

    /// Follow `channel`: count this subscription and, when the channel is
    /// not subscribed yet, wait for the link to confirm it. Every failure
    /// leaves `follows` as it found it (no count, no waiter), so channels
    /// tried during an outage are not kept in memory.
    async fn follow_inner(&self, channel: &Arc<str>) -> Result<u64, BrokerError> {
        if !self.linked.load(Ordering::Acquire) {
            // Fail fast: the client retries, rather than hanging on an outage.
            return Err(unavailable("not connected"));
        }
        let wait = {
            let mut follows = self.follows.lock();
            let f = follows.entry(channel.clone()).or_default();
            f.count += 1;
            f.idle_since = None;
            if f.subscribed && f.base > 0 {
                // Already subscribed, and a head was read since: every
                // message after the newest one handed to the hub (or after
                // that head) reaches the hub from here on, through the link
                // or its catch-up after a relink, so that position serves as
                // this follow's head without asking Redis. A storm's resumes
                // on channels this instance already follows (all of them,
                // when it takes over a lost instance's clients) each asked
                // the counter, behind the storm's replays on the one command
                // connection: seconds each, measured.
                return Ok(f.last.max(f.base));
            }
            if f.subscribed {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                f.waiters.push(tx);
                Some(rx)
            }
        };
        // Counted from here: a failure, or a caller that stops waiting (a
        // client gone mid-handshake drops the request's future), takes the
        // count back, or the channel would stay subscribed for good.
        let counted = Counted {
            broker: self,
            channel,
        };
        if let Some(rx) = wait {
            self.wake.notify_one();
            let confirmed = matches!(tokio::time::timeout(FOLLOW_TIMEOUT, rx).await, Ok(Ok(())));
            if !confirmed {
                return Err(unavailable("channel subscription not confirmed"));
            }
        }
        // Not gated: the reads of the counter are shared (at most one
        // in flight), so they cannot flood the command connection.
        let head = self.head_now().await?;
        std::mem::forget(counted);
        {
            let mut follows = self.follows.lock();
            if let Some(f) = follows.get_mut(channel) {
                if f.base == 0 {
                    f.base = head;
                }
            }
        }
        Ok(head)
    }

    /// A message arrived on a followed topic: hand it to the hub once, in order.
    fn deliver(&self, topic: &str, payload: &[u8]) {
        let Some(channel) = topic.strip_prefix(self.keys.topic_prefix.as_str()) else {
            return;
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let Some((epoch, member)) = text.split_once(':') else {
            return;
        };
        let Ok(epoch) = u64::from_str_radix(epoch, 16) else {
            return;
        };
        // The publish script checked this epoch against Redis, and one link
        // delivers in order: a new epoch here means Redis lost its data.
        self.adopt_epoch(epoch);
        let (channel, seq) = {
            let mut follows = self.follows.lock();
            let Some(name) = follows.get_key_value(channel).map(|(k, _)| k.clone()) else {
                return;
            };
            let Some(follow) = follows.get_mut(channel) else {
                return;
            };
            let Some(seq) = member.split(':').next().and_then(|s| s.parse::<u64>().ok()) else {
                return;
            };
            if seq <= follow.last {
                return;
            }
            follow.last = seq;
            (name.clone(), seq)
        };
        match decode_member(channel, epoch, member) {
            Ok(msg) => {
                debug_assert_eq!(msg.seq, seq);
                self.hub.fanout(&Arc::new(msg));
            }
            Err(error) => tracing::warn!(%error, "undecodable message from redis skipped"),
        }
    }
}

impl Broker for RedisBroker {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn follow<'a>(&'a self, channel: &'a Arc<str>) -> BoxFuture<'a, Result<u64, BrokerError>> {
        // The caller will not unfollow a failed follow: follow_inner
        // undoes its own count on every failure.
        Box::pin(self.follow_inner(channel))
    }

    fn unfollow(&self, channel: &str) {
        let idle = {
            let mut follows = self.follows.lock();
            match follows.get_mut(channel) {
                Some(f) => {
                    f.count = f.count.saturating_sub(1);
                    f.waiters.retain(|w| !w.is_closed());
                    if f.count == 0 {
                        f.idle_since = Some(Instant::now());
                    }
                    let idle = f.count == 0 && !f.subscribed;
                    if idle && f.waiters.is_empty() {
                        // Never subscribed and nobody waits: nothing to undo
                        // in Redis, so nothing to keep.
                        follows.remove(channel);
                        false
                    } else {
                        idle
                    }
                }
                None => false,
            }
        };
        if idle {
            self.wake.notify_one();
        }
    }

    fn publish(&self, p: Publish) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>> {
        Box::pin(async move {
            let body = encode_body(&p)?;
            for _ in 0..2 {
                match self.publish_once(&p, &body).await? {
                    Published::Member(member) => {
                        let epoch = self.epoch.load(Ordering::Acquire);
                        return decode_member(p.channel.clone(), epoch, &member).map(Arc::new);
                    }
                    Published::StaleEpoch => {
                        self.establish_epoch().await?;
                    }
                }
            }
            Err(unavailable("epoch keeps changing"))
        })
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, BrokerError>> {
        Box::pin(self.session_replay(channel, after, ttl, limit))
    }

    fn history_info<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, (usize, Option<u64>)> {
        Box::pin(async move {
            let Ok(mut conn) = self.connection() else {
                return (0, None);
            };
            let key = self.keys.history(channel);
            let answer: Result<(usize, Vec<(String, u64)>), _> = self
                .call(
                    redis::pipe()
                        .cmd("ZCARD")
                        .arg(&key)
                        .cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(0)
                        .arg("WITHSCORES")
                        .query_async(&mut conn),
                )
                .await;
            match answer {
                Ok((len, first)) => (len, first.first().map(|(_, s)| *s)),
                Err(_) => (0, None),
            }
        })
    }

    fn is_ready(&self) -> bool {
        self.linked.load(Ordering::Acquire)
    }

    fn shared_presence(&self) -> Option<&dyn crate::broker::SharedPresence> {
        Some(self)
    }
}

/// One follow's count on a channel, taken back when dropped before the
/// follow completed ([`std::mem::forget`] keeps it).
struct Counted<'a> {
    broker: &'a RedisBroker,
    channel: &'a str,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.broker.unfollow(self.channel);
    }
}
