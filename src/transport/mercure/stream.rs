//! One Mercure subscriber's stream: the hub channel's messages, kept when
//! one of the update's topics matches one of the subscriber's selectors
//! and, for a private update, one of its token's subscribe rights, written
//! as the SSE event the first subscriber rendered for everyone
//! (`mercure/update.rs`).
//!
//! Replayed updates pass the same filter as live ones, under the token of
//! this connection. The stream ends when the token expires, after
//! `mercure.max_stream_life` (a token without `exp` would otherwise be
//! good forever), when a reload leaves its token invalid or anonymous
//! subscribers unwelcome (the token is verified again under the new keys,
//! and its new rights apply from then on), when the gateway stops (with
//! `retry:` so browsers come back soon), when an operator disconnects it,
//! or when the client is too slow for its queue (its inbox is evicted and
//! on HTTP/1, the connection cut, as for
//! pushgate's SSE; on HTTP/2 only the stream ends: `subscribe.rs`).

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use url::Url;

use crate::alarm::Listener;
use crate::limits::ConnectionSlot;
use crate::mercure::claims::Rights;
use crate::mercure::selector::Selectors;
use crate::mercure::update;
use crate::model::TopicUpdate;
use crate::state::{AppState, Gauge};
use crate::transport::session::{Delivery, Session};
use crate::transport::sse::Chunks;
use crate::transport::sse::EvictionKill;

/// What a subscriber receives.
pub(super) struct Filter {
    pub(super) selectors: Selectors,
    /// The token's rights; None for an anonymous subscriber.
    pub(super) rights: Option<Rights>,
    /// The token the rights were read from, verified again at a reload.
    pub(super) token: Option<String>,
    /// The hub's URL, for relative topics.
    pub(super) base: Url,
}

impl Filter {
    fn wants(&self, u: &TopicUpdate) -> bool {
        if !self.selectors.matches_update(u, &self.base) {
            return false;
        }
        !u.private
            || self
                .rights
                .as_ref()
                .is_some_and(|r| r.subscribe.matches_update(u, &self.base))
    }
}

