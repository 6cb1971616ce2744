//! Idle connections to the backend for the HTTP/1 relay (`relay.rs`), shared
//! by every client connection: a request takes one and gives it back once
//! its answer has been read to the end and the backend did not ask to close.
//!
//! Newest first: the connection used last is the one least likely to have
//! been closed by the backend's own keep-alive timeout. A connection that was
//! closed anyway is noticed by the relay, which retries once on a new one.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// At most this many idle connections are kept (like the client pool's
/// `pool_max_idle_per_host`).
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed rather than reused.
const KEEP_FOR: Duration = Duration::from_secs(60);

pub struct BackendPool {
    /// `host:port` of the backend.
    authority: String,
    connect_timeout: Duration,
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

impl BackendPool {
    pub fn new(authority: String, connect_timeout: Duration) -> BackendPool {
        BackendPool {
            authority,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently returned idle connection still young enough.
    pub fn take(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (stream, since) = idle.pop()?;
        if since.elapsed() < KEEP_FOR {
            return Some(stream);
        }
        // This one was the newest: all below it are older still.
        idle.clear();
        None
    }

    /// Keep `stream` for the next request, unless enough are kept already.
    pub fn give(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((stream, Instant::now()));
        }
    }

    /// A new connection, within `backend.connect_timeout`.
    pub async fn connect(&self) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.authority.as_str()),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
