//! pusher-js's HTTP fallback on the public listener, for browsers whose
//! WebSocket cannot pass (a proxy that refuses upgrades):
//! `POST {pusher.http_path}/app/{key}/{server}/{session}/xhr_streaming`,
//! `…/xhr` (long-polling) and `…/xhr_send`, framed as `sockjs.rs` says.
//!
//! A session is a Pusher connection like a WebSocket one: the first
//! receive request of an unknown `{server}/{session}` is admitted as a
//! socket upgrade is (limits, capacity, the app's quota), mints a socket id
//! and starts the same socket task over an HTTP carrier
//! (`carrier::Link::Http`); the frames it owes wait in the session's
//! bounded buffer for whichever receive request holds it. `xhr_streaming`
//! keeps its answer open and writes lines as they come (and `h` every
//! `realtime.heartbeat`); `xhr` answers with what is owed, or `h` after
//! `realtime.poll_timeout`. `xhr_send` queues the frames of its body for
//! the task, which judges them as WebSocket frames (the client's frame
//! rate, client event rate and size); the body is capped as a frame is
//! (413 over), a queue the task has not caught up with is 429 with
//! `Retry-After`, and a session this address does not hold is 404.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use super::carrier::{HttpLink, Link};
use super::{Opening, socket};
use crate::conn_info::ConnInfo;
use crate::pusher::frames::code;
use crate::pusher::http_session::{Chunk, Found, HttpSession, Receiver, Refused};
use crate::pusher::sockjs;
use crate::reply::{self, Body};
use crate::state::{AppState, Settings};
use crate::transport::{admit, cors, query};

/// The longest `{server}` or `{session}` of a URL.
const MAX_ID: usize = 64;

/// Bytes of SockJS lines a session holds for its receiver before its
/// socket task waits: pusher-js itself reopens a stream past 256 KB.
const SESSION_BUFFER: usize = 256 * 1024;

/// Which of the three requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Streaming,
    Polling,
    Send,
}

/// A request under `{http_path}/app/`: its app key, its session id
/// (`{key}/{server}/{session}`) and what it asks.
#[derive(Debug, PartialEq, Eq)]
pub struct XhrRequest {
    key: String,
    id: String,
    kind: Kind,
}

impl XhrRequest {
    /// `{key}/{server}/{session}`.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
}

/// The request, when its path is one of pusher-js's HTTP transport's (any
/// method: a wrong one is answered 405 here, not sent to the application).
pub fn endpoint<B>(settings: &Settings, req: &Request<B>) -> Option<XhrRequest> {
    let pusher = settings.config.pusher.as_ref()?;
    if settings.pusher.is_empty() {
        return None;
    }
    parse_path(pusher.http_path.trim_end_matches('/'), req.uri().path())
}

fn parse_path(http_path: &str, path: &str) -> Option<XhrRequest> {
    let rest = path.strip_prefix(http_path)?.strip_prefix("/app/")?;
    let mut parts = rest.split('/');
    let (key, server, session, kind) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || key.is_empty() || !valid_id(server) || !valid_id(session) {
        return None;
    }
    let kind = match kind {
        "xhr_streaming" => Kind::Streaming,
        "xhr" => Kind::Polling,
        "xhr_send" => Kind::Send,
        _ => return None,
    };
    Some(XhrRequest {
        key: key.to_owned(),
        id: format!("{key}/{server}/{session}"),
        kind,
    })
}

/// pusher-js's ids are digits and base-32 letters; anything of that
/// alphabet is taken, never a dot or an escape.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Answer one request of pusher-js's HTTP transport.
pub async fn handle(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<Incoming>,
    x: XhrRequest,
) -> Response<Body> {
    let origin = match cors::check(&settings, &req) {
        Ok(origin) => origin,
        Err(refused) => return refused,
    };
    let mut resp = match *req.method() {
        Method::OPTIONS => cors::preflight(),
        Method::POST => match x.kind {
            Kind::Send => send(&state, &settings, req, &x).await,
            Kind::Streaming | Kind::Polling => receive(state, settings, req, x).await,
        },
        _ => {
            let mut r = reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            r
        }
    };
    cors::apply(&mut resp, &origin);
    resp
}

