//! pusher-js's HTTP fallback (`{http_path}/app/{key}/{server}/{session}/
//! xhr_streaming|xhr|xhr_send`) spoken raw, as pusher-js speaks it: the
//! same Pusher protocol as the WebSocket in SockJS lines, the bad inputs
//! (unknown sessions, oversize and broken bodies, a flood), the end of a
//! session whose client stopped receiving, and the connection quotas
//! (4004 per app, 4100 for the gateway) across a reload. pusher-js itself
//! over these transports runs in Chromium (`tests/browser/pusher.rs`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::pusher_ws::{KEY, config, join_presence, next_or_close, sign};

/// The gateway of the Pusher WebSocket tests, with a short HTTP session
/// timeout, poll timeout and heartbeat, `app_keys` more keys of the app
/// (`, max_connections: 1`) and `limits` lines.
async fn gateway_with(app_keys: &str, limits: &str) -> TestGateway {
    gateway_idle("400ms", app_keys, limits).await
}

/// As [`gateway_with`], with an HTTP session timeout of `idle`.
async fn gateway_idle(idle: &str, app_keys: &str, limits: &str) -> TestGateway {
    let dir = temp_dir("pusher-xhr");
    let text = config(&dir, true)
        .replace(
            "pusher:\n",
            &format!("pusher:\n  http_session_timeout: {idle}\n"),
        )
        // Long enough that a session the test does not read meanwhile is
        // not pinged out.
        .replace("activity_timeout: 1s", "activity_timeout: 30s")
        .replace("max_message: 1KiB", &format!("max_message: 1KiB{app_keys}"))
        .replace(
            "realtime:\n",
            "realtime:\n  poll_timeout: 1s\n  heartbeat: 1s\n",
        );
    let text = if limits.is_empty() {
        text
    } else {
        format!("{text}\nlimits:\n{limits}\n")
    };
    TestGateway::start_yaml(&text, dir).await
}

/// One HTTP session, as pusher-js's `HTTPSocket` runs it.
struct Xhr {
    client: reqwest::Client,
    /// `https://…/pusher/app/{key}/{server}/{session}`
    base: String,
    stream: Option<reqwest::Response>,
    buffered: Vec<u8>,
    frames: std::collections::VecDeque<Value>,
}

/// What a receive line said.
#[derive(Debug, PartialEq)]
enum Line {
    Open,
    Heartbeat,
    Frames(Vec<String>),
    Close(u16, String),
}

fn parse_line(line: &str) -> Line {
    match line.split_at(1) {
        ("o", "") => Line::Open,
        ("h", "") => Line::Heartbeat,
        ("a", rest) => Line::Frames(serde_json::from_str(rest).expect("a JSON array of strings")),
        ("c", rest) => {
            let (code, reason): (u16, String) = serde_json::from_str(rest).expect("[code,reason]");
            Line::Close(code, reason)
        }
        _ => panic!("not a SockJS line: {line:?}"),
    }
}

impl Xhr {
    fn new(gw: &TestGateway, session: &str) -> Xhr {
        Xhr {
            client: gw.fresh_client(),
            base: gw.url(&format!("/pusher/app/{KEY}/123/{session}")),
            stream: None,
            buffered: Vec::new(),
            frames: Default::default(),
        }
    }

    async fn post(&self, kind: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let query = if kind == "xhr_send" {
            ""
        } else {
            "?protocol=7&client=js&version=8.4.0"
        };
        self.client
            .post(format!("{}/{kind}{query}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// Open the receive stream; the lines up to the socket id.
    async fn streaming(&mut self) -> String {
        let resp = self.post("xhr_streaming", "").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "application/javascript; charset=UTF-8"
        );
        self.stream = Some(resp);
        assert_eq!(self.line().await, Line::Open);
        self.established().await
    }

    async fn established(&mut self) -> String {
        let hello = self.frame().await.expect("connection_established");
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        data["socket_id"].as_str().unwrap().to_owned()
    }

    /// The next line of the open stream (5 s at most).
    async fn line(&mut self) -> Line {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(at) = self.buffered.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffered.drain(..=at).collect();
                return parse_line(std::str::from_utf8(&line[..at]).unwrap());
            }
            let stream = self.stream.as_mut().expect("a stream is open");
            let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                .await
                .expect("a line within 5 s")
                .expect("the stream reads")
                .expect("the stream is not over");
            self.buffered.extend_from_slice(&chunk);
        }
    }

