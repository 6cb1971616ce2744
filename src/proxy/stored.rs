//! A whole request body held by request buffering (`buffer_request.rs`),
//! read from its start as often as it is sent: once, and again to the next
//! server when a connect fails (`upload.rs` keeps it as a `Replay`). It has
//! a home of its own because both of those use it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::spool::{CHUNK, Spool};
use crate::reply::{Body, BoxError};

/// A whole request body, held to be sent (and sent again).
#[derive(Clone)]
pub(super) struct Stored(Arc<Whole>);

struct Whole {
    spool: Spool,
    trailers: Option<HeaderMap>,
}

impl Stored {
    pub(super) fn new(spool: Spool, trailers: Option<HeaderMap>) -> Stored {
        Stored(Arc::new(Whole { spool, trailers }))
    }

    /// Its length, when it goes with one (no trailers).
    pub(super) fn length(&self) -> Option<u64> {
        self.0.trailers.is_none().then(|| self.0.spool.len())
    }

    /// The body, from its start.
    pub(super) fn body(&self) -> Body {
        StoredBody {
            whole: self.0.clone(),
            at: 0,
            trailers_sent: false,
        }
        .boxed()
    }
}

/// A stored body read from its start.
struct StoredBody {
    whole: Arc<Whole>,
    at: u64,
    trailers_sent: bool,
}

impl HttpBody for StoredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.at < self.whole.spool.len() {
            let data = match self.whole.spool.read_at(self.at, CHUNK) {
                Ok(data) if !data.is_empty() => data,
                Ok(_) => return Poll::Ready(Some(Err("buffered body ended early".into()))),
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            };
            self.at += data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if self.trailers_sent {
            return Poll::Ready(None);
        }
        self.trailers_sent = true;
        Poll::Ready(self.whole.trailers.clone().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.at >= self.whole.spool.len() && (self.trailers_sent || self.whole.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let left = self.whole.spool.len().saturating_sub(self.at);
        if self.whole.trailers.is_some() {
            // Trailers need the chunked framing: no exact size.
            let mut hint = SizeHint::new();
            hint.set_lower(left);
            return hint;
        }
        SizeHint::with_exact(left)
    }
}
