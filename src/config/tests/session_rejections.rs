//! `auth.session` and the channel rules' `check`s refused at load, each with
//! file, line and key.

use super::parse_str;
use super::rejections::rejects;

fn session(lines: &str) -> String {
    format!(
        r#"auth:
  session:
{lines}"#
    )
}

#[test]
fn a_check_that_is_not_method_and_path() {
    let text = session(
        r#"    check: /api/me
    subject: "{body.id}"
"#,
    );
    rejects(&text, 3, "auth.session.check", "is not `METHOD /path`");
    let text = session(
        r#"    check: GET api/me
    subject: "{body.id}"
"#,
    );
    rejects(
        &text,
        3,
        "auth.session.check",
        "must be a path starting with '/'",
    );
    let text = session(
        r#"    check: "G(T /api/me"
    subject: "{body.id}"
"#,
    );
    rejects(&text, 3, "auth.session.check", "is not an HTTP method");
}

#[test]
fn a_template_naming_an_unknown_source() {
    let text = session(
        r#"    check: GET /api/me
    subject: "{cookie.sessionid}"
"#,
    );
    rejects(
        &text,
        4,
        "auth.session.subject",
        "unknown placeholder `{cookie.sessionid}`; expected body, body.KEY… or header.NAME",
    );
    let text = session(
        r#"    check: GET /api/me
    subject: "{body.id}"
    channels: "{query.c}"
"#,
    );
    rejects(&text, 5, "auth.session.channels", "unknown placeholder");
}

#[test]
fn a_login_check_takes_no_placeholders() {
    let text = session(
        r#"    check: GET /api/users/{id}
    subject: "{body.id}"
"#,
    );
    rejects(&text, 3, "auth.session.check", "takes no placeholders");
}

#[test]
fn an_unknown_upstream_and_zero_bounds() {
    let text = session(
        r#"    check: GET /api/me
    subject: "{body.id}"
    upstream: auth
"#,
    );
    rejects(
        &text,
        5,
        "auth.session.upstream",
        "names no upstream: \"auth\"",
    );
    let text = session(
        r#"    check: GET /api/me
    subject: "{body.id}"
    concurrency: 0
"#,
    );
    rejects(&text, 5, "auth.session.concurrency", "at least 1");
    let text = session(
        r#"    check: GET /api/me
    subject: "{body.id}"
    recheck: 0s
"#,
    );
    rejects(&text, 5, "auth.session.recheck", "greater than 0");
}

#[test]
fn a_resource_check_placeholder_the_pattern_lacks() {
    let text = r#"channels:
  - pattern: "orders.{id}"
    subscribe: { check: "GET /api/orders/{order}" }
"#;
    rejects(
        text,
        3,
        "channels[0].subscribe.check",
        "`{order}` is not a placeholder of the pattern \"orders.{id}\"",
    );
    let text = r#"channels:
  - pattern: "bids.{id}"
    subscribe: anyone
    publish: { check: "POST bids/{id}" }
"#;
    rejects(
        text,
        4,
        "channels[0].publish.check",
        "must be a path starting with '/'",
    );
    let text = r#"channels:
  - pattern: "o.{id}"
    subscribe: { check: "GET /o/{id" }
"#;
    rejects(text, 3, "channels[0].subscribe.check", "without its `}`");
}

#[test]
fn a_check_rule_with_unknown_keys() {
    let text = r#"channels:
  - pattern: "o.{id}"
    subscribe: { check: "GET /o/{id}", cache: 5s }
"#;
    rejects(
        text,
        3,
        "channels[0].subscribe.cache",
        "unknown field `cache`, expected `check`",
    );
}

#[test]
fn a_valid_session_loads_with_its_defaults() {
    let text = r#"auth:
  session:
    check: get /api/me
    subject: "{header.X-User-Id}"
channels:
  - { pattern: "orders.{id}", subscribe: { check: "GET /api/orders/{id}?full=1" } }
"#;
    let c = parse_str(text).unwrap();
    let s = c.auth.session.unwrap();
    assert_eq!(s.cache, std::time::Duration::from_secs(30));
    assert_eq!(s.recheck, std::time::Duration::from_secs(300));
    assert_eq!(s.concurrency, 64);
    assert_eq!(
        crate::config::split_check(&s.check).unwrap(),
        ("GET".to_string(), "/api/me".to_string())
    );
    assert!(c.channels[0].subscribe.check().is_some());
}

#[test]
fn a_share_per_address_that_is_zero_or_over_the_whole() {
    let base = r#"    check: GET /api/me
    subject: "{body.id}"
    concurrency: 4
"#;
    let text = session(&format!("{base}    per_address: {{ concurrency: 0 }}\n"));
    rejects(
        &text,
        6,
        "auth.session.per_address.concurrency",
        "at least 1",
    );
    let text = session(&format!("{base}    per_address: {{ concurrency: 5 }}\n"));
    rejects(
        &text,
        6,
        "auth.session.per_address.concurrency",
        "at most auth.session.concurrency (4)",
    );
    let text = session(&format!("{base}    per_address: {{ unknown: 5 }}\n"));
    rejects(
        &text,
        6,
        "auth.session.per_address.unknown",
        "invalid type: integer `5`, expected a rate limit like \"20/s\"",
    );
    let text = session(&format!("{base}    per_address: {{ network: 0 }}\n"));
    rejects(&text, 6, "auth.session.per_address.network", "at least 1");
    let text = session(&format!("{base}    per_address: {{ network: 5 }}\n"));
    rejects(
        &text,
        6,
        "auth.session.per_address.network",
        "at most auth.session.concurrency (4)",
    );
}

#[test]
fn a_share_per_address_by_default_and_as_written() {
    let c = parse_str(&session(
        r#"    check: GET /api/me
    subject: "{body.id}"
"#,
    ))
    .unwrap();
    let s = c.auth.session.unwrap();
    assert_eq!(s.per_address.share_of(s.concurrency), 8);
    assert_eq!(s.per_address.share_of(3), 1);
    assert_eq!(s.per_address.unknown.rate.count.get(), 20);
    assert_eq!(s.per_address.unknown.burst.get(), 100);
    assert_eq!(s.per_address.queue, 256);
    assert_eq!(s.per_address.network_share_of(s.concurrency), 16);
    assert_eq!(s.per_address.network_share_of(3), 1);
    let text = session(
        r#"    check: GET /api/me
    subject: "{body.id}"
    per_address:
      concurrency: 2
      network: 5
      queue: 7
      unknown: { rate: 1/m, burst: 3 }
"#,
    );
    let s = parse_str(&text).unwrap().auth.session.unwrap();
    assert_eq!(s.per_address.share_of(s.concurrency), 2);
    assert_eq!(s.per_address.network_share_of(s.concurrency), 5);
    assert_eq!(s.per_address.queue, 7);
    assert_eq!(
        s.per_address.unknown.rate.per,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(s.per_address.unknown.burst.get(), 3);
}
