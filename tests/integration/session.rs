//! `auth.session` and resource checks in front of an application with its
//! own cookie login (`session/app.rs`), over SSE, WebSocket, long-poll and
//! `POST /realtime/publish`, with real clients.

#[path = "session/app.rs"]
mod app;
#[path = "session/fair.rs"]
mod fair;
#[path = "session/public.rs"]
mod public;
#[path = "session/reload_window.rs"]
mod reload_window;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;
use app::LoginApp;

const SECRET: &str = "session-test-secret";

/// The per-client limits of every session test: roomy.
const LIMITS: &str = r#"  per_client:
    connections: 5000
    messages: { rate: 100000/s, burst: 100000 }
    subscribes: { rate: 100000/s, burst: 100000 }"#;

/// A gateway in front of `app` that logs clients in with its cookie
/// session (`GET /api/me`); `session` is more `auth.session` lines.
fn config(app: &LoginApp, session: &str) -> GatewayBuilder {
    with_subject(app, "{body.id}", session)
}

/// [`config`] taking the subject from the template `subject`.
fn with_subject(app: &LoginApp, subject: &str, session: &str) -> GatewayBuilder {
    TestGateway::builder()
        .tag("session")
        .backend(app.url())
        .section(
            r#"upstreams:
  gone: { url: "http://127.0.0.1:9", connect_timeout: 200ms }"#,
        )
        .jwt_secret(SECRET)
        .auth(&format!(
            r#"  session:
    check: GET /api/me
    subject: "{subject}"
    channels: "{{body.channels}}"
{session}"#
        ))
        .limits(LIMITS)
        .channels(
            r#"channels:
  - { pattern: "public.*", subscribe: anyone }
  - { pattern: "user.{sub}", subscribe: owner }
  - { pattern: "notes.{sub}", subscribe: owner, publish: clients }
  - { pattern: "team.*", subscribe: token }
  - { pattern: "orders.{id}", subscribe: { check: "GET /api/orders/{id}" } }
  - { pattern: "bids.{id}", subscribe: anyone, publish: { check: "GET /api/orders/{id}" } }"#,
        )
}

async fn gateway(app: &LoginApp, session: &str) -> TestGateway {
    config(app, session).start().await
}

/// Cache and recheck as most tests want them: answers kept, no rechecks.
const DEFAULTS: &str = "    cache: 30s\n    recheck: 10m\n    timeout: 1s";

async fn poll(gw: &TestGateway, channels: &str, cookie: Option<&str>) -> (u16, Value) {
    let mut req = gw
        .http
        .get(gw.url(&format!("/realtime/poll?channels={channels}&timeout=0")));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn sse(gw: &TestGateway, channels: &str, cookie: Option<&str>) -> Result<SseReader, u16> {
    let mut req = gw
        .http1
        .get(gw.url(&format!("/realtime/sse?channels={channels}")));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    match resp.status().as_u16() {
        200 => Ok(SseReader::new(resp)),
        other => Err(other),
    }
}

async fn ws(gw: &TestGateway, channels: &str, cookie: Option<&str>) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!(
        "wss://localhost:{}/realtime/ws?channels={channels}",
        gw.public.port()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "pushgate.v1".parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    match tokio_tungstenite::client_async(req, gw.tls_stream().await).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// A client of `gw` whose connections come from `from` (any 127/8 address
/// is this host's): another address, as the gateway counts them.
fn client_from(gw: &TestGateway, from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&gw.cert_pem).unwrap())
        .resolve("localhost", gw.public)
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The next frame that is not a ping, pong or welcome.
async fn next_reply(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] != "welcome" {
            return v;
        }
    }
}

