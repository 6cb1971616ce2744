//! A frame-level HTTP/2 client for the gateway (the `h2` crate over
//! tokio-rustls), and WebSockets on its streams (RFC 8441): what a browser
//! holding an h2 connection does, with every frame in the test's hands.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::TestGateway;

/// A WebSocket on one stream of an h2 connection.
pub type H2Ws = WebSocketStream<StreamIo>;

/// An h2 connection to the gateway's public listener. With `alpn` the TLS
/// handshake offers `h2` (as browsers do); without it, h2 is spoken with
/// prior knowledge on a connection that negotiated nothing.
pub async fn connect(gw: &TestGateway, alpn: bool) -> SendRequest<Bytes> {
    connect_with(gw, alpn, &h2::client::Builder::new()).await
}

/// [`connect`] with the client's own settings (its flow-control windows).
pub async fn connect_with(
    gw: &TestGateway,
    alpn: bool,
    settings: &h2::client::Builder,
) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    connect_over(gw, tcp, alpn, settings).await
}

/// [`connect`] (with ALPN) where each stream's window is small (16 KiB) and
/// the connection's large (16 MiB): a stream the client does not read
/// blocks itself, not its neighbours.
pub async fn connect_small_stream_windows(gw: &TestGateway) -> SendRequest<Bytes> {
    let mut settings = h2::client::Builder::new();
    settings
        .initial_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024);
    connect_with(gw, true, &settings).await
}

/// [`connect_with`] over `tcp`, a connection to the public listener (or a
/// wrapper of one that watches its bytes).
pub async fn connect_over<T>(
    gw: &TestGateway,
    tcp: T,
    alpn: bool,
    settings: &h2::client::Builder,
) -> SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocols = if alpn {
        vec![b"h2".to_vec()]
    } else {
        Vec::new()
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = gw
        .tls_connector_alpn(protocols)
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = settings.handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.expect("h2 connection ready")
}

/// The status of a `GET` of `path` on `send`'s connection: once it is back,
/// the server's first SETTINGS (sent before any answer) have been read.
pub async fn get(send: &mut SendRequest<Bytes>, gw: &TestGateway, path: &str) -> u16 {
    let req = Request::get(gw.url(path)).body(()).unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    resp.await.expect("an answer").status().as_u16()
}

/// An extended CONNECT for `protocol` to `path`, with `headers`: the
/// answer head, and the stream's sending half.
pub async fn extended_connect(
    send: &mut SendRequest<Bytes>,
    gw: &TestGateway,
    path: &str,
    protocol: &'static str,
    headers: &[(&str, &str)],
) -> Result<(Response<RecvStream>, SendStream<Bytes>), h2::Error> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(gw.url(path))
        .body(())
        .unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static(protocol));
    let (resp, stream) = send.send_request(req, false)?;
    Ok((resp.await?, stream))
}

/// The body of an answer, whole (a refusal's JSON).
pub async fn body(resp: Response<RecvStream>) -> serde_json::Value {
    let mut recv = resp.into_body();
    let mut all = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&all).unwrap()
}

/// A WebSocket (client role) on an opened extended CONNECT stream.
pub async fn websocket(resp: Response<RecvStream>, send: SendStream<Bytes>) -> H2Ws {
    let io = StreamIo {
        send,
        recv: resp.into_body(),
        pending: Bytes::new(),
    };
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

/// One h2 stream as a byte stream: DATA frames in, DATA frames out, within
/// the peer's flow-control window.
pub struct StreamIo {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    pending: Bytes,
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.send.reserve_capacity(buf.len());
        loop {
            return match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    self.send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .map_err(std::io::Error::other)?;
                    Poll::Ready(Ok(n))
                }
                Some(Err(e)) => Poll::Ready(Err(std::io::Error::other(e))),
                None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            };
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
