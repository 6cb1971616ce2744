//! Subscription counts across two gateways on one `redis-server` and cache
//! channels, with pusher-js under Node (`tests/pusher/counts.js`) and the
//! Node server library, and the `subscription_count` and `cache_miss`
//! webhooks the application gets, each checked by the library's own
//! validator.

use serde_json::{Value, json};
use tokio::process::Command;

use super::standin::{APP_ID, Script};
use super::webhooks::webhook_events;
use super::*;
use crate::common::redis::RedisServer;

#[tokio::test]
async fn counts_reach_subscribers_and_cache_channels_answer_first() {
    let redis = RedisServer::start().await;
    let mut app = StandIn::start(0).await;
    let prefix = format!("counts{}", std::process::id());
    let keys = ", subscription_count: true, webhook: { url: /pusher/webhook, events: [subscription_count, cache_miss] }";
    let gw = gateway(&app, keys, &redis.broker_yaml(&prefix)).await;
    let dir = temp_dir("pusher");
    for file in ["gw.crt", "gw.key"] {
        std::fs::copy(gw.dir.join(file), dir.join(file)).unwrap();
    }
    let b = gateway_in(dir, &app, keys, &redis.broker_yaml(&prefix)).await;
    let settings = json!({
        "host": "localhost", "port": gw.public.port(), "port_b": b.public.port(),
        "admin": gw.admin.to_string(),
        "appId": APP_ID, "key": APP_KEY, "secret": APP_SECRET,
    });
    let mut cmd = Command::new("node");
    cmd.arg("counts.js")
        .arg(settings.to_string())
        .env("NODE_EXTRA_CA_CERTS", gw.dir.join("gw.crt"));
    let done = Script::spawn(cmd).next_of("done").await;

    // Told on subscribing, then as the count changes on either gateway.
    let a: Vec<u64> = serde_json::from_value(done["a"].clone()).unwrap();
    assert_eq!((a.first(), a.last()), (Some(&1), Some(&1)), "{done}");
    assert!(a.contains(&2), "the subscriber on B counts on A: {done}");
    assert_eq!(
        done["b"].as_array().unwrap().last(),
        Some(&json!(2)),
        "{done}"
    );
    // The last event first; an empty cache says so to each subscriber.
    assert_eq!(done["prices"][0], json!(["price", {"v": 2}]), "{done}");
    assert_eq!(done["prices"].as_array().unwrap().len(), 1, "{done}");
    for tab in ["empty3", "empty4"] {
        assert_eq!(done[tab], json!([["pusher:cache_miss", {}]]), "{done}");
    }

    // The webhooks (from both gateways): counts as they settle, one
    // cache_miss for two misses on one gateway.
    // Wait for the miss and for news-count to have settled back to 1 after
    // the subscriber on B: another channel's count of 1 (cache-prices) can
    // arrive first, and is no sign that news-count has settled.
    let events = webhook_events(&mut app, |events: &[Value]| {
        let news = |e: &&Value| e["name"] == "subscription_count" && e["channel"] == "news-count";
        let two = events
            .iter()
            .position(|e| news(&e) && e["subscription_count"] == 2);
        events.iter().any(|e| e["name"] == "cache_miss")
            && two.is_some_and(|at| {
                events[at..]
                    .iter()
                    .any(|e| news(&e) && e["subscription_count"] == 1)
            })
    })
    .await;
    let misses: Vec<_> = events
        .iter()
        .filter(|e| e["name"] == "cache_miss")
        .collect();
    assert_eq!(
        misses,
        [&json!({"name": "cache_miss", "channel": "cache-empty"})]
    );
    let news: Vec<_> = events
        .iter()
        .filter(|e| e["name"] == "subscription_count" && e["channel"] == "news-count")
        .map(|e| e["subscription_count"].as_u64().unwrap())
        .collect();
    assert_eq!(news.last(), Some(&1), "{events:?}");
    assert!(news.contains(&2), "{events:?}");
}
