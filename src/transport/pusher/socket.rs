//! One Pusher socket's life: the opening (app, protocol, capacity), the loop,
//! and the close with Pusher's code, whichever carrier (`carrier.rs`: a
//! WebSocket or an HTTP fallback session) moves its frames.
//!
//! One task owns the socket and the session, as pushgate's own WebSocket
//! does: one `select` waits on shutdown, reloads, deliveries, client frames
//! and the activity check, biased in that order, so a flooding client
//! cannot hold up a shutdown or its own deliveries. The activity check is
//! Pusher's: silent for `activity_timeout`, the socket is sent a
//! `pusher:ping`; silent `pong_timeout` more, it is closed with 4201. Every
//! way out is a [`Ending`] with the code pusher-js acts on: 4001 (unknown
//! key, no retry), 4004 (the app's connection quota, no retry), 4100 (the
//! gateway over capacity or a flood, back off), 4200 (reconnect now:
//! graceful shutdown, spread over `reconnect_spread`), 4201 (no pong).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use super::Opening;
use super::carrier::{Link, Owed};
use crate::pusher::frames::{self, code};
use crate::pusher::{App, AppEvent, ChannelKind};
use crate::state::{AppState, Gauge, Settings};
use crate::transport::Client;
use crate::transport::session::{Delivery, Session};
use crate::transport::ws;
use crate::transport::ws::ending::Inbound;

/// The least of the largest frame read at all; past the cap tungstenite
/// closes 1009. Frames under it but over what they may carry (an app's
/// `max_message`, a `channel_data`) are parsed and refused with
/// `pusher:error`, the socket kept open.
const MIN_FRAME_CAP: usize = 256 * 1024;

/// The largest frame a socket of an app with `max_message` reads: a client
/// event whose data is at its limit fits even with every byte escaped
/// (`\u00XX`, six bytes for one), so it is refused with 4301, not 1009.
pub(super) fn frame_cap(max_message: usize) -> usize {
    max_message
        .saturating_mul(6)
        .saturating_add(16 * 1024)
        .max(MIN_FRAME_CAP)
}

/// A client that keeps sending after this many rate-limited frames in a
/// row is closed with 4100 (back off, then reconnect).
const FLOOD_CLOSE_AFTER: u32 = 20;

/// Why a Pusher socket ends, and what it is told.
pub(super) enum Ending {
    /// Closed by us with a Pusher (or RFC 6455) code.
    Close(u16, String),
    /// The peer closed or vanished.
    Gone,
    /// The socket took nothing while we owed it bytes.
    Stuck,
}

impl Ending {
    /// Label for the disconnect metric.
    fn reason(&self) -> &'static str {
        match self {
            Ending::Gone => "client",
            Ending::Stuck => "slow_client",
            Ending::Close(c, _) => match *c {
                code::RECONNECT => "shutdown",
                code::PONG_TIMEOUT => "timeout",
                code::UNKNOWN_APP => "unknown_app",
                code::OVER_CAPACITY => "over_capacity",
                code::OVER_QUOTA => "over_quota",
                code::UNAUTHORIZED => "operator",
                _ => "protocol",
            },
        }
    }
}

/// A subscribed channel, by its hub name.
pub(super) struct Joined {
    /// The name the app knows it by.
    pub(super) name: String,
    pub(super) kind: ChannelKind,
    /// This socket's member on a presence channel, and what it shows.
    pub(super) user_id: Option<String>,
    pub(super) user_info: Option<Arc<str>>,
    /// The `(epoch, seq)` of the cached event a cache channel's subscriber
    /// was sent on subscribing: the hub subscription starts before the
    /// history is read, so that event may also arrive live, and is then
    /// not sent twice.
    pub(super) cached: Option<(u64, u64)>,
}

