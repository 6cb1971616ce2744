//! WebSocket transport (`/realtime/ws`, subprotocol `pushgate.v1`).
//!
//! After the upgrade a connection is one task that owns the [`Session`] and
//! both halves of the socket: it reads the next frame, the next delivery and
//! the next signal in one `select`, so replies, replays and live messages
//! leave in one order, and a connection costs one task (a reader task and its
//! channel used to cost another 2.3 KiB per connection). Every write races
//! the inbox's eviction signal: a client that stops reading is cut off
//! instead of stalling anyone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{
    Error as WsError, Message as Frame, Utf8Bytes, handshake::derive_accept_key,
};
use tracing::{Instrument, debug};

use super::ops::{self, Op};
use super::session::{Out, Session, reset_json};
use super::{Client, Subscription, admit, query, subscription};
use crate::bell::Listener;
use crate::conn_info::ConnInfo;
use crate::hub::Cursor;
use crate::reply::{self, Body};
use crate::state::{AppState, Gauge, Settings};

pub const SUBPROTOCOL: &str = "pushgate.v1";

/// A client that keeps sending after this many refused frames in a row is
/// closed with 1013.
const FLOOD_CLOSE_AFTER: u32 = 20;

/// Wait for `timer`, or forever without one.
async fn timer_opt(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A timer only when there is a deadline (most connections have none).
fn timer_at(at: Option<tokio::time::Instant>) -> Option<std::pin::Pin<Box<tokio::time::Sleep>>> {
    at.map(|at| Box::pin(tokio::time::sleep_until(at)))
}

mod outgoing;
use outgoing::Outgoing;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Validate the handshake and the requested channels, answer 101, and run the
/// session on the upgraded connection.
pub async fn upgrade(
    state: AppState,
    settings: Arc<Settings>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = headers.get("sec-websocket-key").cloned();
    let version_ok = headers
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    let (true, Some(key), true, http::Version::HTTP_11) =
        (is_upgrade, key, version_ok, req.version())
    else {
        let mut r = reply::error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint speaks WebSocket (HTTP/1.1 Upgrade, version 13)",
        );
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    };
    let offers_ours = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    let q = query(&req);
    let client = match admit(&state, &settings, &req, &q) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let sub = match subscription(&state, &settings, &req, &q, &client, false) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let span = tracing::debug_span!(
        "session",
        transport = "ws",
        peer = conn.as_ref().map(|c| c.peer.to_string()),
        conn = conn.as_ref().map(|c| c.id),
        subject = client.identity.as_ref().map(|i| i.subject.as_str()),
    );
    let tasks = state.tasks.clone();
    // One box for what the opening needs: the task's future then carries a
    // pointer for it, not copies of each part for the connection's life.
    let opening = Box::new(Opening {
        state,
        settings,
        client,
        sub,
    });
    tasks.spawn(run(opening, on_upgrade).instrument(span));
    let mut resp = Response::new(reply::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    if offers_ours {
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    resp
}

/// A frame read from the client, as the session sees it.
enum Inbound {
    Text(Utf8Bytes),
    Binary,
    /// Ping or pong (tungstenite answers pings itself); proves the peer alive.
    Control,
    /// Reading stopped: peer closed, I/O error, or a protocol violation
    /// (with the close code to answer).
    End(Option<(CloseCode, &'static str)>),
}

impl Inbound {
    /// What a read produced.
    fn from_read(item: Option<Result<Frame, WsError>>) -> Inbound {
        match item {
            Some(Ok(Frame::Text(t))) => Inbound::Text(t),
            Some(Ok(Frame::Binary(_))) => Inbound::Binary,
            Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => Inbound::Control,
            Some(Ok(Frame::Close(_))) | None => Inbound::End(None),
            Some(Err(e)) => Inbound::End(close_for(&e)),
        }
    }
}

/// Why a session ends, and what to tell the peer.
enum Ending {
    Close(CloseCode, String),
    /// Evicted while its socket would take no more bytes.
    Stuck,
    /// Disconnected by an operator (`POST /disconnect`): closed with 1008.
    Kicked,
    Gone,
}

impl Ending {
    /// Label for the disconnect metric.
    fn reason(&self) -> &'static str {
        match self {
            Ending::Gone => "client",
            Ending::Stuck => "slow_client",
            Ending::Kicked => "operator",
            Ending::Close(code, _) => match code {
                CloseCode::Restart => "shutdown",
                CloseCode::Again => "slow_or_flooding",
                CloseCode::Policy => "token_expired",
                CloseCode::Away => "timeout",
                CloseCode::Size => "too_big",
                _ => "protocol",
            },
        }
    }
}

struct WsSession {
    state: AppState,
    settings: Arc<Settings>,
    client: Client,
    /// Session id (`X-Pushgate-Connection`, `POST /disconnect`).
    id: u64,
    /// Rung when the inbox overflows under `disconnect`: cuts a stuck write.
    evicted: Listener,
    /// Frames refused by the rate limit since the last accepted one.
    refused: u32,
    session: Session,
    /// Unsplit: one task reads and writes, and a split would put the stream
    /// behind a lock in an `Arc`.
    socket: Socket,
    out: Vec<Out>,
    /// Frames encoded and not yet written (see `outgoing.rs`).
    outgoing: Outgoing,
    /// Answers of `send` ops forwarded to the backend, written in arrival order.
    /// Created by the first `send` op: a channel costs ~1 KiB per connection.
    replies: Option<(mpsc::Sender<String>, mpsc::Receiver<String>)>,
    /// `send` ops awaiting the backend.
    pending_sends: usize,
}

/// Most `send` ops one connection may have waiting on the backend.
const MAX_PENDING_SENDS: usize = 16;

/// What an accepted upgrade needs to become a session.
struct Opening {
    state: AppState,
    settings: Arc<Settings>,
    client: Client,
    sub: Subscription,
}

/// A session ready to serve, with what it holds for its whole life.
struct Opened {
    ws: WsSession,
    /// Subscribing to the channels asked for on the URL, and the replay:
    /// done, or the reason to close straight away.
    started: Result<(), Ending>,
    _registration: crate::connections::Registration,
    _gauge: Gauge,
    /// The upgraded connection still counts against `max_connections`:
    /// hyper's connection task, which counted it, ended at the upgrade.
    _connection: Gauge,
}

/// The connection task: the upgrade and the opening in a box freed once the
/// session runs (what they hold would otherwise size this task's future,
/// which every open WebSocket keeps), then the session.
async fn run(opening: Box<Opening>, on_upgrade: hyper::upgrade::OnUpgrade) {
    let Some(mut opened) = Box::pin(open(opening, on_upgrade)).await else {
        return;
    };
    let ending = match std::mem::replace(&mut opened.started, Ok(())) {
        Ok(()) => opened.ws.serve().await,
        Err(ending) => ending,
    };
    opened.ws.close(ending).await;
}

async fn open(opening: Box<Opening>, on_upgrade: hyper::upgrade::OnUpgrade) -> Option<Opened> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            debug!(%error, "websocket upgrade failed");
            return None;
        }
    };
    let Opening {
        state,
        settings,
        client,
        sub,
    } = *opening;
    let rt = &settings.config.realtime;
    let config = WebSocketConfig::default()
        // Read in 512 B chunks: the buffer is held for the connection's
        // whole life (each 512 B is ~12% of an idle WebSocket's memory) and
        // client frames are small ops. A large one takes several reads
        // (128 for a 64 KiB `publish`), a fair price for a rare op.
        .read_buffer_size(512)
        // tungstenite writes only pong and close replies (our frames go
        // through `Outgoing`), and queues at most one of each: no write
        // buffer limits to set.
        .max_message_size(Some(rt.max_message + 4096))
        .max_frame_size(Some(rt.max_message + 4096));
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let gauge = Gauge::enter(&state.stats, |s| &s.ws);
    let connection = Gauge::enter(&state.stats, |s| &s.connections);
    let mut session = Session::new(&state, rt.client_queue);
    let subject = client.identity.as_ref().map(|i| i.subject.clone());
    session.set_subject(subject.clone());
    let id = state.stats.conn_id();
    let registration = state
        .connections
        .register(id, subject.as_deref(), "ws", session.inbox());
    let mut ws = WsSession {
        state,
        settings,
        client,
        id,
        evicted: session.inbox().eviction().listen_from_start(),
        refused: 0,
        session,
        socket,
        out: Vec::new(),
        outgoing: Outgoing::default(),
        replies: None,
        pending_sends: 0,
    };
    ws.state.metrics.connect("ws");
    let started = ws.start(sub).await;
    Some(Opened {
        ws,
        started,
        _registration: registration,
        _gauge: gauge,
        _connection: connection,
    })
}

