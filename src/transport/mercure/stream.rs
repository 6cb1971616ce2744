//! One Mercure subscriber's stream: the hub channel's messages, kept when
//! one of the update's topics matches one of the subscriber's selectors
//! and, for a private update, one of its token's subscribe rights, written
//! as the SSE event the first subscriber rendered for everyone
//! (`mercure/update.rs`).
//!
//! Replayed updates pass the same filter as live ones, under the token of
//! this connection. The stream ends when the token expires, when the
//! gateway stops (with `retry:` so browsers come back soon), when an
//! operator disconnects it, or when the client is too slow for its queue
//! (its inbox is evicted and, on HTTP/1, the connection cut, as for
//! pushgate's SSE; on HTTP/2 only the stream ends: `subscribe.rs`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Response, header};
use url::Url;

use crate::alarm::Listener;
use crate::conn_info::ConnKill;
use crate::limits::ConnectionSlot;
use crate::mercure::claims::Rights;
use crate::mercure::selector::Selectors;
use crate::mercure::update;
use crate::model::TopicUpdate;
use crate::reply::Body;
use crate::state::{AppState, Gauge};
use crate::transport::session::{Delivery, Session};
use crate::transport::sse::{Chunks, stream_response};

/// What a subscriber receives.
pub(super) struct Filter {
    pub(super) selectors: Selectors,
    /// The token's rights; None for an anonymous subscriber.
    pub(super) rights: Option<Rights>,
    /// The hub's URL, for relative topics.
    pub(super) base: Url,
}

impl Filter {
    fn wants(&self, u: &TopicUpdate) -> bool {
        let topics = || u.topics.iter().map(|t| &**t);
        if !self.selectors.matches_any(topics(), &self.base) {
            return false;
        }
        !u.private
            || self
                .rights
                .as_ref()
                .is_some_and(|r| r.subscribe.matches_any(topics(), &self.base))
    }
}

pub(super) struct MercureStream {
    state: AppState,
    session: Session,
    out: Vec<Delivery>,
    filter: Filter,
    expires: Option<tokio::time::Instant>,
    buf: BytesMut,
    tick: tokio::time::Interval,
    stopping: Listener,
    started: bool,
    done: bool,
    reason: &'static str,
    _registration: crate::connections::Registration,
    _slot: ConnectionSlot,
    _gauge: Gauge,
    /// Its subscriptions, listed and announced (`mercure.subscriptions`).
    _announced: Option<super::subscriptions::Announced>,
}

impl MercureStream {
    pub(super) fn new(
        state: AppState,
        session: Session,
        out: Vec<Delivery>,
        filter: Filter,
        expires: Option<SystemTime>,
        kill: ConnKill,
        slot: ConnectionSlot,
    ) -> MercureStream {
        session.inbox().link_eviction(kill.0);
        let subject = filter.rights.as_ref().and_then(|r| r.subject.clone());
        let registration = state.connections.register(
            state.stats.conn_id(),
            subject.as_deref(),
            "mercure",
            session.inbox(),
        );
        state.metrics.connect("mercure");
        let heartbeat = state.settings().config.realtime.heartbeat;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expires = expires.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        MercureStream {
            _gauge: Gauge::enter(&state.stats, |s| &s.sse),
            stopping: state.lifecycle.stopping().listen_from_start(),
            state,
            session,
            out,
            filter,
            expires,
            buf: BytesMut::new(),
            tick,
            started: false,
            done: false,
            reason: "client",
            _registration: registration,
            _slot: slot,
            _announced: None,
        }
    }

    /// Keep `announced` for the stream's life.
    pub(super) fn announced(mut self, announced: Option<super::subscriptions::Announced>) -> Self {
        self._announced = announced;
        self
    }

    /// The stream as a `text/event-stream` response.
    pub(super) fn into_response(self, span: tracing::Span) -> Response<Body> {
        let chunks: Chunks = Box::pin(
            futures_util::stream::unfold(self, |mut s| async move {
                let chunk = s.next_chunk().await?;
                Some((chunk, s))
            })
            .fuse(),
        );
        let headers: Vec<(HeaderName, HeaderValue)> = vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ];
        stream_response(chunks, span, headers)
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            // Sent at once, so the browser's EventSource opens.
            self.buf.extend_from_slice(b":\n\n");
        }
        let inbox = self.session.inbox().clone();
        loop {
            if !self.out.is_empty() {
                self.render();
            }
            if !self.buf.is_empty() {
                return Some(std::mem::take(&mut self.buf).freeze());
            }
            if self.done || inbox.is_kicked() || inbox.is_evicted() {
                if inbox.is_kicked() {
                    self.reason = "operator";
                }
                return None;
            }
            if self.session.is_replaying() && !self.state.lifecycle.stopping().has_rung() {
                if let Err(error) = self.session.replay_next(&mut self.out).await {
                    tracing::debug!(%error, "replay failed");
                    self.reason = "unavailable";
                    return None;
                }
                continue;
            }
            let expiry = async {
                match self.expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stopping.rung() => {
                    let _ = write!(self.buf, "retry: 500\n\n");
                    self.done = true;
                    self.reason = "shutdown";
                }
                _ = expiry => {
                    self.done = true;
                    self.reason = "token_expired";
                }
                _ = inbox.ready() => self.session.drain(&mut self.out),
                _ = self.tick.tick() => self.buf.extend_from_slice(b":\n\n"),
            }
        }
    }

    /// Write the updates this subscriber may see; every message moves the
    /// session's place, seen or not.
    fn render(&mut self) {
        let mut delivered = 0;
        for item in std::mem::take(&mut self.out) {
            if !self.session.advance(&item) {
                continue;
            }
            let Delivery::Message(m) = &item else {
                continue;
            };
            if let Some(u) = update::of(m) {
                if self.filter.wants(u) {
                    self.buf.extend_from_slice(u.frame.as_bytes());
                    delivered += 1;
                }
            }
        }
        self.state.count_delivered(delivered);
    }
}

impl Drop for MercureStream {
    fn drop(&mut self) {
        if self.session.inbox().is_evicted() {
            self.reason = "slow_client";
            self.state.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        self.state.metrics.disconnect("mercure", self.reason);
    }
}
