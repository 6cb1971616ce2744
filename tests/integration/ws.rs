use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;

#[tokio::test]
async fn ws_subscribe_ack_message_unsubscribe() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.w", "ref": 1}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["ref"], 1);
    assert_eq!(ack["channel"], "public.w");
    assert!(ack["cursor"].is_string());

    let id = gw.publish_one("public.w", json!({"n": 1})).await;
    let m = next_json(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("message"), Some(id.as_str()))
    );
    assert_eq!(m["data"]["n"], 1);
    assert_eq!(m["event"], "message");

    send_json(&mut ws, json!({"op": "ping", "ref": "p"})).await;
    assert_eq!(next_json(&mut ws).await["ref"], "p");

    send_json(
        &mut ws,
        json!({"op": "unsubscribe", "channel": "public.w", "ref": 2}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["ref"], 2);
    gw.publish_one("public.w", json!({"n": 2})).await;
    send_json(&mut ws, json!({"op": "ping", "ref": 3})).await;
    let next = next_json(&mut ws).await;
    assert_eq!(
        next["type"], "ack",
        "no message after unsubscribe, got {next}"
    );
    assert_eq!(next["ref"], 3);
}

#[tokio::test]
async fn ws_channels_on_the_url_and_resume_with_cursor() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.u1,public.u2").await;
    gw.publish_one("public.u1", json!(1)).await;
    gw.publish_one("public.u2", json!(2)).await;
    assert_eq!(next_json(&mut ws).await["data"], 1);
    let m = next_json(&mut ws).await;
    assert_eq!(m["data"], 2);
    let cursor = m["cursor"].as_str().unwrap().to_string();
    drop(ws);
    gw.publish_one("public.u2", json!(3)).await;
    gw.publish_one("public.u1", json!(4)).await;
    let mut ws = gw
        .ws(&format!(
            "/realtime/ws?channels=public.u1,public.u2&cursor={cursor}"
        ))
        .await;
    let mut got: Vec<i64> = Vec::new();
    for _ in 0..2 {
        got.push(next_json(&mut ws).await["data"].as_i64().unwrap());
    }
    got.sort();
    assert_eq!(got, vec![3, 4]);

    // The same cursor works per subscribe op, and over SSE (one cursor for all transports).
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.u2", "cursor": cursor, "ref": 9}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    assert_eq!(next_json(&mut ws).await["data"], 3);
    let mut sse = gw
        .sse("/realtime/sse?channels=public.u1", Some(&cursor))
        .await;
    assert_eq!(sse.expect().await.json()["data"], 4);
}

#[tokio::test]
async fn ws_negotiates_subprotocol() {
    let gw = TestGateway::start().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = gw
        .url("/realtime/ws")
        .replace("https", "wss")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "other, pushgate.v1".parse().unwrap(),
    );
    let (_ws, resp) = tokio_tungstenite::client_async(req, gw.tls_stream().await)
        .await
        .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "pushgate.v1");
}

#[tokio::test]
async fn ws_bad_input_gets_errors_not_disconnects() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws").await;
    ws.send(Frame::Text("{not json".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_request");
    send_json(&mut ws, json!({"op": "dance", "ref": 5})).await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["ref"].as_i64()),
        (Some("error"), Some("unknown_op"), Some(5))
    );
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "secret.x", "ref": 6}),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_i64()),
        (Some("forbidden"), Some(6))
    );
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "orders.1", "ref": 7}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "unauthorized");
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.x", "cursor": "zz~", "ref": 8}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "bad_cursor");
    ws.send(Frame::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_request");
    // Publishing is only for channels whose rule says `publish: clients`.
    send_json(
        &mut ws,
        json!({"op": "publish", "channel": "public.x", "data": 1, "ref": 10}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden");
    // Still alive and serving.
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.ok", "ref": 11}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    gw.publish_one("public.ok", json!("fine")).await;
    assert_eq!(next_json(&mut ws).await["data"], "fine");
}

#[tokio::test]
async fn ws_client_publish_where_allowed() {
    let gw = TestGateway::start().await;
    let mut a = gw.ws("/realtime/ws?channels=chat.room").await;
    let mut b = gw.ws("/realtime/ws").await;
    send_json(&mut b, json!({"op": "publish", "channel": "chat.room", "event": "typing", "data": {"who": "b"}, "ref": 1})).await;
    let ack = next_json(&mut b).await;
    assert_eq!(ack["type"], "ack");
    let m = next_json(&mut a).await;
    assert_eq!(
        (m["event"].as_str(), m["id"].as_str()),
        (Some("typing"), ack["id"].as_str())
    );
}

#[tokio::test]
async fn ws_refused_before_upgrade() {
    let gw = TestGateway::start().await;
    let err = gw
        .try_ws("/realtime/ws?channels=secret.x")
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
    // A plain GET (no upgrade) is told to upgrade.
    let r = gw.http.get(gw.url("/realtime/ws")).send().await.unwrap();
    assert_eq!(r.status(), 426);
}

async fn expect_close(ws: &mut Ws) -> CloseCode {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Frame::Close(Some(f)))) => return f.code,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ws_oversize_and_invalid_utf8_frames_close_with_codes() {
    let gw = TestGateway::builder()
        .realtime("  max_message: 1KiB")
        .start()
        .await;
    let mut ws = gw.ws("/realtime/ws").await;
    ws.send(Frame::Text("x".repeat(64 * 1024).into()))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut ws).await, CloseCode::Size);

    // Invalid UTF-8 in a text frame, written raw: FIN+text, masked, 2-byte payload.
    use tokio::io::AsyncWriteExt;
    let ws = gw.ws("/realtime/ws").await;
    let mut raw = ws.into_inner();
    raw.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        raw,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    assert_eq!(expect_close(&mut ws).await, CloseCode::Invalid);

    // An unmasked client frame is a protocol error.
    let ws = gw.ws("/realtime/ws").await;
    let mut raw = ws.into_inner();
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    raw.flush().await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        raw,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    assert_eq!(expect_close(&mut ws).await, CloseCode::Protocol);
}

