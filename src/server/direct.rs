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

use crate::bell::Bell;

use crate::reply::Body;

/// Write `resp` and stream its body until it ends, the client leaves, or `kill`.
pub async fn write<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    resp: Response<Body>,
    kill: &std::sync::Arc<Bell>,
) -> io::Result<()> {
    let mut killed = kill.listen_from_start();
    let (parts, mut body) = resp.into_parts();
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
