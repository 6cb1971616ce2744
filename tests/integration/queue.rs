//! `max_connections` and `queue:` on an upstream: the application never
//! works on more requests from the gateway than its limit, whichever engine
//! carries them (a plain HTTP/1 GET by the relay, a POST by hyper); the
//! rest wait in line; a full line or a wait past `queue.timeout` is a 503
//! with `Retry-After` at once, not at `backend.timeout`. The gateway's own
//! requests (health checks, client `send`) take slots too, and a reload
//! that raises the limit lets waiters in.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::routes::app::{App, app};
use crate::upstreams::{
    dead, gateway_with, gateway_with_extra, http1_client, metric, server_stats, urls,
};

/// What a client got, and how long it took.
struct Got {
    status: u16,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

async fn ask(client: reqwest::Client, method: Method, url: String) -> Got {
    let started = Instant::now();
    let resp = client.request(method, url).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().await.unwrap_or(Value::Null);
    Got {
        status,
        retry_after,
        body,
        took: started.elapsed(),
    }
}

/// Start `ask` on its own task.
fn spawn_ask(gw: &TestGateway, method: Method, path: &str) -> tokio::task::JoinHandle<Got> {
    tokio::spawn(ask(http1_client(), method, gw.url(path)))
}

/// The value of the default upstream's series `name` for `app`'s server
/// (`rest`: more labels, e.g. `,reason="full"`).
async fn series(gw: &TestGateway, app: &App, name: &str, rest: &str) -> f64 {
    series_of(gw, &app.url, name, rest).await
}

/// [`series`] for the server at `url`.
async fn series_of(gw: &TestGateway, url: &str, name: &str, rest: &str) -> f64 {
    let text = gw.metrics_text().await;
    let at = format!("pushgate_upstream_{name}{{upstream=\"default\",server=\"{url}\"{rest}}}");
    metric(&text, &at).unwrap_or_else(|| panic!("{at} in\n{text}"))
}

/// Wait until `n` requests are at the application and `queued` wait in line.
async fn until_held(gw: &TestGateway, app: &App, n: usize, queued: usize) {
    eventually(10, &format!("{n} at the app, {queued} queued"), || async {
        app.busy.now() == n && series(gw, app, "queued", "").await == queued as f64
    })
    .await;
}

#[tokio::test]
async fn the_application_never_works_on_more_than_max_connections_on_either_engine() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let limit = ", max_connections: 2, queue: { size: 100, timeout: 10s }";
    let gw = gateway_with(&[&list[0]], "round_robin", limit).await;
    let mut admitted = 0.0;
    for (method, engine) in [(Method::GET, "relay"), (Method::POST, "hyper")] {
        let before = gw.relayed().await;
        let burst: Vec<_> = (0..20)
            .map(|i| spawn_ask(&gw, method.clone(), &format!("/hold/{method}/{i}")))
            .collect();
        // Two at the application, eighteen in line, and so it stays until
        // the application answers.
        until_held(&gw, &a, 2, 18).await;
        a.release.add_permits(20);
        for request in burst {
            let got = request.await.unwrap();
            assert_eq!(got.status, 200, "{method}: {}", got.body);
        }
        assert_eq!(
            a.busy.peak(),
            2,
            "{method}: at most max_connections at once"
        );
        let relayed = gw.relayed().await - before;
        assert_eq!(
            (engine, relayed),
            (engine, if engine == "relay" { 20 } else { 0 }),
            "{method} went by the engine expected"
        );
        admitted += 20.0;
        assert_eq!(
            series(&gw, &a, "queue_seconds_count", "").await,
            admitted,
            "each admission's wait observed"
        );
    }
    eventually(5, "slots given back", || async {
        series(&gw, &a, "in_flight", "").await == 0.0 && series(&gw, &a, "queued", "").await == 0.0
    })
    .await;
    // Nothing refused, and the slots came back: the next request is served.
    assert_eq!(
        series(&gw, &a, "queue_refused_total", ",reason=\"full\"").await,
        0.0
    );
    assert_eq!(
        ask(http1_client(), Method::GET, gw.url("/after"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_full_queue_is_a_503_with_retry_after_at_once() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let limit = ", max_connections: 1, queue: { size: 1, timeout: 20s }";
    let gw = gateway_with(&[&list[0]], "round_robin", limit).await;
    let held = spawn_ask(&gw, Method::GET, "/hold/1");
    until_held(&gw, &a, 1, 0).await;
    let waiting = spawn_ask(&gw, Method::GET, "/hold/2");
    until_held(&gw, &a, 1, 1).await;
    for method in [Method::GET, Method::POST, Method::HEAD] {
        let got = ask(http1_client(), method.clone(), gw.url("/more")).await;
        assert_eq!(got.status, 503, "{method}");
        assert_eq!(got.retry_after.as_deref(), Some("1"), "{method}");
        if method != Method::HEAD {
            assert_eq!(got.body["error"], "upstream_busy", "{method}: {}", got.body);
            assert!(
                got.body["message"]
                    .as_str()
                    .unwrap()
                    .contains("queue is full"),
                "{}",
                got.body
            );
        }
        assert!(
            got.took < Duration::from_secs(1),
            "{method} took {:?}",
            got.took
        );
    }
    assert!(
        !a.has_seen("/more"),
        "a refused request never reaches the app"
    );
    assert_eq!(
        series(&gw, &a, "queue_refused_total", ",reason=\"full\"").await,
        3.0
    );
    a.release.add_permits(2);
    assert_eq!(held.await.unwrap().status, 200);
    assert_eq!(
        waiting.await.unwrap().status,
        200,
        "the one in line is served"
    );
    assert_eq!(a.busy.peak(), 1);
}

#[tokio::test]
async fn a_wait_past_the_queue_timeout_is_a_503_near_it_not_at_the_backend_timeout() {
    let a = app("a").await;
    let list = urls(&[&a]);
    // backend.timeout is 5s (`gateway_with`).
    let limit = ", max_connections: 1, queue: { size: 10, timeout: 400ms }";
    let gw = gateway_with(&[&list[0]], "round_robin", limit).await;
    let held = spawn_ask(&gw, Method::GET, "/hold/1");
    until_held(&gw, &a, 1, 0).await;
    let waits = [Method::GET, Method::POST].map(|m| spawn_ask(&gw, m, "/late"));
    for (wait, method) in waits.into_iter().zip(["GET", "POST"]) {
        let got = wait.await.unwrap();
        assert_eq!(got.status, 503, "{method}: {}", got.body);
        assert_eq!(got.retry_after.as_deref(), Some("1"), "{method}");
        assert_eq!(got.body["error"], "upstream_busy", "{method}");
        assert!(
            got.took >= Duration::from_millis(400) && got.took < Duration::from_millis(2500),
            "{method} answered after {:?}",
            got.took
        );
    }
    assert!(!a.has_seen("/late"));
    assert_eq!(
        series(&gw, &a, "queue_refused_total", ",reason=\"timeout\"").await,
        2.0
    );
    assert_eq!(
        series(&gw, &a, "queued", "").await,
        0.0,
        "they left the line"
    );
    a.release.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);
}

#[tokio::test]
async fn health_checks_take_a_slot_and_a_busy_server_is_not_failed_for_it() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let more = ", max_connections: 1, queue: { size: 10, timeout: 5s }, \
        health: { path: /healthz, interval: 50ms, timeout: 150ms, fails: 1, passes: 1 }";
    let gw = gateway_with(&[&list[0]], "round_robin", more).await;
    let checks = || {
        a.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == "/healthz")
            .count()
    };
    eventually(5, "checks run", || async { checks() > 0 }).await;
    let held = spawn_ask(&gw, Method::GET, "/hold/1");
    eventually(5, "the request at the app", || async {
        a.has_seen("/hold/1")
    })
    .await;
    let before = checks();
    // Checks come and find no free slot: two are given up.
    eventually(5, "checks wait for a slot and give up", || async {
        series(&gw, &a, "queue_refused_total", ",reason=\"timeout\"").await >= 2.0
    })
    .await;
    assert_eq!(
        checks(),
        before,
        "no check reached the app beside the request"
    );
    assert_eq!(a.busy.peak(), 1);
    assert_eq!(
        server_stats(&gw, &a.url).await["healthy"],
        true,
        "a check without a slot is no failure (fails: 1)"
    );
    a.release.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);
    eventually(5, "checks run again", || async { checks() > before }).await;
    assert_eq!(a.busy.peak(), 1);
}

