//! The Pusher HTTP API on the admin listener, driven by the official
//! server libraries (Node and Python, unmodified): what they trigger
//! reaches pushgate's own SSE subscribers of the same channels (one hub),
//! the channel queries answer from the hub and presence, and every refusal
//! has Pusher's status and body.

mod clients;

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use clients::{APP, SMALL};

const JWT_SECRET: &str = "pusher-api-secret";

/// A gateway with two Pusher apps (`1001`; `2002` with `channel_prefix:
/// "b:"` and `max_message: 100`), presence on `presence-*` and `extra`
/// appended (a `limits:` section).
async fn gateway(extra: &str) -> TestGateway {
    gateway_with("", None, extra).await
}

/// [`gateway`] with `more_apps` (lines of the `apps:` list) and an admin key.
async fn gateway_with(more_apps: &str, admin_key: Option<&str>, extra: &str) -> TestGateway {
    let admin_keys = admin_key.map_or(String::new(), |k| format!(", admin_keys: [\"{k}\"]"));
    let dir = temp_dir("pusher-api");
    let text = yaml(
        &dir,
        "http://127.0.0.1:9",
        "  heartbeat: 15s",
        &format!(
            r#"auth: {{ jwt: {{ hs256_secret: {JWT_SECRET} }}{admin_keys} }}
pusher:
  apps:
    - {{ id: "1001", key: app-key, secret: app-secret }}
    - {{ id: 2002, key: small-key, secret: small-secret, channel_prefix: "b:", max_message: 100 }}
{more_apps}
{extra}"#
        ),
    )
    .replacen(
        "channels:\n",
        "channels:\n  - { pattern: \"presence-*\", subscribe: token, presence: true }\n  - { pattern: \"b:*\", subscribe: anyone }\n",
        1,
    );
    let mut gw = TestGateway::start_yaml(&text, dir).await;
    gw.admin_key = admin_key.map(str::to_owned);
    gw
}

/// An SSE subscriber of `channel`, once the hub counts it.
async fn subscriber(gw: &TestGateway, channel: &str, token: Option<&str>) -> SseReader {
    let query = match token {
        Some(t) => format!("/realtime/sse?channels={channel}&token={t}"),
        None => format!("/realtime/sse?channels={channel}"),
    };
    let before = gw.admin_get(&format!("/channels/{channel}")).await["subscribers"]
        .as_u64()
        .unwrap_or(0);
    let sse = gw.sse(&query, None).await;
    eventually(5, "the hub counts the subscriber", || async {
        gw.admin_get(&format!("/channels/{channel}")).await["subscribers"] == before + 1
    })
    .await;
    sse
}

/// `alice` as a presence member of `channel` (an SSE connection with her token).
async fn member(gw: &TestGateway, channel: &str) -> SseReader {
    let token = pushgate::auth::mint_hs256(
        JWT_SECRET,
        "alice",
        &["presence-*".to_owned()],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    let sse = subscriber(gw, channel, Some(&token)).await;
    eventually(5, "alice is a member", || async {
        gw.admin_get(&format!("/channels/{channel}")).await["presence"] == json!(["alice"])
    })
    .await;
    sse
}

/// The next message event (presence announcements passed over).
async fn next_message(sse: &mut SseReader) -> SseEvent {
    loop {
        let ev = sse.expect().await;
        if ev.event != "presence" {
            return ev;
        }
    }
}

fn answer(out: &Value) -> (u64, Value) {
    let body = out["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {out}"));
    let parsed = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (out["status"].as_u64().unwrap(), parsed)
}

