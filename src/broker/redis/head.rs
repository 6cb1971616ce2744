//! Reads of the global id counter ("now", where a follow starts), shared by
//! every follow that asks while one is queued.
//!
//! Each follow needs the newest id assigned *after* its channel's
//! subscription was confirmed: a message published later reaches the hub,
//! one published earlier is in history. A storm of resumes asked the same key
//! once each, thousands of identical round trips queued behind one another
//! on the command connection. Here at most one read is in flight and one is
//! queued: a follow joins the queued read (issued after it arrived, so its
//! answer is fresh enough for that follow) or queues a new one behind the
//! read in flight. It never joins a read already written to Redis, whose
//! answer may predate its subscription.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use super::{COMMAND_TIMEOUT, unavailable};
use crate::broker::BrokerError;

type Read = Shared<BoxFuture<'static, Result<u64, String>>>;

/// The newest read of the counter, and whether it has been written yet.
struct Queued {
    read: Read,
    started: Arc<AtomicBool>,
}

#[derive(Default)]
pub(super) struct HeadReads {
    newest: Mutex<Option<Queued>>,
}

impl HeadReads {
    /// The counter's value, read after this call began.
    pub(super) async fn read(
        &self,
        conn: ConnectionManager,
        key: String,
    ) -> Result<u64, BrokerError> {
        let read = {
            let mut newest = self.newest.lock();
            match &*newest {
                Some(q) if !q.started.load(Ordering::Acquire) => q.read.clone(),
                _ => {
                    let previous = newest.take().map(|q| q.read);
                    let started = Arc::new(AtomicBool::new(false));
                    let read = issue(previous, started.clone(), conn, key);
                    *newest = Some(Queued {
                        read: read.clone(),
                        started,
                    });
                    read
                }
            }
        };
        read.await.map_err(unavailable)
    }
}

/// A read that waits for `previous` to answer, then marks itself started and
/// asks Redis. Whoever polls it drives it: a follow that gives up does not
/// strand the others sharing it.
fn issue(
    previous: Option<Read>,
    started: Arc<AtomicBool>,
    mut conn: ConnectionManager,
    key: String,
) -> Read {
    async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        started.store(true, Ordering::Release);
        let mut get = redis::cmd("GET");
        get.arg(key);
        match tokio::time::timeout(COMMAND_TIMEOUT, get.query_async(&mut conn)).await {
            Ok(Ok(head)) => Ok(Option::<u64>::unwrap_or(head, 0)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("command timed out".to_owned()),
        }
    }
    .boxed()
    .shared()
}
