use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn sse_delivers_over_tls_with_cursor_ids() {
    let gw = TestGateway::start().await;
    let mut sse = gw.sse("/realtime/sse?channels=public.news", None).await;
    assert_eq!(sse.resp_headers["content-type"], "text/event-stream");
    assert_eq!(sse.resp_headers["cache-control"], "no-cache");
    assert_eq!(sse.resp_headers["x-accel-buffering"], "no");

    let id = gw
        .publish_one("public.news", json!({"hello": "world\nline2"}))
        .await;
    let ev = sse.expect().await;
    assert_eq!(
        sse.last_retry,
        Some(2000),
        "retry: is set before the first event"
    );
    assert_eq!(ev.event, "message");
    let msg = ev.json();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["channel"], "public.news");
    assert_eq!(msg["id"], id);
    assert_eq!(msg["data"]["hello"], "world\nline2");
    assert_eq!(
        msg["cursor"].as_str(),
        ev.id.as_deref(),
        "SSE id is the cursor"
    );

    gw.publish(json!({"channel": "public.news", "event": "created", "data": 2}))
        .await;
    let ev = sse.expect().await;
    assert_eq!(ev.event, "created");
    assert_eq!(ev.json()["data"], 2);
}

#[tokio::test]
async fn sse_resumes_with_last_event_id_without_loss_or_duplicates() {
    let gw = TestGateway::start().await;
    let mut sse = gw
        .sse("/realtime/sse?channels=public.a,public.b", None)
        .await;
    for i in 0..3 {
        gw.publish_one(if i % 2 == 0 { "public.a" } else { "public.b" }, json!(i))
            .await;
    }
    let mut last = None;
    for i in 0..3 {
        let ev = sse.expect().await;
        assert_eq!(ev.json()["data"], i);
        last = ev.id;
    }
    drop(sse);
    for i in 3..8 {
        gw.publish_one(if i % 2 == 0 { "public.a" } else { "public.b" }, json!(i))
            .await;
    }
    // The channels come from the cursor when the URL names none, and the query
    // parameter works like the header.
    let path = format!("/realtime/sse?last_event_id={}", last.as_deref().unwrap());
    let mut sse = gw.sse(&path, None).await;
    for i in 3..8 {
        assert_eq!(sse.expect().await.json()["data"], i);
    }
    gw.publish_one("public.a", json!("live")).await;
    assert_eq!(sse.expect().await.json()["data"], "live");

    // The header takes precedence and yields the same replay.
    let mut sse = gw
        .sse("/realtime/sse?channels=public.a,public.b", last.as_deref())
        .await;
    for i in 3..8 {
        assert_eq!(sse.expect().await.json()["data"], i);
    }
}

#[tokio::test]
async fn sse_reset_when_history_no_longer_reaches_back() {
    let gw = TestGateway::start().await;
    let mut sse = gw.sse("/realtime/sse?channels=small.x", None).await;
    gw.publish_one("small.x", json!(0)).await;
    let cursor = sse.expect().await.id.unwrap();
    drop(sse);
    for i in 1..=5 {
        gw.publish_one("small.x", json!(i)).await; // history keeps only 2
    }
    let mut sse = gw
        .sse("/realtime/sse?channels=small.x", Some(&cursor))
        .await;
    let ev = sse.expect().await;
    assert_eq!(ev.event, "reset");
    let reset = ev.json();
    assert_eq!(reset["type"], "reset");
    assert_eq!(reset["channels"], json!(["small.x"]));
    gw.publish_one("small.x", json!("after")).await;
    assert_eq!(sse.expect().await.json()["data"], "after");
}

