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

#[tokio::test(start_paused = true)]
async fn a_replay_beyond_the_bound_waits_its_turn_instead_of_failing() {
    let b = broker();
    b.linked.store(true, Ordering::Release);
    let full = fill(&b);
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { replay(&b).await.map(|_| ()) }
    });
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
    let b = broker();
    b.linked.store(true, Ordering::Release);
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
    let b = broker();
    b.linked.store(true, Ordering::Release);
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
    let b = broker();
    b.linked.store(true, Ordering::Release);
    let full = fill(&b);
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { replay(&b).await.map(|_| ()) }
    });
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