    /// The next Pusher frame of the stream (a server ping is answered, as
    /// pusher-js does), or the close code.
    async fn frame(&mut self) -> Result<Value, u16> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                if f["event"] == "pusher:ping" {
                    self.send(&[json!({"event": "pusher:pong", "data": {}})])
                        .await;
                    continue;
                }
                return Ok(f);
            }
            match self.line().await {
                Line::Frames(fs) => self
                    .frames
                    .extend(fs.iter().map(|f| serde_json::from_str::<Value>(f).unwrap())),
                Line::Heartbeat => {}
                Line::Close(code, _) => return Err(code),
                Line::Open => panic!("a second `o` on an open session"),
            }
        }
    }

    /// The next frame whose event is `event`, skipping others.
    async fn event(&mut self, event: &str) -> Value {
        loop {
            let f = self.frame().await.expect("not closed");
            if f["event"] == event {
                return f;
            }
        }
    }

    /// `xhr_send` of `frames`; its status.
    async fn send(&self, frames: &[Value]) -> u16 {
        let texts: Vec<String> = frames.iter().map(Value::to_string).collect();
        let body = serde_json::to_string(&texts).unwrap();
        self.post("xhr_send", body).await.status().as_u16()
    }

    /// One `xhr` poll: the lines of its answer.
    async fn poll(&self) -> Vec<Line> {
        let resp = self.post("xhr", "").await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        text.lines().map(parse_line).collect()
    }

    async fn subscribe(&mut self, data: Value) -> Value {
        assert_eq!(
            self.send(&[json!({"event": "pusher:subscribe", "data": data})])
                .await,
            204
        );
        loop {
            let f = self.frame().await.expect("an answer");
            if f["event"] != "pusher:error" {
                return f;
            }
        }
    }
}

#[tokio::test]
async fn a_streaming_session_speaks_the_socket_protocol() {
    let gw = gateway_with("", "").await;
    let mut x = Xhr::new(&gw, "stream1");
    let id = x.streaming().await;
    assert!(id.contains('.'), "{id}");
    // Quiet for `realtime.heartbeat`: an `h` line keeps proxies from
    // cutting the stream.
    assert_eq!(x.line().await, Line::Heartbeat);

    // Public: a publish of pushgate's reaches it as a Pusher event.
    let ok = x.subscribe(json!({"channel": "news-x"})).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    gw.publish(json!({"channel": "news-x", "event": "e", "data": {"n": 1}}))
        .await;
    let e = x.event("e").await;
    assert_eq!(
        (e["channel"].as_str(), e["data"].as_str()),
        (Some("news-x"), Some("{\"n\":1}"))
    );

    // Presence with a WebSocket member: each sees the other, and a client
    // event of the HTTP session reaches the WebSocket.
    let (mut ws, ws_id) = websocket(&gw).await;
    join_presence(&mut ws, &ws_id, "presence-x", "ws-user", json!({})).await;
    let data = r#"{"user_id":"xhr-user"}"#;
    let joined = x
        .subscribe(json!({"channel": "presence-x", "auth": sign(&id, "presence-x", Some(data)), "channel_data": data}))
        .await;
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
    let members: Value = serde_json::from_str(joined["data"].as_str().unwrap()).unwrap();
    assert_eq!(members["presence"]["count"], 2, "{members}");
    let added = next_or_close(&mut ws).await.unwrap();
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    assert_eq!(
        x.send(&[json!({"event": "client-hi", "channel": "presence-x", "data": {"a": 1}})])
            .await,
        204
    );
    let hi = next_or_close(&mut ws).await.unwrap();
    assert_eq!(hi["event"], "client-hi", "{hi}");
    assert_eq!(hi["user_id"], "xhr-user", "{hi}");
    // A wrong signature is Pusher's 4009, the session kept.
    let refused = x
        .send(&[json!({"event": "pusher:subscribe", "data": {"channel": "private-y", "auth": "app-key:00"}})])
        .await;
    assert_eq!(refused, 204);
    let e = x.event("pusher:error").await;
    assert_eq!(e["data"]["code"], 4009, "{e}");
    // A second stream of the session (pusher-js reopens one past 256 KB)
    // takes over without a second `o`; over HTTP/1.1 this time.
    let mut again = Xhr::new(&gw, "stream1");
    again.client = gw.http1.clone();
    let resp = again.post("xhr_streaming", "").await;
    again.stream = Some(resp);
    gw.publish(json!({"channel": "news-x", "event": "e2", "data": 2}))
        .await;
    assert_eq!(again.event("e2").await["data"], "2");
}

