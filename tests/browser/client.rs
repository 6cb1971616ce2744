//! `client.js` in Chromium: delivery, transport fallback, resume, token refresh.

use serde_json::json;

use crate::harness::*;

/// A page subscribes over WebSocket and receives 100 messages in order.
#[tokio::test]
async fn websocket_delivers_in_order() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    b.open_page(&gw, "channels=public.one&transports=websocket")
        .await;
    b.until_transport("websocket", 15).await;
    // The script came from the gateway, with a validator for caching.
    let head = gw
        .http
        .get(gw.url("/realtime/client.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(head.headers().contains_key("etag"));

    let ids = publish_range(&gw, "public.one", 0..100).await;
    b.until_count(100, 20).await;
    assert_received(&b, &lines("public.one", &ids, (0..100).map(|i| json!(i)))).await;
    // subscribe() returns its unsubscribe: the gateway stops sending, the page stops seeing.
    b.js("window.stopTwo = window.follow('public.two')").await;
    crate::common::eventually(10, "public.two subscribed", || async {
        gw.admin_get("/channels/public.two").await["subscribers"] == 1
    })
    .await;
    let two = gw.publish_one("public.two", json!("seen")).await;
    b.until_count(101, 10).await;
    b.js("window.stopTwo()").await;
    crate::common::eventually(10, "public.two unsubscribed", || async {
        gw.admin_get("/channels/public.two").await["subscribers"] == 0
    })
    .await;
    gw.publish_one("public.two", json!("unseen")).await;
    let marker = gw.publish_one("public.one", json!("marker")).await;
    b.until_count(102, 10).await;
    let got = b.received().await;
    assert_eq!(got[100], format!("public.two|{two}|\"seen\""));
    assert_eq!(got[101], format!("public.one|{marker}|\"marker\""));
    // The module form is the same class.
    let module = b
        .js("return import('/realtime/client.mjs').then((m) => m.Pushgate === window.Pushgate && m.default === m.Pushgate)")
        .await;
    assert_eq!(module, json!(true));
    // send() reaches the application and resolves to its answer.
    let answer = b
        .js("return window.rt.send({hello: 'app'}).then((a) => JSON.stringify(a))")
        .await;
    assert_eq!(answer, json!("{\"echo\":{\"hello\":\"app\"}}"));
    b.finish().await;
}

/// WebSocket broken by a "proxy": SSE; then SSE broken too: long-poll; then
/// WebSocket works again and the client goes back to it. Every message
/// arrives once, in order, across all three switches.
#[tokio::test]
async fn falls_back_and_returns_without_loss() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    b.open_page(
        &gw,
        "channels=public.fb&block=websocket&token=fallback::600&opts={\"retryPreferredAfter\":1500}",
    )
    .await;
    b.until_transport("sse", 15).await;
    let mut ids = publish_range(&gw, "public.fb", 0..30).await;
    b.until_count(30, 15).await;

    // Break SSE as well and cut the live stream: the client must land on long-poll.
    b.js("window.block(['websocket', 'sse'])").await;
    let kicked = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "fallback"}));
    assert_eq!(kicked.send().await.unwrap().status(), 200);
    ids.extend(publish_range(&gw, "public.fb", 30..60).await);
    b.until_transport("poll", 20).await;
    b.until_count(60, 20).await;

    // Unblock: the periodic probe brings the preferred transport back.
    b.js("window.block([])").await;
    b.until_transport("websocket", 20).await;
    ids.extend(publish_range(&gw, "public.fb", 60..90).await);
    b.until_count(90, 20).await;
    assert_received(&b, &lines("public.fb", &ids, (0..90).map(|i| json!(i)))).await;
    let events = b.events().await;
    for switch in [
        "transport websocket>sse",
        "transport sse>poll",
        "transport poll>websocket",
    ] {
        assert!(
            events.iter().any(|e| e == switch),
            "no `{switch}` in {events:?}"
        );
    }
    b.finish().await;
}

