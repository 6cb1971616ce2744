//! WebSocket transport (`/realtime/ws`, subprotocol `pushgate.v1`).
//!
//! After the upgrade a connection is one task that owns the [`Session`] and
//! both halves of the socket: it reads the next frame, the next delivery and
//! the next signal in one `select`, so replies, replays and live messages
//! leave in one order, and a connection costs one task (a reader task and its
//! channel used to cost another 2.3 KiB per connection). Every write races
//! the inbox's eviction signal: a client that stops reading is cut off
//! instead of stalling anyone.

mod binary;
pub(crate) mod deflate;
pub(crate) mod ending;
pub(crate) mod handshake;
pub(crate) mod http1;
pub(crate) mod inflate;
pub(crate) mod outgoing;
mod read_ahead;
mod requests;
mod serve;

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{Instrument, debug};

use super::resume::{self, ResumeClock};
use super::session::{Delivery, Session};
use super::{Client, Io, admit, query, requested, subscription};
use crate::alarm::Listener;
use crate::broker::BrokerError;
use crate::conn_info::ConnInfo;
use crate::reply::Body;
use crate::state::{AppState, Gauge, Seat, Settings};
use ending::Ending;
use handshake::Handshake;
use inflate::Inflating;
use outgoing::Outgoing;
use read_ahead::ReadAhead;

pub const SUBPROTOCOL: &str = "pushgate.v1";

/// A client that keeps sending after this many refused frames in a row is
/// closed with 1013.
const FLOOD_CLOSE_AFTER: u32 = 20;

pub(crate) type Socket = WebSocketStream<Inflating<ReadAhead<Box<dyn Io>>>>;

/// Where an accepted handshake's connection comes from.
pub(crate) enum Wire {
    /// hyper answered the handshake (HTTP/2, or an HTTP/1 connection hyper
    /// serves): its upgrade hands the connection over.
    Hyper(hyper::upgrade::OnUpgrade),
    /// The server read the handshake itself (`h1/classify.rs`) and sends
    /// the connection once it has written the 101 (`http1.rs`); dropped
    /// unsent when the answer could not be written.
    Direct(tokio::sync::oneshot::Receiver<Box<dyn Io>>),
}

impl Wire {
    /// The upgraded connection, or why there is none.
    pub(crate) async fn connection(self) -> Result<Box<dyn Io>, String> {
        match self {
            Wire::Hyper(on_upgrade) => match on_upgrade.await {
                Ok(upgraded) => Ok(Box::new(TokioIo::new(upgraded))),
                Err(error) => Err(error.to_string()),
            },
            Wire::Direct(taken) => taken
                .await
                .map_err(|_| "the 101 was not written".to_string()),
        }
    }
}

/// The socket of an upgraded connection, and the writer of its frames,
/// both set for the permessage-deflate the handshake `agreed` (if any),
/// for every kind of WebSocket the gateway serves. A compressed client
/// message inflates up to the limit `config` sets for plain ones: the same
/// message is accepted or refused (1009) however it was sent.
pub(crate) async fn accept_socket(
    upgraded: Box<dyn Io>,
    agreed: Option<deflate::Agreed>,
    config: WebSocketConfig,
    state: &AppState,
    settings: &Settings,
) -> (Socket, Outgoing) {
    let limit = config.max_message_size.unwrap_or(usize::MAX);
    // Beneath the inflater and tungstenite: their small reads come from
    // one socket read (`read_ahead.rs`), so tungstenite's read buffer,
    // held for the connection's life, can be small.
    let io = Inflating::new(ReadAhead::new(upgraded), agreed.map(|a| a.inflate(limit)));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let outgoing = match agreed {
        Some(a) => {
            state.metrics.deflate.negotiated();
            let compression = &settings.config.realtime.compression;
            Outgoing::deflating(
                deflate::Deflating::new(&a, compression),
                state.metrics.deflate.clone(),
            )
        }
        None => Outgoing::default(),
    };
    (socket, outgoing)
}

/// Validate the handshake and the requested channels, answer 101, and run the
/// session on the connection hyper upgrades.
pub async fn upgrade(
    state: AppState,
    settings: Arc<Settings>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let wire = Wire::Hyper(hyper::upgrade::on(&mut req));
    answer(state, settings, req, wire).await
}

