//! One test per rejection of `upstreams:`, `routes:` and the keys that name
//! an upstream: each names the file, the line and the key.

use super::parse_str;
use super::rejections::rejects;

const UPSTREAMS: &str = "upstreams:\n  api: { url: http://10.0.0.7:8080 }\n";

#[test]
fn a_route_to_an_unknown_upstream() {
    let text = format!("{UPSTREAMS}routes:\n  - {{ path: /v2/, upstream: apii }}\n");
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
        "{UPSTREAMS}routes:\n  - {{ host: api.example.com, path: /v2/, upstream: api }}\n  - {{ host: API.example.com, path: /v2/, upstream: default }}\n"
    );
    rejects(&text, 5, "routes[1]", "same host and path as routes[0]");
}

#[test]
fn a_route_with_neither_host_nor_path() {
    let text = format!("{UPSTREAMS}routes:\n  - upstream: api\n");
    rejects(&text, 4, "routes[0]", "needs a `host` or a `path`");
}

#[test]
fn a_route_path_not_starting_with_a_slash() {
    let text = format!("{UPSTREAMS}routes:\n  - upstream: api\n    path: v2/\n");
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
        let text = format!("{UPSTREAMS}routes:\n  - upstream: api\n    host: {host}\n");
        rejects(&text, 5, "routes[0].host", why);
    }
}

#[test]
fn an_upstream_named_default() {
    let text = "upstreams:\n  api: { url: http://10.0.0.7:8080 }\n  default: { url: http://10.0.0.8:8080 }\n";
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
        "upstreams:\n  api:\n    url: ftp://10.0.0.7\n",
        3,
        "upstreams.api.url",
        "scheme `ftp` is not supported",
    );
    rejects(
        "upstreams:\n  api:\n    url: http://10.0.0.7\n    timeuot: 1s\n",
        4,
        "upstreams.api.timeuot",
        "unknown field `timeuot`",
    );
}

#[test]
fn strip_prefix_without_a_path() {
    let text = format!(
        "{UPSTREAMS}routes:\n  - {{ host: api.example.com, upstream: api, strip_prefix: true }}\n"
    );
    rejects(&text, 4, "routes[0].strip_prefix", "needs a `path`");
}

#[test]
fn client_messages_to_an_unknown_upstream() {
    let text = format!("{UPSTREAMS}client_messages:\n  forward_to: /inbound\n  upstream: nope\n");
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
        "{UPSTREAMS}taps:\n  - match: {{ path: /orders, upstream: nope }}\n    channel: orders.all\n"
    );
    rejects(&text, 4, "taps[0].match.upstream", "names no upstream");
}

#[test]
fn routes_and_upstreams_that_load() {
    let text = format!(
        "{UPSTREAMS}routes:\n  - {{ host: api.example.com, path: /v2/, upstream: api }}\n  - {{ host: \"*.example.com\", upstream: api }}\n  - {{ path: /assets/, upstream: default, strip_prefix: \"true\" }}\nclient_messages: {{ forward_to: /in, upstream: api }}\n"
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
    let text = "backend:\n  url: http://127.0.0.1:8080\n  health: { path: healthz }\n";
    rejects(
        text,
        3,
        "backend.health.path",
        "must be a path starting with '/'",
    );
    let text =
        "upstreams:\n  api:\n    url: http://127.0.0.1:8080\n    health: { path: /h, fails: 0 }\n";
    rejects(text, 4, "upstreams.api.health.fails", "at least 1");
    let text = "backend:\n  url: http://127.0.0.1:8080\n  health: { path: /h, interval: 0s }\n";
    rejects(text, 3, "backend.health.interval", "greater than 0");
    let text = "backend:\n  url: http://127.0.0.1:8080\n  health: { interval: 5s }\n";
    rejects(text, 3, "backend.health", "missing field `path`");
}
