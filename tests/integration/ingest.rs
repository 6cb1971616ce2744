//! Messages that come in without backend changes: webhook rules, response
//! taps, and client messages forwarded to the application.

use aws_lc_rs::hmac;
use serde_json::{Value, json};

use crate::common::*;

const HOOK_SECRET: &str = "whsec-93b1";

async fn gateway() -> TestGateway {
    let backend = backend::start().await;
    let extra = format!(
        r#"
webhooks:
  - name: orders
    match: {{ method: POST, path: /hooks/orders }}
    verify: {{ hmac_sha256: {{ header: X-Signature, secret: "{HOOK_SECRET}" }} }}
    channel: "public.orders.{{body.customer_id}}"
    event: "{{header.X-Event-Type}}"
    data: "{{body}}"
  - name: notify
    match: {{ method: POST, path: "/hooks/notify/{{user}}" }}
    channel: "public.user.{{path.user}}"
    event: notification
    data: "{{body.message}}"
taps:
  - match: {{ method: POST, path: /api/orders, status: 2xx }}
    channel: public.taps
    event: created
    data: "{{response.body.body}}"
  - match: {{ method: POST, path: /fail, status: 2xx }}
    channel: public.taps
    event: never
client_messages:
  forward_to: /realtime/inbound
"#
    );
    TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .section(&extra)
        .start()
        .await
}

fn sign(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    hex::encode(hmac::sign(&key, body).as_ref())
}

async fn history_len(gw: &TestGateway, channel: &str) -> u64 {
    let v: Value = gw.admin_get(&format!("/channels/{channel}")).await;
    v["history"]["length"].as_u64().unwrap()
}

#[tokio::test]
async fn signed_webhooks_become_channel_messages() {
    let gw = gateway().await;
    let mut sse = gw
        .sse("/realtime/sse?channels=public.orders.42", None)
        .await;
    let body = br#"{"customer_id": 42, "total": 9.5}"#;
    let post = |sig: String| {
        gw.http
            .post(gw.admin_url("/hooks/orders"))
            .header("x-signature", sig)
            .header("x-event-type", "order.paid")
            .body(body.to_vec())
            .send()
    };
    // Bad signatures publish nothing.
    for bad in [
        "deadbeef".to_string(),
        format!("sha256={}", "0".repeat(64)),
        String::new(),
    ] {
        let r = post(bad).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_signature");
    }
    assert_eq!(history_len(&gw, "public.orders.42").await, 0);
    // Hex, and GitHub's sha256= prefix.
    let r = post(sign(body)).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(format!("sha256={}", sign(body))).await.unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let ev = sse.expect().await;
        assert_eq!(ev.event, "order.paid");
        assert_eq!(ev.json()["data"]["total"], 9.5);
    }
}

