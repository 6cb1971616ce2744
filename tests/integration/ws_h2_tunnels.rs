//! Tunnels to the application's own WebSocket are one thing whichever HTTP
//! version opened them: an extended CONNECT (RFC 8441) holds the server's
//! connection slot for the tunnel's life and ends after `backend.timeout`
//! without a byte, as an HTTP/1.1 upgrade does, and response taps see it
//! as the `GET` answered `101` an HTTP/1.1 upgrade is.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::h2_client::{self, extended_connect, websocket};
use crate::common::*;

const WS13: (&str, &str) = ("sec-websocket-version", "13");

/// Send `text` on `ws` and read it back from the echo application.
async fn echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Frame::text(text)).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo in time")
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Frame::text(text));
}

/// Wait (at most `secs`) for `ws` to end: a close frame, an error or the end.
async fn ends_within<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, secs: u64) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let ended = async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), ended)
        .await
        .is_ok()
}

#[tokio::test]
async fn an_h2_tunnel_holds_its_servers_slot_while_it_lasts() {
    let app = backend::app().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .backend_keys(", max_connections: 1, queue: { size: 1, timeout: 300ms }")
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let (resp, stream) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut ws = websocket(resp, stream).await;
    echo(&mut ws, "busy").await;
    // The server's one slot is the tunnel's: a request waits its turn in
    // line and is refused when none comes.
    let r = gw.http.get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 503, "the tunnel holds the server's only slot");
    echo(&mut ws, "still open").await;
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    eventually(5, "the closed tunnel's slot given back", || async {
        gw.http.get(gw.url("/echo")).send().await.unwrap().status() == 200
    })
    .await;
}

#[tokio::test]
async fn tunnels_end_after_backend_timeout_without_a_byte_on_either_version() {
    let app = backend::app().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .backend_timeouts("500ms", "1s")
        .start()
        .await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let (resp, stream) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut over_h2 = websocket(resp, stream).await;
    let mut over_h1 = gw.try_ws_with("/ws", None).await.expect("an h1 tunnel");
    // Bytes every 400 ms for 2 s, twice the timeout: both stay open.
    let talking = tokio::time::Instant::now();
    let mut n = 0;
    while talking.elapsed() < Duration::from_secs(2) {
        n += 1;
        echo(&mut over_h2, &format!("h2 {n}")).await;
        echo(&mut over_h1, &format!("h1 {n}")).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Then quiet: each ends soon after the timeout.
    assert!(
        ends_within(&mut over_h2, 10).await,
        "the quiet h2 tunnel ended"
    );
    assert!(
        ends_within(&mut over_h1, 10).await,
        "the quiet h1 tunnel ended"
    );
}

#[tokio::test]
async fn taps_see_an_h2_websocket_as_the_http1_upgrade() {
    let app = backend::app().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{}", app.addr()))
        .section(
            r#"taps:
  - match: { method: GET, path: /ws, status: 101 }
    channel: public.tapped
    event: opened
    data: "{response.status}"
  - match: { path: /ws }
    channel: public.tapped
    event: wrong"#,
        )
        .start()
        .await;
    let mut watcher = gw.ws("/realtime/ws?channels=public.tapped").await;
    let mut h2 = h2_client::connect(&gw, true).await;
    let (resp, stream) = extended_connect(&mut h2, &gw, "/ws", "websocket", &[WS13])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut over_h2 = websocket(resp, stream).await;
    echo(&mut over_h2, "tapped").await;
    let fired = next_json(&mut watcher).await;
    assert_eq!(fired["event"], "opened", "{fired}");
    assert!(fired["data"].to_string().contains("101"), "{fired}");
    // The same taps, and only those, fire for an HTTP/1.1 upgrade.
    let mut over_h1 = gw.try_ws_with("/ws", None).await.expect("an h1 tunnel");
    echo(&mut over_h1, "tapped").await;
    assert_eq!(next_json(&mut watcher).await["event"], "opened");
    // Nothing else fired: the next message is the marker.
    gw.publish_one("public.tapped", json!("marker")).await;
    assert_eq!(next_json(&mut watcher).await["data"], "marker");
}