#[tokio::test]
async fn the_python_library_triggers_into_the_hub_and_queries_it() {
    let gw = gateway("").await;
    let mut news = subscriber(&gw, "public.news", None).await;
    let _alice = member(&gw, "presence-lobby").await;
    let out = clients::python(
        gw.admin,
        &APP,
        json!([
            {"op": "trigger", "args": [["public.news"], "App\\Events\\OrderShipped", {"id": 7}]},
            {"op": "trigger_batch", "args": [[
                {"channel": "public.news", "name": "second", "data": "plain text"},
                {"channel": "public.news", "name": "third", "data": {"n": 3}},
            ]]},
            {"op": "channels_info"},
            {"op": "channels_info", "kwargs": {"prefix_filter": "presence-", "attributes": ["user_count"]}},
            {"op": "channel_info", "args": ["public.news", ["subscription_count"]]},
            {"op": "channel_info", "args": ["presence-lobby", ["user_count"]]},
            {"op": "channel_info", "args": ["public.empty"]},
            {"op": "users_info", "args": ["presence-lobby"]},
        ]),
    )
    .await;
    let results: Vec<&Value> = out.iter().map(|o| &o["result"]).collect();
    assert_eq!(*results[0], json!({}), "{out:?}");
    assert_eq!(*results[1], json!({}), "{out:?}");
    assert_eq!(
        *results[2],
        json!({"channels": {"presence-lobby": {}, "public.news": {}}})
    );
    assert_eq!(
        *results[3],
        json!({"channels": {"presence-lobby": {"user_count": 1}}}),
        "the library's GETs carry body_md5 of the empty body"
    );
    assert_eq!(
        *results[4],
        json!({"occupied": true, "subscription_count": 1})
    );
    assert_eq!(*results[5], json!({"occupied": true, "user_count": 1}));
    assert_eq!(*results[6], json!({"occupied": false}));
    assert_eq!(*results[7], json!({"users": [{"id": "alice"}]}));

    let ev = next_message(&mut news).await;
    assert_eq!(ev.event, "App\\Events\\OrderShipped");
    assert_eq!(
        ev.json()["data"],
        json!({"id": 7}),
        "JSON data travels as JSON"
    );
    let ev = next_message(&mut news).await;
    assert_eq!(
        (ev.event.as_str(), &ev.json()["data"]),
        ("second", &json!("plain text"))
    );
    let ev = next_message(&mut news).await;
    assert_eq!(
        (ev.event.as_str(), &ev.json()["data"]),
        ("third", &json!({"n": 3}))
    );
}

#[tokio::test]
async fn the_node_library_triggers_into_the_hub_and_queries_it() {
    let gw = gateway("").await;
    let mut news = subscriber(&gw, "public.news", None).await;
    let mut prefixed = subscriber(&gw, "b:public.news", None).await;
    let _alice = member(&gw, "presence-lobby").await;
    let out = clients::node(
        gw.admin,
        &APP,
        0,
        json!([
            {"op": "trigger", "channels": ["public.news", "presence-lobby"], "event": "one",
             "data": {"a": [1, 2]}, "params": {"info": "user_count,subscription_count"}},
            {"op": "triggerBatch", "batch": [
                {"channel": "public.news", "name": "two", "data": "2"},
                {"channel": "presence-lobby", "name": "three", "data": "3", "info": "user_count"},
            ]},
            {"op": "get", "path": "/channels", "params": {"filter_by_prefix": "public."}},
            {"op": "get", "path": "/channels"},
            {"op": "get", "path": "/channels/presence-lobby", "params": {"info": "user_count,subscription_count"}},
            {"op": "get", "path": "/channels/presence-lobby/users"},
            // pusher-php's shape for one channel; a socket_id leaves only
            // that Pusher socket out, so pushgate's subscriber still gets it.
            {"op": "post", "path": "/events", "body":
                {"name": "four", "data": "[4]", "channel": "public.news", "socket_id": "123.456"}},
        ]),
    )
    .await;
    let answers: Vec<(u64, Value)> = out.iter().map(answer).collect();
    assert_eq!(
        answers[0],
        (
            200,
            json!({"channels": {
                "public.news": {"subscription_count": 1},
                "presence-lobby": {"user_count": 1, "subscription_count": 1},
            }})
        )
    );
    assert_eq!(
        answers[1],
        (200, json!({"batch": [{}, {"user_count": 1}]})),
        "batch info by place"
    );
    assert_eq!(answers[2], (200, json!({"channels": {"public.news": {}}})));
    assert_eq!(
        answers[3],
        (
            200,
            json!({"channels": {"presence-lobby": {}, "public.news": {}}})
        ),
        "the prefixed app's b:public.news is not this app's"
    );
    assert_eq!(
        answers[4],
        (
            200,
            json!({"occupied": true, "user_count": 1, "subscription_count": 1})
        )
    );
    assert_eq!(answers[5], (200, json!({"users": [{"id": "alice"}]})));
    let ev = next_message(&mut news).await;
    assert_eq!(
        (ev.event.as_str(), &ev.json()["data"]),
        ("one", &json!({"a": [1, 2]}))
    );
    let ev = next_message(&mut news).await;
    assert_eq!((ev.event.as_str(), &ev.json()["data"]), ("two", &json!(2)));
    assert_eq!(answers[6], (200, json!({})));
    let ev = next_message(&mut news).await;
    assert_eq!(
        (ev.event.as_str(), &ev.json()["data"]),
        ("four", &json!([4]))
    );

    // The prefixed app's channel is `b:` + its name in the hub, and its
    // channel list names it without the prefix.
    let out = clients::node(
        gw.admin,
        &SMALL,
        0,
        json!([
            {"op": "trigger", "channels": "public.news", "event": "small", "data": "x"},
            {"op": "get", "path": "/channels"},
        ]),
    )
    .await;
    assert_eq!(answer(&out[0]), (200, json!({})));
    assert_eq!(
        answer(&out[1]),
        (200, json!({"channels": {"public.news": {}}}))
    );
    let ev = next_message(&mut prefixed).await;
    assert_eq!(
        (ev.event.as_str(), &ev.json()["data"]),
        ("small", &json!("x"))
    );
    assert_eq!(ev.json()["channel"], "b:public.news");
}

