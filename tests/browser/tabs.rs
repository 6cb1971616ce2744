//! `shareAcrossTabs`: one server connection for all tabs, with failover.

use serde_json::json;

use crate::common::eventually;
use crate::harness::*;

#[tokio::test]
async fn tabs_share_one_connection_and_fail_over() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    let query = "channels=public.tabs&share=1&transports=websocket";
    b.open_page(&gw, query).await;
    b.until_transport("websocket", 15).await;
    let first = b.client.window().await.unwrap();
    let second = b.client.new_window(true).await.unwrap().handle;
    b.client.switch_to_window(second.clone()).await.unwrap();
    b.open_page(&gw, query).await;
    b.until(15, "the second tab follows", "return document.getElementById('role').textContent === 'follower' && document.getElementById('state').textContent === 'connected'").await;

    let ws_count = || async { gw.stats().await["transports"]["ws"].as_u64().unwrap() };
    assert_eq!(ws_count().await, 1, "two tabs, one connection");
    let mut ids = publish_range(&gw, "public.tabs", 0..20).await;
    let expected = |ids: &[String], n: u64| lines("public.tabs", ids, (0..n).map(|i| json!(i)));
    for tab in [&first, &second] {
        b.client.switch_to_window((*tab).clone()).await.unwrap();
        b.until_count(20, 15).await;
        assert_received(&b, &expected(&ids, 20)).await;
    }

    // A follower's send() goes through the leader's connection.
    let answer = b
        .js("return rt.send({from: 'follower'}).then((a) => JSON.stringify(a))")
        .await;
    assert_eq!(answer, json!("{\"echo\":{\"from\":\"follower\"}}"));
    assert_eq!(ws_count().await, 1);

    // Close the leader: the other tab takes over and resumes from its cursor.
    b.client.switch_to_window(first).await.unwrap();
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(second).await.unwrap();
    ids.extend(publish_range(&gw, "public.tabs", 20..30).await);
    b.until(
        15,
        "the second tab leads",
        "return document.getElementById('role').textContent === 'leader'",
    )
    .await;
    ids.extend(publish_range(&gw, "public.tabs", 30..40).await);
    b.until_count(40, 20).await;
    assert_received(&b, &expected(&ids, 40)).await;
    eventually(10, "one connection again", || async {
        ws_count().await == 1
    })
    .await;
    b.finish().await;
}