#[tokio::test]
async fn a_polling_session_gets_each_answer_as_one_response() {
    let gw = gateway_with("", "").await;
    let x = Xhr::new(&gw, "poll1");
    let poll = || async {
        let resp = x.post("xhr", "").await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        parse_line(text.trim_end())
    };
    assert_eq!(poll().await, Line::Open);
    let Line::Frames(hello) = poll().await else {
        panic!("the socket's first frame")
    };
    assert!(
        hello[0].contains("pusher:connection_established"),
        "{hello:?}"
    );
    assert_eq!(
        x.send(&[json!({"event": "pusher:subscribe", "data": {"channel": "news-p"}})])
            .await,
        204
    );
    let Line::Frames(ok) = poll().await else {
        panic!("the subscribe's answer")
    };
    assert!(ok[0].contains("subscription_succeeded"), "{ok:?}");
    // Nothing owed: `h` after `realtime.poll_timeout`, the session kept.
    assert_eq!(poll().await, Line::Heartbeat);
    gw.publish(json!({"channel": "news-p", "event": "e", "data": 3}))
        .await;
    let Line::Frames(e) = poll().await else {
        panic!("the event")
    };
    assert!(e[0].contains("\"event\":\"e\""), "{e:?}");
}

#[tokio::test]
async fn bad_requests_are_refused_and_an_abandoned_session_ends() {
    let gw = gateway_with("", "").await;
    // A session nobody opened.
    let ghost = Xhr::new(&gw, "ghost");
    assert_eq!(ghost.send(&[json!({"event": "pusher:ping"})]).await, 404);
    let mut x = Xhr::new(&gw, "bad1");
    x.streaming().await;
    // Broken and oversize bodies (the cap is a WebSocket frame's).
    assert_eq!(x.post("xhr_send", "{not json").await.status(), 400);
    assert_eq!(x.post("xhr_send", "[1,2]").await.status(), 400);
    let huge = format!("[\"{}\"]", "x".repeat(300 * 1024));
    assert_eq!(x.post("xhr_send", huge).await.status(), 413);
    let ok = x.subscribe(json!({"channel": "news-gone"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    eventually(5, "the hub counts the subscriber", || async {
        gw.admin_get("/channels/news-gone").await["subscribers"] == 1
    })
    .await;
    // The client stops receiving: after `http_session_timeout` the session
    // ends, its channel left, its id unknown.
    drop(x.stream.take());
    eventually(5, "the session left its channel", || async {
        gw.admin_get("/channels/news-gone").await["subscribers"] == 0
    })
    .await;
    assert_eq!(x.send(&[json!({"event": "pusher:ping"})]).await, 404);
}

#[tokio::test]
async fn a_flooding_sender_is_refused_and_never_stalls_another_session() {
    let gw = gateway_with("", "").await;
    let mut calm = Xhr::new(&gw, "calm");
    calm.streaming().await;
    calm.subscribe(json!({"channel": "news-calm"})).await;
    let mut flood = Xhr::new(&gw, "flood");
    flood.streaming().await;
    let batch: Vec<Value> = (0..50).map(|_| json!({"event": "pusher:ping"})).collect();
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..40 {
        statuses.insert(flood.send(&batch).await);
    }
    // The frame rate closes it (Pusher's 4100: back off); sends to it
    // were refused on the way (429: queue full, 404: closed).
    let closed = loop {
        match flood.frame().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(closed, 4100);
    assert!(
        statuses.contains(&429) || statuses.contains(&404),
        "{statuses:?}"
    );
    assert_eq!(flood.send(&[json!({"event": "pusher:ping"})]).await, 404);
    // Meanwhile the other session is served at once.
    gw.publish(json!({"channel": "news-calm", "event": "e", "data": 1}))
        .await;
    let started = std::time::Instant::now();
    calm.event("e").await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn app_quota_4004_and_gateway_capacity_4100_hold_across_a_reload() {
    let gw = gateway_with(", max_connections: 1", "  max_connections: 1000").await;
    let mut first = Xhr::new(&gw, "q1");
    first.streaming().await;
    // Over the app's cap: Pusher's 4004, over HTTP and WebSocket alike.
    let mut second = Xhr::new(&gw, "q2");
    let resp = second.post("xhr_streaming", "").await;
    second.stream = Some(resp);
    assert_eq!(second.line().await, Line::Open);
    assert_eq!(second.frame().await, Err(4004));
    let mut ws = gw
        .try_ws_with(&format!("/app/{KEY}?protocol=7"), None)
        .await
        .unwrap();
    assert_eq!(next_or_close(&mut ws).await, Err(4004));
    // A reload raises the cap: the first is still counted (live state),
    // so one more fits and a third does not.
    gw.reload_with(
        "max_message: 1KiB, max_connections: 1",
        "max_message: 1KiB, max_connections: 2",
    );
    let mut third = Xhr::new(&gw, "q3");
    third.streaming().await;
    let mut over = gw
        .try_ws_with(&format!("/app/{KEY}?protocol=7"), None)
        .await
        .unwrap();
    assert_eq!(next_or_close(&mut over).await, Err(4004));
    // The gateway's own cap, lowered by a reload to leave room for one more
    // connection only: the new request's, so its new session is one over
    // and told 4100 (back off and retry).
    let open = gw.stats().await["connections"].as_u64().unwrap();
    gw.reload_with(
        "max_connections: 1000",
        &format!("max_connections: {}", open + 1),
    );
    let mut fourth = Xhr::new(&gw, "q4");
    let resp = fourth.post("xhr_streaming", "").await;
    fourth.stream = Some(resp);
    assert_eq!(fourth.line().await, Line::Open);
    assert_eq!(fourth.frame().await, Err(4100));
    // The ones open are kept.
    gw.publish(json!({"channel": "news-q", "event": "e", "data": 1}))
        .await;
    first.subscribe(json!({"channel": "news-q"})).await;
    gw.publish(json!({"channel": "news-q", "event": "e", "data": 1}))
        .await;
    first.event("e").await;
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("pushgate_pusher_connections{app=\"1001\"} 2"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("pusher_connections"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A Pusher WebSocket of the app; its socket id.
async fn websocket(gw: &TestGateway) -> (Ws, String) {
    let mut ws = gw
        .try_ws_with(&format!("/app/{KEY}?protocol=7"), None)
        .await
        .unwrap();
    let hello = next_json(&mut ws).await;
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    (ws, data["socket_id"].as_str().unwrap().to_owned())
}

/// The dashboard's app column: each app's connections of both carriers
/// against its cap, the frames they sent and the events they were sent.
#[tokio::test]
async fn the_dashboard_shows_each_apps_connections_and_messages() {
    let gw = gateway_with(", max_connections: 5", "").await;
    let mut x = Xhr::new(&gw, "dash");
    x.streaming().await;
    x.subscribe(json!({"channel": "news-d"})).await;
    let (_ws, _) = websocket(&gw).await;
    gw.publish(json!({"channel": "news-d", "event": "e", "data": 1}))
        .await;
    x.event("e").await;
    let resp = gw
        .http
        .get(gw.admin_url("/dashboard/events"))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    let apps = events.expect().await.json()["apps"].clone();
    assert_eq!(
        apps,
        json!([{
            "app": "1001", "connections": 2, "max_connections": 5,
            "messages_in": 1, "messages_out": 1,
            "webhooks_sent": 0, "webhooks_failed": 0,
        }]),
        "the subscribe in, the event out"
    );
}

/// A new session is admitted as a socket upgrade is: over the address's
/// `per_ip.connections` its first receive request is refused (429), and
/// the place comes free when the session ends.
#[tokio::test]
async fn a_new_session_is_admitted_like_a_socket() {
    let gw = gateway_with("", "  per_ip: { connections: 1 }").await;
    let mut first = Xhr::new(&gw, "adm1");
    first.streaming().await;
    let second = Xhr::new(&gw, "adm2");
    let refused = second.post("xhr_streaming", "").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(second.send(&[json!({"event": "pusher:ping"})]).await, 404);
    drop(first.stream.take());
    let third = Xhr::new(&gw, "adm3");
    eventually(5, "the first session's place came free", || async {
        third.post("xhr", "").await.status() == 200
    })
    .await;
}

/// An unknown app key is Pusher's 4001 on the session's first answer, and
/// a shutdown tells an open session 4200 (reconnect), as it tells sockets.
#[tokio::test]
async fn an_unknown_key_is_4001_and_a_shutdown_4200() {
    let mut gw = gateway_with("", "").await;
    let mut unknown = Xhr::new(&gw, "nokey");
    unknown.base = gw.url("/pusher/app/no-such-key/123/nokey");
    let resp = unknown.post("xhr_streaming", "").await;
    unknown.stream = Some(resp);
    assert_eq!(unknown.line().await, Line::Open);
    assert_eq!(unknown.frame().await, Err(4001));
    let mut x = Xhr::new(&gw, "bye");
    x.streaming().await;
    let stop = tokio::spawn(async move {
        gw.stop().await;
    });
    assert_eq!(x.frame().await, Err(4200));
    stop.await.unwrap();
}

/// A refusal at opening reaches a polling client: the first poll opens,
/// the next reads the code (as a WebSocket is upgraded, then closed), not a
/// second `o` of a new session that pusher-js would retry forever.
#[tokio::test]
async fn a_polling_client_reads_4001_and_4004_at_opening() {
    let gw = gateway_with(", max_connections: 1", "").await;
    let mut unknown = Xhr::new(&gw, "pollkey");
    unknown.base = gw.url("/pusher/app/no-such-key/123/pollkey");
    assert_eq!(unknown.poll().await, vec![Line::Open]);
    let closed = unknown.poll().await;
    assert!(
        matches!(closed.as_slice(), [Line::Close(4001, _)]),
        "{closed:?}"
    );
    let mut first = Xhr::new(&gw, "pollq1");
    first.streaming().await;
    let over = Xhr::new(&gw, "pollq2");
    assert_eq!(over.poll().await, vec![Line::Open]);
    let closed = over.poll().await;
    assert!(
        matches!(closed.as_slice(), [Line::Close(4004, _)]),
        "{closed:?}"
    );
    // Its code taken, the session is gone.
    eventually(5, "the refused session ended", || async {
        over.send(&[json!({"event": "pusher:ping"})]).await == 404
    })
    .await;
}

/// A close that happens while no poll is waiting (the app terminates the
/// user) is the next poll's answer.
#[tokio::test]
async fn a_close_between_polls_is_the_next_polls_answer() {
    let gw = gateway_idle("10s", "", "").await;
    let x = Xhr::new(&gw, "pollterm");
    assert_eq!(x.poll().await, vec![Line::Open]);
    let answer = x.poll().await;
    let [Line::Frames(hello)] = answer.as_slice() else {
        panic!("the socket's first frame")
    };
    let hello: Value = serde_json::from_str(&hello[0]).unwrap();
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap();
    let user = json!({"id": "u1"}).to_string();
    let auth = crate::pusher_ws::users::sign_user(socket_id, &user);
    assert_eq!(
        x.send(&[json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user}})])
            .await,
        204
    );
    let answer = x.poll().await;
    let [Line::Frames(ok)] = answer.as_slice() else {
        panic!("the sign-in's answer")
    };
    assert!(ok[0].contains("pusher:signin_success"), "{ok:?}");
    let config = json!({
        "host": gw.admin.ip().to_string(), "port": gw.admin.port(),
        "app_id": "1001", "key": KEY, "secret": crate::pusher_ws::SECRET,
        "steps": [{"op": "terminate_user_connections", "args": ["u1"]}],
    });
    let answer = crate::pusher_ws::users::python_api(config).await;
    assert!(answer.get("error").is_none(), "{answer}");
    // The socket task has ended (no poll was waiting for its close).
    eventually(5, "the terminated socket ended", || async {
        gw.metrics_text()
            .await
            .contains("pushgate_pusher_connections{app=\"1001\"} 0")
    })
    .await;
    let closed = x.poll().await;
    assert!(
        matches!(closed.as_slice(), [Line::Close(4009, _)]),
        "{closed:?}"
    );
}

/// A receive request over the gateway's capacity for a session this
/// instance holds: the session is told 4100 on its own stream and ends
/// (no longer counted, its sends refused), not kept alive unseen.
#[tokio::test]
async fn a_held_session_told_4100_over_capacity_ends() {
    // Idle sessions kept long: the session must end because it is closed.
    let gw = gateway_idle("30s", ", max_connections: 5", "  max_connections: 1000").await;
    let mut x = Xhr::new(&gw, "held");
    x.streaming().await;
    let open = gw.stats().await["connections"].as_u64().unwrap();
    gw.reload_with("max_connections: 1000", &format!("max_connections: {open}"));
    // pusher-js's next poll of the session, on a new connection.
    let poll = Xhr::new(&gw, "held");
    let resp = poll.post("xhr", "").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "c[4100,\"Over capacity\"]\n");
    assert_eq!(x.frame().await, Err(4100), "told on its stream too");
    eventually(5, "the session ended", || async {
        let metrics = gw.metrics_text().await;
        metrics.contains("pushgate_pusher_connections{app=\"1001\"} 0")
    })
    .await;
}
