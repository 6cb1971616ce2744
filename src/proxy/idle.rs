//! The idle bound on what the proxy carries for the application: a
//! streamed answer, and an upgraded tunnel (a WebSocket to the
//! application's own paths, opened by HTTP/1.1 or HTTP/2), live as long as
//! bytes flow, and die once nothing moved for `backend.timeout`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use bytes::Bytes;
use tracing::{debug, warn};

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

/// Carry bytes both ways between `client` and `backend` until either side
/// ends, or until neither sent a byte for `idle`: the tunnel's form of
/// [`IdleTimeout`] (nginx closes an upgraded connection the same way, after
/// `proxy_read_timeout` without a read on either side). `Ok(false)` when it
/// was cut for idleness. A WebSocket kept open by pings never idles.
pub(super) async fn copy_until_idle<C, B>(
    client: &mut C,
    backend: &mut B,
    idle: Duration,
) -> std::io::Result<bool>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut c = Watched {
        io: client,
        activity: &activity,
    };
    let mut b = Watched {
        io: backend,
        activity: &activity,
    };
    tokio::select! {
        ended = tokio::io::copy_bidirectional(&mut c, &mut b) => ended.map(|_| true),
        () = activity.quiet_for(idle) => Ok(false),
    }
}

/// When bytes last arrived on either side of a tunnel, in milliseconds
/// from its start: one atomic store per read, no timer reset per read.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Ready once nothing arrived for `idle`. The timer sleeps to the
    /// deadline of the last activity it saw, and again from the newer one.
    async fn quiet_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + idle;
            tokio::time::sleep_until(deadline).await;
            if Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) == last {
                // `debug`: a client can make one per tunnel per timeout.
                debug!(
                    ?idle,
                    "upgraded tunnel idle past backend.timeout; closing it"
                );
                return;
            }
        }
    }
}

/// One side of a tunnel, noting each read that brought bytes.
struct Watched<'a, T> {
    io: &'a mut T,
    activity: &'a Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What a tunnel with a 10 s idle timeout did while one end sent a byte
    /// every 6 s for a minute and the other said nothing.
    struct Flowed {
        /// The ten bytes the far end read.
        got: [u8; 10],
        /// Whether the tunnel ended for idleness.
        idle: bool,
        /// How long it lasted once the last byte had been read.
        waited: Duration,
    }

    /// Run that minute with `byte` sent by the client (`from_client`) or by
    /// the backend, each 6 s, never 10 s quiet: the tunnel must not be cut
    /// meanwhile.
    async fn a_byte_every_6s_for_a_minute(from_client: bool, byte: u8) -> Flowed {
        let (mut client, mut client_far) = tokio::io::duplex(64);
        let (mut backend, mut backend_far) = tokio::io::duplex(64);
        let tunnel = tokio::spawn(async move {
            copy_until_idle(&mut client, &mut backend, Duration::from_secs(10)).await
        });
        let (sender, reader, cut) = if from_client {
            (&mut client_far, &mut backend_far, "cut while bytes flowed")
        } else {
            (
                &mut backend_far,
                &mut client_far,
                "cut while the backend sent",
            )
        };
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            sender.write_all(&[byte]).await.unwrap();
            assert!(!tunnel.is_finished(), "{cut}");
        }
        let mut got = [0u8; 10];
        tokio::io::AsyncReadExt::read_exact(reader, &mut got)
            .await
            .unwrap();
        let quiet = tokio::time::Instant::now();
        let idle = tunnel.await.unwrap().unwrap();
        Flowed {
            got,
            idle,
            waited: quiet.elapsed(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_lives_while_bytes_flow_and_ends_when_quiet() {
        let flowed = a_byte_every_6s_for_a_minute(true, b'x').await;
        assert!(!flowed.idle, "ended for idleness");
        let waited = flowed.waited;
        assert!(waited >= Duration::from_secs(9), "{waited:?}");
        assert!(waited <= Duration::from_secs(11), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_lives_while_only_the_backend_sends() {
        let flowed = a_byte_every_6s_for_a_minute(false, b'y').await;
        assert_eq!(&flowed.got, b"yyyyyyyyyy");
        assert!(!flowed.idle, "ended for idleness");
    }
}