pub(super) struct MercureStream {
    state: AppState,
    session: Session,
    out: Vec<Delivery>,
    filter: Filter,
    /// The token's `exp`, as an instant.
    token_exp: Option<tokio::time::Instant>,
    /// When the stream opened, for `mercure.max_stream_life`.
    opened: tokio::time::Instant,
    /// When the stream ends (the token's `exp` or `mercure.max_stream_life`,
    /// whichever comes first): one timer for the stream's life, moved only
    /// when a reload changes either. Made afresh on every wake-up, it cost
    /// a timer-wheel insert and removal (and a settings load) per delivery.
    expiry: Pin<Box<tokio::time::Sleep>>,
    buf: BytesMut,
    tick: tokio::time::Interval,
    stopping: Listener,
    reloaded: Listener,
    started: bool,
    done: bool,
    reason: &'static str,
    _registration: crate::connections::Registration,
    _slot: ConnectionSlot,
    _gauge: Gauge,
    /// Rung when the stream is evicted; on HTTP/2 it also cuts the
    /// connection if the stream is not read again in time.
    _kill: EvictionKill,
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
        kill: EvictionKill,
        slot: ConnectionSlot,
    ) -> MercureStream {
        session.inbox().link_eviction(kill.alarm());
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
        let opened = tokio::time::Instant::now();
        let token_exp = expires.map(instant_of);
        let (ends, _) = ends_at(opened, max_life(&state), token_exp);
        MercureStream {
            _gauge: Gauge::enter(&state.stats, |s| &s.sse),
            _kill: kill,
            stopping: state.lifecycle.stopping().listen_from_start(),
            reloaded: state.reloaded.listen(),
            state,
            session,
            out,
            filter,
            token_exp,
            opened,
            expiry: Box::pin(tokio::time::sleep_until(ends)),
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

    /// The stream's text, chunk by chunk, for either writer: hyper's
    /// (HTTP/2, and HTTP/1 that hyper serves) or the direct HTTP/1 one.
    pub(super) fn into_chunks(self) -> Chunks {
        Box::pin(
            futures_util::stream::unfold(self, |mut s| async move {
                let chunk = s.next_chunk().await?;
                Some((chunk, s))
            })
            .fuse(),
        )
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            // A reload between the token's check and this stream's reload
            // listener would go unheard: check once against what is in
            // force now.
            if !self.still_allowed() {
                self.reason = "revoked";
                return None;
            }
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
            tokio::select! {
                biased;
                _ = self.stopping.rung() => {
                    // Each client its own delay, as the SSE stream's.
                    let after = crate::transport::resume::come_back_in(self.state.settings().config.realtime.reconnect_spread);
                    let _ = write!(self.buf, "retry: {after}\n\n");
                    self.done = true;
                    self.reason = "shutdown";
                }
                _ = self.expiry.as_mut() => {
                    let (_, token_ends) = self.ends_at();
                    self.done = true;
                    self.reason = if token_ends { "token_expired" } else { "max_life" };
                }
                _ = self.reloaded.rung() => {
                    if self.still_allowed() {
                        // The token's `exp` and `mercure.max_stream_life`
                        // may have changed.
                        let (ends, _) = self.ends_at();
                        self.expiry.as_mut().reset(ends);
                    } else {
                        self.done = true;
                        self.reason = "revoked";
                    }
                }
                _ = inbox.ready() => self.session.drain(&mut self.out),
                _ = self.tick.tick() => self.buf.extend_from_slice(b":\n\n"),
            }
        }
    }

    /// When the stream ends under the settings in force now, and whether
    /// the token's `exp` is what ends it.
    fn ends_at(&self) -> (tokio::time::Instant, bool) {
        ends_at(self.opened, max_life(&self.state), self.token_exp)
    }

    /// Whether this stream may go on under the settings in force: the hub
    /// still exists, an anonymous stream is still welcome, a token still
    /// verifies under the subscriber key (its rights and `exp` are read
    /// again, so a reload that narrows them applies at once).
    fn still_allowed(&mut self) -> bool {
        let settings = self.state.settings();
        let Some(config) = settings.config.mercure.as_ref() else {
            return false;
        };
        let Some(token) = self.filter.token.as_deref() else {
            return config.anonymous;
        };
        let Some(verifier) = settings
            .mercure
            .as_ref()
            .and_then(|k| k.subscriber.as_ref())
        else {
            return false;
        };
        match verifier.verify(token, &self.filter.base) {
            Ok((rights, exp)) => {
                self.filter.rights = Some(rights);
                self.token_exp = exp.map(instant_of);
                true
            }
            Err(error) => {
                tracing::debug!(%error, "Mercure token no longer valid");
                false
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

/// `mercure.max_stream_life` in force now.
fn max_life(state: &AppState) -> Duration {
    state
        .settings()
        .config
        .mercure
        .as_ref()
        .map_or(Duration::ZERO, |m| m.max_stream_life)
}

/// When a stream opened at `opened` ends: after `life`, or at the token's
/// `exp` when that comes first (then also `true`).
fn ends_at(
    opened: tokio::time::Instant,
    life: Duration,
    token_exp: Option<tokio::time::Instant>,
) -> (tokio::time::Instant, bool) {
    let life_ends = opened + life;
    match token_exp {
        Some(exp) if exp <= life_ends => (exp, true),
        _ => (life_ends, false),
    }
}

/// `at` on the runtime's clock.
fn instant_of(at: SystemTime) -> tokio::time::Instant {
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_ends_at_its_life_or_its_tokens_exp_whichever_is_first() {
        let opened = tokio::time::Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(ends_at(opened, hour, None), (opened + hour, false));
        let soon = opened + Duration::from_secs(5);
        assert_eq!(ends_at(opened, hour, Some(soon)), (soon, true));
        let later = opened + 2 * hour;
        assert_eq!(ends_at(opened, hour, Some(later)), (opened + hour, false));
    }
}
