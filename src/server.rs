//! Listeners and connections: the accept loop, the per-connection task
//! (whose connection it is, `front.rs`; the TLS handshake under a timeout;
//! then the engine: on a public HTTP/1 connection the relay's driver,
//! `relay.rs`, reads the heads and hands back an SSE subscriber or the
//! connection for hyper, HTTP/1.1 + HTTP/2 with upgrades), and the graceful
//! end of both. The HTTP/1 wire rules are `h1/`'s, not this module's.
//!
//! The accept loop never waits on a client: it only accepts, sets
//! `TCP_NODELAY` and spawns. Running out of file descriptors backs off instead
//! of spinning, and accepting pauses while every serving loop's queue is
//! full (`loops.rs`). On shutdown every connection is asked to finish its
//! in-flight requests; the gateway's grace period bounds how long that may
//! take.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, warn};

use http::{HeaderValue, Response, header};

mod front;
mod one_record;
mod rewind;
mod send_timeout;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use front::Identified;
use rewind::Rewind;
use send_timeout::SendTimeout;

use crate::conn_info::{ConnInfo, ConnKill};
use crate::limits::Limited;
use crate::loops::Loops;
use crate::real_ip::Fronts;
use crate::relay::{self, Relayed};
use crate::reply::{self, Body};
use crate::state::{AppState, Seat};
use crate::transport::Io;
use crate::transport::sse::http1::SseHandoff;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerRole {
    Public,
    Admin,
}

