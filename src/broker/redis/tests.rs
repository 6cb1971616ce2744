//! Follow bookkeeping when Redis is away: a failed follow keeps nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::RedisBroker;
use crate::broker::Broker;
use crate::config::RedisConfig;
use crate::hub::Hub;

fn broker() -> Arc<RedisBroker> {
    // No link task runs: the broker stays unlinked unless a test says otherwise.
    RedisBroker::new(Hub::default(), &RedisConfig::default()).expect("a valid default url")
}

fn followed(b: &RedisBroker) -> usize {
    b.follows.lock().len()
}

#[tokio::test]
async fn follows_tried_during_an_outage_are_not_kept() {
    let b = broker();
    for i in 0..100 {
        let channel: Arc<str> = format!("public.c{i}").into();
        assert!(b.follow(&channel).await.is_err());
    }
    assert_eq!(
        followed(&b),
        0,
        "every channel tried during the outage stayed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_follow_never_confirmed_is_not_kept() {
    let b = broker();
    // Linked, but no link task answers: each follow times out.
    b.linked.store(true, Ordering::Release);
    for i in 0..3 {
        let channel: Arc<str> = format!("public.c{i}").into();
        assert!(b.follow(&channel).await.is_err());
    }
    assert_eq!(
        followed(&b),
        0,
        "timed-out follows stayed with dead waiters"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_follow_leaves_other_followers_counted() {
    let b = broker();
    let channel: Arc<str> = "public.shared".into();
    b.linked.store(true, Ordering::Release);
    // One follower already subscribed...
    {
        let mut follows = b.follows.lock();
        let f = follows.entry(channel.clone()).or_default();
        f.count = 1;
        f.subscribed = true;
    }
    // ...then the link drops and a second follow fails fast.
    b.linked.store(false, Ordering::Release);
    assert!(b.follow(&channel).await.is_err());
    let count = b.follows.lock()[&channel].count;
    assert_eq!(
        count, 1,
        "a failed follow must not take the first follower's count"
    );
}

#[tokio::test(start_paused = true)]
async fn a_follow_its_caller_stopped_waiting_for_is_not_kept() {
    let b = broker();
    b.linked.store(true, Ordering::Release);
    // A client gone mid-handshake: the request's future, and the follow in
    // it, dropped while the link has not confirmed the channel.
    for i in 0..3 {
        let channel: Arc<str> = format!("public.gone{i}").into();
        let follow = b.follow(&channel);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), follow)
                .await
                .is_err()
        );
    }
    assert_eq!(followed(&b), 0, "abandoned follows stayed counted");
}

/// Every place among the sessions' reads, taken: what a storm looks like.
fn fill(b: &RedisBroker) -> tokio::sync::SemaphorePermit<'_> {
    b.session_reads
        .try_acquire_many(super::SESSION_READS as u32)
        .expect("no read in progress yet")
}

async fn replay(b: &RedisBroker) -> Result<crate::broker::Replay, crate::broker::BrokerError> {
    b.replay("public.r", 0, Duration::from_secs(60), 10).await
}

/// The stand-in for a storm's Redis: a broker whose pub/sub link is up
/// (no link task runs; the command connection is absent).
fn linked() -> Arc<RedisBroker> {
    let b = broker();
    b.linked.store(true, Ordering::Release);
    b
}

/// A client's replay, run beside the test so that it can wait for a place.
fn replay_beside(
    b: &Arc<RedisBroker>,
) -> tokio::task::JoinHandle<Result<(), crate::broker::BrokerError>> {
    let b = b.clone();
    tokio::spawn(async move { replay(&b).await.map(|_| ()) })
}

