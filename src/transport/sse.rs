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
    } = open_session(&state, &settings, &req, &q).await?;
    // The connection is cut when this stream's client falls behind, where
    // the connection is the stream's alone (HTTP/1). On HTTP/2 it carries
    // other streams, which must go on: an evicted stream ends by itself
    // (its body's next turn finds the eviction and ends it) and the
    // connection's own bounds (flow control, keep-alive pings) hold the rest.
    let kill = match req.version() {
        http::Version::HTTP_2 => ConnKill::default(),
        _ => req
            .extensions()
            .get::<ConnKill>()
            .cloned()
            .unwrap_or_default(),
    };
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let span = tracing::debug_span!(
        "session",
        transport = "sse",
        client = conn.as_ref().map(|c| c.client.to_string()),
        conn = conn.as_ref().map(|c| c.id),
        subject = client.identity.as_ref().map(|i| i.subject.as_str()),
    );
    let stream = SseStream::new(state, client, session, kill, out, &settings).into_chunks();
    Ok(SseOpening {
        head: SseHead::new(),
        stream,
        span,
    })
}
