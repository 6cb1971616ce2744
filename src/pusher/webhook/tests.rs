//! The sender on a paused clock, against a destination that records what
//! it was sent and answers from a script.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use http::header::HeaderMap;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

use super::{Destination, Terms, run};
use crate::config::Pusher as PusherConfig;
use crate::metrics::pusher_webhook::{Dropped, WebhookCounters};
use crate::pusher::{App, AppEvent, AppEvents, Apps};

/// One request as the application got it.
#[derive(Debug)]
struct Posted {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Posted {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The events' names, in order.
    fn names(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// What `post` answers: a status, or never.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    Never,
}

#[derive(Clone)]
struct Recorder {
    apps: Arc<Mutex<Arc<Apps>>>,
    posted: Arc<Mutex<Vec<Posted>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// The answer once the script is used up.
    then: Answer,
    unqueued: Arc<std::sync::atomic::AtomicU64>,
    /// The wall clock it tells: `EPOCH_MS` at its creation, then moving
    /// with the (paused) test clock.
    created: Instant,
}

const EPOCH_MS: u128 = 1_700_000_000_000;

impl Recorder {
    fn new(apps_yaml: &str, then: Answer) -> Recorder {
        Recorder {
            apps: Arc::new(Mutex::new(Arc::new(apps(apps_yaml)))),
            posted: Arc::default(),
            script: Arc::default(),
            then,
            unqueued: Arc::default(),
            created: Instant::now(),
        }
    }

    fn posted(&self) -> usize {
        self.posted.lock().len()
    }
}

impl Destination for Recorder {
    fn app(&self, id: &str) -> Option<Arc<App>> {
        let apps = self.apps.lock().clone();
        apps.by_id(id)
            .filter(|a| a.config.webhook.is_some())
            .cloned()
    }