/// `GET <path>/ws` read by the relay's HTTP/1.1 reader (see
/// `h1/classify.rs`): the same checks and answer as through hyper (the
/// Origin check and CORS headers included), for `http1.rs` to write; the
/// session starts on the connection it then sends through `wire`.
pub async fn direct(
    state: AppState,
    mut req: Request<()>,
    wire: tokio::sync::oneshot::Receiver<Box<dyn Io>>,
) -> Response<Body> {
    let settings = state.settings();
    let origin = match super::cors::check(&settings, &req) {
        Ok(origin) => origin,
        Err(resp) => return resp,
    };
    super::cors::strip_credentials(&origin, &mut req);
    let mut resp = answer(state, settings, req, Wire::Direct(wire)).await;
    super::cors::apply(&mut resp, &origin);
    resp
}

/// Validate the handshake and the requested channels, answer 101, and run
/// the session on the connection `wire` brings.
async fn answer<B>(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<B>,
    wire: Wire,
) -> Response<Body> {
    let handshake = match Handshake::of(&req) {
        Ok(handshake) => handshake,
        Err(refused) => return refused,
    };
    let headers = req.headers();
    let offers_ours = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    let q = query(&req);
    let clock = ResumeClock::start(&state, &req, &q);
    let asked = match requested(&settings, &req, &q, false) {
        Ok(a) => a,
        Err(refusal) => return refusal.response(),
    };
    // The login is asked now only for the URL's channels that need it; a
    // later op that needs it asks then (`requests.rs`).
    let wants_login = asked.needs_identity(&settings);
    let client = match admit(&state, &settings, &req, &q, wants_login).await {
        Ok(c) => c,
        Err(refusal) => return refusal.response(),
    };
    let sub = match subscription(&state, &settings, asked, &client).await {
        Ok(s) => s,
        Err(refusal) => return refusal.response(),
    };
    resume::mark(clock.as_ref(), resume::stage::ADMITTED);
    let agreed = deflate::negotiate(req.headers(), &settings.config.realtime.compression);
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let seat = req.extensions().get::<Seat>().cloned();
    let span = tracing::debug_span!(
        "session",
        transport = "ws",
        client = conn.as_ref().map(|c| c.client.to_string()),
        conn = conn.as_ref().map(|c| c.id),
        subject = client.identity.as_ref().map(|i| i.subject.as_str()),
    );
    // Subscribed before the 101: the client counts itself connected when
    // it sees the socket open, and a message published from then on must
    // reach it, however long the upgrade then takes to reach our task.
    // What comes meanwhile waits in the session's inbox.
    // Dropped half way (hyper drops this handler when the client leaves
    // mid-handshake, and so does the direct road, `server.rs`
    // `while_present`), the session unsubscribes what it had, and the broker
    // takes back a follow it was still confirming (`broker/redis.rs`).
    let mut session = Session::new(&state, settings.config.realtime.client_queue);
    session.set_subject(client.identity.as_ref().map(|i| i.subject.clone()));
    let mut out = Vec::new();
    let subscribed = session
        .subscribe_all(&sub.channels, sub.cursor.as_ref(), &mut out, clock.as_ref())
        .await;
    let tasks = state.lifecycle.tasks().clone();
    // One box for what the opening needs: the task's future then carries a
    // pointer for it, not copies of each part for the connection's life.
    let opening = Box::new(Opening {
        state,
        settings,
        client,
        session,
        out,
        subscribed,
        http: handshake.http(),
        binary: q.get("binary").is_some_and(|v| v == "1"),
        cursor_frames: q.get("cursor_frames").is_some_and(|v| v == "1"),
        agreed,
        seat,
        clock,
    });
    tasks.spawn(run(opening, wire).instrument(span));
    let mut resp = handshake.accept();
    let h = resp.headers_mut();
    if offers_ours {
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    if let Some(agreed) = agreed {
        h.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, agreed.header());
    }
    resp
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
    /// Messages of bytes go as binary frames (`?binary=1`), else as JSON
    /// with their base64.
    binary: bool,
    /// The client reads `{"type":"cursor"}` frames (`?cursor_frames=1`):
    /// messages may then go as their shared compressed form, without a
    /// cursor (`serve.rs`). Other clients get every cursor inline.
    cursor_frames: bool,
    /// Unsplit: one task reads and writes, and a split would put the stream
    /// behind a lock in an `Arc`.
    socket: Socket,
    out: Vec<Delivery>,
    /// Frames encoded and not yet written (see `outgoing.rs`).
    outgoing: Outgoing,
    /// Answers of `send` ops forwarded to the backend, written in arrival order.
    /// Created by the first `send` op: a channel costs ~1 KiB per connection.
    replies: Option<(mpsc::Sender<String>, mpsc::Receiver<String>)>,
    /// `send` ops awaiting the backend.
    pending_sends: usize,
    /// Answers of the application to `subscribe` ops that asked it, created
    /// by the first such op (`requests.rs`).
    /// Boxed: an answer inline would size the session loop's `select!`
    /// result (~240 B), which every idle WebSocket's future holds.
    checked: Option<CheckedChannel>,
    /// Channels whose subscribe awaits the application: one ask each.
    pending_checks: requests::PendingChecks,
    check_generation: u64,
    /// Bumped whenever what the connection may follow was judged again
    /// (recheck, revocation, expiry): an answer asked before is judged anew.
    judged: u64,
}

