//! Node and Python children of a test: the stand-in application
//! `tests/pusher/app.js` and the client scripts beside it. Each prints one
//! JSON record a line (the application `{"listening":…}` first, then
//! `{"auth":…}` and `{"webhook":…}` per request), which a test reads with a
//! deadline; a child is killed when its handle is dropped. And a gateway in
//! front of the application. (The browser tests use this file too.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::common::{TestGateway, temp_dir};

/// Where the Pusher test clients live (installed by `scripts/test`).
pub fn pusher_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher");
    assert!(
        dir.join("node_modules/pusher").exists() && dir.join("node_modules/pusher-js").exists(),
        "tests/pusher/node_modules is missing: run scripts/test (or npm ci in tests/pusher)"
    );
    dir
}

/// A running child and the JSON lines it prints.
pub struct Script {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Script {
    pub fn spawn(mut cmd: Command) -> Script {
        let mut child = cmd
            .current_dir(pusher_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the script starts");
        let stdout = child.stdout.take().expect("piped");
        Script {
            _child: child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next record, within a deadline.
    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(25), self.lines.next_line())
            .await
            .expect("the script printed in time")
            .expect("its output reads")
            .expect("it is still running");
        let record: Value = serde_json::from_str(&line).expect("one JSON record a line");
        assert!(
            record.get("failed").is_none(),
            "the script failed: {record}"
        );
        record
    }

    /// The next record of `kind` (`auth`, `webhook`, `ready`…), skipping
    /// others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            if let Some(record) = self.next().await.get(kind) {
                return record.clone();
            }
        }
    }
}

/// The stand-in application.
pub struct StandIn {
    out: Script,
    port: u16,
}

impl StandIn {
    /// The application, answering its first `webhook_failures` webhooks 500.
    pub async fn start(webhook_failures: u32) -> StandIn {
        StandIn::with_secret(APP_SECRET, webhook_failures).await
    }

    /// The application, knowing the app by another `secret`.
    pub async fn with_secret(secret: &str, webhook_failures: u32) -> StandIn {
        let mut cmd = Command::new("node");
        cmd.arg("app.js")
            .env("APP_ID", APP_ID)
            .env("APP_KEY", APP_KEY)
            .env("APP_SECRET", secret)
            .env("WEBHOOK_FAILURES", webhook_failures.to_string());
        let mut out = Script::spawn(cmd);
        let port = out.next_of("listening").await.as_u64().expect("its port") as u16;
        StandIn { out, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn next_of(&mut self, kind: &str) -> Value {
        self.out.next_of(kind).await
    }
}

/// Triggers `event` on `channels` with the official Python library through
/// the gateway's HTTP API (`api.py`); what the library returned.
pub async fn python_trigger(
    admin: std::net::SocketAddr,
    channels: &[&str],
    event: &str,
    data: Value,
) -> Value {
    let config = json!({
        "host": admin.ip().to_string(), "port": admin.port(),
        "app_id": APP_ID, "key": APP_KEY, "secret": APP_SECRET,
        "steps": [{"op": "trigger", "args": [channels, event, data]}],
    });
    let mut cmd = Command::new(pusher_dir().join(".venv/bin/python"));
    cmd.arg("api.py").arg(config.to_string());
    let mut out = Script::spawn(cmd);
    let answer = out.next().await;
    assert!(
        answer.get("error").is_none(),
        "the trigger raised: {answer}"
    );
    answer
}

/// The app every test uses, as the stand-in application knows it.
pub const APP_ID: &str = "1001";
pub const APP_KEY: &str = "app-key";
pub const APP_SECRET: &str = "app-secret";

/// A gateway (TLS, memory broker) in front of `app`, with one Pusher app;
/// `app_keys` is more keys of that app (`, webhook: {…}`), `extra` more
/// top-level YAML.
pub async fn gateway(app: &StandIn, app_keys: &str, extra: &str) -> TestGateway {
    gateway_in(temp_dir("pusher"), app, app_keys, extra).await
}

/// [`gateway`] with its files in `dir` (a certificate already there is
/// used, so several gateways can share one).
pub async fn gateway_in(
    dir: std::path::PathBuf,
    app: &StandIn,
    app_keys: &str,
    extra: &str,
) -> TestGateway {
    let text = format!(
        r#"
listen: {{ public: "127.0.0.1:0", admin: "127.0.0.1:0" }}
tls:
  cert: {dir}/gw.crt
  key: {dir}/gw.key
  self_signed_if_missing: true
backend: {{ url: "http://127.0.0.1:{port}", connect_timeout: 500ms, timeout: 5s }}
realtime:
  path: /realtime
  allowed_origins: ["*"]
  presence_grace: 1s
channels:
  - {{ pattern: "*", subscribe: anyone }}
pusher:
  apps:
    - {{ id: "{APP_ID}", key: {APP_KEY}, secret: {APP_SECRET}, client_events: true{app_keys} }}
{extra}
"#,
        dir = dir.display(),
        port = app.port(),
    );
    TestGateway::start_yaml(&text, dir).await
}