    fn post(
        &self,
        _app: &App,
        headers: HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, Result<StatusCode, String>> {
        self.posted.lock().push(Posted {
            at: Instant::now(),
            headers,
            body,
        });
        let answer = self.script.lock().pop_front().unwrap_or(self.then);
        Box::pin(async move {
            match answer {
                Answer::Status(s) => Ok(StatusCode::from_u16(s).unwrap()),
                Answer::Never => std::future::pending().await,
            }
        })
    }

    fn unqueued(&self) -> u64 {
        self.unqueued.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn unix_ms(&self) -> u128 {
        EPOCH_MS + (Instant::now() - self.created).as_millis()
    }
}

fn apps(yaml: &str) -> Apps {
    let config: PusherConfig = serde_yaml::from_str(yaml).unwrap();
    Apps::new(Some(&config))
}

const ONE_APP: &str = "apps:\n  - { id: 1, key: k1, secret: s1, webhook: { url: /hook } }\n";

/// A running sender and the queue that feeds it, as connections use it.
struct Running {
    events: AppEvents,
    recorder: Recorder,
    counters: WebhookCounters,
    app: Arc<str>,
}

impl Running {
    /// Returns once the sender runs (it drops what was reported before).
    async fn start(recorder: Recorder, terms: Terms) -> Running {
        let events = AppEvents::default();
        let counters = WebhookCounters::default();
        tokio::spawn(run(
            events.take_receiver().unwrap(),
            recorder.clone(),
            counters.clone(),
            terms,
        ));
        tokio::task::yield_now().await;
        Running {
            events,
            recorder,
            counters,
            app: "1".into(),
        }
    }

    fn report(&self, event: AppEvent) {
        self.events.send(&self.app, event);
    }
}

fn occupied(channel: &str) -> AppEvent {
    AppEvent::ChannelOccupied {
        channel: channel.into(),
    }
}

fn vacated(channel: &str) -> AppEvent {
    AppEvent::ChannelVacated {
        channel: channel.into(),
    }
}

async fn wait(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn events_within_the_window_are_one_signed_request() {
    let run = Running::start(
        Recorder::new(ONE_APP, Answer::Status(200)),
        Terms::default(),
    )
    .await;
    let t0 = Instant::now();
    run.report(occupied("a"));
    run.report(AppEvent::MemberAdded {
        channel: "presence-b".into(),
        user_id: "7".into(),
    });
    run.report(AppEvent::ClientEvent {
        channel: "private-c".into(),
        event: "client-typing".into(),
        data: serde_json::value::to_raw_value(&serde_json::json!({"x": 1})).unwrap(),
        socket_id: "1.2".into(),
        user_id: None,
    });
    wait(99).await;
    assert_eq!(run.recorder.posted(), 0, "the batch is still open");
    wait(2).await;
    let posted = run.recorder.posted.lock();
    assert_eq!(posted.len(), 1);
    let p = &posted[0];
    assert_eq!(p.at - t0, Duration::from_millis(100));
    assert_eq!(
        p.names(),
        ["channel_occupied", "member_added", "client_event"]
    );
    let body = p.json();
    assert!(body["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(body["events"][1]["user_id"], "7");
    let client = &body["events"][2];
    assert_eq!(
        client["data"], r#"{"x":1}"#,
        "a client's object as a string"
    );
    assert_eq!(client["socket_id"], "1.2");
    assert!(client.get("user_id").is_none());
    assert_eq!(p.headers["x-pusher-key"], "k1");
    assert_eq!(p.headers["content-type"], "application/json");
    let signer = crate::pusher::Signer::new("k1", "s1");
    assert_eq!(
        p.headers["x-pusher-signature"].to_str().unwrap(),
        signer.webhook_signature(&p.body)
    );
    drop(posted);
    assert_eq!(run.counters.sent_of("1"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_before_its_window() {
    let mut terms = Terms::default();
    terms.batch.events = 2;
    let run = Running::start(Recorder::new(ONE_APP, Answer::Status(204)), terms).await;
    for c in ["a", "b", "c"] {
        run.report(occupied(c));
    }
    wait(1).await;
    assert_eq!(run.recorder.posted(), 1, "two events fill a batch at once");
    wait(100).await;
    let posted = run.recorder.posted.lock();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[1].names(), ["channel_occupied"]);
}

#[tokio::test(start_paused = true)]
async fn vacated_is_held_three_seconds_and_cancelled_by_occupied() {
    let run = Running::start(
        Recorder::new(ONE_APP, Answer::Status(200)),
        Terms::default(),
    )
    .await;
    let t0 = Instant::now();
    run.report(vacated("gone"));
    run.report(vacated("back"));
    wait(2000).await;
    run.report(occupied("back"));
    wait(900).await;
    assert_eq!(run.recorder.posted(), 0, "nothing before the hold ends");
    wait(300).await;
    let posted = run.recorder.posted.lock();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let body = posted[0].json();
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(body["events"][0]["name"], "channel_vacated");
    assert_eq!(body["events"][0]["channel"], "gone");
    assert_eq!(posted[0].at - t0, Duration::from_millis(3100));
}

#[tokio::test(start_paused = true)]
async fn only_the_events_an_app_selects_are_sent() {
    let yaml = "apps:\n  - { id: 1, key: k1, secret: s1, webhook: { url: /hook, events: [member_removed] } }\n  - { id: 2, key: k2, secret: s2 }\n";
    let run = Running::start(Recorder::new(yaml, Answer::Status(200)), Terms::default()).await;
    run.report(occupied("a"));
    run.report(AppEvent::MemberRemoved {
        channel: "presence-a".into(),
        user_id: "u".into(),
    });
    run.events.send(&"2".into(), occupied("b"));
    wait(3200).await;
    let posted = run.recorder.posted.lock();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].names(), ["member_removed"]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_is_retried_with_backoff_then_given_up() {
    let recorder = Recorder::new(ONE_APP, Answer::Status(500));
    let terms = Terms {
        attempts: 4,
        ..Terms::default()
    };
    let run = Running::start(recorder, terms).await;
    run.report(occupied("a"));
    run.report(occupied("b"));
    wait(60_000).await;
    let posted = run.recorder.posted.lock();
    assert_eq!(posted.len(), 4, "exactly the attempts allowed");
    let gaps: Vec<Duration> = posted.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert_eq!(
        gaps,
        [1, 2, 4].map(Duration::from_secs),
        "each wait doubles"
    );
    assert!(
        posted
            .iter()
            .all(|p| p.json()["events"] == posted[0].json()["events"]),
        "the same events each time"
    );
    let times: Vec<u64> = posted
        .iter()
        .map(|p| p.json()["time_ms"].as_u64().unwrap())
        .collect();
    let sent_at: Vec<u64> = posted
        .iter()
        .map(|p| EPOCH_MS as u64 + (p.at - posted[0].at).as_millis() as u64 + 100)
        .collect();
    assert_eq!(times, sent_at, "each attempt carries its own time_ms");
    let signer = crate::pusher::Signer::new("k1", "s1");
    for p in posted.iter() {
        assert_eq!(
            p.headers["x-pusher-signature"].to_str().unwrap(),
            signer.webhook_signature(&p.body),
            "each attempt signed over its own body"
        );
    }
    drop(posted);
    assert_eq!(run.counters.failed_of("1"), 4);
    assert_eq!(run.counters.dropped_of(Dropped::Retries), 2);
    assert_eq!(run.counters.sent_of("1"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_counts_as_sent() {
    let recorder = Recorder::new(ONE_APP, Answer::Status(200));
    recorder
        .script
        .lock()
        .extend([Answer::Status(503), Answer::Status(404)]);
    let run = Running::start(recorder, Terms::default()).await;
    run.report(occupied("a"));
    wait(10_000).await;
    assert_eq!(run.recorder.posted(), 3);
    assert_eq!(run.counters.sent_of("1"), 1);
    assert_eq!(run.counters.failed_of("1"), 2);
    assert_eq!(run.counters.dropped_of(Dropped::Retries), 0);
}

#[tokio::test(start_paused = true)]
async fn an_application_that_never_answers_holds_a_bounded_backlog() {
    let terms = Terms {
        in_flight: 1,
        backlog: 300,
        batch: super::BatchTerms {
            events: 1,
            ..Terms::default().batch
        },
        ..Terms::default()
    };
    let run = Running::start(Recorder::new(ONE_APP, Answer::Never), terms).await;
    for i in 0..20 {
        run.report(occupied(&format!("channel-{i}")));
    }
    wait(1000).await;
    assert_eq!(
        run.recorder.posted(),
        1,
        "one request in flight, never answered"
    );
    let dropped = run.counters.dropped_of(Dropped::Backlog);
    // Each body is ~75 bytes: at most four wait within 300 bytes.
    assert!((15..=16).contains(&dropped), "{dropped} dropped");
    // The reports themselves never waited.
    assert_eq!(run.events.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_reload_applies_to_requests_on_their_way() {
    let recorder = Recorder::new(ONE_APP, Answer::Status(200));
    recorder.script.lock().push_back(Answer::Status(500));
    let run = Running::start(recorder, Terms::default()).await;
    run.report(occupied("a"));
    wait(200).await;
    assert_eq!(run.recorder.posted(), 1);
    *run.recorder.apps.lock() = Arc::new(apps(
        "apps:\n  - { id: 1, key: k2, secret: s2, webhook: { url: /hook } }\n",
    ));
    wait(1000).await;
    {
        let posted = run.recorder.posted.lock();
        assert_eq!(posted.len(), 2);
        assert_eq!(
            posted[1].headers["x-pusher-key"], "k2",
            "signed with the key in force"
        );
        let signer = crate::pusher::Signer::new("k2", "s2");
        assert_eq!(
            posted[1].headers["x-pusher-signature"].to_str().unwrap(),
            signer.webhook_signature(&posted[1].body)
        );
    }
    // An app whose webhook is gone: its waiting events are given up.
    run.recorder.script.lock().push_back(Answer::Status(500));
    run.report(occupied("b"));
    wait(200).await;
    *run.recorder.apps.lock() = Arc::new(apps("apps:\n  - { id: 1, key: k2, secret: s2 }\n"));
    wait(2000).await;
    assert_eq!(run.recorder.posted(), 3);
    assert_eq!(run.counters.dropped_of(Dropped::Unconfigured), 1);
}

#[tokio::test(start_paused = true)]
async fn events_the_connections_could_not_queue_are_counted() {
    let recorder = Recorder::new(ONE_APP, Answer::Status(200));
    // Lost before the sender started (no app had a webhook): nobody's loss.
    recorder
        .unqueued
        .store(2, std::sync::atomic::Ordering::Relaxed);
    let run = Running::start(recorder, Terms::default()).await;
    wait(1).await;
    run.recorder
        .unqueued
        .store(7, std::sync::atomic::Ordering::Relaxed);
    run.report(occupied("a"));
    wait(200).await;
    assert_eq!(run.counters.dropped_of(Dropped::QueueFull), 5);
}

#[tokio::test(start_paused = true)]
async fn what_was_reported_before_the_sender_started_is_not_sent() {
    let events = AppEvents::default();
    let app: Arc<str> = "1".into();
    events.send(&app, occupied("stale"));
    let recorder = Recorder::new(ONE_APP, Answer::Status(200));
    tokio::spawn(run(
        events.take_receiver().unwrap(),
        recorder.clone(),
        WebhookCounters::default(),
        Terms::default(),
    ));
    wait(1).await;
    events.send(&app, occupied("fresh"));
    wait(200).await;
    let posted = recorder.posted.lock();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].json()["events"][0]["channel"], "fresh");
}

/// A failing request holds its app's later ones: the application sees
/// the events in the order they happened, however many attempts it took.
/// Another app's requests do not wait for it.
#[tokio::test(start_paused = true)]
async fn a_retried_request_keeps_its_place_before_the_apps_later_ones() {
    let yaml = "apps:\n  - { id: 1, key: k1, secret: s1, webhook: { url: /hook } }\n  - { id: 2, key: k2, secret: s2, webhook: { url: /hook } }\n";
    let recorder = Recorder::new(yaml, Answer::Status(200));
    recorder.script.lock().push_back(Answer::Status(500));
    let run = Running::start(recorder, Terms::default()).await;
    let t0 = Instant::now();
    run.report(occupied("a"));
    wait(150).await;
    run.report(AppEvent::MemberAdded {
        channel: "presence-a".into(),
        user_id: "u".into(),
    });
    run.events.send(&"2".into(), occupied("other"));
    wait(10_000).await;
    let posted = run.recorder.posted.lock();
    let seen: Vec<(String, Vec<String>, Duration)> = posted
        .iter()
        .map(|p| {
            (
                p.headers["x-pusher-key"].to_str().unwrap().to_owned(),
                p.names(),
                p.at - t0,
            )
        })
        .collect();
    let ms = Duration::from_millis;
    let occupied_ = || vec!["channel_occupied".to_owned()];
    let expected: Vec<(String, Vec<String>, Duration)> = vec![
        ("k1".into(), occupied_(), ms(100)),
        ("k2".into(), occupied_(), ms(250)),
        ("k1".into(), occupied_(), ms(1100)),
        ("k1".into(), vec!["member_added".into()], ms(1100)),
    ];
    assert_eq!(seen, expected);
}

/// `webhook.events` is read again at each attempt: a reload that stops an
/// event type stops the waiting events of that type too.
#[tokio::test(start_paused = true)]
async fn a_waiting_request_sends_only_what_the_app_still_wants() {
    let recorder = Recorder::new(ONE_APP, Answer::Status(200));
    recorder.script.lock().push_back(Answer::Status(500));
    let run = Running::start(recorder, Terms::default()).await;
    run.report(occupied("a"));
    run.report(AppEvent::MemberAdded {
        channel: "presence-a".into(),
        user_id: "u".into(),
    });
    wait(200).await;
    *run.recorder.apps.lock() = Arc::new(apps(
        "apps:\n  - { id: 1, key: k1, secret: s1, webhook: { url: /hook, events: [member_added] } }\n",
    ));
    wait(2000).await;
    let posted = run.recorder.posted.lock();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[0].names(), ["channel_occupied", "member_added"]);
    assert_eq!(posted[1].names(), ["member_added"]);
    drop(posted);
    assert_eq!(run.counters.sent_of("1"), 1);
}
