//! The HTTP/1 relay: plain proxied requests forwarded byte for byte, without
//! hyper, on the client connection's own task.
//!
//! Why: most of what a gateway proxies is `GET`s without a body. Through
//! hyper each costs a server dispatch, a client pool checkout, a hand-off to
//! the backend connection's task and back, and a header map built and
//! re-encoded twice: about 12 µs of CPU per request here, against nginx's 4.
//! The relay reads each head and has it classified once (`h1/classify.rs`,
//! which also picks out a connection's first request when it is an SSE
//! subscription, handed back to the server), writes the rewritten head
//! (`h1/request.rs`) to a pooled backend connection (`upstream/pool.rs`),
//! reads the answer head (`h1/response.rs`) and passes the answer on as it
//! comes, framing included (`relay/answer.rs`; under `buffering.response`,
//! the default, it is taken off the backend at once and fed to the client
//! at its pace: `relay/spooled.rs`; `h1/chunked.rs` finds where a chunked
//! body ends). When the backend gives nothing to pass on, the relay answers
//! 502 or 504 itself, and 503 when no connection to the server was free
//! within its queue (`max_connections`), with the proxy's refusal
//! (`proxy/refusal.rs`, written by `relay/refusal.rs`).
//!
//! It takes only what it can forward exactly as the hyper path would (see
//! `h1/request.rs`), and only to `http://` and `https://` upstreams (TCP,
//! or TLS over it: `upstream/backend_conn.rs`). This module is the driver
//! that moves bytes, at the handlers' layer; the wire rules are `h1/`'s,
//! with no I/O. The first request it does not take hands the connection,
//! with the bytes already read, to hyper for the rest of its life.

use std::io;
use std::time::Instant;

use crate::upstream::backend_conn::BackendConn;
use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{Instrument, debug, warn};

mod answer;
mod refusal;
mod spooled;

use answer::{Answer, Body, pass_on};
use refusal::refuse;
use spooled::Holding;

use crate::conn_info::ConnInfo;
use crate::h1::chunked::ChunkedEnd;
use crate::h1::classify::{Classified, classify};
use crate::h1::request::{Outbound, Route};
use crate::h1::response::{self, Framing, Inbound};
use crate::proxy::refusal::Refusal;
use crate::proxy::spool::{Budget, Spool};
use crate::state::{AppState, Settings};
use crate::upstream::Upstream;
use crate::upstream::attempt::{Reached, Tried, Unreached};
use crate::upstream::pool::BackendPool;

/// How the relay left a connection.
pub enum Relayed {
    /// The connection's first request is an SSE subscription
    /// (`h1/classify.rs`): the SSE transport serves it without hyper.
    Sse(http::Request<()>),
    /// The connection's first request is a WebSocket handshake on
    /// `<realtime.path>/ws` (`h1/classify.rs`): answered without hyper.
    WebSocket(http::Request<()>),
    /// To be closed cleanly (`shutdown`, a TLS `close_notify`).
    Closed,
    /// To be dropped: an answer was cut short, or the connection ended,
    /// failed or stayed silent before its first request.
    Aborted,
    /// A request the relay does not take: hyper serves the connection from
    /// these bytes on.
    HandOver(BytesMut),
}

/// Whether the client's connection carries on after an answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    /// The answer is complete; close the connection cleanly.
    Close,
    /// The answer was cut short: drop the connection without a clean close
    /// (no TLS `close_notify`), so that a body delimited by the close
    /// cannot pass for complete.
    Abort,
}