pub(super) fn peer<B>(req: &Request<B>) -> std::net::IpAddr {
    req.extensions()
        .get::<ConnInfo>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.client)
}

fn no_session() -> Response<Body> {
    reply::error(StatusCode::NOT_FOUND, "not_found", "no such session")
}

/// `xhr_send`: queue the body's frames for the session's task.
async fn send(
    state: &AppState,
    settings: &Settings,
    req: Request<Incoming>,
    x: &XhrRequest,
) -> Response<Body> {
    let addr = peer(&req);
    let (Some(session), Some(app)) = (
        state.pusher_http.get(&x.id, addr),
        settings.pusher.by_key(&x.key),
    ) else {
        return no_session();
    };
    let limit = socket::frame_cap(app.config.max_message);
    let body = match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("xhr_send body over {limit} bytes"),
            );
        }
    };
    let frames = match sockjs::parse_send(&body) {
        Ok(frames) => frames,
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, "bad_json", e),
    };
    match session.offer(frames) {
        Ok(()) => {
            let mut r = Response::new(reply::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(Refused::Full) => {
            state.metrics.limited("pusher_send_queue");
            reply::rate_limited(Duration::from_secs(1), &Refused::Full.to_string())
        }
        Err(Refused::Closed) => no_session(),
    }
}

/// `xhr_streaming` and `xhr`: open the session when it is new, then receive.
async fn receive(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<Incoming>,
    x: XhrRequest,
) -> Response<Body> {
    let addr = peer(&req);
    let (session, opened) = match state.pusher_http.get_or_create(&x.id, addr) {
        None => return no_session(),
        Some(Found::Existing(session)) => (session, false),
        Some(Found::Created(session, inbound, registered)) => {
            let q = query(&req);
            // As a socket upgrade: refused here (or this request dropped
            // while admitted), the session goes with it and a request that
            // joined it meanwhile is told.
            let unstarted = Unstarted(Some(session.clone()));
            let client = match admit(&state, &settings, &req, &q, false).await {
                Ok(client) => client,
                Err(refusal) => return refusal.response(),
            };
            unstarted.started();
            let pusher = settings.config.pusher.clone().unwrap_or_default();
            let link = Link::Http(HttpLink {
                session: session.clone(),
                inbound,
                idle: pusher.http_session_timeout,
                cap: SESSION_BUFFER,
                stuck: pusher.pong_timeout,
                _registered: registered,
            });
            start(&state, &settings, &req, &x, client, link);
            (session, true)
        }
    };
    let receiver = session.attach();
    let rt = &settings.config.realtime;
    match x.kind {
        Kind::Streaming => streaming(&state, receiver, opened, rt.heartbeat),
        _ if opened => answer(Bytes::from_static(sockjs::OPEN)),
        _ => match receiver.next(rt.poll_timeout).await {
            // At shutdown the session's task closes it (4200, within
            // `reconnect_spread`): the waiting poll answers with that.
            Chunk::Lines(lines) => answer(lines),
            Chunk::Quiet => answer(Bytes::from_static(sockjs::HEARTBEAT)),
            Chunk::End => no_session(),
        },
    }
}

/// A new session whose socket task has not started: dropped so (refused,
/// or its first request cancelled while being admitted), it closes, so the
/// requests that joined it read a code rather than heartbeats forever.
struct Unstarted(Option<Arc<HttpSession>>);

impl Unstarted {
    fn started(mut self) {
        self.0 = None;
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.close(code::OVER_CAPACITY, "refused: retry later");
        }
    }
}

