//! Mercure streams on one HTTP/2 connection are apart: a subscriber that
//! stopped reading its stream is evicted and that stream ends alone, while
//! the other streams on the connection go on.

use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;

use super::{PUB_SECRET, publish};
use crate::common::h2_client;
use crate::common::*;

/// Open a Mercure stream for `topic` on `h2`: its body.
async fn subscribe(h2: &mut SendRequest<Bytes>, gw: &TestGateway, topic: &str) -> RecvStream {
    let url = gw.url(&format!("/.well-known/mercure?topic={topic}"));
    let req = http::Request::get(url).body(()).unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    let resp = resp.await.expect("an answer");
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

/// Read `body` (giving its window back) until `needle` arrives. Panics when
/// the stream ends or errs first, or after 10 s.
async fn read_until(body: &mut RecvStream, needle: &str) {
    let mut text = String::new();
    let reading = async {
        while !text.contains(needle) {
            let chunk = body.data().await.expect("the stream goes on").unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("in time");
}

#[tokio::test]
async fn an_evicted_mercure_stream_ends_alone_on_its_h2_connection() {
    let gw = TestGateway::builder()
        .tag("mercure")
        .realtime("  client_queue: 8\n  max_message: 64KiB")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  anonymous: true\n"
        ))
        .start()
        .await;
    let mut h2 = h2_client::connect_small_stream_windows(&gw).await;
    let mut stuck = subscribe(&mut h2, &gw, "https://example.com/stuck").await;
    let mut live = subscribe(&mut h2, &gw, "https://example.com/live").await;
    eventually(5, "both streams subscribed", || async {
        gw.stats().await["transports"]["sse"] == 2
    })
    .await;
    // The stuck stream's window fills, then what the gateway holds for it:
    // far more than both, so it is evicted.
    let pad = "x".repeat(4 * 1024);
    for n in 0..100 {
        let data = format!("n={n} {pad}");
        publish(
            &gw,
            &[("topic", "https://example.com/stuck"), ("data", &data)],
        )
        .await;
    }
    // Its neighbour on the same connection goes on.
    for n in 0..3 {
        let marker = format!("still-live-{n}");
        publish(
            &gw,
            &[("topic", "https://example.com/live"), ("data", &marker)],
        )
        .await;
        read_until(&mut live, &marker).await;
    }
    // Read at last, the evicted stream ends by itself, short of the flood's end.
    let ended = async {
        let mut text = String::new();
        loop {
            match stuck.data().await {
                Some(Ok(chunk)) => {
                    let _ = stuck.flow_control().release_capacity(chunk.len());
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
                Some(Err(_)) | None => return text,
            }
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the evicted stream ends");
    assert!(text.contains("n=0 "), "it had the flood's start");
    assert!(!text.contains("n=99 "), "evicted before the flood's end");
    eventually(5, "the eviction counted", || async {
        gw.stats().await["evicted"].as_u64() >= Some(1)
    })
    .await;
    publish(
        &gw,
        &[("topic", "https://example.com/live"), ("data", "after")],
    )
    .await;
    read_until(&mut live, "after").await;
}