/// Read the requests of a public HTTP/1 connection and serve those the
/// relay takes, until the connection ends or a request is not the relay's
/// (`h1/classify.rs` decides, once per head). `first_deadline` bounds the
/// first head.
pub async fn serve<I>(
    state: &AppState,
    io: &mut I,
    info: &ConnInfo,
    first_deadline: tokio::time::Instant,
) -> Relayed
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut stopping = state.lifecycle.stopping().listen_from_start();
    // Waiting for a head is bounded like hyper bounds it: from the moment
    // the connection is idle (`limits.header_timeout`).
    let mut head_deadline = Some(first_deadline);
    // Looked for in the connection's first request only.
    let (sse_path, ws_path) = {
        let path = &state.settings().config.realtime.path;
        (format!("{path}/sse"), format!("{path}/ws"))
    };
    let mut first = true;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let (max_head, header_timeout) = {
            let settings = state.settings();
            let limits = &settings.config.limits;
            // The Mercure hub's path and its discovery routes are not relayed
            // either: the hub answers the one, the router adds a header to
            // the other.
            let tapped = |m: &http::Method, p: &str| {
                settings.taps.watches(m, p)
                    || crate::transport::mercure::wants_request(&settings, p)
            };
            let route = Route {
                realtime: &settings.config.realtime.path,
                // The routed upstream's, put in by `retarget` below.
                tapped: &tapped,
            };
            // The Mercure hub's subscribers are event streams too.
            let mercure = settings.config.mercure.as_ref().map(|m| m.path.as_str());
            let streams = [sse_path.as_str(), mercure.unwrap_or(&sse_path)];
            let sse: &[&str] = if first { &streams } else { &[] };
            let ws = first.then_some(ws_path.as_str());
            match classify(&buf, &route, sse, ws, info) {
                Classified::Sse(req) => return Relayed::Sse(req),
                Classified::WebSocket(req) => return Relayed::WebSocket(req),
                Classified::Hyper => return Relayed::HandOver(buf),
                Classified::Relay(out) => {
                    // Boxed: the exchange's state (backend connect, TLS,
                    // the answer's spool) is large, and inline it would
                    // size every connection's reading of its first head,
                    // the SSE and WebSocket ones that never relay included
                    // (1.2 KiB more per idle SSE connection, measured).
                    match Box::pin(relay_one(state, &settings, io, &mut buf, out)).await {
                        Some(Next::KeepAlive) => {}
                        Some(Next::Close) => return Relayed::Closed,
                        Some(Next::Abort) => return Relayed::Aborted,
                        None => return Relayed::HandOver(buf),
                    }
                    first = false;
                    head_deadline = None;
                    continue;
                }
                Classified::NeedMore => {}
            }
            // Not kept while the connection waits: a reload must be able
            // to let the old settings (and their backend pool) go.
            (limits.max_header_size.max(8192), limits.header_timeout)
        };
        if buf.len() >= max_head {
            return Relayed::HandOver(buf);
        }
        let deadline =
            *head_deadline.get_or_insert_with(|| tokio::time::Instant::now() + header_timeout);
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        // Before its first request a connection is nobody's to close
        // cleanly: it is dropped, and it is not closed for a shutdown.
        let ended = if first {
            Relayed::Aborted
        } else {
            Relayed::Closed
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)) => r,
            _ = stopping.rung(), if !first => {
                // Idle: close. Half a head: hyper's graceful shutdown decides.
                return if buf.is_empty() { Relayed::Closed } else { Relayed::HandOver(buf) };
            }
        };
        match read {
            Ok(Ok(0)) if buf.is_empty() => return ended,
            // Half a head, then the end: hyper answers it as it would.
            Ok(Ok(0)) => return Relayed::HandOver(buf),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                debug!(%error, first, "connection failed while waiting for a request");
                return ended;
            }
            Err(_) => {
                debug!(first, "no request within the header timeout");
                return ended;
            }
        }
    }
}

/// Relay one request whose head is at the front of `buf`, if its route
/// lets the relay take it (`None`: hyper must, from these bytes on), and
/// say whether the connection carries on.
async fn relay_one<I>(
    state: &AppState,
    settings: &Settings,
    io: &mut I,
    buf: &mut BytesMut,
    mut out: Outbound,
) -> Option<Next>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // The hyper path answers a route's refusal (400), as it answers any
    // request the relay does not take.
    let routed = settings
        .upstreams
        .route(Some(out.host()), out.path())
        .ok()?;
    // Unix sockets are hyper's to reach.
    if !routed.upstream.relayable() {
        return None;
    }
    buf.advance(out.len);
    state.metrics.relayed();
    let span = tracing::debug_span!("proxy", method = %out.method, path = out.path(), upstream = routed.name, client = %out.client);
    out.retarget(routed.upstream.base_path(), routed.rewrite.strip());
    let to = To {
        upstream: routed.upstream,
        buffering: routed.buffering,
    };
    let next = exchange(state, to, out.client, io, buf, &out)
        .instrument(span)
        .await;
    let close = out.close || state.lifecycle.stopping().has_rung();
    Some(match next {
        Next::KeepAlive if close => Next::Close,
        next => next,
    })
}

