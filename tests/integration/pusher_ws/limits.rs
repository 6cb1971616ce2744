//! What a Pusher socket may ask for: a reconnect's burst of subscribes,
//! subscribes refused by the frame or subscribe limits (each answered on
//! its channel), and Pusher's presence limits (members, `user_info`).

use serde_json::{Value, json};

use super::*;

/// A gateway with the test apps and `limits` as the `limits:` section.
async fn limited(limits: &str) -> TestGateway {
    let dir = temp_dir("pusher-ws-limits");
    let text = format!("{}\nlimits:\n{limits}\n", config(&dir, true));
    TestGateway::start_yaml(&text, dir).await
}

async fn subscribe_public(ws: &mut Ws, channel: &str) {
    send_json(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    )
    .await;
}

/// The status of a `pusher:subscription_error` on `channel`.
fn refused_status(frame: &Value, channel: &str) -> u64 {
    assert_eq!(frame["event"], "pusher:subscription_error", "{frame}");
    assert_eq!(frame["channel"], channel, "{frame}");
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    data["status"].as_u64().unwrap()
}

/// Subscribe to presence `channel` with `channel_data` as this exact text,
/// signed as the app would; the answer.
async fn presence_subscribe(ws: &mut Ws, socket_id: &str, channel: &str, data: &str) -> Value {
    let auth = sign(socket_id, channel, Some(data));
    send_json(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}),
    )
    .await;
    next_event(ws).await
}

#[tokio::test]
async fn a_reconnects_subscribes_pass_the_frame_limit_and_a_limited_one_is_answered() {
    // Five frames a minute, thirty channels a connection.
    let gw = limited(
        "  max_channels_per_connection: 30\n  per_client: { messages: { rate: 1/m, burst: 5 } }",
    )
    .await;
    let (mut ws, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    // All at once, as pusher-js resubscribes after a reconnect.
    for n in 1..=30 {
        subscribe_public(&mut ws, &format!("news-{n}")).await;
    }
    for n in 1..=30 {
        let ok = next_event(&mut ws).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "news-{n}: {ok}"
        );
        assert_eq!(ok["channel"], format!("news-{n}"));
    }
    // The frame limit still holds for everything else: within the five
    // (the opening took one), pings are answered, then refused...
    let mut answers = Vec::new();
    for _ in 0..6 {
        send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
        answers.push(next_event(&mut ws).await["event"].clone());
    }
    assert!(
        answers[..4].iter().all(|a| a == "pusher:pong"),
        "{answers:?}"
    );
    assert_eq!(answers[5], "pusher:error", "{answers:?}");
    // ...and a subscribe past the connection's channels that it refuses is
    // answered on its channel, so pusher-js does not wait forever.
    subscribe_public(&mut ws, "news-31").await;
    assert_eq!(refused_status(&next_event(&mut ws).await, "news-31"), 429);
}

#[tokio::test]
async fn repeated_and_refused_subscribes_are_charged_to_the_subscribe_limit() {
    let gw = limited("  per_ip: { subscribes: { rate: 1/m, burst: 3 } }").await;
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let data = r#"{"user_id":"u1"}"#;
    let ok = presence_subscribe(&mut ws, &id, "presence-again", data).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    // A refused one costs a subscribe too.
    subscribe_public(&mut ws, "no such name").await;
    assert_eq!(
        refused_status(&next_event(&mut ws).await, "no such name"),
        400
    );
    let again = presence_subscribe(&mut ws, &id, "presence-again", data).await;
    assert_eq!(again["event"], "pusher_internal:subscription_succeeded");
    let over = presence_subscribe(&mut ws, &id, "presence-again", data).await;
    assert_eq!(refused_status(&over, "presence-again"), 429);
}

