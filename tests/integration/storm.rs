//! Reconnect storms: returning clients from one address are let back in
//! under their own allowance once `per_ip.connects` is spent, strangers are
//! not, and a shutdown spreads the returns over `realtime.reconnect_spread`.

use serde_json::{Value, json};

use crate::common::*;

/// `path` with the query `pairs`, encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params(&format!("https://localhost{path}"), pairs).unwrap();
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

/// A long-poll on a connection of its own (a new TCP connection, charged
/// to `per_ip.connects`): its status and body.
async fn poll_fresh(gw: &TestGateway, pairs: &[(&str, &str)]) -> (u16, Value) {
    let mut pairs = pairs.to_vec();
    pairs.push(("timeout", "0"));
    let r = gw
        .fresh_client()
        .get(gw.url(&with_query("/realtime/poll", &pairs)))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 429 {
        assert!(r.headers().contains_key("retry-after"));
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn resumes_from_one_address_pass_where_fresh_connections_are_limited() {
    let gw = TestGateway::builder()
        .limits("  per_ip: { connects: { rate: 1/m, burst: 2 }, resumes: { rate: 1/m, burst: 4 } }")
        .start()
        .await;
    // First visit (connect 1 of 2): the client is given its cursor.
    let (status, first) = poll_fresh(&gw, &[("channels", "public.s")]).await;
    assert_eq!(status, 200);
    let cursor = first["cursor"].as_str().expect("a cursor").to_string();
    gw.publish_one("public.s", json!("missed")).await;
    // Connect 2 of 2, then strangers are refused.
    assert_eq!(poll_fresh(&gw, &[("channels", "public.s")]).await.0, 200);
    let (status, body) = poll_fresh(&gw, &[("channels", "public.s")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );

    // Returning clients pass, on each transport, and get what they missed.
    let (status, body) = poll_fresh(&gw, &[("channels", "public.s"), ("cursor", &cursor)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["data"], "missed");
    let sse = gw
        .fresh_client()
        .get(gw.url("/realtime/sse?channels=public.s"))
        .header("last-event-id", &cursor)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = SseReader::new(sse);
    assert_eq!(sse.expect().await.json()["data"], "missed");
    let ws_path = with_query(
        "/realtime/ws",
        &[("channels", "public.s"), ("cursor", &cursor)],
    );
    let mut ws = gw
        .try_ws(&ws_path)
        .await
        .expect("a resume's upgrade passes");
    assert_eq!(next_json(&mut ws).await["data"], "missed");

    // Not resumes: a channel the cursor does not cover, a malformed cursor,
    // no cursor at all. None of them spends the allowance.
    let (status, _) = poll_fresh(
        &gw,
        &[("channels", "public.s,public.new"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(status, 429, "a new channel is not a return");
    let (status, _) = poll_fresh(&gw, &[("channels", "public.s"), ("cursor", "zz")]).await;
    assert_eq!(status, 429, "a malformed cursor is not a return");
    // A cursor made up rather than issued: right shape, channels covered,
    // but not the broker's epoch.
    for forged in [
        "0~public.s~0",
        "1~public.s~0",
        "ffffffffffffffff~public.s~1",
    ] {
        assert_ne!(cursor.split('~').next(), forged.split('~').next());
        let (status, body) = poll_fresh(&gw, &[("channels", "public.s"), ("cursor", forged)]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("rate_limited")),
            "a forged cursor {forged} is not a return"
        );
    }
    assert_eq!(poll_fresh(&gw, &[("channels", "public.s")]).await.0, 429);

    // The fourth resume is the last of the allowance: a flood of forged
    // cursors stays bounded.
    let resume = [("channels", "public.s"), ("cursor", cursor.as_str())];
    assert_eq!(poll_fresh(&gw, &resume).await.0, 200);
    let (status, body) = poll_fresh(&gw, &resume).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(
        gw.metrics_text()
            .await
            .contains("pushgate_rate_limited_total{kind=\"resumes\"}"),
        "the refusal is counted under its own kind"
    );
}

#[tokio::test]
async fn shutdown_tells_each_client_its_own_moment_within_the_window() {
    let mut gw = TestGateway::builder()
        .realtime("  reconnect_spread: 10s")
        .start()
        .await;
    let mut sockets = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..6 {
        sockets.push(gw.ws("/realtime/ws?channels=public.spread").await);
        streams.push(gw.sse("/realtime/sse?channels=public.spread", None).await);
    }
    eventually(5, "every client subscribed", || async {
        let stats = gw.stats().await;
        stats["transports"]["ws"] == 6 && stats["transports"]["sse"] == 6
    })
    .await;
    gw.stop().await;

    let mut delays = Vec::new();
    for ws in &mut sockets {
        let notice = next_json(ws).await;
        assert_eq!(notice["type"], "reconnect");
        assert!(notice["cursor"].is_string());
        delays.push(notice["retry"].as_u64().expect("a delay in the notice"));
    }
    for sse in &mut streams {
        let ev = sse.expect().await;
        assert_eq!(ev.event, "reconnect");
        let retry = ev.json()["retry"].as_u64().expect("a delay in the event");
        assert_eq!(sse.last_retry, Some(retry), "`retry:` says the same");
        delays.push(retry);
    }
    assert!(
        delays.iter().all(|d| (250..10_250).contains(d)),
        "{delays:?}"
    );
    let distinct: std::collections::HashSet<_> = delays.iter().collect();
    assert!(distinct.len() >= 6, "spread over the window: {delays:?}");
}

/// `pushgate_resume_seconds_count{stage}` in a `/metrics` text (0 when absent).
fn resume_count(metrics: &str, stage: &str) -> u64 {
    let series = format!("pushgate_resume_seconds_count{{stage=\"{stage}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn each_resume_times_its_stages_from_accept_and_fresh_connects_do_not() {
    let gw = TestGateway::builder().start().await;
    let (status, first) = poll_fresh(&gw, &[("channels", "public.t")]).await;
    assert_eq!(status, 200);
    let cursor = first["cursor"].as_str().expect("a cursor").to_string();
    gw.publish_one("public.t", json!("missed")).await;
    // A fresh SSE and a fresh WebSocket: no stage of theirs is timed.
    let mut fresh_sse = gw.sse("/realtime/sse?channels=public.t", None).await;
    let mut fresh_ws = gw.ws("/realtime/ws?channels=public.t").await;
    gw.publish_one("public.t", json!("live")).await;
    assert_eq!(fresh_sse.expect().await.json()["data"], "live");
    assert_eq!(next_json(&mut fresh_ws).await["data"], "live");
    let stages = [
        "request",
        "admitted",
        "replay_started",
        "replay_read",
        "first_write",
    ];
    let metrics = gw.metrics_text().await;
    for stage in stages {
        assert_eq!(resume_count(&metrics, stage), 0, "{stage}: {metrics}");
    }

    // One resume on each: every stage is timed once per resume.
    let mut sse = gw
        .sse("/realtime/sse?channels=public.t", Some(&cursor))
        .await;
    assert_eq!(sse.expect().await.json()["data"], "missed");
    let ws_path = with_query(
        "/realtime/ws",
        &[("channels", "public.t"), ("cursor", &cursor)],
    );
    let mut ws = gw.ws(&ws_path).await;
    eventually(5, "the resumed socket's first frame", || async {
        resume_count(&gw.metrics_text().await, "first_write") == 2
    })
    .await;
    assert_eq!(next_json(&mut ws).await["data"], "missed");
    let metrics = gw.metrics_text().await;
    for stage in stages {
        assert_eq!(resume_count(&metrics, stage), 2, "{stage}: {metrics}");
    }
    // Times from accept, each stage no earlier than the one before it.
    let sum = |stage: &str| -> f64 {
        let series = format!("pushgate_resume_seconds_sum{{stage=\"{stage}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(|v| v.trim().parse().unwrap())
            .unwrap()
    };
    for pair in stages.windows(2) {
        assert!(sum(pair[0]) <= sum(pair[1]), "{pair:?}: {metrics}");
    }
}
