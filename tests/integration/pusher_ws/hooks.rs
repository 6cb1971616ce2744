//! Presence across gateways, the operator's disconnect and what an app's
//! webhook hears from Pusher sockets.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::common::redis::RedisServer;

#[tokio::test]
async fn presence_spans_two_gateways_on_one_redis() {
    let redis = RedisServer::start().await;
    let start = || async {
        let dir = temp_dir("pusher-ws-redis");
        let text = format!("{}{}", config(&dir, true), redis.broker_yaml("pwsredis"));
        let gw = TestGateway::start_yaml(&text, dir).await;
        eventually(10, "redis connected", || async {
            let r = gw.http.get(gw.admin_url("/readyz")).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
        gw
    };
    let (a, b) = (start().await, start().await);
    let path = format!("/app/{KEY}?protocol=7");
    let (mut watcher, wid) = raw(&a, &path).await;
    let seen = join_presence(&mut watcher, &wid, "presence-r", "w", json!({"n": "w"})).await;
    assert_eq!(seen["presence"]["count"], 1, "{seen}");

    // The watcher's join reaches Redis after its answer (a later joiner
    // hears of it by member_added): wait until the other gateway sees it.
    let b_state = b.handle.as_ref().unwrap().state();
    eventually(5, "w shared", || async {
        b_state.presence.members("presence-r").await.len() == 1
    })
    .await;
    // A user on the other gateway sees the watcher with its user_info.
    let (mut tab1, id1) = raw(&b, &path).await;
    let seen = join_presence(&mut tab1, &id1, "presence-r", "u1", json!({"n": 1})).await;
    assert_eq!(seen["presence"]["ids"], json!(["u1", "w"]), "{seen}");
    assert_eq!(seen["presence"]["hash"]["w"], json!({"n": "w"}), "{seen}");
    let added = next_event(&mut watcher).await;
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    let data: Value = serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"user_id": "u1", "user_info": {"n": 1}}));

    // The same user again, on the watcher's gateway: no second member.
    let (mut tab2, id2) = raw(&a, &path).await;
    let seen = join_presence(&mut tab2, &id2, "presence-r", "u1", json!({"n": 1})).await;
    assert_eq!(seen["presence"]["count"], 2, "{seen}");
    tab1.close(None).await.unwrap();
    // More than twice presence_grace and a refresh (a third of it) later,
    // still no member event: u1 is on the other gateway too.
    let quiet = Duration::from_millis(3 * PRESENCE_GRACE_MS);
    let early = tokio::time::timeout(quiet, async {
        loop {
            let v = next_json(&mut watcher).await;
            if v["event"] != "pusher:ping" {
                return v;
            }
            send_json(&mut watcher, json!({"event": "pusher:pong", "data": {}})).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "no member event while a tab stays: {early:?}"
    );
    drop(tab2);
    let removed = next_event(&mut watcher).await;
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert_eq!(removed["data"], r#"{"user_id":"u1"}"#);
}

#[tokio::test]
async fn the_operator_disconnects_a_pusher_user() {
    let gw = gateway().await;
    let path = format!("/app/{KEY}?protocol=7");
    let (mut ws, id) = raw(&gw, &path).await;
    join_presence(&mut ws, &id, "presence-ops", "u9", json!({})).await;
    let (mut other, other_id) = raw(&gw, &path).await;
    join_presence(&mut other, &other_id, "presence-ops", "u8", json!({})).await;
    let answer: Value = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "u9"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["disconnected"], 1, "{answer}");
    // The kicked socket is no member while its close is unanswered (it
    // reads nothing here; the gateway waits 2 s for its close frame).
    let removed = tokio::time::timeout(Duration::from_millis(1500), next_event(&mut other))
        .await
        .expect("member_removed before the closing handshake ends");
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert_eq!(removed["data"], r#"{"user_id":"u9"}"#);
    // After u8's member_added, the close.
    let code = loop {
        if let Err(code) = next_or_close(&mut ws).await {
            break code;
        }
    };
    assert_eq!(code, 4009);
}

/// Join presence `channel` as u5, send a client event and leave.
async fn hooked_round(ws: &mut Ws, id: &str, channel: &str) {
    join_presence(ws, id, channel, "u5", json!({"a": 1})).await;
    send_json(
        ws,
        json!({"event": "client-typing", "channel": channel, "data": {"t": 1}}),
    )
    .await;
    send_json(
        ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    )
    .await;
    // A round trip: the frames before it are handled.
    send_json(ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_event(ws).await["event"], "pusher:pong");
}

/// The next `n` app events, as their debug text.
async fn app_events<E: std::fmt::Debug>(
    events: &mut tokio::sync::mpsc::Receiver<(std::sync::Arc<str>, E)>,
    n: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let (app, event) = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap_or_else(|_| panic!("{n} events, got {seen:?}"))
            .unwrap();
        assert_eq!(&*app, "1001");
        seen.push(format!("{event:?}"));
    }
    seen
}

#[tokio::test]
async fn the_app_hears_of_occupied_vacated_members_and_client_events() {
    let gw = gateway().await;
    let state = gw.handle.as_ref().unwrap().state();
    // Read here in the webhook sender's place (taken before any app has a
    // webhook, so the sender never starts).
    let mut events = state.app_events.take_receiver().unwrap();
    let path = format!("/app/{KEY}?protocol=7");
    let (mut ws, id) = raw(&gw, &path).await;

    // Without a webhook nothing is queued for the app.
    hooked_round(&mut ws, &id, "presence-unhooked").await;
    eventually(5, "u5 left presence-unhooked", || async {
        state.presence.members("presence-unhooked").await.is_empty()
    })
    .await;
    // A webhook that takes client events only: the first event queued is
    // the next client event.
    let app = "max_message: 1KiB";
    gw.reload_with(
        app,
        &format!("{app}, webhook: {{ url: /hook, events: [client_event] }}"),
    );
    hooked_round(&mut ws, &id, "presence-some").await;
    let seen = app_events(&mut events, 1).await;
    assert!(
        seen[0].starts_with(r#"ClientEvent { channel: "presence-some""#),
        "{seen:?}"
    );
    eventually(5, "u5 left presence-some", || async {
        state.presence.members("presence-some").await.is_empty()
    })
    .await;

    // All of them.
    gw.reload_with(
        "events: [client_event]",
        "events: [channel_occupied, channel_vacated, member_added, member_removed, client_event]",
    );
    hooked_round(&mut ws, &id, "presence-hooks").await;
    let seen = app_events(&mut events, 5).await;
    let expected = [
        r#"MemberAdded { channel: "presence-hooks", user_id: "u5" }"#,
        r#"ChannelOccupied { channel: "presence-hooks" }"#,
        r#"ClientEvent { channel: "presence-hooks", event: "client-typing", data: RawValue({"t":1}), socket_id: "#,
        r#"ChannelVacated { channel: "presence-hooks" }"#,
        r#"MemberRemoved { channel: "presence-hooks", user_id: "u5" }"#,
    ];
    for e in expected {
        assert!(seen.iter().any(|s| s.starts_with(e)), "{e} in {seen:?}");
    }
    let client_event = seen.iter().find(|s| s.starts_with("ClientEvent")).unwrap();
    assert!(
        client_event.contains(&format!("socket_id: \"{id}\", user_id: Some(\"u5\")")),
        "{client_event}"
    );

    // Occupied and vacated count this instance's Pusher subscriptions: a
    // pushgate SSE subscriber there first neither hides the occupied nor,
    // staying on, the vacated; two sockets make one of each.
    let _sse = gw.sse("/realtime/sse?channels=news-occ", None).await;
    let (mut other, _) = raw(&gw, &path).await;
    for socket in [&mut ws, &mut other] {
        send_json(
            socket,
            json!({"event": "pusher:subscribe", "data": {"channel": "news-occ"}}),
        )
        .await;
        let ok = next_event(socket).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }
    for socket in [&mut ws, &mut other] {
        send_json(
            socket,
            json!({"event": "pusher:unsubscribe", "data": {"channel": "news-occ"}}),
        )
        .await;
    }
    // Then one more round: whatever came for news-occ came before it.
    hooked_round(&mut ws, &id, "presence-after").await;
    let seen = app_events(&mut events, 7).await;
    assert_eq!(
        seen[..2],
        [
            r#"ChannelOccupied { channel: "news-occ" }"#,
            r#"ChannelVacated { channel: "news-occ" }"#
        ],
        "{seen:?}"
    );
    assert!(
        seen[2..].iter().all(|s| s.contains("presence-after")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_member_swept_from_redis_while_still_here_is_joined_again() {
    let redis = RedisServer::start().await;
    let dir = temp_dir("pusher-ws-swept");
    let text = format!("{}{}", config(&dir, true), redis.broker_yaml("pwsswept"));
    let gw = TestGateway::start_yaml(&text, dir).await;
    eventually(10, "redis connected", || async {
        let r = gw.http.get(gw.admin_url("/readyz")).send().await;
        r.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let path = format!("/app/{KEY}?protocol=7");
    let (mut watcher, wid) = raw(&gw, &path).await;
    join_presence(&mut watcher, &wid, "presence-s", "w", json!({})).await;
    let (mut member, mid) = raw(&gw, &path).await;
    join_presence(&mut member, &mid, "presence-s", "u1", json!({"n": 1})).await;
    let added = next_event(&mut watcher).await;
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");

    // u1's entry and what it shows gone from Redis, as a sweep by another
    // instance leaves it while this one could not refresh (Redis away).
    let mut conn = redis.client().await;
    let key = "pwsswept:p:presence-s";
    let _: () = ::redis::cmd("ZREM")
        .arg(key)
        .arg("u1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = ::redis::cmd("HDEL")
        .arg(format!("{key}#i"))
        .arg("u1")
        .query_async(&mut conn)
        .await
        .unwrap();
    // The next refresh joins it again: announced, with its user_info.
    let again = next_event(&mut watcher).await;
    assert_eq!(again["event"], "pusher_internal:member_added", "{again}");
    let data: Value = serde_json::from_str(again["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"user_id": "u1", "user_info": {"n": 1}}));
    let state = gw.handle.as_ref().unwrap().state();
    let members = state.presence.members("presence-s").await;
    assert!(
        members.contains(&("u1".to_owned(), Some(r#"{"n":1}"#.to_owned()))),
        "{members:?}"
    );
}

/// With `subscription_count`, the first subscriber of a channel on a
/// gateway is told the count across both gateways at once, not its own
/// gateway's until the next period.
#[tokio::test]
async fn a_gateways_first_subscriber_is_told_the_count_across_gateways() {
    let redis = RedisServer::start().await;
    let start = || async {
        let dir = temp_dir("pusher-ws-counts");
        let text = format!("{}{}", config(&dir, true), redis.broker_yaml("pwscounts")).replace(
            "max_message: 1KiB }",
            "max_message: 1KiB, subscription_count: true }",
        );
        let gw = TestGateway::start_yaml(&text, dir).await;
        eventually(10, "redis connected", || async {
            let r = gw.http.get(gw.admin_url("/readyz")).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
        gw
    };
    let (a, b) = (start().await, start().await);
    let path = format!("/app/{KEY}?protocol=7");
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "news-count"}});
    let count_of = |v: Value| -> u64 {
        assert_eq!(v["event"], "pusher_internal:subscription_count", "{v}");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        data["subscription_count"].as_u64().unwrap()
    };
    let (mut first, _) = raw(&a, &path).await;
    send_json(&mut first, subscribe.clone()).await;
    assert_eq!(
        next_event(&mut first).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(count_of(next_event(&mut first).await), 1);
    // Gateway a has shared its count (its count task's next period); the
    // socket answers meanwhile, so the activity check keeps it.
    let b_state = b.handle.as_ref().unwrap().state();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let members = b_state
            .presence
            .members("pusher-count#1001:news-count")
            .await;
        if members.iter().any(|(_, n)| n.as_deref() == Some("1")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a's count shared");
        send_json(&mut first, json!({"event": "pusher:ping", "data": {}})).await;
        assert_eq!(next_event(&mut first).await["event"], "pusher:pong");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut second, _) = raw(&b, &path).await;
    send_json(&mut second, subscribe).await;
    assert_eq!(
        next_event(&mut second).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        count_of(next_event(&mut second).await),
        2,
        "a's subscriber counts at once"
    );
}
