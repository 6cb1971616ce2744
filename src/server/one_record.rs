//! An HTTP/2 connection's TLS stream that turns everything the h2 engine
//! writes between two flushes into one TLS record (more past 16 KiB) and
//! one write syscall, so that the frames of many streams share records.
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
//! handed to TLS together when h2 flushes, which it does after every batch.
//!
//! Back-pressure is kept: at most [`LIMIT`] bytes wait here; past that a
//! write first pushes them out and waits on the socket like any write, under
//! the same send timeout (it wraps the socket below TLS). The gathering
//! buffer is let go once written, so an idle connection holds none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before a write must first push them out: a full h2
/// buffer (16 KiB) and a whole chained DATA payload (16 KiB by default).
const LIMIT: usize = 32 * 1024;

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
        // Let the buffer go: an idle connection keeps no allocation.
        self.pending = Vec::new();
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
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    // `poll_write_vectored` is left to its default (the first non-empty
    // slice), which is all a caller told "not vectored" asks of it.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
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
        assert_eq!(io.pending.capacity(), 0, "the buffer is let go");
        // Past the limit, a write first pushes out what waits.
        io.write_all(&[3; LIMIT]).await.unwrap();
        io.write_all(&[4; 10]).await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![4105, LIMIT]);
        io.shutdown().await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![4105, LIMIT, 10]);
    }
}
