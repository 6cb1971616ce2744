//! Prometheus metrics (`GET /metrics` on the admin listener).
//!
//! One registry per gateway, filled by cheap atomic updates on the hot paths
//! and encoded only when scraped. Live gauges (connections per transport,
//! channels) are read from the counters the gateway already keeps, at scrape
//! time, so nothing is counted twice.

mod atomic_histogram;
pub use atomic_histogram::AtomicHistogram;
pub mod deflate;
pub mod pusher;
pub mod pusher_webhook;
mod shards;
pub mod stats;
pub mod window;

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use stats::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

/// Where buffered bytes are held: `memory` or `disk`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    pub store: &'static str,
}

/// A WebSocket's endpoint (`ws`, `pusher`, `proxied`) and the HTTP version
/// that carried its handshake (`1.1`, `2`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebSocketLabels {
    pub transport: &'static str,
    pub http: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DisconnectLabels {
    pub transport: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// A serving loop's state: `running`, `stalled` or `dead`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

/// A Pusher HTTP API answer: the app (its id, or `unknown`) and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PusherApiLabels {
    pub app: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Where a resume had got to (`pushgate_resume_seconds`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

/// A histogram of resume stages: 1 ms .. ~190 s in steps of 1.5x, fine
/// enough to read a storm's percentiles back from the buckets.
fn resume_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.001, 1.5, 31),
    )
}

/// Delivery latency buckets, 50 µs to 5 s, 1-1.5-2-3-5-7 per decade: each
/// bound at most 1.5x the one before, so a quantile read from them (as
/// `pushgate bench` does for a run) is bounded within that factor.
const DELIVERY_BOUNDS: [f64; 31] = [
    0.00005, 0.00007, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003,
    0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5,
    2.0, 3.0, 5.0,
];

