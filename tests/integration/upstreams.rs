//! An upstream of several servers (`backend.urls`, `balance`): requests
//! spread over them by both engines (a plain HTTP/1 GET through the relay,
//! a POST through hyper), one client address stays on one server with
//! `ip_hash`, and a server that refuses connections costs no request that
//! can be sent again: it is left out and the next server answers. Only when
//! every server refuses is the answer a 502.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::Value;

use crate::common::app::{Answer, TestApp, json_answer};
use crate::common::*;
use crate::routes::app::{App, PROBE, app, went};

/// An address nothing listens on (bound, then let go).
pub(crate) async fn dead() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

async fn gateway(urls: &[&str], balance: &str) -> TestGateway {
    gateway_with(urls, balance, "").await
}

pub(crate) async fn gateway_with(urls: &[&str], balance: &str, more: &str) -> TestGateway {
    gateway_with_extra(urls, balance, more, "").await
}

/// As [`gateway_with`], with `extra` top-level sections.
pub(crate) async fn gateway_with_extra(
    urls: &[&str],
    balance: &str,
    more: &str,
    extra: &str,
) -> TestGateway {
    let list = urls.join(", ");
    TestGateway::builder()
        .tag("upstreams")
        .backend_yaml(&format!(
            "backend: {{ urls: [{list}], balance: {balance}, connect_timeout: 1s, timeout: 5s{more} }}"
        ))
        .section(extra)
        .start()
        .await
}

/// `n` requests by `method` (GETs go through the relay, POSTs through
/// hyper); which app answered each, and which engine carried it.
async fn spread(gw: &TestGateway, method: Method, n: usize) -> HashMap<String, usize> {
    let client = http1_client();
    let mut count = HashMap::new();
    for i in 0..n {
        let before = gw.relayed().await;
        let resp = client
            .request(method.clone(), gw.url(&format!("/x{i}")))
            .header(PROBE, "1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method} /x{i}");
        let v: Value = resp.json().await.unwrap();
        let (app, _, _) = went(&v);
        let engine = gw.engine_since(before).await;
        let expected = if method == Method::GET {
            "relay"
        } else {
            "hyper"
        };
        assert_eq!(engine, expected, "{method} went by the engine expected");
        *count.entry(app).or_default() += 1;
    }
    count
}

/// An HTTP/1.1-only client with its own connections: its plain GETs go by
/// the relay.
pub(crate) fn http1_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .http1_title_case_headers()
        .build()
        .unwrap()
}

pub(crate) fn urls(apps: &[&App]) -> Vec<String> {
    apps.iter().map(|a| format!("\"{}\"", a.url)).collect()
}

#[tokio::test]
async fn round_robin_spreads_requests_over_the_servers_in_both_engines() {
    let (a, b) = (app("a").await, app("b").await);
    let list = urls(&[&a, &b]);
    let gw = gateway(&[&list[0], &list[1]], "round_robin").await;
    for method in [Method::GET, Method::POST] {
        let count = spread(&gw, method.clone(), 20).await;
        assert_eq!(count.get("a"), Some(&10), "{method}: {count:?}");
        assert_eq!(count.get("b"), Some(&10), "{method}: {count:?}");
    }
}

#[tokio::test]
async fn ip_hash_keeps_one_client_address_on_one_server() {
    let (a, b, c) = (app("a").await, app("b").await, app("c").await);
    let list = urls(&[&a, &b, &c]);
    let gw = gateway(&[&list[0], &list[1], &list[2]], "ip_hash").await;
    for method in [Method::GET, Method::POST] {
        let count = spread(&gw, method.clone(), 12).await;
        assert_eq!(
            count.len(),
            1,
            "{method}: one server for 127.0.0.1: {count:?}"
        );
    }
}

#[tokio::test]
async fn a_server_that_refuses_connections_costs_no_request_that_can_be_sent_again() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let down = format!("\"{}\"", dead().await);
    for balance in ["round_robin", "least_conn", "ip_hash"] {
        let gw = gateway(&[&down, &list[0]], balance).await;
        // GETs (relay) and bodiless POSTs (hyper): every one answered by `a`.
        for method in [Method::GET, Method::POST] {
            let count = spread(&gw, method.clone(), 10).await;
            assert_eq!(count.get("a"), Some(&10), "{balance} {method}: {count:?}");
        }
    }
}

