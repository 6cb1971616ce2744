use serde_json::{Value, json};

use crate::common::*;

async fn post(gw: &TestGateway, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn publish_batches_and_channel_lists_return_ids_in_order() {
    let gw = TestGateway::start().await;
    let mut sse = gw
        .sse("/realtime/sse?channels=public.b1,public.b2", None)
        .await;
    let v = gw
        .publish(json!([
            {"channel": "public.b1", "data": 1},
            {"channels": ["public.b1", "public.b2"], "event": "both", "data": 2},
        ]))
        .await;
    let ids: Vec<u64> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert_eq!(v["published"][2]["channel"], "public.b2");
    for (i, want) in ids.iter().enumerate() {
        let m = sse.expect().await.json();
        assert_eq!(m["id"], want.to_string(), "message {i}");
    }
}

#[tokio::test]
async fn publish_idempotency_key() {
    let gw = TestGateway::start().await;
    let body = json!({"channel": "public.k", "data": 1, "id": "order-77"});
    let a = gw.publish(body.clone()).await;
    let b = gw.publish(body).await;
    assert_eq!(a["ids"], b["ids"]);
}

#[tokio::test]
async fn publish_rejects_bad_input_and_publishes_nothing() {
    let gw = TestGateway::builder()
        .realtime("  max_message: 100")
        .start()
        .await;
    let mut sse = gw.sse("/realtime/sse?channels=public.bad", None).await;
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"channel\":".into(), 400, "bad_json"),
        ("".into(), 400, "bad_json"),
        (json!({"data": 1}).to_string(), 400, "missing_channel"),
        (
            json!({"channel": "has space", "data": 1}).to_string(),
            400,
            "invalid_channel",
        ),
        (
            json!({"channel": "public.bad", "event": "a\nb", "data": 1}).to_string(),
            400,
            "bad_request",
        ),
        (
            json!({"channel": "public.bad", "data": "x".repeat(200)}).to_string(),
            413,
            "too_large",
        ),
        (
            json!({"channel": "public.bad", "data": 1, "extra": true}).to_string(),
            400,
            "bad_json",
        ),
        (json!([]).to_string(), 400, "bad_request"),
        // One bad entry in a batch: nothing from the batch is published.
        (
            json!([{"channel": "public.bad", "data": 1}, {"data": 2}]).to_string(),
            400,
            "missing_channel",
        ),
    ];
    for (body, status, code) in cases {
        let (got, v) = post(&gw, body.clone()).await;
        assert_eq!(
            (got, v["error"].as_str()),
            (status, Some(code)),
            "body {body:.60}: {v}"
        );
        assert!(v["message"].is_string());
    }
    let (status, v) = post(&gw, json!({"data": 2}).to_string()).await;
    assert!(
        v["message"].as_str().unwrap().contains("message 1"),
        "{status} {v}"
    );
    // Oversize bodies are refused without being read whole.
    let (status, v) = post(&gw, vec![b' '; 9 * 1024 * 1024]).await;
    assert_eq!((status, v["error"].as_str()), (413, Some("too_large")));

    gw.publish_one("public.bad", json!("only this")).await;
    assert_eq!(sse.expect().await.json()["data"], "only this");
}

#[tokio::test]
async fn admin_health_ready_stats() {
    let gw = TestGateway::start().await;
    let r = gw.http.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = gw.http.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _sse = gw.sse("/realtime/sse?channels=public.st", None).await;
    let stats = gw.stats().await;
    assert_eq!(stats["transports"]["sse"], 1);
    assert_eq!(stats["channels"], 1);
    let r = gw.http.get(gw.admin_url("/publish")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = gw.http.get(gw.admin_url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn operators_can_disconnect_by_subject_or_connection() {
    let secret = "disconnect-secret";
    let gw = TestGateway::builder()
        .section(&format!("auth: {{ jwt: {{ hs256_secret: {secret} }} }}"))
        .start()
        .await;
    let token = |sub: &str| {
        pushgate::auth::mint_hs256(
            secret,
            sub,
            &[],
            std::time::Duration::from_secs(60),
            None,
            None,
        )
        .unwrap()
    };
    let mut mallory = gw
        .ws(&format!(
            "/realtime/ws?channels=public.d&token={}",
            token("mallory")
        ))
        .await;
    let mut sse = gw
        .sse(
            &format!("/realtime/sse?channels=public.d&token={}", token("mallory")),
            None,
        )
        .await;
    let mut alice = gw
        .ws(&format!(
            "/realtime/ws?channels=public.d&token={}",
            token("alice")
        ))
        .await;
    let r = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["disconnected"], 2);
    use futures_util::StreamExt;
    match tokio::time::timeout(std::time::Duration::from_secs(5), mallory.next())
        .await
        .unwrap()
    {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1008)
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert!(sse.next_event().await.is_none(), "the SSE stream ends");
    // Counted as the operator's doing, over both transports.
    let metrics = gw.metrics_text().await;
    for t in ["ws", "sse"] {
        let line = format!("pushgate_disconnects_total{{transport=\"{t}\",reason=\"operator\"}} 1");
        assert!(metrics.contains(&line), "{line} missing");
    }
    gw.publish_one("public.d", json!("for alice")).await;
    assert_eq!(next_json(&mut alice).await["data"], "for alice");
    let r = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "a", "connection": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"connection": 999999}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["disconnected"], 0);
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.m").await;
    gw.publish_one("public.m", json!(1)).await;
    let _ = next_json(&mut ws).await;
    let _ = gw
        .http
        .get(gw.url("/realtime/sse?channels=orders.1"))
        .send()
        .await; // 401: no token
    let _ = gw.http.get(gw.url("/some/page")).send().await; // proxied: backend down
    let text = gw.metrics_text().await;
    for line in [
        "pushgate_realtime_connections{transport=\"ws\"} 1",
        "pushgate_connects_total{transport=\"ws\"} 1",
        "pushgate_messages_published_total 1",
        "pushgate_messages_delivered_total 1",
        "pushgate_auth_failures_total",
        "pushgate_delivery_latency_seconds_count 1",
        "pushgate_proxy_requests_total{class=\"5xx\"} 1",
        // Every accepted connection was taken on by its loop.
        "pushgate_tcp_connections_queued 0",
        // No loop died (a stall needs a second without a heartbeat, which
        // a loaded test machine may see, so it is not asserted).
        "pushgate_serving_loops{state=\"dead\"} 0",
        "pushgate_backend_errors_total{kind=\"unavailable\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    let running = text
        .lines()
        .find_map(|l| l.strip_prefix("pushgate_serving_loops{state=\"running\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    let stalled = text
        .lines()
        .find_map(|l| l.strip_prefix("pushgate_serving_loops{state=\"stalled\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        matches!((running, stalled), (Some(r), Some(s)) if r + s >= 1),
        "serving loops counted by state:\n{text}"
    );
}
