//! `pusher:`: what a whole section means, and one test per refusal, each
//! naming file, line and key.

use std::time::Duration;

use super::parse_str;
use super::rejections::rejects;

#[test]
fn a_whole_section_with_its_defaults() {
    let c = parse_str(
        r#"
pusher:
  apps:
    - id: 1001
      key: app-key
      secret: s3cret
      client_events: true
      webhook: { url: /pusher/webhook }
    - id: "1002"
      key: other
      secret: s
      channel_prefix: "b:"
      max_message: 20KiB
      max_connections: 500
"#,
    )
    .unwrap();
    let p = c.pusher.unwrap();
    assert_eq!(p.path, "/app");
    assert_eq!(p.activity_timeout, Duration::from_secs(120));
    let (a, b) = (&p.apps[0], &p.apps[1]);
    assert_eq!((a.id.as_str(), a.key.as_str()), ("1001", "app-key"));
    assert!(a.client_events && !b.client_events);
    assert_eq!(a.max_message, 10 * 1024, "Pusher's own limit by default");
    assert_eq!(a.client_event_rate, 10);
    let hook = a.webhook.as_ref().unwrap();
    assert_eq!(hook.url, "/pusher/webhook");
    assert_eq!(
        hook.events.len(),
        5,
        "every event but subscription_count and cache_miss"
    );
    assert_eq!(b.channel_prefix, "b:");
    assert_eq!((b.max_message, b.max_connections), (20 * 1024, Some(500)));
}

#[test]
fn no_section_no_pusher() {
    assert_eq!(parse_str("backend: {}\n").unwrap().pusher, None);
}

#[test]
fn a_duplicate_key() {
    rejects(
        r#"pusher:
  apps:
    - { id: 1, key: k, secret: s }
    - { id: 2, key: k, secret: s, channel_prefix: "b:" }
"#,
        4,
        "pusher.apps[1].key",
        "duplicate app key \"k\" (also pusher.apps[0])",
    );
}

#[test]
fn a_duplicate_id() {
    rejects(
        r#"pusher:
  apps:
    - { id: 1, key: a, secret: s }
    - { id: "1", key: b, secret: s, channel_prefix: "b:" }
"#,
        4,
        "pusher.apps[1].id",
        "duplicate app id",
    );
}

#[test]
fn a_key_that_is_no_path_segment() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: "a/b"
      secret: s
"#,
        4,
        "pusher.apps[0].key",
        "letters, digits",
    );
}

#[test]
fn an_empty_secret() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: ""
"#,
        5,
        "pusher.apps[0].secret",
        "invalid value (not shown)",
    );
}

#[test]
fn a_missing_secret() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
"#,
        3,
        "pusher.apps[0]",
        "secret",
    );
}

#[test]
fn an_unknown_webhook_event() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      webhook:
        url: /hook
        events: [channel_occupied, channel_exploded]
"#,
        8,
        "pusher.apps[0].webhook.events[1]",
        "\"channel_exploded\" is not one of",
    );
}

#[test]
fn a_webhook_url_that_is_no_path() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      webhook: { url: "http://elsewhere/hook" }
"#,
        6,
        "pusher.apps[0].webhook.url",
        "must be a path on the application",
    );
}

#[test]
fn a_webhook_to_an_unknown_upstream() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      webhook: { url: /hook, upstream: billing }
"#,
        6,
        "pusher.apps[0].webhook.upstream",
        "no upstream named \"billing\"",
    );
}

#[test]
fn a_path_over_the_realtime_endpoints() {
    rejects(
        r#"realtime:
  path: /realtime
pusher:
  path: /realtime/app
  apps: []
"#,
        4,
        "pusher.path",
        "overlaps realtime.path",
    );
}

#[test]
fn a_zero_message_limit() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      max_message: 0
"#,
        6,
        "pusher.apps[0].max_message",
        "at least 1 byte",
    );
}

#[test]
fn an_unknown_app_key() {
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      cluster: eu
"#,
        6,
        "pusher.apps[0].cluster",
        "unknown field",
    );
}

