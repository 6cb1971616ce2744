//! Serving a streaming response straight onto the connection, without hyper:
//! for SSE subscribers read by `server/first_request.rs`.
//!
//! HTTP/1.1 with the body delimited by closing the connection (no chunked
//! framing, no keep-alive: an SSE stream is the connection's last response).
//! A short body (an error answer) gets a Content-Length. While the body is
//! idle, the connection is read only to notice the client leaving; whatever a
//! client sends after its request is discarded.

use std::io;

use bytes::{BufMut, BytesMut};
use http::Response;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug};

use crate::conn_info::ConnKill;
use crate::reply::Body;

/// A connection's byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An opened SSE response and its connection, handed from the opening to a
/// task of its own that only streams: an idle subscriber then holds a few
/// hundred bytes of task, not the opening's several KiB.
pub struct SseHandoff {
    io: Box<dyn Io>,
    resp: Response<Body>,
    kill: ConnKill,
}

impl SseHandoff {
    pub fn new(io: Box<dyn Io>, resp: Response<Body>, kill: ConnKill) -> SseHandoff {
        SseHandoff { io, resp, kill }
    }

    /// Stream on a task of `tasks` (in the current span) until the body
    /// ends, the client leaves, or the connection is killed; `hold` lives as
    /// long as the stream (the connection's gauge).
    pub fn spawn<H: Send + 'static>(self, tasks: &TaskTracker, hold: H) {
        let SseHandoff { io, resp, kill } = self;
        let (head, body) = head(resp);
        tasks.spawn(
            async move {
                let _hold = hold;
                if let Err(error) = stream(io, head, body, kill).await {
                    debug!(%error, "SSE connection ended with an error");
                }
            }
            .in_current_span(),
        );
    }
}

/// Write `head`, then stream `body` until it ends, the client leaves, or `kill`.
async fn stream(
    mut io: Box<dyn Io>,
    head: BytesMut,
    mut body: Body,
    kill: ConnKill,
) -> io::Result<()> {
    let mut killed = kill.0.listen_from_start();
    io.write_all(&head).await?;
    drop(head);
    let mut scratch = [0u8; 64];
    loop {
        let frame = tokio::select! {
            biased;
            _ = killed.rung() => return Ok(()),
            frame = body.frame() => frame,
            read = io.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        match frame {
            None => break,
            Some(Err(error)) => return Err(io::Error::other(error)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    // A client that stops reading is cut by `kill` (its inbox
                    // overflowed), even while this write waits on its socket.
                    let sent = async {
                        io.write_all(&data).await?;
                        io.flush().await
                    };
                    tokio::select! {
                        biased;
                        sent = sent => sent?,
                        _ = killed.rung() => return Ok(()),
                    }
                }
            }
        }
    }
    io.flush().await?;
    io.shutdown().await
}

/// The response head as bytes, and the body: the head's parts are dropped
/// here, before streaming starts.
fn head(resp: Response<Body>) -> (BytesMut, Body) {
    let (parts, body) = resp.into_parts();
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(parts.status.as_str().as_bytes());
    head.put_slice(b" ");
    head.put_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.put_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONNECTION || name == http::header::CONTENT_LENGTH {
            continue;
        }
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(b"\r\n");
    }
    if let Some(len) = http_body::Body::size_hint(&body).exact() {
        head.put_slice(format!("content-length: {len}\r\n").as_bytes());
    }
    head.put_slice(b"connection: close\r\n\r\n");
    (head, body)
}