/// Spawn the socket task of a new session, as an upgrade spawns one.
fn start(
    state: &AppState,
    settings: &Arc<Settings>,
    req: &Request<Incoming>,
    x: &XhrRequest,
    client: crate::transport::Client,
    link: Link,
) {
    let owed = link.owed();
    let http = if req.version() == http::Version::HTTP_2 {
        "2"
    } else {
        "1.1"
    };
    let (opening, span) = Opening::new(
        state,
        settings.clone(),
        req,
        client,
        x.key.clone(),
        http,
        None,
    );
    state
        .lifecycle
        .tasks()
        .spawn(socket::open(opening, link, owed).instrument(span));
}

/// The answer of a receive request: SockJS lines, never cached or buffered.
fn answer_with(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=UTF-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

pub(super) fn answer(lines: Bytes) -> Response<Body> {
    answer_with(reply::full(lines))
}

/// An `xhr_streaming` answer: open while the session lives and this
/// request holds it; a pump owned by the gateway's tasks moves the lines.
fn streaming(
    state: &AppState,
    receiver: Receiver,
    opened: bool,
    heartbeat: Duration,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let pump = async move {
        if opened && tx.send(Bytes::from_static(sockjs::OPEN)).await.is_err() {
            return;
        }
        loop {
            let chunk = tokio::select! {
                chunk = receiver.next(heartbeat) => chunk,
                // The client went away: let go of the session at once.
                _ = tx.closed() => return,
            };
            let bytes = match chunk {
                Chunk::Lines(lines) => lines,
                Chunk::Quiet => Bytes::from_static(sockjs::HEARTBEAT),
                Chunk::End => return,
            };
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
    };
    state.lifecycle.tasks().spawn(pump);
    answer_with(reply::channel_body(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_whose_task_never_started_is_closed_for_its_joiners() {
        let sessions = crate::pusher::http_session::HttpSessions::default();
        let addr = std::net::IpAddr::from([10, 0, 0, 1]);
        let mut made = Vec::new();
        for (id, start) in [("k/1/a", false), ("k/1/b", true)] {
            let Some(Found::Created(session, _rx, _reg)) = sessions.get_or_create(id, addr) else {
                panic!("a new session");
            };
            let joined = session.attach();
            let guard = Unstarted(Some(session.clone()));
            if start {
                guard.started();
            } else {
                // The first request is cancelled while being admitted.
                drop(guard);
            }
            made.push(joined);
        }
        let quick = Duration::from_millis(50);
        match made[0].next(quick).await {
            Chunk::Lines(l) => assert!(l.starts_with(b"c[4100"), "{l:?}"),
            _ => panic!("the joined request reads the close"),
        }
        assert!(
            matches!(made[1].next(quick).await, Chunk::Quiet),
            "a started session stays open"
        );
    }

    #[test]
    fn paths_of_the_three_requests() {
        let x = parse_path("/pusher", "/pusher/app/k1/123/ab_c9/xhr_streaming").unwrap();
        assert_eq!(
            (x.key.as_str(), x.id.as_str(), x.kind),
            ("k1", "k1/123/ab_c9", Kind::Streaming)
        );
        assert_eq!(
            parse_path("/pusher", "/pusher/app/k/1/s/xhr").unwrap().kind,
            Kind::Polling
        );
        assert_eq!(
            parse_path("/pusher", "/pusher/app/k/1/s/xhr_send")
                .unwrap()
                .kind,
            Kind::Send
        );
        assert_eq!(parse_path("", "/app/k/1/s/xhr").unwrap().id, "k/1/s");
        for bad in [
            "/pusher/app/k/1/s/xhr_other",
            "/pusher/app/k/1/s",
            "/pusher/app/k/1/s/xhr/more",
            "/pusher/app//1/s/xhr",
            "/pusher/app/k/1/../xhr",
            "/pusher/app/k/1/s.x/xhr",
            "/pusher/app/k/1/%2e/xhr",
            "/other/app/k/1/s/xhr",
            "/pusherx/app/k/1/s/xhr",
        ] {
            assert_eq!(parse_path("/pusher", bad), None, "{bad}");
        }
        let long = format!("/pusher/app/k/1/{}/xhr", "a".repeat(MAX_ID + 1));
        assert_eq!(parse_path("/pusher", &long), None);
    }
}