#[tokio::test]
async fn client_send_takes_a_slot_too() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let limit = ", max_connections: 1, queue: { size: 0 }";
    let extra = "client_messages: { forward_to: /inbound }";
    let gw = gateway_with_extra(&[&list[0]], "round_robin", limit, extra).await;
    let held = spawn_ask(&gw, Method::GET, "/hold/1");
    until_held(&gw, &a, 1, 0).await;
    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "upstream_busy");
    assert!(!a.has_seen("/inbound"));
    a.release.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);
    // The slot is given back just after the client has its answer.
    eventually(5, "the slot given back", || async {
        series(&gw, &a, "in_flight", "").await == 0.0
    })
    .await;
    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a free slot: sent");
    assert!(a.has_seen("/inbound"));
}

#[tokio::test]
async fn a_reload_that_raises_the_limit_lets_the_waiters_in() {
    let a = app("a").await;
    let list = urls(&[&a]);
    let limit = ", max_connections: 1, queue: { size: 10, timeout: 10s }";
    let gw = gateway_with(&[&list[0]], "round_robin", limit).await;
    let requests: Vec<_> = (0..4)
        .map(|i| spawn_ask(&gw, Method::GET, &format!("/hold/{i}")))
        .collect();
    until_held(&gw, &a, 1, 3).await;
    gw.reload_with("max_connections: 1,", "max_connections: 3,");
    // Two of the waiters are let in at once; the held request stays held.
    until_held(&gw, &a, 3, 1).await;
    a.release.add_permits(4);
    for request in requests {
        assert_eq!(request.await.unwrap().status, 200);
    }
    assert_eq!(a.busy.peak(), 3);
}

