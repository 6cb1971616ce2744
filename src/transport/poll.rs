//! Long-polling transport (`GET /realtime/poll?channels=a,b&cursor=…`).
//!
//! Stateless between requests: each poll resumes from the cursor it carries,
//! answers at once when history already holds newer messages, and otherwise
//! waits up to `poll_timeout` for the first live one. The answer is
//! `{"cursor":…,"messages":[…]}` with the same message objects as the other
//! transports, so a client may switch transport with the cursor in hand. A
//! replay is answered a part at a time, each answer at most `MAX_RESPONSE`
//! bytes, with the cursor where it stopped.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::session::{BATCH_BYTES, Delivery, Session, reset_json};
use super::{Opened, open_session, query};
use crate::reply::{self, Body};
use crate::state::{AppState, Gauge, Settings};

/// Past this many bytes of messages a response is cut short; the cursor then
/// points at the last message included and the next poll continues.
const MAX_RESPONSE: usize = 4 * BATCH_BYTES;

/// After the first live message, wait this long for more to batch them.
const LINGER: Duration = Duration::from_millis(5);

pub async fn poll(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<Incoming>,
) -> Response<Body> {
    let q = query(&req);
    let Opened {
        client: _client,
        mut session,
        mut out,
        clock: _,
    } = match open_session(&state, &settings, &req, &q).await {
        Ok(o) => o,
        Err(refusal) => return refusal.response(),
    };
    let _gauge = Gauge::enter(&state.stats, |s| &s.poll);
    state.metrics.connect("poll");
    let rt = &settings.config.realtime;
    let timeout = q
        .get("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .map_or(rt.poll_timeout, |t| t.min(rt.poll_timeout));
    // A replay answers at once, a page at a time: what the answer cannot
    // hold, the next poll (sent at once) gets.
    if session.is_replaying() {
        if let Err(e) = session.replay_next(&mut out).await {
            return reply::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e);
        }
        session.drain(&mut out);
    }
    if out.is_empty() && !session.is_replaying() {
        let inbox = session.inbox().clone();
        tokio::select! {
            _ = inbox.ready() => {
                tokio::time::sleep(LINGER).await;
            }
            _ = tokio::time::sleep(timeout) => {}
            _ = state.lifecycle.draining().cancelled() => {}
        }
        session.drain(&mut out);
    }
    let body = render(&state, &mut session, out);
    let mut resp = Response::new(reply::full(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn render(state: &AppState, session: &mut Session, out: Vec<Delivery>) -> bytes::Bytes {
    let mut items = BytesMut::with_capacity(256);
    let mut delivered = 0;
    let mut first = true;
    // The answer carries the cursor; each message repeats it only when short.
    let short = session.cursor_is_short();
    for item in out {
        let full = items.len() > MAX_RESPONSE;
        if full && matches!(item, Delivery::Message(_)) {
            continue;
        }
        if !session.advance(&item) {
            continue;
        }
        if !first {
            items.put_u8(b',');
        }
        first = false;
        // The cursor is encoded only where it is written: a long one is
        // not repeated in messages, only at the answer's end.
        match &item {
            Delivery::Message(m) => {
                m.write_json(short.then(|| session.cursor_text()), &mut items);
                delivered += 1;
            }
            Delivery::Reset { channels, reason } => {
                reset_json(channels, reason, session.cursor_text(), &mut items)
            }
        }
    }
    state.count_delivered(delivered);
    state.metrics.observe_batch(items.len());
    let cursor = session.cursor_text();
    let mut body = BytesMut::with_capacity(items.len() + cursor.len() + 32);
    body.put_slice(b"{\"cursor\":\"");
    body.put_slice(cursor.as_bytes());
    body.put_slice(b"\",\"messages\":[");
    body.put_slice(&items);
    body.put_slice(b"]}");
    body.freeze()
}
