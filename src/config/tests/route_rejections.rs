//! One test per rejection of `upstreams:`, `routes:` and the keys that name
//! an upstream: each names the file, the line and the key.

use super::parse_str;
use super::rejections::rejects;

const UPSTREAMS: &str = r#"upstreams:
  api: { url: http://10.0.0.7:8080 }
"#;

#[test]
fn a_route_to_an_unknown_upstream() {
    let text = format!(
        r#"{UPSTREAMS}routes:
  - {{ path: /v2/, upstream: apii }}
"#
    );
    rejects(
        &text,
        4,
        "routes[0].upstream",
        "names no upstream: \"apii\" (defined: api, default)",
    );
}

#[test]
fn a_duplicate_route() {
    let text = format!(
        r#"{UPSTREAMS}routes:
  - {{ host: api.example.com, path: /v2/, upstream: api }}
  - {{ host: API.example.com, path: /v2/, upstream: default }}
"#
    );
    rejects(&text, 5, "routes[1]", "same host and path as routes[0]");
}

#[test]
fn a_route_with_neither_host_nor_path() {
    let text = format!(
        r#"{UPSTREAMS}routes:
  - upstream: api
"#
    );
    rejects(&text, 4, "routes[0]", "needs a `host` or a `path`");
}

#[test]
fn a_route_path_not_starting_with_a_slash() {
    let text = format!(
        r#"{UPSTREAMS}routes:
  - upstream: api
    path: v2/
"#
    );
    rejects(&text, 5, "routes[0].path", "must start with '/'");
}

#[test]
fn malformed_host_patterns() {
    for (host, why) in [
        ("api.*.example.com", "`*.` only at the front"),
        ("\"api example.com\"", "letters, digits"),
        ("https://api.example.com", "no scheme"),
        ("api.example.com:8443", "no port"),
    ] {
        let text = format!(
            r#"{UPSTREAMS}routes:
  - upstream: api
    host: {host}
"#
        );
        rejects(&text, 5, "routes[0].host", why);
    }
}

#[test]
fn an_upstream_named_default() {
    let text = r#"upstreams:
  api: { url: http://10.0.0.7:8080 }
  default: { url: http://10.0.0.8:8080 }
"#;
    rejects(
        text,
        3,
        "upstreams.default",
        "`default` is the name of `backend:`",
    );
}

#[test]
fn an_upstream_takes_the_keys_of_backend() {
    rejects(
        r#"upstreams:
  api:
    url: ftp://10.0.0.7
"#,
        3,
        "upstreams.api.url",
        "scheme `ftp` is not supported",
    );
    rejects(
        r#"upstreams:
  api:
    url: http://10.0.0.7
    timeuot: 1s
"#,
        4,
        "upstreams.api.timeuot",
        "unknown field `timeuot`",
    );
}

#[test]
fn strip_prefix_without_a_path() {
    let text = format!(
        r#"{UPSTREAMS}routes:
  - {{ host: api.example.com, upstream: api, strip_prefix: true }}
"#
    );
    rejects(&text, 4, "routes[0].strip_prefix", "needs a `path`");
}

#[test]
fn client_messages_to_an_unknown_upstream() {
    let text = format!(
        r#"{UPSTREAMS}client_messages:
  forward_to: /inbound
  upstream: nope
"#
    );
    rejects(
        &text,
        5,
        "client_messages.upstream",
        "names no upstream: \"nope\"",
    );
}

#[test]
fn a_tap_on_an_unknown_upstream() {
    let text = format!(
        r#"{UPSTREAMS}taps:
  - match: {{ path: /orders, upstream: nope }}
    channel: orders.all
"#
    );
    rejects(&text, 4, "taps[0].match.upstream", "names no upstream");
}

#[test]
fn routes_and_upstreams_that_load() {
    let text = format!(
        r#"{UPSTREAMS}routes:
  - {{ host: api.example.com, path: /v2/, upstream: api }}
  - {{ host: "*.example.com", upstream: api }}
  - {{ path: /assets/, upstream: default, strip_prefix: "true" }}
client_messages: {{ forward_to: /in, upstream: api }}
"#
    );
    let c = parse_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes.len(), 3);
    assert!(c.routes[2].strip_prefix);
    assert_eq!(c.upstreams["api"].url.as_str(), "http://10.0.0.7:8080/");
    let summary = c.summary();
    assert!(
        summary.contains("upstream api: http://10.0.0.7:8080/"),
        "{summary}"
    );
    assert!(
        summary.contains("route: host * path /assets/ -> default (prefix stripped)"),
        "{summary}"
    );
}

#[test]
fn health_checks_need_a_path_and_counts() {
    let text = r#"backend:
  url: http://127.0.0.1:8080
  health: { path: healthz }
"#;
    rejects(
        text,
        3,
        "backend.health.path",
        "must be a path starting with '/'",
    );
    let text = r#"upstreams:
  api:
    url: http://127.0.0.1:8080
    health: { path: /h, fails: 0 }
"#;
    rejects(text, 4, "upstreams.api.health.fails", "at least 1");
    let text = r#"backend:
  url: http://127.0.0.1:8080
  health: { path: /h, interval: 0s }
"#;
    rejects(text, 3, "backend.health.interval", "greater than 0");
    let text = r#"backend:
  url: http://127.0.0.1:8080
  health: { interval: 5s }
"#;
    rejects(text, 3, "backend.health", "missing field `path`");
}
