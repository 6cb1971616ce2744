//! pusher-js's unmodified browser build (`dist/web/pusher.min.js`) in real
//! headless Chromium, against the gateway over TLS: the page comes from the
//! stand-in application (`tests/pusher/app.js`) through the gateway, the
//! browser logs in there (a session cookie), pusher-js authorizes its
//! private and presence channels at the application's `/broadcasting/auth`
//! with that cookie and Echo's `X-CSRF-TOKEN` header, and a trigger of the
//! official Python library reaches the page; and the same page configured
//! as a Laravel app configures it, with the real laravel-echo build.

use serde_json::{Value, json};

use crate::harness::Browser;

#[path = "../integration/pusher_e2e/standin.rs"]
mod standin;

use standin::{APP_KEY, StandIn, gateway, python_trigger};

#[tokio::test]
async fn pusher_js_in_chromium_subscribes_through_the_app_and_gets_a_python_trigger() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let b = Browser::start().await;
    b.client.goto(&gw.url("/login?user=7")).await.unwrap();
    let event = r"App\Events\OrderShipped";
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("key", APP_KEY)
        .append_pair("user", "7")
        .append_pair("event", event)
        .finish();
    b.client
        .goto(&gw.url(&format!("/page.html?{query}")))
        .await
        .unwrap();
    b.until(
        20,
        "three channels subscribed and one refused",
        "return window.seen && seen.subscribed.length === 3 && seen.refused.length === 1",
    )
    .await;
    let seen = b.js("return window.seen").await;
    let mut subscribed: Vec<String> = serde_json::from_value(seen["subscribed"].clone()).unwrap();
    subscribed.sort();
    assert_eq!(subscribed, ["news", "presence-room.web", "private-user.7"]);
    assert_eq!(seen["refused"], json!([["private-user.nobody", 403]]));
    assert_eq!(seen["members"], json!({"count": 1, "me": "7"}));
    // pusher-js's own request, with the browser's cookie and Echo's header.
    let mut auths = Vec::new();
    while auths.len() < 3 {
        auths.push(app.next_of("auth").await);
    }
    for auth in &auths {
        let cookie = auth["cookie"].as_str().unwrap_or_default();
        assert!(cookie.contains("laravel_session="), "{auth}");
        assert_eq!(
            auth["content_type"], "application/x-www-form-urlencoded",
            "{auth}"
        );
        assert!(
            auth["csrf"].as_str().is_some_and(|c| c.len() == 32),
            "{auth}"
        );
    }

    let data = json!({"order": 42, "note": "ü"});
    python_trigger(gw.admin, &["private-user.7", "news"], event, data.clone()).await;
    b.until(
        10,
        "the trigger reached both channels",
        "return seen.received.length === 2",
    )
    .await;
    let received: Vec<Value> = serde_json::from_value(b.js("return seen.received").await).unwrap();
    for channel in ["news", "private-user.7"] {
        assert!(received.contains(&json!([channel, data])), "{received:?}");
    }
    b.finish().await;
}

/// The real `laravel-echo` browser build in Chromium, configured as a
/// Laravel app configures it (`broadcaster: 'pusher'`, then `'reverb'`;
/// axios on the window): Echo's own authorization with the page's cookie
/// and CSRF token, presence, a refused channel, Echo's `X-Socket-ID` on the
/// page's axios request, and a Python-library trigger as Echo's event.
#[tokio::test]
async fn laravel_echo_in_chromium_as_the_pusher_and_the_reverb_broadcaster() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let b = Browser::start().await;
    b.client.goto(&gw.url("/login?user=7")).await.unwrap();
    for broadcaster in ["pusher", "reverb"] {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("key", APP_KEY)
            .append_pair("user", "7")
            .append_pair("echo", broadcaster)
            .finish();
        b.client
            .goto(&gw.url(&format!("/page.html?{query}")))
            .await
            .unwrap();
        b.until(
            20,
            "two channels subscribed, one refused, the page's request answered",
            "return window.seen && seen.subscribed.length === 2 && seen.refused.length === 1 && seen.order === 201",
        )
        .await;
        let seen = b.js("return window.seen").await;
        assert_eq!(
            seen["refused"],
            json!([["private-user.nobody", 403]]),
            "{broadcaster}"
        );
        assert_eq!(seen["members"]["count"], 1, "{broadcaster}: {seen}");
        let socket_id = seen["socket_id"].as_str().unwrap_or_default().to_owned();
        let mut statuses = Vec::new();
        while statuses.len() < 3 {
            let auth = app.next_of("auth").await;
            assert!(
                auth["cookie"]
                    .as_str()
                    .is_some_and(|c| c.contains("laravel_session=")),
                "{auth}"
            );
            assert_eq!(auth["socket_id"], socket_id.as_str(), "{auth}");
            statuses.push(auth["status"].as_u64().unwrap_or_default());
        }
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 200, 403],
            "Echo's X-CSRF-TOKEN was accepted"
        );
        let order = app.next_of("order").await;
        assert_eq!(
            order["socket_id"],
            socket_id.as_str(),
            "{broadcaster}: Echo's X-Socket-ID on axios's request"
        );

        let data = json!({"order": 42});
        python_trigger(
            gw.admin,
            &["private-user.7"],
            r"App\Events\OrderShipped",
            data.clone(),
        )
        .await;
        b.until(
            10,
            "the trigger reached Echo's listener",
            "return seen.received.length === 1",
        )
        .await;
        assert_eq!(
            b.js("return seen.received").await,
            json!([["private-user.7", data]])
        );
    }
    b.finish().await;
}

