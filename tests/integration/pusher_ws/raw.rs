//! Raw frames against the Pusher endpoint: the activity check, bad input,
//! client-event size, capacity and shutdown codes.

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use super::*;

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
    // Without a protocol version: 4008; one not spoken here: 4007.
    let mut old = gw.try_ws_with(&format!("/app/{KEY}"), None).await.unwrap();
    assert_eq!(next_or_close(&mut old).await, Err(4008));
    for version in ["4", "8", "seven"] {
        let path = format!("/app/{KEY}?protocol={version}");
        let mut old = gw.try_ws_with(&path, None).await.unwrap();
        assert_eq!(next_or_close(&mut old).await, Err(4007), "{version}");
    }
    // Protocol 5 reads a pusher:error with the code before the close.
    let path = "/app/nobody?protocol=5";
    let mut five = gw.try_ws_with(path, None).await.unwrap();
    let e = next_or_close(&mut five).await.unwrap();
    assert_eq!(
        (e["event"].as_str(), e["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4001)),
        "{e}"
    );
    assert_eq!(next_or_close(&mut five).await, Err(4001));
    // Protocol 7 gets the close code only.
    let mut seven = gw
        .try_ws_with("/app/nobody?protocol=7", None)
        .await
        .unwrap();
    assert_eq!(next_or_close(&mut seven).await, Err(4001));
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
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
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
    // A 100 KB channel_data, signed by the app: refused as too large.
    let big = format!("{{\"user_id\":\"{}\"}}", "x".repeat(100_000));
    let auth = sign(&id, "presence-a", Some(&big));
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "presence-a", "auth": auth, "channel_data": big}}),
    )
    .await;
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    let data: Value = serde_json::from_str(refused["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["status"], 413, "{data}");
    // A client event on a public channel, and one over max_message (1 KiB).
    send_json(
        &mut ws,
        json!({"event": "client-x", "channel": "news-1", "data": {}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:error");
    // Public channels follow their rule as anonymous clients: a channel
    // under `subscribe: token` is refused (401), one no rule names too (403).
    for (channel, status) in [("orders.5", 401), ("nowhere-1", 403)] {
        send_json(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        )
        .await;
        let refused = next_json(&mut ws).await;
        assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
        let data: Value = serde_json::from_str(refused["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["status"], status, "{channel}: {data}");
    }
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
async fn shutdown_closes_4200_and_the_app_quota_4004() {
    let dir = temp_dir("pusher-ws-cap");
    let text =
        config(&dir, true).replace("max_message: 1KiB", "max_message: 1KiB, max_connections: 1");
    let mut gw = TestGateway::start_yaml(&text, dir).await;
    let (mut first, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let mut second = gw
        .try_ws_with(&format!("/app/{KEY}?protocol=7"), None)
        .await
        .unwrap();
    assert_eq!(next_or_close(&mut second).await, Err(4004));
    let stop = tokio::spawn(async move {
        gw.stop().await;
    });
    assert_eq!(next_or_close(&mut first).await, Err(4200));
    stop.await.unwrap();
}

#[tokio::test]
async fn a_reload_keeps_sockets_on_the_new_app_settings_and_closes_a_removed_app() {
    let gw = gateway().await;
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let auth = sign(&id, "private-r", None);
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-r", "auth": auth}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let path = gw.dir.join("gateway.yaml");
    let reload = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        pushgate::reload::reload(gw.handle.as_ref().unwrap().state(), &path).unwrap();
    };
    // Client events switched off: the open socket is refused them now.
    reload("client_events: true", "client_events: false");
    // The socket takes the reload before its next frame.
    let event = json!({"event": "client-x", "channel": "private-r", "data": {}});
    send_json(&mut ws, event).await;
    let e = next_event(&mut ws).await;
    assert_eq!(e["event"], "pusher:error", "{e}");
    assert!(
        e["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{e}"
    );
    // The app's key gone: its sockets are closed as an unknown app.
    reload(&format!("key: {KEY}"), "key: another-key");
    assert_eq!(next_or_close(&mut ws).await, Err(4001));
    // Its channel_prefix changed: its channels are other hub channels, so
    // its sockets reconnect (4200) and subscribe under the new names.
    let (mut ws, _) = raw(&gw, "/app/another-key?protocol=7").await;
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "news-1"}}),
    )
    .await;
    assert_eq!(
        next_event(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    reload("key: another-key", "key: another-key, channel_prefix: 'p:'");
    assert_eq!(next_or_close(&mut ws).await, Err(4200));
    // So does a changed app id: its occupied channels are counted by id.
    let (mut ws, _) = raw(&gw, "/app/another-key?protocol=7").await;
    reload("id: \"1001\"", "id: \"1002\"");
    assert_eq!(next_or_close(&mut ws).await, Err(4200));
}

#[tokio::test]
async fn a_client_event_within_a_large_max_message_is_not_closed_1009() {
    let dir = temp_dir("pusher-ws-large");
    let text = config(&dir, true).replace("max_message: 1KiB", "max_message: 400KiB");
    let gw = TestGateway::start_yaml(&text, dir).await;
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let auth = sign(&id, "private-large", None);
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-large", "auth": auth}}),
    )
    .await;
    assert_eq!(
        next_event(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    // 300 KB, over the least frame cap and within max_message: taken.
    let event = |n: usize| json!({"event": "client-big", "channel": "private-large", "data": "x".repeat(n)});
    send_json(&mut ws, event(300_000)).await;
    send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        next_or_close(&mut ws).await.map(|v| v["event"].clone()),
        Ok(json!("pusher:pong"))
    );
    // Over max_message: 4301, and the socket stays.
    send_json(&mut ws, event(500_000)).await;
    let e = next_or_close(&mut ws).await.unwrap();
    assert_eq!(e["data"]["code"], 4301, "{e}");
    send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_event(&mut ws).await["event"], "pusher:pong");
}

/// The Pusher socket writes its frames straight to the socket as the
/// WebSocket endpoint does: a ping's pong, queued by tungstenite, still
/// goes out while events flow, and a Close gets its Close back.
#[tokio::test]
async fn pongs_and_the_close_reply_go_out_while_events_flow() {
    let gw = gateway().await;
    let (mut ws, _) = raw(&gw, &format!("/app/{KEY}?protocol=7&client=raw&version=1")).await;
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "news-flow"}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let publisher = async {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            gw.publish_one("news-flow", json!({"n": n})).await;
            n += 1;
        }
    };
    let client = async {
        // Events flow before the first ping.
        assert_eq!(next_json(&mut ws).await["channel"], "news-flow");
        let (during, closed) = pings_then_close_amid_texts(&mut ws).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (during, closed)
    };
    let ((), (during, closed)) = tokio::join!(publisher, client);
    assert!(closed, "the Close reply within 5 s");
    assert!(during > 0, "events flowed while pinging");
}
