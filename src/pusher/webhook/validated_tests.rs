//! A real gateway's webhooks checked by the official Node `pusher`
//! library's own validator (`pusher.webhook(req).isValid()`), in the
//! stand-in application `tests/pusher/app.js`. Events are put on the
//! gateway's `AppEvents` queue as a Pusher connection reports them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::pusher::AppEvent;
use crate::{Gateway, Handle, Listeners, bind};

/// The stand-in application and the JSON lines it prints.
struct StandIn {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl StandIn {
    async fn start(secret: &str, failures: u32) -> StandIn {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pusher");
        assert!(
            dir.join("node_modules/pusher").exists(),
            "tests/pusher/node_modules is missing: run scripts/test (or npm ci in tests/pusher)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("app.js"))
            .env("APP_ID", "1001")
            .env("APP_KEY", "app-key")
            .env("APP_SECRET", secret)
            .env("WEBHOOK_FAILURES", failures.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("piped");
        let mut standin = StandIn {
            _child: child,
            lines: BufReader::new(stdout).lines(),
            port: 0,
        };
        let first = standin.next().await;
        standin.port = first["listening"].as_u64().expect("a port") as u16;
        standin
    }

    /// The next record it printed, within a deadline.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(15), self.lines.next_line())
            .await
            .expect("the stand-in application printed in time")
            .expect("its output reads")
            .expect("it is still running");
        serde_json::from_str(&line).expect("one JSON record a line")
    }

    async fn next_webhook(&mut self) -> Value {
        loop {
            let record = self.next().await;
            if let Some(hook) = record.get("webhook") {
                return hook.clone();
            }
        }
    }
}

fn gateway(port: u16) -> Handle {
    let dir = std::env::temp_dir().join(format!("pushgate-webhook-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("gateway.yaml");
    let yaml = format!(
        r#"
listen: {{ public: "127.0.0.1:0", admin: "127.0.0.1:0" }}
backend: {{ url: "http://127.0.0.1:{port}", timeout: 5s }}
channels:
  - {{ pattern: "*", subscribe: anyone }}
pusher:
  apps:
    - id: "1001"
      key: app-key
      secret: app-secret
      webhook: {{ url: /pusher/webhook }}
"#
    );
    std::fs::write(&path, yaml).expect("config written");
    let config = crate::config::load(&path).expect("config loads");
    let listeners = Listeners {
        public: bind(([127, 0, 0, 1], 0).into()).expect("bind"),
        admin: bind(([127, 0, 0, 1], 0).into()).expect("bind"),
    };
    Gateway::start(config, listeners).expect("gateway starts")
}

/// Waits for `cond` (the gateway counts an answer after the application
/// printed it), up to a deadline.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn report(handle: &Handle, event: AppEvent) {
    handle.state().app_events.send(&"1001".into(), event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_validator_accepts_every_batch_and_a_500_is_retried() {
    let mut app = StandIn::start("app-secret", 1).await;
    let gw = gateway(app.port);
    report(
        &gw,
        AppEvent::ChannelOccupied {
            channel: "presence-room.1".into(),
        },
    );
    report(
        &gw,
        AppEvent::MemberAdded {
            channel: "presence-room.1".into(),
            user_id: "42".into(),
        },
    );
    report(
        &gw,
        AppEvent::ClientEvent {
            channel: "private-chat".into(),
            event: "client-typing".into(),
            data: serde_json::value::to_raw_value(&json!({"who": "é"})).expect("json"),
            socket_id: "123.456".into(),
            user_id: Some("42".into()),
        },
    );
    let first = app.next_webhook().await;
    assert_eq!(first["valid"], true, "{first}");
    assert_eq!(first["answered"], 500);
    let again = app.next_webhook().await;
    assert_eq!(again["valid"], true, "{again}");
    assert_eq!(again["events"], first["events"], "the same events again");
    assert_eq!(
        again["events"],
        json!([
            {"name": "channel_occupied", "channel": "presence-room.1"},
            {"name": "member_added", "channel": "presence-room.1", "user_id": "42"},
            {"name": "client_event", "channel": "private-chat", "event": "client-typing",
             "data": "{\"who\":\"é\"}", "socket_id": "123.456", "user_id": "42"},
        ])
    );
    let counters = &gw.state().metrics.pusher_webhook;
    until("the 2xx is counted", || counters.sent_of("1001") == 3).await;
    assert_eq!(counters.failed_of("1001"), 1);
    // A vacated channel is told after Pusher's hold, alone.
    report(
        &gw,
        AppEvent::ChannelVacated {
            channel: "presence-room.1".into(),
        },
    );
    let vacated = app.next_webhook().await;
    assert_eq!(vacated["valid"], true);
    assert_eq!(
        vacated["events"],
        json!([{"name": "channel_vacated", "channel": "presence-room.1"}])
    );
    gw.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_with_another_secret_is_refused_by_the_validator() {
    let mut app = StandIn::start("not-the-secret", 0).await;
    let gw = gateway(app.port);
    report(
        &gw,
        AppEvent::ChannelOccupied {
            channel: "public-news".into(),
        },
    );
    let hook = app.next_webhook().await;
    assert_eq!(hook["valid"], false);
    assert_eq!(hook["answered"], 401);
    let counters = &gw.state().metrics.pusher_webhook;
    until("the 401 is counted", || counters.failed_of("1001") == 1).await;
    assert_eq!(counters.sent_of("1001"), 0);
    gw.shutdown(Duration::from_secs(2)).await;
}
