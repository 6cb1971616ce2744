//! The first request head of a public HTTP/1.x connection, read before hyper
//! sees the connection, for one reason: an SSE subscriber is a connection that
//! sends one small request and then only listens, for hours. Served by hyper,
//! it keeps an HTTP/1 read buffer, a header write buffer and an in-flight
//! slot for its whole life (over 30 KiB measured); served directly
//! (`transport/sse/http1.rs`) it keeps only its session.
//!
//! Anything else, and anything unusual about an SSE request (a body,
//! pipelined bytes, an upgrade, a header hyper would reject), goes to hyper
//! with the bytes already read put back in front ([`Rewind`]), so hyper
//! answers exactly as it would have.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::h1::request::MAX_HEADERS;

/// What the first bytes of a connection are.
pub enum FirstRequest {
    /// `GET <realtime.path>/sse`, complete, nothing after it.
    Sse(Request<()>),
    /// Anything else: hand these bytes and the connection to hyper.
    Other(BytesMut),
    /// The client closed before sending a whole head.
    Closed,
}

/// Read until a complete request head (or what is clearly not one for us).
pub async fn read<I: AsyncRead + Unpin>(
    io: &mut I,
    sse_path: &str,
    max_head: usize,
) -> io::Result<FirstRequest> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(if buf.is_empty() {
                FirstRequest::Closed
            } else {
                FirstRequest::Other(buf)
            });
        }
        match classify(&buf, sse_path) {
            Some(Some(req)) => return Ok(FirstRequest::Sse(req)),
            Some(None) => return Ok(FirstRequest::Other(buf)),
            None if buf.len() >= max_head => return Ok(FirstRequest::Other(buf)),
            None => {
                if buf.capacity() == buf.len() {
                    buf.reserve(buf.len().min(max_head));
                }
            }
        }
    }
}

/// `None`: need more bytes. `Some(None)`: not ours. `Some(Some(req))`: an SSE request.
fn classify(buf: &[u8], sse_path: &str) -> Option<Option<Request<()>>> {
    // HTTP/2 prior knowledge and anything that is not a GET go to hyper at once.
    if buf.len() >= 4 && !buf.starts_with(b"GET ") {
        return Some(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(None),
    };
    if len != buf.len() {
        return Some(None); // pipelined bytes: hyper handles sequences
    }
    let Some(path) = parsed.path else {
        return Some(None);
    };
    let ours = path
        .strip_prefix(sse_path)
        .is_some_and(|after| after.is_empty() || after.starts_with('?'));
    if !ours {
        return Some(None);
    }
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Some(None),
    };
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(version);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok();
        let value = HeaderValue::from_bytes(h.value).ok();
        let (Some(name), Some(value)) = (name, value) else {
            return Some(None);
        };
        let body_or_upgrade = name == http::header::CONTENT_LENGTH && value != "0"
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::UPGRADE;
        if body_or_upgrade {
            return Some(None);
        }
        req = req.header(name, value);
    }
    Some(req.body(()).ok())
}

/// A connection with bytes already read put back in front of it.
pub struct Rewind<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    pub fn new(prefix: Bytes, io: I) -> Rewind<I> {
        Rewind { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // An empty slice still holds the whole read buffer (1 KiB)
                // for the connection's life; let it go.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(raw: &str) -> Option<Option<Request<()>>> {
        classify(raw.as_bytes(), "/realtime/sse")
    }

    #[test]
    fn picks_only_plain_sse_requests() {
        let req =
            sse("GET /realtime/sse?channels=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1~a~2\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(req.uri().query(), Some("channels=a"));
        assert_eq!(req.headers()["last-event-id"], "1~a~2");
        assert!(
            sse("GET /realtime/sse HTTP/1.1\r\nHost: x").is_none(),
            "partial"
        );
        for other in [
            "POST /realtime/sse HTTP/1.1\r\n\r\n",
            "GET /realtime/ssex HTTP/1.1\r\n\r\n",
            "GET /realtime/ws HTTP/1.1\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /realtime/sse HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(matches!(sse(other), Some(None)), "{other:?}");
        }
    }
}
