//! One SSE subscriber's stream: what it owes the client, turned into SSE text
//! a batch at a time, and why it ended.
//!
//! This is the only SSE writer; the HTTP/1 and HTTP/2 adapters beside it
//! only move its chunks. Each event's `id:` is the connection's cursor, so a
//! browser's automatic reconnect (`Last-Event-ID`) resumes exactly. Output is
//! made when the writer asks for the next chunk, after taking the last one,
//! so a connection never holds more than one batch beyond what its writer
//! buffers, however long its replay. When the client stops reading, its
//! inbox fills and is evicted, which cuts the whole connection on HTTP/1
//! (nothing asks for chunks while its socket is full); on HTTP/2, whose
//! connection carries other streams, only the stream ends (`sse.rs`).

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::EvictionKill;
use crate::alarm::Listener;
use crate::model::Message;
use crate::state::{AppState, Gauge, Settings};
use crate::transport::Client;
use crate::transport::login::{RecheckTimer, needs_recheck, recheck, retry_after};
use crate::transport::session::{BATCH_BYTES, Delivery, Session, reset_json};

/// How long a browser waits before reconnecting after the stream ends (ms).
const RETRY_MS: u32 = 2000;

/// The text of a stream, chunk by chunk, until it ends.
pub(crate) type Chunks = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// One SSE subscriber: its session, what it owes the client, and why it ended.
pub(crate) struct SseStream {
    state: AppState,
    /// Holds the client's connection slot while the stream is open.
    client: Client,
    session: Session,
    out: Vec<Delivery>,
    buf: BytesMut,
    tick: tokio::time::Interval,
    /// When the application's login and resource answers are asked again.
    recheck: RecheckTimer,
    /// What ends or changes the stream, heard without a lock per delivery.
    reloaded: Listener,
    stopping: Listener,
    /// Keeps this session listed for `POST /disconnect`.
    _registration: crate::connections::Registration,
    /// Cuts a stuck HTTP/2 connection if the stream outlives its eviction.
    _kill: EvictionKill,
    started: bool,
    done: bool,
    reason: &'static str,
    _gauge: Gauge,
}

impl SseStream {
    pub(super) fn new(
        state: AppState,
        client: Client,
        session: Session,
        kill: EvictionKill,
        out: Vec<Delivery>,
        settings: &Arc<Settings>,
    ) -> SseStream {
        let heartbeat = settings.config.realtime.heartbeat;
        // A client too slow for its queue is cut at the connection: nothing
        // polls this body while its socket is full, so the inbox does it
        // (`kill` is the connection's own on HTTP/1 only: see `sse.rs`).
        session.inbox().link_eviction(kill.alarm());
        let subject = client.identity.as_ref().map(|i| i.subject.clone());
        let registration = state.connections.register(
            state.stats.conn_id(),
            subject.as_deref(),
            "sse",
            session.inbox(),
        );
        state.metrics.connect("sse");
        // A reload while the stream opened (its settings taken, the
        // application asked, the replay read) is heard at once.
        let reloaded = state.reload_listener(settings);
        let stopping = state.lifecycle.stopping().listen_from_start();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Armed only once a recheck is needed (most streams never).
        let recheck = RecheckTimer::new(settings.checks.terms.recheck);
        SseStream {
            recheck,
            _gauge: Gauge::enter(&state.stats, |s| &s.sse),
            state,
            client,
            session,
            out,
            buf: BytesMut::new(),
            tick,
            reloaded,
            stopping,
            _registration: registration,
            _kill: kill,
            started: false,
            done: false,
            reason: "client",
        }
    }

    /// The stream as the text it sends, chunk by chunk. Both writers poll
    /// this, never `next_chunk` itself: a chunk being made (a replay page
    /// being fetched) survives the writer's `select!` waking for something else.
    pub(super) fn into_chunks(self) -> Chunks {
        Box::pin(
            futures_util::stream::unfold(self, |mut s| async move {
                let chunk = s.next_chunk().await?;
                Some((chunk, s))
            })
            .fuse(),
        )
    }

