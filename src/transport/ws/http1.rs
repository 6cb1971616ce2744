//! A WebSocket handshake answered straight on an HTTP/1 connection, without
//! hyper: for handshakes whose request the server read itself
//! (`h1/classify.rs` says why). The 101 is written here and the connection
//! handed to the session's task; a refusal is a short answer with a
//! Content-Length, then the close, as for SSE (`sse/http1.rs`).

use std::io;

use bytes::{BufMut, BytesMut};
use http::{Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::reply::Body;
use crate::transport::Io;
use crate::transport::sse::http1::refuse;

/// Write `resp` on `io`: a 101 goes out whole and the connection goes to
/// `wire` (the session waiting for it, [`super::Wire::Direct`]); anything
/// else is written and the connection closed. A connection whose 101 could
/// not be written is dropped, and with it `wire`: the session then ends
/// without a socket.
pub(crate) async fn answer(
    mut io: Box<dyn Io>,
    resp: Response<Body>,
    wire: oneshot::Sender<Box<dyn Io>>,
) -> io::Result<()> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return refuse(io, resp).await;
    }
    io.write_all(&switching_head(&resp)).await?;
    io.flush().await?;
    // The session may be gone already (the gateway stopping): the
    // connection is then dropped with the send's error.
    let _ = wire.send(io);
    Ok(())
}

/// The 101's head, its header fields as the handshake set them.
fn switching_head(resp: &Response<Body>) -> BytesMut {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in resp.headers() {
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn switching() -> Response<Body> {
        let mut resp = Response::new(crate::reply::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(http::header::UPGRADE, "websocket".parse().unwrap());
        h.insert(http::header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert("sec-websocket-accept", "abc=".parse().unwrap());
        resp
    }

    #[tokio::test]
    async fn a_101_is_written_whole_and_the_connection_goes_to_the_session() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let (wire, taken) = oneshot::channel();
        answer(Box::new(ours), switching(), wire).await.unwrap();
        let mut conn = taken.await.expect("the connection was handed over");
        let mut head = vec![0u8; 4096];
        let n = theirs.read(&mut head).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&head[..n]).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-accept: abc=\r\n\r\n"
        );
        // The same connection: what one end writes the other reads.
        conn.write_all(b"frame").await.unwrap();
        let n = theirs.read(&mut head).await.unwrap();
        assert_eq!(&head[..n], b"frame");
    }

    #[tokio::test]
    async fn a_refusal_is_answered_and_closed_and_no_connection_is_handed_over() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let (wire, taken) = oneshot::channel();
        let refused = crate::reply::error(StatusCode::FORBIDDEN, "forbidden", "no");
        answer(Box::new(ours), refused, wire).await.unwrap();
        assert!(taken.await.is_err(), "nothing handed over");
        let mut all = String::new();
        theirs.read_to_string(&mut all).await.unwrap();
        assert!(all.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{all}");
        assert!(all.contains("connection: close\r\n"), "{all}");
        assert!(all.ends_with("}") || all.ends_with("\n"), "{all}");
    }
}
