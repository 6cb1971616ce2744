//! The webhook sender: the one task that turns what Pusher connections
//! report (`AppEvents`) into signed requests to each app's `webhook.url`.
//!
//! It keeps Pusher's promises to the application: events in batches
//! (`{"time_ms":…,"events":[…]}`, a short window, bounded in count and
//! bytes), signed with `X-Pusher-Key` / `X-Pusher-Signature` so the official
//! libraries' validators accept them, `channel_vacated` held three seconds
//! and forgotten if the channel is occupied again within them
//! (`outbox.rs`), and a refused or unanswered request retried
//! with a growing backoff, a bounded number of times, with a bounded number
//! of bytes waiting. It never blocks delivery: connections only put events
//! on a queue that drops (and counts) when this task falls behind.
//!
//! Each app's requests go in order, one at a time (`lines.rs`): a request
//! being retried holds the app's later ones, so a `channel_occupied`
//! retried can never land after the `channel_vacated` that followed it.
//! Every attempt writes the body again with its own `time_ms` and signs it
//! (the libraries' validators refuse a body minutes old).
//!
//! Which events an app wants, its key and secret, its URL and upstream are
//! read from the settings in force each time they are needed
//! ([`Destination`]): when an event happens and again at each attempt, so
//! a reload applies to events already on their way.

mod lines;
mod outbox;
mod render;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::{App, AppEvent, AppEventReceiver};
use crate::metrics::pusher_webhook::{Dropped, WebhookCounters};
use crate::upstream::Upstream;
use lines::{Lines, Request};
use outbox::{Batch, BatchLimits, Batches, Held};
use render::render;

/// Where the sender's requests go, as the settings in force say.
pub trait Destination: Send + Sync + 'static {
    /// The app `id`, when it exists and has a webhook.
    fn app(&self, id: &str) -> Option<Arc<App>>;
    /// Sends one signed body to `app`'s webhook; the answer's status, or
    /// why there was none.
    fn post(
        &self,
        app: &App,
        headers: HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, Result<StatusCode, String>>;
    /// Events connections could not queue so far (`AppEvents::dropped`).
    fn unqueued(&self) -> u64;
    /// Milliseconds since the Unix epoch, for a body's `time_ms`.
    fn unix_ms(&self) -> u128 {
        unix_ms()
    }
}

/// How much is held and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Terms {
    /// How long a `channel_vacated` waits for the occupied that cancels it.
    pub hold: Duration,
    pub batch: BatchTerms,
    /// Attempts of one request before its events are given up.
    pub attempts: u32,
    /// The wait before the first retry; each next one doubles, up to
    /// `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Bytes of bodies waiting to be sent or retried; past it the oldest
    /// requests are given up.
    pub backlog: usize,
    /// Requests in flight at once, over all apps.
    pub in_flight: usize,
}

/// A batch's window and bounds.
#[derive(Clone, Copy, Debug)]
pub struct BatchTerms {
    pub window: Duration,
    pub events: usize,
    pub bytes: usize,
}

impl Default for Terms {
    fn default() -> Terms {
        Terms {
            hold: Duration::from_secs(3),
            batch: BatchTerms {
                window: Duration::from_millis(100),
                events: 100,
                bytes: 256 * 1024,
            },
            attempts: 8,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            backlog: 8 * 1024 * 1024,
            in_flight: 4,
        }
    }
}

type Sending = BoxFuture<'static, (Request, Result<StatusCode, String>)>;