/// Why the backend gave no usable answer head.
#[derive(Debug, thiserror::Error)]
enum BackendFailure {
    #[error("connect: {0}")]
    Connect(io::Error),
    /// Closed before a byte of the answer: on a reused connection, the
    /// backend's keep-alive ended first, and a new connection may succeed.
    #[error("closed the connection before answering")]
    ClosedEarly,
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Unusable(&'static str),
}

/// Where a relayed request goes: its upstream, and what is buffered of
/// the answer (its route's say over the upstream's `buffering:`).
struct To<'a> {
    upstream: &'a Upstream,
    buffering: crate::config::Buffering,
}

/// One request to the backend and its answer back to the client.
///
/// `buf` takes what the client sends meanwhile (the start of a pipelined
/// request): a client that leaves while the backend works frees the
/// backend connection at once, as hyper does, instead of at `backend.timeout`.
async fn exchange<I>(
    state: &AppState,
    to: To<'_>,
    client: std::net::IpAddr,
    io: &mut I,
    buf: &mut BytesMut,
    out: &Outbound,
) -> Next
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let upstream = to.upstream;
    // The last answer before a shutdown says so, as hyper's would.
    let close = out.close || state.lifecycle.stopping().has_rung();
    let asked = {
        let asked = open_any(upstream, client, out, close);
        tokio::pin!(asked);
        loop {
            tokio::select! {
                biased;
                asked = &mut asked => break asked,
                gone = client_gone(io, buf) => if gone {
                    debug!("client left before the answer");
                    return Next::Abort;
                },
            }
        }
    };
    let (server, in_flight, (backend, inbound, mut rbuf)) = match asked {
        Ok(reached) => (reached.server, reached.in_flight, reached.value),
        Err(unreached) => {
            let refusal = Refusal::of(&unreached, upstream.timeout());
            return refuse(state, io, refusal, started, out, close).await;
        }
    };
    let status = StatusCode::from_u16(inbound.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let buffered = to.buffering.response && !inbound.streams;
    rbuf.advance(inbound.len);
    let mut body = match inbound.framing {
        Framing::Empty => Body::Length(0),
        Framing::Length(n) => Body::Length(n),
        Framing::Chunked => Body::Chunked {
            scan: ChunkedEnd::default(),
            trailers: out.trailers,
        },
        Framing::UntilClose => Body::UntilClose,
    };
    // What has come of the body so far goes out with the head, in one write.
    let Ok(taken) = body.take(&mut rbuf) else {
        warn!("backend sent a malformed chunked body");
        return refuse(state, io, Refusal::Unreachable, started, out, close).await;
    };
    debug!(status = inbound.status, elapsed = ?started.elapsed(), "proxied");
    state.metrics.proxied(status, started.elapsed());
    let mut first = inbound.head;
    first.extend_from_slice(&rbuf[..taken.keep]);
    if taken.end {
        first.extend_from_slice(body.tail());
    }
    let done = taken.end;
    rbuf.advance(taken.used);
    let answer = Answer {
        first,
        done,
        body,
        reusable: inbound.reusable,
    };
    if buffered {
        let budget = Budget::new(&state.stats, &state.settings().config.limits.buffers);
        let holding = Holding {
            spool: Spool::new(budget, to.buffering.memory),
            cap: to.buffering.max_body as u64,
            idle: upstream.timeout(),
        };
        return spooled::pass_on(io, backend, in_flight, answer, rbuf, &server.pool, holding).await;
    }
    let next = pass_on(io, backend, answer, rbuf, upstream.timeout(), &server.pool).await;
    drop(in_flight);
    next
}

/// Watch the client while its answer is prepared: `true` once it has
/// closed or failed. Only while nothing of its next request is buffered,
/// as hyper watches (a client that pipelined a request and then closed
/// its side still gets this answer); bytes read are kept in `buf`.
async fn client_gone<I: AsyncRead + Unpin>(io: &mut I, buf: &mut BytesMut) -> bool {
    if !buf.is_empty() {
        return std::future::pending().await;
    }
    buf.reserve(1024);
    !matches!(io.read_buf(buf).await, Ok(n) if n > 0)
}

