//! The Pusher WebSocket endpoint (`/app/{key}`, protocol 7) with the real
//! clients: pusher-js under Node (over `ws`, unmodified) with the node
//! `pusher` library signing subscriptions (`tests/pusher/ws_scenarios.js`),
//! over TLS and plain; raw frames for the activity check and bad input.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::redis::RedisServer;
use crate::common::*;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";

/// The `pusher:` section and the rules the scenarios' channels fall under:
/// `private-*` asks a pushgate token, which the app's signature stands in for.
fn config(dir: &std::path::Path, tls: bool) -> String {
    let pusher = format!(
        "pusher:\n  activity_timeout: 1s\n  pong_timeout: 500ms\n  reconnect_spread: 200ms\n  apps:\n    - {{ id: \"1001\", key: {KEY}, secret: {SECRET}, client_events: true, max_message: 1KiB }}\n"
    );
    let text = yaml(dir, "http://127.0.0.1:9", "  presence_grace: 100ms", &pusher).replace(
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

async fn gateway() -> TestGateway {
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
        "appId": "1001", "admin": admin.to_string(),
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

async fn raw(gw: &TestGateway, path: &str) -> (Ws, String) {
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
async fn next_or_close(ws: &mut Ws) -> Result<Value, u16> {
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

#[tokio::test]
async fn pings_both_ways_and_silence_closes_4201() {
    let gw = gateway().await;
    let (mut ws, _) = raw(&gw, &format!("/app/{KEY}?protocol=7&client=raw&version=1")).await;
    send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:pong");
    // Counted per app, and on the dashboard as a WebSocket.
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("pushgate_pusher_connections{app=\"1001\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pushgate_pusher_messages_received_total{app=\"1001\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pushgate_pusher_messages_sent_total{app=\"1001\"}"),
        "{metrics}"
    );
    assert_eq!(gw.stats().await["transports"]["ws"], 1);
    // Without a protocol version pusher-js speaks: 4007.
    let mut old = gw.try_ws_with(&format!("/app/{KEY}"), None).await.unwrap();
    assert_eq!(next_or_close(&mut old).await, Err(4007));
    // Silent past activity_timeout: the server pings.
    let ping = next_or_close(&mut ws).await.unwrap();
    assert_eq!(ping["event"], "pusher:ping");
    assert_eq!(ping["data"], "{}");
    // Answered: still open, and pinged again later.
    send_json(&mut ws, json!({"event": "pusher:pong", "data": {}})).await;
    assert_eq!(
        next_or_close(&mut ws).await.unwrap()["event"],
        "pusher:ping"
    );
    // Not answered: closed with 4201 (pusher-js reconnects at once).
    assert_eq!(next_or_close(&mut ws).await, Err(4201));
}

#[tokio::test]
async fn bad_frames_get_pusher_errors_and_the_socket_stays() {
    let gw = gateway().await;
    let (mut other, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let (mut ws, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let error = |v: &Value| v["data"]["code"].clone();
    ws.send(Frame::text("not json")).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["event"].as_str(), error(&e)),
        (Some("pusher:error"), Value::Null)
    );
    send_json(&mut ws, json!({"event": "pusher:nope", "data": {}})).await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:error");
    // Private without auth: 4009 and the channel's subscription_error.
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-a"}}),
    )
    .await;
    assert_eq!(error(&next_json(&mut ws).await), 4009);
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(refused["channel"], "private-a");
    // A 100 KB channel_data: refused unread.
    let big = format!("{{\"user_id\":\"{}\"}}", "x".repeat(100_000));
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "presence-a", "auth": "k:s", "channel_data": big}}),
    )
    .await;
    assert_eq!(error(&next_json(&mut ws).await), 4009);
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:subscription_error"
    );
    // A client event on a public channel, and one over max_message (1 KiB).
    send_json(
        &mut ws,
        json!({"event": "client-x", "channel": "news-1", "data": {}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:error");
    // Still served, and so is the other socket.
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "news-9"}}),
    )
    .await;
    let ok = next_json(&mut ws).await;
    assert_eq!(
        (ok["event"].as_str(), ok["data"].as_str()),
        (Some("pusher_internal:subscription_succeeded"), Some("{}"))
    );
    send_json(&mut other, json!({"event": "pusher:ping"})).await;
    assert_eq!(next_json(&mut other).await["event"], "pusher:pong");
}

/// `key:signature` as an application's auth endpoint signs a subscription.
fn sign(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
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
async fn join_presence(
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
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["event"] != "pusher:ping" {
            return v;
        }
        send_json(ws, json!({"event": "pusher:pong", "data": {}})).await;
    }
}

