//! The one configurable stand-in application behind the gateway, on port 0
//! over plain TCP, TLS or a unix socket, counting its connections and
//! recording every request target it received. It answers in one of two
//! ways:
//!
//! - **HTTP** ([`TestApp::http`]): hyper parses each request and a handler
//!   answers it, as a real application framework does (an echo, a login
//!   application, a one-worker server, a site of test pages); upgrades
//!   (WebSocket) work.
//! - **Raw bytes** ([`TestApp::script`], [`TestApp::named`]): the
//!   application reads each head and its `Content-Length` body and writes
//!   exactly the bytes its script answers, so a test can play a broken
//!   application (a malformed head, a cut body, a close at the wrong
//!   moment); see [`raw`].
//!
//! Built as `TestApp::named("api").tls(config).start().await`,
//! `TestApp::script(|req| sized("hi")).start().await` or
//! `TestApp::http(handler).start().await`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

pub mod http;
pub mod raw;

// Not every test binary that shares this module uses each name.
#[allow(unused_imports)]
pub use http::{Body, BoxError, Context, body};
#[allow(unused_imports)]
pub use raw::{Answer, Request, answer, json_answer, path_of, sized};

/// Requests an application is working on: from its head read to the start
/// of its answer, as a worker of a real application is taken.
#[derive(Default)]
pub struct Busy {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Busy {
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most requests it worked on at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub(crate) fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How the application answers.
#[derive(Clone)]
enum Engine {
    /// Raw bytes: a script, or the named answer without one.
    Raw(Option<raw::Script>),
    /// hyper and a handler.
    Http(http::Handler),
    /// Accept, hold the connection, never read a byte.
    NeverReads,
}

enum Listen {
    Tcp,
    Tls(Arc<rustls::ServerConfig>),
    Unix(PathBuf),
}

/// How to build a [`TestApp`].
pub struct AppBuilder {
    name: &'static str,
    engine: Engine,
    listen: Listen,
    one_at_a_time: bool,
}

impl AppBuilder {
    /// Serve over TLS with `config`: the URL is `https://…`.
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> AppBuilder {
        self.listen = Listen::Tls(config);
        self
    }

    /// Serve on the unix socket `path`: the URL is `unix:{path}`.
    pub fn unix(mut self, path: impl Into<PathBuf>) -> AppBuilder {
        self.listen = Listen::Unix(path.into());
        self
    }

    /// One worker, as a gunicorn sync worker or a one-process PHP-FPM pool:
    /// accept a connection, serve its one request to the end, close it, and
    /// only then accept the next.
    pub fn one_at_a_time(mut self) -> AppBuilder {
        self.one_at_a_time = true;
        self
    }

    pub async fn start(self) -> TestApp {
        let shared = Shared {
            name: self.name,
            engine: self.engine,
            one_at_a_time: self.one_at_a_time,
            record: Record::default(),
        };
        let record = shared.record.clone();
        let (url, addr, task) = match self.listen {
            Listen::Tcp => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let task = tokio::spawn(accept_tcp(listener, None, shared));
                (format!("http://{addr}"), Some(addr), task)
            }
            Listen::Tls(config) => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let task = tokio::spawn(accept_tcp(listener, Some(acceptor), shared));
                (format!("https://{addr}"), Some(addr), task)
            }
            Listen::Unix(path) => {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                let task = tokio::spawn(accept_unix(listener, shared));
                (format!("unix:{}", path.display()), None, task)
            }
        };
        TestApp {
            url,
            addr,
            heads: record.heads,
            seen: record.seen,
            connections: record.connections,
            finished: record.finished,
            closed: record.closed,
            hung_up: record.hung_up,
            late: record.late,
            release: record.release,
            sick: record.sick,
            busy: record.busy,
            task,
        }
    }
}

/// What the application has received and done, shared with its
/// connections.
#[derive(Clone)]
pub(crate) struct Record {
    pub(crate) heads: Arc<Mutex<Vec<String>>>,
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) finished: Arc<AtomicUsize>,
    pub(crate) closed: Arc<AtomicUsize>,
    pub(crate) hung_up: Arc<AtomicUsize>,
    pub(crate) late: Arc<AtomicUsize>,
    pub(crate) release: Arc<Semaphore>,
    pub(crate) sick: Arc<AtomicBool>,
    pub(crate) busy: Arc<Busy>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            heads: Arc::default(),
            seen: Arc::default(),
            connections: Arc::default(),
            finished: Arc::default(),
            closed: Arc::default(),
            hung_up: Arc::default(),
            late: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
            sick: Arc::default(),
            busy: Arc::default(),
        }
    }
}

