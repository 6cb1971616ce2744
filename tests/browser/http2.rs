//! Chromium's WebSocket over HTTP/2 (RFC 8441): a page served over h2 by
//! the TLS listener opens its WebSocket on the same connection, and the
//! gateway's `http` label on `pushgate_websocket_connects_total` shows which
//! HTTP version carried it; with HTTP/2 switched off in the browser the same
//! page's socket is an HTTP/1.1 upgrade.

use serde_json::json;

use crate::common::TestGateway;
use crate::harness::*;

/// The count of `pushgate.v1` WebSockets opened over HTTP `http`.
async fn ws_connects(gw: &TestGateway, http: &str) -> u64 {
    let line = format!("pushgate_websocket_connects_total{{transport=\"ws\",http=\"{http}\"}} ");
    gw.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Open the page over `switches`, receive a publish over WebSocket; the
/// number of sockets opened over HTTP/1.1 and over HTTP/2.
async fn page_receives(switches: &[&str], channel: &str) -> (u64, u64) {
    let gw = gateway("").await;
    let b = Browser::start_with(switches).await;
    b.open_page(&gw, &format!("channels={channel}&transports=websocket"))
        .await;
    b.until_transport("websocket", 15).await;
    let ids = publish_range(&gw, channel, 0..3).await;
    b.until_count(3, 15).await;
    assert_received(&b, &lines(channel, &ids, (0..3).map(|i| json!(i)))).await;
    // What the page itself says it loaded over.
    let protocol = b
        .js("return performance.getEntriesByType('navigation')[0].nextHopProtocol")
        .await;
    let counts = (ws_connects(&gw, "1.1").await, ws_connects(&gw, "2").await);
    b.finish().await;
    let expected = if switches.contains(&"--disable-http2") {
        "http/1.1"
    } else {
        "h2"
    };
    assert_eq!(protocol, json!(expected), "the page's own protocol");
    counts
}

#[tokio::test]
async fn a_page_served_over_h2_opens_its_websocket_on_http2() {
    assert_eq!(page_receives(&[], "public.h2page").await, (0, 1));
}

#[tokio::test]
async fn without_http2_the_same_page_upgrades_over_http1() {
    assert_eq!(
        page_receives(&["--disable-http2"], "public.h1page").await,
        (1, 0)
    );
}

/// `client.js` hands bytes to the page as an `ArrayBuffer` on every
/// transport: binary frames on WebSocket (over HTTP/2 here), base64 on SSE
/// and long-poll.
#[tokio::test]
async fn client_js_hands_bytes_to_the_page_as_an_array_buffer() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    let bytes: Vec<u8> = vec![0, 10, 34, 92, 127, 128, 200, 255];
    for transport in ["websocket", "sse", "poll"] {
        let channel = format!("chat.bytes-{transport}");
        b.open_page(&gw, &format!("channels={channel}&transports={transport}"))
            .await;
        b.until_transport(transport, 15).await;
        b.js(&format!(
            "window.got = []; window.rt.subscribe('{channel}', (d, m) => window.got.push({{ \
             buffer: d instanceof ArrayBuffer, bytes: Array.from(new Uint8Array(d)), \
             encoding: m.encoding, event: m.event }}))"
        ))
        .await;
        let resp = gw
            .admin(
                reqwest::Method::POST,
                &format!("/publish/{channel}?event=blob"),
            )
            .header("content-type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        b.until(15, "bytes received", "return window.got.length >= 1")
            .await;
        let got = b.js("return window.got[0]").await;
        // How they travelled: a binary frame, or base64 in JSON.
        let encoding = if transport == "websocket" {
            "binary"
        } else {
            "base64"
        };
        assert_eq!(
            got,
            json!({"buffer": true, "bytes": bytes, "encoding": encoding, "event": "blob"}),
            "{transport}"
        );
        // And back: the page publishes bytes (a binary frame on WebSocket,
        // `data_base64` over HTTP) and gets them as bytes.
        let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
        let answer = b
            .js(&format!(
                "return window.rt.publish('{channel}', new Uint8Array({reversed:?}), 'up').then((a) => a.channel)"
            ))
            .await;
        assert_eq!(answer, json!(channel), "{transport}");
        b.until(15, "own bytes back", "return window.got.length >= 2")
            .await;
        let back = b.js("return window.got[1]").await;
        assert_eq!(
            (&back["bytes"], &back["event"], &back["buffer"]),
            (&json!(reversed), &json!("up"), &json!(true)),
            "{transport}"
        );
    }
    assert_eq!(ws_connects(&gw, "2").await, 1);
    b.finish().await;
}
