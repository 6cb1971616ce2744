//! A TLS stream that tells the HTTP/2 engine not to gather its writes, so
//! that the frames of many streams share one TLS record and one write.
//!
//! The h2 codec picks its write strategy from `is_write_vectored`: with
//! vectored I/O it keeps any DATA payload over 256 bytes out of its buffer
//! and writes head and payload with one `writev`, and it cannot buffer the
//! next frame until that one is out. Over TLS that gathering buys nothing
//! (rustls copies every piece into one record anyway) and costs a record
//! and a write syscall per DATA frame: an SSE message fanned out to 50
//! streams of one connection went out as 50 records in 50 writes. Told the
//! stream is not vectored, h2 copies payloads up to 1 KiB into its 16 KiB
//! buffer and writes the frames queued together in one call, which
//! tokio-rustls seals as one record (two past 16 KiB) in one write.
//! Back-pressure and the send timeout are unchanged: every write still
//! goes through the same socket and waits on it the same way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An HTTP/2 connection's TLS stream, written without gathering.
pub(crate) struct OneRecord<I>(pub(crate) I);

impl<I: AsyncRead + Unpin> AsyncRead for OneRecord<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for OneRecord<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    // `poll_write_vectored` is left to its default (the first non-empty
    // slice), which is all a caller told "not vectored" asks of it.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
