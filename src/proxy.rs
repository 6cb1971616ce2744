//! The reverse proxy: every request that is not a realtime endpoint goes to
//! the application, unchanged apart from hop-by-hop headers, the
//! `X-Forwarded-*`/`Forwarded` headers a proxy owes it, and the fields only
//! the gateway may assert (`h1/forwarded.rs`), which a client cannot forge.
//!
//! Under `buffering:` (the default, as nginx's) a request body is read
//! whole before an upstream connection is taken (`buffer_request.rs`) and
//! an answer is taken off the upstream as fast as it comes
//! (`buffer_answer.rs`), both into spools of bounded memory backed by
//! temporary files (`spool.rs`), so that a slow client holds the gateway's
//! buffers and never the application's worker. Streams stay streams
//! (`h1/streaming.rs`), and with buffering off, bodies stream both ways and
//! are never collected (a body without a length is read ahead a little
//! first: `upload.rs`).
//! A backend connection carries another client's request only after an
//! answer whose end its framing stated (`upstream/reuse.rs`).
//! `backend.timeout` bounds the wait for response headers; once they arrive
//! the body flows as long as the backend sends. Upgrades (WebSocket to the
//! application's own paths) are tunnelled byte for byte.
//!
//! A server is chosen, and the next one tried, by the upstream's one
//! failover loop (`upstream/attempt.rs`): each attempt takes a slot on its
//! server first (`max_connections`, `upstream/limit.rs`), held until the
//! answer's end. When no answer comes, the refusal (502, 504, or 503 with
//! `Retry-After` for a request that got no slot) is one type for both
//! engines (`refusal.rs`).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};

use crate::config::Buffering;
use crate::conn_info::ConnInfo;
use crate::h1::framing::{MAX_RESPONSE_HEAD, content_length};
use crate::h1::streaming;
use crate::limits::{ClientKey, ConnectionSlot, Limits};
use crate::metrics::stats::{Seat, Stats};
use crate::reply::{self, Body};
use crate::upstream::attempt::{Tried, Turn, Unreached};
use crate::upstream::exchange::{self, Pooled};
use crate::upstream::server::{InFlight, Server};
use crate::upstream::{Upstream, is_idempotent, reason, reuse};

mod buffer_answer;
mod buffer_request;
mod fields;
mod h2_websocket;
mod idle;
pub(crate) mod refusal;
pub(crate) mod spool;
mod stored;
mod upload;

use fields::{
    drop_forged_fields, forwarded_headers, is_upgrade, join_cookies, request_host, strip_hop_by_hop,
};
use idle::{IdleTimeout, copy_until_idle};
use refusal::Refusal;
use spool::Budget;

/// Passes client requests on to the application's server: the request
/// rewritten as a proxy owes it (`fields.rs`, `h1/forwarded.rs`), the answer
/// checked and streamed back.
pub struct Proxy<'a> {
    upstream: &'a Upstream,
    /// What is buffered of the exchange (`buffer_request.rs`,
    /// `buffer_answer.rs`); `None`: both bodies stream.
    buffering: Option<(Buffering, Budget)>,
}

/// What the tasks a proxied exchange leaves behind live by once its
/// request is done (an upgraded tunnel, a WebSocket to the application's
/// own paths; the reader of a buffered answer): the gauge a tunnel counts
/// in, the tracker shutdown waits on, and the signal that ends a tunnel.
#[derive(Clone, Copy)]
pub struct Tunnels<'a> {
    pub stats: &'a Arc<Stats>,
    pub tasks: &'a TaskTracker,
    pub stop: &'a CancellationToken,
    /// Where an opened tunnel counts as a WebSocket, by HTTP version.
    pub metrics: &'a crate::metrics::Metrics,
    /// `per_ip.connections`, which a tunnel holds one of for its client's
    /// address while it lasts, as a realtime socket does.
    pub limits: &'a Arc<Limits>,
}

/// An answer head, and the judge of its connection's reuse.
type Sent = (Response<Pooled>, reuse::Connection);

/// An answer head as [`Proxy::send`] hands it over: with the request's
/// slot on its server when the server switched protocols (the tunnel
/// holds it for its life, where a body would hold it to its end).
type Reached = (Response<Pooled>, reuse::Connection, Option<InFlight>);

