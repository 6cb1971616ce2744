//! A server's idle connections: its one pool, shared by every client
//! connection and by both engines (the HTTP/1 relay, `relay.rs`, and
//! hyper's, `exchange.rs`), so a server sees one set of keep-alive
//! connections from the gateway whichever engine carried a request. A
//! request takes one and gives it back once its answer has been read to the
//! end, the backend did not ask to close, and the answer was one whose end
//! the backend cannot misjudge (`relay/answer.rs`, `reuse.rs`). Bytes that
//! reach an idle connection disqualify it when it is next taken
//! ([`BackendPool::take`]).
//!
//! Newest first: the connection used last is the one least likely to have
//! been closed by the backend's own keep-alive timeout. A connection that was
//! closed anyway is noticed by the engine, which retries once on a new one.
//!
//! Each serving loop (`loops.rs`) keeps idle connections of its own: a
//! socket is registered with the reactor of the loop that opened it, and a
//! task on another loop would wait on that loop's turns for its answer. A
//! connection is given back by the exchange that took or opened it, which
//! runs on one loop from start to end (its tasks are spawned where it
//! runs), so each loop's set holds only its own; the main runtime (health
//! checks, and any caller off the loops) has a set of its own.

use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpStream;

use super::backend_conn::{BackendConn, ServerTls};

/// At most this many idle connections are kept per server and loop.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed rather than reused.
const KEEP_FOR: Duration = Duration::from_secs(60);

pub struct BackendPool {
    /// `host:port` of the backend.
    authority: String,
    connect_timeout: Duration,
    /// For an `https://` server: TLS over each connection.
    tls: Option<ServerTls>,
    /// For a `unix:` server: its socket (`authority` is a made-up name).
    unix: Option<std::path::PathBuf>,
    /// How TCP connections are made (`connect_tcp`).
    tcp: HttpConnector,
    /// Per loop (index 0: off the loops, then `loops::current()`), oldest
    /// at the front, newest at the back.
    idle: Box<[Mutex<Idle>]>,
}

type Idle = VecDeque<(BackendConn, Instant)>;

impl BackendPool {
    pub fn new(authority: String, connect_timeout: Duration) -> BackendPool {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        // TCP keep-alive finds servers that vanished.
        tcp.set_keepalive(Some(KEEP_FOR));
        BackendPool {
            tcp,
            authority,
            connect_timeout,
            tls: None,
            unix: None,
            idle: (0..=crate::loops::count())
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    /// Connections of this pool speak TLS to the server.
    pub fn with_tls(mut self, tls: ServerTls) -> BackendPool {
        self.tls = Some(tls);
        self
    }

    /// Connections of this pool go to a unix socket.
    pub fn with_unix(mut self, path: std::path::PathBuf) -> BackendPool {
        self.unix = Some(path);
        self
    }

    /// Idle connections kept now, on every loop.
    pub fn idle_count(&self) -> usize {
        self.idle.iter().map(|idle| idle.lock().len()).sum()
    }

    /// This thread's idle connections.
    fn idle_here(&self) -> MutexGuard<'_, Idle> {
        self.idle_at(self.here())
    }

    fn here(&self) -> usize {
        crate::loops::current().min(self.idle.len() - 1)
    }

    fn idle_at(&self, slot: usize) -> MutexGuard<'_, Idle> {
        self.idle[slot].lock()
    }

    /// The most recently returned idle connection of this loop that is
    /// still young and still quiet; failing that, one another loop left
    /// idle, moved to this loop's reactor (two `epoll_ctl` calls instead of
    /// a new connection's handshake: a quiet gateway, or a loop busier than
    /// the others, still reuses what the server has open). TLS connections
    /// stay on their loop: rustls's stream cannot be taken apart and put
    /// together again.
    pub fn take(&self) -> Option<BackendConn> {
        let here = self.here();
        if let Some(stream) = self.take_from(here) {
            return Some(stream);
        }
        if self.tls.is_some() {
            return None;
        }
        (0..self.idle.len())
            .filter(|&slot| slot != here)
            .find_map(|slot| self.take_from(slot)?.moved_here().ok())
    }

    /// The newest idle connection of `slot`, young and quiet.
    fn take_from(&self, slot: usize) -> Option<BackendConn> {
        loop {
            let mut stream = {
                let mut idle = self.idle_at(slot);
                let (stream, since) = idle.pop_back()?;
                if since.elapsed() >= KEEP_FOR {
                    // The newest is too old: all the others are older still.
                    idle.clear();
                    return None;
                }
                stream
            };
            // An idle connection has nothing to say. Bytes its last answer
            // did not account for (a body sent after a HEAD answer, a short
            // Content-Length) would be read as the next client's answer; a
            // close or an error makes it useless. Either way it goes.
            //
            // Asked of the socket itself (`recv` with `MSG_PEEK` on the
            // non-blocking socket), not through `try_read`: tokio answers
            // that from its readiness flag, which a short read cleared, so
            // bytes that arrived since would go unseen until its event loop
            // next ran (and, for TLS, of what rustls holds: `backend_conn.rs`).
            if stream.is_quiet() {
                return Some(stream);
            }
        }
    }

