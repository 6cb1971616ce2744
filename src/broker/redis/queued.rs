//! Sessions' replays waiting for a place among the reads in progress
//! ([`SESSION_READS`](super::SESSION_READS)), shared by identical asks.
//!
//! When an instance takes over a lost one's clients, the clients of one
//! channel come back with the same cursor (they had all received the same
//! messages), and each asked Redis for the same page: tens of identical
//! scripts per channel queued on the one command connection, each holding a
//! place. Here a replay that must wait joins the read queued for the same
//! channel, position, page size and age, and one read answers them all.
//!
//! Only a read not yet started is joined: it is issued after the joiner
//! asked, so its answer is as fresh as the joiner's own would have been (a
//! short page still means nothing more was in history when it was read, and
//! what comes after reaches the joiner live). A read in progress is not
//! joined; the next ask queues a read of its own behind it.
//!
//! The read belongs to whoever waits for it: when every session waiting
//! for it has left, it is dropped, with its place in the queue.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};
use parking_lot::Mutex;

use super::{RedisBroker, unavailable};
use crate::broker::{BrokerError, Replay};

type ReadFuture = BoxFuture<'static, Result<Arc<Replay>, String>>;
/// One queued read, shared by the sessions waiting for it.
pub(super) type Read = Shared<ReadFuture>;

/// What a replay asks: reads of the same ask answer alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Ask {
    channel: Arc<str>,
    after: u64,
    ttl: Duration,
    limit: usize,
}

/// Above this many asks, ones nobody waits for any more are swept.
const SWEEP_ABOVE: usize = 1024;

type Queued = Mutex<HashMap<Ask, WeakShared<ReadFuture>>>;

#[derive(Default)]
pub(super) struct QueuedReplays {
    /// Reads waiting for a place, by ask; weak: the sessions own them.
    queued: Arc<Queued>,
}

impl QueuedReplays {
    /// The read of `channel` after `after` that waits for a place: the one
    /// already queued for the same ask, or a new one queued now.
    pub(super) fn join_or_queue(
        &self,
        broker: Weak<RedisBroker>,
        channel: &str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> Read {
        let ask = Ask {
            channel: Arc::from(channel),
            after,
            ttl,
            limit,
        };
        let mut queued = self.queued.lock();
        if let Some(read) = queued.get(&ask).and_then(WeakShared::upgrade) {
            return read;
        }
        if queued.len() > SWEEP_ABOVE {
            queued.retain(|_, read| read.upgrade().is_some());
        }
        let read = queue(Arc::downgrade(&self.queued), broker, ask.clone());
        if let Some(weak) = read.downgrade() {
            queued.insert(ask, weak);
        }
        read
    }

    /// Asks with a read queued (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queued.lock().len()
    }
}

/// A read that waits for a place, then leaves the queue (later asks get a
/// read of their own) and asks Redis.
fn queue(queued: Weak<Queued>, broker: Weak<RedisBroker>, ask: Ask) -> Read {
    async move {
        let broker = broker.upgrade().ok_or_else(|| "broker gone".to_owned())?;
        let _place = broker
            .session_reads
            .acquire()
            .await
            .map_err(|_| "closed".to_owned())?;
        if let Some(queued) = queued.upgrade() {
            queued.lock().remove(&ask);
        }
        // The link went down while this read waited: answer now, as a
        // replay that could not wait would have been.
        if !broker.linked.load(std::sync::atomic::Ordering::Acquire) {
            return Err(message(unavailable("not connected")));
        }
        broker
            .replay_checked(&ask.channel, ask.after, ask.ttl, ask.limit)
            .await
            .map(Arc::new)
            .map_err(message)
    }
    .boxed()
    .shared()
}

fn message(e: BrokerError) -> String {
    match e {
        BrokerError::Unavailable(m) => m,
    }
}

/// A shared read's answer, for one of the sessions that waited for it.
pub(super) fn answer(shared: Result<Arc<Replay>, String>) -> Result<Replay, BrokerError> {
    match shared {
        Ok(replay) => Ok(match &*replay {
            Replay::Messages(messages) => Replay::Messages(messages.clone()),
            Replay::Gap => Replay::Gap,
        }),
        Err(m) => Err(BrokerError::Unavailable(m)),
    }
}
