//! A bound on how long a client may leave our writes waiting (nginx's
//! `send_timeout`), on every client connection's socket.
//!
//! Neither hyper nor the relay nor a session would otherwise notice a
//! client that stops reading while something is on its way to it: it would
//! hold the connection, a proxied backend request and the answer's buffers
//! for as long as it liked. Here a write, flush or shutdown that makes no
//! progress for the bound fails with `TimedOut`, which ends the connection.
//!
//! It wraps the TCP socket, under TLS: TLS may go on writing out a record
//! long after our last write was accepted, and only the socket shows that
//! such a client is still taking bytes. The bound is on progress, not on a
//! whole answer: a slow reader that keeps taking bytes is never cut, and a
//! write that completes at once never touches the timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct SendTimeout<I> {
    io: I,
    bound: Duration,
    /// Made the first time a write has to wait, then reused.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs for the write now waiting.
    armed: bool,
}

impl<I> SendTimeout<I> {
    pub fn new(io: I, bound: Duration) -> SendTimeout<I> {
        SendTimeout {
            io,
            bound,
            timer: None,
            armed: false,
        }
    }

    /// A write answered `poll`: pass it on, starting the clock when it has
    /// to wait and failing it once the clock runs out. The clock is read
    /// only when a wait starts, not on every pending poll of it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            let deadline = Instant::now() + self.bound;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let Some(timer) = &mut self.timer else {
            return Poll::Pending;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.armed = false;
        tracing::debug!(bound = ?self.bound, "client took no bytes within the bound; closing");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_cut_and_a_slow_one_is_not() {
        // A pipe that holds 64 bytes: a writer waits once it is full.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conn = SendTimeout::new(ours, Duration::from_secs(10));
        // The reader takes 32 bytes every 6 s: never 10 s without progress.
        let slow = tokio::spawn(async move {
            let mut buf = [0u8; 32];
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                theirs.read_exact(&mut buf).await.unwrap();
            }
            theirs
        });
        conn.write_all(&[b'x'; 64 + 8 * 32 - 64]).await.unwrap();
        let _theirs = slow.await.unwrap();
        // Now nobody reads: the pipe fills and the next write fails at 10 s.
        let started = Instant::now();
        let err = conn.write_all(&[b'y'; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
