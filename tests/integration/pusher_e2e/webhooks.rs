//! A Laravel Echo page's whole road with pusher-js under Node: log in,
//! authorize through `/broadcasting/auth` on the application (through the
//! gateway), subscribe, send a client event, receive a trigger of the
//! official Python library — and the application's webhooks for all of it,
//! each request checked by the Node library's own validator.

use serde_json::{Value, json};
use tokio::process::Command;

use super::standin::{Script, python_trigger};
use super::*;

/// The events of the webhooks the application gets until `enough` holds;
/// every request must pass the library's validator.
pub(super) async fn webhook_events(
    app: &mut StandIn,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    while !enough(&events) {
        let hook = app.next_of("webhook").await;
        assert_eq!(hook["valid"], true, "the validator accepts it: {hook}");
        assert!(
            hook["time_ms"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000)
        );
        events.extend(hook["events"].as_array().expect("events").iter().cloned());
    }
    events
}

fn count(events: &[Value], event: Value) -> usize {
    events.iter().filter(|e| **e == event).count()
}

#[tokio::test]
async fn an_echo_page_subscribes_through_the_app_and_its_webhooks_follow() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, ", webhook: { url: /pusher/webhook }", "").await;
    let event = r"App\Events\OrderShipped";
    let settings = json!({
        "host": "localhost", "port": gw.public.port(), "key": APP_KEY, "user": "7",
        "private": "private-user.7", "refused": "private-user.8",
        "presence": "presence-room.1", "event": event,
    });
    let mut cmd = Command::new("node");
    cmd.arg("echo.js")
        .arg(settings.to_string())
        .env("NODE_EXTRA_CA_CERTS", gw.dir.join("gw.crt"));
    let mut page = Script::spawn(cmd);

    let ready = page.next_of("ready").await;
    let socket_id = ready["socket_id"].as_str().expect("a socket id").to_owned();
    assert_eq!(
        (
            ready["refused"]["type"].as_str(),
            ready["refused"]["error"].as_str()
        ),
        (Some("AuthError"), Some("auth answered 403")),
        "another user's channel: {ready}"
    );
    assert_eq!(
        (ready["members"].as_u64(), ready["me"].as_str()),
        (Some(1), Some("7"))
    );

    python_trigger(gw.admin, &["private-user.7"], event, json!({"order": 42})).await;
    let done = page.next_of("done").await;
    assert_eq!(done["data"], json!({"order": 42}));

    // The page is gone: its channels are vacated once Pusher's hold is
    // over, and its user leaves the room after presence's grace.
    let vacated = |c: &str| json!({"name": "channel_vacated", "channel": c});
    let member = |name: &str| json!({"name": name, "channel": "presence-room.1", "user_id": "7"});
    let events = webhook_events(&mut app, |events| {
        count(events, vacated("private-user.7")) + count(events, vacated("presence-room.1")) == 2
            && count(events, member("member_removed")) == 1
    })
    .await;
    for c in ["private-user.7", "presence-room.1"] {
        assert_eq!(
            count(&events, json!({"name": "channel_occupied", "channel": c})),
            1,
            "{events:?}"
        );
    }
    assert_eq!(count(&events, member("member_added")), 1, "{events:?}");
    assert_eq!(count(&events, member("member_removed")), 1, "{events:?}");
    let client = json!({
        "name": "client_event", "channel": "presence-room.1", "event": "client-typing",
        "data": "{\"who\":\"7\"}", "socket_id": socket_id, "user_id": "7",
    });
    assert_eq!(count(&events, client), 1, "{events:?}");
    assert!(
        !events.iter().any(|e| e["channel"] == "private-user.8"),
        "a refused subscription occupies nothing: {events:?}"
    );
    let counters = gw.metrics_text().await;
    assert!(
        counters.contains("pushgate_pusher_webhook_events_sent_total{app=\"1001\"}"),
        "{counters}"
    );
}

/// A raw Pusher socket subscribed to public `channel`.
async fn subscribed_socket(gw: &TestGateway, channel: &str) -> Ws {
    let path = format!("/app/{APP_KEY}?protocol=7&client=js&version=8.4.0");
    let mut ws = gw
        .try_ws_with(&path, None)
        .await
        .expect("websocket handshake");
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:connection_established"
    );
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    ws
}

