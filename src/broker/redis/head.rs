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
//!
//! A follow's whole wait, for the read in flight and then its own, is one
//! [`COMMAND_TIMEOUT`] from when it asked; and a read queued behind one
//! that timed out fails with it rather than ask a Redis that just hung.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

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
    /// Shared with the reads, which mark themselves started under it.
    newest: Arc<Mutex<Option<Queued>>>,
}

/// How a read that ran out of time fails; a read queued behind it fails the
/// same way without asking.
const TIMED_OUT: &str = "command timed out";

impl HeadReads {
    /// The counter's value, read after this call began.
    pub(super) async fn read(
        &self,
        conn: ConnectionManager,
        key: String,
    ) -> Result<u64, BrokerError> {
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        let read = {
            let mut newest = self.newest.lock();
            match &*newest {
                Some(q) if !q.started.load(Ordering::Acquire) => q.read.clone(),
                _ => {
                    // Only a read still going is waited for: one that has
                    // answered (or failed) long ago says nothing of Redis now.
                    let previous = newest
                        .take()
                        .map(|q| q.read)
                        .filter(|read| read.peek().is_none());
                    let started = Arc::new(AtomicBool::new(false));
                    let read = issue(
                        previous,
                        Arc::downgrade(&self.newest),
                        started.clone(),
                        conn,
                        key,
                    );
                    *newest = Some(Queued {
                        read: read.clone(),
                        started,
                    });
                    read
                }
            }
        };
        match tokio::time::timeout_at(deadline, read).await {
            Ok(answer) => answer.map_err(unavailable),
            Err(_) => Err(unavailable(TIMED_OUT)),
        }
    }
}

/// A read that waits for `previous` to answer, then marks itself started and
/// asks Redis. Whoever polls it drives it: a follow that gives up does not
/// strand the others sharing it.
fn issue(
    previous: Option<Read>,
    newest: Weak<Mutex<Option<Queued>>>,
    started: Arc<AtomicBool>,
    mut conn: ConnectionManager,
    key: String,
) -> Read {
    async move {
        let before = match previous {
            Some(previous) => previous.await.err(),
            None => None,
        };
        // Under the lock: a follow that sees it unset joins a read not yet
        // written, whose answer is newer than that follow's subscription.
        // Marked whatever the read before it answered: a read left unmarked
        // would be joined by every later follow and hand each its failure.
        match newest.upgrade() {
            Some(newest) => {
                let _held = newest.lock();
                started.store(true, Ordering::Release);
            }
            None => return Err("broker gone".to_owned()),
        }
        // Ours or the connection's own response timeout: the followers that
        // joined this read fail with it rather than ask a Redis that just
        // hung; the next follow starts a read of its own.
        if let Some(e) = before.filter(|e| e.contains("timed out")) {
            return Err(e);
        }
        let mut get = redis::cmd("GET");
        get.arg(key);
        match tokio::time::timeout(COMMAND_TIMEOUT, get.query_async(&mut conn)).await {
            Ok(Ok(head)) => Ok(Option::<u64>::unwrap_or(head, 0)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(TIMED_OUT.to_owned()),
        }
    }
    .boxed()
    .shared()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A Redis that answers every command `+OK` and hangs on its first `GET`
    /// until a second one comes (then answers both, in order); every `GET`
    /// reads 7. Counts the `GET`s it was sent.
    async fn hung_redis() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/", listener.local_addr().unwrap());
        let gets = Arc::new(AtomicUsize::new(0));
        let counted = gets.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let gets = counted.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    // RESP arrays of bulk strings: "*N", then "$len" and
                    // the argument N times.
                    while let Ok(Some(head)) = lines.next_line().await {
                        let n: usize = head.trim_start_matches('*').parse().unwrap_or(0);
                        let mut args = Vec::new();
                        for _ in 0..n {
                            let _len = lines.next_line().await;
                            if let Ok(Some(arg)) = lines.next_line().await {
                                args.push(arg);
                            }
                        }
                        if args.first().is_some_and(|a| a.eq_ignore_ascii_case("GET")) {
                            // The second GET finds Redis back: it answers
                            // the hung one late, in order, then this one.
                            let answers: &[u8] = match gets.fetch_add(1, Ordering::SeqCst) {
                                0 => b"",
                                1 => b"$1\r\n7\r\n$1\r\n7\r\n",
                                _ => b"$1\r\n7\r\n",
                            };
                            if write.write_all(answers).await.is_err() {
                                return;
                            }
                        } else if write.write_all(b"+OK\r\n").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, gets)
    }

    /// A read queued behind one in flight on a hung Redis: its follow's
    /// deadline counts from when it asked (not a second 3 s after the first
    /// read's), and it asks nothing of a Redis that just timed out.
    #[tokio::test]
    async fn a_queued_read_shares_the_deadline_and_the_timeout_of_the_one_before() {
        let (url, gets) = hung_redis().await;
        let client = redis::Client::open(url).unwrap();
        // As the link makes it: the bound is ours, not the client's.
        let config =
            redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
        let connect = ConnectionManager::new_with_config(client, config);
        let conn = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .expect("connected to the stand-in")
            .expect("connected to the stand-in");
        let reads = Arc::new(HeadReads::default());
        let first = tokio::spawn({
            let (reads, conn) = (reads.clone(), conn.clone());
            async move { reads.read(conn, "seq".into()).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while gets.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first GET never came"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let began = tokio::time::Instant::now();
        let second = reads.read(conn.clone(), "seq".into()).await;
        let took = began.elapsed();
        assert!(second.is_err(), "{second:?}");
        let first = first.await.unwrap();
        assert!(first.is_err());
        assert!(
            took < COMMAND_TIMEOUT,
            "the queued read took {took:?}, more than one timeout from when it asked"
        );
        assert_eq!(
            gets.load(Ordering::SeqCst),
            1,
            "a GET went to a Redis that had just hung"
        );
        // Redis answers again: the next follow asks it, and is not handed the
        // old timeout by a failed read left waiting to be joined.
        let third = tokio::time::timeout(Duration::from_secs(2), reads.read(conn, "seq".into()))
            .await
            .expect("a read after the stall answers");
        assert_eq!(
            third.ok(),
            Some(7),
            "the instance stayed wedged after one timeout"
        );
        assert_eq!(gets.load(Ordering::SeqCst), 2);
    }
}
