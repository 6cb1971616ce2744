//! Graceful shutdown: stop accepting, tell realtime clients to reconnect,
//! let in-flight proxied requests finish.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;

#[tokio::test]
async fn shutdown_drains_every_kind_of_client() {
    let backend = backend::app().await;
    let mut gw = TestGateway::builder().backend(&backend.url).start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.d").await;
    let mut sse = gw.sse("/realtime/sse?channels=public.d", None).await;
    gw.publish_one("public.d", json!(1)).await;
    assert_eq!(next_json(&mut ws).await["data"], 1);
    assert_eq!(sse.expect().await.json()["data"], 1);

    let http = gw.http.clone();
    let inflight = tokio::spawn({
        let url = gw.url("/delay?shutdown-drains");
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let poll = tokio::spawn({
        let req = gw.http.get(gw.url("/realtime/poll?channels=public.d"));
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    eventually(5, "poll and proxied request in flight", || async {
        gw.stats().await["transports"]["poll"] == 1
    })
    .await;
    eventually(5, "the proxied request reached the application", || async {
        backend.has_seen("/delay?shutdown-drains")
    })
    .await;

    let public = gw.public;
    let started = std::time::Instant::now();
    gw.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained within the grace period"
    );

    // WebSocket: a reconnect notice with the cursor, then close 1012.
    let notice = next_json(&mut ws).await;
    assert_eq!(notice["type"], "reconnect");
    assert!(notice["cursor"].is_string());
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        Some(Ok(Frame::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
    // SSE: a reconnect event with a short retry (250 ms plus at most the
    // default `realtime.reconnect_spread` of 1s), then the stream ends.
    let ev = sse.expect().await;
    assert_eq!(ev.event, "reconnect");
    assert!(
        sse.last_retry.is_some_and(|r| (250..1250).contains(&r)),
        "{:?}",
        sse.last_retry
    );
    assert!(sse.next_event().await.is_none());
    // Long-poll answered, proxied request finished.
    assert_eq!(poll.await.unwrap()["messages"], json!([]));
    assert_eq!(inflight.await.unwrap(), "done after delay");
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(public).await.is_err());
}

#[tokio::test]
async fn shutdown_ends_websocket_tunnels_to_the_application() {
    let backend = backend::start().await;
    let mut gw = TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .start()
        .await;
    let mut ws = gw
        .try_ws_with("/ws", None)
        .await
        .expect("tunnelled handshake");
    ws.send(Frame::Text("before".into())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(echoed, Ok(Some(Ok(Frame::Text(_))))),
        "the tunnel works"
    );

    gw.stop().await;

    // The tunnel is closed by the shutdown, not left running past it.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the tunnel outlived the gateway's shutdown");
}
