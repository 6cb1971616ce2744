//! The Pusher WebSocket endpoint (`/app/{key}`, protocol 7) with the real
//! clients: pusher-js under Node (over `ws`, unmodified) with the node
//! `pusher` library signing subscriptions (`tests/pusher/ws_scenarios.js`),
//! over TLS and plain; raw frames for the activity check and bad input.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;

mod hooks;
mod limits;
mod raw;
pub(crate) mod users;

pub(crate) const KEY: &str = "app-key";
pub(crate) const SECRET: &str = "app-secret";
/// `realtime.presence_grace` of [`config`]: a leave is announced this long
/// after the last connection of a member goes.
pub(crate) const PRESENCE_GRACE_MS: u64 = 100;

/// The `pusher:` section and the rules the scenarios' channels fall under:
/// `private-*` asks a pushgate token, which the app's signature stands in for.
pub(crate) fn config(dir: &std::path::Path, tls: bool) -> String {
    let pusher = format!(
        "pusher:\n  activity_timeout: 1s\n  pong_timeout: 500ms\n  reconnect_spread: 200ms\n  apps:\n    - {{ id: \"1001\", key: {KEY}, secret: {SECRET}, client_events: true, max_message: 1KiB }}\n"
    );
    let text = yaml(
        dir,
        "http://127.0.0.1:9",
        &format!("  presence_grace: {PRESENCE_GRACE_MS}ms"),
        &pusher,
    ).replace(
        "channels:\n",
        "channels:\n  - { pattern: \"news-*\", subscribe: anyone }\n  - { pattern: \"private-*\", subscribe: token }\n  - { pattern: \"presence-*\", subscribe: anyone }\n",
    );
    if tls {
        return text;
    }
    let start = text.find("tls:\n").unwrap();
    let end = text.find("backend:").unwrap();
    format!("{}{}", &text[..start], &text[end..])
}

pub(crate) async fn gateway() -> TestGateway {
    let dir = temp_dir("pusher-ws");
    TestGateway::start_yaml(&config(&dir, true), dir).await
}

/// A gateway without TLS (`TestGateway` always has it): its handle and
/// addresses.
async fn plain_gateway() -> pushgate::Handle {
    let dir = temp_dir("pusher-ws-plain");
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, config(&dir, false)).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    pushgate::Gateway::start(config, listeners).unwrap()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pusher/ws_scenarios.js")
}

/// Run a scenario of `ws_scenarios.js`; its one JSON line.
async fn scenario(
    name: &str,
    port: u16,
    admin: std::net::SocketAddr,
    tls: Option<&PathBuf>,
) -> Value {
    let settings = json!({
        "host": if tls.is_some() { "localhost" } else { "127.0.0.1" },
        "port": port, "tls": tls.is_some(), "key": KEY, "secret": SECRET,
        "appId": "1001", "admin": admin.to_string(), "presenceGraceMs": PRESENCE_GRACE_MS,
    });
    let mut cmd = std::process::Command::new("node");
    cmd.arg(script()).arg(name).arg(settings.to_string());
    if let Some(cert) = tls {
        cmd.env("NODE_EXTRA_CA_CERTS", cert);
    }
    // The script gives up by itself after 15 s.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("{name}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{name}: {v}");
    v
}

async fn tls_scenario(gw: &TestGateway, name: &str) -> Value {
    let cert = gw.dir.join("gw.crt");
    scenario(name, gw.public.port(), gw.admin, Some(&cert)).await
}

fn is_socket_id(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
    })
}

#[tokio::test]
async fn pusher_js_receives_a_pushgate_publish_over_tls_and_plain() {
    let gw = gateway().await;
    let v = tls_scenario(&gw, "public").await;
    assert_eq!(v["data"], json!({"x": 1}), "{v}");
    assert!(is_socket_id(v["socket_id"].as_str().unwrap()), "{v}");

    let plain = plain_gateway().await;
    let v = scenario(
        "public",
        plain.public_addr().port(),
        plain.admin_addr(),
        None,
    )
    .await;
    assert_eq!(v["data"], json!({"x": 1}), "{v}");
}

/// Laravel apps serve pages under `/app/…` too: only a WebSocket upgrade
/// to `{pusher.path}/{key}` is a Pusher socket; the rest reaches the app,
/// whichever engine carries it (a GET goes by the relay, a POST with a
/// body by hyper).
#[tokio::test]
async fn the_applications_own_pages_under_the_pusher_path_reach_it() {
    let backend = backend::start().await;
    let dir = temp_dir("pusher-ws-pages");
    let text = config(&dir, true).replace("http://127.0.0.1:9", &format!("http://{backend}"));
    let gw = TestGateway::start_yaml(&text, dir).await;
    for (method, path) in [
        ("GET", "/app/dashboard"),
        ("POST", "/app/app-key"),
        ("GET", "/app/app-key"),
    ] {
        let r = gw
            .http
            .request(method.parse().unwrap(), gw.url(path))
            .body(if method == "POST" { "form=1" } else { "" })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method} {path}");
        assert_eq!(r.headers()["x-backend"], "yes", "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["method"].as_str(), v["uri"].as_str()),
            (Some(method), Some(path))
        );
    }
    // The upgrade is still a Pusher socket (`raw` asserts its greeting).
    let (_ws, socket_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    assert!(is_socket_id(&socket_id));
}

