//! The admin dashboard in Chromium: live figures while messages flow.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;

use crate::common::TestGateway;
use crate::harness::Browser;

/// A number as the dashboard prints it ("1,234", "12.5k").
fn figure(text: &str) -> f64 {
    let t = text.replace(',', "");
    let (num, scale) = match t.strip_suffix('k') {
        Some(n) => (n.to_string(), 1e3),
        None => match t.strip_suffix('M') {
            Some(n) => (n.to_string(), 1e6),
            None => (t.clone(), 1.0),
        },
    };
    num.trim().parse::<f64>().map(|v| v * scale).unwrap_or(0.0)
}

#[tokio::test]
async fn dashboard_shows_live_figures() {
    let gw = TestGateway::start().await;
    // Subscribers on two channels and two transports, and a steady publisher.
    let mut sse = gw
        .sse("/realtime/sse?channels=public.dash,public.other", None)
        .await;
    let _ws = gw.ws("/realtime/ws?channels=public.dash").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = {
        let stop = stop.clone();
        let http = gw.http.clone();
        let url = gw.admin_url("/publish");
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let body = json!({"channel": "public.dash", "data": {"n": n}});
                let _ = http.post(&url).json(&body).send().await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let reader = tokio::spawn(async move { while sse.next_event().await.is_some() {} });

    let b = Browser::start().await;
    b.client.goto(&gw.admin_url("/dashboard")).await.unwrap();
    let started = tokio::time::Instant::now();
    b.until(
        15,
        "non-zero live figures",
        "const n = (id) => parseFloat(document.getElementById(id).textContent.replace(/,/g, '')) || 0; \
         return n('conn-total') >= 2 && n('rate-in') > 0 && n('rate-out') > 0 && n('p50') > 0",
    )
    .await;
    // Within 3 s of the page having loaded (the first snapshot comes at once,
    // rates and latency with the second, a second later).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "figures took {took:?}");
    assert_eq!(b.text("conn-split").await, "ws 1 · sse 1 · poll 0");
    assert!(figure(&b.text("rate-in").await) >= 5.0);
    let top = b
        .client
        .find(Locator::Css("#channels tr td"))
        .await
        .unwrap();
    assert_eq!(top.text().await.unwrap(), "public.dash");
    // A few seconds of history in the charts, then a picture for people to look at.
    b.until(
        10,
        "charts with history",
        "return document.getElementById('live-text').textContent.startsWith('live')",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let path = b.screenshot("dashboard.png").await;
    eprintln!("dashboard screenshot: {}", path.display());
    stop.cancel();
    let _ = publisher.await;
    reader.abort();
    b.finish().await;
}

/// With admin keys configured the page works when opened with `?key=`.
#[tokio::test]
async fn dashboard_takes_the_admin_key_from_the_url() {
    let gw = TestGateway::builder()
        .section("auth:\n  admin_keys: [\"dash-key-1\"]")
        .start()
        .await;
    let refused = gw
        .http
        .get(gw.admin_url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let b = Browser::start().await;
    b.client
        .goto(&gw.admin_url("/dashboard?key=dash-key-1"))
        .await
        .unwrap();
    b.until(
        15,
        "the live stream",
        "return document.getElementById('live-text').textContent.startsWith('live')",
    )
    .await;
    // A wrong key: the page says what to do instead of spinning.
    b.client
        .goto(&gw.admin_url("/dashboard/events?key=wrong"))
        .await
        .unwrap();
    assert!(b.client.source().await.unwrap().contains("unauthorized"));
    b.finish().await;
}

/// Another page on the same host (here the gateway's own public origin,
/// another port) tries what any page could against a keyless admin: a
/// `text/plain` POST that needs no preflight, a JSON one, and a read. None
/// publishes or reads, while the dashboard's own feed still flows.
#[tokio::test]
async fn a_page_on_another_origin_cannot_drive_the_admin_api() {
    let gw = TestGateway::start().await;
    let b = Browser::start().await;
    b.client.goto(&gw.url("/realtime/client.js")).await.unwrap();
    let attempt = r#"
const admin = arguments[0];
window.out = {};
const body = JSON.stringify({ channel: 'public.x', data: 'from a page' });
fetch(admin + '/publish', { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body })
  .then(() => { out.plain = 'sent'; }, (e) => { out.plain = 'blocked: ' + e; });
fetch(admin + '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
  .then((r) => r.text().then((t) => { out.json = 'read: ' + t; }), (e) => { out.json = 'blocked: ' + e; });
fetch(admin + '/stats').then((r) => r.text().then((t) => { out.stats = 'read: ' + t; }), (e) => { out.stats = 'blocked: ' + e; });
"#;
    b.client
        .execute(attempt, vec![json!(gw.admin_url(""))])
        .await
        .unwrap();
    b.until(
        15,
        "the three attempts ended",
        "return !!(out.plain && out.json && out.stats)",
    )
    .await;
    let out = b.js("return out").await;
    // The no-cors POST reached the listener (its answer is opaque to the page).
    assert_eq!(out["plain"], "sent", "{out}");
    assert!(
        !out["json"].as_str().unwrap_or("").contains("\"ids\""),
        "{out}"
    );
    assert!(
        !out["stats"].as_str().unwrap_or("").contains("messages"),
        "{out}"
    );
    let stats = gw.stats().await;
    assert_eq!(stats["messages"]["published"], 0, "{stats}");
    // The dashboard on its own origin still reads its feed.
    b.client.goto(&gw.admin_url("/dashboard")).await.unwrap();
    b.until(
        15,
        "the live stream",
        "return document.getElementById('live-text').textContent.startsWith('live')",
    )
    .await;
    b.finish().await;
}