#[tokio::test]
async fn cursor_from_another_process_resets() {
    let a = TestGateway::start().await;
    let mut sse = a.sse("/realtime/sse?channels=public.r", None).await;
    a.publish_one("public.r", json!(1)).await;
    let cursor = sse.expect().await.id.unwrap();
    // A second gateway is a "restarted" memory broker: another epoch.
    let b = TestGateway::start().await;
    b.publish_one("public.r", json!(2)).await;
    let mut sse = b
        .sse("/realtime/sse?channels=public.r", Some(&cursor))
        .await;
    let ev = sse.expect().await;
    assert_eq!(ev.event, "reset");
    assert_eq!(ev.json()["channels"], json!(["public.r"]));
}

#[tokio::test]
async fn sse_refusals_are_plain_http() {
    let gw = TestGateway::start().await;
    // HTTP/1.1 takes the direct path; HTTP/2 goes through hyper: same answers.
    for client in [&gw.http1, &gw.http] {
        refusals(&gw, client).await;
    }
}

async fn refusals(gw: &TestGateway, client: &reqwest::Client) {
    let get = |p: &str| client.get(gw.url(p)).send();
    let r = get("/realtime/sse?channels=secret.x").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(body["message"].as_str().unwrap().contains("secret.x"));
    let r = get("/realtime/sse?channels=orders.1").await.unwrap();
    assert_eq!(r.status(), 401, "token channels need a token");
    let r = get("/realtime/sse").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "missing_channels"
    );
    let r = get("/realtime/sse?channels=bad%20name").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = get("/realtime/sse?channels=public.a&cursor=~~~")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "bad_cursor"
    );
    let r = client
        .post(gw.url("/realtime/sse?channels=public.a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = get("/realtime/nope").await.unwrap();
    assert_eq!(r.status(), 404);
    let many: Vec<String> = (0..101).map(|i| format!("public.{i}")).collect();
    let r = get(&format!("/realtime/sse?channels={}", many.join(",")))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn sse_heartbeat_comments_flow() {
    let gw = TestGateway::builder()
        .realtime("  heartbeat: 100ms")
        .start()
        .await;
    let mut sse = gw.sse("/realtime/sse?channels=public.hb", None).await;
    // Nothing is published until the stream has carried three heartbeats
    // (after the opening comment); a message still gets through after them.
    sse.expect_comments(4).await;
    gw.publish_one("public.hb", json!("x")).await;
    let ev = sse.expect().await;
    assert_eq!(ev.json()["data"], "x");
    assert!(
        sse.comments >= 4,
        "expected heartbeat comments, saw {}",
        sse.comments
    );
}

#[tokio::test]
async fn http2_clients_get_sse() {
    let gw = TestGateway::start().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&gw.cert_pem).unwrap())
        .resolve("localhost", gw.public)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .get(gw.url("/realtime/sse?channels=public.h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut sse = SseReader::new(resp);
    gw.publish_one("public.h2", json!("over h2")).await;
    assert_eq!(sse.expect().await.json()["data"], "over h2");
}

#[tokio::test]
async fn http1_sse_is_framed_by_close_and_other_first_requests_still_work() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start().await;
    // A refusal on the direct path: status, Content-Length, JSON body, then close.
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /realtime/sse?channels=orders.1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut raw))
        .await
        .expect("closed after the answer")
        .ok();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap()["error"],
        "unauthorized"
    );

    // A stream: headers, then events, no chunked framing.
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /realtime/sse?channels=public.h1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains(": pushgate\n\n") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let lower = got.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{got}");
    assert!(
        lower.contains("content-type: text/event-stream") && !lower.contains("transfer-encoding"),
        "{got}"
    );
    let id = gw.publish_one("public.h1", json!("over http/1.1")).await;
    while !got.contains("over http/1.1") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert!(got.contains(&format!("\"id\":\"{id}\"")), "{got}");

    // Other first requests on HTTP/1.1 reach hyper with their bytes intact,
    // and the connection keeps serving requests after them.
    for _ in 0..2 {
        let r = gw
            .http1
            .get(gw.url("/realtime/poll?channels=public.h1&timeout=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status(), 200);
    }
}

/// Only a connection's first request is looked at for the direct SSE path:
/// after a relayed request, an SSE request on the same connection goes
/// where every later realtime request goes, to hyper (which frames the
/// stream in chunks on HTTP/1.1, where the direct path frames it by close).
#[tokio::test]
async fn sse_after_a_relayed_request_on_one_connection_is_hypers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = backend::start().await;
    let gw = TestGateway::with(&format!("http://{app}"), "  heartbeat: 15s", "").await;
    let before = gw.relayed().await;
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"GET /echo?sse-after-relay HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // The whole answer: its head, then as many bytes as it states.
    let answered = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let length = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })?;
        (body.len() >= length).then(|| head.to_string())
    };
    let head = loop {
        if let Some(head) = answered(&got) {
            break head;
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    };
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(gw.engine_since(before).await, "relay");

    tls.write_all(b"GET /realtime/sse?channels=public.later HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    while !got.contains("\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("an SSE head in time")
            .unwrap();
        assert!(n > 0, "closed after {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lower = got.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{got}");
    assert!(
        lower.contains("content-type: text/event-stream")
            && lower.contains("transfer-encoding: chunked"),
        "served by hyper, framed in chunks: {got}"
    );
}

#[tokio::test]
async fn sse_answers_carry_cors_for_allowed_origins_on_both_paths() {
    let gw = TestGateway::builder()
        .realtime("  allowed_origins: [\"https://app.example.com\"]")
        .start()
        .await;
    let origin = "https://app.example.com";
    // HTTP/1.1 takes the direct path; HTTP/2 goes through hyper.
    for (client, version) in [
        (&gw.http1, reqwest::Version::HTTP_11),
        (&gw.http, reqwest::Version::HTTP_2),
    ] {
        for (query, status) in [("channels=public.cors", 200), ("channels=secret.x", 403)] {
            let r = client
                .get(gw.url(&format!("/realtime/sse?{query}")))
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!((r.version(), r.status().as_u16()), (version, status));
            let h = r.headers();
            assert_eq!(
                h["access-control-allow-origin"], origin,
                "{version:?} {query}"
            );
            assert_eq!(h["access-control-allow-credentials"], "true");
            assert_eq!(h["vary"], "Origin");
            if status == 200 {
                assert_eq!(h["content-type"], "text/event-stream");
                let mut sse = SseReader::new(r);
                gw.publish_one("public.cors", json!(query)).await;
                assert_eq!(sse.expect().await.json()["data"], query);
            }
        }
    }
}

/// One message's event text is rendered once and shared by the
/// subscribers whose cursor reads the same after it; a subscriber that
/// follows other channels too gets its own, with its own cursor.
#[tokio::test]
async fn a_shared_event_goes_only_to_subscribers_with_the_same_cursor() {
    let gw = TestGateway::start().await;
    let mut only_a = gw.sse("/realtime/sse?channels=public.a", None).await;
    let mut also_a = gw.sse("/realtime/sse?channels=public.a", None).await;
    let mut a_and_b = gw
        .sse("/realtime/sse?channels=public.a,public.b", None)
        .await;
    for round in 0..3 {
        gw.publish_one("public.a", json!(round)).await;
        let one = only_a.expect().await;
        let two = also_a.expect().await;
        let both = a_and_b.expect().await;
        for ev in [&one, &two, &both] {
            assert_eq!(ev.json()["data"], round);
            assert_eq!(ev.json()["cursor"].as_str(), ev.id.as_deref());
        }
        assert_eq!(one.id, two.id, "the same channels, the same cursor");
        let both_id = both.id.as_deref().unwrap_or_default();
        assert!(
            both_id.contains("public.b") && Some(both_id) != one.id.as_deref(),
            "a subscriber of two channels keeps its own cursor: {both_id} vs {:?}",
            one.id
        );
        assert!(!one.id.as_deref().unwrap_or_default().contains("public.b"));
    }
}
