//! A Pusher app's private and presence channels seen from pushgate's own
//! endpoints: a `*: anyone` rule (what a Pusher migration writes) does not
//! open them to a bare SSE, WebSocket or long-poll client; public channels
//! stay open, and a rule that asks who the client is still opens them.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;

const SECRET: &str = "pusher-channels-secret";

const APPS: &str = r#"pusher:
  apps:
    - { id: 1, key: app-key, secret: s }
    - { id: 2, key: b-key, secret: s, channel_prefix: "b:" }
"#;

async fn gateway(with_pusher: bool) -> TestGateway {
    TestGateway::builder()
        .jwt_secret(SECRET)
        .channels(
            r#"channels:
  - { pattern: "b:private-owned.{sub}", subscribe: owner }
  - { pattern: "*", subscribe: anyone }"#,
        )
        .section(if with_pusher { APPS } else { "" })
        .start()
        .await
}

async fn sse_status(gw: &TestGateway, channel: &str, token: Option<&str>) -> u16 {
    let mut req = gw
        .http
        .get(gw.url(&format!("/realtime/poll?channels={channel}&timeout=0")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_anyone_rule_does_not_open_a_pusher_apps_private_channels() {
    let gw = gateway(true).await;
    for channel in [
        "private-App.Models.User.1",
        "private-encrypted-x",
        "presence-room.1",
        "b:private-orders",
        "b:presence-room",
        // A signed-in user's messages, terminate command and presence.
        "pusher-user:alice",
        "b:pusher-user:alice",
    ] {
        assert_eq!(sse_status(&gw, channel, None).await, 403, "{channel}");
        let r = gw
            .http
            .get(gw.url(&format!("/realtime/sse?channels={channel}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "sse {channel}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("Pusher"),
            "{body}"
        );
    }
    // Public channels of either app, and names no app owns, stay open.
    for channel in ["news", "b:news", "c:private-x"] {
        assert_eq!(sse_status(&gw, channel, None).await, 200, "{channel}");
    }
    // A rule that asks who the client is opens it to its owner.
    let token =
        pushgate::auth::mint_hs256(SECRET, "alice", &[], Duration::from_secs(600), None, None)
            .unwrap();
    assert_eq!(
        sse_status(&gw, "b:private-owned.alice", Some(&token)).await,
        200
    );
    assert_eq!(sse_status(&gw, "b:private-owned.alice", None).await, 401);
    // Over pushgate's WebSocket too.
    let mut ws = gw.ws("/realtime/ws").await;
    let op = json!({"op": "subscribe", "channel": "private-App.Models.User.1", "ref": 1});
    ws.send(Frame::text(op.to_string())).await.unwrap();
    let refused = next_json(&mut ws).await;
    assert_eq!(
        (refused["code"].as_str(), refused["ref"].as_i64()),
        (Some("forbidden"), Some(1)),
        "{refused}"
    );
}

#[tokio::test]
async fn without_pusher_apps_such_names_are_ordinary_channels() {
    let gw = gateway(false).await;
    assert_eq!(
        sse_status(&gw, "private-App.Models.User.1", None).await,
        200
    );
}

/// `presence`, `pusher:*` and `pusher_internal:*` are the gateway's own
/// events (presence announcements become Pusher member events): no
/// publisher may send them, or it could add a member or fake a
/// subscription.
#[tokio::test]
async fn no_publisher_may_send_the_gateways_own_events() {
    let gw = TestGateway::builder()
        .channels(
            r#"channels:
  - { pattern: "chat.*", subscribe: anyone, publish: clients }
  - { pattern: "*", subscribe: anyone }"#,
        )
        .section(APPS)
        .start()
        .await;
    for event in [
        "presence",
        "pusher:member_added",
        "pusher_internal:subscription_succeeded",
    ] {
        let r = gw
            .admin(reqwest::Method::POST, "/publish")
            .json(&json!({"channel": "presence-room", "event": event,
                "data": {"action": "join", "subject": "mallory"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{event}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("gateway's own"),
            "{body}"
        );
        // A client's own publish is refused alike.
        let r = gw
            .http
            .post(gw.url("/realtime/publish"))
            .json(&json!({"channel": "chat.1", "event": event, "data": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "client publish {event}");
    }
    let r = gw
        .admin(reqwest::Method::POST, "/publish")
        .json(&json!({"channel": "news", "event": "presence.changed", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a name that only starts like one is fine");
}
