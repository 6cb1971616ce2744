//! Rate and connection limits: each refusal is the documented answer, and a
//! flooding client does not slow anyone else down.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;

const SECRET: &str = "limits-secret";

fn token(sub: &str) -> String {
    pushgate::auth::mint_hs256(SECRET, sub, &[], Duration::from_secs(600), None, None).unwrap()
}

async fn gateway(limits: &str) -> TestGateway {
    TestGateway::builder()
        .jwt_secret(SECRET)
        .limits(limits)
        .start()
        .await
}

/// Send up to 5,000 frames made by `frame` while reading the answers, until
/// the gateway closes: how many `rate_limited` errors came, and the close
/// code (`None` when the close frame was lost: closing a socket with unread
/// flood in its buffer resets it).
async fn flood(ws: Ws, frame: impl Fn(usize) -> Frame + Send + 'static) -> (usize, Option<u16>) {
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..5000 {
            if tx.send(frame(i)).await.is_err() {
                break;
            }
        }
    });
    let mut limited = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .expect("the flooder is answered")
        {
            Some(Ok(Frame::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["code"] == "rate_limited" {
                    limited += 1;
                }
            }
            Some(Ok(Frame::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    sender.abort();
    (limited, close)
}

#[tokio::test]
async fn a_flooding_client_is_cut_off_and_others_keep_their_latency() {
    let gw = gateway("  per_client: { messages: { rate: 20/s, burst: 40 } }").await;
    let mut calm = gw
        .ws(&format!(
            "/realtime/ws?channels=public.lat&token={}",
            token("calm")
        ))
        .await;
    let flooder = gw
        .ws(&format!("/realtime/ws?token={}", token("flood")))
        .await;
    // The flooder sees rate_limited errors, then close 1013.
    let (limited, close) = flood(flooder, |i| {
        Frame::Text(json!({"op": "ping", "ref": i}).to_string().into())
    })
    .await;
    assert!(limited > 0);
    assert!(matches!(close, Some(1013) | None), "close {close:?}");

    // Meanwhile and after, the calm client's deliveries stay prompt.
    let mut worst = Duration::ZERO;
    for i in 0..30 {
        let sent = Instant::now();
        gw.publish_one("public.lat", json!(i)).await;
        assert_eq!(next_json(&mut calm).await["data"], i);
        worst = worst.max(sent.elapsed());
    }
    assert!(
        worst < Duration::from_millis(1500),
        "calm client's worst latency {worst:?}"
    );
}

#[tokio::test]
async fn per_client_connection_cap_is_429_with_retry_after() {
    let gw = gateway("  per_client: { connections: 2 }").await;
    let t = token("capped");
    let _a = gw
        .sse(&format!("/realtime/sse?channels=public.c&token={t}"), None)
        .await;
    let _b = gw
        .sse(&format!("/realtime/sse?channels=public.c&token={t}"), None)
        .await;
    let r = gw
        .http
        .get(gw.url(&format!("/realtime/sse?channels=public.c&token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "rate_limited");
    // Someone else is not affected.
    let _c = gw
        .sse(
            &format!("/realtime/sse?channels=public.c&token={}", token("other")),
            None,
        )
        .await;
}

#[tokio::test]
async fn new_connections_per_ip_are_rate_limited() {
    let gw = gateway("  per_ip: { connects: { rate: 1/m, burst: 3 } }").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        // A fresh client each time: a new TCP connection per request.
        let client = gw.fresh_client();
        let r = client
            .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn max_connections_answers_503() {
    let gw = gateway("  max_connections: 2").await;
    let _a = gw.tls_stream().await;
    let _b = gw.tls_stream().await;
    eventually(5, "two connections counted", || async {
        gw.stats().await["connections"] == 2
    })
    .await;
    let client = gw.fresh_client();
    let r = client
        .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "at_capacity");
}

#[tokio::test]
async fn max_connections_counts_websockets() {
    let gw = gateway("  max_connections: 2").await;
    let poll_status = || async {
        gw.fresh_client()
            .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
            .send()
            .await
            .unwrap()
    };
    let mut a = gw.ws("/realtime/ws?channels=public.cap").await;
    let _b = gw.ws("/realtime/ws?channels=public.cap").await;
    eventually(5, "two WebSockets counted", || async {
        let stats = gw.stats().await;
        stats["connections"] == 2 && stats["transports"]["ws"] == 2
    })
    .await;
    let r = poll_status().await;
    assert_eq!(r.status(), 503, "upgraded connections fill the gateway too");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "at_capacity");
    // One closes: its place is free again.
    a.close(None).await.unwrap();
    while a.next().await.is_some() {}
    eventually(5, "the closed WebSocket no longer counted", || async {
        gw.stats().await["connections"] == 1
    })
    .await;
    assert_eq!(poll_status().await.status(), 200);
}

#[tokio::test]
async fn concurrent_upgrades_never_pass_max_connections() {
    let gw = gateway("  max_connections: 3").await;
    // Five handshakes at once: each connection reserves its place at accept
    // and its WebSocket keeps it past the upgrade, so exactly three open.
    let tries = (0..5).map(|_| gw.try_ws("/realtime/ws?channels=public.cap"));
    let mut open = Vec::new();
    for tried in futures_util::future::join_all(tries).await {
        match tried {
            Ok(ws) => open.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 503)
            }
            Err(other) => panic!("a handshake failed otherwise: {other}"),
        }
    }
    assert_eq!(open.len(), 3, "exactly max_connections opened");
    eventually(5, "three WebSockets counted", || async {
        let stats = gw.stats().await;
        stats["connections"] == 3 && stats["transports"]["ws"] == 3
    })
    .await;
    // A further connection is refused and holds no place.
    assert!(gw.try_ws("/realtime/ws").await.is_err());
    assert_eq!(gw.stats().await["connections"], 3);
    // One closes: its place is free for the next.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    eventually(5, "the closed WebSocket's place given back", || async {
        gw.try_ws("/realtime/ws").await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn publish_and_subscribe_limits() {
    let gw = gateway(
        r#"  publish: { rate: 5/s, burst: 5 }
  per_client: { subscribes: { rate: 1/m, burst: 3 } }"#,
    )
    .await;
    let batch: Vec<_> = (0..6)
        .map(|i| json!({"channel": "public.p", "data": i}))
        .collect();
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = gw.admin_get("/channels/public.p").await;
    assert_eq!(
        v["history"]["length"], 0,
        "a refused batch publishes nothing"
    );

    let mut ws = gw
        .ws(&format!("/realtime/ws?token={}", token("subscriber")))
        .await;
    for i in 0..3 {
        send_json(
            &mut ws,
            json!({"op": "subscribe", "channel": format!("public.s{i}"), "ref": i}),
        )
        .await;
        assert_eq!(next_json(&mut ws).await["type"], "ack");
    }
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.s9", "ref": 9}),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_i64()),
        (Some("rate_limited"), Some(9))
    );
}

#[tokio::test]
async fn a_ping_flood_counts_as_a_flood() {
    let gw = gateway("  per_client: { messages: { rate: 20/s, burst: 40 } }").await;
    let flooder = gw
        .ws(&format!("/realtime/ws?token={}", token("pinger")))
        .await;
    // Control frames are charged like any frame: rate_limited errors, then 1013.
    let (limited, close) = flood(flooder, |_| Frame::Ping(Default::default())).await;
    assert!(limited > 0, "a ping flood is refused like any other");
    assert!(matches!(close, Some(1013) | None), "close {close:?}");
}

#[tokio::test]
async fn anonymous_browsers_behind_one_address_connect_with_the_defaults() {
    // The shipped defaults (only a JWT secret, so a subject can connect too).
    let gw = gateway("").await;
    let started = Instant::now();
    let browsers: Vec<Ws> = futures_util::stream::iter(0..300)
        .map(|_| gw.ws("/realtime/ws?channels=public.office"))
        .buffer_unordered(32)
        .collect()
        .await;
    let took = started.elapsed();
    assert_eq!(browsers.len(), 300);
    assert!(
        took < Duration::from_secs(15),
        "300 anonymous browsers took {took:?}"
    );
    eventually(5, "all 300 counted", || async {
        gw.stats().await["transports"]["ws"] == 300
    })
    .await;

    // A subject over its own `per_client.connections` (20) is still refused.
    let path = format!(
        "/realtime/ws?channels=public.office&token={}",
        token("desk")
    );
    let mut own = Vec::new();
    for _ in 0..20 {
        own.push(gw.ws(&path).await);
    }
    match gw.try_ws(&path).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        Err(e) => panic!("refused otherwise: {e}"),
        Ok(_) => panic!("the 21st connection of one subject was accepted"),
    }
}

#[tokio::test]
async fn an_auth_op_counts_the_connection_against_its_subject() {
    // Anonymous sockets that each authenticate as one subject must not get
    // past that subject's `per_client.connections`.
    let gw = gateway("  per_client: { connections: 2 }").await;
    let t = token("capped");
    let mut sockets = Vec::new();
    let mut answers = Vec::new();
    for i in 0..3 {
        let mut ws = gw.ws("/realtime/ws").await;
        ws.send(Frame::Text(
            json!({"op": "auth", "token": t, "ref": i})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        let answer = next_json(&mut ws).await;
        answers.push((answer["type"].clone(), answer["code"].clone()));
        sockets.push(ws);
    }
    assert_eq!(answers[0].0, "ack");
    assert_eq!(answers[1].0, "ack");
    assert_eq!(
        answers[2],
        (json!("error"), json!("rate_limited")),
        "{answers:?}"
    );
    // A token connection of the same subject is refused too: both slots are held.
    let r = gw
        .http
        .get(gw.url(&format!("/realtime/sse?channels=public.c&token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Closing one authenticated socket gives its slot back.
    drop(sockets.remove(0));
    eventually(5, "the closed socket's slot is free again", || async {
        gw.http
            .get(gw.url(&format!(
                "/realtime/poll?channels=public.c&timeout=0&token={t}"
            )))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
}
