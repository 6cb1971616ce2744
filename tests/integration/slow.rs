//! A client that stops reading is cut off with a resume cursor; nobody else waits.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::common::*;

const N: usize = 2000;

#[tokio::test]
async fn stuck_clients_are_evicted_and_others_get_everything() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 64\n  max_message: 64KiB")
        .start()
        .await;
    // A WebSocket client that never reads after the handshake.
    let stuck_ws = gw.ws("/realtime/ws?channels=public.flood").await;
    // An SSE client that never reads: raw request over TLS, response never consumed.
    let mut stuck_sse = gw.tls_stream().await;
    stuck_sse
        .write_all(b"GET /realtime/sse?channels=public.flood HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    stuck_sse.flush().await.unwrap();
    let mut healthy = gw.sse("/realtime/sse?channels=public.flood", None).await;
    eventually(5, "all three subscribed", || async {
        gw.stats().await["transports"]["sse"] == 2 && gw.stats().await["transports"]["ws"] == 1
    })
    .await;

    let payload = "x".repeat(8 * 1024);
    // Healthy means keeping up: the publisher stays within half the queue of
    // the healthy reader, and runs as fast as that allows.
    let read = std::sync::atomic::AtomicU64::new(0);
    let reader = async {
        let mut last_id = 0u64;
        for k in 0..N {
            let Some(ev) = healthy.next_event().await else {
                panic!(
                    "healthy stream ended after id {last_id}: {}",
                    gw.stats().await
                )
            };
            let m = ev.json();
            let id: u64 = m["id"].as_str().unwrap().parse().unwrap();
            assert!(id > last_id, "in order, no duplicates");
            last_id = id;
            read.store(k as u64 + 1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let publisher = async {
        for chunk in 0..(N / 10) {
            let sent = chunk as u64 * 10;
            while sent > read.load(std::sync::atomic::Ordering::Relaxed) + 20 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let batch: Vec<_> = (0..10)
                .map(|i| json!({"channel": "public.flood", "data": {"n": chunk * 10 + i, "pad": payload}}))
                .collect();
            gw.publish(json!(batch)).await;
        }
    };
    tokio::join!(reader, publisher);

    eventually(10, "both stuck clients evicted and closed", || async {
        let s = gw.stats().await;
        s["evicted"].as_u64() >= Some(2)
            && s["transports"]["ws"] == 0
            && s["transports"]["sse"] == 1
    })
    .await;
    drop(stuck_ws);
    drop(stuck_sse);
}

#[tokio::test]
async fn evicted_websocket_gets_its_cursor_and_resumes_without_loss() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 4\n  history: { size: 100000, ttl: 10m }")
        .start()
        .await;
    let mut ws = gw.ws("/realtime/ws?channels=public.lag").await;
    // Publish a burst far larger than queue + socket buffers while not reading.
    let payload = "y".repeat(16 * 1024);
    let total = 1000;
    for chunk in 0..(total / 100) {
        let batch: Vec<_> = (0..100)
            .map(|i| json!({"channel": "public.lag", "data": {"n": chunk * 100 + i, "pad": payload}}))
            .collect();
        gw.publish(json!(batch)).await;
    }
    // Now read what made it before the cut, keeping the last cursor, as a client does.
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let mut seen = Vec::new();
    let mut cursor = None;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await
    {
        match frame {
            Frame::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("message") => seen.push(v["data"]["n"].as_u64().unwrap()),
                    Some("error") => assert_eq!(v["code"], "slow_consumer"),
                    _ => panic!("unexpected {v}"),
                }
                cursor = v["cursor"].as_str().map(str::to_string).or(cursor);
            }
            Frame::Close(f) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(1013));
                break;
            }
            _ => {}
        }
    }
    assert!(seen.len() < total, "the client must have been cut off");
    assert!(gw.stats().await["evicted"].as_u64() >= Some(1));
    let resume_from = cursor.expect("at least one message arrived before the cut");
    let mut ws = gw
        .ws(&format!(
            "/realtime/ws?channels=public.lag&cursor={resume_from}"
        ))
        .await;
    let mut next = seen.last().map_or(0, |n| n + 1);
    while next < total as u64 {
        let m = next_json(&mut ws).await;
        assert_eq!(
            m["data"]["n"], next,
            "resumed in order without loss or duplicates"
        );
        next += 1;
    }
}