/// Accept connections until shutdown, each served on the next of `loops`
/// (`loops.rs`), or on this runtime when there are none (the admin
/// listener).
pub async fn accept_loop(
    state: AppState,
    listener: TcpListener,
    surface: ListenerRole,
    loops: Option<Loops>,
) {
    let shutdown = state.lifecycle.draining().clone();
    if let Some(loops) = &loops {
        let _ = state.stats.serving_loops.set(loops.health());
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = accept(&listener, loops.as_ref()) => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let state2 = state.clone();
                // Read per connection: a reload may have brought new certificates.
                let acceptor = match surface {
                    ListenerRole::Public => state.settings().tls.clone().map(TlsAcceptor::from),
                    ListenerRole::Admin => None,
                };
                // Counted from here until its loop takes it on (or drops
                // it, the gateway ending): sockets in the loops' queues.
                let queued = loops
                    .as_ref()
                    .map(|_| crate::state::Gauge::enter(&state.stats, |s| &s.queued));
                // Where a resume's stage times start: the wait for a loop
                // and for the first bytes counts, as the client lives it.
                let accepted = std::time::Instant::now();
                let serve = move |stream| {
                    drop(queued);
                    // `max_connections` is about client connections: the
                    // admin listener is not counted. The check and the count
                    // are one step (the cap is never passed); a connection
                    // refused at the cap holds no place (it is answered 503
                    // and closed). Reserved here, on the loop that serves the
                    // connection, not on the accept loop's thread: the seat
                    // lives as long as the connection, and allocated there
                    // it pinned that thread's allocator arena, where a
                    // burst's short-lived openings had been, at its peak
                    // (~1 KiB per idle connection after 10,000 connects).
                    let (gate, seat) = match surface {
                        ListenerRole::Public => match state2.reserve_connection() {
                            Some(seat) => (None, Some(seat)),
                            None => (Some(ConnectionRefusal::Full), None),
                        },
                        ListenerRole::Admin => (None, None),
                    };
                    connection(
                        state2,
                        stream,
                        (peer, accepted),
                        surface,
                        acceptor,
                        gate,
                        seat,
                    )
                };
                match &loops {
                    // Leaves this runtime's reactor for the loop's.
                    Some(loops) => match stream.into_std() {
                        Ok(stream) => loops.serve(state.lifecycle.tasks(), stream, serve),
                        Err(error) => debug!(%error, "accepted connection failed at once"),
                    },
                    None => {
                        state.lifecycle.tasks().spawn(serve(stream));
                    }
                }
            }
            Err(error) => {
                // EMFILE/ENFILE and friends: back off rather than spin.
                warn!(%error, "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The next connection, once a serving loop's queue has room for it
/// (`Loops::room`): while every queue is full, new connections wait in the
/// kernel's listen backlog, which costs no file descriptor, instead of in
/// ours. A queue place is given back when the loop takes the socket on,
/// before anything is read from it, so clients that send nothing hold none
/// (their openings end at `handshake_timeout` / `header_timeout`).
async fn accept(
    listener: &TcpListener,
    loops: Option<&Loops>,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    if let Some(loops) = loops {
        loops.room().await;
    }
    listener.accept().await
}

/// A connection admitted only to be told no: every request on it gets this
/// refusal (503 at `max_connections`, 429 over `per_ip.connects`).
#[derive(Clone, Copy, Debug)]
pub enum ConnectionRefusal {
    Full,
    Limited(Limited),
}

/// `per_ip.connects` for a connection from `info`'s client. A trusted
/// front's own connections are not counted: each carries many clients'
/// requests (and is kept alive for them), whose own addresses are charged
/// per request by the realtime limits.
fn connects(state: &AppState, info: &ConnInfo) -> Option<ConnectionRefusal> {
    if info.front.is_some() {
        return None;
    }
    state
        .limits
        .connect(info.client)
        .err()
        .map(ConnectionRefusal::Limited)
}

/// A request on a connection over `per_ip.connects` that resumes with its
/// cursor (`transport::resume`) passes under the address's
/// `per_ip.resumes` instead (`None`): a restart's returning clients are not
/// a flood of strangers. Past that allowance it is refused under it; every
/// other request keeps the connection's refusal.
fn unless_resume<B>(
    state: &AppState,
    gate: ConnectionRefusal,
    req: &http::Request<B>,
) -> Option<ConnectionRefusal> {
    let ConnectionRefusal::Limited(l) = gate else {
        return Some(gate);
    };
    let Some(info) = req.extensions().get::<ConnInfo>() else {
        return Some(gate);
    };
    if l.kind != crate::limits::Kind::Connects
        || !crate::transport::resume::is_resume(&state.settings(), state.broker.epoch(), req)
    {
        return Some(gate);
    }
    state
        .limits
        .resume(info.client)
        .err()
        .map(ConnectionRefusal::Limited)
}

fn refusal(gate: ConnectionRefusal) -> Response<Body> {
    let mut resp = match gate {
        ConnectionRefusal::Full => reply::unavailable(
            "at_capacity",
            "the gateway is at max_connections; retry shortly",
        ),
        ConnectionRefusal::Limited(l) => crate::transport::limited(l),
    };
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A connection refused over a limit ends after its answer: over
/// HTTP/1.1 with `Connection: close` (a client's retry on the pooled
/// connection would be refused again, and the connection, counted over
/// the cap and past the per-address connect limit, would stay open for as
/// long as the client likes); over HTTP/2 with a GOAWAY once the stream is
/// answered. A WebSocket accepted to be told why (101) ends with its
/// closing handshake instead.
fn end_after_refusal(
    mut resp: Response<Body>,
    version: http::Version,
    drain: &crate::alarm::Alarm,
) -> Response<Body> {
    if version == http::Version::HTTP_2 {
        drain.ring();
    } else if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

async fn connection(
    state: AppState,
    stream: TcpStream,
    // The client's address, and when the accept loop took the connection.
    (peer, accepted): (SocketAddr, std::time::Instant),
    surface: ListenerRole,
    acceptor: Option<TlsAcceptor>,
    gate: Option<ConnectionRefusal>,
    // Its place under `max_connections` (none on the admin listener).
    seat: Option<Seat>,
) {
    let id = state.stats.conn_id();
    let span =
        tracing::debug_span!("conn", %peer, id, surface = ?surface, client = tracing::field::Empty);
    async move {
        let mut stream = stream;
        let (fronts, proxy_protocol, handshake, header_timeout) = {
            let settings = state.settings();
            let config = &settings.config;
            let fronts = match surface {
                ListenerRole::Public => Fronts {
                    proxies: config.listen.trusted_proxies.clone(),
                    header: config.listen.real_ip_header,
                },
                ListenerRole::Admin => Fronts::default(),
            };
            let proxy_protocol = surface == ListenerRole::Public && config.listen.proxy_protocol;
            (
                fronts,
                proxy_protocol,
                config.limits.handshake_timeout,
                config.limits.header_timeout,
            )
        };
        // One deadline for the PROXY header and the TLS handshake.
        let deadline = tokio::time::Instant::now() + handshake;
        let tls = acceptor.is_some();
        // Nothing is allocated for the opening (TLS state, the relay's
        // future and head buffer) until the client has sent something:
        // after a connect burst, thousands of accepted connections whose
        // first bytes had not arrived each held an opening's buffers at
        // once, and the allocator kept that peak as idle memory. Waiting
        // for readability costs no memory; a client that sends nothing is
        // closed when its first deadline passes, as before.
        let first_bytes = if tls || proxy_protocol {
            deadline
        } else {
            tokio::time::Instant::now() + header_timeout
        };
        if !matches!(
            tokio::time::timeout_at(first_bytes, stream.readable()).await,
            Ok(Ok(()))
        ) {
            debug!("closed: nothing sent before the opening's deadline");
            return;
        }
        let identified = front::identify(
            &mut stream,
            peer,
            tls,
            id,
            &fronts,
            proxy_protocol,
            deadline,
        )
        .await;
        let Identified { mut info, early } = match identified {
            Ok(identified) => identified,
            Err(why) => {
                state.metrics.proxy_protocol_refused.inc();
                debug!(why, "connection refused: no valid PROXY protocol header");
                return;
            }
        };
        info.accepted = accepted;
        tracing::Span::current().record("client", tracing::field::display(info.client));
        let gate = match surface {
            ListenerRole::Public => gate.or_else(|| connects(&state, &info)),
            ListenerRole::Admin => gate,
        };
        // Boxed: the opening (TLS handshake, first request, session setup,
        // or a whole hyper connection) takes several KiB that an idle SSE
        // subscriber, which outlives it, must not keep: its stream moves to
        // a task of its own and this one ends.
        let tasks = state.lifecycle.tasks().clone();
        // Under TLS, so that it sees the bytes the socket takes: TLS may
        // still be writing out a record after our last write was accepted.
        let stream = SendTimeout::new(
            Rewind::new(early, stream),
            state.settings().config.backend.timeout,
        );
        let handoff = match acceptor {
            Some(acceptor) => {
                Box::pin(serve_tls(
                    state,
                    stream,
                    info,
                    surface,
                    gate,
                    seat.clone(),
                    (acceptor, deadline),
                ))
                .await
            }
            None => {
                let seat = seat.clone();
                Box::pin(serve(state, stream, info, surface, gate, seat, false)).await
            }
        };
        // A handed-off SSE stream keeps counting until it ends; an upgraded
        // WebSocket or tunnel keeps the place from its request.
        match handoff {
            Some(sse) => sse.spawn(&tasks, seat),
            None => drop(seat),
        }
    }
    .instrument(span)
    .await
}

/// The TLS handshake, done by `deadline`, then [`serve`] over it.
async fn serve_tls(
    state: AppState,
    stream: SendTimeout<Rewind<TcpStream>>,
    mut info: ConnInfo,
    surface: ListenerRole,
    gate: Option<ConnectionRefusal>,
    seat: Option<Seat>,
    // The acceptor, and when its handshake must be done by.
    (acceptor, deadline): (TlsAcceptor, tokio::time::Instant),
) -> Option<SseHandoff> {
    match tokio::time::timeout_at(deadline, Box::pin(acceptor.accept(stream))).await {
        Ok(Ok(tls)) => {
            info.sni = tls.get_ref().1.server_name().map(std::sync::Arc::from);
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                // Many streams' frames in one record and one write (`one_record.rs`).
                return serve(
                    state,
                    one_record::OneRecord::new(tls),
                    info,
                    surface,
                    gate,
                    seat,
                    h2,
                )
                .await;
            }
            serve(state, tls, info, surface, gate, seat, h2).await
        }
        Ok(Err(error)) => {
            state.metrics.tls_failures.inc();
            debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            state.metrics.tls_failures.inc();
            debug!("TLS handshake timed out");
            None
        }
    }
}

type ServiceFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<http::Response<crate::reply::Body>, Infallible>>
            + Send,
    >,
>;

/// Serve one connection: on a public HTTP/1 connection the relay first
/// (`relay.rs`), which hands back SSE subscribers and WebSocket handshakes
/// (`h1/classify.rs` says why: an SSE stream comes back as a handoff to
/// stream, a handshake is answered here); everything else through hyper.
async fn serve<I>(
    state: AppState,
    mut io: I,
    info: ConnInfo,
    surface: ListenerRole,
    gate: Option<ConnectionRefusal>,
    seat: Option<Seat>,
    h2: bool,
) -> Option<SseHandoff>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut prefix = Bytes::new();
    if surface == ListenerRole::Public && gate.is_none() && !h2 {
        // One deadline for the first head, whoever reads the rest of it.
        let head_deadline =
            tokio::time::Instant::now() + state.settings().config.limits.header_timeout;
        // The relay reads the heads (`h1/classify.rs` picks the engine):
        // plain proxied requests need no hyper, an SSE subscriber is served
        // without it, and the first request that needs hyper gets it the
        // connection from there on.
        prefix = match Box::pin(relay::serve(&state, &mut io, &info, head_deadline)).await {
            Relayed::Sse(req) => return Some(open_sse(state, io, req, info).await),
            Relayed::WebSocket(req) => {
                Box::pin(open_ws(state, io, req, info, seat)).await;
                return None;
            }
            Relayed::HandOver(bytes) => bytes.freeze(),
            Relayed::Closed => {
                // A clean end (TLS close_notify, FIN), as hyper ends its
                // connections; bounded, since a client may not read.
                let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
                return None;
            }
            Relayed::Aborted => return None,
        };
    }
    // Boxed: hyper's connection state is large, and only hyper connections need it.
    Box::pin(serve_hyper(
        state,
        Rewind::new(prefix, io),
        info,
        surface,
        gate,
        seat,
        h2,
    ))
    .await;
    None
}

/// Answer an SSE subscriber (pushgate's own or the Mercure hub's) on
/// HTTP/1 without hyper: open its session and hand back what streaming needs.
async fn open_sse<I>(
    state: AppState,
    io: I,
    mut req: http::Request<()>,
    info: ConnInfo,
) -> SseHandoff
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = ConnKill::default();
    let info = info.for_request(req.headers());
    req.extensions_mut().insert(info);
    req.extensions_mut().insert(kill.clone());
    let answer = if crate::transport::mercure::is_stream(&state.settings(), req.uri().path()) {
        Box::pin(crate::transport::mercure::direct(state, req)).await
    } else {
        Box::pin(crate::transport::sse::direct(state, req)).await
    };
    SseHandoff::new(Box::new(io), answer, kill)
}

/// Answer a WebSocket handshake on HTTP/1 without hyper: the session's
/// checks and 101 as through hyper, the 101 written here and the
/// connection handed to the session (`transport/ws/http1.rs`). The request
/// carries the connection's place for the socket to keep, as hyper's does.
async fn open_ws<I>(
    state: AppState,
    io: I,
    mut req: http::Request<()>,
    info: ConnInfo,
    seat: Option<Seat>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = info.for_request(req.headers());
    req.extensions_mut().insert(info);
    if let Some(seat) = seat {
        req.extensions_mut().insert(seat);
    }
    let (wire, taken) = tokio::sync::oneshot::channel();
    let answer = Box::pin(crate::transport::ws::direct(state, req, taken));
    let (resp, io) = match while_present(answer, io).await {
        Some(answered) => answered,
        None => {
            debug!("client left during its WebSocket handshake");
            return;
        }
    };
    if let Err(error) = crate::transport::ws::http1::answer(io, resp, wire).await {
        debug!(%error, "WebSocket handshake answer not written");
    }
}

/// Run `answer` while the client is there. Through hyper a client leaving
/// mid-handshake ended the connection and dropped the handler, its login
/// check, subscriptions and replay with it; here the socket is watched the
/// same way: an end or an error drops `answer` (`None`). Bytes the client
/// sends before its answer (frames ahead of the 101) are kept for the
/// session, in front of the connection.
async fn while_present<I, F>(answer: F, mut io: I) -> Option<(Response<Body>, Box<dyn Io>)>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = Response<Body>> + Unpin,
{
    let mut answer = answer;
    let mut early = [0u8; 64];
    let first = tokio::select! {
        resp = &mut answer => Ok(resp),
        read = io.read(&mut early) => Err(read),
    };
    match first {
        Ok(resp) => Some((resp, Box::new(io))),
        Err(Ok(0) | Err(_)) => None,
        Err(Ok(n)) => {
            let resp = answer.await;
            let kept = Rewind::new(Bytes::copy_from_slice(&early[..n]), io);
            Some((resp, Box::new(kept)))
        }
    }
}

async fn serve_hyper<I>(
    state: AppState,
    io: Rewind<I>,
    info: ConnInfo,
    surface: ListenerRole,
    gate: Option<ConnectionRefusal>,
    seat: Option<Seat>,
    // TLS negotiated h2 (ALPN): WebSockets may ride it (RFC 8441).
    alpn_h2: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let kill = ConnKill::default();
    // Protocol detection waits for the first bytes with no timer of its own:
    // a connection that never sends a request is dropped at `header_timeout`.
    let seen_request = Arc::new(AtomicBool::new(false));
    // Rung by a refused HTTP/2 stream: the connection is over a limit, so
    // it is sent GOAWAY rather than kept for more refusals.
    let drain = crate::alarm::Alarm::new();
    let service = {
        let state = state.clone();
        let kill = kill.clone();
        let drain = drain.clone();
        let seen_request = seen_request.clone();
        service_fn(move |mut req| {
            seen_request.store(true, Ordering::Relaxed);
            let info = info.for_request(req.headers());
            req.extensions_mut().insert(info);
            req.extensions_mut().insert(kill.clone());
            // An HTTP/1.1 request carries its connection's place, for the
            // WebSocket or tunnel an upgrade makes of the connection to keep.
            // An HTTP/2 stream's socket reserves its own (`router.rs`).
            if let (Some(seat), true) = (&seat, req.version() < http::Version::HTTP_2) {
                req.extensions_mut().insert(seat.clone());
            }
            let state = state.clone();
            // Boxed: hyper keeps one in-flight slot per connection for the
            // connection's whole life, sized like this future; a box makes
            // that slot a pointer and frees the request's state once answered.
            let drain = drain.clone();
            let answer: ServiceFuture = Box::pin(async move {
                let version = req.version();
                let gate = gate.and_then(|g| unless_resume(&state, g, &req));
                let resp = match (gate, surface) {
                    (Some(gate), surface) => {
                        match gate {
                            ConnectionRefusal::Full => state.metrics.limited("max_connections"),
                            ConnectionRefusal::Limited(l) => state.metrics.limited(l.kind.label()),
                        }
                        // A Pusher client reads 4100 where others read 503.
                        let pusher = match (gate, surface) {
                            (ConnectionRefusal::Full, ListenerRole::Public) => {
                                crate::transport::pusher::over_capacity::answer(&state, &mut req)
                            }
                            _ => None,
                        };
                        let resp = pusher.unwrap_or_else(|| refusal(gate));
                        end_after_refusal(resp, version, &drain)
                    }
                    (None, ListenerRole::Public) => crate::router::route(state, req).await,
                    (None, ListenerRole::Admin) => crate::admin::route(state, req).await,
                };
                Ok::<_, Infallible>(resp)
            });
            answer
        })
    };
    // Read once, then let go: a connection may outlive many reloads, and
    // each request reads the settings in force when it arrives.
    let (header_timeout, max_header_size) = {
        let settings = state.settings();
        let limits = &settings.config.limits;
        (limits.header_timeout, limits.max_header_size)
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Header names reach the application, and answers the client, as
        // spelled, as the relay passes them (one proxy policy).
        .preserve_header_case(true)
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header_size.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if alpn_h2 && surface == ListenerRole::Public {
        // SETTINGS_ENABLE_CONNECT_PROTOCOL: a browser holding this
        // connection opens its WebSockets on it as extended CONNECT
        // streams. Only where h2 was negotiated, as browsers only look for
        // it there; h2 spoken without ALPN (prior knowledge) goes without.
        builder.http2().enable_connect_protocol();
    }
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    // Listeners, not token futures: this select is polled on every wake of
    // the connection (see `alarm.rs`).
    let mut stopping = state.lifecycle.stopping().listen_from_start();
    let mut killed = kill.0.listen_from_start();
    let mut drained = drain.listen_from_start();
    let silent = async {
        tokio::time::sleep(header_timeout).await;
        if seen_request.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = silent => {
            debug!("no request within the header timeout");
            return;
        }
        r = conn.as_mut() => {
            if let Err(error) = r {
                debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = killed.rung() => return,
        _ = stopping.rung() => {}
        _ = drained.rung() => debug!("refused over a limit: GOAWAY"),
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = killed.rung() => {}
    }
}