/// [`open`] on the upstream's servers, by its failover loop
/// (`Servers::attempt`): a server whose connect fails is marked down and
/// the next one asked, as is the next when a server drops the request
/// before a byte of its answer (the relay carries only `GET` and `HEAD`,
/// which may be repeated, and nothing has reached the client yet), until
/// one answers or every one failed. The answer comes with the bytes read
/// past its head.
async fn open_any<'u>(
    upstream: &'u Upstream,
    client: std::net::IpAddr,
    out: &Outbound,
    close: bool,
) -> Result<Reached<'u, (BackendConn, Inbound, BytesMut)>, Unreached<BackendFailure>> {
    let servers = upstream.servers();
    let timeout = upstream.timeout();
    servers
        .attempt(Some(client), timeout, |server, turn| async move {
            let mut rbuf = BytesMut::with_capacity(8192);
            match open(&server.pool, out, close, &mut rbuf).await {
                Ok((conn, inbound)) => Tried::Answered {
                    status: inbound.status,
                    value: (conn, inbound, rbuf),
                },
                Err(error @ BackendFailure::Connect(_)) => {
                    Tried::Unreachable { error, retry: true }
                }
                Err(error @ (BackendFailure::ClosedEarly | BackendFailure::Io(_))) => {
                    Tried::Failed {
                        error,
                        retry: turn.more,
                    }
                }
                Err(error) => Tried::Failed {
                    error,
                    retry: false,
                },
            }
        })
        .await
}

/// Send the request and read the answer head, on a pooled connection when
/// there is one. A pooled connection the backend has closed meanwhile is
/// replaced by a new one, once: the relay only takes `GET` and `HEAD`, which
/// may be repeated (RFC 9110 §9.2.2).
async fn open(
    pool: &BackendPool,
    out: &Outbound,
    close: bool,
    rbuf: &mut BytesMut,
) -> Result<(BackendConn, Inbound), BackendFailure> {
    let mut reuse = true;
    loop {
        let (mut conn, reused) = match reuse.then(|| pool.take()).flatten() {
            Some(conn) => (conn, true),
            None => (
                pool.connect().await.map_err(BackendFailure::Connect)?,
                false,
            ),
        };
        match ask(&mut conn, out, close, rbuf).await {
            Ok(inbound) => return Ok((conn, inbound)),
            Err(BackendFailure::ClosedEarly) if reused => {
                debug!("pooled backend connection was closed; retrying on a new one");
                rbuf.clear();
                reuse = false;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn ask(
    conn: &mut BackendConn,
    out: &Outbound,
    close: bool,
    rbuf: &mut BytesMut,
) -> Result<Inbound, BackendFailure> {
    let closed = |error: io::Error, rbuf: &BytesMut| match error.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
            if rbuf.is_empty() =>
        {
            BackendFailure::ClosedEarly
        }
        _ => BackendFailure::Io(error),
    };
    conn.write_all(&out.head)
        .await
        .map_err(|e| closed(e, rbuf))?;
    let date = http_date();
    // An interim answer is a second end the backend may misjudge: its
    // connection is not trusted with another request.
    let mut interim = false;
    loop {
        if conn.read_buf(rbuf).await.map_err(|e| closed(e, rbuf))? == 0 {
            return Err(if rbuf.is_empty() {
                BackendFailure::ClosedEarly
            } else {
                BackendFailure::Unusable("closed in the middle of an answer head")
            });
        }
        loop {
            match response::response(rbuf, &out.method, close, &date) {
                response::Response::Final(mut inbound) => {
                    inbound.reusable &= !interim;
                    return Ok(inbound);
                }
                response::Response::Interim(len) => {
                    interim = true;
                    rbuf.advance(len);
                }
                response::Response::Partial => break,
                response::Response::Unusable(why) => return Err(BackendFailure::Unusable(why)),
            }
        }
        if rbuf.capacity() == rbuf.len() {
            rbuf.reserve(8192);
        }
    }
}

/// The `Date` field hyper would add, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (at, text) = cached.get();
        if at == second {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        // Always 29 bytes: "Sun, 06 Nov 1994 08:49:37 GMT".
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        cached.set((second, text));
        text
    })
}