#[test]
fn the_summary_names_apps_but_never_their_secrets() {
    let c = parse_str(
        r#"
pusher:
  apps:
    - { id: 1001, key: app-key, secret: topsecret-42, webhook: { url: /hook } }
"#,
    )
    .unwrap();
    let s = c.summary();
    assert!(s.contains("pusher: /app/{key}, 1 app(s)"), "{s}");
    assert!(s.contains("app 1001 key app-key"), "{s}");
    assert!(s.contains("webhook /hook"), "{s}");
    assert!(!s.contains("topsecret"), "{s}");
}

#[test]
fn subscription_counts_and_user_authentication_are_per_app_keys() {
    let c = parse_str(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      subscription_count: true
      user_authentication_timeout: 30s
      webhook: { url: /hook, events: [subscription_count, cache_miss] }
"#,
    )
    .unwrap();
    let app = &c.pusher.as_ref().unwrap().apps[0];
    assert!(app.subscription_count);
    assert_eq!(
        app.user_authentication_timeout,
        Some(Duration::from_secs(30))
    );
    rejects(
        r#"pusher:
  apps:
    - id: 1
      key: k
      secret: s
      user_authentication_timeout: 0s
"#,
        6,
        "pusher.apps[0].user_authentication_timeout",
        "must be greater than 0",
    );
}

#[test]
fn each_app_has_a_namespace_of_its_own() {
    rejects(
        r#"pusher:
  apps:
    - { id: 1, key: a, secret: s }
    - { id: 2, key: b, secret: s }
"#,
        4,
        "pusher.apps[1].channel_prefix",
        "\"\" is also the prefix of pusher.apps[0]",
    );
    for bad in ["b", "b:c:", ":", "a b:"] {
        rejects(
            &format!(
                "pusher:\n  apps:\n    - {{ id: 1, key: a, secret: s, channel_prefix: \"{bad}\" }}\n"
            ),
            3,
            "pusher.apps[0].channel_prefix",
            "ending in one ':'",
        );
    }
    // The gateway's user channels: another app's public `42` would be this
    // app's user `42`.
    rejects(
        "pusher:\n  apps:\n    - { id: 1, key: a, secret: s, channel_prefix: \"pusher-user:\" }\n",
        3,
        "pusher.apps[0].channel_prefix",
        "kept for the gateway's user channels",
    );
    let long = format!("{}:", "p".repeat(36));
    rejects(
        &format!(
            "pusher:\n  apps:\n    - {{ id: 1, key: a, secret: s, channel_prefix: \"{long}\" }}\n"
        ),
        3,
        "pusher.apps[0].channel_prefix",
        "must be 1-36",
    );
}

#[test]
fn the_http_fallback_and_api_rate_keys() {
    let c = parse_str(
        r#"
pusher:
  apps:
    - { id: 1, key: k, secret: s, api_rate: { rate: 100/s, burst: 200 } }
    - { id: 2, key: l, secret: s, channel_prefix: "b:" }
"#,
    )
    .unwrap();
    let p = c.pusher.unwrap();
    assert_eq!(p.http_path, "/pusher", "pusher-js's default httpPath");
    assert_eq!(p.http_session_timeout, Duration::from_secs(10));
    let rate = p.apps[0].api_rate.unwrap();
    assert_eq!((rate.rate.count.get(), rate.burst.get()), (100, 200));
    assert_eq!(p.apps[1].api_rate, None, "the shared limits.publish");
    let c = parse_str("pusher:\n  http_path: /ws-fallback\n  http_session_timeout: 30s\n").unwrap();
    assert_eq!(c.pusher.unwrap().http_path, "/ws-fallback");
}

#[test]
fn an_http_path_over_the_realtime_endpoints() {
    rejects(
        "realtime:\n  path: /realtime\npusher:\n  http_path: /realtime/pusher\n",
        4,
        "pusher.http_path",
        "overlaps realtime.path",
    );
    rejects(
        "pusher:\n  http_path: pusher\n",
        2,
        "pusher.http_path",
        "must start with '/'",
    );
    rejects(
        "pusher:\n  http_session_timeout: 0s\n",
        2,
        "pusher.http_session_timeout",
        "must be greater than 0",
    );
}