#[tokio::test]
async fn refusals_have_pushers_status_and_body_and_publish_nothing() {
    let gw = gateway("").await;
    let mut news = subscriber(&gw, "public.news", None).await;
    let wrong_secret = clients::Creds {
        secret: "not-the-secret",
        ..APP
    };
    let unknown = clients::Creds { id: "9999", ..APP };
    let bad = clients::node(
        gw.admin,
        &wrong_secret,
        0,
        json!([
            {"op": "trigger", "channels": "public.news", "event": "e", "data": "x"},
        ]),
    )
    .await;
    let stale = clients::node(
        gw.admin,
        &APP,
        -700,
        json!([
            {"op": "trigger", "channels": "public.news", "event": "e", "data": "x"},
        ]),
    )
    .await;
    let missing = clients::node(
        gw.admin,
        &unknown,
        0,
        json!([
            {"op": "trigger", "channels": "public.news", "event": "e", "data": "x"},
        ]),
    )
    .await;
    let many: Vec<String> = (0..101).map(|i| format!("public.c{i}")).collect();
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"channel": "public.news", "name": "e", "data": i.to_string()}))
        .collect();
    let out = clients::node(
        gw.admin,
        &APP,
        0,
        json!([
            {"op": "post", "path": "/events", "body": {"name": "e", "data": "x", "channels": many}},
            {"op": "post", "path": "/batch_events", "body": {"batch": eleven}},
            {"op": "post", "path": "/events", "body": {"data": "x", "channel": "public.news"}},
            {"op": "post", "path": "/events", "body": {"name": "e", "data": "x", "channel": "public.news", "socket_id": "abc"}},
            {"op": "get", "path": "/channels/public.news", "params": {"info": "user_count"}},
            {"op": "get", "path": "/channels", "params": {"info": "user_count"}},
            {"op": "get", "path": "/channels/public.news/users"},
        ]),
    )
    .await;
    let oversize = clients::node(
        gw.admin,
        &SMALL,
        0,
        json!([
            {"op": "trigger", "channels": "public.news", "event": "e", "data": "x".repeat(101)},
            {"op": "trigger", "channels": "public.news", "event": "e", "data": "x".repeat(100)},
        ]),
    )
    .await;

    let starts = |out: &Value, status: u64, text: &str| {
        let (got, body) = answer(out);
        let body = body.as_str().unwrap_or_default().to_owned();
        assert_eq!(got, status, "{body}");
        assert!(
            body.starts_with(text),
            "{status}: {body:?} should start with {text:?}"
        );
    };
    starts(
        &bad[0],
        401,
        "Invalid signature: you should have sent HmacSHA256Hex(\"POST\\n/apps/1001/events\\n",
    );
    starts(&stale[0], 401, "Timestamp expired");
    starts(&missing[0], 404, "Unknown app");
    starts(&out[0], 400, "Too many channels: 101, at most 100");
    starts(&out[1], 400, "Batch too large: 11 events, at most 10");
    starts(&out[2], 400, "Missing parameter: name");
    starts(&out[3], 400, "Invalid socket_id");
    starts(
        &out[4],
        400,
        "Cannot retrieve the user count unless the channel is a presence channel",
    );
    starts(
        &out[5],
        400,
        "user_count may only be requested for presence channels",
    );
    starts(
        &out[6],
        400,
        "Users can only be retrieved for presence channels",
    );
    starts(
        &oversize[0],
        413,
        "Payload too large: data is 101 bytes, over this app's limit of 100",
    );
    assert_eq!(
        answer(&oversize[1]),
        (200, json!({})),
        "at the limit is allowed"
    );

    // A body that is not JSON, signed with its digest.
    let path = "/apps/1001/events";
    let url = clients::signed_url(gw.admin, &APP, "POST", path, "{not json").await;
    let r = gw
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().starts_with("Invalid JSON body"));

    // Nothing refused was published (the allowed trigger of the prefixed
    // app went to `b:public.news`): the next message is a marker.
    gw.publish_one("public.news", json!("marker")).await;
    assert_eq!(next_message(&mut news).await.json()["data"], "marker");

    let metrics = gw.metrics_text().await;
    for line in [
        "pushgate_pusher_api_requests_total{app=\"1001\",status=\"401\"} 2",
        "pushgate_pusher_api_requests_total{app=\"unknown\",status=\"404\"} 1",
        "pushgate_pusher_api_requests_total{app=\"1001\",status=\"400\"} 8",
        "pushgate_pusher_api_requests_total{app=\"2002\",status=\"413\"} 1",
        "pushgate_pusher_api_requests_total{app=\"2002\",status=\"200\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_signed_request_still_meets_the_admin_listeners_refusals() {
    let gw = gateway_with("", Some("the-admin-key"), "").await;
    let body = r#"{"name":"e","data":"x","channel":"public.news"}"#;
    let url = clients::signed_url(gw.admin, &APP, "POST", "/apps/1001/events", body).await;
    let send = |origin: Option<&'static str>, site: Option<&'static str>, ctype: &'static str| {
        let mut req = gw.http.post(&url).header("content-type", ctype).body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.send()
    };
    let r = send(Some("http://evil.example"), None, "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "forbidden_origin"
    );
    let r = send(None, Some("cross-site"), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = send(None, None, "text/plain").await.unwrap();
    assert_eq!(
        r.status(),
        415,
        "a form or text body is what a page sends without a preflight"
    );
    let r = send(None, None, "application/json").await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the same request, not cross-site, is served"
    );
    assert_eq!(r.text().await.unwrap(), "{}");

    // A declared body over the bound is refused before it is read.
    let url = clients::signed_url(gw.admin, &SMALL, "POST", "/apps/2002/events", "").await;
    let r = gw
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("Request body too large")
    );

    // An admin key does not stand in for the signature: the configured key,
    // sent as the admin API wants it, still meets Pusher's 401.
    let r = gw
        .admin(reqwest::Method::GET, "/apps/1001/channels")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("Missing parameter: auth_key")
    );
    let body = r#"{"name":"e","data":"x","channel":"public.news"}"#;
    let r = gw
        .admin(reqwest::Method::POST, "/apps/1001/events")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "not published on the admin key alone");
    let r = gw
        .admin(reqwest::Method::GET, "/stats")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the key sent is the admin API's own");
}