/// pusher-js in Chromium with no WebSocket on the page (as behind a proxy
/// that refuses upgrades): with its default transports it falls back to
/// `xhr_streaming`, and to `xhr_polling` when streaming is disabled too.
/// Over each: its channels are authorized through the application, a
/// Python-library trigger arrives, and presence works with a WebSocket
/// member: each sees the other arrive and their client events cross.
#[tokio::test]
async fn pusher_js_without_websocket_falls_back_to_xhr_streaming_and_polling() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let b = Browser::start().await;
    b.client.goto(&gw.url("/login?user=7")).await.unwrap();
    let event = "OrderShipped";
    for (n, transport) in ["xhr_streaming", "xhr_polling"].into_iter().enumerate() {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("key", APP_KEY)
            .append_pair("user", "7")
            .append_pair("event", event)
            .append_pair("transport", transport)
            .finish();
        b.client
            .goto(&gw.url(&format!("/page.html?{query}")))
            .await
            .unwrap();
        b.until(
            30,
            "three channels subscribed and one refused",
            "return window.seen && seen.subscribed.length === 3 && seen.refused.length === 1",
        )
        .await;
        let seen = b.js("return window.seen").await;
        assert_eq!(seen["transport"], transport, "{seen}");
        assert_eq!(seen["members"]["me"], "7", "{seen}");
        if n == 0 {
            // (Later, the last round's member may still be in its grace.)
            assert_eq!(seen["members"]["count"], 1, "{seen}");
        }
        for _ in 0..3 {
            app.next_of("auth").await;
        }
        let data = json!({"order": n});
        python_trigger(gw.admin, &["private-user.7", "news"], event, data.clone()).await;
        b.until(
            10,
            "the trigger reached both channels",
            "return seen.received.length === 2",
        )
        .await;

        // A member on a WebSocket joins the page's presence channel.
        let (mut ws, socket_id) = pusher_socket(&gw).await;
        let member = format!("{{\"user_id\":\"ws-{n}\"}}");
        let auth = sign(&socket_id, "presence-room.web", &member);
        send(&mut ws, json!({"event": "pusher:subscribe", "data": {"channel": "presence-room.web", "auth": auth, "channel_data": member}})).await;
        let joined = next_event(&mut ws, "pusher_internal:subscription_succeeded").await;
        let members: Value = serde_json::from_str(joined["data"].as_str().unwrap()).unwrap();
        assert!(
            members["presence"]["hash"].get("7").is_some(),
            "the page's user is a member: {members}"
        );
        b.until(
            10,
            "the page saw the member arrive",
            &format!("return seen.added.includes('ws-{n}')"),
        )
        .await;
        // The page greets the member with a client event over xhr_send.
        let hello = next_event(&mut ws, "client-hello").await;
        assert_eq!(hello["user_id"], "7", "{hello}");
        assert_eq!(
            serde_json::from_str::<Value>(hello["data"].as_str().unwrap()).unwrap(),
            json!({"to": format!("ws-{n}")})
        );
        send(
            &mut ws,
            json!({"event": "client-reply", "channel": "presence-room.web", "data": {"n": n}}),
        )
        .await;
        b.until(
            10,
            "the page got the reply",
            "return seen.client.length === 1",
        )
        .await;
        assert_eq!(
            b.js("return seen.client").await,
            json!([[{"n": n}, format!("ws-{n}")]])
        );
    }
    b.finish().await;
}

use crate::common::Ws as Socket;

/// A Pusher WebSocket to the gateway; its socket id.
async fn pusher_socket(gw: &crate::common::TestGateway) -> (Socket, String) {
    let mut ws = gw
        .try_ws_with(&format!("/app/{APP_KEY}?protocol=7"), None)
        .await
        .unwrap();
    let hello = next_event(&mut ws, "pusher:connection_established").await;
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    (ws, data["socket_id"].as_str().unwrap().to_owned())
}

async fn send(ws: &mut Socket, frame: Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        frame.to_string(),
    ))
    .await
    .unwrap();
}

/// The next frame of `event` (10 s at most), skipping others.
async fn next_event(ws: &mut Socket, event: &str) -> Value {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{event} within 10 s"));
        if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = frame {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["event"] == event {
                return v;
            }
        }
    }
}

/// The app's signature of a presence subscription, as its auth endpoint
/// signs it.
fn sign(socket_id: &str, channel: &str, channel_data: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, standin::APP_SECRET.as_bytes());
    let text = format!("{socket_id}:{channel}:{channel_data}");
    format!(
        "{APP_KEY}:{}",
        hex::encode(hmac::sign(&key, text.as_bytes()).as_ref())
    )
}