    /// The next text to send, or `None` when the stream should end. What is
    /// owed goes out a batch at a time, and the next batch (or page of a
    /// replay) is made only when the engine asks again, after taking this one.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            // The starting cursor, before any message: a client that loses the
            // stream before the first event still resumes every channel it asked for.
            let cursor = self.session.cursor_text().to_string();
            let _ = write!(self.buf, "retry: {RETRY_MS}\nid: {cursor}\n: pushgate\n\n");
        }
        let inbox = self.session.inbox().clone();
        loop {
            if let Some(event) = self.shared_event() {
                return Some(event);
            }
            if !self.out.is_empty() {
                self.render();
            }
            if !self.buf.is_empty() {
                return Some(self.take_chunk());
            }
            if self.done {
                return None;
            }
            if self.session.is_replaying() && !self.state.lifecycle.stopping().has_rung() {
                if inbox.is_kicked() {
                    self.reason = "operator";
                    return None;
                }
                if inbox.is_evicted() {
                    return None;
                }
                // Boxed: a resume's history read (and the alarms it gives
                // way to) would otherwise size every idle stream's future.
                if let Err(error) = Box::pin(self.session.replay_next(&mut self.out)).await {
                    tracing::debug!(%error, "replay failed");
                    self.reason = "unavailable";
                    return None;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.stopping.rung() => {
                    // Each client its own delay: a restart is not a herd.
                    let after = crate::transport::resume::come_back_in(self.state.settings().config.realtime.reconnect_spread);
                    let _ = write!(self.buf, "retry: {after}\nevent: reconnect\ndata: {{\"type\":\"reconnect\",\"reason\":\"restart\",\"retry\":{after}}}\n\n");
                    self.done = true;
                    self.reason = "shutdown";
                }
                _ = inbox.ready() => {
                    if inbox.is_kicked() {
                        self.reason = "operator";
                        return None;
                    }
                    if inbox.is_evicted() {
                        return None;
                    }
                    self.session.drain(&mut self.out);
                }
                _ = self.tick.tick() => self.buf.put_slice(b": hb\n\n"),
                _ = self.recheck.tick(), if needs_recheck(&self.client, &self.session) => {
                    Box::pin(self.on_recheck()).await;
                }
                _ = self.reloaded.rung() => {
                    let settings = self.state.settings();
                    let gone = self.session.revoke_forbidden(&settings.rules, self.client.identity.as_ref());
                    for channel in &gone {
                        let _ = write!(
                            self.buf,
                            "event: error\ndata: {{\"type\":\"error\",\"code\":\"forbidden\",\"channel\":\"{channel}\",\"message\":\"subscription closed: the channel rules changed\"}}\n\n"
                        );
                    }
                    if !gone.is_empty() && self.session.channel_count() == 0 {
                        self.done = true;
                        self.reason = "forbidden";
                    }
                }
            }
        }
    }

    /// Ask the application again: a login that ended ends the stream with
    /// `event: error` (`token_expired`) when something needed it, as an
    /// expired token would; a channel it now refuses gets its own
    /// `event: error` and is closed.
    async fn on_recheck(&mut self) {
        let settings = self.state.settings();
        let found = recheck(&self.state, &settings, &mut self.client, &mut self.session).await;
        if found.unconfirmed {
            self.recheck
                .reset_after(retry_after(settings.checks.terms.recheck));
        }
        if found.ended && found.revoked.is_empty() {
            // Nothing it follows needed the login: it goes on, told.
            let _ = write!(
                self.buf,
                "event: error\ndata: {{\"type\":\"error\",\"code\":\"token_expired\",\"message\":\"the login ended\"}}\n\n"
            );
        }
        if found.ended && !found.revoked.is_empty() {
            let _ = write!(
                self.buf,
                "event: error\ndata: {{\"type\":\"error\",\"code\":\"token_expired\",\"message\":\"the login ended; log in again and reconnect\"}}\n\n"
            );
            self.done = true;
            self.reason = "token_expired";
            return;
        }
        for (channel, code) in &found.revoked {
            let _ = write!(
                self.buf,
                "event: error\ndata: {{\"type\":\"error\",\"code\":\"{code}\",\"channel\":\"{channel}\",\"message\":\"subscription closed: the application no longer allows it\"}}\n\n"
            );
        }
        if !found.revoked.is_empty() && self.session.channel_count() == 0 {
            self.done = true;
            self.reason = "forbidden";
        }
    }

    /// The text written so far, leaving no buffer behind: an idle
    /// subscriber keeps no allocation (a `split` would keep the whole block
    /// alive through the empty remainder).
    fn take_chunk(&mut self) -> Bytes {
        std::mem::take(&mut self.buf).freeze()
    }

    /// When exactly one message is owed and nothing else is written yet
    /// (every live delivery at a publish rate the socket keeps up with),
    /// its whole event, shared: the message keeps the event text of the
    /// first subscriber that sent it alone ([`Message::sse_event`]), and a
    /// subscriber whose cursor reads the same after it (one that follows
    /// the same channels) sends those bytes instead of rendering and
    /// copying its own. `None` leaves `self.out` to [`SseStream::render`],
    /// untouched, unless the message was consumed without text (already
    /// delivered: the cursor is past it).
    ///
    /// [`Message::sse_event`]: crate::model::Message::sse_event
    fn shared_event(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty()
            || self.out.len() != 1
            || !matches!(self.out.first(), Some(Delivery::Message(_)))
        {
            return None;
        }
        let item = self.out.pop()?;
        if !self.session.advance(&item) {
            return None;
        }
        let Delivery::Message(m) = item else {
            return None;
        };
        let short = self.session.cursor_is_short();
        let cursor = self.session.cursor_text();
        let event = match m.sse_event.get() {
            Some(event) if names_cursor(event, cursor) => event.clone(),
            _ => {
                write_event(&mut self.buf, &m, cursor, short);
                let event = self.take_chunk();
                // The first one alone is kept: a subscriber of other
                // channels renders its own each time, as before.
                let _ = m.sse_event.set(event.clone());
                event
            }
        };
        self.state.metrics.observe_batch(event.len());
        self.state.count_delivered(1);
        Some(event)
    }

    /// Append SSE text for the next batch of `self.out` (about
    /// [`BATCH_BYTES`]) to the buffer; the rest stays owed. Every event's
    /// `id:` is the cursor, so EventSource resumes from any of them; the JSON
    /// repeats it only when it is short.
    fn render(&mut self) {
        let cursor_len = self.session.cursor().encoded_len_hint();
        let short = self.session.cursor_is_short();
        let mut need = 0;
        for item in &self.out {
            if need >= BATCH_BYTES {
                break;
            }
            need += match item {
                Delivery::Message(m) => {
                    m.wire_prefix().len()
                        + m.event.len()
                        + (1 + usize::from(short)) * cursor_len
                        + 48
                }
                Delivery::Reset { .. } => 256 + cursor_len * 2,
            };
        }
        self.buf.reserve(need);
        let start = self.buf.len();
        let mut taken = 0;
        let mut delivered = 0;
        for item in &self.out {
            if self.buf.len() - start >= BATCH_BYTES {
                break;
            }
            taken += 1;
            if !self.session.advance(item) {
                continue;
            }
            let cursor = self.session.cursor_text();
            match item {
                Delivery::Message(m) => {
                    write_event(&mut self.buf, m, cursor, short);
                    delivered += 1;
                }
                Delivery::Reset { channels, reason } => {
                    self.buf.put_slice(b"id: ");
                    self.buf.put_slice(cursor.as_bytes());
                    self.buf.put_slice(b"\nevent: reset\ndata: ");
                    reset_json(channels, reason, cursor, &mut self.buf);
                    self.buf.put_slice(b"\n\n");
                }
            }
        }
        self.out.drain(..taken);
        self.state.metrics.observe_batch(self.buf.len() - start);
        self.state.count_delivered(delivered);
    }
}

