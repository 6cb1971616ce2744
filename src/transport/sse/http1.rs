//! An SSE answer written straight onto an HTTP/1 connection, without hyper:
//! for subscribers whose request the server read itself
//! (`h1/classify.rs`), so an idle one keeps only its session.
//!
//! HTTP/1.1 with the body delimited by closing the connection (no chunked
//! framing, no keep-alive: an SSE stream is the connection's last response).
//! A refusal is a short answer with a Content-Length, then the close. While
//! the stream is idle, the connection is read only to notice the client
//! leaving; whatever a client sends after its request is discarded.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug};

use super::stream::Chunks;
use super::{SseHead, SseOpening};
use crate::conn_info::ConnKill;
use crate::reply::Body;

pub use crate::transport::Io;

/// An answered SSE request and its connection, handed from the opening to a
/// task of its own that only writes: an idle subscriber then holds a few
/// hundred bytes of task, not the opening's several KiB.
pub struct SseHandoff {
    io: Box<dyn Io>,
    answer: Result<SseOpening, Response<Body>>,
    kill: ConnKill,
}

impl SseHandoff {
    /// `kill` is the connection's: it cuts the stream when the client is evicted.
    pub fn new(
        io: Box<dyn Io>,
        answer: Result<SseOpening, Response<Body>>,
        kill: ConnKill,
    ) -> SseHandoff {
        SseHandoff { io, answer, kill }
    }

    /// Write on a task of `tasks` (in the current span) until the stream
    /// ends, the client leaves, or the connection is killed; `hold` lives as
    /// long as the writing (the connection's gauge).
    pub fn spawn<H: Send + 'static>(self, tasks: &TaskTracker, hold: H) {
        let SseHandoff { io, answer, kill } = self;
        // Taken apart before the task: it then holds the head as bytes and
        // the stream behind one box. Moved into the task whole, the opening's
        // stream state would sit inline in the task for the connection's
        // life, beside the boxed copy it streams from (3 KiB per idle
        // subscriber, measured).
        let answer = match answer {
            Ok(SseOpening { head, stream, span }) => {
                let bytes = head_bytes(SseHead::STATUS, &head.headers, None).freeze();
                Ok((bytes, stream, span))
            }
            Err(refusal) => Err(Box::new(refusal)),
        };
        tasks.spawn(
            async move {
                let _hold = hold;
                let written = match answer {
                    Ok((head, chunks, span)) => {
                        stream(io, head, chunks, kill).instrument(span).await
                    }
                    Err(refusal) => refuse(io, *refusal).await,
                };
                if let Err(error) = written {
                    debug!(%error, "SSE connection ended with an error");
                }
            }
            .in_current_span(),
        );
    }
}

/// Write the head, then the stream's chunks until it ends, the client
/// leaves, or `kill`.
async fn stream(
    mut io: Box<dyn Io>,
    head: Bytes,
    mut chunks: Chunks,
    kill: ConnKill,
) -> io::Result<()> {
    let mut killed = kill.0.listen_from_start();
    io.write_all(&head).await?;
    drop(head);
    let mut scratch = [0u8; 64];
    loop {
        let chunk = tokio::select! {
            biased;
            _ = killed.rung() => return Ok(()),
            chunk = chunks.next() => chunk,
            read = io.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        let Some(data) = chunk else { break };
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
    io.flush().await?;
    io.shutdown().await
}

/// Write a refusal (a short, whole answer) and close.
pub(crate) async fn refuse(mut io: Box<dyn Io>, resp: Response<Body>) -> io::Result<()> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let headers: Vec<(HeaderName, HeaderValue)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut bytes = head_bytes(parts.status, &headers, Some(len));
    bytes.put_slice(&body);
    io.write_all(&bytes).await?;
    io.flush().await?;
    io.shutdown().await
}

/// An HTTP/1.1 response head that ends the connection after its body.
fn head_bytes(
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    content_length: Option<u64>,
) -> BytesMut {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(status.as_str().as_bytes());
    head.put_slice(b" ");
    head.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.put_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONNECTION || name == header::CONTENT_LENGTH {
            continue;
        }
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(b"\r\n");
    }
    if let Some(len) = content_length {
        head.put_slice(format!("content-length: {len}\r\n").as_bytes());
    }
    head.put_slice(b"connection: close\r\n\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_head_is_close_delimited() {
        let mut opening_head = SseHead::new();
        opening_head.headers.extend(crate::transport::cors::headers(
            &crate::transport::cors::Origin::Trusted(HeaderValue::from_static(
                "https://app.example",
            )),
        ));
        let head = head_bytes(SseHead::STATUS, &opening_head.headers, None);
        assert_eq!(
            std::str::from_utf8(&head).unwrap(),
            "HTTP/1.1 200 OK\r\n\
             content-type: text/event-stream\r\n\
             cache-control: no-cache\r\n\
             x-accel-buffering: no\r\n\
             access-control-allow-origin: https://app.example\r\n\
             access-control-allow-credentials: true\r\n\
             vary: Origin\r\n\
             connection: close\r\n\r\n"
        );
    }
}
