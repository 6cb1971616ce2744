//! Public channels do not need the login: a browser's cookies (every real
//! browser has a CSRF or analytics one) are not sent to the application for
//! `anyone` channels, so its login being down or slow refuses none of them.
//! A private channel still asks, at connect or, on a WebSocket that began
//! anonymous, at the op that first needs it.

use super::*;

/// How many checks of any kind the application has received.
fn checks_seen(app: &LoginApp) -> usize {
    app.check_headers.lock().unwrap().len()
}

#[tokio::test]
async fn public_channels_are_served_while_the_login_is_down_or_slow() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, "    cache: 30s\n    recheck: 10m\n    timeout: 300ms").await;
    let alice = app.login("alice");
    for (outage, broken, delay_ms) in [("down", true, 0), ("slow", false, 5_000)] {
        app.broken.store(broken, Ordering::SeqCst);
        app.delay_ms.store(delay_ms, Ordering::SeqCst);
        let cookie = Some(alice.as_str());
        let mut events = sse(&gw, "public.a,public.b", cookie)
            .await
            .unwrap_or_else(|s| panic!("{outage}: sse answered {s}"));
        let (status, body) = poll(&gw, "public.a", cookie).await;
        assert_eq!(status, 200, "{outage}: poll {body}");
        let mut socket = ws(&gw, "public.a", cookie)
            .await
            .unwrap_or_else(|s| panic!("{outage}: websocket answered {s}"));
        // A later subscribe op to another public channel: no check either.
        send_json(
            &mut socket,
            json!({"op": "subscribe", "channel": "public.b", "ref": "b"}),
        )
        .await;
        let ack = next_reply(&mut socket).await;
        assert_eq!(
            (&ack["type"], &ack["ref"]),
            (&json!("ack"), &json!("b")),
            "{ack}"
        );
        // Served: what is published reaches both.
        let id = gw.publish_one("public.b", json!({"outage": outage})).await;
        let ev = events.expect().await;
        assert_eq!(
            ev.json()["data"],
            json!({"outage": outage}),
            "{outage}: {ev:?}"
        );
        let m = next_reply(&mut socket).await;
        assert_eq!(
            (&m["channel"], &m["id"]),
            (&json!("public.b"), &json!(id)),
            "{m}"
        );
    }
    assert_eq!(checks_seen(&app), 0, "the application saw no check");

    // A private channel still asks: the slow login is a 503, never anonymous.
    let (status, body) = poll(&gw, "user.alice", Some(&alice)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("auth_unavailable")),
        "{body}"
    );
    assert_eq!(checks_seen(&app), 1);
    // Public and private together: asked, and refused with it.
    let (status, _) = poll(&gw, "public.a,user.alice", Some(&alice)).await;
    assert_eq!(status, 503);
    app.delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(poll(&gw, "public.a,user.alice", Some(&alice)).await.0, 200);
    assert_eq!(poll(&gw, "user.alice", Some(&alice)).await.0, 200);
}