#[tokio::test]
async fn the_apps_login_decides_who_a_browser_is_on_every_transport() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    let alice = app.login("alice");

    // SSE: her own channel, not bob's; without the cookie, a login is needed.
    assert!(sse(&gw, "user.alice", Some(&alice)).await.is_ok());
    assert_eq!(sse(&gw, "user.bob", Some(&alice)).await.err(), Some(403));
    assert_eq!(sse(&gw, "user.alice", None).await.err(), Some(401));
    // Long-poll, and the channels the answer lists (`{body.channels}`) for
    // a `token` rule.
    assert_eq!(poll(&gw, "user.alice", Some(&alice)).await.0, 200);
    assert_eq!(poll(&gw, "team.blue.chat", Some(&alice)).await.0, 200);
    assert_eq!(poll(&gw, "team.red.chat", Some(&alice)).await.0, 403);
    assert_eq!(poll(&gw, "user.alice", None).await.0, 401);
    // A cookie the application does not know: anonymous, public still open.
    let stale = "sessionid=nobody";
    assert_eq!(poll(&gw, "public.news", Some(stale)).await.0, 200);
    assert_eq!(poll(&gw, "user.alice", Some(stale)).await.0, 401);

    // WebSocket: at connect, and the `subscribe` op.
    let mut socket = ws(&gw, "user.alice", Some(&alice)).await.unwrap();
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "user.bob", "ref": "b"}),
    )
    .await;
    let refused = next_reply(&mut socket).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "notes.alice", "ref": "n"}),
    )
    .await;
    assert_eq!(next_reply(&mut socket).await["type"], "ack");
    let id = gw.publish_one("user.alice", json!({"hi": 1})).await;
    let got = next_reply(&mut socket).await;
    assert_eq!(got["id"], id, "{got}");
    assert_eq!(ws(&gw, "user.alice", None).await.err(), Some(401));

    // POST /realtime/publish as her, into her own notes.
    let published = gw
        .http
        .post(gw.url("/realtime/publish"))
        .header("cookie", &alice)
        .json(&json!({"channel": "notes.alice", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let refused = gw
        .http
        .post(gw.url("/realtime/publish"))
        .header("cookie", &alice)
        .json(&json!({"channel": "notes.bob", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn the_apps_own_resource_url_decides_a_channel() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    let alice = app.login("alice");
    let bob = app.login("bob");

    assert!(sse(&gw, "orders.7", Some(&alice)).await.is_ok());
    assert_eq!(sse(&gw, "orders.8", Some(&alice)).await.err(), Some(403));
    assert_eq!(
        sse(&gw, "orders.99", Some(&alice)).await.err(),
        Some(403),
        "404 is a 403"
    );
    assert_eq!(sse(&gw, "orders.7", None).await.err(), Some(401));
    assert_eq!(poll(&gw, "orders.8", Some(&bob)).await.0, 200);
    assert_eq!(poll(&gw, "orders.7", Some(&bob)).await.0, 403);

    let mut socket = ws(&gw, "public.x", Some(&bob)).await.unwrap();
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "orders.7", "ref": "a"}),
    )
    .await;
    assert_eq!(next_reply(&mut socket).await["code"], "forbidden");
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "orders.8", "ref": "b"}),
    )
    .await;
    assert_eq!(next_reply(&mut socket).await["type"], "ack");

    // publish: { check }: anyone may follow bids.7, only its owner may bid.
    let bid = |cookie: Option<String>| {
        let mut req = gw
            .http
            .post(gw.url("/realtime/publish"))
            .json(&json!({"channel": "bids.7", "data": {"eur": 5}}));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(bid(Some(alice.clone())).await, 200);
    assert_eq!(bid(Some(bob.clone())).await, 403);
    assert_eq!(bid(None).await, 401);

    // The application broken: nothing that needed it is allowed.
    app.broken.store(true, Ordering::SeqCst);
    let carol = app.login("carol");
    let (status, body) = poll(&gw, "user.carol", Some(&carol)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("auth_unavailable")),
        "{body}"
    );
}