    /// Keep `stream` for the next request, unless enough are kept already.
    /// Connections idle for too long are let go on the way.
    pub fn give(&self, stream: BackendConn) {
        let mut idle = self.idle_here();
        while idle
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= KEEP_FOR)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back((stream, Instant::now()));
        }
    }

    /// A new connection, within `backend.connect_timeout` (the TLS
    /// handshake within another). A certificate that
    /// does not verify is an error like a refused connect: no server was
    /// reached.
    pub async fn connect(&self) -> io::Result<BackendConn> {
        if let Some(path) = &self.unix {
            return self.connect_unix(path).await;
        }
        let tcp = self.connect_tcp().await?;
        let Some(tls) = &self.tls else {
            return Ok(BackendConn::Tcp(tcp));
        };
        let handshake =
            tokio_rustls::TlsConnector::from(tls.config.clone()).connect(tls.name.clone(), tcp);
        match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(stream)) => Ok(BackendConn::Tls(Box::new(stream))),
            Ok(Err(reason)) => Err(io::Error::other(format!(
                "TLS handshake with {} failed: {reason}",
                tls.shown
            ))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake with {} timed out", tls.shown),
            )),
        }
    }

    #[cfg(unix)]
    async fn connect_unix(&self, path: &std::path::Path) -> io::Result<BackendConn> {
        let shown = path.display();
        match tokio::time::timeout(self.connect_timeout, tokio::net::UnixStream::connect(path))
            .await
        {
            Ok(Ok(stream)) => Ok(BackendConn::Unix(stream)),
            Ok(Err(reason)) => Err(io::Error::new(
                reason.kind(),
                format!("cannot connect to unix socket {shown}: {reason}"),
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to unix socket {shown} timed out"),
            )),
        }
    }

    #[cfg(not(unix))]
    async fn connect_unix(&self, path: &std::path::Path) -> io::Result<BackendConn> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no unix sockets here: {}", path.display()),
        ))
    }

    /// TCP to the server: each address its name resolves to, the next
    /// one tried 300 ms after the last without waiting for it to fail
    /// (hyper-util's connector: a first address that drops packets does
    /// not cost the whole `connect_timeout`), within `connect_timeout`.
    async fn connect_tcp(&self) -> io::Result<TcpStream> {
        let uri = http::Uri::try_from(format!("http://{}/", self.authority))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut connector = self.tcp.clone();
        let stream = tower_service::Service::call(&mut connector, uri)
            .await
            .map_err(|e| {
                io::Error::other(format!(
                    "connect to {}: {}",
                    self.authority,
                    super::reason(&e)
                ))
            })?;
        Ok(stream.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A pooled connection and the backend's end of it, as plain sockets.
    async fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours).unwrap(), backend)
    }

    #[tokio::test]
    async fn a_quiet_connection_is_reused() {
        let pool = BackendPool::new("127.0.0.1:9".into(), Duration::from_secs(1));
        let (ours, _backend) = pair().await;
        pool.give(BackendConn::Tcp(ours));
        assert!(pool.take().is_some());
        assert!(pool.take().is_none());
    }

    #[tokio::test]
    async fn bytes_the_runtime_has_not_seen_yet_still_disqualify_a_connection() {
        let pool = BackendPool::new("127.0.0.1:9".into(), Duration::from_secs(1));
        let (mut ours, mut backend) = pair().await;
        // A short read (the end of an answer) makes tokio forget the
        // socket's readiness until its event loop next polls it.
        backend.write_all(b"end").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(ours.read(&mut buf).await.unwrap(), 3);
        // Stray bytes arrive; the runtime does not turn in between (this
        // test's runtime has one thread, and nothing here awaits). The
        // blocking pause gives the kernel time to queue them, nothing else.
        backend.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        pool.give(BackendConn::Tcp(ours));
        assert!(
            pool.take().is_none(),
            "a connection with unread bytes was reused"
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_reused() {
        let pool = BackendPool::new("127.0.0.1:9".into(), Duration::from_secs(1));
        let (ours, backend) = pair().await;
        drop(backend);
        std::thread::sleep(Duration::from_millis(20));
        pool.give(BackendConn::Tcp(ours));
        assert!(pool.take().is_none());
    }
}
