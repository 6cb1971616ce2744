//! Server-Sent Events transport (`GET /realtime/sse?channels=a,b`).
//!
//! Opening a stream makes an [`SseOpening`]: the subscriber's stream
//! (`sse/stream.rs`, the one place SSE text is made) and the head it is sent
//! under (status and fixed headers). It is not an `http::Response`, because
//! the two ways out differ in framing only: `sse/http1.rs` writes it straight
//! onto an HTTP/1 connection read by the server itself, and `sse/body.rs`
//! hands it to hyper as a response body (HTTP/2, and HTTP/1 that hyper
//! serves). Refusals happen before a stream exists and are plain responses.
//! Both routes in ([`answer`] from the router, [`direct`] from the server's
//! own reader) end in the same opening, CORS headers included.

mod body;
pub mod http1;
mod stream;

use super::cors::{self, Origin};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};

use super::{Opened, open_session, query};
use crate::conn_info::{ConnInfo, ConnKill};
use crate::reply::Body;
use crate::state::{AppState, Settings};
pub(crate) use body::stream_response;
pub(crate) use stream::Chunks;
use stream::SseStream;

/// An opened SSE stream and the head to send it under.
pub struct SseOpening {
    head: SseHead,
    /// The stream's text: an [`SseStream`]'s, or a Mercure subscriber's.
    stream: Chunks,
    /// The session's span, entered whenever the stream makes text.
    span: tracing::Span,
}

/// The response head of every SSE stream: 200 and these headers, whichever
/// engine writes them.
struct SseHead {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl SseHead {
    const STATUS: StatusCode = StatusCode::OK;

    fn new() -> SseHead {
        SseHead {
            headers: vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    HeaderName::from_static("x-accel-buffering"),
                    HeaderValue::from_static("no"),
                ),
            ],
        }
    }
}

impl SseOpening {
    /// Another event stream (the Mercure hub's) under `headers`, so that
    /// it takes the same ways out, the direct HTTP/1 writer included.
    pub(crate) fn of_chunks(
        headers: Vec<(HeaderName, HeaderValue)>,
        stream: Chunks,
        span: tracing::Span,
    ) -> SseOpening {
        SseOpening {
            head: SseHead { headers },
            stream,
            span,
        }
    }

    /// Add the CORS headers that let a page of `origin` read the stream.
    pub fn allow_origin(&mut self, origin: &Origin) {
        self.head.headers.extend(cors::headers(origin));
    }
}

/// `GET <path>/sse` read by the relay's HTTP/1.1 reader (see
/// `h1/classify.rs`): the same checks and answer as through hyper,
/// for `http1` to write.
pub async fn direct(state: AppState, mut req: Request<()>) -> Result<SseOpening, Response<Body>> {
    let settings = state.settings();
    let origin = cors::check(&settings, &req)?;
    cors::strip_credentials(&origin, &mut req);
    answer(state, settings, req, origin).await
}

/// Open an SSE stream, with the CORS headers for `origin` on the stream's
/// head or on the refusal.
pub async fn answer<B: Sync>(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<B>,
    origin: Origin,
) -> Result<SseOpening, Response<Body>> {
    match open(state, settings, req).await {
        Ok(mut opening) => {
            opening.allow_origin(&origin);
            Ok(opening)
        }
        Err(mut refusal) => {
            cors::apply(&mut refusal, &origin);
            Err(refusal)
        }
    }
}

/// Admit the client and open its session, or say why not.
async fn open<B: Sync>(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<B>,
) -> Result<SseOpening, Response<Body>> {
    let q = query(&req);
    let Opened {
        client,
        session,
        out,
        clock,
    } = open_session(&state, &settings, &req, &q).await?;
    let kill = EvictionKill::for_request(&req, settings.config.backend.timeout);
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let span = tracing::debug_span!(
        "session",
        transport = "sse",
        client = conn.as_ref().map(|c| c.client.to_string()),
        conn = conn.as_ref().map(|c| c.id),
        subject = client.identity.as_ref().map(|i| i.subject.as_str()),
    );
    let stream = SseStream::new(state, client, session, kill, out, &settings).into_chunks();
    let stream = match clock {
        Some(clock) => first_write_marked(stream, clock),
        None => stream,
    };
    Ok(SseOpening {
        head: SseHead::new(),
        stream,
        span,
    })
}

/// What a stream's eviction rings (link it with `Inbox::link_eviction`),
/// kept by the stream for its whole life. Shared by the SSE and Mercure
/// streams, whose bodies hyper polls alike.
///
/// On HTTP/1 the connection is the stream's alone: an eviction cuts it at
/// once. On HTTP/2 it carries other streams, which must go on, so an
/// evicted stream ends by itself on its body's next turn. But hyper does
/// not poll a body whose stream has no send window: a client that never
/// gives that window back would keep the stream, its slot, its
/// registration and its subscriptions forever, out of reach of kicks and
/// shutdown. So if the body has not ended `grace` after the eviction (the
/// bound a stuck socket write gets), the whole connection is cut after all.
/// `stream`, marking a resume's first write when its first chunk is taken
/// by the writer (only resumes pay for the wrapper).
fn first_write_marked(stream: Chunks, clock: super::resume::ResumeClock) -> Chunks {
    use futures_util::StreamExt;
    let mut clock = Some(clock);
    Box::pin(stream.map(move |chunk| {
        if let Some(c) = clock.take() {
            c.mark(super::resume::stage::FIRST_WRITE);
        }
        chunk
    }))
}

pub(crate) struct EvictionKill {
    alarm: ConnKill,
    /// Dropped with the stream: tells the watcher the body took its turn.
    _alive: Option<tokio::sync::oneshot::Sender<()>>,
}

impl EvictionKill {
    /// The eviction alarm for a stream answering `req`.
    pub(crate) fn for_request<B>(req: &Request<B>, grace: Duration) -> EvictionKill {
        let conn = req.extensions().get::<ConnKill>().cloned();
        match (req.version(), conn) {
            (http::Version::HTTP_2, Some(conn)) => {
                let alarm = ConnKill::default();
                let (alive, ended) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(cut_if_stuck(alarm.clone(), conn, ended, grace));
                EvictionKill {
                    alarm,
                    _alive: Some(alive),
                }
            }
            (_, conn) => EvictionKill {
                alarm: conn.unwrap_or_default(),
                _alive: None,
            },
        }
    }

    /// The alarm the stream's inbox rings when it evicts the client.
    pub(crate) fn alarm(&self) -> std::sync::Arc<crate::alarm::Alarm> {
        self.alarm.0.clone()
    }
}

/// Wait for the stream's eviction, then give its body `grace` to end
/// before cutting the connection; nothing once the stream is gone.
async fn cut_if_stuck(
    evicted: ConnKill,
    conn: ConnKill,
    mut ended: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) {
    let mut evicted = evicted.0.listen_from_start();
    tokio::select! {
        _ = evicted.rung() => {}
        _ = &mut ended => return,
    }
    tokio::select! {
        _ = tokio::time::sleep(grace) => {
            tracing::debug!(?grace, "an evicted HTTP/2 stream was not read; cutting its connection");
            conn.0.ring();
        }
        _ = ended => {}
    }
}
