//! A session's history reads give way when the session ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, Semaphore};

use super::{Delivery, Session, SubscriptionPolicy};
use crate::broker::{Broker, BrokerError, HistoryPolicy, MemoryBroker, Publish, Replay};
use crate::config::{Config, SlowClient};
use crate::hub::{Cursor, Hub, Message};
use crate::lifecycle::Lifecycle;
use crate::state::{AppState, Settings};

/// The memory broker, with every history read after the first `free` held
/// until the test lets it through: a read waiting its turn in a storm.
struct Held {
    inner: Arc<MemoryBroker>,
    free: AtomicUsize,
    gate: Semaphore,
    /// Told each time a read starts waiting.
    entered: Notify,
}

impl Broker for Held {
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }
    fn follow<'a>(&'a self, channel: &'a Arc<str>) -> BoxFuture<'a, Result<u64, BrokerError>> {
        self.inner.follow(channel)
    }
    fn unfollow(&self, channel: &str) {
        self.inner.unfollow(channel);
    }
    fn publish(&self, msg: Publish) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>> {
        self.inner.publish(msg)
    }
    fn replay<'a>(
        &'a self,
        channel: &'a str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Replay, BrokerError>> {
        Box::pin(async move {
            let free = self
                .free
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| f.checked_sub(1))
                .is_ok();
            if !free {
                self.entered.notify_one();
                let _turn = self.gate.acquire().await.expect("gate open");
            }
            self.inner.replay(channel, after, ttl, limit).await
        })
    }
    fn history_info<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, (usize, Option<u64>)> {
        self.inner.history_info(channel)
    }
    fn is_ready(&self) -> bool {
        true
    }
}

const HISTORY: HistoryPolicy = HistoryPolicy {
    size: 100,
    ttl: Duration::from_secs(60),
};

fn publish_to(channel: &str) -> Publish {
    Publish {
        channel: channel.into(),
        event: "message".into(),
        data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
        key: None,
        history: HISTORY,
        origin: None,
        binary: false,
    }
}

/// A session resuming channel `a` from its start, 30 messages behind, its
/// first page (read at subscribe) already handed out: its next read is
/// held.
async fn resumed_and_held() -> (AppState, Arc<Held>, Session) {
    let lifecycle = Lifecycle::new();
    let hub = Hub::new();
    let memory = MemoryBroker::new(hub.clone());
    for _ in 0..30 {
        memory.publish(publish_to("a")).await.unwrap();
    }
    let held = Arc::new(Held {
        inner: memory,
        free: AtomicUsize::new(1),
        gate: Semaphore::new(0),
        entered: Notify::new(),
    });
    let settings = Settings::new(Config::default(), &lifecycle).unwrap();
    let state = AppState::new(settings, hub, held.clone(), lifecycle);
    let mut session = Session::new(&state, 8);
    let channel: Arc<str> = Arc::from("a");
    let mut cursor = Cursor::new(held.epoch());
    cursor.set(&channel, 0);
    let policy = policy();
    let mut out = Vec::new();
    session
        .subscribe_all(&[(channel, policy)], Some(&cursor), &mut out, None)
        .await
        .unwrap();
    session.replay_next(&mut out).await.unwrap();
    assert_eq!(count(&out), 8, "the first page, from the subscribe's read");
    assert!(session.is_replaying());
    (state, held, session)
}

/// A plain channel's policy, with the history the tests' broker keeps.
fn policy() -> SubscriptionPolicy {
    SubscriptionPolicy {
        slow_client: SlowClient::DropOldest,
        presence: false,
        history: HISTORY,
        checked: 0,
    }
}

fn count(out: &[Delivery]) -> usize {
    out.iter()
        .filter(|d| matches!(d, Delivery::Message(_)))
        .count()
}

/// `replay_next` while `act` runs once the read is held, within 5 s.
async fn replay_while(session: &mut Session, held: &Held, act: impl FnOnce()) -> Vec<Delivery> {
    let mut out = Vec::new();
    let replay = session.replay_next(&mut out);
    let act = async {
        held.entered.notified().await;
        act();
    };
    let (answer, ()) =
        tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(replay, act) })
            .await
            .expect("the held read gave way");
    answer.unwrap();
    out
}

#[tokio::test]
async fn a_kick_ends_a_held_history_read() {
    let (_state, held, mut session) = resumed_and_held().await;
    let inbox = session.inbox().clone();
    let out = replay_while(&mut session, &held, || inbox.kick()).await;
    assert_eq!(count(&out), 0);
    assert!(session.is_replaying(), "nothing skipped: the cursor stays");
    assert!(session.inbox().is_kicked());
}

#[tokio::test]
async fn the_gateway_stopping_ends_a_held_history_read() {
    let (state, held, mut session) = resumed_and_held().await;
    let stopping = state.lifecycle.stopping().clone();
    let out = replay_while(&mut session, &held, || stopping.ring()).await;
    assert_eq!(count(&out), 0);
    assert!(session.is_replaying());
    // A subscribe's read after the stop is not started at all.
    let mut out = Vec::new();
    let mut cursor = Cursor::new(held.epoch());
    let channel: Arc<str> = Arc::from("b");
    cursor.set(&channel, 0);
    let policy = policy();
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        session.subscribe_all(&[(channel, policy)], Some(&cursor), &mut out, None),
    )
    .await
    .expect("no wait once stopping");
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_message_during_a_held_read_neither_ends_it_nor_loses_its_wake() {
    let (_state, held, mut session) = resumed_and_held().await;
    let mut out = Vec::new();
    let replay = session.replay_next(&mut out);
    let act = async {
        held.entered.notified().await;
        // A live message reaches the inbox while the read is held, and the
        // wait hears its wake-up (a few turns of this task)...
        held.inner.publish(publish_to("a")).await.unwrap();
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        // ...then the read answers.
        held.gate.add_permits(1);
    };
    let (answer, ()) =
        tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(replay, act) })
            .await
            .expect("the read answered once let through");
    answer.unwrap();
    assert_eq!(
        count(&out),
        8,
        "the next page: the message did not end the read"
    );
    assert!(session.is_replaying());
    // The message's wake-up is still there for whoever waits next.
    tokio::time::timeout(Duration::from_secs(1), session.inbox().ready())
        .await
        .expect("the inbox still says a message is waiting");
}