impl WsSession {
    /// Count the ending and, when owed, send the close frame and wait for
    /// the peer's.
    async fn close(&mut self, ending: Ending) {
        self.state.metrics.disconnect("ws", ending.reason());
        let (code, reason) = match ending {
            Ending::Close(code, reason) => (code, reason),
            Ending::Kicked => (CloseCode::Policy, "disconnected by the operator".into()),
            Ending::Gone => {
                // The peer closed: tungstenite queued our Close reply when it
                // read theirs; send it, so the closing handshake completes.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.flush()).await;
                return;
            }
            Ending::Stuck => return,
        };
        // Frames of ours the socket has not taken go before the Close.
        let owed = tokio::time::timeout(Duration::from_secs(2), self.write_owed()).await;
        if !matches!(owed, Ok(Ok(()))) {
            return;
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            self.socket.send(Frame::Close(Some(frame))),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            // Closing handshake: keep reading (and discarding) until the peer's
            // Close, so unread frames do not turn our close into a reset.
            let drain = async {
                while let Some(Ok(frame)) = self.socket.next().await {
                    if matches!(frame, Frame::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
    }
}

/// The next backend answer to a `send` op, if any channel was made.
async fn next_reply(
    replies: &mut Option<(mpsc::Sender<String>, mpsc::Receiver<String>)>,
) -> Option<String> {
    match replies {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The close code owed to a peer whose frames broke the protocol.
fn close_for(e: &WsError) -> Option<(CloseCode, &'static str)> {
    match e {
        WsError::Capacity(_) => Some((CloseCode::Size, "message too big")),
        WsError::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8")),
        WsError::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}

impl WsSession {
    /// Subscribe to the channels asked for on the URL and send the replay.
    async fn start(&mut self, sub: Subscription) -> Result<(), Ending> {
        self.session
            .subscribe_all(&sub.channels, sub.cursor.as_ref(), &mut self.out)
            .await
            .map_err(|e| Ending::Close(CloseCode::Again, e.to_string()))?;
        if self.flush_out().await.is_err() {
            // Evicted during a long replay: the notice still goes out.
            return Err(if self.session.inbox().is_evicted() {
                self.slow_consumer().await
            } else {
                Ending::Gone
            });
        }
        Ok(())
    }

    async fn serve(&mut self) -> Ending {
        let mut last_seen = Instant::now();
        let heartbeat = self.settings.config.realtime.heartbeat;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let inbox = self.session.inbox().clone();
        // Listeners, not token futures: this select runs once per delivery
        // (see `bell.rs`).
        let mut stopping = self.state.stopping.listen_from_start();
        let mut reloaded = self.state.reloaded.listen();
        // One timer for the token's expiry, re-armed only when an `auth` op
        // changes the token (not one timer per delivery).
        let mut expires = self.expires();
        let mut expiry = timer_at(self.expiry());
        loop {
            if self.expires() != expires {
                expires = self.expires();
                expiry = timer_at(self.expiry());
            }
            let step = tokio::select! {
                biased;
                _ = stopping.rung() => {
                    let frame = json!({"type": "reconnect", "reason": "restart", "cursor": self.session.cursor_text()});
                    self.outgoing.text(&frame.to_string());
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.write_owed()).await;
                    return Ending::Close(CloseCode::Restart, "server restart: reconnect and resume".into());
                }
                // Rare handlers are boxed: their state would otherwise
                // size the session's future for its whole life.
                _ = reloaded.rung() => Box::pin(self.on_reload()).await,
                _ = timer_opt(&mut expiry) => {
                    let text = ops::error(None, "token_expired", "the token expired; send a fresh `auth` op to continue");
                    let _ = self.send_text(text).await;
                    return Ending::Close(CloseCode::Policy, "token expired".into());
                }
                // Deliveries before client frames: a client that floods
                // cannot hold up its own deliveries or its eviction.
                _ = inbox.ready() => {
                    if inbox.is_kicked() {
                        return Ending::Kicked;
                    }
                    if inbox.is_evicted() {
                        return Box::pin(self.slow_consumer()).await;
                    }
                    self.session.drain(&mut self.out);
                    self.flush_out().await
                }
                Some(reply) = next_reply(&mut self.replies) => {
                    self.pending_sends = self.pending_sends.saturating_sub(1);
                    self.send_text(reply).await
                }
                // Only with nothing of ours owed: tungstenite writes its pong
                // replies while reading, and they must not land inside a frame.
                read = self.socket.next(), if self.outgoing.is_empty() => {
                    last_seen = Instant::now();
                    match Inbound::from_read(read) {
                        // Every frame counts against the client's rate, control
                        // frames too: a ping flood is a flood.
                        Inbound::Text(_) | Inbound::Binary | Inbound::Control if !self.allow_frame() => {
                            if self.refused > FLOOD_CLOSE_AFTER {
                                return Ending::Close(CloseCode::Again, "rate limited".into());
                            }
                            self.send_text(ops::error(None, "rate_limited", "too many frames; slow down")).await
                        }
                        Inbound::Text(t) => Box::pin(self.on_text(&t)).await,
                        Inbound::Control => Ok(()),
                        Inbound::Binary => {
                            self.send_text(ops::error(None, "bad_request", "binary frames are not supported; send JSON text")).await
                        }
                        Inbound::End(Some((code, why))) => return Ending::Close(code, why.into()),
                        Inbound::End(None) => return Ending::Gone,
                    }
                }
                // Last: a frame waiting to be read proves the peer alive.
                _ = tick.tick() => {
                    if last_seen.elapsed() > 3 * heartbeat {
                        return Ending::Close(CloseCode::Away, "no pong".into());
                    }
                    self.outgoing.ping();
                    self.write().await
                }
            };
            if step.is_err() {
                if inbox.is_evicted() {
                    // Cut off mid-write: the notice still goes out if the
                    // socket takes it within a second.
                    return Box::pin(self.slow_consumer()).await;
                }
                return Ending::Gone;
            }
        }
    }

    /// A new configuration is in force: adopt it, and close the subscriptions
    /// its rules no longer allow (only those).
    async fn on_reload(&mut self) -> Result<(), WsError> {
        self.settings = self.state.settings();
        let gone = self
            .session
            .revoke_forbidden(&self.settings.rules, self.client.identity.as_ref());
        for channel in gone {
            let frame = json!({
                "type": "error",
                "code": "forbidden",
                "channel": &*channel,
                "message": "subscription closed: the channel rules changed",
            });
            self.send_text(frame.to_string()).await?;
        }
        Ok(())
    }

    /// Forward a `send` op to the backend without holding up this session:
    /// the answer arrives later through `replies`.
    async fn on_send(
        &mut self,
        r: Option<&str>,
        data: Box<serde_json::value::RawValue>,
    ) -> Result<(), WsError> {
        if self.pending_sends >= MAX_PENDING_SENDS {
            return self
                .send_text(ops::error(
                    r,
                    "rate_limited",
                    "too many sends awaiting the application",
                ))
                .await;
        }
        if data.get().len() > self.settings.config.realtime.max_message {
            return self
                .send_text(ops::error(
                    r,
                    "too_large",
                    "data exceeds realtime.max_message",
                ))
                .await;
        }
        self.pending_sends += 1;
        let settings = self.settings.clone();
        let subject = self.client.identity.as_ref().map(|i| i.subject.clone());
        let connection = self.id;
        let tx = self
            .replies
            .get_or_insert_with(|| mpsc::channel(MAX_PENDING_SENDS))
            .0
            .clone();
        let reference = r.map(str::to_string);
        tokio::spawn(async move {
            let r = reference.as_deref();
            let reply = match super::send::forward(&settings, subject.as_deref(), connection, &data)
                .await
            {
                Ok(answer) => ops::ack(r, json!({"op": "send", "data": answer})),
                Err(e) => ops::error(r, e.code(), &e.to_string()),
            };
            let _ = tx.send(reply).await;
        });
        Ok(())
    }

    /// When the connection's token stops being valid, as a Tokio instant.
    fn expires(&self) -> Option<std::time::SystemTime> {
        self.client.identity.as_ref()?.expires
    }

    fn expiry(&self) -> Option<tokio::time::Instant> {
        let at = self.expires()?;
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Some(tokio::time::Instant::now() + left)
    }

    /// Charge one inbound frame to the client's message limit.
    fn allow_frame(&mut self) -> bool {
        match self.settings.limits.message(&self.client.key) {
            Ok(()) => {
                self.refused = 0;
                true
            }
            Err(l) => {
                self.state.metrics.limited(l.kind.label());
                self.refused += 1;
                false
            }
        }
    }

    async fn on_auth(&mut self, r: Option<&str>, token: String) -> Result<(), WsError> {
        match self.settings.auth.verify(&token) {
            Ok(identity) => {
                let expires = identity
                    .expires
                    .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                let ack = ops::ack(
                    r,
                    json!({"op": "auth", "subject": &identity.subject, "expires": expires}),
                );
                self.session.set_subject(Some(identity.subject.clone()));
                self.client.identity = Some(identity);
                self.send_text(ack).await
            }
            Err(e) => {
                self.send_text(ops::error(r, e.code(), &e.to_string()))
                    .await
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), WsError> {
        let (op, reference) = match ops::parse(text) {
            Ok(x) => x,
            Err(e) => {
                return self
                    .send_text(ops::error(e.reference.as_deref(), e.code, &e.message))
                    .await;
            }
        };
        let r = reference.as_deref();
        match op {
            Op::Ping => self.send_text(ops::ack(r, json!({"op": "ping"}))).await,
            Op::Subscribe { channel, cursor } => self.on_subscribe(r, channel, cursor).await,
            Op::Unsubscribe { channel } => {
                self.session.unsubscribe(&channel);
                self.send_text(ops::ack(
                    r,
                    json!({"op": "unsubscribe", "channel": channel}),
                ))
                .await
            }
            Op::Publish {
                channel,
                event,
                data,
            } => self.on_publish(r, channel, event, data).await,
            Op::Send { data } => self.on_send(r, data).await,
            Op::Auth { token } => self.on_auth(r, token).await,
        }
    }

    async fn on_subscribe(
        &mut self,
        r: Option<&str>,
        channel: String,
        cursor: Option<String>,
    ) -> Result<(), WsError> {
        let cursor = match cursor.filter(|c| !c.is_empty()).map(|c| Cursor::decode(&c)) {
            Some(Err(_)) => {
                return self
                    .send_text(ops::error(r, "bad_cursor", "the cursor is malformed"))
                    .await;
            }
            Some(Ok(c)) => Some(c),
            None => None,
        };
        if let Err(l) = self.settings.limits.subscribe(&self.client.key, 1) {
            let msg = format!(
                "too many subscribes; retry in {}ms",
                l.retry_after.as_millis()
            );
            return self.send_text(ops::error(r, "rate_limited", &msg)).await;
        }
        let terms = match self
            .settings
            .rules
            .check_subscribe(&channel, self.client.identity.as_ref())
        {
            Ok(rule) => super::session::Terms::from(rule),
            Err(refusal) => {
                return self
                    .send_text(ops::error(r, refusal.code(), &refusal.to_string()))
                    .await;
            }
        };
        if self.session.channel_count() >= self.settings.config.limits.max_channels_per_connection
            && !self.session.is_subscribed(&channel)
        {
            let msg = format!(
                "at most {} channels per connection",
                self.settings.config.limits.max_channels_per_connection
            );
            return self
                .send_text(ops::error(r, "too_many_channels", &msg))
                .await;
        }
        if !self.session.is_subscribed(&channel)
            && super::channel_full(&self.state, &self.settings, &channel)
        {
            let msg = "the channel has reached limits.max_subscribers_per_channel";
            return self.send_text(ops::error(r, "channel_full", msg)).await;
        }
        let channel: Arc<str> = channel.into();
        let mut replay = Vec::new();
        if let Err(e) = self
            .session
            .subscribe(&channel, terms, cursor.as_ref(), &mut replay)
            .await
        {
            return self
                .send_text(ops::error(r, "unavailable", &e.to_string()))
                .await;
        }
        let ack = ops::ack(
            r,
            json!({"op": "subscribe", "channel": &*channel, "cursor": self.session.cursor_text()}),
        );
        self.send_text(ack).await?;
        self.out.append(&mut replay);
        self.flush_out().await
    }

    async fn on_publish(
        &mut self,
        r: Option<&str>,
        channel: String,
        event: Option<String>,
        data: Box<serde_json::value::RawValue>,
    ) -> Result<(), WsError> {
        let who = self.client.identity.as_ref();
        let published = super::publish::publish_as_client(
            &self.state,
            &self.settings,
            who,
            channel,
            event,
            &data,
        )
        .await;
        let frame = match published {
            Ok(m) => ops::ack(
                r,
                json!({"op": "publish", "channel": &*m.channel, "id": m.id()}),
            ),
            Err(e) => ops::error(r, e.code(), &e.to_string()),
        };
        self.send_text(frame).await
    }

    /// Send everything in `self.out` as one batch of frames.
    async fn flush_out(&mut self) -> Result<(), WsError> {
        if self.out.is_empty() {
            return Ok(());
        }
        // One allocation per batch: each frame is its header, the message's
        // shared JSON and the cursor.
        let cursor_len = self.session.cursor().encoded_len_hint();
        let need: usize = self
            .out
            .iter()
            .map(|item| match item {
                Out::Message(m) => m.wire_prefix().len() + cursor_len + 24,
                Out::Reset { .. } => 256,
            })
            .sum();
        self.outgoing.reserve(need);
        let mut delivered = 0u64;
        for item in std::mem::take(&mut self.out) {
            if !self.session.advance(&item) {
                continue;
            }
            let cursor = self.session.cursor_text();
            match &item {
                Out::Message(m) => {
                    self.outgoing.text_with(|b| m.write_json(cursor, b));
                    delivered += 1;
                }
                Out::Reset { channels, reason } => self
                    .outgoing
                    .text_with(|b| reset_json(channels, reason, cursor, b)),
            }
        }
        self.state
            .stats
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
        self.write().await
    }

    async fn send_text(&mut self, text: String) -> Result<(), WsError> {
        self.outgoing.text(&text);
        self.write().await
    }

    /// Write what is owed, unless the connection is evicted first.
    async fn write(&mut self) -> Result<(), WsError> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let evicted = &mut self.evicted;
        tokio::select! {
            biased;
            r = write_owed(&mut self.socket, &mut self.outgoing) => r,
            _ = evicted.rung() => Err(WsError::ConnectionClosed),
        }
    }

    /// Write what is owed, however long the socket takes (callers bound it).
    async fn write_owed(&mut self) -> Result<(), WsError> {
        write_owed(&mut self.socket, &mut self.outgoing).await
    }

    /// The connection fell too far behind: tell it where to resume, then close.
    async fn slow_consumer(&mut self) -> Ending {
        self.state.stats.evicted.fetch_add(1, Ordering::Relaxed);
        let frame = json!({
            "type": "error",
            "code": "slow_consumer",
            "message": "too far behind; reconnect and resume with this cursor",
            "cursor": self.session.cursor_text(),
        });
        // After the rest of a write the eviction cut short, if any.
        self.outgoing.text(&frame.to_string());
        match tokio::time::timeout(Duration::from_secs(1), self.write_owed()).await {
            Ok(Ok(())) => {
                Ending::Close(CloseCode::Again, "slow consumer: resume with cursor".into())
            }
            // The socket is stuck: no notice, no closing handshake.
            _ => Ending::Stuck,
        }
    }
}

/// Let tungstenite write what it queued (pong and close replies), then write
/// our frames straight to the socket.
async fn write_owed(socket: &mut Socket, outgoing: &mut Outgoing) -> Result<(), WsError> {
    socket.flush().await?;
    outgoing.write_to(socket.get_mut()).await?;
    Ok(())
}