/// The operator cuts the connection mid-stream: the client resumes from its
/// cursor without gap or duplicate. Kept away until history no longer
/// reaches back, it gets a `reset` instead.
#[tokio::test]
async fn resumes_after_disconnect_and_reports_reset() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    b.open_page(&gw, "channels=public.r,small.r&token=carol::600")
        .await;
    b.until_transport("websocket", 15).await;

    let disconnect = || async {
        let r = gw
            .http
            .post(gw.admin_url("/disconnect"))
            .json(&json!({"subject": "carol"}))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        v["disconnected"].as_u64().unwrap()
    };
    let mut ids = publish_range(&gw, "public.r", 0..20).await;
    assert_eq!(disconnect().await, 1);
    ids.extend(publish_range(&gw, "public.r", 20..40).await);
    b.until_count(40, 20).await;
    assert_received(&b, &lines("public.r", &ids, (0..40).map(|i| json!(i)))).await;
    b.until(10, "a reconnect", "return [...document.querySelectorAll('#events li')].filter((l) => l.textContent.startsWith('connect')).length >= 2").await;

    // Offline long enough for small.r (history 2) to lose what was missed.
    b.js("window.block(['websocket', 'sse', 'poll'])").await;
    assert_eq!(disconnect().await, 1);
    b.until(
        10,
        "the client to notice",
        "return document.getElementById('state').textContent !== 'connected'",
    )
    .await;
    publish_range(&gw, "small.r", 0..5).await;
    ids.extend(publish_range(&gw, "public.r", 40..45).await);
    b.js("window.block([])").await;
    b.until(20, "a reset for small.r", "return [...document.querySelectorAll('#events li')].some((l) => l.textContent === 'reset small.r')").await;
    b.until_count(45, 20).await;
    // public.r has history enough: its missed messages were replayed, not reset.
    assert_received(&b, &lines("public.r", &ids, (0..45).map(|i| json!(i)))).await;
    assert!(
        !b.events()
            .await
            .iter()
            .any(|e| e.contains("reset public.r"))
    );
    b.finish().await;
}

/// Short-lived tokens (2 s). On WebSocket the client renews the token on the
/// open socket before it expires (`auth` op), so nothing is cut; with that
/// off, the gateway ends the socket at expiry (`token_expired`, 1008) and the
/// client asks `getToken()` and resumes. Long-poll gets 401 and does the same.
#[tokio::test]
async fn token_expiry_calls_get_token_and_continues() {
    let gw = gateway("").await;
    let cases = [
        // Renewal happens a third of the token's life ahead: 3 s tokens leave
        // a loaded machine a second for getToken() and the `auth` op.
        ("websocket", "renewed", 3, r#"{"pollTimeout":2}"#),
        (
            "websocket",
            "refused",
            2,
            r#"{"pollTimeout":2,"refreshEarly":0}"#,
        ),
        ("poll", "refused", 2, r#"{"pollTimeout":2}"#),
    ];
    for (transport, how, ttl, opts) in cases {
        let b = Browser::start().await;
        let channel = format!("orders.{transport}-{how}");
        b.open_page(
            &gw,
            &format!(
                "channels={channel}&transports={transport}&token=dave:orders.*:{ttl}&opts={opts}"
            ),
        )
        .await;
        b.until_transport(transport, 15).await;
        let mut ids = publish_range(&gw, &channel, 0..10).await;
        b.until_count(10, 15).await;
        // Past the first token's expiry, whichever way it was replaced.
        b.until(
            15,
            "getToken() called twice (two tokens expired)",
            "return Number(document.getElementById('token-calls').textContent) >= 2",
        )
        .await;
        ids.extend(publish_range(&gw, &channel, 10..20).await);
        b.until_count(20, 15).await;
        assert_received(&b, &lines(&channel, &ids, (0..20).map(|i| json!(i)))).await;
        b.until_transport(transport, 15).await;
        let cut = b.events().await.iter().any(|e| e.starts_with("disconnect"));
        assert_eq!(
            cut,
            how == "refused",
            "{transport} {how}: {:?}",
            b.events().await
        );
        b.finish().await;
    }
}

/// publish and send made while disconnected wait in a bounded queue and go
/// out in order once connected; overflow and timeout reject.
#[tokio::test]
async fn offline_calls_are_queued_and_flushed() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    b.open_page(
        &gw,
        "channels=chat.q&token=erin::600&opts={\"queueLimit\":3}",
    )
    .await;
    b.until_transport("websocket", 15).await;
    b.js("window.block(['websocket', 'sse', 'poll'])").await;
    let r = gw
        .http
        .post(gw.admin_url("/disconnect"))
        .json(&json!({"subject": "erin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    b.until(
        10,
        "the client to notice",
        "return document.getElementById('state').textContent !== 'connected'",
    )
    .await;
    let queued = b
        .js(
            "window.results = []; \
             const rec = (i, p) => p.then((v) => results.push(`${i} ok ${JSON.stringify(v)}`), (e) => results.push(`${i} ${e.code}`)); \
             rec(0, rt.publish('chat.q', 'first')); rec(1, rt.send({n: 1})); rec(2, rt.publish('chat.q', 'second')); \
             rec(3, rt.publish('chat.q', 'overflow')); \
             const short = new Pushgate('/realtime', {transports: ['poll'], queueTimeout: 300}); short.subscribe('chat.q', () => {}); \
             rec(4, short.send({n: 4}).finally(() => short.close())); \
             return rt.status().queued",
        )
        .await;
    assert_eq!(queued, json!(3));
    b.until(
        5,
        "overflow and timeout rejected",
        "return results.includes('3 queue_full') && results.includes('4 timeout')",
    )
    .await;
    assert_eq!(b.text("count").await, "0");

    b.js("window.block([])").await;
    b.until(
        20,
        "every queued call settled",
        "return results.length === 5",
    )
    .await;
    let results: Vec<String> = serde_json::from_value(b.js("return results").await).unwrap();
    assert!(
        results.contains(&"1 ok {\"echo\":{\"n\":1}}".to_string()),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("0 ok {\"channel\":\"chat.q\",\"id\":")),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("2 ok {\"channel\":\"chat.q\",\"id\":")),
        "{results:?}"
    );
    // Published in the order they were made, once each.
    b.until_count(2, 15).await;
    let got = b.received().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].ends_with("|\"first\"") && got[1].ends_with("|\"second\""),
        "{got:?}"
    );
    b.finish().await;
}

