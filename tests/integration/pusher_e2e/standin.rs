//! The stand-in application `tests/pusher/app.js` as a child process: it
//! prints one JSON record a line (`{"listening":…}`, then `{"auth":…}` and
//! `{"webhook":…}` per request), which a test reads with a deadline.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::{APP_ID, APP_KEY, APP_SECRET};

/// Where the Pusher test clients live (installed by `scripts/test`).
pub fn pusher_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher");
    assert!(
        dir.join("node_modules/pusher").exists() && dir.join("node_modules/pusher-js").exists(),
        "tests/pusher/node_modules is missing: run scripts/test (or npm ci in tests/pusher)"
    );
    dir
}

pub struct StandIn {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl StandIn {
    /// The application, answering its first `webhook_failures` webhooks 500.
    pub async fn start(webhook_failures: u32) -> StandIn {
        let mut child = Command::new("node")
            .arg(pusher_dir().join("app.js"))
            .env("APP_ID", APP_ID)
            .env("APP_KEY", APP_KEY)
            .env("APP_SECRET", APP_SECRET)
            .env("WEBHOOK_FAILURES", webhook_failures.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("piped");
        let mut app = StandIn {
            _child: child,
            lines: BufReader::new(stdout).lines(),
            port: 0,
        };
        let first = app.next().await;
        app.port = first["listening"].as_u64().expect("its port") as u16;
        app
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next record, within a deadline.
    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(15), self.lines.next_line())
            .await
            .expect("the stand-in application printed in time")
            .expect("its output reads")
            .expect("it is still running");
        serde_json::from_str(&line).expect("one JSON record a line")
    }

    /// The next record of `kind` (`auth`, `webhook`), skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            if let Some(record) = self.next().await.get(kind) {
                return record.clone();
            }
        }
    }
}
