//! How long a Mercure subscriber's stream lives and what a publisher may
//! spend: a reload that changes the subscriber key (or turns `anonymous`
//! off) ends the streams it no longer allows, `mercure.max_stream_life`
//! ends a stream whose token has no `exp` (a reload that shortens it
//! applies to open streams), and publishing spends the
//! gateway's rate limits.

use std::time::Duration;

use serde_json::json;

use crate::common::{SseReader, TestGateway};
use crate::mercure::{
    PUB_SECRET, SUB_SECRET, legacy_publisher, publish, publish_with, q, sign, subscribe,
};

/// Whether the stream ends (the server closes it) within `within`.
async fn ends_within(s: &mut SseReader, within: Duration) -> bool {
    tokio::time::timeout(within, async { while s.next_event().await.is_some() {} })
        .await
        .is_ok()
}

const NEW_SECRET: &str = "a-new-subscriber-secret-0123456789";

#[tokio::test]
async fn a_reload_ends_the_streams_it_no_longer_allows() {
    let gw = TestGateway::builder()
        .tag("mercure-reload-subs")
        .realtime("  heartbeat: 1s")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n  anonymous: true\n"
        ))
        .start()
        .await;
    let sel = q(&[("match", "urn:a")]);
    let old = sign(json!({"mercure": {"subscribe": ["*"]}}), SUB_SECRET);
    let mut signed_old = subscribe(&gw, &sel, Some(&old), None).await;
    let mut anonymous = subscribe(&gw, &sel, None, None).await;
    // Both live before the reload.
    let id = publish(&gw, &[("topic", "urn:a"), ("data", "before")]).await;
    for s in [&mut signed_old, &mut anonymous] {
        assert_eq!(s.expect().await.id.as_ref(), Some(&id));
    }

    gw.reload_with(SUB_SECRET, NEW_SECRET);
    assert!(
        ends_within(&mut signed_old, Duration::from_secs(10)).await,
        "a token the new key does not verify ends its stream"
    );
    let new = sign(
        json!({"mercure": {"subscribe": ["*"]}, "sub": "u1"}),
        NEW_SECRET,
    );
    let mut signed_new = subscribe(&gw, &sel, Some(&new), None).await;
    let id = publish(&gw, &[("topic", "urn:a"), ("data", "after")]).await;
    for s in [&mut anonymous, &mut signed_new] {
        let ev = s.expect().await;
        assert_eq!((ev.id.as_ref(), ev.data.as_str()), (Some(&id), "after"));
    }

    gw.reload_with("anonymous: true", "anonymous: false");
    assert!(
        ends_within(&mut anonymous, Duration::from_secs(10)).await,
        "anonymous streams end when anonymous is turned off"
    );
    let id = publish(&gw, &[("topic", "urn:a"), ("data", "still")]).await;
    assert_eq!(
        signed_new.expect().await.id.as_ref(),
        Some(&id),
        "a token that still verifies keeps its stream"
    );
}

#[tokio::test]
async fn a_stream_ends_after_max_stream_life_without_exp() {
    let gw = TestGateway::builder()
        .tag("mercure-life")
        .realtime("  heartbeat: 1s")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n  anonymous: true\n  max_stream_life: 3s\n"
        ))
        .start()
        .await;
    let sel = q(&[("match", "urn:a")]);
    let forever = sign(json!({"mercure": {"subscribe": ["*"]}}), SUB_SECRET);
    let started = std::time::Instant::now();
    let mut signed = subscribe(&gw, &sel, Some(&forever), None).await;
    let mut anonymous = subscribe(&gw, &sel, None, None).await;
    let id = publish(&gw, &[("topic", "urn:a"), ("data", "x")]).await;
    for s in [&mut signed, &mut anonymous] {
        assert_eq!(s.expect().await.id.as_ref(), Some(&id), "open at first");
        assert!(
            ends_within(s, Duration::from_secs(15)).await,
            "the stream ended at max_stream_life"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before its time: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_reload_that_shortens_max_stream_life_ends_older_streams() {
    let gw = TestGateway::builder()
        .tag("mercure-life-reload")
        .realtime("  heartbeat: 1s")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  anonymous: true\n  max_stream_life: 1h\n"
        ))
        .start()
        .await;
    let sel = q(&[("match", "urn:a")]);
    let mut s = subscribe(&gw, &sel, None, None).await;
    let id = publish(&gw, &[("topic", "urn:a"), ("data", "x")]).await;
    assert_eq!(s.expect().await.id.as_ref(), Some(&id), "open at first");
    // The stream's end was set for an hour from its opening; the reload
    // moves it to a second after, which has passed.
    gw.reload_with("max_stream_life: 1h", "max_stream_life: 1s");
    assert!(
        ends_within(&mut s, Duration::from_secs(10)).await,
        "the stream ended at the reloaded max_stream_life"
    );
}

#[tokio::test]
async fn publishing_spends_the_publish_quota_and_a_browsers_messages() {
    let gw = TestGateway::builder()
        .tag("mercure-publish-rate")
        .limits("  publish: { rate: 1/m, burst: 3 }\n  per_client: { messages: { rate: 1/m, burst: 2 } }")
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  anonymous: true\n  publish_origins: [https://app.example.com]\n"
        ))
        .start()
        .await;
    let form = [("topic", "urn:a"), ("data", "x")];
    let backend = sign(
        json!({"mercure": {"publish": ["*"]}, "sub": "backend"}),
        PUB_SECRET,
    );
    for n in 0..3 {
        let r = publish_with(&gw, &backend, &form).await;
        assert_eq!(r.status(), 200, "publish {n} within the burst");
    }
    let r = publish_with(&gw, &backend, &form).await;
    assert_eq!(r.status(), 429, "over limits.publish");
    assert!(r.headers().contains_key("retry-after"));
    // Another publisher has its own share; a token without `sub` is
    // counted by its address.
    let other = sign(
        json!({"mercure": {"publish": ["*"]}, "sub": "other"}),
        PUB_SECRET,
    );
    assert_eq!(publish_with(&gw, &other, &form).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(
            publish_with(&gw, &legacy_publisher(), &form).await.status(),
            200
        );
    }
    assert_eq!(
        publish_with(&gw, &legacy_publisher(), &form).await.status(),
        429
    );

    // A browser's cookie publish is a client's message as well.
    let browser = sign(
        json!({"mercure": {"publish": ["*"]}, "sub": "browser"}),
        PUB_SECRET,
    );
    let from_page = || {
        gw.http1
            .post(gw.url("/.well-known/mercure"))
            .header("cookie", format!("mercureAuthorization={browser}"))
            .header("origin", "https://app.example.com")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(q(&form))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(from_page().await.unwrap().status(), 200);
    }
    assert_eq!(
        from_page().await.unwrap().status(),
        429,
        "over per_client.messages before the publish quota (3)"
    );
}
