//! Counters of the Pusher apps' webhooks: events the application took,
//! requests it refused or never answered, and events given up, by why.
//! Kept apart from the other metrics so the webhook sender has one small
//! thing to count into.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub reason: &'static str,
}

/// Why webhook events were given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The connections' queue to the sender was full (`AppEvents`).
    QueueFull,
    /// Every attempt of the request carrying them failed.
    Retries,
    /// Requests waiting to be sent or retried held too many bytes; the
    /// oldest went.
    Backlog,
    /// Their app, or its webhook, was gone from the configuration when
    /// they were due.
    Unconfigured,
    /// Too many `channel_vacated` were held back at once; the oldest went.
    Held,
}

impl Dropped {
    fn reason(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::Retries => "retries",
            Dropped::Backlog => "backlog",
            Dropped::Unconfigured => "unconfigured",
            Dropped::Held => "held",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct WebhookCounters {
    sent: Family<AppLabel, Counter>,
    failed: Family<AppLabel, Counter>,
    dropped: Family<DropLabel, Counter>,
}

impl WebhookCounters {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "pusher_webhook_events_sent",
            "Pusher webhook events the application answered 2xx for, by app",
            self.sent.clone(),
        );
        r.register(
            "pusher_webhook_failures",
            "Pusher webhook requests answered with a non-2xx status or not at all, by app (each attempt)",
            self.failed.clone(),
        );
        r.register(
            "pusher_webhook_events_dropped",
            "Pusher webhook events given up, by reason",
            self.dropped.clone(),
        );
    }

    fn label(app: &str) -> AppLabel {
        AppLabel {
            app: app.to_owned(),
        }
    }

    pub fn sent(&self, app: &str, events: u64) {
        self.sent.get_or_create(&Self::label(app)).inc_by(events);
    }

    /// `app`'s webhook events sent and requests failed, for the dashboard.
    pub fn reading(&self, app: &str) -> (u64, u64) {
        let label = Self::label(app);
        (
            self.sent.get_or_create(&label).get(),
            self.failed.get_or_create(&label).get(),
        )
    }

    pub fn failed(&self, app: &str) {
        self.failed.get_or_create(&Self::label(app)).inc();
    }

    pub fn dropped(&self, why: Dropped, events: u64) {
        self.dropped
            .get_or_create(&DropLabel {
                reason: why.reason(),
            })
            .inc_by(events);
    }

    /// Events of `app` sent so far (for tests and the dashboard).
    pub fn sent_of(&self, app: &str) -> u64 {
        self.sent.get_or_create(&Self::label(app)).get()
    }

    pub fn failed_of(&self, app: &str) -> u64 {
        self.failed.get_or_create(&Self::label(app)).get()
    }

    pub fn dropped_of(&self, why: Dropped) -> u64 {
        self.dropped
            .get_or_create(&DropLabel {
                reason: why.reason(),
            })
            .get()
    }
}
