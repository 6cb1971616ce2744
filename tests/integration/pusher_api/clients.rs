//! The official Pusher server libraries, unmodified, driven through the
//! small scripts in `tests/pusher/` (`api.js` for the Node `pusher`
//! package, `api.py` for the PyPI one in its venv): each step the test
//! gives prints one line of JSON, which comes back parsed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// An app's credentials, as the application configures its library.
pub struct Creds {
    pub id: &'static str,
    pub key: &'static str,
    pub secret: &'static str,
}

pub const APP: Creds = Creds {
    id: "1001",
    key: "app-key",
    secret: "app-secret",
};

/// The second app: `channel_prefix: "b:"`, `max_message: 100`.
pub const SMALL: Creds = Creds {
    id: "2002",
    key: "small-key",
    secret: "small-secret",
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pusher")
}

async fn run(mut cmd: tokio::process::Command, steps: usize) -> Vec<Value> {
    cmd.current_dir(dir()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the client script finishes within 60s")
        .expect("the client script starts (run scripts/test once to install the clients)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client script failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), steps, "one line per step: {stdout}");
    lines
}

/// Run `steps` with the Node library as app `app`, its clock moved by
/// `skew` seconds.
pub async fn node(admin: SocketAddr, app: &Creds, skew: i64, steps: Value) -> Vec<Value> {
    let n = steps.as_array().map_or(0, Vec::len);
    let config = json!({
        "host": admin.ip().to_string(), "port": admin.port(),
        "appId": app.id, "key": app.key, "secret": app.secret,
        "skew": skew, "steps": steps,
    });
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("api.js").arg(config.to_string());
    run(cmd, n).await
}

/// Run `steps` (library method names and arguments) with the Python library.
pub async fn python(admin: SocketAddr, app: &Creds, steps: Value) -> Vec<Value> {
    let n = steps.as_array().map_or(0, Vec::len);
    let config = json!({
        "host": admin.ip().to_string(), "port": admin.port(),
        "app_id": app.id, "key": app.key, "secret": app.secret, "steps": steps,
    });
    let mut cmd = tokio::process::Command::new(dir().join(".venv/bin/python"));
    cmd.arg("api.py").arg(config.to_string());
    run(cmd, n).await
}

/// A URL the Node library signed for `method path` with `body`.
pub async fn signed_url(
    admin: SocketAddr,
    app: &Creds,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let step = json!([{ "op": "sign", "method": method, "path": path, "body": body }]);
    let out = node(admin, app, 0, step).await;
    out[0]["url"].as_str().expect("a signed url").to_owned()
}