#[tokio::test]
async fn ws_fragmented_message_is_reassembled() {
    let gw = TestGateway::start().await;
    let ws = gw.ws("/realtime/ws").await;
    use tokio::io::AsyncWriteExt;
    let mut raw = ws.into_inner();
    let text = br#"{"op":"ping","ref":42}"#;
    let (a, b) = text.split_at(10);
    let frame = |first: bool, fin: bool, payload: &[u8]| {
        let mut f = vec![
            (if fin { 0x80 } else { 0 }) | (if first { 0x1 } else { 0x0 }),
            0x80 | payload.len() as u8,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    };
    raw.write_all(&frame(true, false, a)).await.unwrap();
    raw.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await.unwrap(); // a ping between fragments
    raw.write_all(&frame(false, true, b)).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        raw,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["ref"], 42);
}

#[tokio::test]
async fn ws_client_close_gets_a_close_back() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.closing").await;
    send_json(&mut ws, json!({"op": "ping", "ref": 1})).await;
    assert_eq!(next_json(&mut ws).await["ref"], 1);
    ws.close(None).await.expect("close frame sent");
    // The closing handshake: the server answers with its own Close.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Close(_))) => return true,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return false,
            }
        }
    })
    .await
    .expect("the server answers within 5 s");
    assert!(
        answer,
        "the server's Close frame arrives before the stream ends"
    );
}

const REAUTH_SECRET: &str = "reauth-secret-91c2";

fn token_for(sub: &str, ttl_secs: u64) -> String {
    pushgate::auth::mint_hs256(
        REAUTH_SECRET,
        sub,
        &[],
        std::time::Duration::from_secs(ttl_secs),
        None,
        None,
    )
    .unwrap()
}

async fn jwt_gateway() -> TestGateway {
    let auth = format!("auth:\n  jwt: {{ hs256_secret: \"{REAUTH_SECRET}\", leeway: 0s }}\n");
    TestGateway::builder().section(&auth).start().await
}

/// Subscribe to `channel` and expect the ack.
async fn subscribed(ws: &mut Ws, channel: &str) {
    send_json(
        ws,
        json!({"op": "subscribe", "channel": channel, "ref": channel}),
    )
    .await;
    let ack = next_json(ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_str()),
        (Some("ack"), Some(channel)),
        "{ack}"
    );
}

/// Authenticate as `token`'s subject and expect the ack.
async fn reauth(ws: &mut Ws, token: String) {
    send_json(ws, json!({"op": "auth", "token": token, "ref": "auth"})).await;
    assert_eq!(next_json(ws).await["type"], "ack");
}

#[tokio::test]
async fn reauth_as_another_subject_revokes_what_the_first_could_follow() {
    let gw = jwt_gateway().await;
    let mut ws = gw
        .ws(&format!("/realtime/ws?token={}", token_for("alice", 60)))
        .await;
    subscribed(&mut ws, "user.alice").await;
    subscribed(&mut ws, "public.both").await;
    reauth(&mut ws, token_for("bob", 60)).await;
    // Told the way a reload revocation is told.
    let revoked = next_json(&mut ws).await;
    assert_eq!(
        (
            revoked["type"].as_str(),
            revoked["code"].as_str(),
            revoked["channel"].as_str()
        ),
        (Some("error"), Some("forbidden"), Some("user.alice")),
        "{revoked}"
    );
    // Published in this order: the first frame shows alice's channel is gone.
    gw.publish_one("user.alice", json!("for alice")).await;
    gw.publish_one("public.both", json!("for anyone")).await;
    assert_eq!(next_json(&mut ws).await["data"], "for anyone");
    subscribed(&mut ws, "user.bob").await;
    gw.publish_one("user.bob", json!("for bob")).await;
    assert_eq!(next_json(&mut ws).await["data"], "for bob");
}

