//! A client's request body on its way to the application through hyper's
//! client, and what a malformed one costs.
//!
//! hyper's server decodes a chunked body as it reads it, so a malformed
//! chunk is an error in the middle of the stream: by then the application
//! may have the head and the chunks before it. Two rules keep that small.
//!
//! - A body whose end only its framing tells (no `Content-Length`: chunked
//!   on HTTP/1.1, a stream on HTTP/2) is read ahead before the request goes
//!   out, up to [`READ_AHEAD`] bytes or for [`READ_AHEAD_WAIT`], whichever
//!   comes first. Most such bodies end within that; a malformed one is
//!   answered 400 and the application never sees the request.
//! - Past that the body streams. If it turns malformed, hyper's client stops
//!   the request without its last chunk (the application sees a body that
//!   never ended) and the client is answered 400 when the backend had not
//!   answered yet. Once the backend's answer has begun, only cutting the
//!   client's connection is left: the status has gone.
//!
//! A body with a `Content-Length` cannot be malformed, only short, and
//! streams from the start, unless the request may be sent again: an
//! idempotent one (PUT, DELETE, OPTIONS…) whose whole body fits in
//! [`READ_AHEAD`] is read first and kept ([`Replay`]), so that a connect
//! that reached no server can go to the next one with it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::reply::{Body, BoxError};

/// At most this much of a body is read before the request goes out.
pub(super) const READ_AHEAD: usize = 64 * 1024;
/// At most this long is spent reading ahead: an upload that streams slower
/// reaches the application as it comes.
pub(super) const READ_AHEAD_WAIT: Duration = Duration::from_millis(250);

/// The client's body, failed or not.
#[derive(Clone, Default)]
pub(super) struct Outcome(Arc<AtomicBool>);

impl Outcome {
    /// The client's body turned out malformed (or broke off) on the way.
    pub(super) fn failed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The body was malformed within what was read ahead.
#[derive(Debug, thiserror::Error)]
#[error("malformed request body: {0}")]
pub(super) struct Malformed(BoxError);

/// A whole request body, kept to send again: read ahead here, or held by
/// request buffering (`buffer_request.rs`).
pub(super) enum Replay {
    Frames(Vec<Frame<Bytes>>),
    Stored(super::stored::Stored),
}

impl Replay {
    /// The body once more.
    pub(super) fn body(&self) -> Body {
        let frames = match self {
            Replay::Frames(frames) => frames,
            Replay::Stored(stored) => return stored.body(),
        };
        let frames: VecDeque<Frame<Bytes>> = frames.iter().map(copy_frame).collect();
        Upload {
            ahead: frames,
            rest: None,
            outcome: Outcome::default(),
        }
        .boxed()
    }
}

fn copy_frame(f: &Frame<Bytes>) -> Frame<Bytes> {
    match (f.data_ref(), f.trailers_ref()) {
        (Some(data), _) => Frame::data(data.clone()),
        (None, Some(trailers)) => Frame::trailers(trailers.clone()),
        (None, None) => Frame::data(Bytes::new()),
    }
}

/// Read ahead of `req`'s body where its framing alone tells its end (and,
/// with `keep`, a short body of known length too); the request with a body
/// that replays what was read, how it ends, and — with `keep`, when the
/// whole body was read — a copy to send again.
pub(super) async fn read_ahead(
    req: http::Request<Body>,
    keep: bool,
) -> Result<(http::Request<Body>, Outcome, Option<Replay>), Malformed> {
    let outcome = Outcome::default();
    let (parts, mut body) = req.into_parts();
    let mut ahead = VecDeque::new();
    let short =
        keep && super::content_length(&parts.headers).is_some_and(|n| n <= READ_AHEAD as u64);
    if !body.is_end_stream() && (short || !parts.headers.contains_key(header::CONTENT_LENGTH)) {
        let deadline = tokio::time::Instant::now() + READ_AHEAD_WAIT;
        let mut size = 0;
        while size < READ_AHEAD && !body.is_end_stream() {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(Err(error))) => return Err(Malformed(error)),
                Ok(Some(Ok(frame))) => {
                    size += frame.data_ref().map_or(0, Bytes::len);
                    ahead.push_back(frame);
                }
            }
        }
    }
    let replay = (keep && !ahead.is_empty() && body.is_end_stream())
        .then(|| Replay::Frames(ahead.iter().map(copy_frame).collect()));
    let upload = Upload {
        ahead,
        rest: Some(body),
        outcome: outcome.clone(),
    };
    Ok((
        http::Request::from_parts(parts, upload.boxed()),
        outcome,
        replay,
    ))
}

/// What was read ahead, then the rest as it comes; an error is noted.
struct Upload {
    ahead: VecDeque<Frame<Bytes>>,
    /// `None` once the body has ended.
    rest: Option<Body>,
    outcome: Outcome,
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.ahead.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(Pin::new(rest).poll_frame(cx));
        match &next {
            None => self.rest = None,
            Some(Err(_)) => self.outcome.0.store(true, Ordering::Relaxed),
            Some(Ok(_)) => {}
        }
        Poll::Ready(next)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self
            .ahead
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(ahead));
        // Trailers need the chunked framing: no exact size, so hyper's
        // client does not pick a length for the body.
        let trailers = self.ahead.iter().any(Frame::is_trailers);
        if let Some(upper) = rest.upper().filter(|_| !trailers) {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}