#[tokio::test]
async fn every_server_refusing_is_a_502() {
    let (one, two) = (
        format!("\"{}\"", dead().await),
        format!("\"{}\"", dead().await),
    );
    let gw = gateway(&[&one, &two], "round_robin").await;
    for method in [Method::GET, Method::POST] {
        let resp = gw
            .fresh_client()
            .request(method.clone(), gw.url("/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502, "{method}");
    }
}

/// What `/stats` says of the default upstream's server at `url`.
pub(crate) async fn server_stats(gw: &TestGateway, url: &str) -> Value {
    let stats = gw.stats().await;
    let authority = url;
    stats["upstreams"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == authority)
        .cloned()
        .unwrap_or_else(|| panic!("{authority} in {stats}"))
}

#[tokio::test]
async fn a_server_failing_its_health_checks_leaves_the_rotation_and_comes_back() {
    let (a, b) = (app("a").await, app("b").await);
    let list = urls(&[&a, &b]);
    let health =
        ", health: { path: /healthz, interval: 100ms, timeout: 500ms, fails: 2, passes: 2 }";
    let gw = gateway_with(&[&list[0], &list[1]], "round_robin", health).await;
    eventually(5, "b is checked", || async { b.has_seen("/healthz") }).await;
    assert_eq!(server_stats(&gw, &b.url).await["healthy"], true);

    b.sick.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(5, "b out of the rotation", || async {
        server_stats(&gw, &b.url).await["healthy"] == false
    })
    .await;
    for method in [Method::GET, Method::POST] {
        let count = spread(&gw, method.clone(), 10).await;
        assert_eq!(count.get("a"), Some(&10), "{method}: {count:?}");
    }

    b.sick.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(5, "b back", || async {
        server_stats(&gw, &b.url).await["healthy"] == true
    })
    .await;
    let count = spread(&gw, Method::GET, 10).await;
    assert_eq!(
        (count.get("a"), count.get("b")),
        (Some(&5), Some(&5)),
        "{count:?}"
    );
}

#[tokio::test]
async fn health_checks_follow_a_reload() {
    let (a, b) = (app("a").await, app("b").await);
    let list = urls(&[&a, &b]);
    let health =
        ", health: { path: /healthz, interval: 100ms, timeout: 500ms, fails: 1, passes: 1 }";
    let gw = gateway_with(&[&list[0], &list[1]], "round_robin", health).await;
    b.sick.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(5, "b out", || async {
        server_stats(&gw, &b.url).await["healthy"] == false
    })
    .await;
    // Checks taken out by a reload: b is in the rotation again.
    gw.reload_with(health, "");
    eventually(10, "b back without checks", || async {
        server_stats(&gw, &b.url).await["healthy"] == true
    })
    .await;
}

/// The value of the `/metrics` line that starts with `series`.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_per_upstream_server() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let down = dead().await;
    let gw = gateway(&[&format!("\"{down}\""), &list[0]], "round_robin").await;
    for method in [Method::GET, Method::POST] {
        spread(&gw, method, 5).await;
    }
    let text = gw.metrics_text().await;
    let (a_at, down_at) = (a.url.as_str(), down.as_str());
    let of = |server: &str, rest: &str| {
        format!("pushgate_upstream_{rest}{{upstream=\"default\",server=\"{server}\"")
    };
    assert_eq!(
        metric(&text, &(of(a_at, "requests_total") + ",class=\"2xx\"}")),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &(of(a_at, "latency_seconds_count") + "}")),
        Some(10.0)
    );
    assert!(metric(&text, &(of(down_at, "errors_total") + ",kind=\"connect\"}")).unwrap() >= 1.0);
    assert_eq!(
        metric(&text, &(of(down_at, "requests_total") + ",class=\"2xx\"}")),
        Some(0.0)
    );
    assert_eq!(metric(&text, &(of(down_at, "server_up") + "}")), Some(0.0));
    assert_eq!(
        metric(&text, &(of(a_at, "server_healthy") + "}")),
        Some(1.0)
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "the exposition still ends with its marker"
    );
    assert_eq!(
        text.matches("# TYPE pushgate_upstream_requests ").count(),
        1
    );
}

#[tokio::test]
async fn an_idempotent_request_with_a_body_goes_to_the_next_server_a_post_only_when_buffered() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let down = format!("\"{}\"", dead().await);
    let gw = gateway(&[&down, &list[0]], "round_robin").await;
    let client = gw.fresh_client();
    for i in 0..6 {
        let resp = client
            .put(gw.url(&format!("/doc{i}")))
            .body(format!("version {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "PUT /doc{i}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            (v["app"].as_str(), v["body"].as_str()),
            (Some("a"), Some(&*format!("version {i}")))
        );
    }
    // A POST's body is kept only when request buffering read it whole: then
    // the one that met the dead server goes to the next one too; without,
    // it is a 502 (the dead server is skipped for a while after, so ask a
    // fresh gateway each time).
    let posts = |gw: TestGateway| async move {
        let mut v = Vec::new();
        for _ in 0..2 {
            let r = gw
                .fresh_client()
                .post(gw.url("/order"))
                .body("x")
                .send()
                .await
                .unwrap();
            v.push(r.status().as_u16());
        }
        v
    };
    let buffered = posts(gateway(&[&down, &list[0]], "round_robin").await).await;
    assert_eq!(buffered, [200, 200]);
    let unbuffered = ", buffering: { request: off }";
    let streamed = posts(gateway_with(&[&down, &list[0]], "round_robin", unbuffered).await).await;
    assert!(streamed.contains(&502), "{streamed:?}");
}