pub(super) struct PusherSocket {
    pub(super) state: AppState,
    pub(super) settings: Arc<Settings>,
    pub(super) app: Arc<App>,
    pub(super) key: String,
    pub(super) socket_id: Box<str>,
    /// The session id of `POST /disconnect`.
    pub(super) conn_id: u64,
    pub(super) client: Client,
    pub(super) session: Session,
    /// The WebSocket or HTTP session the frames go over.
    pub(super) socket: Link,
    pub(super) outgoing: Owed,
    pub(super) joined: HashMap<Arc<str>, Joined>,
    pub(super) out: Vec<Delivery>,
    /// Client events in the current one-second window.
    pub(super) window: (Instant, u32),
    /// Frames refused by the rate limit since the last accepted one.
    refused: u32,
    /// The protocol version the client speaks; under 6 a close is preceded
    /// by a `pusher:error` with its code.
    protocol: u32,
    pub(super) sent: Counter,
    received: Counter,
    /// The user this socket signed in as (`pusher:signin`).
    pub(super) user: Option<crate::pusher::users::SignedIn>,
    /// The app terminated this socket's user: it closes with 4009.
    pub(super) terminated: bool,
    /// The `subscription_count` each channel's subscriber was last told.
    pub(super) counts_sent: HashMap<Arc<str>, usize>,
}

/// Run the socket of `opening` once upgraded.
pub(super) async fn run(opening: Box<Opening>, on_upgrade: hyper::upgrade::OnUpgrade) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            debug!(%error, "pusher upgrade failed");
            return;
        }
    };
    let cap = frame_cap(opening.app.as_ref().map_or(0, |a| a.config.max_message));
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
    let (socket, outgoing) = ws::accept_socket(
        Box::new(hyper_util::rt::TokioIo::new(upgraded)),
        opening.agreed,
        config,
        &opening.state,
        &opening.settings,
    )
    .await;
    open(
        opening,
        Link::WebSocket(Box::new(socket)),
        Owed::WebSocket(outgoing),
    )
    .await;
}

/// Serve the Pusher connection of `opening` over `socket`, whichever
/// carrier it is, until it ends; `outgoing` encodes for that carrier (a
/// WebSocket's with the permessage-deflate its handshake agreed on).
pub(super) async fn open(opening: Box<Opening>, socket: Link, outgoing: Owed) {
    let socket = serve_link(opening, socket, outgoing).await;
    // Counted nowhere any more, but an HTTP session keeps its id until its
    // close line was taken: the client's next poll reads the code.
    socket.linger().await;
}

/// Serve until the connection ends and hand its carrier back.
async fn serve_link(opening: Box<Opening>, socket: Link, outgoing: Owed) -> Link {
    let Opening {
        state,
        settings,
        client,
        app,
        key,
        protocol,
        socket_id,
        http,
        agreed: _,
    } = *opening;
    let transport = socket.label();
    state.metrics.connect(transport);
    if let Link::WebSocket(_) = socket {
        state.metrics.websocket_connect("pusher", http);
    }
    // Pusher's order: the protocol first (4008 when not sent, 4007 when
    // not one spoken here), then the app.
    let protocol = match protocol {
        None => {
            let why = "No protocol version supplied";
            return refuse(&state, socket, 7, code::NO_PROTOCOL, why).await;
        }
        Some(p) if !(5..=7).contains(&p) => {
            let why = "Unsupported protocol version";
            return refuse(&state, socket, 7, code::UNSUPPORTED_PROTOCOL, why).await;
        }
        Some(p) => p,
    };
    let Some(app) = app else {
        let why = "Application does not exist";
        return refuse(&state, socket, protocol, code::UNKNOWN_APP, why).await;
    };
    // The gateway's `max_connections` (as in force now: a reload that
    // lowers it turns new connections away at once). A WebSocket was
    // counted when its TCP connection was accepted; an HTTP session, and a
    // WebSocket on an HTTP/2 stream, are one connection more than the
    // requests or the h2 connection that carry them.
    let open_now = state
        .stats
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    let counting = usize::from(matches!(socket, Link::Http(_)) || http == "2");
    if state.limits.at_capacity(open_now + counting) {
        state.metrics.limited("max_connections");
        let why = "Over capacity";
        return refuse(&state, socket, protocol, code::OVER_CAPACITY, why).await;
    }
    // The app's own cap, Pusher's "over connection quota".
    let Some(_counted) = state
        .metrics
        .pusher
        .open(&app.id, app.config.max_connections)
    else {
        let why = "Over connection quota";
        return refuse(&state, socket, protocol, code::OVER_QUOTA, why).await;
    };
    let _gauge = match socket {
        Link::WebSocket(_) => Gauge::enter(&state.stats, |s| &s.ws),
        Link::Http(_) => Gauge::enter(&state.stats, |s| &s.poll),
    };
    // hyper's HTTP/1 connection task, which counted it, ended at the
    // upgrade; an HTTP/2 connection goes on, and counts, beside the socket.
    // Every socket and session counts: an HTTP/2 socket is one connection
    // more than the h2 connection that carries it.
    let _connection = Gauge::enter(&state.stats, |s| &s.connections);
    let session = Session::new(&state, settings.config.realtime.client_queue);
    let id = state.stats.conn_id();
    let _registration = state.connections.register(
        id,
        client.identity.as_ref().map(|i| i.subject.as_str()),
        transport,
        session.inbox(),
    );
    let (sent, received) = state.metrics.pusher.counters(&app.id);
    let mut this = PusherSocket {
        state,
        settings,
        app,
        key,
        socket_id,
        conn_id: id,
        client,
        session,
        outgoing,
        socket,
        joined: HashMap::new(),
        out: Vec::new(),
        window: (Instant::now(), 0),
        refused: 0,
        protocol,
        sent,
        received,
        user: None,
        terminated: false,
        counts_sent: HashMap::new(),
    };
    let ending = this.serve().await;
    this.state.metrics.disconnect(transport, ending.reason());
    // Its channels left before the closing handshake: a kicked or timed
    // out socket is no member while the peer takes its time to answer.
    this.leave_all();
    this.close(ending).await;
    this.socket
}