#[tokio::test]
async fn token_expiry_after_reauth_rechecks_every_subscription() {
    let gw = jwt_gateway().await;
    // Follows a channel that needs the token: closed with 1008 at expiry.
    let mut owner = gw
        .ws(&format!("/realtime/ws?token={}", token_for("alice", 60)))
        .await;
    subscribed(&mut owner, "user.alice").await;
    reauth(&mut owner, token_for("bob", 2)).await;
    assert_eq!(next_json(&mut owner).await["channel"], "user.alice");
    subscribed(&mut owner, "user.bob").await;
    // Follows only public channels: told, and goes on without the token.
    let mut public = gw
        .ws(&format!("/realtime/ws?token={}", token_for("carol", 60)))
        .await;
    subscribed(&mut public, "public.after").await;
    reauth(&mut public, token_for("dave", 2)).await;

    gw.publish_one("user.alice", json!("for alice")).await;
    let expired = next_json(&mut owner).await;
    assert_eq!(expired["code"], "token_expired", "{expired}");
    match tokio::time::timeout(std::time::Duration::from_secs(5), owner.next())
        .await
        .unwrap()
    {
        Some(Ok(Frame::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert_eq!(next_json(&mut public).await["code"], "token_expired");
    gw.publish_one("public.after", json!("still here")).await;
    assert_eq!(next_json(&mut public).await["data"], "still here");
}

/// tungstenite answers a ping by queueing a pong as it reads; our frames
/// go straight to the socket. While deliveries flow, every pong must still
/// go out promptly, and the client's Close still gets its Close back.
#[tokio::test]
async fn ws_pongs_and_the_close_reply_go_out_while_messages_flow() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.flowing").await;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let publisher = async {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            gw.publish_one("public.flowing", json!({"n": n})).await;
            n += 1;
        }
        n
    };
    let client = async {
        // Deliveries flow before the first ping.
        assert_eq!(next_json(&mut ws).await["type"], "message");
        let (during, closed) = pings_then_close_amid_texts(&mut ws).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (during, closed)
    };
    let (published, (during, closed)) = tokio::join!(publisher, client);
    assert!(closed, "the Close reply within 5 s");
    assert!(
        during > 0,
        "messages flowed while pinging: {published} published, {during} read between pings and pongs"
    );
}

/// A handshake on a raw TLS connection, `extra` bytes sent right behind it;
/// the answer's head as text, and the connection.
async fn raw_handshake(
    gw: &TestGateway,
    query: &str,
    extra: &[u8],
) -> (
    String,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = gw.tls_stream().await;
    let mut out = format!(
        "GET /realtime/ws{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pushgate.v1\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(extra);
    tls.write_all(&out).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut byte))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap().to_ascii_lowercase(), tls)
}

/// A connection's first request, when it is a WebSocket handshake on
/// `<realtime.path>/ws` and nothing follows it, is answered by the gateway
/// itself, without hyper (`h1/classify.rs`, `transport/ws/http1.rs`; hyper's
/// answers carry a `date` field, these do not): the socket then works as
/// one hyper upgraded; a refusal is answered and the connection closed; a
/// handshake with a frame right behind it goes to hyper, frame kept.
#[tokio::test]
async fn a_first_request_handshake_is_answered_without_hyper_and_serves_the_same() {
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let gw = TestGateway::start().await;
    let (head, tls) = raw_handshake(&gw, "?channels=public.direct", b"").await;
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    // RFC 6455 §1.3's sample key and answer.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(
        head.contains("sec-websocket-protocol: pushgate.v1\r\n"),
        "{head}"
    );
    assert!(!head.contains("date:"), "answered by hyper: {head}");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(tls, Role::Client, None).await;
    gw.publish_one("public.direct", json!({"n": 7})).await;
    let message = loop {
        let frame = next_json(&mut ws).await;
        if frame["type"] == "message" {
            break frame;
        }
    };
    assert_eq!(message["channel"], "public.direct");
    assert_eq!(message["data"], json!({"n": 7}));
    ws.send(Frame::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(&next_pong(&mut ws).await[..], b"p");

    // Refused (the channel needs a token): answered, then closed.
    let (head, mut tls) = raw_handshake(&gw, "?channels=orders.1", b"").await;
    assert!(head.starts_with("http/1.1 401 "), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut rest),
    )
    .await
    .expect("closed within 10 s");
    assert!(read.is_ok() || !rest.is_empty(), "{read:?}");

    // A masked ping right behind the handshake: hyper's, and answered.
    let ping = [0x89, 0x81, 1, 2, 3, 4, b'q' ^ 1];
    let (head, tls) = raw_handshake(&gw, "?channels=public.direct", &ping).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("date:"), "hyper answers this one: {head}");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(tls, Role::Client, None).await;
    assert_eq!(&next_pong(&mut ws).await[..], b"q");
}

/// The next pong, past any other frames.
async fn next_pong<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Frame::Pong(p))) => return p.to_vec(),
            Some(Ok(_)) => continue,
            other => panic!("no pong: {other:?}"),
        }
    }
}
