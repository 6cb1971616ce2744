//! `client.js` in Chromium over a WebSocket with permessage-deflate, which
//! Chromium always offers: compressed messages arrive whole and in order,
//! the cursor frames that follow them keep the client's cursor, and a
//! reconnect resumes from it without gap or duplicate.

use serde_json::{Value, json};

use crate::harness::*;

/// Publish `range` on `channel` as strings long enough to go compressed.
async fn publish_padded(
    gw: &crate::common::TestGateway,
    channel: &str,
    range: std::ops::Range<u64>,
) -> (Vec<String>, Vec<Value>) {
    let (mut ids, mut data) = (Vec::new(), Vec::new());
    for i in range {
        let d = json!(format!("{i}:{}", "compressible ".repeat(40)));
        ids.push(gw.publish_one(channel, d.clone()).await);
        data.push(d);
    }
    (ids, data)
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn chromium_gets_compressed_messages_and_resumes_from_cursor_frames() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    b.open_page(
        &gw,
        "channels=public.dz&transports=websocket&token=dora::600",
    )
    .await;
    b.until_transport("websocket", 15).await;
    let (mut ids, mut data) = publish_padded(&gw, "public.dz", 0..20).await;
    b.until_count(20, 20).await;
    // Compressed messages carry no cursor: the frame after them does.
    let cursor = b.js("return window.rt.status().cursor").await;
    let want = format!("~public.dz~{}", ids[19]);
    assert!(
        cursor.as_str().is_some_and(|c| c.ends_with(&want)),
        "{cursor} should end with {want}"
    );
    // The operator cuts it: the client resumes from the cursor the last
    // cursor frame gave it.
    let r = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "dora"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["disconnected"], 1);
    let (more_ids, more) = publish_padded(&gw, "public.dz", 20..40).await;
    ids.extend(more_ids);
    data.extend(more);
    b.until_count(40, 20).await;
    assert_received(&b, &lines("public.dz", &ids, data.into_iter())).await;
    let metrics = gw.metrics_text().await;
    assert!(
        counter(&metrics, "pushgate_ws_deflate_negotiated_total") >= 2,
        "Chromium negotiated on both sockets: {metrics}"
    );
    assert!(counter(&metrics, "pushgate_ws_deflate_frames_total") >= 40);
    b.finish().await;
}

#[tokio::test]
async fn a_follower_tab_keeps_the_cursor_frames_and_resumes_from_them_as_leader() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    let query = "channels=public.dzt&share=1&transports=websocket";
    b.open_page(&gw, query).await;
    b.until_transport("websocket", 15).await;
    let first = b.client.window().await.unwrap();
    let second = b.client.new_window(true).await.unwrap().handle;
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.open_page(&gw, query).await;
    b.until(15, "the second tab follows", "return document.getElementById('role').textContent === 'follower' && document.getElementById('state').textContent === 'connected'").await;
    let (mut ids, mut data) = publish_padded(&gw, "public.dzt", 0..20).await;
    b.until_count(20, 20).await;
    // Compressed messages reach the follower without a cursor: the leader
    // relays the cursor frame after them.
    let want = format!("~public.dzt~{}", ids[19]);
    b.until(
        10,
        "the follower holds the last cursor frame's cursor",
        &format!("return (window.rt.status().cursor || '').endsWith('{want}')"),
    )
    .await;
    // Close the leader: the follower takes over and resumes from it.
    b.client.switch_to_window(first).await.unwrap();
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(second).await.unwrap();
    b.until(
        15,
        "the second tab leads",
        "return document.getElementById('role').textContent === 'leader'",
    )
    .await;
    let (more_ids, more) = publish_padded(&gw, "public.dzt", 20..40).await;
    ids.extend(more_ids);
    data.extend(more);
    b.until_count(40, 20).await;
    assert_received(&b, &lines("public.dzt", &ids, data.into_iter())).await;
    b.finish().await;
}
