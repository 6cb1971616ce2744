//! WebSockets and tunnels on HTTP/2 streams count as connections of their
//! own: `max_connections` refuses the stream that would pass it (503
//! before the 200), and `per_ip.connections` caps the tunnels one address
//! holds to the application, however many streams its connection has; an
//! anonymous socket has a message budget of its own.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::h2_client::{self, body, extended_connect, websocket};
use crate::common::*;

const WS13: (&str, &str) = ("sec-websocket-version", "13");

#[tokio::test]
async fn h2_sockets_count_against_max_connections() {
    let gw = TestGateway::builder()
        .limits("  max_connections: 2")
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let path = "/realtime/ws?channels=public.cap";
    let (resp, stream) = extended_connect(&mut h2, &gw, path, "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut first = websocket(resp, stream).await;
    // The h2 connection and its one socket: two connections.
    eventually(5, "the socket counted beside its connection", || async {
        gw.stats().await["connections"] == 2
    })
    .await;
    for _ in 0..2 {
        let (resp, _) = extended_connect(&mut h2, &gw, path, "websocket", &[WS13])
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "a stream past max_connections");
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(body(resp).await["error"], "at_capacity");
    }
    // The open socket is untouched by the refusals.
    send_json(&mut first, json!({"op": "ping", "ref": 1})).await;
    assert_eq!(next_json(&mut first).await["ref"], 1);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    eventually(5, "the closed socket no longer counted", || async {
        gw.stats().await["connections"] == 1
    })
    .await;
    let (resp, _) = extended_connect(&mut h2, &gw, path, "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "its place is free again");
}

#[tokio::test]
async fn a_tunnel_flood_from_one_address_is_capped() {
    let app = backend::app().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .limits("  per_ip: { connections: 3 }")
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let (resp, stream) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        open.push(websocket(resp, stream).await);
    }
    // Every further stream, on this connection or another, is refused
    // before the application is asked.
    let other = h2_client::connect(&gw, true).await;
    for mut h2 in [h2.clone(), other, h2.clone()] {
        let (resp, _) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
            .await
            .unwrap();
        assert_eq!(resp.status(), 429, "a tunnel past per_ip.connections");
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(body(resp).await["error"], "rate_limited");
    }
    // HTTP/1.1 upgrades to the application are the same tunnels.
    match gw.try_ws_with("/ws", None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429)
        }
        other => panic!("an HTTP/1.1 tunnel past the cap: {:?}", other.map(|_| ())),
    }
    // Each open tunnel still works, and counts as a connection.
    for ws in &mut open {
        ws.send(Frame::text("still here")).await.unwrap();
        let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("an echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Frame::text("still here"));
    }
    // The first h2 connection (the other one is gone) and three tunnels.
    eventually(5, "each tunnel counted as a connection", || async {
        gw.stats().await["connections"] == 1 + 3
    })
    .await;
    // One closes: its address may open one again.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    drop(first);
    eventually(5, "the closed tunnel's slot given back", || async {
        let mut h2 = h2.clone();
        let (resp, _) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
            .await
            .unwrap();
        resp.status() == 200
    })
    .await;
}

#[tokio::test]
async fn anonymous_h2_sockets_have_a_message_budget_each() {
    // Two frames per minute per connection: the handshake spends one.
    let gw = TestGateway::builder()
        .limits("  per_client: { messages: { rate: 2/m, burst: 2 } }")
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let mut tabs = Vec::new();
    for _ in 0..4 {
        let (resp, stream) = extended_connect(&mut h2, &gw, "/realtime/ws", "websocket", &[WS13])
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "each tab's socket has its own budget");
        tabs.push(websocket(resp, stream).await);
    }
    for (i, ws) in tabs.iter_mut().enumerate() {
        send_json(ws, json!({"op": "ping", "ref": i})).await;
        let answer = next_json(ws).await;
        assert_eq!(answer["ref"], i);
        assert_ne!(answer["op"], "error", "{answer}");
    }
    // The budget is still enforced per socket.
    let ws = &mut tabs[0];
    send_json(ws, json!({"op": "ping", "ref": 9})).await;
    assert_eq!(next_json(ws).await["code"], "rate_limited");
}

/// Open `n` extended CONNECTs to `path` at once on one h2 connection of a
/// gateway with `max_connections: 3`, sampling the connection gauge the
/// while: the cap is one reservation, so no two streams can both take the
/// last place. Returns how many were answered 200 (their streams kept
/// open) and the highest gauge seen.
async fn race_for_places(gw: &TestGateway, path: &str, n: usize) -> (usize, u64, Vec<H2Open>) {
    let h2 = h2_client::connect(gw, true).await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let sampler = async {
        let mut highest = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            highest = highest.max(gw.stats().await["connections"].as_u64().unwrap());
            tokio::task::yield_now().await;
        }
        highest
    };
    let asks = (0..n).map(|_| {
        let mut h2 = h2.clone();
        async move {
            extended_connect(&mut h2, gw, path, "websocket", &[WS13])
                .await
                .unwrap()
        }
    });
    let opening = async {
        let answers = futures_util::future::join_all(asks).await;
        let mut opened = Vec::new();
        for (resp, stream) in answers {
            match resp.status().as_u16() {
                200 => opened.push(websocket(resp, stream).await),
                503 => assert_eq!(body(resp).await["error"], "at_capacity"),
                other => panic!("a stream answered {other}"),
            }
        }
        // Settled: every opened socket counted beside the h2 connection.
        eventually(5, "the opened sockets counted", || async {
            gw.stats().await["connections"] == 1 + opened.len() as u64
        })
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        opened
    };
    let (highest, opened) = tokio::join!(sampler, opening);
    (opened.len(), highest, opened)
}

type H2Open = h2_client::H2Ws;

#[tokio::test]
async fn concurrent_h2_sockets_never_pass_max_connections() {
    let gw = TestGateway::builder()
        .limits("  max_connections: 3")
        .start()
        .await;
    let (opened, highest, _open) =
        race_for_places(&gw, "/realtime/ws?channels=public.cap", 5).await;
    // The h2 connection holds one place: two sockets fill the rest.
    assert_eq!(opened, 2, "exactly the free places opened");
    assert!(highest <= 3, "the gauge passed the cap: {highest}");
}

#[tokio::test]
async fn concurrent_h2_tunnels_never_pass_max_connections() {
    let app = backend::app().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .limits("  max_connections: 3")
        .start()
        .await;
    let (opened, highest, mut open) = race_for_places(&gw, "/ws", 5).await;
    assert_eq!(opened, 2, "exactly the free places opened");
    assert!(highest <= 3, "the gauge passed the cap: {highest}");
    // A tunnel that ends gives its place back.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    drop(first);
    eventually(5, "the closed tunnel's place given back", || async {
        gw.stats().await["connections"] == 2
    })
    .await;
}
