//! The scripted backend the relay's tests talk to, and the clients they use:
//! the backend answers each request head with exactly the bytes a test
//! wants, records the heads and counts its connections, so a test can tell
//! what reached the application and over how many connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

/// What the scripted backend does with one request.
pub(super) struct Answer {
    pub(super) bytes: Vec<u8>,
    /// Close the connection once the answer is written.
    pub(super) close: bool,
    /// Written 100 ms after `bytes`.
    pub(super) then: &'static [u8],
}

pub(super) fn answer(bytes: impl Into<Vec<u8>>) -> Answer {
    Answer {
        bytes: bytes.into(),
        close: false,
        then: b"",
    }
}

pub(super) fn sized(body: &str) -> Answer {
    answer(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nX-App: yes\r\n\r\n{body}",
        body.len()
    ))
}

/// A backend that reads bodiless request heads and answers each with
/// `script(head)`. It records every head and counts its connections.
pub(super) struct Scripted {
    pub(super) url: String,
    pub(super) heads: Arc<Mutex<Vec<String>>>,
    pub(super) connections: Arc<AtomicUsize>,
    /// Connections the gateway has closed.
    pub(super) closed: Arc<AtomicUsize>,
}

pub(super) async fn scripted(script: fn(&str) -> Answer) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (h, c, gone) = (heads.clone(), connections.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let heads = h.clone();
            let gone = gone.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                        buf.drain(..end + 4);
                        let reply = script(&head);
                        heads.lock().unwrap().push(head);
                        if stream.write_all(&reply.bytes).await.is_err() {
                            return;
                        }
                        if !reply.then.is_empty() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let _ = stream.write_all(reply.then).await;
                        }
                        if reply.close {
                            return;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            gone.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Scripted {
        url,
        heads,
        connections,
        closed,
    }
}

pub(super) fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

pub(super) async fn gateway_for(backend: &str) -> TestGateway {
    TestGateway::with(backend, "  heartbeat: 15s", "").await
}

/// An HTTP/1.1 client on one TLS connection (no ALPN: no HTTP/2).
pub(super) async fn http1(gw: &TestGateway) -> SendRequest<Empty<Bytes>> {
    let tls = gw.tls_stream().await;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Send `method path` with `Host: app.example`; the answer, body unread.
pub(super) async fn request(
    send: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    send.ready().await.unwrap();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.example")
        .body(Empty::new())
        .unwrap();
    send.send_request(req).await.unwrap()
}

/// Send `method path`; the status, headers and whole body.
pub(super) async fn get(
    send: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    path: &str,
) -> (u16, http::HeaderMap, String) {
    let resp = request(send, method, path).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Write `raw` on a new TLS connection and read until the gateway closes it.
pub(super) async fn raw(gw: &TestGateway, raw: &[u8]) -> String {
    let mut tls = gw.tls_stream().await;
    tls.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub(super) fn proxied_2xx(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("pushgate_proxy_requests_total{class=\"2xx\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