pub struct Metrics {
    registry: Registry,
    connections: Family<TransportLabel, Gauge>,
    tcp_connections: Gauge,
    tcp_connections_queued: Gauge,
    /// The public listener's serving loops by state.
    serving_loops: Family<StateLabel, Gauge>,
    channels: Gauge,
    /// Proxied bodies held by request and answer buffering, by where.
    buffered: Family<StoreLabel, Gauge>,
    pub connects: Family<TransportLabel, Counter>,
    websocket_connects: Family<WebSocketLabels, Counter>,
    pub disconnects: Family<DisconnectLabels, Counter>,
    pub published: Counter,
    pub delivered: Counter,
    pub dropped: Family<ReasonLabel, Counter>,
    delivery_latency: AtomicHistogram,
    pub history: Family<ResultLabel, Counter>,
    /// Seconds from a resuming connection's accept to each stage of its
    /// resume (observed once per resume and stage: a mutex is cheap here).
    resume: Family<
        StageLabel,
        prometheus_client::metrics::histogram::Histogram,
        fn() -> prometheus_client::metrics::histogram::Histogram,
    >,
    pub rate_limited: Family<KindLabel, Counter>,
    pub auth_failures: Family<ReasonLabel, Counter>,
    /// Questions sent to the application's login (`session`) and resource
    /// URLs (`resource`), by outcome; answers from the cache are not counted.
    app_checks: Family<CheckLabels, Counter>,
    proxied: Family<ClassLabel, Counter>,
    /// `proxied` by status class (1xx..5xx), looked up once: every proxied
    /// request counts in one, and a family lookup takes a lock and a hash.
    proxied_by_class: [Counter; 5],
    proxy_latency: AtomicHistogram,
    /// Proxied requests the HTTP/1 relay carried; hyper carried the rest.
    relayed: Counter,
    backend_errors: Family<KindLabel, Counter>,
    pub reloads: Family<ResultLabel, Counter>,
    /// Pusher HTTP API requests by app and status.
    pusher_api: Family<PusherApiLabels, Counter>,
    pub tls_failures: Counter,
    /// Public connections closed for want of a valid PROXY protocol header.
    pub proxy_protocol_refused: Counter,
    /// The most bytes any realtime connection rendered in one batch (what
    /// it held at once before its socket took it).
    batch_peak: Gauge,
    /// Delivery latency again, in buckets the dashboard can read back.
    pub delivery_window: window::LatencyWindow,
    /// Per Pusher app: sockets, events sent and received.
    pub pusher: pusher::PusherMetrics,
    /// What the Pusher apps' webhooks sent, failed and gave up.
    pub pusher_webhook: pusher_webhook::WebhookCounters,
    /// WebSocket compression.
    pub deflate: deflate::DeflateCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("pushgate");
        let proxied: Family<ClassLabel, Counter> = Family::default();
        let proxied_by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|class| proxied.get_or_create(&ClassLabel { class }).clone());
        let m = Metrics {
            connections: Family::default(),
            tcp_connections: Gauge::default(),
            tcp_connections_queued: Gauge::default(),
            serving_loops: Family::default(),
            channels: Gauge::default(),
            buffered: Family::default(),
            connects: Family::default(),
            websocket_connects: Family::default(),
            disconnects: Family::default(),
            published: Counter::default(),
            delivered: Counter::default(),
            dropped: Family::default(),
            // 50µs .. ~3.3s
            delivery_latency: AtomicHistogram::with_bounds(&DELIVERY_BOUNDS),
            history: Family::default(),
            resume: Family::new_with_constructor(resume_histogram),
            rate_limited: Family::default(),
            auth_failures: Family::default(),
            app_checks: Family::default(),
            proxied,
            proxied_by_class,
            proxy_latency: AtomicHistogram::exponential(0.0001, 2.0, 18),
            relayed: Counter::default(),
            backend_errors: Family::default(),
            reloads: Family::default(),
            pusher_api: Family::default(),
            tls_failures: Counter::default(),
            proxy_protocol_refused: Counter::default(),
            batch_peak: Gauge::default(),
            delivery_window: window::LatencyWindow::default(),
            pusher: pusher::PusherMetrics::default(),
            pusher_webhook: Default::default(),
            deflate: Default::default(),
            registry: Registry::default(),
        };
        m.register_realtime(&mut r);
        m.register_proxy(&mut r);
        m.register_gateway(&mut r);
        Metrics { registry: r, ..m }
    }

    /// Realtime delivery: connections, messages, latency, refusals.
    fn register_realtime(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "realtime_connections",
            "Open realtime connections by transport",
            m.connections.clone(),
        );
        r.register(
            "channels",
            "Channels with local subscribers",
            m.channels.clone(),
        );
        r.register(
            "connects",
            "Realtime connections opened",
            m.connects.clone(),
        );
        r.register(
            "websocket_connects",
            "WebSockets opened, by endpoint and the HTTP version that carried them",
            m.websocket_connects.clone(),
        );
        r.register(
            "disconnects",
            "Realtime connections closed, by reason",
            m.disconnects.clone(),
        );
        r.register(
            "messages_published",
            "Messages accepted for publishing",
            m.published.clone(),
        );
        r.register(
            "messages_delivered",
            "Messages written to clients",
            m.delivered.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages not delivered to a connection, by reason",
            m.dropped.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "Time from publish to hand-off to a client's socket",
            m.delivery_latency.clone(),
        );
        r.register(
            "history_replays",
            "Resumes by result (hit: replayed, reset: history gone)",
            m.history.clone(),
        );
        r.register(
            "resume_seconds",
            "Seconds from a resuming connection's accept to each stage of its resume",
            m.resume.clone(),
        );
        r.register("rate_limited", "Refusals by limit", m.rate_limited.clone());
        r.register(
            "auth_failures",
            "Token refusals by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "realtime_batch_peak_bytes",
            "Largest batch of frames one realtime connection rendered before writing it",
            m.batch_peak.clone(),
        );
    }

    /// The proxied road and the application's checks.
    fn register_proxy(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "app_checks",
            "Session and resource checks sent to the application, by outcome",
            m.app_checks.clone(),
        );
        r.register(
            "proxy_requests",
            "Proxied requests by status class",
            m.proxied.clone(),
        );
        r.register(
            "proxy_buffered_bytes",
            "Bytes of proxied request and answer bodies held by buffering, in memory or on disk",
            m.buffered.clone(),
        );
        r.register(
            "proxy_relayed",
            "Proxied requests the HTTP/1 relay carried (the rest went through hyper)",
            m.relayed.clone(),
        );
        r.register(
            "proxy_latency_seconds",
            "Proxied request time to response headers",
            m.proxy_latency.clone(),
        );
        r.register(
            "backend_errors",
            "Backend failures by kind",
            m.backend_errors.clone(),
        );
        r.register(
            "proxy_protocol_refused",
            "Public connections closed without a valid PROXY protocol header (listen.proxy_protocol)",
            m.proxy_protocol_refused.clone(),
        );
    }

    /// The gateway itself: connections, reloads, TLS, fronts, the Pusher parts.
    fn register_gateway(&self, r: &mut Registry) {
        let m = self;
        m.pusher.register(r);
        m.pusher_webhook.register(r);
        m.deflate.register(r);
        r.register(
            "tcp_connections",
            "Open client TCP connections (public and admin)",
            m.tcp_connections.clone(),
        );
        r.register(
            "tcp_connections_queued",
            "Accepted client TCP connections waiting for a serving loop to take them on",
            m.tcp_connections_queued.clone(),
        );
        r.register(
            "serving_loops",
            "Serving loops of the public listener by state: running, stalled (no heartbeat for over 1 s: passed over for new connections) or dead (its thread panicked; not restarted)",
            m.serving_loops.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "pusher_api_requests",
            "Pusher HTTP API requests by app and answer status",
            m.pusher_api.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "Failed TLS handshakes",
            m.tls_failures.clone(),
        );
    }

    /// Prometheus text exposition, with live gauges refreshed from `stats`.
    pub fn encode(&self, stats: &Stats, channels: usize) -> String {
        for (t, n) in [
            ("ws", &stats.ws),
            ("sse", &stats.sse),
            ("poll", &stats.poll),
        ] {
            self.connections
                .get_or_create(&TransportLabel { transport: t })
                .set(n.load(Ordering::Relaxed) as i64);
        }
        self.tcp_connections
            .set(stats.connections.load(Ordering::Relaxed) as i64);
        self.tcp_connections_queued
            .set(stats.queued.load(Ordering::Relaxed) as i64);
        if let Some(loops) = stats.serving_loops.get() {
            let states = loops.states();
            for (state, n) in [
                ("running", states.running),
                ("stalled", states.stalled),
                ("dead", states.dead),
            ] {
                self.serving_loops
                    .get_or_create(&StateLabel { state })
                    .set(n as i64);
            }
        }
        self.channels.set(channels as i64);
        for (store, n) in [
            ("memory", &stats.buffered_memory),
            ("disk", &stats.buffered_disk),
        ] {
            self.buffered
                .get_or_create(&StoreLabel { store })
                .set(n.load(Ordering::Relaxed) as i64);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The HTTP/1 relay took a proxied request.
    pub fn relayed(&self) {
        self.relayed.inc();
    }

    /// A proxied request was answered with `status` after `elapsed`.
    pub fn proxied(&self, status: http::StatusCode, elapsed: Duration) {
        self.proxy_latency.observe(elapsed);
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.proxied_by_class[class].inc();
        let error = match status {
            http::StatusCode::BAD_GATEWAY => "unavailable",
            http::StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ => return,
        };
        self.backend_errors
            .get_or_create(&KindLabel { kind: error })
            .inc();
    }

    pub fn observe_delivery(&self, since_publish: Duration) {
        self.delivery_latency.observe(since_publish);
        self.delivery_window.observe(since_publish);
    }

    pub fn connect(&self, transport: &'static str) {
        self.connects
            .get_or_create(&TransportLabel { transport })
            .inc();
    }

    /// A WebSocket opened on `transport` over HTTP `http` (`1.1` or `2`).
    pub fn websocket_connect(&self, transport: &'static str, http: &'static str) {
        self.websocket_connects
            .get_or_create(&WebSocketLabels { transport, http })
            .inc();
    }

    pub fn disconnect(&self, transport: &'static str, reason: &'static str) {
        self.disconnects
            .get_or_create(&DisconnectLabels { transport, reason })
            .inc();
    }

    pub fn limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&KindLabel { kind }).inc();
    }

    /// A check the application was asked (`kind`: session or resource).
    pub fn app_check(&self, kind: &'static str, outcome: &'static str) {
        self.app_checks
            .get_or_create(&CheckLabels { kind, outcome })
            .inc();
    }

    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A realtime connection rendered `bytes` of frames in one batch.
    pub fn observe_batch(&self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        // Read first: every delivery lands here, and a `fetch_max` that
        // changes nothing still writes the one shared cache line.
        let peak = self.batch_peak.inner();
        if bytes > peak.load(Ordering::Relaxed) {
            peak.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// A Pusher HTTP API request of `app` (None: no such app) was answered
    /// with `status`.
    pub fn pusher_api(&self, app: Option<&str>, status: u16) {
        let app = app.unwrap_or("unknown").to_owned();
        self.pusher_api
            .get_or_create(&PusherApiLabels { app, status })
            .inc();
    }

    /// A resume reached `stage` `since_accept` after its connection was accepted.
    pub fn resume_stage(&self, stage: &'static str, since_accept: Duration) {
        self.resume
            .get_or_create(&StageLabel { stage })
            .observe(since_accept.as_secs_f64());
    }

    pub fn replay(&self, result: &'static str) {
        self.history.get_or_create(&ResultLabel { result }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let m = Metrics::new();
        m.connect("ws");
        m.limited("messages");
        m.observe_delivery(Duration::from_micros(300));
        let text = m.encode(&Stats::default(), 3);
        for name in [
            "pushgate_realtime_connections{transport=\"ws\"} 0",
            "pushgate_connects_total{transport=\"ws\"} 1",
            "pushgate_rate_limited_total{kind=\"messages\"} 1",
            "pushgate_delivery_latency_seconds_count 1",
            // 300 µs lands on a bound, in its bucket; the one below is empty.
            "pushgate_delivery_latency_seconds_bucket{le=\"0.0002\"} 0",
            "pushgate_delivery_latency_seconds_bucket{le=\"0.0003\"} 1",
            "pushgate_delivery_latency_seconds_bucket{le=\"5.0\"} 1",
            "pushgate_channels 3",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