#[tokio::test(start_paused = true)]
async fn a_replay_beyond_the_bound_waits_its_turn_instead_of_failing() {
    let b = linked();
    let full = fill(&b);
    let waiting = replay_beside(&b);
    // Not refused: it waits for a place.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "a replay past the bound did not wait"
    );
    drop(full);
    // Its turn, within its deadline: it reaches Redis (here: no command
    // connection yet).
    let answer = tokio::time::timeout(Duration::from_millis(500), waiting)
        .await
        .expect("answered once a place freed")
        .expect("no panic");
    assert!(
        matches!(&answer, Err(e) if e.to_string().contains("not connected yet")),
        "{answer:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replay_waits_no_longer_than_a_command_could_take() {
    let b = linked();
    let _full = fill(&b);
    let started = tokio::time::Instant::now();
    // The others never finish: it is answered as a slow Redis is, 503.
    let answer = tokio::time::timeout(Duration::from_secs(30), replay(&b))
        .await
        .expect("a replay past the bound waited without a limit");
    assert!(
        matches!(&answer, Err(crate::broker::BrokerError::Unavailable(_))),
        "{answer:?}"
    );
    assert_eq!(started.elapsed(), super::COMMAND_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_replay_with_a_place_does_not_depend_on_the_pubsub_link() {
    let b = broker();
    // Link down, places free: the replay goes to the command connection
    // (here absent, hence its error), not refused for the link's sake.
    let answer = replay(&b).await;
    assert!(
        matches!(&answer, Err(e) if e.to_string().contains("not connected yet")),
        "{answer:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replay_that_would_wait_fails_at_once_when_the_link_is_down() {
    let b = broker();
    let _full = fill(&b);
    let answer = tokio::time::timeout(Duration::from_millis(1), replay(&b))
        .await
        .expect("answered at once");
    assert!(
        matches!(&answer, Err(e) if e.to_string() == "broker unavailable: redis: not connected"),
        "{answer:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_client_that_leaves_gives_its_place_up() {
    let b = linked();
    let mut full = fill(&b);
    // A client gone while waiting: its future is dropped.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), replay(&b))
            .await
            .is_err()
    );
    // One place frees: the next client gets it, not the one that left.
    drop(full.split(1));
    let answer = tokio::time::timeout(Duration::from_secs(1), replay(&b)).await;
    assert!(answer.is_ok(), "the freed place went to a client that left");
}

#[tokio::test(start_paused = true)]
async fn waiters_fail_at_once_when_the_link_goes_down() {
    let b = linked();
    let full = fill(&b);
    let waiting = replay_beside(&b);
    tokio::task::yield_now().await;
    b.linked.store(false, Ordering::Release);
    drop(full);
    let answer = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("answered at once")
        .expect("no panic");
    assert!(
        matches!(&answer, Err(e) if e.to_string() == "broker unavailable: redis: not connected"),
        "{answer:?}"
    );
}

/// A follow of a channel already subscribed, whose head was read once,
/// takes the newest position the hub has from the follow itself: no round
/// trip (this broker has no Redis connection, so any ask would fail).
#[tokio::test]
async fn a_follow_of_a_subscribed_channel_asks_redis_nothing() {
    let b = broker();
    let channel: Arc<str> = "public.followed".into();
    b.linked.store(true, Ordering::Release);
    {
        let mut follows = b.follows.lock();
        let f = follows.entry(channel.clone()).or_default();
        f.count = 1;
        f.subscribed = true;
        f.base = 5;
    }
    assert_eq!(b.follow(&channel).await.unwrap(), 5, "the head read before");
    b.follows.lock().get_mut(&channel).unwrap().last = 9;
    assert_eq!(b.follow(&channel).await.unwrap(), 9, "the newest delivered");
    assert_eq!(b.follows.lock()[&channel].count, 3, "each follow counted");

    // Never a head read yet (the first follow's, or since Redis lost its
    // data): the counter is asked, and without Redis the follow fails and
    // takes its count back.
    b.follows.lock().get_mut(&channel).unwrap().base = 0;
    b.follows.lock().get_mut(&channel).unwrap().last = 0;
    assert!(b.follow(&channel).await.is_err());
    assert_eq!(b.follows.lock()[&channel].count, 3);
}

/// A stand-in Redis: `+OK` to everything but the replay script, which it
/// counts and answers (a gap: `*1 :0`) only once `release` is notified, one
/// answer per notification.
async fn held_redis() -> (
    String,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<tokio::sync::Notify>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let scripts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let (counted, released) = (scripts.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (scripts, release) = (counted.clone(), released.clone());
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(head)) = lines.next_line().await {
                    let n: usize = head.trim_start_matches('*').parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..n {
                        let _len = lines.next_line().await;
                        if let Ok(Some(arg)) = lines.next_line().await {
                            args.push(arg);
                        }
                    }
                    let script = args
                        .first()
                        .is_some_and(|a| a.to_ascii_uppercase().starts_with("EVAL"));
                    let answer: &[u8] = if script {
                        scripts.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        b"*1\r\n:0\r\n"
                    } else {
                        b"+OK\r\n"
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, scripts, release)
}

/// Replays of the same page waiting for a place share one read: with one
/// place free, one script reaches Redis and its answer serves all ten. A
/// replay of another page is not joined: it waits for a place of its own.
#[tokio::test]
async fn replays_of_the_same_page_waiting_for_a_place_share_one_read() {
    let (url, scripts, release) = held_redis().await;
    let b = RedisBroker::new(
        Hub::default(),
        &RedisConfig {
            url,
            ..RedisConfig::default()
        },
    )
    .unwrap();
    let connect = redis::aio::ConnectionManager::new(b.client.clone());
    let conn = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .expect("connected to the stand-in")
        .expect("connected to the stand-in");
    b.commands.store(Some(Arc::new(conn)));
    b.epoch.store(1, Ordering::Release);
    b.linked.store(true, Ordering::Release);
    let mut full = fill(&b);
    let same: Vec<_> = (0..10)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { replay(&b).await })
        })
        .collect();
    let other = tokio::spawn({
        let b = b.clone();
        async move { b.replay("public.r", 7, Duration::from_secs(60), 10).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while b.queued_replays.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "replays not queued");
        tokio::task::yield_now().await;
    }
    // One place: the read queued first (the ten's) takes it.
    drop(full.split(1));
    while scripts.load(Ordering::SeqCst) < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no script reached Redis"
        );
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for waiting in same {
        let answer = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("answered by the one shared read")
            .expect("no panic");
        assert!(
            matches!(answer, Ok(crate::broker::Replay::Gap)),
            "{answer:?}"
        );
    }
    assert_eq!(
        scripts.load(Ordering::SeqCst),
        1,
        "one script answered the ten"
    );
    // The place came back: the other page's read takes it and asks Redis.
    while scripts.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other page never asked"
        );
        tokio::task::yield_now().await;
    }
    assert!(!other.is_finished(), "another page joined the first read");
    release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(2), other)
        .await
        .expect("its own read answered")
        .expect("no panic");
    assert!(
        matches!(answer, Ok(crate::broker::Replay::Gap)),
        "{answer:?}"
    );
    assert_eq!(b.queued_replays.len(), 0, "started reads leave the queue");
    drop(full);
}