#[tokio::test]
async fn webhook_templates_that_cannot_be_filled_get_422() {
    let gw = gateway().await;
    let mut sse = gw
        .sse("/realtime/sse?channels=public.user.alice", None)
        .await;
    let r = gw
        .http
        .post(gw.admin_url("/hooks/notify/alice"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(
        r.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("body.message")
    );
    let r = gw
        .http
        .post(gw.admin_url("/hooks/notify/alice"))
        .json(&json!({"other": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = gw
        .http
        .get(gw.admin_url("/hooks/notify/alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(history_len(&gw, "public.user.alice").await, 0);
    let r = gw
        .http
        .post(gw.admin_url("/hooks/notify/alice"))
        .json(&json!({"message": {"text": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ev = sse.expect().await;
    assert_eq!(ev.event, "notification");
    assert_eq!(ev.json()["data"]["text"], "hi");
}

#[tokio::test]
async fn taps_publish_successful_proxied_requests() {
    let gw = gateway().await;
    let mut sse = gw.sse("/realtime/sse?channels=public.taps", None).await;
    // A failing request fires nothing; the response still reaches the client.
    let r = gw
        .http
        .post(gw.url("/fail"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = gw
        .http
        .post(gw.url("/api/orders"))
        .body("order #1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(
        echoed["body"], "order #1",
        "the client gets the full response"
    );
    let ev = sse.expect().await;
    assert_eq!(ev.event, "created");
    assert_eq!(ev.json()["data"], "order #1");
}

#[tokio::test]
async fn client_messages_reach_the_backend_and_its_answer_comes_back() {
    let gw = gateway().await;
    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .json(&json!({"data": {"hello": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let answer = &v["data"];
    assert_eq!(answer["uri"], "/realtime/inbound");
    assert_eq!(answer["body"], r#"{"hello":1}"#);
    assert!(answer["headers"]["x-pushgate-connection"].is_string());

    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let mut ws = gw.ws("/realtime/ws?channels=public.s").await;
    send_json(&mut ws, json!({"op": "send", "data": [1, 2], "ref": 5})).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_i64()),
        (Some("ack"), Some(5))
    );
    assert_eq!(ack["data"]["body"], "[1,2]");
}

#[tokio::test]
async fn backend_errors_on_send_are_replies_not_disconnects() {
    let backend = backend::start().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .section("client_messages: { forward_to: /fail }")
        .start()
        .await;
    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "backend_error");
    let mut ws = gw.ws("/realtime/ws?channels=public.e").await;
    send_json(&mut ws, json!({"op": "send", "data": 1, "ref": 1})).await;
    assert_eq!(next_json(&mut ws).await["code"], "backend_error");
    gw.publish_one("public.e", json!("alive")).await;
    assert_eq!(next_json(&mut ws).await["data"], "alive");

    let unconfigured = TestGateway::start().await;
    let r = unconfigured
        .http
        .post(unconfigured.url("/realtime/send"))
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A webhook body declared over the admin bound is refused before a byte of
/// it is sent, as `POST /publish` refuses it; a body cut short is the
/// sender's 400, not a 413.
#[tokio::test]
async fn webhook_bodies_declared_too_large_are_refused_up_front() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway().await;
    for path in ["/hooks/notify/alice", "/publish"] {
        let mut s = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // No body follows: the answer must come from the head alone.
        let mut answer = vec![0u8; 512];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut answer))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.contains("too_large"), "{path}: {text}");
    }
    let mut s = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    s.write_all(
        b"POST /hooks/notify/alice HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n\r\n{\"message\":",
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_string(&mut answer),
    )
    .await
    .expect("answered");
    assert!(!answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// What the gateway reports as published, as the stats and the metrics say.
async fn published(gw: &TestGateway) -> (u64, bool) {
    let stats = gw.stats().await["messages"]["published"].as_u64().unwrap();
    let text = gw.metrics_text().await;
    let line = format!("pushgate_messages_published_total {stats}\n");
    (stats, text.contains(&line))
}

#[tokio::test]
async fn every_road_in_counts_what_it_published_and_nothing_it_refused() {
    let gw = gateway().await;
    // The publish API.
    gw.publish_one("public.a", json!(1)).await;
    // A webhook, and one that cannot be filled.
    let hook = |body: Value| {
        gw.http
            .post(gw.admin_url("/hooks/notify/alice"))
            .json(&body)
            .send()
    };
    assert_eq!(hook(json!({"message": "hi"})).await.unwrap().status(), 200);
    assert_eq!(hook(json!({"other": 1})).await.unwrap().status(), 422);
    // A client over HTTP, where the rule lets clients publish and where not.
    let post = |channel: &str| {
        gw.http
            .post(gw.url("/realtime/publish"))
            .json(&json!({"channel": channel, "data": 1}))
            .send()
    };
    assert_eq!(post("chat.x").await.unwrap().status(), 200);
    assert_eq!(post("public.x").await.unwrap().status(), 403);
    // A client over WebSocket, likewise.
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "publish", "channel": "chat.x", "data": 2, "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    send_json(
        &mut ws,
        json!({"op": "publish", "channel": "public.x", "data": 2, "ref": 2}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden");
    assert_eq!(published(&gw).await, (4, true));
    // A response tap publishes once the answer went back.
    let r = gw
        .http
        .post(gw.url("/api/orders"))
        .body("order #2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(5, "the tap's publish is counted", || async {
        published(&gw).await == (5, true)
    })
    .await;
}
