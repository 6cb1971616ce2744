use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

async fn poll(gw: &TestGateway, query: &str) -> (u16, Value) {
    gw.poll(query).await
}

#[tokio::test]
async fn poll_holds_until_a_message_then_resumes_by_cursor() {
    let gw = TestGateway::start().await;
    let publisher = async {
        // Once the poll is held (subscribed, waiting for a live message).
        eventually(5, "the poll is held", || async {
            gw.stats().await["transports"]["poll"] == 1
        })
        .await;
        gw.publish_one("public.p", json!("first")).await
    };
    let (id, (status, body)) = tokio::join!(publisher, poll(&gw, "channels=public.p"));
    assert_eq!(status, 200);
    assert_eq!(body["messages"][0]["id"], id);
    assert_eq!(body["messages"][0]["data"], "first");
    let cursor = body["cursor"].as_str().unwrap().to_string();

    // Messages waiting in history: answered at once, in order.
    for i in 0..3 {
        gw.publish_one("public.p", json!(i)).await;
    }
    let started = Instant::now();
    let (_, body) = poll(&gw, &format!("channels=public.p&cursor={cursor}")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let data: Vec<Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(data, vec![json!(0), json!(1), json!(2)]);
    let cursor2 = body["cursor"].as_str().unwrap();
    assert_eq!(body["messages"][2]["cursor"], cursor2);

    // Nothing new: held for the poll timeout, then an empty answer keeping the cursor.
    let (_, body) = poll(
        &gw,
        &format!("channels=public.p&cursor={cursor2}&timeout=1"),
    )
    .await;
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["cursor"], cursor2);
}

#[tokio::test]
async fn poll_timeout_is_bounded_by_config() {
    let gw = TestGateway::builder()
        .realtime("  poll_timeout: 300ms")
        .start()
        .await;
    let started = Instant::now();
    let (status, body) = poll(&gw, "channels=public.t").await;
    assert_eq!(status, 200);
    assert_eq!(body["messages"], json!([]));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn poll_cursor_switches_to_websocket_and_back() {
    let gw = TestGateway::start().await;
    gw.publish_one("public.s", json!("before")).await;
    let (_, body) = poll(&gw, "channels=public.s&timeout=1").await;
    let cursor = body["cursor"].as_str().unwrap().to_string();
    gw.publish_one("public.s", json!("missed")).await;
    let mut ws = gw
        .ws(&format!("/realtime/ws?channels=public.s&cursor={cursor}"))
        .await;
    let m = next_json(&mut ws).await;
    assert_eq!(m["data"], "missed");
    let ws_cursor = m["cursor"].as_str().unwrap().to_string();
    drop(ws);
    gw.publish_one("public.s", json!("later")).await;
    let (_, body) = poll(&gw, &format!("cursor={ws_cursor}")).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["messages"][0]["data"], "later");
}

#[tokio::test]
async fn poll_reports_reset_and_refusals() {
    let gw = TestGateway::start().await;
    gw.publish_one("small.p", json!(0)).await;
    let (_, body) = poll(&gw, "channels=small.p&timeout=1").await;
    let cursor = body["cursor"].as_str().unwrap().to_string();
    for i in 1..=4 {
        gw.publish_one("small.p", json!(i)).await;
    }
    let (_, body) = poll(&gw, &format!("channels=small.p&cursor={cursor}")).await;
    assert_eq!(body["messages"][0]["type"], "reset");
    assert_eq!(body["messages"][0]["channels"], json!(["small.p"]));

    let (status, body) = poll(&gw, "channels=nope.x").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, _) = poll(&gw, "channels=public.x&cursor=garbage~").await;
    assert_eq!(status, 400);
}