#[tokio::test]
async fn killing_one_of_two_servers_under_steady_traffic_costs_no_get() {
    let a = app("a").await;
    let mut b = app("b").await;
    let list = urls(&[&a, &b]);
    let gw = std::sync::Arc::new(gateway(&[&list[0], &list[1]], "round_robin").await);
    // HTTP/1.1 GETs go through the relay, HTTP/2 GETs through hyper: four
    // keep-alive clients of each, asking without pause.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for http2 in [false, true] {
        for w in 0..4 {
            let (gw, stop) = (gw.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let client = if http2 {
                    gw.http.clone()
                } else {
                    gw.fresh_client()
                };
                let (mut ok, mut failed) = (0usize, Vec::new());
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let r = client.get(gw.url(&format!("/steady/{w}/{i}"))).send().await;
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(r.status().to_string()),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            }));
        }
    }
    eventually(10, "b takes traffic", || async {
        b.seen.lock().unwrap().len() > 50
    })
    .await;
    b.kill().await;
    let before = a.seen.lock().unwrap().len();
    eventually(10, "a takes the rest", || async {
        a.seen.lock().unwrap().len() > before + 200
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "failed GETs: {failed:?}");
        total += ok;
    }
    assert!(total > 250, "{total} GETs answered");
}

/// Both engines take their connections to a server from its one pool: a
/// relayed GET and a POST through hyper, three of each in turn, reach the
/// server on one connection, and one idle connection is left.
#[tokio::test]
async fn both_engines_share_one_pool_per_server() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let gw = gateway(&[&list[0]], "round_robin").await;
    // One client connection each: a connection that carried a request
    // through hyper stays with hyper.
    let (gets, posts) = (http1_client(), http1_client());
    // A connection goes back to the pool from its own task, just after the
    // answer reached the client: each request waits for it, so that what
    // is measured is sharing, not how fast that task ran.
    let series = format!(
        "pushgate_upstream_pool_idle{{upstream=\"default\",server=\"{}\"}}",
        a.url
    );
    for i in 0..3 {
        for (client, method, engine) in [
            (&gets, Method::GET, "relay"),
            (&posts, Method::POST, "hyper"),
        ] {
            let before = gw.relayed().await;
            let resp = client
                .request(method.clone(), gw.url(&format!("/one/{i}")))
                .header(PROBE, "1")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let _ = resp.bytes().await;
            assert_eq!(
                gw.engine_since(before).await,
                engine,
                "{method} went by the engine expected"
            );
            eventually(5, "the connection is idle in the pool", || async {
                metric(&gw.metrics_text().await, &series) == Some(1.0)
            })
            .await;
        }
    }
    assert_eq!(
        a.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "six requests in turn, one connection: the engines share the server's pool"
    );
}

/// A server whose `/stream…` answers send their head and a first chunk,
/// then hold the body open; anything else is answered at once with its name.
async fn streaming(name: &'static str) -> String {
    let app = TestApp::script(move |req| {
        if req.target().starts_with("/stream") {
            Answer {
                stall: true,
                ..crate::common::app::answer(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                )
            }
        } else {
            json_answer("200 OK", &format!("{{\"app\":\"{name}\"}}"))
        }
    })
    .start()
    .await;
    app.url.clone()
}

/// `least_conn` counts a request until its answer's body ended, on both
/// engines: while one server streams an answer, the other takes the rest.
#[tokio::test]
async fn least_conn_counts_a_streaming_answer_until_its_end() {
    let (a, b) = (streaming("a").await, streaming("b").await);
    // HTTP/1.1 GETs go by the relay, HTTP/2 ones by hyper; a gateway each
    // (a stream left behind counts until the gateway notices).
    for engine in ["relay", "hyper"] {
        let gw = gateway(&[&format!("\"{a}\""), &format!("\"{b}\"")], "least_conn").await;
        let client = if engine == "relay" {
            http1_client()
        } else {
            gw.http.clone()
        };
        let before = gw.relayed().await;
        let mut stream = client.get(gw.url("/stream")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        assert_eq!(&stream.chunk().await.unwrap().unwrap()[..], b"first");
        assert_eq!(gw.engine_since(before).await, engine);
        let text = gw.metrics_text().await;
        let busy: Vec<&str> = [&a, &b]
            .into_iter()
            .filter(|s| {
                let series =
                    format!("pushgate_upstream_in_flight{{upstream=\"default\",server=\"{s}\"}}");
                metric(&text, &series) == Some(1.0)
            })
            .map(String::as_str)
            .collect();
        assert_eq!(busy.len(), 1, "{engine}: one server streams: {text}");
        let idle_one = if busy[0] == a { "b" } else { "a" };
        let plain = gw.fresh_client();
        for i in 0..6 {
            let v: Value = plain
                .post(gw.url(&format!("/plain{i}")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                v["app"], idle_one,
                "{engine}: request {i} went to the streaming server"
            );
        }
        drop(stream);
    }
}
