//! The broker: where a published message gets its id, is kept in history, and
//! is handed to the hub for fan-out.
//!
//! Transports and ingest only see the [`Broker`] trait, so the embedded memory
//! broker (the default) and a multi-node broker can be swapped without touching
//! them. The contract every implementation keeps:
//! - ids increase within one epoch, and a channel's messages reach the hub in id order;
//! - `replay` either returns the retained messages after a position (the
//!   oldest `limit` of them, so a long replay is read page by page), or says
//!   [`Replay::Gap`] — it never returns a partial answer silently.
//!
//! A session follows a channel through [`follow`], whose [`Following`]
//! guard unfollows when dropped: the pairing is not left to each caller.

pub mod memory;
pub mod presence;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::hub::Message;

pub use memory::MemoryBroker;
pub use redis::RedisBroker;

pub use crate::model::{HistoryPolicy, Publish};

/// A session's follow of one channel: while it lives the broker routes the
/// channel's messages to this instance's hub; dropping it unfollows.
#[must_use = "dropping a follow ends it at once"]
pub struct Following {
    broker: Arc<dyn Broker>,
    channel: Arc<str>,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.broker.unfollow(&self.channel);
    }
}

/// Follow `channel` on `broker` ([`Broker::follow`]): the guard that
/// unfollows, and the newest id assigned so far. A failed follow holds
/// nothing (the broker took back its own count).
pub async fn follow(
    broker: &Arc<dyn Broker>,
    channel: &Arc<str>,
) -> Result<(Following, u64), BrokerError> {
    let head = broker.follow(channel).await?;
    let following = Following {
        broker: broker.clone(),
        channel: channel.clone(),
    };
    Ok((following, head))
}

/// Answer to a resume request.
#[derive(Debug)]
pub enum Replay {
    /// Retained messages after the position, in order, at most the limit
    /// asked for (possibly none: nothing more after the position).
    Messages(Vec<Arc<Message>>),
    /// History no longer reaches back to the position: the client must be told.
    Gap,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

pub trait Broker: Send + Sync + 'static {
    /// Identifies this broker's id space; a cursor from another epoch cannot be resumed.
    fn epoch(&self) -> u64;

    /// A local session starts following `channel`: from when this resolves,
    /// every message published to it reaches the hub. Returns the newest id
    /// assigned so far ("now", where a subscriber starting live begins).
    /// Pair every successful call with one [`Broker::unfollow`]; sessions
    /// call [`follow`], whose guard does.
    fn follow<'a>(&'a self, channel: &'a Arc<str>) -> BoxFuture<'a, Result<u64, BrokerError>>;

    /// A local session stopped following `channel`.
    fn unfollow(&self, channel: &str);

    fn publish(&self, msg: Publish) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>>;

    /// The oldest `limit` retained messages of `channel` with ids greater
    /// than `after`; messages older than `ttl` count as evicted.
    fn replay<'a>(
        &'a self,
        channel: &'a str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, BrokerError>>;

    /// Retained history length and oldest id of `channel` (for the admin API).
    fn history_info<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, (usize, Option<u64>)>;

    /// Whether the broker can take publishes (drives `/readyz`).
    fn is_ready(&self) -> bool;

    /// Membership shared with every other instance, for a broker that spans
    /// several; `None` (the default) keeps presence local to this process.
    fn shared_presence(&self) -> Option<&dyn SharedPresence> {
        None
    }
}

/// Presence membership kept where every instance sees it. Entries expire
/// unless refreshed, so a crashed instance's members disappear by themselves.
/// What a presence refresh found: (channel, subject) pairs.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Expired entries it swept: their leave is to be announced.
    pub gone: Vec<(String, String)>,
    /// Local members that had no entry (swept while this instance could not
    /// refresh them): to be joined again, with what they show.
    pub missing: Vec<(String, String)>,
}

pub trait SharedPresence: Send + Sync {
    /// Mark `subject` present in `channel` for `ttl`, showing `info` (JSON
    /// text); true when it is new to the channel across all instances (a
    /// join to announce).
    fn join<'a>(
        &'a self,
        channel: &'a str,
        subject: &'a str,
        info: Option<&'a str>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Refresh this instance's `members` (channel, subject) for another
    /// `ttl` and sweep expired entries everywhere.
    fn refresh<'a>(
        &'a self,
        members: &'a [(String, String)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Refreshed, BrokerError>>;

    /// Current members of `channel` on every instance, sorted.
    fn list<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>>;

    /// Current members of `channel` with what each shows, sorted.
    fn members<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<presence::MemberInfo>, BrokerError>>;
}
