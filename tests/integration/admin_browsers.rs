//! The admin listener is not a web page's API: what a page a browser on the
//! host opens could send it (a cross-site `text/plain` POST, a DNS-rebinding
//! page's reads) is refused, and what the dashboard and the application send
//! still works.

use serde_json::{Value, json};

use crate::common::*;

/// A hook that takes any body, to show webhook paths keep doing so.
const HOOK: &str = r#"
webhooks:
  - name: raw
    match: { method: POST, path: /hooks/raw }
    channel: public.hooked
    data: "{body}"
"#;

/// Status, error code (if any) and the whole JSON answer.
async fn answer(resp: reqwest::RequestBuilder) -> (u16, String, Value) {
    let r = resp.send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let code = v["error"].as_str().unwrap_or("").to_string();
    (status, code, v)
}

fn published(stats: &Value) -> u64 {
    stats["messages"]["published"].as_u64().unwrap()
}

#[tokio::test]
async fn a_cross_site_page_cannot_publish_or_disconnect() {
    let gw = TestGateway::builder().section(HOOK).start().await;
    let own = format!("http://{}", gw.admin);
    let body = r#"{"channel":"public.x","data":1}"#;
    let post = |path: &str| gw.http.post(gw.admin_url(path));
    // What a page on another site sends with a form or fetch(no-cors).
    let (s, code, _) = answer(
        post("/publish")
            .header("origin", "http://evil.example")
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "text/plain")
            .body(body),
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "forbidden_origin"));
    // An older browser that sends no Sec-Fetch-Site: the Origin alone.
    let (s, code, _) = answer(
        post("/disconnect")
            .header("origin", "http://evil.example")
            .header("content-type", "application/json")
            .body(r#"{"subject":"alice"}"#),
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "forbidden_origin"));
    // Another port of the same host is another origin, and the same site:
    // refused too (the application's own pages, a local dev server).
    for (origin, site) in [
        ("http://127.0.0.1:3000", "same-site"),
        ("null", "cross-site"),
    ] {
        let (s, code, _) = answer(
            post("/publish")
                .header("origin", origin)
                .header("sec-fetch-site", site)
                .json(&json!({"channel": "public.x", "data": 1})),
        )
        .await;
        assert_eq!((s, code.as_str()), (403, "forbidden_origin"), "{origin}");
    }
    let (s, code, _) = answer(
        post("/publish")
            .header("sec-fetch-site", "same-site")
            .json(&json!({"channel": "public.x", "data": 1})),
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "forbidden_origin"));
    // A body a page can send without a preflight, with no browser headers
    // at all (`curl -d`, an old browser): not JSON, not taken.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=b"),
        None,
    ] {
        for path in ["/publish", "/disconnect"] {
            let mut req = post(path).body(body);
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let (s, code, _) = answer(req).await;
            assert_eq!(
                (s, code.as_str()),
                (415, "unsupported_media_type"),
                "{path} {ct:?}"
            );
        }
    }
    assert_eq!(published(&gw.stats().await), 0, "nothing was published");
    // The admin listener's own origin, and the application's JSON, work.
    let (s, _, v) = answer(
        post("/publish")
            .header("origin", &own)
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = answer(post("/disconnect").json(&json!({"subject": "nobody"}))).await;
    assert_eq!((s, &v["disconnected"]), (200, &json!(0)));
    // Webhook paths take what the application sends.
    let (s, _, v) = answer(
        post("/hooks/raw")
            .header("content-type", "text/plain")
            .body("plain words"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(published(&gw.stats().await), 2);
}

#[tokio::test]
async fn a_rebinding_page_cannot_read_the_admin_api() {
    let gw = TestGateway::start().await;
    let port = gw.admin.port();
    let rebound = format!("rebind.example:{port}");
    for path in [
        "/stats",
        "/channels/public.x",
        "/metrics",
        "/dashboard",
        "/dashboard/events",
    ] {
        // The page's origin is its own name, so its requests are "same-origin".
        let (s, code, _) = answer(
            gw.http
                .get(gw.admin_url(path))
                .header("host", &rebound)
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
        assert_eq!((s, code.as_str()), (421, "misdirected_host"), "{path}");
    }
    let (s, code, _) = answer(
        gw.http
            .post(gw.admin_url("/publish"))
            .header("host", &rebound)
            .header("origin", format!("http://{rebound}"))
            .json(&json!({"channel": "public.x", "data": 1})),
    )
    .await;
    assert_eq!((s, code.as_str()), (421, "misdirected_host"));
    // IP literals and localhost, with any port, are this host's own names.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_string(),
    ] {
        let (s, _, v) = answer(gw.http.get(gw.admin_url("/stats")).header("host", &host)).await;
        assert_eq!(s, 200, "{host}: {v}");
    }
    // Load balancers' health probes are answered whatever the name.
    for path in ["/healthz", "/readyz"] {
        let (s, _, _) = answer(gw.http.get(gw.admin_url(path)).header("host", &rebound)).await;
        assert_eq!(s, 200, "{path}");
    }
    assert_eq!(published(&gw.stats().await), 0);
}

#[tokio::test]
async fn with_admin_keys_names_work_and_browsers_are_still_refused() {
    let extra = r#"auth: { admin_keys: ["k-1"] }"#;
    let gw = TestGateway::builder().section(extra).start().await;
    // A Prometheus target by name, with its key.
    let (s, _, v) = answer(
        gw.http
            .get(gw.admin_url("/stats"))
            .header("host", "gw1.internal:9090")
            .bearer_auth("k-1"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The key is still required.
    let (s, code, _) = answer(
        gw.http
            .get(gw.admin_url("/stats"))
            .header("host", "gw1.internal:9090"),
    )
    .await;
    assert_eq!((s, code.as_str()), (401, "unauthorized"));
    let (s, code, _) = answer(
        gw.http
            .post(gw.admin_url("/publish"))
            .bearer_auth("k-1")
            .header("origin", "http://evil.example")
            .json(&json!({"channel": "public.x", "data": 1})),
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "forbidden_origin"));
    let (s, code, _) = answer(
        gw.http
            .post(gw.admin_url("/publish"))
            .bearer_auth("k-1")
            .header("content-type", "text/plain")
            .body(r#"{"channel":"public.x","data":1}"#),
    )
    .await;
    assert_eq!((s, code.as_str()), (415, "unsupported_media_type"));
    let (s, _, v) = answer(
        gw.http
            .post(gw.admin_url("/publish"))
            .bearer_auth("k-1")
            .json(&json!({"channel": "public.x", "data": 1})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}