#[tokio::test]
async fn a_refused_webhook_is_sent_again_and_a_wrong_secret_never_validates() {
    // The application answers its first webhook 500: the same events again.
    let mut app = StandIn::start(1).await;
    let gw = gateway(&app, ", webhook: { url: /pusher/webhook }", "").await;
    let _ws = subscribed_socket(&gw, "news-hook").await;
    let occupied = json!([{"name": "channel_occupied", "channel": "news-hook"}]);
    let first = app.next_of("webhook").await;
    assert_eq!(
        (&first["valid"], &first["answered"]),
        (&json!(true), &json!(500))
    );
    assert_eq!(first["events"], occupied);
    let again = app.next_of("webhook").await;
    assert_eq!(
        (&again["valid"], &again["answered"]),
        (&json!(true), &json!(200))
    );
    assert_eq!(again["events"], occupied);
    eventually(5, "one failure and one event sent are counted", || async {
        let m = gw.metrics_text().await;
        m.contains("pushgate_pusher_webhook_failures_total{app=\"1001\"} 1")
            && m.contains("pushgate_pusher_webhook_events_sent_total{app=\"1001\"} 1")
    })
    .await;

    // An application that knows another secret: the validator refuses.
    let mut other = StandIn::with_secret("not-the-secret", 0).await;
    let gw = gateway(&other, ", webhook: { url: /pusher/webhook }", "").await;
    let _ws = subscribed_socket(&gw, "news-hook").await;
    let hook = other.next_of("webhook").await;
    assert_eq!(
        (&hook["valid"], &hook["answered"]),
        (&json!(false), &json!(401))
    );
}

#[tokio::test]
async fn a_reload_that_adds_the_first_webhook_starts_sending() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let _before = subscribed_socket(&gw, "news-before").await;
    let path = gw.dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "client_events: true }",
        "client_events: true, webhook: { url: /pusher/webhook } }",
    );
    assert!(text.contains("webhook:"), "{text}");
    std::fs::write(&path, text).unwrap();
    pushgate::reload::reload(gw.handle.as_ref().unwrap().state(), &path).unwrap();
    let _after = subscribed_socket(&gw, "news-after").await;
    let hook = app.next_of("webhook").await;
    assert_eq!(hook["valid"], true);
    assert_eq!(
        hook["events"],
        json!([{"name": "channel_occupied", "channel": "news-after"}]),
        "only what happened once the app had a webhook"
    );
}

#[tokio::test]
async fn a_webhook_goes_to_its_named_upstream() {
    let backend = StandIn::start(0).await;
    let mut hooks = StandIn::start(0).await;
    let upstreams = format!(
        "upstreams:\n  hooks: {{ url: \"http://127.0.0.1:{}\" }}\n",
        hooks.port()
    );
    let gw = gateway(
        &backend,
        ", webhook: { url: /pusher/webhook, upstream: hooks }",
        &upstreams,
    )
    .await;
    let _ws = subscribed_socket(&gw, "news-routed").await;
    let hook = hooks.next_of("webhook").await;
    assert_eq!(hook["valid"], true);
    assert_eq!(
        hook["events"],
        json!([{"name": "channel_occupied", "channel": "news-routed"}])
    );
}

/// Pusher's contract is the status line: a 2xx is a success whatever its
/// body, so an application whose 200 carries a large body, or a body that
/// never ends, is not sent the same events again, and the app's next
/// request is not held behind it.
#[tokio::test]
async fn a_2xx_is_success_however_large_or_slow_its_body() {
    use crate::common::app::raw::{Answer, answer, sized};
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    let hooks = TestApp::script(move |req| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        seen.lock().unwrap().push(body.clone());
        if body.contains("news-large") {
            sized(&"x".repeat(200 * 1024))
        } else if body.contains("news-slow") {
            Answer {
                stall: true,
                ..answer("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nstarted")
            }
        } else {
            sized("ok")
        }
    })
    .start()
    .await;
    let backend = StandIn::start(0).await;
    let upstreams = format!("upstreams:\n  hooks: {{ url: \"{}\" }}\n", hooks.url);
    let gw = gateway(
        &backend,
        ", webhook: { url: /pusher/webhook, upstream: hooks }",
        &upstreams,
    )
    .await;
    let mut sockets = Vec::new();
    for channel in ["news-large", "news-slow", "news-after"] {
        sockets.push(subscribed_socket(&gw, channel).await);
        let n = sockets.len();
        eventually(10, "the application got the webhook", || async {
            bodies.lock().unwrap().len() >= n
        })
        .await;
    }
    let channels: Vec<String> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            let body: Value = serde_json::from_str(b).expect("a JSON body");
            body["events"][0]["channel"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        channels,
        ["news-large", "news-slow", "news-after"],
        "each sent once, in order"
    );
    eventually(5, "three events sent, no failure", || async {
        let m = gw.metrics_text().await;
        m.contains("pushgate_pusher_webhook_events_sent_total{app=\"1001\"} 3")
            && !m.contains("pushgate_pusher_webhook_failures_total{app=\"1001\"}")
    })
    .await;
}