/// One message's SSE event: its `id:` is `cursor` (the subscriber's cursor
/// after it), which its JSON repeats when `short`.
fn write_event(buf: &mut BytesMut, m: &Message, cursor: &str, short: bool) {
    buf.put_slice(b"id: ");
    buf.put_slice(cursor.as_bytes());
    buf.put_slice(b"\nevent: ");
    buf.put_slice(m.event.as_bytes());
    buf.put_slice(b"\ndata: ");
    m.write_json(short.then_some(cursor), buf);
    buf.put_slice(b"\n\n");
}

/// Whether `event` (written by [`write_event`]) carries `cursor` as its
/// `id:`: then it is, byte for byte, the event this subscriber would
/// write (whether the JSON repeats the cursor depends on the cursor alone,
/// and a cursor's text says which channels it follows, `~` being no
/// channel name's character).
fn names_cursor(event: &[u8], cursor: &str) -> bool {
    event
        .strip_prefix(b"id: ")
        .and_then(|rest| rest.strip_prefix(cursor.as_bytes()))
        .is_some_and(|rest| rest.first() == Some(&b'\n'))
}

impl Drop for SseStream {
    fn drop(&mut self) {
        if self.session.inbox().is_evicted() {
            // The browser reconnects with its Last-Event-ID and resumes from history.
            self.reason = "slow_client";
            self.state.stats.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("slow SSE client cut off");
        }
        self.state.metrics.disconnect("sse", self.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        let data = serde_json::value::RawValue::from_string("{\"n\":1}".into()).unwrap();
        Message::new("public.a".into(), "created".into(), &data, 5, None, 1)
    }

    #[test]
    fn an_event_is_shared_only_with_the_cursor_it_was_written_for() {
        let m = message();
        let mut buf = BytesMut::new();
        write_event(&mut buf, &m, "1~public.a~5", true);
        let mut other = BytesMut::new();
        write_event(&mut other, &m, "1~public.a~5~public.b~2", true);
        assert!(names_cursor(&buf, "1~public.a~5"));
        // A cursor the written one begins with, or one it begins with, is
        // another cursor.
        assert!(!names_cursor(&buf, "1~public.a~50"));
        assert!(!names_cursor(&buf, "1~public.a~"));
        assert!(!names_cursor(&other, "1~public.a~5"));
        assert!(!names_cursor(b"", "1"));
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            "id: 1~public.a~5\nevent: created\ndata: \
             {\"type\":\"message\",\"channel\":\"public.a\",\"event\":\"created\",\
             \"id\":\"5\",\"data\":{\"n\":1},\"cursor\":\"1~public.a~5\"}\n\n"
        );
    }

    fn future_size1<A, Fut>(_: &impl FnOnce(A) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every open SSE stream keeps its `SseStream` and, while it waits for
    /// something to send, the future of its next chunk, both in one box
    /// for its whole life (bounds measured on a debug build).
    #[test]
    fn an_idle_sse_stream_stays_small() {
        let stream = std::mem::size_of::<SseStream>();
        let waiting = future_size1(&SseStream::next_chunk);
        assert!(
            stream <= 664,
            "SseStream is {stream} B; keep what rare paths need behind a box or make it when first used"
        );
        assert!(
            waiting <= 240,
            "the SSE stream's next-chunk future is {waiting} B; box the handlers of rare paths"
        );
    }
}