/// A running stand-in application and what it has received.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, `https://…` or `unix:/path`.
    pub url: String,
    addr: Option<SocketAddr>,
    /// Every request head received, in order (raw mode).
    pub heads: Arc<Mutex<Vec<String>>>,
    /// Every request target received, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Connections accepted (before any TLS handshake).
    pub connections: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    /// Connections the gateway has closed (or reset while the application
    /// was writing to them; raw mode).
    pub closed: Arc<AtomicUsize>,
    /// Requests whose connection the application closed unanswered
    /// ([`Answer::hang_up_next`]).
    pub hung_up: Arc<AtomicUsize>,
    /// [`Answer::then`] writes done: delivered to the gateway's socket,
    /// unless the gateway had closed the connection.
    pub late: Arc<AtomicUsize>,
    /// Held answers ([`Answer::hold`], `/hold…`, a handler's wait) wait for
    /// a permit here.
    pub release: Arc<Semaphore>,
    /// While set, the named application's `/healthz` answers 503.
    pub sick: Arc<AtomicBool>,
    /// Requests it is working on now, and the most at once (raw mode).
    pub busy: Arc<Busy>,
    task: tokio::task::JoinHandle<()>,
}

impl TestApp {
    fn builder(name: &'static str, engine: Engine) -> AppBuilder {
        AppBuilder {
            name,
            engine,
            listen: Listen::Tcp,
            one_at_a_time: false,
        }
    }

    /// An application answering every request as JSON with `name`, the
    /// target, body and `Host` it received; `/hold…` waits for a
    /// [`release`](Self::release) permit and `/healthz` answers 503 while
    /// [`sick`](Self::sick) is set.
    pub fn named(name: &'static str) -> AppBuilder {
        Self::builder(name, Engine::Raw(None))
    }

    /// An application answering each request with the bytes of
    /// `script(request)`.
    pub fn script(script: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> AppBuilder {
        Self::builder("scripted", Engine::Raw(Some(Arc::new(script))))
    }

    /// An application whose requests hyper parses and `handler` answers;
    /// the handler is given the application's [`Record`]-backed
    /// [`http::Context`] (its `release` semaphore).
    pub fn http<F, Fut, B>(handler: F) -> AppBuilder
    where
        F: Fn(http::Context, hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = hyper::Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self::builder("http", Engine::Http(http::handler(handler)))
    }

    /// An application that accepts connections and never reads a byte
    /// from them: what it is sent fills the socket buffers and stops.
    pub fn never_reads() -> AppBuilder {
        Self::builder("never-reads", Engine::NeverReads)
    }

    /// The TCP address it listens on (none on a unix socket).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a TCP application")
    }

    /// Connections it has finished with (answered and closed, or closed by
    /// the gateway).
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    /// Whether a request for exactly `target` has arrived.
    pub fn has_seen(&self, target: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|t| t == target)
    }

    /// Stop at once: the listener and every connection closed, as when the
    /// application's process dies.
    pub async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

#[derive(Clone)]
struct Shared {
    name: &'static str,
    engine: Engine,
    one_at_a_time: bool,
    record: Record,
}

/// Answer the requests of one connection (a TCP, TLS or unix stream).
async fn serve<S>(stream: S, peer: Option<raw::Peer>, app: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &app.engine {
        Engine::Raw(script) => {
            raw::serve(stream, peer, app.name, script.as_ref(), &app.record).await
        }
        Engine::Http(handler) => {
            http::serve(stream, handler, !app.one_at_a_time, &app.record).await
        }
        Engine::NeverReads => {
            let _held = stream;
            std::future::pending::<()>().await;
        }
    }
    app.record.finished.fetch_add(1, Ordering::SeqCst);
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Shared,
) {
    // Dropped with this task: every connection ends with it (`kill`).
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        app.record.connections.fetch_add(1, Ordering::SeqCst);
        let (tls, app) = (tls.clone(), app.clone());
        let one_at_a_time = app.one_at_a_time;
        let conn = async move {
            match tls {
                None => {
                    let peer = raw::Peer::of(&stream);
                    serve(stream, peer, app).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, None, app).await;
                    }
                }
            }
        };
        if one_at_a_time {
            conn.await;
        } else {
            conns.spawn(conn);
        }
    }
}

async fn accept_unix(listener: tokio::net::UnixListener, app: Shared) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        app.record.connections.fetch_add(1, Ordering::SeqCst);
        let one_at_a_time = app.one_at_a_time;
        let conn = serve(stream, None, app.clone());
        if one_at_a_time {
            conn.await;
        } else {
            conns.spawn(conn);
        }
    }
}
