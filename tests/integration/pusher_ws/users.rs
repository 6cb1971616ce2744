//! `pusher:signin` with raw frames: the good sign-in and what it opens, and
//! each bad input (a forged signature, `user_data` without an `id`, a
//! watchlist of 10,000 ids, another user's `#server-to-user-` channel), an
//! app that requires signing in, and the Python library's prefix-less
//! `terminate_connections`.

use serde_json::{Value, json};

use super::*;

/// `key:signature` as `pusher.authenticateUser` signs `user_data`.
pub(crate) fn sign_user(socket_id: &str, user_data: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let text = format!("{socket_id}::user::{user_data}");
    format!(
        "{KEY}:{}",
        hex::encode(hmac::sign(&key, text.as_bytes()).as_ref())
    )
}

async fn signin(ws: &mut Ws, auth: &str, user_data: &str) -> Value {
    send_json(
        ws,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    )
    .await;
    next_event(ws).await
}

fn error_code(v: &Value) -> Option<u64> {
    (v["event"] == "pusher:error")
        .then(|| v["data"]["code"].as_u64())
        .flatten()
}

/// Sign in `ws` as `id`; asserts success.
async fn signed_in(ws: &mut Ws, socket_id: &str, id: &str) {
    let data = json!({"id": id, "name": "x"}).to_string();
    let ok = signin(ws, &sign_user(socket_id, &data), &data).await;
    assert_eq!(ok["event"], "pusher:signin_success", "{ok}");
    let inner: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(inner["user_data"], data, "the exact text signed: {ok}");
}

#[tokio::test]
async fn a_forged_or_malformed_signin_is_refused_and_the_socket_stays() {
    let gw = gateway().await;
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let data = json!({"id": "u1"}).to_string();
    // Signed for another socket, over other text, with another key.
    for auth in [
        sign_user("1.1", &data),
        sign_user(&id, "{\"id\":\"u2\"}"),
        sign_user(&id, &data).replacen(KEY, "other", 1),
        "garbage".to_owned(),
    ] {
        let e = signin(&mut ws, &auth, &data).await;
        assert_eq!(error_code(&e), Some(4009), "{auth}: {e}");
    }
    // Well signed, but not a user Pusher accepts.
    let ids: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    let huge = json!({"id": "u1", "watchlist": ids}).to_string();
    let over = json!({"id": "u1", "watchlist": ids[..101]}).to_string();
    for bad in [
        json!({"name": "no id"}).to_string(),
        json!({"id": 7}).to_string(),
        json!({"id": ""}).to_string(),
        huge,
        over,
    ] {
        let e = signin(&mut ws, &sign_user(&id, &bad), &bad).await;
        assert_eq!(error_code(&e), Some(4009), "{e}");
    }
    // Not signed in: another user's channel is refused and gets nothing.
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-u1"}}),
    )
    .await;
    assert_eq!(error_code(&next_event(&mut ws).await), Some(4009));
    let refused = next_event(&mut ws).await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    // Still open, and a good sign-in now works.
    signed_in(&mut ws, &id, "u1").await;
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-u1"}}),
    )
    .await;
    let ok = next_event(&mut ws).await;
    assert_eq!(
        (ok["event"].as_str(), ok["channel"].as_str()),
        (
            Some("pusher_internal:subscription_succeeded"),
            Some("#server-to-user-u1")
        ),
        "{ok}"
    );
    // One connection is one user.
    let other = json!({"id": "u2"}).to_string();
    let e = signin(&mut ws, &sign_user(&id, &other), &other).await;
    assert_eq!(error_code(&e), Some(4009), "{e}");
}

