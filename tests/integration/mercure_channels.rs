//! `mercure.channels`: Mercure updates published with a Mercure POST reach
//! pushgate's own WebSocket and SSE clients on the channels their topics
//! map to, and a private update only a client the channel rule lets read
//! it (never on a channel `anyone` may read).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestGateway, next_json, send_json};
use crate::mercure::{PUB_SECRET, publish};

const CLIENT_SECRET: &str = "client-secret-for-tests-0123456789";

async fn gateway() -> TestGateway {
    TestGateway::builder()
        .tag("mercure-channels")
        .jwt_secret(CLIENT_SECRET)
        .section(&format!(
            r#"mercure:
  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}
  anonymous: true
  channels:
    - {{ topic: "https://example.com/books/{{id}}", channel: "public.books.{{id}}" }}
    - {{ topic: "https://example.com/users/{{id}}/orders", channel: "user.{{id}}", private: true }}
    - {{ topic: "https://example.com/leak/{{id}}", channel: "public.leak.{{id}}", private: true }}
    - {{ topic: "https://example.com/rooms/{{id}}", channel: "room.{{id}}", private: true }}
"#
        ))
        .start()
        .await
}

/// The message's body a pushgate client reads: topic, id and data.
fn body(m: &Value) -> (String, String, String) {
    let d = &m["data"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&d["topic"]), s(&d["id"]), s(&d["data"]))
}

#[tokio::test]
async fn a_mercure_update_reaches_pushgate_websocket_and_sse_clients() {
    let gw = gateway().await;
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.books.1", "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    let mut sse = gw.sse("/realtime/sse?channels=public.books.1", None).await;

    let topic = "https://example.com/books/1";
    let id = publish(
        &gw,
        &[
            ("topic", topic),
            ("data", "{\"title\":\"one\"}"),
            ("type", "book.updated"),
        ],
    )
    .await;
    let want = (
        topic.to_string(),
        id.clone(),
        "{\"title\":\"one\"}".to_string(),
    );
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["channel"].as_str(), m["event"].as_str()),
        (Some("public.books.1"), Some("book.updated"))
    );
    assert_eq!(body(&m), want);
    let m = sse.expect().await.json();
    assert_eq!(m["channel"], "public.books.1");
    assert_eq!(body(&m), want);

    // Another book's topic maps to another channel: not these clients'.
    publish(
        &gw,
        &[("topic", "https://example.com/books/2"), ("data", "2")],
    )
    .await;
    let id3 = publish(&gw, &[("topic", topic), ("data", "three")]).await;
    let m = next_json(&mut ws).await;
    assert_eq!(
        (body(&m).1, m["event"].as_str()),
        (id3.clone(), Some("mercure"))
    );
    assert_eq!(body(&sse.expect().await.json()).1, id3);

    // A value with a dot maps to no channel (it would add segments to
    // the name: public.books.1.x); an alternate topic that matches names
    // itself.
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.books.1.x", "ref": 2}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    publish(
        &gw,
        &[("topic", "https://example.com/books/1.x"), ("data", "dot")],
    )
    .await;
    let id4 = publish(
        &gw,
        &[("topic", "urn:isbn:1"), ("topic", topic), ("data", "alt")],
    )
    .await;
    let m = next_json(&mut ws).await;
    assert_eq!(body(&m), (topic.to_string(), id4, "alt".to_string()));
}

#[tokio::test]
async fn a_private_update_reaches_only_clients_the_channel_rule_allows() {
    let gw = gateway().await;
    let token = pushgate::auth::mint_hs256(
        CLIENT_SECRET,
        "42",
        &[],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    // user.{sub} is `owner`: user 42 only.
    let mut owner = gw
        .sse(
            &format!("/realtime/sse?channels=user.42&token={token}"),
            None,
        )
        .await;
    assert_eq!(
        gw.http1
            .get(gw.url("/realtime/sse?channels=user.42"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "anonymous clients cannot follow user.42"
    );
    // public.* is `anyone`: a private update is never published there.
    let mut anonymous = gw.sse("/realtime/sse?channels=public.leak.1", None).await;
    // Nor on room.* (`anyone` with presence): presence is no read right.
    let mut in_room = gw.sse("/realtime/sse?channels=room.1", None).await;

    let orders = "https://example.com/users/42/orders";
    let secret = publish(
        &gw,
        &[("topic", orders), ("data", "secret"), ("private", "on")],
    )
    .await;
    publish(
        &gw,
        &[
            ("topic", "https://example.com/leak/1"),
            ("data", "secret"),
            ("private", "on"),
        ],
    )
    .await;
    publish(
        &gw,
        &[
            ("topic", "https://example.com/rooms/1"),
            ("data", "secret"),
            ("private", "on"),
        ],
    )
    .await;
    let public = publish(
        &gw,
        &[("topic", "https://example.com/leak/1"), ("data", "public")],
    )
    .await;
    let room = publish(
        &gw,
        &[("topic", "https://example.com/rooms/1"), ("data", "public")],
    )
    .await;

    assert_eq!(
        body(&owner.expect().await.json()),
        (orders.to_string(), secret, "secret".to_string())
    );
    let m = anonymous.expect().await.json();
    assert_eq!(
        (body(&m).1, body(&m).2.as_str()),
        (public, "public"),
        "the private update was not published on the public channel"
    );
    let m = in_room.expect().await.json();
    assert_eq!(
        (body(&m).1, body(&m).2.as_str()),
        (room, "public"),
        "the private update was not published on the presence channel anyone reads"
    );
}