/// Publish `n` messages of `pad` bytes to `channel` while watching how much
/// the channel's subscribers hold queued; returns the largest amount seen.
async fn flood(gw: &TestGateway, channel: &str, n: usize, pad: usize) -> usize {
    let payload = "z".repeat(pad);
    let mut most = 0;
    for chunk in 0..n / 50 {
        let batch: Vec<_> = (0..50)
            .map(|i| json!({"channel": channel, "data": {"n": chunk * 50 + i, "pad": payload}}))
            .collect();
        gw.publish(json!(batch)).await;
        let info: serde_json::Value = gw.admin_get(&format!("/channels/{channel}")).await;
        most = most.max(info["queued"].as_u64().unwrap() as usize);
    }
    most
}

/// Read frames until `until` says stop; returns them.
async fn read_until(
    ws: &mut Ws,
    mut until: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    loop {
        let v = next_json(ws).await;
        let stop = until(&v);
        got.push(v);
        if stop {
            return got;
        }
    }
}

#[tokio::test]
async fn drop_oldest_keeps_the_connection_and_reports_the_gap() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 8")
        .start()
        .await;
    let mut ws = gw.ws("/realtime/ws?channels=lossy.feed").await;
    let most = flood(&gw, "lossy.feed", 1500, 8 * 1024).await;
    assert!(most <= 8, "queue stayed bounded: {most}");
    let frames = read_until(&mut ws, |v| v["data"]["n"] == 1499).await;
    let reset = frames
        .iter()
        .find(|v| v["type"] == "reset")
        .expect("a gap notice");
    assert_eq!(reset["reason"], "slow_client");
    assert_eq!(reset["channels"], json!(["lossy.feed"]));
    let ns: Vec<u64> = frames
        .iter()
        .filter_map(|v| v["data"]["n"].as_u64())
        .collect();
    assert!(
        ns.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert!(ns.len() < 1500, "some were dropped");
    gw.publish_one("lossy.feed", json!("live")).await;
    assert_eq!(
        next_json(&mut ws).await["data"],
        "live",
        "the connection stayed open"
    );
}

#[tokio::test]
async fn conflate_delivers_the_newest_value() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 8")
        .start()
        .await;
    let mut ws = gw.ws("/realtime/ws?channels=latest.cpu").await;
    let most = flood(&gw, "latest.cpu", 1500, 8 * 1024).await;
    assert!(most <= 8, "queue stayed bounded: {most}");
    let frames = read_until(&mut ws, |v| v["data"]["n"] == 1499).await;
    assert!(
        frames.iter().all(|v| v["type"] == "message"),
        "no gap notice for conflation"
    );
    let ns: Vec<u64> = frames
        .iter()
        .filter_map(|v| v["data"]["n"].as_u64())
        .collect();
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(ns.len() < 1500, "intermediate values were conflated");
    assert_eq!(
        gw.stats().await["transports"]["ws"],
        1,
        "the connection stayed open"
    );
}

#[tokio::test]
async fn disconnect_policy_bounds_the_queue_too() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 8")
        .start()
        .await;
    let _ws = gw.ws("/realtime/ws?channels=public.bounded").await;
    let most = flood(&gw, "public.bounded", 1500, 8 * 1024).await;
    assert!(most <= 8, "queue stayed bounded: {most}");
    eventually(5, "the stuck client was cut off", || async {
        gw.stats().await["transports"]["ws"] == 0
    })
    .await;
}
