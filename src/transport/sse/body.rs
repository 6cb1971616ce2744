//! An SSE stream as a hyper response: what HTTP/2 (and any connection hyper
//! serves) sends. The body polls the stream in the connection's own task, so
//! a delivery costs one wake-up (no pump task, no channel in between) and no
//! allocation beyond the text itself; hyper does the framing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;

use super::SseOpening;
use super::stream::Chunks;
use crate::reply::{self, Body};

impl SseOpening {
    /// The stream as a response for hyper to send.
    pub fn into_response(self) -> Response<Body> {
        let SseOpening { head, stream, span } = self;
        let body = SseBody {
            chunks: parking_lot::Mutex::new(stream),
            span,
        };
        let mut resp = Response::new(body.boxed());
        *resp.status_mut() = super::SseHead::STATUS;
        let headers = resp.headers_mut();
        for (name, value) in head.headers {
            headers.append(name, value);
        }
        resp
    }
}

/// Any event stream's chunks as a 200 response with `headers` (the
/// Mercure hub's streams take this road too).
pub(crate) fn stream_response(
    chunks: Chunks,
    span: tracing::Span,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
) -> Response<Body> {
    let body = SseBody {
        chunks: parking_lot::Mutex::new(chunks),
        span,
    };
    let mut resp = Response::new(body.boxed());
    for (name, value) in headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

/// The response body: the stream's chunks as data frames.
struct SseBody {
    /// `Mutex` only to make the body `Sync`; `get_mut` never locks.
    chunks: parking_lot::Mutex<Chunks>,
    span: tracing::Span,
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = reply::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, reply::BoxError>>> {
        let this = self.get_mut();
        let _enter = this.span.enter();
        let chunks = this.chunks.get_mut();
        chunks
            .as_mut()
            .poll_next(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}