#[tokio::test]
async fn a_retry_gives_back_its_first_slot_before_it_waits_for_the_next() {
    let b = app("b").await;
    let down = dead().await;
    // b first: round robin gives it the first request (held there), and
    // the dead server the second.
    let list = [urls(&[&b]).remove(0), format!("\"{down}\"")];
    let limit = ", max_connections: 1, queue: { size: 10, timeout: 10s }";
    for method in [Method::GET, Method::POST] {
        // A fresh gateway each time: the dead server is not known dead yet.
        let gw = gateway_with(&[&list[0], &list[1]], "round_robin", limit).await;
        let held = spawn_ask(&gw, Method::GET, &format!("/hold/{method}"));
        until_held(&gw, &b, 1, 0).await;
        // The dead server has a free slot, so it is asked first; its
        // connect fails and the request waits in b's line, holding nothing.
        let retried = spawn_ask(&gw, method.clone(), "/retried");
        eventually(5, "the retry waits for b", || async {
            series(&gw, &b, "queued", "").await == 1.0
        })
        .await;
        assert!(series_of(&gw, &down, "errors_total", ",kind=\"connect\"").await >= 1.0);
        assert_eq!(
            series_of(&gw, &down, "in_flight", "").await,
            0.0,
            "{method}: the dead server's slot was given back"
        );
        b.release.add_permits(1);
        assert_eq!(held.await.unwrap().status, 200);
        let got = retried.await.unwrap();
        assert_eq!(
            (got.status, got.body["app"].as_str()),
            (200, Some("b")),
            "{method}"
        );
    }
}

#[tokio::test]
async fn each_attempt_gets_its_own_backend_timeout_on_the_relay() {
    // The first server's connect fails and the retry waits in the next
    // server's line until the request there times out (backend.timeout,
    // 2 s): the wait does not come out of the retry's own timeout, which
    // starts at its slot, as on hyper's path. (When one deadline covered
    // both, the retry had none left when its slot came: a 504.)
    let b = app("b").await;
    let down = dead().await;
    let list = [urls(&[&b]).remove(0), format!("\"{down}\"")];
    let limit = ", max_connections: 1, queue: { size: 10, timeout: 10s }";
    let gw = gateway_with(&[&list[0], &list[1]], "round_robin", limit).await;
    let held = spawn_ask(&gw, Method::GET, "/hold/first");
    until_held(&gw, &b, 1, 0).await;
    let before = gw.relayed().await;
    let retried = spawn_ask(&gw, Method::GET, "/hold/retried");
    eventually(5, "the retry waits for b", || async {
        series(&gw, &b, "queued", "").await == 1.0
    })
    .await;
    assert_eq!(
        held.await.unwrap().status,
        504,
        "the first request timed out"
    );
    eventually(5, "the retry reached b once its slot came", || async {
        b.has_seen("/hold/retried")
    })
    .await;
    // The application takes a second over the retry (not a wait for
    // anything: the scenario), well within its own 2 s, well past what a
    // deadline started at the first slot left it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One permit for the abandoned first request, one for the retry.
    b.release.add_permits(2);
    let got = retried.await.unwrap();
    assert_eq!((got.status, got.body["app"].as_str()), (200, Some("b")));
    assert_eq!(gw.relayed().await - before, 1, "carried by the relay");
}
