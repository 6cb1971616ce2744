//! Every delivered message is counted once, the same in `/stats`
//! (`messages.delivered`) and `/metrics` (`pushgate_messages_delivered_total`),
//! whichever transport wrote it: SSE over HTTP/1 (the direct path), SSE over
//! HTTP/2 (through hyper), WebSocket, long-poll, and replays.

use serde_json::json;

use crate::common::*;

/// `messages.delivered` from `/stats` and the Prometheus counter, in that order.
async fn counts(gw: &TestGateway) -> (u64, u64) {
    let stats = gw.stats().await["messages"]["delivered"]
        .as_u64()
        .unwrap_or_else(|| panic!("no delivered count in /stats"));
    let text = gw.metrics_text().await;
    let metric = text
        .lines()
        .find_map(|l| l.strip_prefix("pushgate_messages_delivered_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no delivered counter in\n{text}"));
    (stats, metric)
}

#[tokio::test]
async fn every_transport_counts_each_delivery_once_in_stats_and_metrics() {
    const SENT: usize = 5;
    let gw = TestGateway::start().await;
    let path = "/realtime/sse?channels=public.count";
    let mut h1 = gw.sse(path, None).await;
    let resp = gw.http.get(gw.url(path)).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut h2 = SseReader::new(resp);
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.count", "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    assert_eq!(counts(&gw).await, (0, 0), "nothing delivered yet");

    for n in 0..SENT {
        gw.publish_one("public.count", json!(n)).await;
    }
    let mut first_id = None;
    for n in 0..SENT {
        let ev = h1.expect().await;
        assert_eq!(ev.json()["data"], n);
        first_id.get_or_insert(ev.id);
        assert_eq!(h2.expect().await.json()["data"], n);
        assert_eq!(next_json(&mut ws).await["data"], n);
    }
    let live = 3 * SENT as u64;
    assert_eq!(counts(&gw).await, (live, live), "three live subscribers");

    // A resume replays what followed the first message, over each path.
    let first_id = first_id.flatten().expect("events carry ids");
    let mut resumed = gw.sse(path, Some(&first_id)).await;
    for n in 1..SENT {
        assert_eq!(resumed.expect().await.json()["data"], n);
    }
    let (status, poll) = gw.poll(&format!("cursor={first_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(poll["messages"].as_array().map(Vec::len), Some(SENT - 1));
    let all = live + 2 * (SENT as u64 - 1);
    assert_eq!(counts(&gw).await, (all, all), "replays count too");
}