/// An unsigned peer never makes the gateway wait for, or buffer, a body:
/// the signature over method, path and query is checked on the head alone.
#[tokio::test]
async fn an_unsigned_request_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway("").await;
    let url = clients::signed_url(gw.admin, &APP, "POST", "/apps/1001/events", "{}").await;
    let signed_query = url.split_once('?').map(|(_, q)| q.to_owned()).unwrap();
    let wrong = signed_query.replace("auth_signature=", "auth_signature=0");
    for query in ["".to_owned(), format!("?{wrong}")] {
        let mut s = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
        // Under the default app's body bound (about 800 KB), and never sent.
        let head = format!(
            "POST /apps/1001/events{query} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 401"), "{query}: {text}");
    }

    // The body is still bound by its digest once it is read.
    let r = gw
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"name":"e","data":"x","channel":"public.news"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "Invalid body_md5");
}

/// A signed body is read under a fixed cap of 1 MiB, however large the
/// app's `max_message`: a signed query stays valid for ten minutes and its
/// `body_md5` is checked only once the body is in.
#[tokio::test]
async fn a_signed_body_is_capped_whatever_the_apps_max_message() {
    let gw = gateway_with(
        "    - { id: \"3003\", key: big-key, secret: big-secret, max_message: 16MiB, channel_prefix: \"big:\" }",
        None,
        "",
    )
    .await;
    let big = clients::Creds {
        id: "3003",
        key: "big-key",
        secret: "big-secret",
    };
    let url = clients::signed_url(gw.admin, &big, "POST", "/apps/3003/events", "").await;
    let r = gw
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.text().await.unwrap(),
        "Request body too large: over 1048576 bytes"
    );
}

