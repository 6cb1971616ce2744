//! What the browser client and the dashboard rely on over plain HTTP: the
//! served script and its validators, HTTP publish, resumes that are not new
//! subscriptions, and the dashboard's snapshot stream.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn client_script_is_served_with_validators() {
    let gw = TestGateway::start().await;
    let r = gw
        .http
        .get(gw.url("/realtime/client.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let etag = r.headers()["etag"].clone();
    assert!(r.text().await.unwrap().contains("globalThis"));
    let again = gw
        .http
        .get(gw.url("/realtime/client.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let module = gw
        .http
        .get(gw.url("/realtime/client.mjs"))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), 200);
    assert!(
        module
            .text()
            .await
            .unwrap()
            .contains("export default Pushgate")
    );
    // Served to any page, whatever realtime.allowed_origins says.
    let foreign = gw
        .http
        .get(gw.url("/realtime/client.js"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
}

#[tokio::test]
async fn http_publish_follows_the_channel_rules() {
    let gw = TestGateway::start().await;
    let mut sse = gw.sse("/realtime/sse?channels=chat.http", None).await;
    let post = |body: Value| gw.http.post(gw.url("/realtime/publish")).json(&body).send();
    let ok = post(json!({"channel": "chat.http", "event": "said", "data": {"t": "hi"}}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!(v["channel"], "chat.http");
    let ev = sse.expect().await;
    assert_eq!(ev.event, "said");
    assert_eq!(ev.json()["id"], v["id"]);
    assert_eq!(ev.json()["data"], json!({"t": "hi"}));
    // public.* does not allow client publishing; bad bodies are 400.
    let refused = post(json!({"channel": "public.x", "data": 1}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let bad = post(json!({"channel": "chat.http"})).await.unwrap();
    assert_eq!(bad.status(), 400);
    // Every bad input has its status and code, and publishes nothing.
    let cases = [
        (
            json!({"channel": "chat.http", "event": "a b", "data": 1}),
            400,
            "bad_request",
        ),
        (
            json!({"channel": "bad name", "data": 1}),
            400,
            "invalid_channel",
        ),
        (
            json!({"channel": "chat.http", "data": "x".repeat(70 * 1024)}),
            413,
            "too_large",
        ),
        (
            json!({"channel": "chat.http", "data": 1, "extra": true}),
            400,
            "bad_json",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], code);
    }
    let marker = gw.publish_one("chat.http", json!("marker")).await;
    assert_eq!(
        sse.expect().await.json()["id"],
        marker,
        "nothing published by the refusals"
    );
}

#[tokio::test]
async fn resumes_are_not_charged_as_subscribes() {
    let gw = TestGateway::builder()
        .section(
            // Anonymous: its subscribes count per address.
            "limits: { per_ip: { subscribes: { rate: 1/m, burst: 2 } } }",
        )
        .start()
        .await;
    let http = &gw.http;
    let poll = |q: String| {
        let url = gw.url(&format!("/realtime/poll?timeout=0&{q}"));
        async move { http.get(url).send().await.unwrap() }
    };
    let first: Value = poll("channels=public.lp".into())
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["cursor"].as_str().unwrap().to_string();
    // A long-poll client polls again and again with its cursor: not new subscriptions.
    for _ in 0..10 {
        let r = poll(format!("channels=public.lp&cursor={cursor}")).await;
        assert_eq!(r.status(), 200);
    }
    // New channels still count: one left in the burst, then 429.
    assert_eq!(poll("channels=public.new1".into()).await.status(), 200);
    assert_eq!(poll("channels=public.new2".into()).await.status(), 429);
}

#[tokio::test]
async fn dashboard_streams_snapshots() {
    let gw = TestGateway::start().await;
    let page = gw
        .http
        .get(gw.admin_url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let mut sub = gw.sse("/realtime/sse?channels=public.d", None).await;
    let resp = gw
        .http
        .get(gw.admin_url("/dashboard/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(resp);
    let first = events.expect().await.json();
    assert_eq!(first["connections"]["sse"], 1);
    assert_eq!(
        first["top_channels"][0],
        json!({"channel": "public.d", "subscribers": 1})
    );
    for i in 0..5 {
        gw.publish_one("public.d", json!(i)).await;
        sub.expect().await;
    }
    let second = events.expect().await.json();
    assert!(
        second["rates"]["published_per_s"].as_f64().unwrap() > 0.0,
        "{second}"
    );
    assert!(
        second["latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{second}"
    );
    assert_eq!(second["totals"]["delivered"], 5);
}

#[tokio::test]
async fn dashboard_counts_refusals() {
    let gw = TestGateway::builder()
        .section("limits: { per_client: { messages: { rate: 1/m, burst: 1 } } }")
        .start()
        .await;
    let resp = gw
        .http
        .get(gw.admin_url("/dashboard/events"))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    assert_eq!(events.expect().await.json()["totals"]["rate_limited"], 0);
    let poll = || {
        gw.http
            .get(gw.url("/realtime/poll?channels=public.rl&timeout=0"))
            .send()
    };
    assert_eq!(poll().await.unwrap().status(), 200);
    assert_eq!(poll().await.unwrap().status(), 429);
    // The first snapshot that sees the refusal counts it in its second too.
    let mut next = events.expect().await.json();
    for _ in 0..5 {
        if next["totals"]["rate_limited"] == 1 {
            break;
        }
        next = events.expect().await.json();
    }
    assert_eq!(next["totals"]["rate_limited"], 1, "{next}");
    assert_eq!(next["refusals"]["rate_limited"], 1, "{next}");
}