#[tokio::test]
async fn presence_channels_keep_pushers_member_and_user_info_limits() {
    let gw = gateway().await;
    // A numeric user_id, signed as sent.
    let (mut first, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let data = r#"{"user_id":42,"user_info":{"n":1}}"#;
    let ok = presence_subscribe(&mut first, &id, "presence-full", data).await;
    let members: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(members["presence"]["ids"], json!(["42"]), "{ok}");
    assert_eq!(members["presence"]["hash"]["42"], json!({"n": 1}), "{ok}");

    // user_info over 1 KB: 413, the socket stays.
    let (mut big, big_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let info = "x".repeat(1100);
    let data = format!(r#"{{"user_id":"big","user_info":{{"n":"{info}"}}}}"#);
    let refused = presence_subscribe(&mut big, &big_id, "presence-full", &data).await;
    assert_eq!(refused_status(&refused, "presence-full"), 413);

    // 99 more users fill the channel to Pusher's 100 members.
    let mut sockets = Vec::new();
    for n in 1..100 {
        let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
        let data = format!(r#"{{"user_id":"u{n}"}}"#);
        let ok = presence_subscribe(&mut ws, &id, "presence-full", &data).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "u{n}: {ok}"
        );
        sockets.push(ws);
    }
    // A 101st user is refused; another tab of a member is not.
    let data = r#"{"user_id":"late"}"#;
    let refused = presence_subscribe(&mut big, &big_id, "presence-full", data).await;
    assert_eq!(refused_status(&refused, "presence-full"), 403);
    let (mut tab, tab_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let ok = presence_subscribe(&mut tab, &tab_id, "presence-full", r#"{"user_id":"u7"}"#).await;
    let members: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(members["presence"]["count"], 100, "{ok}");
}

#[tokio::test]
async fn binary_and_ping_frames_count_against_the_frame_limit() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let gw = limited("  per_client: { messages: { rate: 1/m, burst: 5 } }").await;
    for frame in [Frame::binary(vec![1u8; 8]), Frame::Ping(vec![1u8].into())] {
        let (mut ws, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
        // Sent until the gateway closes: a flood is closed 4100 whatever
        // frames it is made of.
        let mut code = None;
        for _ in 0..100 {
            if ws.send(frame.clone()).await.is_err() {
                break;
            }
        }
        while code.is_none() {
            match next_or_close(&mut ws).await {
                Ok(v) => assert_eq!(v["event"], "pusher:error", "{v}"),
                Err(c) => code = Some(c),
            }
        }
        assert_eq!(code, Some(4100), "{frame:?}");
    }
}

/// The frames of a socket refused over capacity: `pusher:error` 4100, then
/// the close 4100, which pusher-js reads as "back off, then reconnect".
async fn told_over_capacity<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message as Frame;
    let mut frames = Vec::new();
    let code = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5s");
        match frame {
            Some(Ok(Frame::Text(t))) => frames.push(serde_json::from_str::<Value>(&t).unwrap()),
            Some(Ok(Frame::Close(c))) => break c.map_or(0, |c| u16::from(c.code)),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 4100, "{frames:?}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["event"], "pusher:error");
    assert_eq!(frames[0]["data"]["code"], 4100, "{frames:?}");
}

/// A gateway at its capacity (`max_connections: 2`), both places held: by
/// an HTTP/2 connection (open for more streams) and by a TLS connection.
async fn at_capacity() -> (
    TestGateway,
    h2::client::SendRequest<bytes::Bytes>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let gw = limited("  max_connections: 2").await;
    let h2 = crate::common::h2_client::connect(&gw, true).await;
    let held = gw.tls_stream().await;
    eventually(5, "two connections counted", || async {
        gw.stats().await["connections"] == 2
    })
    .await;
    (gw, h2, held)
}

/// Over the gateway's `max_connections`, a Pusher client is told 4100 in
/// its own frames (over HTTP/1.1, HTTP/2 and the HTTP fallback), where any
/// other request is answered 503.
#[tokio::test]
async fn over_the_gateways_capacity_a_pusher_client_reads_4100() {
    use crate::common::h2_client::{extended_connect, websocket};
    let (gw, mut h2, _held) = at_capacity().await;
    // A new connection: the refusal at accept.
    let mut ws = gw
        .try_ws_with(&format!("/app/{KEY}?protocol=7"), None)
        .await
        .expect("the upgrade is accepted to say why");
    told_over_capacity(&mut ws).await;
    let client = gw.fresh_client();
    let r = client
        .post(gw.url(&format!("/pusher/app/{KEY}/123/abcd/xhr_streaming")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "o\nc[4100,\"Over capacity\"]\n");
    let r = client
        .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "anything else is refused as before");
    // A stream of an HTTP/2 connection already open: one socket more.
    let (resp, stream) = extended_connect(
        &mut h2,
        &gw,
        &format!("/app/{KEY}?protocol=7"),
        "websocket",
        &[("sec-websocket-version", "13")],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "accepted to say why");
    let mut ws = websocket(resp, stream).await;
    told_over_capacity(&mut ws).await;
}

/// Whatever the Pusher answer over `max_connections` (the HTTP fallback's
/// 4100, a bad handshake's 4xx, anyone's 503), the connection ends with it:
/// a client retrying on its pooled connection, or a hostile one, cannot
/// keep a refused connection open past the cap. Over HTTP/2 the refused
/// connection is sent GOAWAY.
#[tokio::test]
async fn a_connection_refused_over_capacity_is_closed_after_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = limited("  max_connections: 2").await;
    let _held = (gw.tls_stream().await, gw.tls_stream().await);
    eventually(5, "two connections counted", || async {
        gw.stats().await["connections"] == 2
    })
    .await;
    let xhr = format!(
        "POST /pusher/app/{KEY}/123/abcd/xhr_streaming HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    );
    let no_key = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let other = "GET /realtime/poll?channels=a&timeout=0 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (request, expect) in [
        (xhr.as_str(), "c[4100,"),
        (no_key.as_str(), "HTTP/1.1 4"),
        (other, "503 "),
    ] {
        let mut tls = gw.tls_stream().await;
        // Two requests back to back, as a keep-alive client may send them:
        // only the first is answered, then the connection ends.
        tls.write_all(format!("{request}{request}").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "the connection is closed: {answer}");
        assert!(answer.contains(expect), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert_eq!(
            answer.matches("\r\nconnection: close").count(),
            1,
            "{answer}"
        );
    }
    // HTTP/2: the refused stream is answered, then GOAWAY: no request
    // after it reaches the gateway.
    let mut h2 = crate::common::h2_client::connect(&gw, true).await;
    let req = http::Request::get(gw.url("/realtime/poll?channels=a&timeout=0"))
        .body(())
        .unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 503);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no GOAWAY within 5s"
        );
        let req = http::Request::get(gw.url("/realtime/poll?channels=a&timeout=0"))
            .body(())
            .unwrap();
        let refused = match h2.clone().ready().await {
            Ok(mut ready) => match ready.send_request(req, true) {
                Ok((resp, _)) => resp.await.is_err(),
                Err(_) => true,
            },
            Err(_) => true,
        };
        if refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reserve of refusals over `max_connections` is shared fairly: 32
/// sockets being told 4100 at once each hold a slot, the 33rd is answered
/// 503; and one HTTP/2 connection holds one slot at a time, however many
/// extended CONNECT streams it opens.
#[tokio::test]
async fn the_refusal_reserve_holds_32_and_one_per_connection() {
    use crate::common::h2_client::extended_connect;
    let (gw, mut h2, _held) = at_capacity().await;
    let path = format!("/app/{KEY}?protocol=7");
    // Held unread: each refusal waits for the client's close, keeping its
    // slot (for up to 5s).
    let refused =
        futures_util::future::join_all((0..32).map(|_| gw.try_ws_with(&path, None))).await;
    let refused: Vec<_> = refused
        .into_iter()
        .map(|r| r.expect("accepted to be told 4100"))
        .collect();
    match gw.try_ws_with(&path, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503)
        }
        other => panic!("the 33rd: {:?}", other.map(|_| ())),
    }
    drop(refused);
    // A stream of an open h2 connection takes a slot once the others are
    // back; a second stream of the same connection, while the first is
    // held, is answered 503.
    let headers = [("sec-websocket-version", "13")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let _first = loop {
        let (resp, stream) = extended_connect(&mut h2, &gw, &path, "websocket", &headers)
            .await
            .unwrap();
        if resp.status() == 200 {
            break (resp, stream);
        }
        assert!(tokio::time::Instant::now() < deadline, "slots back in 5s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (resp, _) = extended_connect(&mut h2, &gw, &path, "websocket", &headers)
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "one slot per connection");
}
