//! Whether a realtime request is a resume: a client coming back with the
//! cursor it was given, for channels that cursor already covers.
//!
//! After a deploy or a lost node every browser reconnects at once, and an
//! office behind one NAT address would spend its address's
//! `per_ip.connects` in the first second and be refused for the rest of the
//! storm. A resume is not a stranger: it was admitted before, and what it
//! asks for is what it had. The gateway gives such requests their own
//! allowance per address (`per_ip.resumes`) once `per_ip.connects` is spent,
//! while fresh connections stay limited. The request is then admitted like
//! any other (token or session, the channels' rules, `per_ip.connections`):
//! a cursor opens no door the client could not open without it.
//!
//! The other half of a storm is when clients come back: on shutdown each
//! WebSocket and SSE client is told a delay drawn within
//! `realtime.reconnect_spread` ([`come_back_in`]), so the returns are spread
//! over the window rather than landing in one instant.
//!
//! Where a resume's time goes during a storm is measured here too
//! ([`ResumeClock`]): each resuming connection's stages, in seconds from its
//! accept, in `pushgate_resume_seconds`, so a slow storm can be told apart
//! into the gateway's turn (parsing, admission, the history read, the first
//! write) and what came before the gateway saw the connection.

use std::collections::HashMap;

use http::Request;

use crate::hub::Cursor;
use crate::state::Settings;

/// `req` resumes with a cursor of the broker's current `epoch` that
/// decodes and covers every channel it names (a resume that adds a channel
/// is a new subscription, not a return). Only the realtime endpoints'
/// requests (`realtime.path`) count.
///
/// The epoch is a random 64-bit number each broker draws: a cursor made up
/// without ever having been admitted (`0~channel~0`) names another epoch
/// and is a stranger. The epoch is not a secret from a client that was
/// admitted once; `per_ip.resumes` bounds what such a client can replay.
pub(crate) fn is_resume<B>(settings: &Settings, epoch: u64, req: &Request<B>) -> bool {
    let prefix = settings.config.realtime.path.as_str();
    let Some(rest) = req.uri().path().strip_prefix(prefix) else {
        return false;
    };
    if !matches!(rest, "/ws" | "/sse" | "/poll") {
        return false;
    }
    let q = super::query(req);
    let Some(text) = cursor_text(req, &q) else {
        return false;
    };
    let max = settings.config.limits.max_channels_per_connection;
    let Ok(cursor) = Cursor::decode_within(&text, max) else {
        return false;
    };
    cursor.epoch == epoch && covers(&cursor, q.get("channels").map(String::as_str))
}

/// The cursor a request presents, where the transports read it from
/// (`Last-Event-ID`, `last_event_id`, `cursor`).
fn cursor_text<B>(req: &Request<B>, q: &HashMap<String, String>) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("last_event_id").cloned())
        .or_else(|| q.get("cursor").cloned())
        .filter(|t| !t.is_empty())
}

/// `cursor` names at least one channel and every one of `channels` (a
/// comma list; none: the cursor's own channels are asked for).
fn covers(cursor: &Cursor, channels: Option<&str>) -> bool {
    if cursor.channels().next().is_none() {
        return false;
    }
    channels.is_none_or(|list| {
        list.split(',')
            .filter(|c| !c.is_empty())
            .all(|c| cursor.get(c).is_some())
    })
}

/// One resuming connection's stopwatch, started at its accept: each stage
/// it reaches is observed once in `pushgate_resume_seconds{stage}`.
/// Only resumes carry one (a request with a cursor): fresh connects are not
/// what a storm is made of, and cost nothing here.
pub(crate) struct ResumeClock {
    accepted: std::time::Instant,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// The stages, in the order a resume passes them.
pub(crate) mod stage {
    /// The request was parsed and reached its handler.
    pub(crate) const REQUEST: &str = "request";
    /// Admitted: limits, login and channel rules passed.
    pub(crate) const ADMITTED: &str = "admitted";
    /// A channel's history read was asked of the broker.
    pub(crate) const REPLAY_STARTED: &str = "replay_started";
    /// That read answered (its wait for a turn included).
    pub(crate) const REPLAY_READ: &str = "replay_read";
    /// The first frame (WebSocket) or chunk (SSE) was handed to the socket.
    pub(crate) const FIRST_WRITE: &str = "first_write";
}

impl ResumeClock {
    /// A clock for `req` when it resumes with a cursor and its connection's
    /// accept time is known, reached its handler now.
    pub(crate) fn start<B>(
        state: &crate::state::AppState,
        req: &Request<B>,
        q: &HashMap<String, String>,
    ) -> Option<ResumeClock> {
        cursor_text(req, q)?;
        let conn = req.extensions().get::<crate::conn_info::ConnInfo>()?;
        let clock = ResumeClock {
            accepted: conn.accepted,
            metrics: state.metrics.clone(),
        };
        clock.mark(stage::REQUEST);
        Some(clock)
    }

    /// The resume reached `stage` now.
    pub(crate) fn mark(&self, stage: &'static str) {
        self.metrics.resume_stage(stage, self.accepted.elapsed());
    }
}

/// Mark `stage` on `clock` when there is one.
pub(crate) fn mark(clock: Option<&ResumeClock>, stage: &'static str) {
    if let Some(c) = clock {
        c.mark(stage);
    }
}

/// The shortest delay a client is told at shutdown, in milliseconds: an
/// EventSource told `retry: 0` reconnects in a tight loop against a
/// gateway that is still going away.
pub(crate) const COME_BACK_FLOOR_MS: u64 = 250;

/// How long a client told to reconnect at shutdown should wait, in
/// milliseconds: uniform in `[floor, floor + spread)` (the floor alone when
/// `spread` is zero).
pub(crate) fn come_back_in(spread: std::time::Duration) -> u64 {
    let spread = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    if spread == 0 {
        return COME_BACK_FLOOR_MS;
    }
    COME_BACK_FLOOR_MS.saturating_add(rand::random::<u64>() % spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(pairs: &[(&str, u64)]) -> Cursor {
        let mut c = Cursor::new(1);
        for (ch, pos) in pairs {
            c.set(&std::sync::Arc::from(*ch), *pos);
        }
        c
    }

    #[test]
    fn a_cursor_covering_every_channel_asked_is_a_resume() {
        let c = cursor(&[("public.a", 3), ("public.b", 9)]);
        assert!(covers(&c, Some("public.a,public.b")));
        assert!(covers(&c, Some("public.b")));
        assert!(covers(&c, None));
    }

    #[test]
    fn delays_fall_within_the_window_and_differ() {
        let spread = std::time::Duration::from_millis(1000);
        let delays: Vec<u64> = (0..200).map(|_| come_back_in(spread)).collect();
        // The documented floor, spelled out: never `retry: 0`.
        let window = 250..1250;
        assert!(delays.iter().all(|d| window.contains(d)), "{delays:?}");
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "spread, not one instant: {distinct:?}");
        assert_eq!(
            come_back_in(std::time::Duration::ZERO),
            250,
            "never retry: 0"
        );
    }

    #[test]
    fn a_channel_the_cursor_does_not_cover_is_a_new_subscription() {
        let c = cursor(&[("public.a", 3)]);
        assert!(!covers(&c, Some("public.a,public.new")));
        assert!(!covers(&Cursor::new(1), None));
    }
}
