//! The Mercure hub: subscribers of both protocol generations (1.0 `match=`
//! / `match_urlpattern=`, 0.x `topic=` URI Templates), publishers signing
//! as `symfony/mercure` does (HS256, a `mercure` or `authorization_details`
//! claim, a form body), private updates, resume, and every refusal.

mod h2;

use crate::common::{SseReader, TestGateway};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const PUB_SECRET: &str = "publisher-secret-for-tests-0123456789";
pub(crate) const SUB_SECRET: &str = "subscriber-secret-for-tests-0123456789";
pub(crate) const DETAIL: &str = "https://mercure.rocks/authorization-detail";

pub(crate) async fn hub() -> TestGateway {
    TestGateway::builder()
        .tag("mercure")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n  anonymous: true\n  cors_origins: [https://app.example.com]\n  publish_origins: [https://app.example.com]\n  discovery: [{{ path: /api/ }}]\n"
        ))
        .start()
        .await
}

pub(crate) fn sign(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A publisher token as `symfony/mercure`'s `LcobucciFactory` makes it (0.x claim).
pub(crate) fn legacy_publisher() -> String {
    sign(json!({"mercure": {"publish": ["*"]}}), PUB_SECRET)
}

/// A 1.0 publisher token.
pub(crate) fn publisher(topics: &[&str]) -> String {
    let topics: Vec<Value> = topics.iter().map(|t| json!({"match": t})).collect();
    sign(
        json!({"authorization_details": [{"type": DETAIL, "actions": ["publish"], "topics": topics}]}),
        PUB_SECRET,
    )
}

pub(crate) async fn publish_with(
    gw: &TestGateway,
    token: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    gw.http1
        .post(gw.url("/.well-known/mercure"))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(q(form))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn publish(gw: &TestGateway, form: &[(&str, &str)]) -> String {
    let r = publish_with(gw, &legacy_publisher(), form).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    r.text().await.unwrap()
}

pub(crate) async fn subscribe(
    gw: &TestGateway,
    query: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> SseReader {
    let mut req = gw
        .http1
        .get(gw.url(&format!("/.well-known/mercure?{query}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "subscribe refused");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    SseReader::new(resp)
}

pub(crate) fn q(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn both_generations_subscribe_and_publish() {
    let gw = hub().await;
    let mut modern = subscribe(
        &gw,
        &q(&[("match", "https://example.com/books/1")]),
        None,
        None,
    )
    .await;
    let mut pattern = subscribe(
        &gw,
        &q(&[("match_urlpattern", "https://example.com/books/:id")]),
        None,
        None,
    )
    .await;
    let mut legacy = subscribe(
        &gw,
        &q(&[("topic", "https://example.com/books/{id}")]),
        None,
        None,
    )
    .await;

    // A 1.0 publisher; a multi-line body, a type and a retry.
    let r = publish_with(
        &gw,
        &publisher(&["https://example.com/books/1"]),
        &[
            ("topic", "https://example.com/books/1"),
            ("data", "{\"title\":\"one\"}\nline two"),
            ("type", "book.updated"),
            ("retry", "3000"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = r.text().await.unwrap();
    assert!(id.starts_with('#'), "the hub makes an id: {id}");
    for sub in [&mut modern, &mut pattern, &mut legacy] {
        let ev = sub.expect().await;
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
        assert_eq!(ev.event, "book.updated");
        assert_eq!(ev.data, "{\"title\":\"one\"}\nline two");
        assert_eq!(ev.retry, Some(3000));
    }

    // A 0.x publisher; its own id is kept; books/2 is not `modern`'s.
    let id2 = publish(
        &gw,
        &[
            ("topic", "https://example.com/books/2"),
            ("id", "urn:uuid:2"),
            ("data", "two"),
        ],
    )
    .await;
    assert_eq!(id2, "urn:uuid:2");
    for sub in [&mut pattern, &mut legacy] {
        let ev = sub.expect().await;
        assert_eq!(
            (ev.id.as_deref(), ev.data.as_str()),
            (Some("urn:uuid:2"), "two")
        );
    }
    let id3 = publish(
        &gw,
        &[("topic", "https://example.com/books/1"), ("data", "three")],
    )
    .await;
    let ev = modern.expect().await;
    assert_eq!(
        (ev.id, ev.data.as_str()),
        (Some(id3), "three"),
        "books/2 never reached match=books/1"
    );
}

#[tokio::test]
async fn private_updates_reach_only_tokens_allowed_to_read_a_topic() {
    let gw = hub().await;
    let topic = "https://example.com/users/42/orders";
    let reader = sign(
        json!({"authorization_details": [{"type": DETAIL, "actions": ["subscribe"],
            "topics": [{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}]}]}),
        SUB_SECRET,
    );
    let legacy_reader = sign(
        json!({"mercure": {"subscribe": ["https://example.com/users/{id}/orders"]}}),
        SUB_SECRET,
    );
    let other = sign(
        json!({"mercure": {"subscribe": ["https://example.com/users/7/orders"]}}),
        SUB_SECRET,
    );
    let sel = q(&[("match", topic)]);
    let mut anonymous = subscribe(&gw, &sel, None, None).await;
    let mut allowed = subscribe(&gw, &sel, Some(&reader), None).await;
    let mut legacy = subscribe(&gw, &q(&[("topic", topic)]), Some(&legacy_reader), None).await;
    let mut stranger = subscribe(&gw, &sel, Some(&other), None).await;

    let secret = publish(
        &gw,
        &[("topic", topic), ("data", "secret"), ("private", "on")],
    )
    .await;
    let public = publish(&gw, &[("topic", topic), ("data", "public")]).await;
    for sub in [&mut allowed, &mut legacy] {
        assert_eq!(sub.expect().await.id, Some(secret.clone()));
        assert_eq!(sub.expect().await.id, Some(public.clone()));
    }
    for sub in [&mut anonymous, &mut stranger] {
        let ev = sub.expect().await;
        assert_eq!(
            (ev.id, ev.data.as_str()),
            (Some(public.clone()), "public"),
            "the private update was skipped"
        );
    }
}

#[tokio::test]
async fn last_event_id_resumes_and_unknown_ids_start_at_the_earliest() {
    let gw = hub().await;
    let sel = q(&[("match", "urn:topic")]);
    let first = publish(&gw, &[("topic", "urn:topic"), ("data", "1")]).await;
    publish(&gw, &[("topic", "urn:other"), ("data", "x")]).await;
    let second = publish(
        &gw,
        &[("topic", "urn:topic"), ("data", "2"), ("id", "urn:id:2")],
    )
    .await;
    let third = publish(&gw, &[("topic", "urn:topic"), ("data", "3")]).await;

    // A hub id, in the header.
    let mut s = subscribe(&gw, &sel, None, Some(&first)).await;
    assert_eq!(s.resp_headers["last-event-id"].to_str().unwrap(), first);
    assert_eq!(s.expect().await.id, Some(second.clone()));
    assert_eq!(s.expect().await.id, Some(third.clone()));

    // A publisher's id, in the 0.x query parameter.
    let mut s = subscribe(&gw, &format!("{sel}&lastEventID=urn%3Aid%3A2"), None, None).await;
    assert_eq!(
        s.resp_headers["mercure-last-event-id"].to_str().unwrap(),
        "urn:id:2"
    );
    assert_eq!(s.expect().await.id, Some(third.clone()));

    // Unknown: everything kept, and the answer says so. A hub id of this
    // epoch past the newest update is unknown too (resuming there would
    // hide every live update up to it).
    let epoch = first.trim_start_matches('#').split('-').next().unwrap();
    let future = format!("#{epoch}-999999");
    for asked in ["urn:never-published", "earliest", "#1-1", future.as_str()] {
        let mut s = subscribe(
            &gw,
            &format!(
                "{sel}&last_event_id={}",
                url::form_urlencoded::byte_serialize(asked.as_bytes()).collect::<String>()
            ),
            None,
            None,
        )
        .await;
        assert_eq!(
            s.resp_headers["last-event-id"].to_str().unwrap(),
            "earliest",
            "{asked}"
        );
        for want in [&first, &second, &third] {
            assert_eq!(s.expect().await.id.as_ref(), Some(want), "{asked}");
        }
    }

    // No id asked: the answer names where the stream starts, and resuming from it loses nothing.
    let live = subscribe(&gw, &sel, None, None).await;
    let head = live.resp_headers["last-event-id"]
        .to_str()
        .unwrap()
        .to_string();
    let fourth = publish(&gw, &[("topic", "urn:topic"), ("data", "4")]).await;
    let mut s = subscribe(&gw, &sel, None, Some(&head)).await;
    assert_eq!(s.expect().await.id, Some(fourth));
}

#[tokio::test]
async fn refusals_are_clear() {
    let gw = hub().await;
    let url = gw.url("/.well-known/mercure");
    let form = [("topic", "https://example.com/a"), ("data", "x")];

    let r = gw
        .http1
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(q(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    for bad in [
        sign(json!({"mercure": {"publish": ["*"]}}), "wrong-secret"),
        sign(
            json!({"mercure": {"publish": ["*"]}, "exp": 1000}),
            PUB_SECRET,
        ),
        sign(json!({"mercure": {"publish": "*"}}), PUB_SECRET),
        sign(json!({"mercure": {"subscribe": ["*"]}}), SUB_SECRET),
        "garbage".into(),
    ] {
        let r = publish_with(&gw, &bad, &form).await;
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        // One fixed answer: which check failed is logged, not told.
        assert_eq!(r.text().await.unwrap(), "invalid token\n");
    }

    let r = publish_with(&gw, &publisher(&["https://example.com/b"]), &form).await;
    assert_eq!(r.status(), 403, "not allowed for the topic");
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // Every topic must be allowed, alternates too.
    let r = publish_with(
        &gw,
        &publisher(&["https://example.com/a"]),
        &[
            ("topic", "https://example.com/a"),
            ("topic", "https://example.com/z"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);

    for bad in [
        vec![("data", "no topic")],
        vec![("topic", "*")],
        vec![("topic", "/.well-known/mercure/subscriptions/x")],
        vec![("topic", "a"), ("type", "mercure")],
        vec![("topic", "a"), ("id", "#1-1")],
        vec![("topic", "a"), ("retry", "soon")],
    ] {
        let r = publish_with(&gw, &legacy_publisher(), &bad).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        assert!(!r.text().await.unwrap().is_empty());
    }

    // 10 MB: refused from its Content-Length, before a byte of it is sent.
    let mut tls = gw.tls_stream().await;
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        legacy_publisher(),
        10 * 1024 * 1024
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tls.read_exact(&mut answer),
    )
    .await
    .expect("answered without the body")
    .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    // And a chunked body without a length: cut off while it is read.
    let mut tls = gw.tls_stream().await;
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        legacy_publisher()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
    for _ in 0..4 {
        if tls.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tls.read_exact(&mut answer),
    )
    .await
    .expect("answered")
    .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");

    // The cookie publishes only from a listed origin.
    let cookie = format!("mercureAuthorization={}", legacy_publisher());
    let from = |origin: &'static str| {
        gw.http1
            .post(&url)
            .header("cookie", cookie.clone())
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(q(&form))
    };
    assert_eq!(
        from("https://evil.example").send().await.unwrap().status(),
        401
    );
    assert_eq!(
        from("https://app.example.com")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Subscribers.
    let get = |query: &str| {
        gw.http1
            .get(gw.url(&format!("/.well-known/mercure?{query}")))
            .send()
    };
    assert_eq!(get("").await.unwrap().status(), 400, "no selector");
    assert_eq!(
        get("matchx=a").await.unwrap().status(),
        400,
        "unknown matcher"
    );
    assert_eq!(
        get("MATCH_regex=a").await.unwrap().status(),
        400,
        "unknown matcher"
    );
    assert_eq!(
        get("match_urlpattern=https%3A%2F%2Fx%2F(")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        get("topic=%2Fa%2F%7Bb").await.unwrap().status(),
        400,
        "bad template"
    );
    let r = gw
        .http1
        .get(gw.url("/.well-known/mercure?match=a"))
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_thousand_selectors_and_a_pattern_that_never_matches() {
    let gw = hub().await;
    let mut pairs: Vec<(String, String)> = (0..1000)
        .map(|i| ("match".to_string(), format!("t{i}")))
        .collect();
    pairs.push((
        "match_urlpattern".into(),
        "https://nowhere.invalid/never/:x".into(),
    ));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let mut many = subscribe(&gw, &query, None, None).await;
    let mut never = subscribe(
        &gw,
        &q(&[
            ("match_urlpattern", "https://nowhere.invalid/never/:x"),
            ("match", "urn:sentinel"),
        ]),
        None,
        None,
    )
    .await;

    let hit = publish(&gw, &[("topic", "t999"), ("data", "999")]).await;
    publish(&gw, &[("topic", "t1000"), ("data", "not selected")]).await;
    let last = publish(
        &gw,
        &[("topic", "t0"), ("topic", "urn:sentinel"), ("data", "0")],
    )
    .await;
    assert_eq!(many.expect().await.id, Some(hit));
    assert_eq!(many.expect().await.id, Some(last.clone()));
    // Nothing before the sentinel reached the never-matching pattern.
    assert_eq!(never.expect().await.id, Some(last));

    let over: Vec<(String, String)> = (0..2001)
        .map(|i| ("match".to_string(), format!("t{i}")))
        .collect();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&over)
        .finish();
    let r = gw
        .http1
        .get(gw.url(&format!("/.well-known/mercure?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "over the selector bound");
}

#[tokio::test]
async fn discovery_and_cors() {
    let gw = hub().await;
    let r = gw.http1.get(gw.url("/api/books")).send().await.unwrap();
    assert_eq!(
        r.headers()["link"].to_str().unwrap(),
        "</.well-known/mercure>; rel=\"mercure\""
    );
    let r = gw.http1.get(gw.url("/other")).send().await.unwrap();
    assert!(
        r.headers().get("link").is_none(),
        "only under discovery routes"
    );

    let hub = gw.url("/.well-known/mercure");
    let r = gw
        .http1
        .request(reqwest::Method::OPTIONS, &hub)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let sub = gw
        .http1
        .get(format!("{hub}?match=a"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        sub.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let foreign = gw
        .http1
        .get(format!("{hub}?match=a"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "a foreign origin is not reflected"
    );
}

/// What `symfony/mercure`'s `Hub::publish` sends (its `QueryBuilder`: PHP's
/// `urlencode`, so spaces are `+`, one `topic=` per topic, `private=on`)
/// with a token as its `LcobucciFactory` signs it (`typ: JWT`, HS256,
/// `mercure: {publish, subscribe: []}`, a fractional `exp`). The PHP
/// library itself cannot be installed here (no route to Packagist), so
/// this is the same request made by hand.
#[tokio::test]
async fn a_publisher_signing_as_symfony_mercure_does() {
    let gw = hub().await;
    let reader = sign(
        json!({"mercure": {"subscribe": ["https://example.com/books/{id}"]}}),
        SUB_SECRET,
    );
    let mut sub = subscribe(
        &gw,
        &q(&[("topic", "https://example.com/books/{id}")]),
        Some(&reader),
        None,
    )
    .await;

    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 3600.5;
    let token = encode(
        &header,
        &json!({"mercure": {"publish": ["https://example.com/books/{id}"], "subscribe": []}, "exp": exp}),
        &EncodingKey::from_secret(PUB_SECRET.as_bytes()),
    )
    .unwrap();
    let body = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=https%3A%2F%2Fexample.com%2Fusers%2Fdunglas%2Fbooks%2F1\
                &data=%7B%22status%22%3A+%22OutOfStock%22%7D&private=on&id=urn%3Auuid%3Aabc&type=stock&retry=1000";
    let r = gw
        .http1
        .post(gw.url("/.well-known/mercure"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    // The second topic is outside the token's publish rights.
    assert_eq!(r.status(), 403);
    let body = body.replace(
        "&topic=https%3A%2F%2Fexample.com%2Fusers%2Fdunglas%2Fbooks%2F1",
        "",
    );
    let r = gw
        .http1
        .post(gw.url("/.well-known/mercure"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "urn:uuid:abc");
    let ev = sub.expect().await;
    assert_eq!(ev.id.as_deref(), Some("urn:uuid:abc"));
    assert_eq!(ev.event, "stock");
    assert_eq!(ev.data, "{\"status\": \"OutOfStock\"}");
}

#[tokio::test]
async fn active_subscriptions_are_announced_and_listed() {
    let gw = TestGateway::builder()
        .tag("mercure-subs")
        .realtime("  heartbeat: 1s")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n  anonymous: true\n  subscriptions: true\n"
        ))
        .start()
        .await;
    let template = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";
    let watcher_token = sign(
        json!({"mercure": {"subscribe": [template, "/.well-known/mercure/subscriptions"], "payload": {"role": "admin"}}}),
        SUB_SECRET,
    );
    let mut watcher = subscribe(&gw, &q(&[("topic", template)]), Some(&watcher_token), None).await;
    let mut anonymous = subscribe(
        &gw,
        &q(&[("topic", template), ("match", "urn:sentinel")]),
        None,
        None,
    )
    .await;

    let books = subscribe(
        &gw,
        &q(&[("match", "https://example.com/books/1")]),
        None,
        None,
    )
    .await;
    // The watcher's own subscription and the anonymous one's come first.
    let mut doc = Value::Null;
    for _ in 0..4 {
        let ev = watcher.expect().await;
        doc = serde_json::from_str(&ev.data).unwrap();
        if doc["topic"] == "https://example.com/books/1" {
            break;
        }
        assert_eq!(doc["active"], true, "{doc}");
    }
    assert_eq!(doc["@context"], "https://mercure.rocks/");
    assert_eq!(doc["type"], "Subscription");
    assert_eq!(doc["topic"], "https://example.com/books/1");
    assert_eq!(doc["active"], true);
    let subscriber = doc["subscriber"].as_str().unwrap().to_string();
    assert!(subscriber.starts_with("urn:uuid:"));
    let id = doc["id"].as_str().unwrap().to_string();
    assert_eq!(
        id,
        format!(
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Fbooks%2F1/{}",
            subscriber.replace(':', "%3A")
        )
    );

    // The API, under the same rights; its preflight is the hub's.
    let r = gw
        .http1
        .request(
            reqwest::Method::OPTIONS,
            gw.url("/.well-known/mercure/subscriptions/x"),
        )
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "a preflight under /subscriptions");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    let get = |path: String, token: Option<String>| {
        let mut r = gw.http1.get(gw.url(&path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = get(
        "/.well-known/mercure/subscriptions".into(),
        Some(watcher_token.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["type"], "Subscriptions");
    let listed: Vec<&str> = all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"https://example.com/books/1"), "{all}");
    assert!(listed.contains(&template), "{all}");
    let payloads = all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["topic"] == template)
        .map(|s| s["payload"]["role"].clone())
        .collect::<Vec<_>>();
    assert_eq!(payloads.len(), 2, "the watcher's and the anonymous one's");
    assert!(
        payloads.contains(&json!("admin")),
        "the token's payload: {all}"
    );
    let one: Value = get(id.clone(), Some(watcher_token.clone()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["subscriber"], subscriber.as_str());
    assert_eq!(
        get(format!("{id}x"), Some(watcher_token.clone()))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(get(id.clone(), None).await.unwrap().status(), 401);
    let stranger = sign(
        json!({"mercure": {"subscribe": ["https://example.com/books/1"]}}),
        SUB_SECRET,
    );
    assert_eq!(get(id.clone(), Some(stranger)).await.unwrap().status(), 403);

    // Leaving is announced too.
    drop(books);
    // Heartbeats keep the reader's own timeout from firing: bound the wait.
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), watcher.expect())
        .await
        .expect("the departure was announced within 10s");
    let doc: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(
        (doc["id"].as_str(), doc["active"].as_bool()),
        (Some(id.as_str()), Some(false))
    );

    // Subscription events are private: the anonymous watcher saw none of them.
    let sentinel = publish(&gw, &[("topic", "urn:sentinel"), ("data", "s")]).await;
    assert_eq!(anonymous.expect().await.id, Some(sentinel));
}

/// Without `anonymous`, a subscriber needs a token; a reload swaps the
/// keys for the requests that follow while a live subscriber goes on.
#[tokio::test]
async fn tokens_are_required_without_anonymous_and_keys_follow_a_reload() {
    let gw = TestGateway::builder()
        .tag("mercure-closed")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n"
        ))
        .start()
        .await;
    let r = gw
        .http1
        .get(gw.url("/.well-known/mercure?match=urn:a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let token = sign(json!({"mercure": {"subscribe": []}}), SUB_SECRET);
    let mut live = subscribe(&gw, &q(&[("match", "urn:a")]), Some(&token), None).await;

    gw.reload_with(PUB_SECRET, "a-new-publisher-secret-0123456789");
    let r = publish_with(&gw, &legacy_publisher(), &[("topic", "urn:a")]).await;
    assert_eq!(r.status(), 401, "the old key no longer signs");
    let fresh = sign(
        json!({"mercure": {"publish": ["*"]}}),
        "a-new-publisher-secret-0123456789",
    );
    let r = publish_with(&gw, &fresh, &[("topic", "urn:a"), ("data", "after")]).await;
    assert_eq!(r.status(), 200);
    let id = r.text().await.unwrap();
    let ev = live.expect().await;
    assert_eq!((ev.id, ev.data.as_str()), (Some(id), "after"));
}

/// A hub id older than what history keeps is answered as `earliest`, and
/// the stream starts from the oldest update kept.
#[tokio::test]
async fn an_id_history_dropped_starts_at_the_earliest_kept() {
    let gw = TestGateway::builder()
        .tag("mercure-history")
        .realtime("  history: { size: 2, ttl: 10m }")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  anonymous: true\n"
        ))
        .start()
        .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(publish(&gw, &[("topic", "urn:t"), ("data", &n.to_string())]).await);
    }
    let mut s = subscribe(&gw, &q(&[("match", "urn:t")]), None, Some(&ids[0])).await;
    assert_eq!(
        s.resp_headers["last-event-id"].to_str().unwrap(),
        "earliest"
    );
    assert_eq!(s.expect().await.id.as_ref(), Some(&ids[2]));
    assert_eq!(s.expect().await.id.as_ref(), Some(&ids[3]));
}

/// A subscriber's own regular-expression groups and a flood of patterns
/// are refused before they cost the gateway: each URL Pattern compiles
/// under a small size limit, patterns and templates are capped per
/// subscription, and without a token nothing is compiled at all.
#[tokio::test]
async fn hostile_patterns_are_refused_and_the_hub_keeps_serving() {
    let gw = hub().await;
    let get = |query: String| {
        gw.http1
            .get(gw.url(&format!("/.well-known/mercure?{query}")))
            .send()
    };
    // A heavy group, alone and repeated to fill a query.
    let heavy = "https://example.com/:a(\\w{200})";
    let r = get(q(&[("match_urlpattern", heavy)])).await.unwrap();
    assert_eq!(r.status(), 400, "a group too large to compile");
    assert!(r.text().await.unwrap().contains("URL Pattern"));
    let flood: Vec<(&str, &str)> = (0..600).map(|_| ("match_urlpattern", heavy)).collect();
    assert_eq!(get(q(&flood)).await.unwrap().status(), 400);

    // Plain patterns and templates: 64 are fine, 65 are one too many.
    let pats: Vec<String> = (0..65)
        .map(|i| format!("https://example.com/p{i}/:id"))
        .collect();
    let mut pairs: Vec<(&str, &str)> = pats[..64]
        .iter()
        .map(|p| ("match_urlpattern", p.as_str()))
        .collect();
    let mut ok = subscribe(&gw, &q(&pairs), None, None).await;
    pairs.pop();
    pairs.push(("topic", "https://example.com/t/{id}"));
    pairs.push(("topic", "https://example.com/u/{id}"));
    let r = get(q(&pairs)).await.unwrap();
    assert_eq!(r.status(), 400, "65 patterns and templates");
    assert!(r.text().await.unwrap().contains("at most 64"));

    // The hub still serves: the subscriber of 64 patterns gets its update.
    let id = publish(
        &gw,
        &[("topic", "https://example.com/p63/9"), ("data", "x")],
    )
    .await;
    assert_eq!(ok.expect().await.id, Some(id));

    // Without anonymous access, no token: 401 before any selector is read.
    let closed = TestGateway::builder()
        .tag("mercure-closed-hostile")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n"
        ))
        .start()
        .await;
    let r = closed
        .http1
        .get(closed.url(&format!("/.well-known/mercure?{}", q(&flood))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "admission comes first");
}

/// Looking up a publisher's id reads only the newest 1,024 updates: an id
/// published before them is answered as unknown (`earliest`), one within
/// them resumes exactly.
#[tokio::test]
async fn the_search_for_a_publisher_id_is_bounded() {
    let gw = TestGateway::builder()
        .tag("mercure-search")
        .realtime("  history: { size: 3000, ttl: 10m }")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  anonymous: true\n"
        ))
        .start()
        .await;
    publish(
        &gw,
        &[("topic", "urn:t"), ("id", "urn:old"), ("data", "old")],
    )
    .await;
    publish(
        &gw,
        &[("topic", "urn:t"), ("id", "urn:recent"), ("data", "r")],
    )
    .await;
    for n in 0..1022 {
        publish(&gw, &[("topic", "urn:filler"), ("data", &n.to_string())]).await;
    }
    let last = publish(&gw, &[("topic", "urn:t"), ("data", "last")]).await;
    let sel = q(&[("match", "urn:t")]);
    let s = subscribe(&gw, &sel, None, Some("urn:old")).await;
    assert_eq!(
        s.resp_headers["last-event-id"].to_str().unwrap(),
        "earliest",
        "older than the searched window"
    );
    let mut s = subscribe(&gw, &sel, None, Some("urn:recent")).await;
    assert_eq!(
        s.resp_headers["last-event-id"].to_str().unwrap(),
        "urn:recent"
    );
    assert_eq!(s.expect().await.id, Some(last));
}

/// A subscriber's stream ends when its token expires, at `exp` itself (not
/// after the clock-skew leeway that verification allows).
#[tokio::test]
async fn a_stream_ends_at_its_tokens_exp() {
    let gw = TestGateway::builder()
        .tag("mercure-exp")
        .realtime("  heartbeat: 1s")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n"
        ))
        .start()
        .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let token = sign(
        json!({"mercure": {"subscribe": ["*"]}, "exp": exp}),
        SUB_SECRET,
    );
    let mut s = subscribe(&gw, &q(&[("match", "urn:a")]), Some(&token), None).await;
    // Heartbeats every second keep the reader going until the end; the
    // leeway (30 s) would run far past this deadline.
    tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while s.next_event().await.is_some() {}
    })
    .await
    .expect("the stream ended at exp");
}

/// A subscriber of many selectors announces at most 64 of them, so its
/// arrival does not push real updates out of the hub's history.
#[tokio::test]
async fn subscription_events_are_capped_per_connection() {
    let gw = TestGateway::builder()
        .tag("mercure-subs-cap")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n  anonymous: true\n  subscriptions: true\n"
        ))
        .start()
        .await;
    let before = publish(&gw, &[("topic", "urn:real"), ("data", "kept")]).await;
    let pairs: Vec<(String, String)> = (0..200)
        .map(|i| ("match".to_string(), format!("t{i}")))
        .collect();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let _many = subscribe(&gw, &query, None, None).await;
    let sentinel = publish(&gw, &[("topic", "urn:sentinel"), ("data", "s")]).await;

    let template = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";
    let watcher = sign(json!({"mercure": {"subscribe": [template]}}), SUB_SECRET);
    let mut s = subscribe(
        &gw,
        &q(&[
            ("topic", template),
            ("match", "urn:sentinel"),
            ("match", "urn:real"),
        ]),
        Some(&watcher),
        Some("earliest"),
    )
    .await;
    assert_eq!(s.expect().await.id, Some(before), "the real update is kept");
    let mut announced = 0;
    loop {
        let ev = s.expect().await;
        if ev.id.as_ref() == Some(&sentinel) {
            break;
        }
        announced += 1;
    }
    assert_eq!(announced, 64, "one event per selector, at most 64");
}

/// Read from `tls` into `got` until it holds `what`, within a deadline.
async fn read_until(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    got: &mut String,
    what: &str,
) {
    let mut buf = vec![0u8; 4096];
    while !got.contains(what) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what:?} in time, got {got:?}"))
            .unwrap();
        assert!(n > 0, "closed before {what:?}: {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// A subscriber whose request is its connection's first is served like
/// pushgate's own SSE streams, straight onto the HTTP/1.1 connection
/// (delimited by the close, no chunked framing), with the hub's headers,
/// CORS included; a refusal there is a whole answer with its length.
#[tokio::test]
async fn a_first_request_subscriber_is_streamed_without_chunked_framing() {
    let gw = hub().await;
    let mut tls = gw.tls_stream().await;
    tls.write_all(
        b"GET /.well-known/mercure?topic=urn:direct HTTP/1.1\r\nHost: localhost\r\n\
          Origin: https://app.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = String::new();
    read_until(&mut tls, &mut got, "\r\n\r\n:\n\n").await;
    let lower = got.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{got}");
    for want in [
        "content-type: text/event-stream\r\n",
        "cache-control: no-cache\r\n",
        "last-event-id: #",
        "mercure-last-event-id: #",
        "access-control-allow-origin: https://app.example.com\r\n",
        "connection: close\r\n",
    ] {
        assert!(lower.contains(want), "{want:?} in {got}");
    }
    assert!(!lower.contains("transfer-encoding"), "{got}");
    let id = publish(&gw, &[("topic", "urn:direct"), ("data", "straight")]).await;
    read_until(&mut tls, &mut got, "data: straight\n\n").await;
    assert!(
        got.ends_with(&format!("\r\n\r\n:\n\nid: {id}\ndata: straight\n\n")),
        "the event as it is, unframed: {got:?}"
    );

    // Refused on the same path: a whole answer, then the close.
    let mut tls = gw.tls_stream().await;
    tls.write_all(
        b"GET /.well-known/mercure?topic=urn:direct HTTP/1.1\r\nHost: localhost\r\n\
          Authorization: Bearer not.a.token\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = String::new();
    read_until(&mut tls, &mut got, "invalid token\n").await;
    let lower = got.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 401 "), "{got}");
    assert!(
        lower.contains("www-authenticate: bearer error=\"invalid_token\"")
            && lower.contains("content-length: 14\r\n"),
        "{got}"
    );
}