/// Where the application's answers to `subscribe` ops come back.
type CheckedChannel = (
    mpsc::Sender<Box<requests::Checked>>,
    mpsc::Receiver<Box<requests::Checked>>,
);

/// Most channels one connection may have waiting on the application, and
/// most subscribes waiting on one channel's answer.
const MAX_PENDING_CHECKS: usize = 16;

/// Most `send` ops one connection may have waiting on the backend.
const MAX_PENDING_SENDS: usize = 16;

/// tungstenite's read buffer for a pushgate WebSocket (see `open`).
const WS_READ_BUFFER: usize = 64;

/// What an accepted upgrade needs to become a session.
struct Opening {
    state: AppState,
    settings: Arc<Settings>,
    client: Client,
    /// Subscribed to the URL's channels already ([`upgrade`]).
    session: Session,
    /// The replay those subscriptions owe the client.
    out: Vec<Delivery>,
    subscribed: Result<(), BrokerError>,
    /// Which HTTP version carried the handshake (`Handshake::http`).
    http: &'static str,
    /// The client asked for messages of bytes as binary frames (`?binary=1`).
    binary: bool,
    /// The client reads cursor frames (`?cursor_frames=1`).
    cursor_frames: bool,
    /// permessage-deflate, when the handshake agreed on it.
    agreed: Option<deflate::Agreed>,
    /// Its place under `max_connections`, from its request: its HTTP/1.1
    /// connection's, or the one reserved for its HTTP/2 stream.
    seat: Option<Seat>,
    /// A resume's stopwatch, for its first frame.
    clock: Option<ResumeClock>,
}

/// A session ready to serve, with what it holds for its whole life.
struct Opened {
    ws: WsSession,
    /// Subscribing to the channels asked for on the URL, and the replay:
    /// done, or the reason to close straight away.
    started: Result<(), Ending>,
    _registration: crate::connections::Registration,
    _gauge: Gauge,
    /// The socket counts against `max_connections`: over HTTP/1.1 it keeps
    /// its connection's place past the upgrade; over HTTP/2 each socket is
    /// one connection more than the h2 connection that carries it
    /// (`router.rs` reserves its place before the 200).
    _connection: Seat,
}

/// The connection task: the upgrade and the opening in a box freed once the
/// session runs (what they hold would otherwise size this task's future,
/// which every open WebSocket keeps), then the session.
async fn run(opening: Box<Opening>, wire: Wire) {
    let Some(mut opened) = Box::pin(open(opening, wire)).await else {
        return;
    };
    let ending = match std::mem::replace(&mut opened.started, Ok(())) {
        Ok(()) => opened.ws.serve().await,
        Err(ending) => ending,
    };
    // Boxed: the closing handshake's future would otherwise size this
    // task, and so every idle WebSocket; it exists only while closing, and
    // is kept small (its drain's scrap buffer is on the heap, allocated
    // only when a raw drain is needed).
    Box::pin(opened.ws.close(ending)).await;
}

