//! An HTTP/2 connection's TLS stream that turns everything the h2 engine
//! writes between two flushes into one TLS record (more past 16 KiB) and
//! one write syscall (more past [`LIMIT`]), so that the frames of many
//! streams share records.
//!
//! The h2 codec picks its write strategy from `is_write_vectored`: with
//! vectored I/O it keeps any DATA payload over 256 bytes out of its buffer,
//! writes head and payload with one `writev`, and flushes before it can
//! buffer the next frame: an SSE message fanned out to 50 streams of one
//! connection went out as 50 records in 50 writes. Over TLS gathering buys
//! nothing (rustls copies every piece into its record anyway). Told the
//! stream is not vectored, h2 copies payloads up to 1 KiB into its 16 KiB
//! buffer and writes the frames queued together at once; a larger payload
//! it still writes in two pieces (its head with the first KiB, then the
//! rest), which would be two records: so the pieces are gathered here and
//! handed to TLS together when h2 flushes, which it does after every batch
//! and after every such larger frame (so each stream's copy of a message
//! of 1 KiB or more is a write of its own).
//!
//! Back-pressure is kept: at most [`LIMIT`] bytes ever wait here. A write
//! that finds the buffer full first pushes it out and waits on the socket
//! like any write, under the same send timeout (it wraps the socket below
//! TLS); a write larger than the room left is taken in part, as `AsyncWrite`
//! allows (h2 writes the rest on its next call), so a peer advertising a
//! large SETTINGS_MAX_FRAME_SIZE and not reading cannot make a whole frame
//! land here. The buffer's allocation is kept while traffic flows and let
//! go by a flush that finds nothing to write, so an idle connection holds
//! none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes gathered at once: a full h2 buffer (16 KiB) and a whole
/// chained DATA payload at the default frame size (16 KiB). A write past
/// it is taken only up to it.
const LIMIT: usize = 32 * 1024;

/// Largest allocation kept across flushes. Up to this the buffer is
/// cleared and reused, so a connection with traffic flowing does not
/// regrow it from empty (through 4 reallocations) on every flush; a larger
/// one (a burst near [`LIMIT`]) is let go, so a busy moment does not pin
/// 32 KiB for the connection's life. Either way an idle connection frees
/// it: see [`OneRecord::poll_flush`].
const KEEP: usize = 8 * 1024;

/// An HTTP/2 connection's TLS stream, written a flush at a time.
pub(crate) struct OneRecord<I> {
    io: I,
    /// Written by h2, not yet handed to TLS.
    pending: Vec<u8>,
    /// How much of `pending` TLS has taken.
    taken: usize,
}

impl<I> OneRecord<I> {
    pub(crate) fn new(io: I) -> OneRecord<I> {
        OneRecord {
            io,
            pending: Vec::new(),
            taken: 0,
        }
    }
}

impl<I: AsyncWrite + Unpin> OneRecord<I> {
    /// Hand everything gathered to TLS: one plaintext write, one record
    /// per 16 KiB, written out by tokio-rustls in one syscall when the
    /// socket takes it.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.taken < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.taken..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.taken += n;
        }
        if self.pending.capacity() > KEEP {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        self.taken = 0;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for OneRecord<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for OneRecord<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.len() >= LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        // Only what fits: h2 (`poll_write_buf`) writes the rest next call.
        let n = buf.len().min(LIMIT - this.pending.len());
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    // `poll_write_vectored` is left to its default (the first non-empty
    // slice), which is all a caller told "not vectored" asks of it.
    fn is_write_vectored(&self) -> bool {
        false
    }

    /// h2 flushes after every batch, and also when it has nothing queued
    /// (a connection gone idle): a flush that finds the buffer already
    /// empty frees it.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            this.pending = Vec::new();
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A sink that records each write it is given.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<usize>>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Writes {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn pieces_written_between_flushes_go_out_as_one_write() {
        let sink = Writes::default();
        let mut io = OneRecord::new(sink.clone());
        // A chained DATA frame as h2 writes it: head and first KiB, then the rest.
        io.write_all(&[1; 9 + 1015]).await.unwrap();
        io.write_all(&[2; 3081]).await.unwrap();
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "nothing before the flush"
        );
        io.flush().await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![9 + 1015 + 3081]);
        let kept = io.pending.capacity();
        assert!(
            (4105..=KEEP).contains(&kept),
            "kept for the next batch: {kept}"
        );
        io.write_all(&[5; 100]).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.pending.capacity(), kept, "reused, not regrown");
        // A flush with nothing gathered: the connection is idle.
        io.flush().await.unwrap();
        assert_eq!(io.pending.capacity(), 0, "an idle connection holds none");
        // Past the limit, a write first pushes out what waits.
        io.write_all(&[3; LIMIT]).await.unwrap();
        io.write_all(&[4; 10]).await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![4105, 100, LIMIT]);
        assert!(io.pending.capacity() < 1024, "a burst's buffer is not kept");
        io.shutdown().await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![4105, 100, LIMIT, 10]);
    }

    /// A socket that never takes anything: a peer that does not read.
    struct Stalled;

    impl AsyncWrite for Stalled {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    #[test]
    fn a_peer_that_does_not_read_leaves_at_most_the_limit_gathered() {
        let mut io = OneRecord::new(Stalled);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // A whole DATA frame at a 16 MiB SETTINGS_MAX_FRAME_SIZE, as h2 hands it over.
        let frame = vec![7; 64 * 1024 + 9];
        let mut taken = 0;
        while let Poll::Ready(n) = Pin::new(&mut io).poll_write(&mut cx, &frame[taken..]) {
            taken += n.unwrap();
        }
        assert_eq!(taken, LIMIT);
        assert_eq!(io.pending.len(), LIMIT);
        assert!(io.pending.capacity() < 2 * LIMIT);
    }

    /// A socket that alternates: not ready (waking at once), then takes at
    /// most 100 bytes. Records every byte taken.
    #[derive(Default)]
    struct Trickle {
        out: Vec<u8>,
        ready: bool,
    }

    impl Trickle {
        fn turn(&mut self, cx: &mut Context<'_>) -> bool {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
            }
            self.ready
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if !self.turn(cx) {
                return Poll::Pending;
            }
            let n = buf.len().min(100);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            if !self.turn(cx) {
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn short_and_refused_writes_lose_reorder_and_repeat_nothing() {
        let mut io = OneRecord::new(Trickle::default());
        let mut sent = Vec::new();
        // Sizes around the limit and the socket's 100 bytes, each piece distinct.
        let sizes = [
            1,
            99,
            100,
            101,
            4105,
            LIMIT - 1,
            2,
            LIMIT + 7,
            3 * LIMIT,
            50,
        ];
        for (i, &size) in sizes.iter().enumerate() {
            let piece: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7 % 251) as u8).collect();
            io.write_all(&piece).await.unwrap();
            sent.extend_from_slice(&piece);
            if i % 3 == 2 {
                io.flush().await.unwrap();
                assert!(io.get_out() == &sent[..], "all of it after flush {i}");
            }
        }
        io.shutdown().await.unwrap();
        assert_eq!(io.get_out().len(), sent.len());
        assert!(io.get_out() == &sent[..], "byte for byte");
    }

    impl OneRecord<Trickle> {
        fn get_out(&self) -> &[u8] {
            &self.io.out
        }
    }
}