#[tokio::test]
async fn presence_spans_two_gateways_on_one_redis() {
    let redis = RedisServer::start().await;
    let start = || async {
        let dir = temp_dir("pusher-ws-redis");
        let text = format!("{}{}", config(&dir, true), redis.broker_yaml("pwsredis"));
        let gw = TestGateway::start_yaml(&text, dir).await;
        eventually(10, "redis connected", || async {
            let r = gw.http.get(gw.admin_url("/readyz")).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
        gw
    };
    let (a, b) = (start().await, start().await);
    let path = format!("/app/{KEY}?protocol=7");
    let (mut watcher, wid) = raw(&a, &path).await;
    let seen = join_presence(&mut watcher, &wid, "presence-r", "w", json!({"n": "w"})).await;
    assert_eq!(seen["presence"]["count"], 1, "{seen}");

    // A user on the other gateway sees the watcher with its user_info.
    let (mut tab1, id1) = raw(&b, &path).await;
    let seen = join_presence(&mut tab1, &id1, "presence-r", "u1", json!({"n": 1})).await;
    assert_eq!(seen["presence"]["ids"], json!(["u1", "w"]), "{seen}");
    assert_eq!(seen["presence"]["hash"]["w"], json!({"n": "w"}), "{seen}");
    let added = next_event(&mut watcher).await;
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    let data: Value = serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"user_id": "u1", "user_info": {"n": 1}}));

    // The same user again, on the watcher's gateway: no second member.
    let (mut tab2, id2) = raw(&a, &path).await;
    let seen = join_presence(&mut tab2, &id2, "presence-r", "u1", json!({"n": 1})).await;
    assert_eq!(seen["presence"]["count"], 2, "{seen}");
    drop(tab1);
    send_json(&mut watcher, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        next_event(&mut watcher).await["event"],
        "pusher:pong",
        "no member event yet"
    );
    drop(tab2);
    let removed = next_event(&mut watcher).await;
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert_eq!(removed["data"], r#"{"user_id":"u1"}"#);
}

#[tokio::test]
async fn oversize_client_events_get_4301() {
    let gw = gateway().await;
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let signer = |channel: &str| sign(&id, channel, None);
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-big", "auth": signer("private-big")}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let data = "x".repeat(2000);
    send_json(
        &mut ws,
        json!({"event": "client-big", "channel": "private-big", "data": data}),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["event"].as_str(), e["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4301))
    );
}

#[tokio::test]
async fn shutdown_closes_4200_and_capacity_4100() {
    let dir = temp_dir("pusher-ws-cap");
    let text =
        config(&dir, true).replace("max_message: 1KiB", "max_message: 1KiB, max_connections: 1");
    let mut gw = TestGateway::start_yaml(&text, dir).await;
    let (mut first, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let mut second = gw
        .try_ws_with(&format!("/app/{KEY}?protocol=7"), None)
        .await
        .unwrap();
    assert_eq!(next_or_close(&mut second).await, Err(4100));
    let stop = tokio::spawn(async move {
        gw.stop().await;
    });
    assert_eq!(next_or_close(&mut first).await, Err(4200));
    stop.await.unwrap();
}

#[tokio::test]
async fn the_operator_disconnects_a_pusher_user() {
    let gw = gateway().await;
    let path = format!("/app/{KEY}?protocol=7");
    let (mut ws, id) = raw(&gw, &path).await;
    join_presence(&mut ws, &id, "presence-ops", "u9", json!({})).await;
    let (mut other, other_id) = raw(&gw, &path).await;
    join_presence(&mut other, &other_id, "presence-ops", "u8", json!({})).await;
    let answer: Value = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "u9"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["disconnected"], 1, "{answer}");
    // After u8's member_added, the close.
    let code = loop {
        if let Err(code) = next_or_close(&mut ws).await {
            break code;
        }
    };
    assert_eq!(code, 4009);
    let removed = next_event(&mut other).await;
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert_eq!(removed["data"], r#"{"user_id":"u9"}"#);
}

#[tokio::test]
async fn the_app_hears_of_occupied_vacated_members_and_client_events() {
    let gw = gateway().await;
    let state = gw.handle.as_ref().unwrap().state();
    let mut events = state.app_events.take_receiver().unwrap();
    let path = format!("/app/{KEY}?protocol=7");
    let (mut ws, id) = raw(&gw, &path).await;
    join_presence(&mut ws, &id, "presence-hooks", "u5", json!({"a": 1})).await;
    send_json(
        &mut ws,
        json!({"event": "client-typing", "channel": "presence-hooks", "data": {"t": 1}}),
    )
    .await;
    send_json(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-hooks"}}),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (app, event) = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap_or_else(|_| panic!("five events, got {seen:?}"))
            .unwrap();
        assert_eq!(&*app, "1001");
        seen.push(format!("{event:?}"));
    }
    let expected = [
        r#"MemberAdded { channel: "presence-hooks", user_id: "u5" }"#,
        r#"ChannelOccupied { channel: "presence-hooks" }"#,
        r#"ClientEvent { channel: "presence-hooks", event: "client-typing", data: RawValue({"t":1}), socket_id: "#,
        r#"ChannelVacated { channel: "presence-hooks" }"#,
        r#"MemberRemoved { channel: "presence-hooks", user_id: "u5" }"#,
    ];
    for e in expected {
        assert!(seen.iter().any(|s| s.starts_with(e)), "{e} in {seen:?}");
    }
    let client_event = seen.iter().find(|s| s.starts_with("ClientEvent")).unwrap();
    assert!(
        client_event.contains(&format!("socket_id: \"{id}\", user_id: Some(\"u5\")")),
        "{client_event}"
    );
}
