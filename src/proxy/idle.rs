//! The idle bound on a proxied answer's body: a streamed answer lives as
//! long as bytes flow, and dies once the backend goes quiet for
//! `backend.timeout`.

use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

use crate::reply::BoxError;

/// A response body that fails once the backend has sent nothing for
/// `backend.timeout` (like nginx's `proxy_read_timeout`): a stream is never
/// cut while bytes flow, and a hung backend does not hold the client forever.
///
/// The timer is made the first time the backend keeps the body waiting (the
/// wait counts from then): most answers arrive whole, and cost no timer. It
/// wraps hyper's body itself, so the answer is boxed once.
pub(super) struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub(super) fn new(inner: B, idle: Duration) -> IdleTimeout<B> {
        IdleTimeout {
            inner,
            idle,
            deadline: None,
        }
    }
}

impl<B> http_body::Body for IdleTimeout<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(deadline) = &mut this.deadline {
                    deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.idle)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    warn!(idle = ?this.idle, "backend response stalled; closing it");
                    Poll::Ready(Some(Err(
                        "backend response idle past backend.timeout".into()
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