#[tokio::test]
async fn an_api_trigger_with_a_socket_id_leaves_that_socket_out() {
    let gw = gateway().await;
    let v = tls_scenario(&gw, "excluded").await;
    assert_eq!(v["a"], json!(["all"]), "the named socket is left out: {v}");
    assert_eq!(
        v["b"],
        json!(["skip", "all"]),
        "every other socket gets both: {v}"
    );
}

#[tokio::test]
async fn private_channels_need_the_apps_signature() {
    let gw = gateway().await;
    let v = tls_scenario(&gw, "private").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["refused"]["status"], 401, "{v}");
    assert_eq!(v["state"], "connected", "the socket stays open: {v}");
}

#[tokio::test]
async fn presence_counts_users_not_connections() {
    let gw = gateway().await;
    let v = tls_scenario(&gw, "presence").await;
    let log = v["log"].as_array().unwrap();
    let added: Vec<_> = log.iter().filter(|e| e[0] == "added").collect();
    assert_eq!(added.len(), 1, "one member_added for two tabs: {v}");
    assert_eq!(added[0][1], "u1");
    assert_eq!(
        added[0][2],
        json!({"name": "user u1"}),
        "with its user_info: {v}"
    );
    assert!(log.contains(&json!(["tab1 sees", 2])), "{v}");
    assert!(
        log.contains(&json!(["tab2 sees", 2, 2])),
        "two members, not three: {v}"
    );
    let removed = log.iter().position(|e| e[0] == "removed").unwrap();
    let second_left = log.iter().position(|e| e[0] == "tab2 leaves").unwrap();
    assert!(
        removed > second_left,
        "removed only when the last tab left: {v}"
    );
    assert_eq!(log[removed][1], "u1");
    assert_eq!(v["count"], 1);
}

#[tokio::test]
async fn client_events_reach_others_never_the_sender_and_are_rate_limited() {
    let gw = gateway().await;
    let v = tls_scenario(&gw, "client_events").await;
    let expected: Vec<Value> = (1..=10).map(|n| json!(n)).collect();
    assert_eq!(v["b"], json!(expected), "ten delivered in order: {v}");
    assert_eq!(v["a"], json!([]), "never echoed: {v}");
    assert_eq!(v["errors"], json!([4301]), "the 11th refused: {v}");
    assert_eq!(v["state"], "connected", "{v}");
}

#[tokio::test]
async fn an_unknown_key_is_closed_4001_and_not_retried() {
    let gw = gateway().await;
    let v = tls_scenario(&gw, "unknown_key").await;
    assert!(
        v["errors"].as_array().unwrap().contains(&json!(4001)),
        "{v}"
    );
    let connecting = v["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| *s == "connecting")
        .count();
    // The first `connecting` came before the scenario listened.
    assert_eq!(connecting, 0, "pusher-js does not come back: {v}");
    assert!(
        v["states"]
            .as_array()
            .unwrap()
            .contains(&json!("disconnected")),
        "{v}"
    );
}

pub(crate) async fn raw(gw: &TestGateway, path: &str) -> (Ws, String) {
    let mut ws = gw.try_ws_with(path, None).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["activity_timeout"], 1);
    let id = data["socket_id"].as_str().unwrap().to_owned();
    assert!(is_socket_id(&id), "{id}");
    (ws, id)
}

/// The next frame, or the close code.
pub(crate) async fn next_or_close(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5s");
        match frame {
            Some(Ok(Frame::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Frame::Close(c))) => return Err(c.map_or(0, |c| c.code.into())),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

/// `key:signature` as an application's auth endpoint signs a subscription.
pub(crate) fn sign(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let text = match channel_data {
        Some(d) => format!("{socket_id}:{channel}:{d}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!(
        "{KEY}:{}",
        hex::encode(hmac::sign(&key, text.as_bytes()).as_ref())
    )
}

/// Join `channel` as `user_id` showing `info`; the subscription_succeeded
/// data.
pub(crate) async fn join_presence(
    ws: &mut Ws,
    socket_id: &str,
    channel: &str,
    user_id: &str,
    info: Value,
) -> Value {
    // Sent as a number: Pusher accepts a numeric user_id, and the
    // signature covers this exact text.
    let data = format!("{{\"user_id\": \"{user_id}\", \"user_info\": {info}}}");
    let auth = sign(socket_id, channel, Some(&data));
    send_json(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}),
    )
    .await;
    let ok = next_json(ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    serde_json::from_str(ok["data"].as_str().unwrap()).unwrap()
}

/// The next frame that is not a server ping (answered).
pub(crate) async fn next_event(ws: &mut Ws) -> Value {
    let next = async {
        loop {
            let v = next_json(ws).await;
            if v["event"] != "pusher:ping" {
                return v;
            }
            send_json(ws, json!({"event": "pusher:pong", "data": {}})).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("an event other than a ping within 5s")
}