/// Runs until the app events' senders are gone (the gateway's state is
/// dropped) or the task is dropped at the end of the drain.
pub async fn run<D: Destination>(
    mut events: AppEventReceiver,
    destination: D,
    counters: WebhookCounters,
    terms: Terms,
) {
    // What was reported before any app had a webhook was for nobody, and
    // what could not be queued then is no webhook's loss.
    while events.try_recv().is_ok() {}
    let mut sender = Sender {
        held: Held::new(terms.hold),
        batches: Batches::new(BatchLimits {
            window: terms.batch.window,
            events: terms.batch.events,
            bytes: terms.batch.bytes,
        }),
        lines: Lines::new(terms.backlog),
        in_flight: FuturesUnordered::new(),
        unqueued_seen: destination.unqueued(),
        destination,
        counters,
        terms,
    };
    loop {
        let now = Instant::now();
        sender.step(now);
        let wake = sender.next_wake();
        // Not biased: a flood of reports must not starve the answers.
        tokio::select! {
            got = events.recv() => match got {
                Some((app, event)) => sender.take(app, event, Instant::now()),
                None => return,
            },
            Some((request, answer)) = sender.in_flight.next(), if !sender.in_flight.is_empty() => {
                sender.answered(request, answer, Instant::now());
            }
            _ = sleep_until(wake) => {}
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Sender<D> {
    destination: D,
    counters: WebhookCounters,
    terms: Terms,
    held: Held,
    batches: Batches,
    /// Each app's requests waiting to be sent, retried or answered.
    lines: Lines,
    in_flight: FuturesUnordered<Sending>,
    unqueued_seen: u64,
}

impl<D: Destination> Sender<D> {
    /// A reported event: held, cancelled or on its way into a batch.
    fn take(&mut self, app: Arc<str>, event: AppEvent, now: Instant) {
        if self.destination.app(&app).is_none() {
            return;
        }
        if let Some(event) = self.held.report(app.clone(), event, now) {
            self.admit(&app, event, now);
        }
        let dropped = self.held.take_dropped();
        if dropped > 0 {
            self.counters.dropped(Dropped::Held, dropped);
        }
    }

    /// An event to send: into its app's batch when the app still wants it.
    fn admit(&mut self, app: &Arc<str>, event: AppEvent, now: Instant) {
        let Some(config) = self.destination.app(app) else {
            return;
        };
        let rendered = render(&event);
        if !wants(&config, rendered.name) {
            return;
        }
        if let Some(full) = self.batches.add(app, rendered, now) {
            self.enqueue(full);
        }
    }

    /// Everything whose time has come: held leaves, closed batches,
    /// requests to (re)send while there is room in flight.
    fn step(&mut self, now: Instant) {
        for (app, event) in self.held.release(now) {
            self.admit(&app, event, now);
        }
        for batch in self.batches.due(now) {
            self.enqueue(batch);
        }
        while self.in_flight.len() < self.terms.in_flight {
            let Some(request) = self.lines.next(now) else {
                break;
            };
            let app = request.app.clone();
            if !self.send(request) {
                self.lines.done(&app);
            }
        }
        let unqueued = self.destination.unqueued();
        if unqueued > self.unqueued_seen {
            self.counters
                .dropped(Dropped::QueueFull, unqueued - self.unqueued_seen);
            self.unqueued_seen = unqueued;
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let next_request = (self.in_flight.len() < self.terms.in_flight)
            .then(|| self.lines.next_due(Instant::now()))
            .flatten();
        [self.held.next_due(), self.batches.next_due(), next_request]
            .into_iter()
            .flatten()
            .min()
    }

    fn enqueue(&mut self, batch: Batch) {
        let gone = self.lines.push(batch.app, batch.events);
        self.given_up(gone);
    }

    /// Counts and logs the requests the backlog could not keep.
    fn given_up(&mut self, gone: Vec<Request>) {
        for request in gone {
            let events = request.events.len();
            self.counters.dropped(Dropped::Backlog, events as u64);
            tracing::warn!(app = %request.app, events, "pusher webhook backlog full; oldest events dropped");
        }
    }

    /// Writes the body of the events the app still wants with this
    /// attempt's `time_ms`, signs it with the app's key as it is now and
    /// sends it; false when nothing was sent.
    fn send(&mut self, mut request: Request) -> bool {
        let Some(app) = self.destination.app(&request.app) else {
            self.counters
                .dropped(Dropped::Unconfigured, request.events.len() as u64);
            return false;
        };
        request.events.retain(|e| wants(&app, e.name));
        if request.events.is_empty() {
            return false;
        }
        let body = Bytes::from(render::body(
            self.destination.unix_ms(),
            request.events.iter(),
        ));
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let signed = [
            ("x-pusher-key", app.signer.key().to_owned()),
            ("x-pusher-signature", app.signer.webhook_signature(&body)),
        ];
        for (name, value) in signed {
            match HeaderValue::from_str(&value) {
                Ok(value) => {
                    headers.insert(HeaderName::from_static(name), value);
                }
                Err(_) => {
                    self.counters
                        .dropped(Dropped::Unconfigured, request.events.len() as u64);
                    return false;
                }
            }
        }
        request.attempts += 1;
        let post = self.destination.post(&app, headers, body);
        self.in_flight
            .push(Box::pin(async move { (request, post.await) }));
        true
    }

    /// A 2xx counts the events sent and lets the app's next request go;
    /// anything else keeps the request at the front of its app's line, to
    /// be tried again later, until the attempts run out.
    fn answered(&mut self, request: Request, answer: Result<StatusCode, String>, now: Instant) {
        let app = request.app.clone();
        let events = request.events.len() as u64;
        let why = match answer {
            Ok(status) if status.is_success() => {
                self.counters.sent(&app, events);
                self.lines.done(&app);
                return;
            }
            Ok(status) => status.to_string(),
            Err(e) => e,
        };
        self.counters.failed(&app);
        if request.attempts >= self.terms.attempts {
            self.counters.dropped(Dropped::Retries, events);
            tracing::warn!(%app, events, attempts = request.attempts, answer = %why, "pusher webhook given up");
            self.lines.done(&app);
            return;
        }
        tracing::debug!(%app, attempts = request.attempts, answer = %why, "pusher webhook failed; retrying");
        let at = now + self.backoff(request.attempts);
        let gone = self.lines.retry(request, at);
        self.given_up(gone);
    }

    /// The wait after the `attempts`th failed attempt.
    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .terms
            .backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        doubled.min(self.terms.max_backoff)
    }
}

/// Whether `app` wants events named `name` sent to its webhook.
fn wants(app: &App, name: &str) -> bool {
    app.config
        .webhook
        .as_ref()
        .is_some_and(|hook| hook.events.iter().any(|e| e == name))
}

/// Milliseconds since the Unix epoch, for `time_ms`.
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The most of a webhook answer's body read, and only what has already
/// arrived with its head: it is not used, and read only so a short answer
/// leaves its connection reusable.
const ANSWER_DRAIN: usize = 64 * 1024;

/// How a webhook body reaches the application: a POST to `url` on
/// `upstream`, decided on its status line alone. Pusher's contract is the
/// status: a 2xx whose body is large or slow is still a success, and its
/// events are not sent again.
pub async fn post_through(
    upstream: Upstream,
    url: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, String> {
    upstream
        .call_status(http::Method::POST, &url, headers, body, ANSWER_DRAIN)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
