//! WebSocket over HTTP/2 (RFC 8441), frame by frame with the `h2` crate:
//! the setting on TLS listeners that negotiate h2 and its absence where h2
//! was not negotiated, extended CONNECT to `pushgate.v1`, to the Pusher
//! endpoint and through to the application's own WebSocket, and what is
//! refused (another `:protocol`, a path that is no WebSocket, a foreign
//! Origin, a channel without its token, a connection cap).

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::h2_client::{self, body, extended_connect, websocket};
use crate::common::*;

const WS13: (&str, &str) = ("sec-websocket-version", "13");
const OURS: (&str, &str) = ("sec-websocket-protocol", "pushgate.v1");

/// The count of WebSockets opened on `transport` over HTTP `http`.
async fn websocket_connects(gw: &TestGateway, transport: &str, http: &str) -> u64 {
    let line =
        format!("pushgate_websocket_connects_total{{transport=\"{transport}\",http=\"{http}\"}} ");
    let text = gw.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn extended_connect_on_an_h2_tls_connection_carries_pushgate_frames() {
    let gw = TestGateway::start().await;
    let mut h2 = h2_client::connect(&gw, true).await;
    assert_eq!(
        h2_client::get(&mut h2, &gw, "/realtime/client.js").await,
        200
    );
    assert!(
        h2.is_extended_connect_protocol_enabled(),
        "the server's SETTINGS carry ENABLE_CONNECT_PROTOCOL on an h2 TLS connection"
    );
    let (resp, stream) = extended_connect(
        &mut h2,
        &gw,
        "/realtime/ws?channels=public.h2",
        "websocket",
        &[WS13, OURS],
    )
    .await
    .unwrap();
    // 200, not 101; no key was sent and no accept comes back.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "pushgate.v1");
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let mut ws = websocket(resp, stream).await;
    eventually(5, "the h2 socket subscribed", || async {
        gw.admin_get("/channels/public.h2").await["subscribers"] == 1
    })
    .await;
    let id = gw.publish_one("public.h2", json!({"over": "h2"})).await;
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("message"), Some(id.as_str()))
    );
    assert_eq!(m["data"]["over"], "h2");
    // Client ops travel the other way on the same stream.
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.h2b", "ref": 7}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_i64()),
        (Some("ack"), Some(7))
    );
    // The connection stays an HTTP connection: another request beside the socket.
    assert_eq!(
        h2_client::get(&mut h2, &gw, "/realtime/client.js").await,
        200
    );
    assert_eq!(websocket_connects(&gw, "ws", "2").await, 1);
    assert_eq!(websocket_connects(&gw, "ws", "1.1").await, 0);
    // An HTTP/1.1 socket is labelled as such.
    let mut ws1 = gw.ws("/realtime/ws?channels=public.h2").await;
    gw.publish_one("public.h2", json!(2)).await;
    assert_eq!(next_json(&mut ws1).await["data"], 2);
    assert_eq!(next_json(&mut ws).await["data"], 2);
    assert_eq!(websocket_connects(&gw, "ws", "1.1").await, 1);
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn without_negotiated_h2_there_is_no_setting_and_extended_connect_is_reset() {
    let gw = TestGateway::start().await;
    // h2 with prior knowledge over TLS that negotiated no protocol.
    let mut h2 = h2_client::connect(&gw, false).await;
    assert_eq!(
        h2_client::get(&mut h2, &gw, "/realtime/client.js").await,
        200
    );
    assert!(
        !h2.is_extended_connect_protocol_enabled(),
        "no ENABLE_CONNECT_PROTOCOL where h2 was not negotiated"
    );
    let refused = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[WS13, OURS])
        .await
        .expect_err("an extended CONNECT the server did not allow");
    assert_eq!(
        refused.reason(),
        Some(h2::Reason::PROTOCOL_ERROR),
        "{refused}"
    );
    // Only the stream was refused: the connection serves on.
    assert_eq!(
        h2_client::get(&mut h2, &gw, "/realtime/client.js").await,
        200
    );
    assert_eq!(websocket_connects(&gw, "ws", "2").await, 0);
}