#[tokio::test]
async fn a_websocket_that_began_anonymous_asks_when_an_op_needs_it() {
    let app = LoginApp::start().await;
    let gw = gateway(&app, "    cache: 30s\n    recheck: 10m\n    timeout: 2s").await;
    let alice = app.login("alice");
    app.broken.store(true, Ordering::SeqCst);
    let mut socket = ws(&gw, "public.a", Some(&alice)).await.unwrap();
    assert_eq!(checks_seen(&app), 0);
    // Her own channel needs her identity: asked now. Down: refused as
    // unavailable, the socket goes on.
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "user.alice", "ref": "1"}),
    )
    .await;
    let refused = next_reply(&mut socket).await;
    assert_eq!(
        (&refused["ref"], &refused["code"]),
        (&json!("1"), &json!("auth_unavailable")),
        "{refused}"
    );
    assert_eq!(
        app.me_calls.load(Ordering::SeqCst),
        0,
        "500s are not counted"
    );
    assert_eq!(checks_seen(&app), 1);
    // Back: asked again, and she is alice from now on.
    app.broken.store(false, Ordering::SeqCst);
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "user.alice", "ref": "2"}),
    )
    .await;
    let ack = next_reply(&mut socket).await;
    assert_eq!(
        (&ack["ref"], &ack["type"]),
        (&json!("2"), &json!("ack")),
        "{ack}"
    );
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 1);
    let id = gw.publish_one("user.alice", json!({"for": "alice"})).await;
    let m = next_reply(&mut socket).await;
    assert_eq!(
        (&m["channel"], &m["id"]),
        (&json!("user.alice"), &json!(id)),
        "{m}"
    );
    // Known now: bob's channel is forbidden without asking again, and her
    // `notes.alice` (owner, publish: clients) takes her publish.
    send_json(
        &mut socket,
        json!({"op": "subscribe", "channel": "user.bob", "ref": "3"}),
    )
    .await;
    assert_eq!(next_reply(&mut socket).await["code"], "forbidden");
    send_json(
        &mut socket,
        json!({"op": "publish", "channel": "notes.alice", "data": 1, "ref": "4"}),
    )
    .await;
    let ack = next_reply(&mut socket).await;
    assert_eq!(
        (&ack["ref"], &ack["type"]),
        (&json!("4"), &json!("ack")),
        "{ack}"
    );
    assert_eq!(
        app.me_calls.load(Ordering::SeqCst),
        1,
        "one login for the socket"
    );
    // Hers for the admin API too: disconnecting alice reaches it.
    let kicked: Value = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kicked["disconnected"], 1, "{kicked}");

    // A publish op is the first to need the login on another socket.
    let bob = app.login("bob");
    let mut socket = ws(&gw, "public.a", Some(&bob)).await.unwrap();
    send_json(
        &mut socket,
        json!({"op": "publish", "channel": "notes.bob", "data": 1, "ref": "p"}),
    )
    .await;
    let ack = next_reply(&mut socket).await;
    assert_eq!(
        (&ack["ref"], &ack["type"]),
        (&json!("p"), &json!("ack")),
        "{ack}"
    );
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_slow_login_for_a_publish_op_does_not_stall_the_socket() {
    let app = LoginApp::start().await;
    // Heartbeat 900ms: the socket waits on the login 300ms at most, while
    // the application takes 1.5s (within the check's 5s).
    let gw = config(&app, "    cache: 30s\n    recheck: 10m\n    timeout: 5s")
        .realtime("  heartbeat: 900ms")
        .start()
        .await;
    app.delay_ms.store(1500, Ordering::SeqCst);
    let bob = app.login("bob");
    let mut socket = ws(&gw, "public.a", Some(&bob)).await.unwrap();
    let asked = std::time::Instant::now();
    send_json(
        &mut socket,
        json!({"op": "publish", "channel": "notes.bob", "data": 1, "ref": "p"}),
    )
    .await;
    let refused = next_reply(&mut socket).await;
    assert_eq!(
        (&refused["ref"], &refused["code"]),
        (&json!("p"), &json!("auth_unavailable")),
        "{refused}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(1200),
        "the socket waited for the application: {:?}",
        asked.elapsed()
    );
    // The socket goes on meanwhile: a delivery arrives.
    let id = gw.publish_one("public.a", json!({"still": "here"})).await;
    let m = next_reply(&mut socket).await;
    assert_eq!(
        (&m["channel"], &m["id"]),
        (&json!("public.a"), &json!(id)),
        "{m}"
    );
    // The check went on and its answer was kept: the retry is served
    // without asking again.
    eventually(10, "the login answered", || async {
        app.me_calls.load(Ordering::SeqCst) == 1
    })
    .await;
    send_json(
        &mut socket,
        json!({"op": "publish", "channel": "notes.bob", "data": 2, "ref": "q"}),
    )
    .await;
    let ack = next_reply(&mut socket).await;
    assert_eq!(
        (&ack["ref"], &ack["type"]),
        (&json!("q"), &json!("ack")),
        "{ack}"
    );
    assert_eq!(app.me_calls.load(Ordering::SeqCst), 1);
}
