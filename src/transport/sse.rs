//! Server-Sent Events transport (`GET /realtime/sse?channels=a,b`).
//!
//! Each event's `id:` is the connection's cursor, so a browser's automatic
//! reconnect (`Last-Event-ID`) resumes exactly. A pump task turns the
//! session's output into SSE text and feeds it through a small bounded channel
//! into the response body; when the client stops reading, the inbox is
//! evicted and the pump drops the whole connection rather than wait on it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::session::{Out, Session, reset_json};
use super::{Opened, open_session, query};
use crate::conn_info::{ConnInfo, ConnKill};
use crate::reply::{self, Body};
use crate::state::{AppState, Gauge, Settings};

/// How long a browser waits before reconnecting after the stream ends (ms).
const RETRY_MS: u32 = 2000;

pub async fn open(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<Incoming>,
) -> Response<Body> {
    let q = query(&req);
    let Opened {
        client,
        session,
        out,
    } = match open_session(&state, &settings, &req, &q).await {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let rt = &settings.config.realtime;
    let kill = req
        .extensions()
        .get::<ConnKill>()
        .cloned()
        .unwrap_or_default();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let span = tracing::debug_span!(
        "session",
        transport = "sse",
        peer = conn.as_ref().map(|c| c.peer.to_string()),
        conn = conn.as_ref().map(|c| c.id),
        subject = client.identity.as_ref().map(|i| i.subject.as_str()),
    );
    let (tx, rx) = mpsc::channel(4);
    let heartbeat = rt.heartbeat;
    state.tasks.clone().spawn(
        Pump {
            state,
            client,
            kick: Default::default(),
            session,
            tx,
            kill,
            buf: BytesMut::with_capacity(512),
        }
        .run(out, heartbeat)
        .instrument(span),
    );
    let mut resp = Response::new(reply::channel_body(rx));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

struct Pump {
    state: AppState,
    /// Holds the client's connection slot while the stream is open.
    client: super::Client,
    /// Cancelled by `POST /disconnect`.
    kick: tokio_util::sync::CancellationToken,
    session: Session,
    tx: mpsc::Sender<Bytes>,
    kill: ConnKill,
    buf: BytesMut,
}

impl Pump {
    async fn run(mut self, out: Vec<Out>, heartbeat: Duration) {
        let _gauge = Gauge::enter(&self.state.stats, |s| &s.sse);
        self.state.metrics.connect("sse");
        let subject = self.client.identity.as_ref().map(|i| i.subject.clone());
        let registration =
            self.state
                .connections
                .register(self.state.stats.conn_id(), subject.as_deref(), "sse");
        self.kick = registration.kick.clone();
        let reason = self.pump(out, heartbeat).await;
        self.state.metrics.disconnect("sse", reason);
    }

    async fn pump(&mut self, mut out: Vec<Out>, heartbeat: Duration) -> &'static str {
        // The starting cursor, before any message: a client that loses the
        // stream before the first event still resumes every channel it asked for.
        let cursor = self.session.cursor_text().to_string();
        let _ = write!(self.buf, "retry: {RETRY_MS}\nid: {cursor}\n: pushgate\n\n");
        self.render(&mut out);
        if !self.send().await {
            return "client";
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let inbox = self.session.inbox().clone();
        let evicted = inbox.evicted().clone();
        let shutdown = self.state.shutdown.clone();
        let mut generation = self.state.generation.subscribe();
        let kick = self.kick.clone();
        loop {
            let ok = tokio::select! {
                biased;
                _ = kick.cancelled() => return "operator",
                _ = shutdown.cancelled() => {
                    let _ = write!(self.buf, "retry: 500\nevent: reconnect\ndata: {{\"type\":\"reconnect\",\"reason\":\"restart\"}}\n\n");
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.send()).await;
                    return "shutdown";
                }
                _ = evicted.cancelled() => false,
                _ = self.tx.closed() => return "client",
                _ = inbox.ready() => {
                    self.session.drain(&mut out);
                    self.render(&mut out);
                    self.send().await
                }
                _ = tick.tick() => {
                    self.buf.put_slice(b": hb\n\n");
                    self.send().await
                }
                _ = generation.changed() => {
                    let settings = self.state.settings();
                    let gone = self.session.revoke_forbidden(&settings.rules, self.client.identity.as_ref());
                    for channel in &gone {
                        let _ = write!(
                            self.buf,
                            "event: error\ndata: {{\"type\":\"error\",\"code\":\"forbidden\",\"channel\":\"{channel}\",\"message\":\"subscription closed: the channel rules changed\"}}\n\n"
                        );
                    }
                    if !gone.is_empty() && self.session.channel_count() == 0 {
                        let _ = self.send().await;
                        return "forbidden";
                    }
                    self.send().await
                }
            };
            if !ok {
                break;
            }
        }
        if evicted.is_cancelled() {
            // The browser reconnects with its Last-Event-ID and resumes from history.
            self.state.stats.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("slow SSE client cut off");
            self.kill.0.cancel();
            return "slow_client";
        }
        "client"
    }

    /// Append SSE text for `out` to the buffer.
    fn render(&mut self, out: &mut Vec<Out>) {
        let mut delivered = 0;
        for item in out.drain(..) {
            if !self.session.advance(&item) {
                continue;
            }
            let cursor = self.session.cursor_text();
            self.buf.put_slice(b"id: ");
            self.buf.put_slice(cursor.as_bytes());
            match &item {
                Out::Message(m) => {
                    self.buf.put_slice(b"\nevent: ");
                    self.buf.put_slice(m.event.as_bytes());
                    self.buf.put_slice(b"\ndata: ");
                    m.write_json(cursor, &mut self.buf);
                    delivered += 1;
                }
                Out::Reset { channels, reason } => {
                    self.buf.put_slice(b"\nevent: reset\ndata: ");
                    reset_json(channels, reason, cursor, &mut self.buf);
                }
            }
            self.buf.put_slice(b"\n\n");
        }
        self.state
            .stats
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
    }

    /// Hand the buffered text to the body; false when the client is gone or evicted.
    async fn send(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let bytes = self.buf.split().freeze();
        let evicted = self.session.inbox().evicted().clone();
        tokio::select! {
            r = self.tx.send(bytes) => r.is_ok(),
            _ = evicted.cancelled() => false,
        }
    }
}