#[tokio::test]
async fn other_protocols_and_other_paths_are_refused() {
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", backend::start().await))
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    // A :protocol other than websocket: 400 with the JSON body, on the
    // realtime path and on a proxied one (nothing is tunnelled).
    for path in ["/realtime/ws", "/ws"] {
        let (resp, _) = extended_connect(&mut h2, &gw, path, "webtransport", &[WS13])
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert_eq!(body(resp).await["error"], "unsupported_protocol");
    }
    // A realtime path that is no WebSocket endpoint: 404.
    for path in ["/realtime/sse", "/realtime/client.js", "/realtime/nothing"] {
        let (resp, _) = extended_connect(&mut h2, &gw, path, "websocket", &[WS13])
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(body(resp).await["error"], "not_found");
    }
    // Without the WebSocket version: 400.
    let (resp, _) = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(body(resp).await["error"], "bad_handshake");
    // The same admission as HTTP/1.1: a channel that needs a token.
    let (resp, _) = extended_connect(
        &mut h2,
        &gw,
        "/realtime/ws?channels=orders.1",
        "websocket",
        &[WS13],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(body(resp).await["error"], "unauthorized");
    assert_eq!(websocket_connects(&gw, "ws", "2").await, 0);
}

#[tokio::test]
async fn h2_sockets_pass_the_origin_check_and_the_connection_caps() {
    let gw = TestGateway::builder()
        .realtime("  allowed_origins: [\"https://app.example.com\"]")
        .limits("  per_ip: { connections: 1 }")
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let evil = ("origin", "https://evil.example");
    let (resp, _) = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[WS13, evil])
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(body(resp).await["error"], "origin_not_allowed");
    let app = ("origin", "https://app.example.com");
    let (resp, stream) = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[WS13, app])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut first = websocket(resp, stream).await;
    // The second socket of one anonymous address, on the same connection: 429.
    let (resp, _) = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[WS13, app])
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    send_json(&mut first, json!({"op": "ping", "ref": 1})).await;
    assert_eq!(next_json(&mut first).await["ref"], 1);
    // Closed, its slot is given back.
    first.close(None).await.unwrap();
    eventually(5, "the slot freed", || async {
        let mut h2 = h2_client::connect(&gw, true).await;
        let (resp, _) = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[WS13, app])
            .await
            .unwrap();
        resp.status() == 200
    })
    .await;
}

#[tokio::test]
async fn the_pusher_endpoint_takes_extended_connect() {
    let gw = crate::pusher_ws::gateway().await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let path = format!("/app/{}?protocol=7", crate::pusher_ws::KEY);
    let (resp, stream) = extended_connect(&mut h2, &gw, &path, "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut ws = websocket(resp, stream).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    ws.send(Frame::text(
        json!({"event": "pusher:ping", "data": {}}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["event"], "pusher:pong");
    assert_eq!(websocket_connects(&gw, "pusher", "2").await, 1);
    // Another protocol on the Pusher path is refused as anywhere.
    let (resp, _) = extended_connect(&mut h2, &gw, &path, "webtransport", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn an_apps_websocket_is_tunnelled_as_an_http1_upgrade() {
    let app = backend::app().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let (resp, stream) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    assert!(resp.headers().get("upgrade").is_none());
    let mut ws = websocket(resp, stream).await;
    for text in ["one", "two"] {
        ws.send(Frame::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("an echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Frame::text(text));
    }
    assert_eq!(websocket_connects(&gw, "proxied", "2").await, 1);
    // The application's refusal passes back as it came.
    let (resp, _) = extended_connect(&mut h2, &gw, "/fail", "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(body(resp).await["error"], "boom");
    // A success that is no switch opens nothing: 502.
    let (resp, _) = extended_connect(&mut h2, &gw, "/echo", "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(websocket_connects(&gw, "proxied", "2").await, 1);
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn the_app_is_sent_a_websocket_upgrade_with_a_fresh_key() {
    // The echo app's default route shows the request it got, as JSON; it
    // answers 200, so the client gets a 502, and the app's view is read
    // from its record of what it has seen.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = TestApp::script(move |req| {
        record.lock().unwrap().push(format!(
            "{} {} upgrade={:?} connection={:?} key={} version={:?} protocol={:?}",
            req.method(),
            req.target(),
            req.header("upgrade"),
            req.header("connection"),
            req.header("sec-websocket-key")
                .is_some_and(|k| k.len() == 24),
            req.header("sec-websocket-version"),
            req.header("sec-websocket-protocol"),
        ));
        app::raw::json_answer("404 Not Found", "{\"error\":\"no socket here\"}")
    })
    .start()
    .await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let (resp, _) = extended_connect(
        &mut h2,
        &gw,
        "/chat?room=1",
        "websocket",
        &[WS13, ("sec-websocket-protocol", "chat.v2")],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(body(resp).await["error"], "no socket here");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "GET /chat?room=1 upgrade=Some(\"websocket\") connection=Some(\"upgrade\") key=true version=Some(\"13\") protocol=Some(\"chat.v2\")"
        ]
    );
}
