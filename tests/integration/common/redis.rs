//! A real `redis-server` on a free loopback port, owned by one test.
//!
//! It writes an append-only file with `fsync always`, so a restart keeps
//! every acknowledged write, as a production Redis with persistence would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Start on a free port; panics with a clear message when the
    /// `redis-server` binary is missing (the test script installs it).
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: super::temp_dir("redis"),
            child: None,
        };
        server.launch().await;
        server
    }

    /// A port where no Redis runs yet (for start-without-Redis tests).
    pub fn reserve() -> RedisServer {
        RedisServer {
            port: free_port(),
            dir: super::temp_dir("redis"),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The YAML `broker:` section pointing at this server.
    pub fn broker_yaml(&self, prefix: &str) -> String {
        format!(
            "broker: {{ kind: redis, redis: {{ url: \"{}\", prefix: \"{prefix}\" }} }}\n",
            self.url()
        )
    }

    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install Debian's redis-server (scripts/test does)")
            });
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        for _ in 0..250 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not come up on {addr}");
    }

    /// Kill the server abruptly (SIGKILL): what a crash or a lost network looks like.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A command connection for assertions.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