#[tokio::test]
async fn a_burst_with_one_cookie_costs_one_check() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    // Slow enough that the whole burst arrives while the first check is out.
    app.delay_ms.store(300, Ordering::SeqCst);
    let alice = app.login("alice");
    let gw = Arc::new(gw);
    let statuses: Vec<u16> = futures_util::stream::iter(0..300)
        .map(|_| {
            let (gw, alice) = (gw.clone(), alice.clone());
            async move { poll(&gw, "user.alice", Some(&alice)).await.0 }
        })
        .buffer_unordered(300)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 1);
    // Kept for `cache`: later connections ask nobody either.
    assert!(sse(&gw, "user.alice", Some(&alice)).await.is_ok());
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_check_carries_the_cookie_and_authorization_only() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    let alice = app.login("alice");
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=user.alice&timeout=0"))
        .header("cookie", &alice)
        .header("authorization", "Basic YWxpY2U6eA==")
        .header("x-forwarded-user", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-user-id", "admin")
        .header("x-real-ip", "6.6.6.6")
        .header("user-agent", "evil/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.check_headers.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let names: Vec<&str> = seen[0].iter().map(|(k, _)| k.as_str()).collect();
    for name in &names {
        assert!(
            ["cookie", "authorization", "accept", "host"].contains(name),
            "the check carried {name}: {names:?}"
        );
    }
    let get = |n: &str| seen[0].iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(get("cookie").as_deref(), Some(alice.as_str()));
    assert_eq!(get("authorization").as_deref(), Some("Basic YWxpY2U6eA=="));
}

#[tokio::test]
async fn a_token_wins_over_the_cookie() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    let alice = app.login("alice");
    let bob_token =
        pushgate::auth::mint_hs256(SECRET, "bob", &[], Duration::from_secs(60), None, None)
            .unwrap();
    let with = |channel: &str| {
        gw.http
            .get(gw.url(&format!("/realtime/poll?channels={channel}&timeout=0")))
            .header("cookie", &alice)
            .bearer_auth(&bob_token)
            .send()
    };
    assert_eq!(with("user.bob").await.unwrap().status(), 200);
    assert_eq!(with("user.alice").await.unwrap().status(), 403);
    assert_eq!(
        app.me_calls.load(Ordering::SeqCst),
        0,
        "a token needs no check"
    );
    // A token of ours that does not verify is refused, cookie or not.
    let tampered = format!("{bob_token}x");
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=public.a&timeout=0"))
        .header("cookie", &alice)
        .bearer_auth(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn logging_out_closes_live_connections_at_recheck() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, "    cache: 100ms\n    recheck: 1s\n    timeout: 1s").await;
    let alice = app.login("alice");
    let bob = app.login("bob");
    let mut socket = ws(&gw, "user.alice", Some(&alice)).await.unwrap();
    let mut stream = sse(&gw, "orders.7", Some(&alice)).await.unwrap();
    let mut bobs = ws(&gw, "user.bob", Some(&bob)).await.unwrap();
    app.logout(&alice);

    // WebSocket: `token_expired`, then close 1008.
    let told = next_reply(&mut socket).await;
    assert_eq!(told["code"], "token_expired", "{told}");
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("closed in time");
    match closed {
        Some(Ok(Frame::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    // SSE: an `error` event, then the end.
    let event = stream.expect().await;
    assert_eq!(event.event, "error");
    assert!(
        event.data.contains("token_expired") || event.data.contains("unauthorized"),
        "{}",
        event.data
    );
    assert!(stream.next_event().await.is_none(), "the stream ends");
    // Long-poll: 401 once the cached answer is gone.
    assert_eq!(poll(&gw, "user.alice", Some(&alice)).await.0, 401);
    // Bob, still logged in, keeps his connection and its deliveries.
    let id = gw.publish_one("user.bob", json!({"still": true})).await;
    assert_eq!(next_reply(&mut bobs).await["id"], id);
}

#[tokio::test]
async fn a_slow_or_absent_application_cannot_pile_up_checks() {
    let app = LoginApp::start().await;
    let gw = gateway(
        &app,
        "    cache: 30s\n    recheck: 10m\n    timeout: 400ms\n    concurrency: 2",
    )
    .await;
    // Far slower than the check's timeout: a check that waited its turn
    // behind another would take at least this long.
    app.delay_ms.store(6000, Ordering::SeqCst);
    let gw = Arc::new(gw);
    // Twelve users on twelve addresses: each within its share, so the bound
    // in all is what holds them.
    // Connected first (a public poll asks nothing), so that the twelve
    // checks start together.
    let mut clients = Vec::new();
    for i in 0..12 {
        let client = client_from(&gw, &format!("127.0.0.{}", 10 + i));
        let r = client
            .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        clients.push((client, app.login(&format!("u{i}"))));
    }
    let started = std::time::Instant::now();
    let answers: Vec<(u16, Value)> = futures_util::stream::iter(clients)
        .map(|(client, c)| {
            let gw = gw.clone();
            async move {
                let r = client
                    .get(gw.url("/realtime/poll?channels=user.x&timeout=0"))
                    .header("cookie", c)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    for (status, body) in &answers {
        assert_eq!(
            (*status, body["error"].as_str()),
            (503, Some("auth_unavailable")),
            "{body}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "each waits its timeout (400ms), not its turn (6s)"
    );
    assert!(app.most_in_flight.load(Ordering::SeqCst) <= 2);

    // Unreachable: the session upstream is a closed port.
    let down = gateway(&app, "    upstream: gone\n    timeout: 1s").await;
    let alice = app.login("alice");
    let (status, body) = poll(&down, "user.alice", Some(&alice)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("auth_unavailable"))
    );
    // No credential at all: nothing to ask, anonymous.
    assert_eq!(poll(&down, "public.x", None).await.0, 200);
}

#[tokio::test]
async fn subject_and_channels_come_from_the_answer_by_template() {
    let app = LoginApp::start().await;
    // `{header.X-User-Id}`: the answer's header names the subject.
    let gw = with_subject(&app, "{header.X-User-Id}", DEFAULTS)
        .start()
        .await;
    let alice = app.login("alice");
    assert_eq!(poll(&gw, "user.h-alice", Some(&alice)).await.0, 200);
    assert_eq!(poll(&gw, "user.alice", Some(&alice)).await.0, 403);
}

#[tokio::test]
async fn an_outage_at_recheck_keeps_live_connections_and_allows_nothing_new() {
    let app = LoginApp::start().await;
    let gw = gateway(
        &app,
        "    cache: 100ms\n    recheck: 1s\n    timeout: 500ms",
    )
    .await;
    let alice = app.login("alice");
    let mut socket = ws(&gw, "user.alice", Some(&alice)).await.unwrap();
    app.broken.store(true, Ordering::SeqCst);
    let asked = app.check_headers.lock().unwrap().len();
    eventually(5, "rechecks during the outage", || async {
        app.check_headers.lock().unwrap().len() > asked + 1
    })
    .await;
    // Still hers, still delivered; a new connection is refused meanwhile.
    let id = gw
        .publish_one("user.alice", json!({"during": "outage"}))
        .await;
    assert_eq!(next_reply(&mut socket).await["id"], id);
    let (status, body) = poll(&gw, "user.alice", Some(&app.login("alice"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("auth_unavailable"))
    );
    // Back, and logged out: the next recheck (soon after a failed one) closes it.
    app.broken.store(false, Ordering::SeqCst);
    app.logout(&alice);
    let told = next_reply(&mut socket).await;
    assert_eq!(told["code"], "token_expired", "{told}");
}

#[tokio::test]
async fn made_up_cookies_are_charged_to_the_address_before_the_app_is_asked() {
    let app = LoginApp::start().await;
    let gw = config(&app, DEFAULTS)
        .limits(&format!(
            "  per_ip: {{ subscribes: {{ rate: 1/m, burst: 5 }} }}\n{LIMITS}"
        ))
        .start()
        .await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(
            poll(&gw, "user.x", Some(&format!("sessionid=forged{i}")))
                .await
                .0,
        );
    }
    // Each poll is charged once for its check and once for its subscribe:
    // the application is asked while the address has subscribes left.
    assert!(app.me_calls.load(Ordering::SeqCst) <= 3, "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 9,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_dot_segment_from_a_channel_name_is_never_asked() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    let alice = app.login("alice");
    for channel in ["orders..", "orders..."] {
        assert_eq!(poll(&gw, channel, Some(&alice)).await.0, 403, "{channel}");
    }
    assert_eq!(app.order_calls.load(Ordering::SeqCst), 0);
}

/// A WebSocket `subscribe` that asks the application does not hold up the
/// connection: while the slow answer is awaited, a ping is answered and a
/// message on a channel already followed is delivered; the subscribe's ack
/// comes after. A channel unsubscribed before its answer is not followed.
#[tokio::test]
async fn a_websocket_goes_on_while_the_application_is_asked() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, "    cache: 30s\n    recheck: 10m\n    timeout: 5s").await;
    let bob = app.login("bob");
    let mut socket = ws(&gw, "public.x", Some(&bob)).await.unwrap();
    // Connected (its login answered at once); now every check is slow.
    app.delay_ms.store(1500, Ordering::SeqCst);
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "orders.8", "ref": "slow"}),
    )
    .await;
    send_json(&mut socket, json!({"op": "ping", "ref": "p"})).await;
    let first = next_reply(&mut socket).await;
    assert_eq!(
        (&first["type"], &first["ref"]),
        (&json!("ack"), &json!("p")),
        "{first}"
    );
    gw.publish_one("public.x", json!({"n": 1})).await;
    let message = next_reply(&mut socket).await;
    assert_eq!(message["channel"], "public.x", "{message}");
    let ack = next_reply(&mut socket).await;
    assert_eq!(
        (&ack["type"], &ack["ref"], &ack["channel"]),
        (&json!("ack"), &json!("slow"), &json!("orders.8")),
        "{ack}"
    );
    gw.publish_one("orders.8", json!({"n": 2})).await;
    assert_eq!(next_reply(&mut socket).await["channel"], "orders.8");

    // Unsubscribed before the answer: told so, and not followed; a
    // subscribe after that is asked afresh and answered. (A new login: its
    // answer is not cached.)
    let bob2 = app.login("bob");
    let mut socket = ws(&gw, "public.x", Some(&bob2)).await.unwrap();
    for (op, r) in [
        ("subscribe", "s1"),
        ("unsubscribe", "u"),
        ("subscribe", "s2"),
    ] {
        send_json(
            &mut socket,
            json!({"op": op, "channel": "orders.8", "ref": r}),
        )
        .await;
    }
    let called_off = next_reply(&mut socket).await;
    assert_eq!(
        (&called_off["ref"], &called_off["code"]),
        (&json!("s1"), &json!("cancelled")),
        "{called_off}"
    );
    assert_eq!(next_reply(&mut socket).await["ref"], "u");
    let ack = next_reply(&mut socket).await;
    assert_eq!(
        (&ack["ref"], &ack["type"]),
        (&json!("s2"), &json!("ack")),
        "{ack}"
    );
    send_json(
        &mut socket,
        json!({"op": "unsubscribe", "channel": "orders.8", "ref": "u2"}),
    )
    .await;
    assert_eq!(next_reply(&mut socket).await["ref"], "u2");
    gw.publish_one("orders.8", json!({"n": 3})).await;
    gw.publish_one("public.x", json!({"n": 4})).await;
    let next = next_reply(&mut socket).await;
    assert_eq!(
        next["channel"], "public.x",
        "orders.8 is not followed: {next}"
    );

    // Two subscribes to one channel while it is asked about: one question
    // to the application, an answer to each.
    let bob3 = app.login("bob");
    let mut socket = ws(&gw, "public.x", Some(&bob3)).await.unwrap();
    let asked = app.order_calls.load(Ordering::SeqCst);
    for r in ["a", "b"] {
        send_json(
            &mut socket,
            json!({"op": "subscribe", "channel": "orders.8", "ref": r}),
        )
        .await;
    }
    for r in ["a", "b"] {
        let ack = next_reply(&mut socket).await;
        assert_eq!(
            (&ack["ref"], &ack["type"]),
            (&json!(r), &json!("ack")),
            "{ack}"
        );
    }
    assert_eq!(app.order_calls.load(Ordering::SeqCst), asked + 1);
}

#[tokio::test]
async fn session_checks_take_the_backends_connection_slots() {
    let app = LoginApp::start().await;
    app.delay_ms.store(50, Ordering::SeqCst);
    let gw = config(&app, DEFAULTS)
        .backend_keys(", max_connections: 1, queue: { size: 100, timeout: 5s }")
        .start()
        .await;
    let gw = Arc::new(gw);
    // Five users at once: five checks (no answer cached), one at a time.
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let asks: Vec<_> = users
        .iter()
        .map(|user| {
            let (gw, cookie) = (gw.clone(), app.login(user));
            let channel = format!("user.{user}");
            tokio::spawn(async move { poll(&gw, &channel, Some(&cookie)).await })
        })
        .collect();
    for ask in asks {
        let (status, v) = ask.await.unwrap();
        assert_eq!(status, 200, "{v}");
    }
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 5);
    assert_eq!(
        app.most_in_flight.load(Ordering::SeqCst),
        1,
        "checks beyond max_connections waited for a slot"
    );
}

#[tokio::test]
async fn a_publish_with_a_failing_token_is_refused_before_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = LoginApp::start().await;
    let gw = gateway(&app, DEFAULTS).await;
    // Signed with another secret: a token of ours that fails.
    let forged = pushgate::auth::mint_hs256(
        "not-the-secret",
        "bob",
        &[],
        Duration::from_secs(60),
        None,
        None,
    )
    .unwrap();
    let mut tls = gw.tls_stream().await;
    // A body announced large and never sent: the answer must not wait on it.
    let head = format!(
        "POST /realtime/publish HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {forged}\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{{\"channel\":"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway waited for the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // The same token with a whole body: 401 as before.
    let r = gw
        .http
        .post(gw.url("/realtime/publish"))
        .bearer_auth(&forged)
        .json(&json!({"channel": "public.x", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 0);
}
