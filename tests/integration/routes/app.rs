//! The stand-in applications behind routed requests: real HTTP/1.1 servers
//! on port 0, each answering every request with its own name, the target it
//! received and the `Host` it saw, so a test can tell where a request went
//! and with which path.
//!
//! Which engine carried a request is not for the application to tell (both
//! write the same head); tests read it off the gateway's relay counter
//! (`TestGateway::engine_since`). Clients send `X-Route-Probe` so that a
//! request that carries it can be told apart.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub(crate) const PROBE: &str = "X-Route-Probe";

pub(crate) struct App {
    pub(crate) url: String,
    /// Connections the gateway has opened to it.
    pub(crate) connections: Arc<AtomicUsize>,
    /// Every target it received.
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
    /// Requests for `/hold…` wait for a permit here before they are answered.
    pub(crate) release: Arc<Semaphore>,
    /// While set, `/healthz` answers 503.
    pub(crate) sick: Arc<AtomicBool>,
    /// Requests it is working on now, and the most at once.
    pub(crate) busy: Arc<Busy>,
}

/// Requests an app is working on: from its head read to the start of its
/// answer, as a worker of a real application is taken.
#[derive(Default)]
pub(crate) struct Busy {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Busy {
    pub(crate) fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most requests it worked on at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl App {
    pub(crate) fn has_seen(&self, target: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|t| t == target)
    }
}

/// An app that [`Kill`] stops at once: its listener and every connection
/// it has, closed, as when its process dies.
pub(crate) async fn killable(name: &'static str) -> (App, Kill) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = App {
        url,
        connections: Arc::default(),
        seen: Arc::default(),
        release: Arc::new(Semaphore::new(0)),
        sick: Arc::default(),
        busy: Arc::default(),
    };
    let (c, s, r, k, b) = (
        app.connections.clone(),
        app.seen.clone(),
        app.release.clone(),
        app.sick.clone(),
        app.busy.clone(),
    );
    let task = tokio::spawn(async move {
        // Dropped with this task: every connection ends with it.
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            conns.spawn(serve(
                name,
                stream,
                s.clone(),
                r.clone(),
                k.clone(),
                b.clone(),
            ));
        }
    });
    (app, Kill(task))
}

pub(crate) struct Kill(tokio::task::JoinHandle<()>);

impl Kill {
    pub(crate) async fn now(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

pub(crate) async fn app(name: &'static str) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(Semaphore::new(0));
    let sick = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(Busy::default());
    let (c, s, r, k, b) = (
        connections.clone(),
        seen.clone(),
        release.clone(),
        sick.clone(),
        busy.clone(),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(
                name,
                stream,
                s.clone(),
                r.clone(),
                k.clone(),
                b.clone(),
            ));
        }
    });
    App {
        url,
        connections,
        seen,
        release,
        sick,
        busy,
    }
}

/// Answer the requests on one connection (a TCP, TLS or unix stream).
pub(crate) async fn serve<S>(
    name: &'static str,
    mut stream: S,
    seen: Arc<Mutex<Vec<String>>>,
    release: Arc<Semaphore>,
    sick: Arc<AtomicBool>,
    busy: Arc<Busy>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
        buf.drain(..end + 4 + length);
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        busy.enter();
        seen.lock().unwrap().push(target.clone());
        if target.starts_with("/hold") {
            let _ = release.acquire().await.map(|p| p.forget());
        }
        let host = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim().to_owned());
        let answer = json!({ "app": name, "path": target, "body": body, "host": host }).to_string();
        let status = if target == "/healthz" && sick.load(Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        // Done before the answer leaves: the gateway may pass on the next
        // request as soon as it has read this one.
        busy.leave();
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Where an answer says the request went: (app, path it received, engine
/// as the test filled it in from the relay counter).
pub(crate) fn went(v: &Value) -> (String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
    (s("app"), s("path"), s("engine"))
}