/// Close a socket that never served with `code` (after a `pusher:error`
/// saying it, for a client of a protocol under 6).
async fn refuse(
    state: &AppState,
    mut socket: Link,
    protocol: u32,
    code: u16,
    reason: &str,
) -> Link {
    state
        .metrics
        .disconnect(socket.label(), Ending::Close(code, String::new()).reason());
    if protocol < 6 {
        socket.send_now(&frames::error(Some(code), reason)).await;
    }
    socket.close(code, reason).await;
    socket
}

impl PusherSocket {
    async fn serve(&mut self) -> Ending {
        let pusher = self.settings.config.pusher.clone().unwrap_or_default();
        let activity = pusher.activity_timeout.max(Duration::from_millis(100));
        let established =
            frames::connection_established(&self.socket_id, activity.as_secs().max(1));
        if self.send(established).await.is_err() {
            return Ending::Gone;
        }
        let inbox = self.session.inbox().clone();
        let mut evicted = inbox.eviction().listen_from_start();
        let mut stopping = self.state.lifecycle.stopping().listen_from_start();
        let mut reloaded = self.state.reloaded.listen();
        // A reload between the handshake and this listener went unheard:
        // the first turn takes the settings in force, as a ring would.
        let mut missed_reload = !Arc::ptr_eq(&self.settings, &self.state.settings());
        // Silent for `activity`: a ping; silent `pong_timeout` more: 4201.
        let check = tokio::time::sleep(activity);
        tokio::pin!(check);
        let mut pinged = false;
        let mut shutdown: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // An app that requires signing in gives a socket this long from its
        // start (as the settings in force say: a reload moves it).
        let started = Instant::now();
        let signin_at =
            |by: Option<Duration>| started + by.unwrap_or(Duration::from_secs(365 * 86_400));
        let mut signin_by = self.app.config.user_authentication_timeout;
        let signin_deadline = tokio::time::sleep_until(signin_at(signin_by));
        tokio::pin!(signin_deadline);
        let mut counts = tokio::time::interval(crate::pusher::SUBSCRIPTION_COUNT_EVERY);
        counts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.terminated {
                return Ending::Close(code::UNAUTHORIZED, "terminated by the app".into());
            }
            let step = tokio::select! {
                biased;
                _ = stopping.rung(), if shutdown.is_none() => {
                    // Spread over the window: a restart is not a herd.
                    let spread = pusher.reconnect_spread.as_millis() as u64;
                    let after = Duration::from_millis(rand::random::<u64>() % spread.max(1));
                    shutdown = Some(Box::pin(tokio::time::sleep(after)));
                    Ok(())
                }
                _ = async { if let Some(s) = shutdown.as_mut() { s.await } }, if shutdown.is_some() => {
                    return Ending::Close(code::RECONNECT, "server restart: reconnect".into());
                }
                _ = async {
                    if !std::mem::take(&mut missed_reload) {
                        reloaded.rung().await
                    }
                } => {
                    self.settings = self.state.settings();
                    match self.settings.pusher.by_key(&self.key) {
                        // Its channels are other hub channels (or counted
                        // under another app id) now: the client subscribes
                        // again under the new names.
                        Some(app) if app.config.channel_prefix != self.app.config.channel_prefix || app.id != self.app.id => {
                            return Ending::Close(code::RECONNECT, "channel prefix changed: reconnect".into());
                        }
                        Some(app) => {
                            self.app = app.clone();
                            signin_by = self.app.config.user_authentication_timeout;
                            signin_deadline.as_mut().reset(signin_at(signin_by));
                        }
                        None => return Ending::Close(code::UNKNOWN_APP, "Application does not exist".into()),
                    }
                    Ok(())
                }
                _ = evicted.rung() => {
                    self.state.stats.evicted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ending::Close(code::RECONNECT, "too far behind: reconnect".into());
                }
                _ = inbox.ready() => {
                    if inbox.is_kicked() {
                        return Ending::Close(code::UNAUTHORIZED, "disconnected by the operator".into());
                    }
                    self.session.drain(&mut self.out);
                    self.deliver().await
                }
                read = self.socket.next(), if self.outgoing.is_empty() => {
                    self.outgoing.after_read();
                    pinged = false;
                    check.as_mut().reset(Instant::now() + activity);
                    match Inbound::from_read(read) {
                        Inbound::Text(text) => {
                            self.received.inc();
                            let frame = frames::parse(&text);
                            if self.subscribe_is_free(&frame) || self.allow_frame() {
                                self.on_frame(frame).await
                            } else if self.refused > FLOOD_CLOSE_AFTER {
                                return Ending::Close(code::OVER_CAPACITY, "too many frames".into());
                            } else if let Ok(frames::ClientFrame::Subscribe(sub)) = frame {
                                // pusher-js waits for an answer per channel.
                                self.send(frames::subscription_error(&sub.channel, 429, "too many frames; slow down")).await
                            } else {
                                self.send(frames::error(None, "too many frames; slow down")).await
                            }
                        }
                        // Binary and control frames cost what text does.
                        Inbound::Binary(_) | Inbound::Control if !self.allow_frame() && self.refused > FLOOD_CLOSE_AFTER => {
                            return Ending::Close(code::OVER_CAPACITY, "too many frames".into());
                        }
                        Inbound::Binary(_) => self.send(frames::error(None, "binary frames are not supported")).await,
                        Inbound::Control => Ok(()),
                        Inbound::End(Some((code, why))) => return Ending::Close(code.into(), why.into()),
                        Inbound::End(None) => return Ending::Gone,
                    }
                }
                _ = signin_deadline.as_mut(), if signin_by.is_some() && self.user.is_none() => {
                    return Ending::Close(code::UNAUTHORIZED, "Connection is unauthorized: sign in required".into());
                }
                _ = counts.tick(), if self.app.config.subscription_count => {
                    self.send_counts().await
                }
                _ = check.as_mut() => {
                    if pinged {
                        return Ending::Close(code::PONG_TIMEOUT, "Pong reply not received".into());
                    }
                    pinged = true;
                    check.as_mut().reset(Instant::now() + pusher.pong_timeout);
                    self.send(frames::ping()).await
                }
            };
            if let Err(error) = step {
                if inbox.is_evicted() {
                    return Ending::Close(code::RECONNECT, "too far behind: reconnect".into());
                }
                if matches!(&error, WsError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut) {
                    return Ending::Stuck;
                }
                return Ending::Gone;
            }
        }
    }

    /// Whether a frame is within the client's rate (`limits`, as for
    /// pushgate's own sockets).
    fn allow_frame(&mut self) -> bool {
        crate::transport::admission::allow_frame(&self.state, &self.client.key, &mut self.refused)
    }

    /// Whether `frame` is a subscribe the frame limit lets through: a
    /// reconnecting pusher-js subscribes to all its channels at once, so
    /// up to the connection's channel limit they are charged to the
    /// subscribe limit only.
    fn subscribe_is_free(&self, frame: &Result<frames::ClientFrame, frames::FrameError>) -> bool {
        matches!(frame, Ok(frames::ClientFrame::Subscribe(_)))
            && self.joined.len() < self.settings.config.limits.max_channels_per_connection
    }

    async fn on_frame(
        &mut self,
        frame: Result<frames::ClientFrame, frames::FrameError>,
    ) -> Result<(), WsError> {
        match frame {
            Ok(frames::ClientFrame::Ping) => self.send(frames::pong()).await,
            Ok(frames::ClientFrame::Pong) => Ok(()),
            Ok(frames::ClientFrame::Subscribe(sub)) => Box::pin(self.subscribe(sub)).await,
            Ok(frames::ClientFrame::Signin { auth, user_data }) => {
                Box::pin(self.signin(&auth, &user_data)).await
            }
            Ok(frames::ClientFrame::Unsubscribe { channel }) => {
                self.unsubscribe(&channel);
                Ok(())
            }
            Ok(frames::ClientFrame::ClientEvent {
                event,
                channel,
                data,
            }) => Box::pin(self.client_event(event, channel, data)).await,
            Err(error) => self.send(frames::error(None, &error.to_string())).await,
        }
    }

    /// Queue one frame and write what is owed.
    pub(super) async fn send(&mut self, text: String) -> Result<(), WsError> {
        self.outgoing.text(&text);
        self.write().await
    }

    /// Write what is owed, unless the connection is evicted first.
    pub(super) async fn write(&mut self) -> Result<(), WsError> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let mut evicted = self.session.inbox().eviction().listen_from_start();
        tokio::select! {
            biased;
            r = self.socket.write_owed(&mut self.outgoing) => r,
            _ = evicted.rung() => Err(WsError::ConnectionClosed),
        }
    }

    async fn close(&mut self, ending: Ending) {
        let (code, reason) = match ending {
            Ending::Close(code, reason) => (code, reason),
            Ending::Gone => return self.socket.flush().await,
            Ending::Stuck => return,
        };
        if self.protocol < 6 {
            self.outgoing.text(&frames::error(Some(code), &reason));
        }
        let owed = tokio::time::timeout(
            Duration::from_secs(2),
            self.socket.write_owed(&mut self.outgoing),
        )
        .await;
        if matches!(owed, Ok(Ok(()))) {
            self.socket.close(code, &reason).await;
        }
    }

    /// Leave every channel (the socket ended): the app hears of channels
    /// this left empty.
    fn leave_all(&mut self) {
        let channels: Vec<Arc<str>> = self.joined.keys().cloned().collect();
        for hub in channels {
            self.unsubscribe_hub(&hub);
        }
    }

    /// Tell the app's webhook of `event`, when it has one that takes it:
    /// nothing waits in the queue for a webhook that will never read it.
    pub(super) fn report(&self, event: AppEvent) {
        if webhook_wants(&self.app, &event) {
            self.state.app_events.send(&self.app.id, event);
        }
    }
}

/// Whether `app`'s webhook (in the settings in force) takes `event`. An
/// occupied goes with a vacated either way: the sender holds a vacated back
/// and drops it when the channel is occupied again.
pub(super) fn webhook_wants(app: &App, event: &AppEvent) -> bool {
    let names: &[&str] = match event {
        AppEvent::ChannelOccupied { .. } | AppEvent::ChannelVacated { .. } => {
            &["channel_occupied", "channel_vacated"]
        }
        AppEvent::MemberAdded { .. } => &["member_added"],
        AppEvent::MemberRemoved { .. } => &["member_removed"],
        AppEvent::ClientEvent { .. } => &["client_event"],
        AppEvent::SubscriptionCount { .. } => &["subscription_count"],
        AppEvent::CacheMiss { .. } => &["cache_miss"],
    };
    app.config
        .webhook
        .as_ref()
        .is_some_and(|hook| hook.events.iter().any(|e| names.contains(&e.as_str())))
}