#[tokio::test]
async fn each_app_is_rate_limited_on_its_own() {
    let gw = gateway("limits:\n  publish: { rate: 1/m, burst: 3 }").await;
    let out = clients::node(
        gw.admin,
        &APP,
        0,
        json!([
            {"op": "trigger", "channels": ["public.a", "public.b", "public.c"], "event": "e", "data": "x"},
            {"op": "trigger", "channels": "public.a", "event": "e", "data": "x"},
        ]),
    )
    .await;
    assert_eq!(answer(&out[0]).0, 200, "three messages fit the burst");
    let (status, body) = answer(&out[1]);
    assert_eq!(
        (status, body),
        (429, json!("Rate limit exceeded for this app"))
    );
    let body = r#"{"name":"e","data":"x","channel":"public.a"}"#;
    let url = clients::signed_url(gw.admin, &APP, "POST", "/apps/1001/events", body).await;
    let r = gw
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let other = clients::node(
        gw.admin,
        &SMALL,
        0,
        json!([
            {"op": "trigger", "channels": "public.a", "event": "e", "data": "x"},
        ]),
    )
    .await;
    assert_eq!(
        answer(&other[0]),
        (200, json!({})),
        "the other app has its own bucket"
    );
}

#[tokio::test]
async fn without_pusher_apps_the_path_is_an_ordinary_admin_path() {
    let gw = TestGateway::start().await;
    let r = gw
        .http
        .get(gw.admin_url("/apps/1001/channels"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
}

/// `api_rate` of an app is its own quota instead of `limits.publish`,
/// put in force by a reload over what the app already spent.
#[tokio::test]
async fn an_apps_api_rate_is_its_quota_and_a_reload_keeps_what_was_spent() {
    let gw = gateway("").await;
    let plain = r#"{ id: "1001", key: app-key, secret: app-secret }"#;
    let rated = |burst: u32| {
        format!(
            r#"{{ id: "1001", key: app-key, secret: app-secret, api_rate: {{ rate: 1/m, burst: {burst} }} }}"#
        )
    };
    gw.reload_with(plain, &rated(2));
    let trigger =
        |channels: Value| json!({"op": "trigger", "channels": channels, "event": "e", "data": "x"});
    let out = clients::node(
        gw.admin,
        &APP,
        0,
        json!([
            trigger(json!(["public.a", "public.b"])),
            trigger(json!("public.a"))
        ]),
    )
    .await;
    assert_eq!(answer(&out[0]).0, 200, "two messages fit the burst");
    assert_eq!(
        answer(&out[1]),
        (429, json!("Rate limit exceeded for this app"))
    );
    // The other app is on the shared `limits.publish` (5000/s).
    let other = clients::node(gw.admin, &SMALL, 0, json!([trigger(json!("public.a"))])).await;
    assert_eq!(answer(&other[0]).0, 200);
    // A burst of 3 over the 2 spent: exactly one more.
    gw.reload_with(&rated(2), &rated(3));
    let out = clients::node(
        gw.admin,
        &APP,
        0,
        json!([trigger(json!("public.a")), trigger(json!("public.a"))]),
    )
    .await;
    assert_eq!(answer(&out[0]).0, 200, "{out:?}");
    assert_eq!(answer(&out[1]).0, 429, "{out:?}");
}