/// The Python library 3.3 posts to `/users/{id}/terminate_connections`
/// without `/apps/{id}`; the user's sockets close 4009, an unsigned one
/// and another user's stay.
#[tokio::test]
async fn the_python_library_terminates_a_users_sockets_only() {
    let gw = gateway().await;
    let (mut a, a_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    signed_in(&mut a, &a_id, "u1").await;
    let (mut b, b_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    signed_in(&mut b, &b_id, "u2").await;
    let (mut anon, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let config = json!({
        "host": gw.admin.ip().to_string(), "port": gw.admin.port(),
        "app_id": "1001", "key": KEY, "secret": SECRET,
        "steps": [
            {"op": "terminate_user_connections", "args": ["u1"]},
        ],
    });
    let answer = python_api(config).await;
    assert!(answer.get("error").is_none(), "{answer}");
    loop {
        match next_or_close(&mut a).await {
            Ok(v) if v["event"] == "pusher:ping" => continue,
            other => {
                assert_eq!(other, Err(4009));
                break;
            }
        }
    }
    for ws in [&mut b, &mut anon] {
        send_json(ws, json!({"event": "pusher:ping", "data": {}})).await;
        assert_eq!(next_event(ws).await["event"], "pusher:pong");
    }
    // A forged terminate is refused.
    let config = json!({
        "host": gw.admin.ip().to_string(), "port": gw.admin.port(),
        "app_id": "1001", "key": KEY, "secret": "wrong",
        "steps": [{"op": "terminate_user_connections", "args": ["u2"]}],
    });
    let answer = python_api(config).await;
    assert_eq!(answer["error"], "PusherBadAuth", "{answer}");
    send_json(&mut b, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_event(&mut b).await["event"], "pusher:pong");
}

/// One step of the official Python library (`tests/pusher/api.py`): its
/// one line of JSON.
pub(crate) async fn python_api(config: Value) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pusher");
    let out = tokio::process::Command::new(dir.join(".venv/bin/python"))
        .arg(dir.join("api.py"))
        .arg(config.to_string())
        .output()
        .await
        .expect("python runs");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn an_app_that_requires_signing_in_closes_a_silent_socket_4009() {
    let dir = temp_dir("pusher-signin");
    let text = config(&dir, true).replace(
        "max_message: 1KiB }",
        "max_message: 1KiB, user_authentication_timeout: 300ms }",
    );
    let gw = TestGateway::start_yaml(&text, dir).await;
    let (mut quiet, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let (mut ws, id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    signed_in(&mut ws, &id, "u1").await;
    assert_eq!(next_or_close(&mut quiet).await, Err(4009));
    // The signed-in one outlives the deadline (it answers pings).
    for _ in 0..2 {
        let v = next_or_close(&mut ws).await.unwrap();
        assert_eq!(v["event"], "pusher:ping", "{v}");
        send_json(&mut ws, json!({"event": "pusher:pong", "data": {}})).await;
    }
}

/// A reload that makes signing in required reaches the sockets already
/// open: their deadline counts from their start, so one older than it
/// closes 4009 at once.
#[tokio::test]
async fn a_reload_that_requires_signing_in_reaches_open_sockets() {
    let gw = gateway().await;
    let (mut quiet, _) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    gw.reload_with(
        "max_message: 1KiB }",
        "max_message: 1KiB, user_authentication_timeout: 300ms }",
    );
    // Pings are answered, so the pong timeout never decides before the
    // reload is read (a loaded machine reads it late); a reload the socket
    // never hears fails here instead of running on.
    let closed = async {
        loop {
            match next_or_close(&mut quiet).await {
                Ok(v) if v["event"] == "pusher:ping" => {
                    send_json(&mut quiet, json!({"event": "pusher:pong", "data": {}})).await;
                }
                other => return other,
            }
        }
    };
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), closed)
        .await
        .expect("the reload reaches the open socket");
    assert_eq!(closed, Err(4009));
}

/// Sign in `ws` as `id` watching `watchlist`; the frames after success
/// (the watchlist's state), asserting success.
async fn signed_in_watching(ws: &mut Ws, socket_id: &str, id: &str, watchlist: &[&str]) -> Value {
    let data = json!({"id": id, "watchlist": watchlist}).to_string();
    let ok = signin(ws, &sign_user(socket_id, &data), &data).await;
    assert_eq!(ok["event"], "pusher:signin_success", "{ok}");
    next_event(ws).await
}

/// Whose presence a watcher follows, and nothing else: a watched user's
/// own channel (its `sendToUser` messages) has no watcher on it. Signing in
/// again as the same user replaces the watchlist: the user dropped from it
/// is no longer followed and its offline is not sent.
#[tokio::test]
async fn a_watcher_follows_only_presence_and_a_second_signin_replaces_its_watchlist() {
    let gw = gateway().await;
    let subscribers = |channel: &'static str| {
        let gw = &gw;
        async move { gw.admin_get(&format!("/channels/{channel}")).await["subscribers"].clone() }
    };
    let (mut alice, a_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let state = signed_in_watching(&mut alice, &a_id, "alice", &["bob", "carol"]).await;
    assert_eq!(
        state["event"], "pusher_internal:watchlist_events",
        "{state}"
    );
    let state: Value = serde_json::from_str(state["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        state,
        json!({"events": [{"name": "offline", "user_ids": ["bob", "carol"]}]})
    );
    assert_eq!(
        subscribers("pusher-user:bob").await,
        0,
        "not bob's messages"
    );
    assert_eq!(subscribers("pusher-user:bob:online").await, 1);
    // A third socket watches bob throughout: it shows when bob's offline
    // has been delivered.
    let (mut carol, c_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    signed_in_watching(&mut carol, &c_id, "carol", &["bob"]).await;
    assert_eq!(subscribers("pusher-user:bob:online").await, 2);
    let online = next_event(&mut alice).await;
    assert_eq!(
        serde_json::from_str::<Value>(online["data"].as_str().unwrap()).unwrap(),
        json!({"events": [{"name": "online", "user_ids": ["carol"]}]})
    );
    let (mut bob, b_id) = raw(&gw, &format!("/app/{KEY}?protocol=7")).await;
    let data = json!({"id": "bob"}).to_string();
    let ok = signin(&mut bob, &sign_user(&b_id, &data), &data).await;
    assert_eq!(ok["event"], "pusher:signin_success", "{ok}");
    for ws in [&mut alice, &mut carol] {
        let online = next_event(ws).await;
        assert_eq!(online["event"], "pusher_internal:watchlist_events");
        let online: Value = serde_json::from_str(online["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            online,
            json!({"events": [{"name": "online", "user_ids": ["bob"]}]})
        );
    }
    // alice now watches carol only: carol is online, bob no longer watched.
    let state = signed_in_watching(&mut alice, &a_id, "alice", &["carol"]).await;
    let state: Value = serde_json::from_str(state["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        state,
        json!({"events": [{"name": "online", "user_ids": ["carol"]}]})
    );
    assert_eq!(subscribers("pusher-user:bob:online").await, 2, "bob, carol");
    assert_eq!(
        subscribers("pusher-user:carol:online").await,
        2,
        "carol, alice"
    );
    drop(bob);
    let offline = next_event(&mut carol).await;
    assert_eq!(
        serde_json::from_str::<Value>(offline["data"].as_str().unwrap()).unwrap(),
        json!({"events": [{"name": "offline", "user_ids": ["bob"]}]})
    );
    // carol has bob's offline; alice, whose inbox is served before her
    // frames, answers the ping with nothing about bob before it.
    send_json(&mut alice, json!({"event": "pusher:ping", "data": {}})).await;
    let next = next_event(&mut alice).await;
    assert_eq!(next["event"], "pusher:pong", "nothing about bob: {next}");
}
