//! The socket beneath tungstenite's reader, read a few KiB at a time with
//! no buffer held while the connection is idle.
//!
//! tungstenite allocates its read buffer (`read_buffer_size`) when the
//! socket is made and keeps it for the connection's whole life, and it
//! never asks for more than that size in one read. A large buffer there
//! is memory every idle WebSocket holds; a small one would make a large
//! client frame cost one system call per few dozen bytes. [`ReadAhead`]
//! takes both off tungstenite: a small read is served from one socket read
//! into a scratch array on the stack, and what the caller did not take
//! waits on the heap only until it is taken (then the allocation is
//! freed). Writes pass straight through.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one socket read takes for a small caller: the stack array's size.
const SCRATCH: usize = 4096;

/// A caller asking for at least this much reads the socket directly.
const DIRECT: usize = 1024;

/// A byte stream whose small reads are served from one larger socket read.
pub(crate) struct ReadAhead<S> {
    io: S,
    /// Read from the socket and not yet taken; empty (no allocation) at rest.
    ahead: Bytes,
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(io: S) -> Self {
        ReadAhead {
            io,
            ahead: Bytes::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ahead.is_empty() {
            let n = this.ahead.len().min(buf.remaining());
            buf.put_slice(&this.ahead[..n]);
            this.ahead.advance(n);
            if this.ahead.is_empty() {
                // Freed now, not at the next read: an idle socket holds none.
                this.ahead = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT || buf.remaining() == 0 {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
        let mut read = ReadBuf::uninit(&mut scratch);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
        let got = read.filled();
        let n = got.len().min(buf.remaining());
        buf.put_slice(&got[..n]);
        if n < got.len() {
            this.ahead = Bytes::copy_from_slice(&got[n..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small reads get every byte, in order, from one socket read; what
    /// was read ahead is freed once taken.
    #[tokio::test]
    async fn small_reads_take_every_byte_and_free_the_rest() {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut r = ReadAhead::new(near);
        let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut small = [0u8; 64];
        while got.len() < sent.len() {
            let n = r.read(&mut small).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&small[..n]);
            if got.len() == sent.len() {
                assert!(r.ahead.is_empty());
            } else {
                assert!(!r.ahead.is_empty(), "one socket read served them all");
            }
        }
        assert_eq!(got, sent);
        // Taken in full: nothing held (a `Bytes::new()` owns no block).
        assert_eq!(r.ahead, Bytes::new());
    }

    /// A large read goes straight to the socket; writes pass through.
    #[tokio::test]
    async fn large_reads_and_writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut r = ReadAhead::new(near);
        far.write_all(b"hello").await.unwrap();
        let mut big = [0u8; 2048];
        let n = r.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"hello");
        assert!(r.ahead.is_empty());
        r.write_all(b"back").await.unwrap();
        r.flush().await.unwrap();
        let mut back = [0u8; 4];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        drop(far);
        assert_eq!(r.read(&mut big).await.unwrap(), 0, "end of stream");
    }
}