impl<'a> Proxy<'a> {
    /// Send `req` to one of the upstream's servers (`Servers::attempt`). A
    /// connect that failed reached no server: a request without a body, or
    /// an idempotent one whose body was kept (`replay`), is sent again to
    /// the next server, until one takes it or every one was tried (all
    /// unreachable). Any other body is streamed, not kept, so its
    /// failure is its own. Each attempt holds its slot on its server
    /// until the answer's end.
    async fn send(
        &self,
        req: Request<Body>,
        client: Option<std::net::IpAddr>,
        replay: Option<upload::Replay>,
    ) -> Result<Reached, Unreached<SendError>> {
        let servers = self.upstream.servers();
        let idempotent = is_idempotent(req.method());
        // What could be sent again: a request without a body, or one
        // whose body was kept. Its head is copied once, for the next
        // server or the same one on a new connection (only for an
        // idempotent request).
        let bodiless = http_body::Body::is_end_stream(req.body());
        let body = || match bodiless {
            true => Some(reply::empty()),
            false => replay.as_ref().map(upload::Replay::body),
        };
        let head = ((servers.list.len() > 1 || idempotent) && (bodiless || replay.is_some()))
            .then(|| copy_with(&req, reply::empty()));
        let copy = || Some(copy_with(head.as_ref()?, body()?));
        let mut first = Some(req);
        let again = Again {
            idempotent,
            kept: head.is_some(),
            copy: &copy,
        };
        let reached = servers
            .attempt(client, self.upstream.timeout(), |server, turn| {
                // The request itself on the first turn, a copy after.
                let req = first.take().or_else(copy);
                self.send_to(server, turn, req, again)
            })
            .await?;
        let (mut resp, conn) = reached.value;
        // A switch's body is empty and ends at once: its tunnel, not its
        // body, is what the server works on from now.
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((resp, conn, Some(reached.in_flight)));
        }
        resp.body_mut().hold(reached.in_flight);
        Ok((resp, conn, None))
    }

    /// One turn of [`Proxy::send`]: `req` aimed at `server` and sent.
    async fn send_to(
        &self,
        server: &Arc<Server>,
        turn: Turn,
        req: Option<Request<Body>>,
        again: Again<'_>,
    ) -> Tried<Sent, SendError> {
        let Some(mut req) = req else {
            // Never: a turn after the first is had only with a copy.
            return Tried::Unsent {
                error: SendError::NotCopied,
            };
        };
        self.aim(&mut req, server);
        let copy = || {
            let mut req = (again.copy)()?;
            self.aim(&mut req, server);
            Some(req)
        };
        let same_again = again.idempotent.then_some(&copy as &exchange::Again<'_>);
        let conn = reuse::Connection::watch(&mut req);
        let can_spare = turn.more && again.kept;
        // A failed connect reached no server; a failure without an answer
        // on a connection that was made (a server killed mid-request) may
        // be sent again when idempotent (RFC 9110 §9.2.2). Nothing reached
        // the client either way.
        let retry = exchange::Retry {
            unreachable: can_spare,
            failed: again.idempotent && can_spare,
        };
        exchange::turn(server, req, same_again, conn, retry)
            .await
            .map_error(SendError::Sent)
    }

    /// Point `req` at `server`, with the `Host` a unix socket's request needs.
    fn aim(&self, req: &mut Request<Body>, server: &Server) {
        let mut parts = req.uri().clone().into_parts();
        parts.authority = Some(server.authority.clone());
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        self.upstream.default_host(req.headers_mut());
    }

    pub fn new(upstream: &'a Upstream) -> Proxy<'a> {
        Proxy {
            upstream,
            buffering: None,
        }
    }

    /// Buffer the exchange's bodies as `policy` says, within `budget`.
    pub(crate) fn buffered(mut self, policy: Buffering, budget: Budget) -> Proxy<'a> {
        self.buffering = Some((policy, budget));
        self
    }

    /// Forward `req` to the backend and stream its answer back. An upgraded
    /// tunnel counts in `stats.connections` while it lasts: hyper's
    /// connection task, which counted the client, ends at the upgrade.
    pub async fn forward(&self, req: Request<Body>, tunnels: Tunnels<'_>) -> Response<Body> {
        let client = req.extensions().get::<ConnInfo>().map(|c| c.client);
        let span = tracing::debug_span!("proxy", method = %req.method(), path = %req.uri().path(), client = ?client);
        self.forward_inner(req, client, tunnels)
            .instrument(span)
            .await
    }

    async fn forward_inner(
        &self,
        mut req: Request<Body>,
        client: Option<std::net::IpAddr>,
        tunnels: Tunnels<'_>,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let http1 = req.version() < Version::HTTP_2;
        // An extended CONNECT (RFC 8441) goes as the HTTP/1.1 Upgrade.
        let h2_key = h2_websocket::as_upgrade(&mut req);
        let upgrade =
            is_upgrade(req.headers()) && (req.version() == Version::HTTP_11 || h2_key.is_some());
        // Taken before the application is asked: a client at its address's
        // cap opens no backend socket either.
        let slot = match upgrade.then(|| held_by(tunnels, client)) {
            Some(Err(refused)) => return refused,
            Some(Ok(slot)) => Some(slot),
            None => None,
        };
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // The tunnel's place under `max_connections`: its HTTP/1.1
        // connection's, or the one reserved for its HTTP/2 stream.
        let seat = upgrade
            .then(|| req.extensions().get::<Seat>().cloned())
            .flatten();
        let backend_req = match self.backend_request(req, upgrade) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let buffering = self.buffering.as_ref();
        let taken = buffer_request::take(backend_req, buffering, upgrade, http1).await;
        let (backend_req, upload, replay) = match taken {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let method = backend_req.method().clone();
        let (resp, conn, switched) = match self.send(backend_req, client, replay).await {
            Ok(sent) => sent,
            Err(Unreached::Failed(error)) if upload.failed() => {
                debug!(%error, "request body failed while forwarding");
                return malformed_body(http1);
            }
            Err(unreached) => {
                return Refusal::of(&unreached, self.upstream.timeout()).response();
            }
        };
        let mut resp = match resp {
            resp if head_size(&resp) > MAX_RESPONSE_HEAD => {
                // The relay's bound, so that one policy holds whichever
                // engine carried the request.
                warn!(size = head_size(&resp), "backend answer head too large");
                // Refused: its connection carries nothing more.
                conn.retire();
                return Refusal::Unreachable.response();
            }
            mut resp => match reuse::check(&method, client_upgrade.is_some(), &mut resp, &conn) {
                Ok(()) => resp,
                Err(error) => {
                    warn!(%error, "backend answer refused");
                    return Refusal::Unreachable.response();
                }
            },
        };
        debug!(status = resp.status().as_u16(), elapsed = ?started.elapsed(), "proxied");
        // What a tunnel holds while it lasts, whichever HTTP version opened it.
        let held = Held {
            seat,
            slot,
            in_flight: switched,
            idle: self.upstream.timeout(),
        };
        if let (Some(key), true) = (&h2_key, resp.status().is_success() || resp.status() == 101) {
            // Over HTTP/2 the stream opens with a 200, once the switch is proven.
            let open = h2_websocket::opened(key, &resp);
            if let (Ok(_), Some(client_upgrade)) = (&open, client_upgrade) {
                tunnel(client_upgrade, &mut resp, tunnels, "2", held);
            }
            return open.unwrap_or_else(|refused| refused);
        }
        if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
            (client_upgrade, resp.status())
        {
            tunnel(client_upgrade, &mut resp, tunnels, "1.1", held);
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, reply::empty());
        }
        let (mut parts, body) = resp.into_parts();
        // Judged on the fields as the application sent them, as the relay
        // judges them, whatever `Connection` names; then the switch is
        // hidden from the client, as nginx hides it.
        let streams = streaming::streams_by_fields(&parts.headers);
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(streaming::ACCEL_BUFFERING);
        if let Some((policy, budget)) = &self.buffering {
            if policy.response && !http_body::Body::is_end_stream(&body) && !streams {
                let body = buffer_answer::buffered(
                    body,
                    policy,
                    budget.clone(),
                    self.upstream.timeout(),
                    tunnels.tasks,
                );
                return Response::from_parts(parts, body);
            }
        }
        let body = IdleTimeout::new(body, self.upstream.timeout());
        Response::from_parts(parts, body.boxed())
    }

    fn backend_request(
        &self,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Request<Body>, Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let host = request_host(&parts)
            .map_err(|why| reply::error(StatusCode::BAD_REQUEST, "bad_request", why))?;
        let path_and_query = match (self.upstream.base_path(), parts.uri.path_and_query()) {
            // The usual case: the request's own target, shared, not re-parsed.
            ("", Some(pq)) => Ok(pq.clone()),
            (base, pq) => http::uri::PathAndQuery::try_from(format!(
                "{base}{}",
                pq.map_or("/", |p| p.as_str())
            )),
        };
        let uri = path_and_query
            .map_err(http::Error::from)
            .and_then(|pq| self.upstream.uri(pq))
            .map_err(|_| {
                reply::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "unusable request target",
                )
            })?;
        let upgrade_to = parts.headers.get(header::UPGRADE).cloned();
        // The length in its plain form: `0005` would reach the application
        // as written, where a parser of its own may read it otherwise.
        if parts.headers.contains_key(header::CONTENT_LENGTH) {
            let n = content_length(&parts.headers).ok_or_else(|| {
                reply::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "invalid Content-Length",
                )
            })?;
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        strip_hop_by_hop(&mut parts.headers);
        // hyper already answered the client's `Expect: 100-continue`.
        parts.headers.remove(header::EXPECT);
        join_cookies(&mut parts.headers);
        drop_forged_fields(&mut parts.headers);
        if upgrade {
            if let Some(u) = upgrade_to {
                parts.headers.insert(header::UPGRADE, u);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
        }
        if parts.method == http::Method::HEAD {
            // The connection is retired after a HEAD answer anyway
            // (`upstream/reuse.rs`); saying so up front also keeps hyper from
            // queueing it for the pool before the retirement lands.
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(info) = parts.extensions.get::<ConnInfo>() {
            forwarded_headers(&mut parts.headers, info, host.as_ref());
        }
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }
}

/// What an upgraded tunnel holds for its life, the same whether an
/// HTTP/1.1 upgrade or an HTTP/2 extended CONNECT opened it.
struct Held {
    /// Its place under `max_connections` (`stats.connections`).
    seat: Option<Seat>,
    /// Its client address's place under `per_ip.connections`.
    slot: Option<ConnectionSlot>,
    /// Its request's slot on the server (`max_connections`), and its count
    /// in flight there (`least_conn`): the server works on it while it lasts.
    in_flight: Option<InFlight>,
    /// `backend.timeout`: the tunnel ends after this long without a byte
    /// either way, as a streamed answer does.
    idle: std::time::Duration,
}

/// Join the client's upgraded connection to the application's, byte for
/// byte, once both sides have switched. On the gateway's task tracker, so
/// shutdown waits for the tunnel, and ended by the shutdown signal: a byte
/// tunnel has no way to ask its client to reconnect but closing.
fn tunnel(
    client_upgrade: hyper::upgrade::OnUpgrade,
    resp: &mut Response<Pooled>,
    tunnels: Tunnels<'_>,
    http: &'static str,
    held: Held,
) {
    let backend_upgrade = hyper::upgrade::on(resp);
    // Only WebSockets are passed on as upgrades (`fields::is_upgrade`).
    tunnels.metrics.websocket_connect("proxied", http);
    let stats = tunnels.stats.clone();
    let stop = tunnels.stop.clone();
    tunnels.tasks.spawn(
        async move {
            match tokio::try_join!(client_upgrade, backend_upgrade) {
                Ok((client, backend)) => {
                    // Counted with the place its request carried: its
                    // HTTP/1.1 connection's, kept past the upgrade; on
                    // HTTP/2 one more than the h2 connection carrying it
                    // (`router.rs` reserves it).
                    let Held {
                        seat,
                        slot,
                        in_flight,
                        idle,
                    } = held;
                    let _counted = seat.unwrap_or_else(|| Seat::enter(&stats));
                    let (_slot, _in_flight) = (slot, in_flight);
                    let (mut c, mut b) = (TokioIo::new(client), TokioIo::new(backend));
                    tokio::select! {
                        ended = copy_until_idle(&mut c, &mut b, idle) => {
                            if let Err(error) = ended {
                                debug!(%error, "upgraded tunnel ended");
                            }
                        }
                        _ = stop.cancelled() => debug!("upgraded tunnel closed for shutdown"),
                    }
                }
                Err(error) => debug!(%error, "upgrade failed"),
            }
        }
        .in_current_span(),
    );
}

/// One of `per_ip.connections` for the tunnel of `client`'s upgrade, or the
/// 429 its address is over the cap with. The application's own users are
/// not known here: a tunnel is counted by its address, as an anonymous
/// realtime connection is.
fn held_by(
    tunnels: Tunnels<'_>,
    client: Option<std::net::IpAddr>,
) -> Result<ConnectionSlot, Response<Body>> {
    let addr = client.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let key = ClientKey::Anonymous { addr, conn: 0 };
    tunnels.limits.open_connection(&key).map_err(|l| {
        tunnels.metrics.limited(l.kind.label());
        let message = format!("rate limit exceeded ({})", l.kind.label());
        reply::rate_limited(l.retry_after, &message)
    })
}

/// What a turn after the first sends: a copy of the request, made only
/// when one is needed, and whether it may go twice to one server.
#[derive(Clone, Copy)]
struct Again<'c> {
    idempotent: bool,
    /// A copy can be made: the request has no body, or its body was kept.
    kept: bool,
    copy: &'c exchange::Again<'c>,
}

/// Why a turn of [`Proxy::send`] got no answer head.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{}", reason(.0))]
    Sent(exchange::SendError),
    #[error("no copy of the request to send again")]
    NotCopied,
}

/// A 400 for a client body that broke its own framing. On HTTP/1 the
/// connection closes after it: nothing past the fault can be read as the
/// next request. (HTTP/2 ends only the stream, and has no `Connection`.)
fn malformed_body(http1: bool) -> Response<Body> {
    let mut resp = reply::error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "malformed request body",
    );
    if http1 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The size of an answer head as HTTP/1.1 writes it: status line, each
/// field as `name: value` and CRLF, the empty line.
fn head_size<B>(resp: &Response<B>) -> usize {
    let fields: usize = resp
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let reason = resp.status().canonical_reason().map_or(0, str::len);
    "HTTP/1.1 200 \r\n".len() + reason + fields + 2
}

/// `req`'s head again, with `body`.
fn copy_with(req: &Request<Body>, body: Body) -> Request<Body> {
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}
