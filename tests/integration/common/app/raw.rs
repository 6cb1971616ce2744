//! The stand-in application's raw mode: it reads each request head and its
//! `Content-Length` body off the socket itself and writes exactly the bytes
//! its script answers, so a test can play an application that breaks
//! HTTP/1 (a malformed head, a cut body, a close at the wrong moment),
//! which a real server library would never write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Record;

/// What a script answers to each request.
pub(crate) type Script = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

/// One request as the application read it.
pub struct Request {
    /// The head, request line to blank line, as received.
    pub head: String,
    /// The body, as long as `Content-Length` said (none without one).
    pub body: Vec<u8>,
}

impl Request {
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    /// The request target (path and query).
    pub fn target(&self) -> &str {
        path_of(&self.head)
    }

    /// The value of the first header field `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }
}

/// The target of a request head.
pub fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// What the application does with one request.
pub struct Answer {
    pub bytes: Vec<u8>,
    /// Close the connection once the answer is written.
    pub close: bool,
    /// Written `then_after` after `bytes`, in a write of its own.
    pub then: &'static [u8],
    pub then_after: Duration,
    /// Keep the connection after this answer, but close it unanswered as
    /// soon as the next request arrives on it: an application whose
    /// keep-alive timeout fires just as a request comes in. The connection
    /// looks alive until then, so the request is written before the close
    /// is seen.
    pub hang_up_next: bool,
    /// Wait for a [`TestApp::release`] permit before answering.
    pub hold: bool,
    /// After `bytes`, keep the connection open and silent for good: an
    /// answer that streams and never ends.
    pub stall: bool,
}

/// An answer of exactly `bytes`.
pub fn answer(bytes: impl Into<Vec<u8>>) -> Answer {
    Answer {
        bytes: bytes.into(),
        close: false,
        then: b"",
        then_after: Duration::from_millis(100),
        hang_up_next: false,
        hold: false,
        stall: false,
    }
}

/// A 200 with `body`, its length and `X-App: yes`.
pub fn sized(body: &str) -> Answer {
    answer(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nX-App: yes\r\n\r\n{body}",
        body.len()
    ))
}

/// A `status` (e.g. `"200 OK"`) with a JSON `body`.
pub fn json_answer(status: &str, body: &str) -> Answer {
    answer(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// Read until `buf` holds more than `len` bytes; false when the peer is gone.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, len: usize) -> bool {
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// Answer the requests on one connection (a TCP, TLS or unix stream):
/// with `script`, or as the application `name` without one.
pub(crate) async fn serve<S>(
    mut stream: S,
    peer: Option<Peer>,
    name: &'static str,
    script: Option<&Script>,
    app: &Record,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut hang_up = false;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let more = buf.len() + 1;
            if !fill(&mut stream, &mut buf, more).await {
                app.closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        if hang_up {
            app.heads.lock().unwrap().push(head);
            app.hung_up.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let length = header(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if !fill(&mut stream, &mut buf, end + 4 + length).await {
            app.closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let body = buf[end + 4..end + 4 + length].to_vec();
        buf.drain(..end + 4 + length);
        let request = Request { head, body };
        app.busy.enter();
        app.seen.lock().unwrap().push(request.target().to_owned());
        let reply = match script {
            Some(script) => script(&request),
            None => named(name, app, &request),
        };
        app.heads.lock().unwrap().push(request.head);
        if reply.hold {
            let _ = app.release.acquire().await.map(|p| p.forget());
        }
        // Done before the answer leaves: the gateway may pass on the next
        // request as soon as it has read this one.
        app.busy.leave();
        hang_up = reply.hang_up_next;
        if stream.write_all(&reply.bytes).await.is_err() {
            app.closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if reply.stall {
            std::future::pending::<()>().await;
        }
        if !reply.then.is_empty() {
            tokio::time::sleep(reply.then_after).await;
            if stream.write_all(reply.then).await.is_ok()
                && let Some(peer) = &peer
            {
                peer.delivered().await;
            }
            app.late.fetch_add(1, Ordering::SeqCst);
        }
        if reply.close {
            return;
        }
    }
}

/// The named application's answer: where the request went, as JSON.
fn named(name: &'static str, app: &Record, request: &Request) -> Answer {
    let target = request.target();
    let body = json!({
        "app": name,
        "path": target,
        "body": String::from_utf8_lossy(&request.body),
        "host": request.header("host"),
    })
    .to_string();
    let status = if target == "/healthz" && app.sick.load(Ordering::SeqCst) {
        "503 Service Unavailable"
    } else {
        "200 OK"
    };
    Answer {
        hold: target.starts_with("/hold"),
        ..json_answer(status, &body)
    }
}

/// A TCP connection's two ends, to tell when what was written to it has
/// reached the peer.
pub(crate) struct Peer {
    local: String,
    remote: String,
}

impl Peer {
    pub(crate) fn of(stream: &tokio::net::TcpStream) -> Option<Peer> {
        let hex = |a: std::net::SocketAddr| match a.ip() {
            std::net::IpAddr::V4(ip) => Some(format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(ip.octets()),
                a.port()
            )),
            std::net::IpAddr::V6(_) => None,
        };
        Some(Peer {
            local: hex(stream.local_addr().ok()?)?,
            remote: hex(stream.peer_addr().ok()?)?,
        })
    }

    /// Wait (up to 5 s) until the peer's kernel has acknowledged everything
    /// written: the bytes are then in its receive queue, whatever its
    /// process has made of them yet. Read from the socket table
    /// (`/proc/net/tcp`: the send queue of this connection is empty).
    async fn delivered(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
            let queued = table.lines().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.get(1) == Some(&self.local.as_str()) && f.get(2) == Some(&self.remote.as_str()))
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
}