/// A channel subscribed while connected is in the cursor from then on: cut
/// off before its first message arrives, the client still gets what was
/// published in the meantime (WebSocket: the subscribe ack's cursor; SSE:
/// the stream's opening `id:`; long-poll: every answer's cursor).
#[tokio::test]
async fn channels_added_later_resume_too() {
    let gw = gateway("").await;
    for transport in ["websocket", "sse", "poll"] {
        let b = Browser::start().await;
        let subject = format!("late-{transport}");
        let channel = format!("public.late{transport}");
        b.open_page(
            &gw,
            &format!("channels=public.base&transports={transport}&token={subject}::600&opts={{\"pollTimeout\":2}}"),
        )
        .await;
        b.until_transport(transport, 15).await;
        b.js(&format!("window.follow('{channel}')")).await;
        let path = format!("/channels/{channel}");
        crate::common::eventually(10, "the new subscription reaches the gateway", || async {
            gw.admin_get(&path).await["subscribers"] == 1
        })
        .await;
        // Poll needs its next answer to carry the new cursor: one round trip.
        // (A long-poll is not a session the operator can cut: it ends with its
        // hold, 2 s here, and the next one meets the block.)
        if transport == "poll" {
            gw.publish_one("public.base", json!("tick")).await;
            b.until_count(1, 10).await;
        }
        b.js("window.block(['websocket', 'sse', 'poll'])").await;
        let r = gw
            .http
            .post(gw.admin_url("/disconnect"))
            .json(&json!({"subject": subject}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        b.until(
            10,
            "the client to notice",
            "return document.getElementById('state').textContent !== 'connected'",
        )
        .await;
        let ids = publish_range(&gw, &channel, 0..3).await;
        b.js("window.block([])").await;
        let skip = usize::from(transport == "poll");
        b.until_count(3 + skip, 20).await;
        let got = b.received().await;
        assert_eq!(
            got[skip..].to_vec(),
            lines(&channel, &ids, (0..3).map(|i| json!(i))),
            "over {transport}"
        );
        b.finish().await;
    }
}

/// A proxy that buffers SSE (headers, then silence) counts as a failed
/// connect: the client moves on to long-poll instead of waiting forever.
#[tokio::test]
async fn buffered_sse_falls_back_to_poll() {
    let gw = gateway("").await;
    let b = Browser::start().await;
    b.open_page(
        &gw,
        "channels=public.buf&block=websocket,sse-buffered&opts={\"connectTimeout\":1500}",
    )
    .await;
    b.until_transport("poll", 20).await;
    let ids = publish_range(&gw, "public.buf", 0..10).await;
    b.until_count(10, 15).await;
    assert_received(&b, &lines("public.buf", &ids, (0..10).map(|i| json!(i)))).await;
    let events = b.events().await;
    assert!(
        events.iter().any(|e| e == "transport sse>poll"),
        "{events:?}"
    );
    b.finish().await;
}

/// On shutdown the gateway tells each client when to come back (`retry`,
/// drawn within `realtime.reconnect_spread`): the client waits at least that
/// long before its next attempt, on WebSocket (the reconnect frame before
/// close 1012) and on SSE (`event: reconnect`).
#[tokio::test]
async fn waits_the_retry_the_gateway_gives_on_shutdown() {
    for transport in ["websocket", "sse"] {
        let mut gw = gateway_with_realtime("  reconnect_spread: 8s", "").await;
        let b = Browser::start().await;
        b.open_page(&gw, &format!("channels=public.bye&transports={transport}"))
            .await;
        b.until_transport(transport, 15).await;
        gw.stop().await;
        b.until(10, "the reconnect hint", "return window.hints.length >= 1")
            .await;
        b.until(15, "the next attempt", "return window.attempts.length >= 2")
            .await;
        let seen = b
            .js("return [window.hints[0].kind, window.hints[0].retry, window.attempts[1].at - window.hints[0].at]")
            .await;
        assert_eq!(seen[0], transport);
        let retry = seen[1].as_f64().expect("a retry in ms");
        let waited = seen[2].as_f64().unwrap();
        assert!(
            waited >= retry,
            "{transport}: came back after {waited} ms, told {retry} ms"
        );
        b.finish().await;
    }
}
