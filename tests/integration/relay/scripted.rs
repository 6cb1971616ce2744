//! The scripted backend the relay's tests talk to, and the clients they use:
//! the backend answers each request head with exactly the bytes a test
//! wants, records the heads and counts its connections (and what became of
//! them), so a test can tell what reached the application and over how
//! many connections.

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
pub(crate) struct Answer {
    pub(crate) bytes: Vec<u8>,
    /// Close the connection once the answer is written.
    pub(crate) close: bool,
    /// Written `then_after` after `bytes`, in a write of its own.
    pub(crate) then: &'static [u8],
    pub(crate) then_after: Duration,
    /// Keep the connection after this answer, but close it unanswered as
    /// soon as the next request arrives on it: a backend whose keep-alive
    /// timeout fires just as a request comes in. The connection looks alive
    /// until then, so the request is written before the close is seen.
    pub(crate) hang_up_next: bool,
}

pub(crate) fn answer(bytes: impl Into<Vec<u8>>) -> Answer {
    Answer {
        bytes: bytes.into(),
        close: false,
        then: b"",
        then_after: Duration::from_millis(100),
        hang_up_next: false,
    }
}

pub(crate) fn sized(body: &str) -> Answer {
    answer(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nX-App: yes\r\n\r\n{body}",
        body.len()
    ))
}

/// A backend that reads bodiless request heads and answers each with
/// `script(head)`. It records every head and counts its connections.
pub(crate) struct Scripted {
    pub(crate) url: String,
    pub(crate) heads: Arc<Mutex<Vec<String>>>,
    pub(crate) connections: Arc<AtomicUsize>,
    /// Connections the gateway has closed (or reset while the backend was
    /// writing to them).
    pub(crate) closed: Arc<AtomicUsize>,
    /// Requests whose connection the backend closed unanswered
    /// (`Answer::hang_up_next`).
    pub(crate) hung_up: Arc<AtomicUsize>,
    /// `then` writes done: delivered to the gateway's socket, unless the
    /// gateway had closed the connection.
    pub(crate) late: Arc<AtomicUsize>,
}

pub(crate) async fn scripted(script: fn(&str) -> Answer) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicUsize::new(0));
    let hung_up = Arc::new(AtomicUsize::new(0));
    let (h, c, gone, wrote, hung) = (
        heads.clone(),
        connections.clone(),
        closed.clone(),
        late.clone(),
        hung_up.clone(),
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let heads = h.clone();
            let gone = gone.clone();
            let wrote = wrote.clone();
            let hung = hung.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut hang_up = false;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                        buf.drain(..end + 4);
                        if hang_up {
                            heads.lock().unwrap().push(head);
                            hung.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        let reply = script(&head);
                        heads.lock().unwrap().push(head);
                        hang_up = reply.hang_up_next;
                        if stream.write_all(&reply.bytes).await.is_err() {
                            gone.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        if !reply.then.is_empty() {
                            tokio::time::sleep(reply.then_after).await;
                            if stream.write_all(reply.then).await.is_ok() {
                                delivered(&stream).await;
                            }
                            wrote.fetch_add(1, Ordering::SeqCst);
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
        hung_up,
        late,
    }
}

/// Wait (up to 5 s) until the peer's kernel has acknowledged everything
/// written on `stream`: the bytes are then in its receive queue, whatever
/// its process has made of them yet. Read from the socket table
/// (`/proc/net/tcp`: the send queue of this connection is empty).
async fn delivered(stream: &tokio::net::TcpStream) {
    let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let hex = |a: std::net::SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) => {
            format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), a.port())
        }
        std::net::IpAddr::V6(_) => String::new(),
    };
    let (local, peer) = (hex(local), hex(peer));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let queued = table.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&peer.as_str()))
                .then(|| {
                    f.get(4)
                        .and_then(|q| q.split(':').next())
                        .map(str::to_owned)
                })
                .flatten()
        });
        match queued {
            Some(q) if q.trim_start_matches('0').is_empty() => return,
            None => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

pub(crate) fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

pub(crate) async fn gateway_for(backend: &str) -> TestGateway {
    TestGateway::with(backend, "  heartbeat: 15s", "").await
}

/// An HTTP/1.1 client on one TLS connection (no ALPN: no HTTP/2).
pub(crate) async fn http1(gw: &TestGateway) -> SendRequest<Empty<Bytes>> {
    let tls = gw.tls_stream().await;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Send `method path` with `Host: app.example`; the answer, body unread.
pub(crate) async fn request(
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
pub(crate) async fn get(
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
pub(crate) async fn raw(gw: &TestGateway, raw: &[u8]) -> String {
    let mut tls = gw.tls_stream().await;
    // The gateway may answer and close before all of `raw` is written (a
    // head it refuses half way): the write then fails, the answer is read.
    let _ = tls.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub(crate) fn proxied_2xx(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("pushgate_proxy_requests_total{class=\"2xx\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
