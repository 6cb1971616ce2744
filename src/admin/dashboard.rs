//! The live dashboard on the admin listener: `GET /dashboard` (one embedded
//! page, no external assets) and `GET /dashboard/events`, an SSE stream of
//! one JSON snapshot per second.
//!
//! Snapshots are computed per watcher from counters the gateway keeps anyway
//! (stats, metrics, the hub), so nothing is sampled or stored while nobody is
//! looking; rates and latency quantiles are differences between two reads.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::metrics::window::Snapshot;
use crate::metrics::{KindLabel, Metrics};
use crate::reply::{self, Body};
use crate::state::{AppState, Stats};

const PAGE: &str = include_str!("../../assets/dashboard.html");

/// How often a snapshot is sent.
const PERIOD: Duration = Duration::from_secs(1);

/// Channels listed in "most subscribers".
const TOP_CHANNELS: usize = 8;

/// Every rate-limit label the gateway counts refusals under.
const LIMIT_KINDS: [&str; 7] = [
    "messages",
    "subscribes",
    "connects",
    "publish",
    "connections",
    "max_connections",
    "session_checks",
];

/// The headers to check admin auth against. A browser opening the dashboard
/// cannot set `Authorization`, so on `/dashboard` paths an admin key may come
/// as `?key=` instead (the page then sends it as a header itself).
pub fn auth_headers<B>(req: &http::Request<B>) -> std::borrow::Cow<'_, http::HeaderMap> {
    let headers = req.headers();
    if !req.uri().path().starts_with("/dashboard") || headers.contains_key(header::AUTHORIZATION) {
        return std::borrow::Cow::Borrowed(headers);
    }
    let key = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| (k == "key").then_some(v))
    });
    match key.and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok()) {
        Some(value) => {
            let mut with_key = headers.clone();
            with_key.insert(header::AUTHORIZATION, value);
            std::borrow::Cow::Owned(with_key)
        }
        None => std::borrow::Cow::Borrowed(headers),
    }
}

/// `GET /dashboard`.
pub fn page() -> Response<Body> {
    let mut r = Response::new(reply::full(PAGE));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page is self-contained: forbid it from loading anything else.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    r
}

/// `GET /dashboard/events`: a snapshot at once, then one per second until
/// the watcher leaves or the gateway drains.
pub fn events(state: AppState) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let shutdown = state.lifecycle.draining().clone();
    state.lifecycle.tasks().clone().spawn(async move {
        let mut sampler = Sampler::default();
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {}
            }
            let frame = format!("data: {}\n\n", sampler.sample(&state));
            if tx.send(Bytes::from(frame)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(reply::channel_body(rx));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Cumulative counters at one instant.
#[derive(Clone)]
struct Reading {
    at: Instant,
    published: u64,
    delivered: u64,
    limited: u64,
    evicted: u64,
    latency: Snapshot,
}

impl Reading {
    fn take(stats: &Stats, metrics: &Metrics) -> Reading {
        use std::sync::atomic::Ordering::Relaxed;
        Reading {
            at: Instant::now(),
            published: stats.published.load(Relaxed),
            delivered: stats.delivered.load(Relaxed),
            limited: LIMIT_KINDS
                .iter()
                .filter_map(|&kind| {
                    metrics
                        .rate_limited
                        .get(&KindLabel { kind })
                        .map(|c| c.get())
                })
                .sum(),
            evicted: stats.evicted.load(Relaxed),
            latency: metrics.delivery_window.snapshot(),
        }
    }
}

/// Turns successive readings into per-second figures.
#[derive(Default)]
struct Sampler {
    last: Option<Reading>,
}

impl Sampler {
    fn sample(&mut self, state: &AppState) -> Value {
        let now = Reading::take(&state.stats, &state.metrics);
        let snapshot = snapshot(state, &now, self.last.as_ref());
        self.last = Some(now);
        snapshot
    }
}

/// Each Pusher app's connections (and cap), events in and out, and webhook
/// events sent and failed.
fn apps(state: &AppState) -> Vec<Value> {
    let settings = state.settings();
    settings
        .pusher
        .iter()
        .map(|app| {
            let (connections, sent, received) = state.metrics.pusher.reading(&app.id);
            let (hooks_sent, hooks_failed) = state.metrics.pusher_webhook.reading(&app.id);
            json!({
                "app": &*app.id,
                "connections": connections,
                "max_connections": app.config.max_connections,
                "messages_in": received,
                "messages_out": sent,
                "webhooks_sent": hooks_sent,
                "webhooks_failed": hooks_failed,
            })
        })
        .collect()
}

/// One dashboard frame. Rates are over the interval since `prev` (zero for
/// the first frame, which has nothing to compare with).
fn snapshot(state: &AppState, now: &Reading, prev: Option<&Reading>) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &state.stats;
    let secs = prev.map_or(0.0, |p| now.at.duration_since(p.at).as_secs_f64());
    let rate = |pick: fn(&Reading) -> u64| match prev {
        Some(p) if secs > 0.0 => pick(now).saturating_sub(pick(p)) as f64 / secs,
        _ => 0.0,
    };
    let delta = |pick: fn(&Reading) -> u64| prev.map_or(0, |p| pick(now).saturating_sub(pick(p)));
    let window = match prev {
        Some(p) => now.latency.since(&p.latency),
        None => Snapshot::default(),
    };
    let round = |v: Option<f64>| v.map(|ms| (ms * 1000.0).round() / 1000.0);
    let top: Vec<Value> = state
        .hub
        .busiest(TOP_CHANNELS)
        .into_iter()
        .map(|(name, n)| json!({"channel": &*name, "subscribers": n}))
        .collect();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "time": unix_ms,
        "connections": {
            "ws": s.ws.load(Relaxed),
            "sse": s.sse.load(Relaxed),
            "poll": s.poll.load(Relaxed),
            "tcp": s.connections.load(Relaxed),
        },
        "channels": state.hub.channel_count(),
        "upstreams": state.settings().upstreams.snapshot(),
        "apps": apps(state),
        "rates": {
            "published_per_s": rate(|r| r.published),
            "delivered_per_s": rate(|r| r.delivered),
        },
        "latency_ms": {
            "p50": round(window.quantile_ms(0.5)),
            "p99": round(window.quantile_ms(0.99)),
            "samples": window.count(),
        },
        "refusals": {
            "rate_limited": delta(|r| r.limited),
            "slow_disconnects": delta(|r| r.evicted),
        },
        "totals": {
            "published": now.published,
            "delivered": now.delivered,
            "rate_limited": now.limited,
            "slow_disconnects": now.evicted,
        },
        "top_channels": top,
    })
}