async fn open(opening: Box<Opening>, wire: Wire) -> Option<Opened> {
    let upgraded = match wire.connection().await {
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
        session,
        out,
        subscribed,
        http,
        binary,
        cursor_frames,
        agreed,
        seat,
        clock,
    } = *opening;
    let rt = &settings.config.realtime;
    let config = WebSocketConfig::default()
        // tungstenite holds this buffer for the connection's whole life
        // (at 512 B it was ~10% of an idle WebSocket's memory) and reads at
        // most this much at a time. Its reads are served from memory by
        // `ReadAhead`, one socket read of up to 4 KiB feeding many, so a
        // small buffer costs a copy per 64 B, not a system call.
        .read_buffer_size(WS_READ_BUFFER)
        // tungstenite writes only pong and close replies (our frames go
        // through `Outgoing`), and queues at most one of each: no write
        // buffer limits to set.
        .max_message_size(Some(rt.max_message + 4096))
        .max_frame_size(Some(rt.max_message + 4096));
    let (socket, outgoing) = accept_socket(upgraded, agreed, config, &state, &settings).await;
    let gauge = Gauge::enter(&state.stats, |s| &s.ws);
    let connection = seat.unwrap_or_else(|| Seat::enter(&state.stats));
    let subject = client.identity.as_ref().map(|i| i.subject.clone());
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
        binary,
        cursor_frames,
        socket,
        out,
        outgoing,
        replies: None,
        pending_sends: 0,
        checked: None,
        pending_checks: requests::PendingChecks::default(),
        check_generation: 0,
        judged: 0,
    };
    ws.state.metrics.connect("ws");
    ws.state.metrics.websocket_connect("ws", http);
    let started = ws.start(subscribed).await;
    resume::mark(clock.as_ref(), resume::stage::FIRST_WRITE);
    Some(Opened {
        ws,
        started,
        _registration: registration,
        _gauge: gauge,
        _connection: connection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without running it: what a task
    /// spawned on it allocates, and keeps while its connection is open.
    fn future_size<A, B, Fut>(_: &impl FnOnce(A, B) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every open WebSocket keeps one `run` task. Its future holds the
    /// session and the serving loop; the closing handshake (with its
    /// 4 KiB drain buffer) must not size it: inline it made the task
    /// ~5.6 KiB, 70% of an idle WebSocket's heap.
    #[test]
    fn an_idle_websocket_task_stays_small() {
        let task = future_size(&run);
        assert!(
            task <= 1800,
            "the WebSocket task's future is {task} B; box what only the opening or the closing needs"
        );
    }

    fn future_size1<A, Fut>(_: &impl FnOnce(A) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// The serving loop's future is the larger part of the task: the
    /// `select!` it waits in, its result, and the handlers of the common
    /// paths. A rare path's handler (or a large answer, such as the
    /// application's to a `subscribe`) left inline sizes it, and every
    /// idle WebSocket pays for it (bounds measured on a debug build).
    #[test]
    fn an_idle_websockets_serving_loop_stays_small() {
        let serve = future_size1(&WsSession::serve);
        assert!(
            serve <= 720,
            "the WebSocket serving loop's future is {serve} B; box the handlers and answers of rare paths"
        );
    }

    /// What every open WebSocket keeps for its whole life: its session
    /// state, the transport-neutral session and who the client is.
    #[test]
    fn an_idle_websockets_state_stays_small() {
        use std::mem::size_of;
        let (ws, session, client) = (
            size_of::<WsSession>(),
            size_of::<Session>(),
            size_of::<Client>(),
        );
        assert!(
            ws <= 904,
            "WsSession is {ws} B; keep what rare ops need behind a box"
        );
        assert!(
            session <= 192,
            "Session is {session} B; reach shared handles through the state"
        );
        assert!(
            client <= 160,
            "Client is {client} B; keep what most clients lack behind a box"
        );
    }

    /// Every close allocates its (boxed) future, even one that returns at
    /// once (peer gone, socket stuck): a buffer inside it costs every close.
    #[test]
    fn the_closing_handshake_future_stays_small() {
        let close = future_size(&WsSession::close);
        assert!(
            close <= 1024,
            "the close future is {close} B; keep buffers it rarely needs on the heap"
        );
    }
}
