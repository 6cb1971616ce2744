//! Idle connections to the backend for the HTTP/1 relay (`relay.rs`), shared
//! by every client connection: a request takes one and gives it back once
//! its answer has been read to the end and the backend did not ask to close.
//!
//! Newest first: the connection used last is the one least likely to have
//! been closed by the backend's own keep-alive timeout. A connection that was
//! closed anyway is noticed by the relay, which retries once on a new one.

use std::collections::VecDeque;
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
    /// Oldest at the front, newest at the back.
    idle: Mutex<VecDeque<(TcpStream, Instant)>>,
}

impl BackendPool {
    pub fn new(authority: String, connect_timeout: Duration) -> BackendPool {
        BackendPool {
            authority,
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// The most recently returned idle connection that is still young and
    /// still quiet.
    pub fn take(&self) -> Option<TcpStream> {
        loop {
            let stream = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
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
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
    }

    /// Keep `stream` for the next request, unless enough are kept already.
    /// Connections idle for too long are let go on the way.
    pub fn give(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
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

    /// A new connection, within `backend.connect_timeout`. TCP keep-alive
    /// (as the hyper path's connector sets it) finds backends that vanished.
    pub async fn connect(&self) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.authority.as_str()),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        socket2::SockRef::from(&stream)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(KEEP_FOR))?;
        Ok(stream)
    }
}
