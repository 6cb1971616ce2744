//! One test per rejection: each asserts the rendered message names the file, the
//! right line and the dotted key path.

use super::parse_str;

/// Parses `text`, expects exactly one error, and checks it starts with
/// `gateway.yaml:{line}: {key}:` and mentions `fragment`.
#[track_caller]
pub(super) fn rejects(text: &str, line: usize, key: &str, fragment: &str) {
    let errors = match parse_str(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    let rendered = errors.to_string();
    assert_eq!(errors.0.len(), 1, "expected one error, got:\n{rendered}");
    let prefix = format!("gateway.yaml:{line}: {key}: ");
    assert!(
        rendered.starts_with(&prefix),
        "want prefix {prefix:?}, got:\n{rendered}"
    );
    assert!(
        rendered.contains(fragment),
        "want {fragment:?} in:\n{rendered}"
    );
}

#[test]
fn unknown_field() {
    let text = r#"listen:
  public: 0.0.0.0:8443
realtime:
  path: /rt

  histroy: { size: 5 }
"#;
    rejects(
        text,
        6,
        "realtime.histroy",
        "unknown field `histroy`, expected one of `path`",
    );
}

#[test]
fn unknown_field_in_flow_mapping_inside_a_list() {
    let text = r#"channels:
  - { pattern: a, subscribe: anyone }
  - { pattern: b, subscribe: anyone, presense: true }
"#;
    rejects(text, 3, "channels[1].presense", "unknown field `presense`");
}

#[test]
fn unknown_top_level_section() {
    rejects(
        r#"listen: {}
listen_extra: 1
"#,
        2,
        "listen_extra",
        "unknown field `listen_extra`",
    );
}

#[test]
fn missing_required_key() {
    let text = r#"channels:
  - { pattern: a, subscribe: anyone }
  - pattern: b
    presence: true
"#;
    rejects(text, 3, "channels[1]", "missing field `subscribe`");
}

#[test]
fn unknown_enum_variant() {
    let text = r#"channels:
  - pattern: a
    subscribe: everyone
"#;
    rejects(
        text,
        3,
        "channels[0].subscribe",
        "unknown variant `everyone`, expected one of `anyone`, `owner`, `token`",
    );
}

#[test]
fn wrong_type() {
    rejects(
        r#"realtime:
  client_queue: many
"#,
        2,
        "realtime.client_queue",
        "non-negative integer",
    );
}

#[test]
fn bad_socket_address() {
    rejects(
        r#"listen:
  admin: localhost
"#,
        2,
        "listen.admin",
        "invalid socket address",
    );
}

#[test]
fn duration_without_unit() {
    rejects(
        r#"realtime:
  heartbeat: 15
"#,
        2,
        "realtime.heartbeat",
        "has no unit",
    );
}

#[test]
fn duration_with_unknown_unit() {
    rejects(
        r#"backend:
  timeout: 3 weeks
"#,
        2,
        "backend.timeout",
        "unknown unit",
    );
}

#[test]
fn bad_size() {
    rejects(
        r#"realtime:
  max_message: 64 parsecs
"#,
        2,
        "realtime.max_message",
        "invalid size",
    );
}

#[test]
fn message_bound_past_reason() {
    rejects(
        r#"realtime:
  max_message: 64GiB
"#,
        2,
        "realtime.max_message",
        "at most 16MiB",
    );
}

#[test]
fn bad_rate() {
    let text = r#"limits:
  per_ip:
    connects: { rate: 10 per second, burst: 5 }
"#;
    rejects(text, 3, "limits.per_ip.connects.rate", "invalid rate");
}

#[test]
fn zero_burst() {
    let text = r#"limits:
  publish:
    rate: 5/s
    burst: 0
"#;
    rejects(text, 4, "limits.publish.burst", "at least 1");
}

#[test]
fn per_ip_connections_zero() {
    let text = r#"limits:
  per_ip:
    connections: 0
"#;
    rejects(text, 3, "limits.per_ip.connections", "at least 1");
}

#[test]
fn yaml_syntax_error() {
    let errors = parse_str(
        r#"listen:
  public: [0.0.0.0
backend: {}
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(errors.starts_with("gateway.yaml:"), "{errors}");
    assert!(errors.contains("yaml syntax:"), "{errors}");
    assert!(!errors.contains(" at line "), "{errors}");
}

#[test]
fn backend_other_scheme() {
    rejects(
        r#"backend:
  url: ftp://app.internal
"#,
        2,
        "backend.url",
        "scheme `ftp`",
    );
}

#[test]
fn backend_url_unparsable() {
    rejects(
        r#"backend:
  url: not a url
"#,
        2,
        "backend.url",
        "invalid URL",
    );
}

#[test]
fn realtime_path_without_leading_slash() {
    rejects(
        r#"realtime:
  path: realtime
"#,
        2,
        "realtime.path",
        "must start with '/'",
    );
}

#[test]
fn realtime_path_root() {
    rejects(
        r#"realtime:
  heartbeat: 5s
  path: /
"#,
        3,
        "realtime.path",
        "root path",
    );
}

#[test]
fn realtime_path_trailing_slash_is_normalised() {
    let c = parse_str("realtime: { path: /live/ }\n").unwrap();
    assert_eq!(c.realtime.path, "/live");
}

#[test]
fn client_queue_zero() {
    rejects(
        r#"realtime:
  client_queue: 0
"#,
        2,
        "realtime.client_queue",
        "at least 1",
    );
}

#[test]
fn history_size_zero() {
    rejects(
        r#"realtime:
  history: { size: 0, ttl: 1m }
"#,
        2,
        "realtime.history.size",
        "at least 1",
    );
}

#[test]
fn channel_history_size_zero() {
    let text = r#"channels:
  - pattern: a
    subscribe: token
    history:
      size: 0
"#;
    rejects(text, 5, "channels[0].history.size", "at least 1");
}

#[test]
fn channel_pattern_empty() {
    rejects(
        r#"channels:
  - { pattern: "", subscribe: anyone }
"#,
        2,
        "channels[0].pattern",
        "must not be empty",
    );
}

#[test]
fn channel_pattern_invalid_character() {
    let text = r#"channels:
  - { pattern: ok, subscribe: anyone }
  - { pattern: "bad name/x", subscribe: anyone }
"#;
    rejects(text, 3, "channels[1].pattern", "contains ' '");
}

#[test]
fn channel_pattern_malformed_placeholder() {
    rejects(
        r#"channels:
  - { pattern: "user.{sub", subscribe: owner }
"#,
        2,
        "channels[0].pattern",
        "malformed placeholder",
    );
}

#[test]
fn owner_rule_without_sub_placeholder() {
    let text = r#"channels:
  - pattern: "user.{id}"
    subscribe: owner
"#;
    rejects(
        text,
        3,
        "channels[0].subscribe",
        "`owner` needs a `{sub}` placeholder",
    );
}

#[test]
fn allowed_patterns_pass() {
    let text = r#"channels:
  - { pattern: "a-b_c.d:e@f=g.*", subscribe: anyone }
  - { pattern: "u.{sub}.x", subscribe: owner }
"#;
    assert!(parse_str(text).is_ok());
}

#[test]
fn static_token_channel_pattern() {
    let text = r#"auth:
  static_tokens:
    - token: t
      subject: s
      channels: ["ok.*", "no way"]
"#;
    rejects(text, 5, "auth.static_tokens[0].channels[1]", "contains ' '");
}

#[test]
fn duplicate_webhook_names() {
    let text = r#"webhooks:
  - name: orders
    match: { path: /a }
    channel: c
  - name: orders
    match: { path: /b }
    channel: c
"#;
    rejects(
        text,
        5,
        "webhooks[1].name",
        "duplicate webhook name \"orders\" (also webhooks[0])",
    );
}

#[test]
fn webhook_path_without_slash() {
    let text = r#"webhooks:
  - name: orders
    match: { method: POST, path: hooks/orders }
    channel: c
"#;
    rejects(text, 3, "webhooks[0].match.path", "must start with '/'");
}

#[test]
fn webhook_bad_method() {
    let text = r#"webhooks:
  - name: orders
    match:
      method: "PO ST"
      path: /h
    channel: c
"#;
    rejects(text, 4, "webhooks[0].match.method", "not an HTTP method");
}

#[test]
fn tap_status_pattern() {
    let text = r#"taps:
  - match: { path: /api, status: 2x1 }
    channel: c
"#;
    rejects(text, 2, "taps[0].match.status", "not a status like");
    for ok in ["2xx", "20x", "201", "5XX"] {
        let text = format!(
            r#"taps:
  - match: {{ path: /api, status: {ok} }}
    channel: c
"#
        );
        assert!(parse_str(&text).is_ok(), "{ok}");
    }
    for bad in ["2", "600", "x01", "2xxx", "ok"] {
        let text = format!(
            r#"taps:
  - match: {{ path: /api, status: "{bad}" }}
    channel: c
"#
        );
        assert!(parse_str(&text).is_err(), "{bad}");
    }
}

#[test]
fn listen_public_equals_admin() {
    let text = r#"listen:
  public: 127.0.0.1:9000
  admin: 127.0.0.1:9000
"#;
    rejects(text, 3, "listen.admin", "must differ from listen.public");
    // Port 0 (tests) never clashes.
    assert!(parse_str("listen: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }\n").is_ok());
}

#[test]
fn sni_with_empty_hosts() {
    let text = r#"tls:
  cert: a.pem
  key: a.key
  sni:
    - { hosts: [], cert: b.pem, key: b.key }
"#;
    rejects(text, 5, "tls.sni[0].hosts", "at least one host");
}

#[test]
fn jwt_without_key() {
    let text = r#"auth:
  jwt:
    hs256_secret: "${EMPTY:-}"
    issuer: me
"#;
    rejects(text, 2, "auth.jwt", "needs a key");
}

#[test]
fn bad_origin() {
    let text = r#"realtime:
  allowed_origins:
    - "*"
    - app.example.com
"#;
    rejects(text, 4, "realtime.allowed_origins[1]", "is not an origin");
}

#[test]
fn bad_redis_url() {
    let text = r#"broker:
  kind: redis
  redis:
    url: http://x
"#;
    rejects(text, 4, "broker.redis.url", "redis://");
}

#[test]
fn forward_to_must_be_a_path() {
    rejects(
        r#"client_messages:
  forward_to: inbound
"#,
        2,
        "client_messages.forward_to",
        "starting with '/'",
    );
}

#[test]
fn all_validation_errors_are_reported_in_file_order() {
    let text = r#"realtime:
  client_queue: 0
  path: nope
backend:
  url: ftp://x
channels:
  - { pattern: "", subscribe: anyone }
"#;
    let errors = parse_str(text).unwrap_err();
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line()).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(5), Some(7)], "{errors}");
    let rendered = errors.to_string();
    assert_eq!(rendered.lines().count(), 4);
    assert!(
        rendered.contains("gateway.yaml:7: channels[0].pattern: must not be empty"),
        "{rendered}"
    );
}

#[test]
fn defaults_absent_from_the_file_point_at_their_section() {
    // admin is a default here, so the error points at the nearest present key.
    let text = r#"log: { level: debug }
listen:
  public: 127.0.0.1:9090
"#;
    rejects(text, 2, "listen.admin", "must differ");
}

#[test]
fn unknown_template_placeholder_in_a_webhook() {
    let text = r#"webhooks:
  - name: orders
    match: { path: /hooks/orders }
    channel: "orders.{bdy.id}"
"#;
    rejects(
        text,
        4,
        "webhooks[0].channel",
        "unknown placeholder `{bdy.id}`",
    );
}

#[test]
fn webhook_path_placeholder_not_in_match_path() {
    let text = r#"webhooks:
  - name: n
    match: { path: "/hooks/{user}" }
    channel: "user.{path.usr}"
"#;
    rejects(text, 4, "webhooks[0].channel", "`{path.usr}`");
}

#[test]
fn unknown_template_placeholder_in_a_tap() {
    let text = r#"taps:
  - match: { path: /api/orders }
    channel: orders.all
    data: "{body}"
"#;
    rejects(text, 4, "taps[0].data", "unknown placeholder `{body}`");
}

#[test]
fn a_duration_past_what_a_clock_can_take() {
    // Accepted before, this overflowed the clock at the first connection.
    let text = r#"limits:
  header_timeout: 18446744073709551615s
"#;
    rejects(text, 2, "limits.header_timeout", "at most 3650d");
}

#[test]
fn unknown_balance() {
    rejects(
        r#"backend:
  urls: [http://10.0.0.5:8080, http://10.0.0.6:8080]
  balance: random
"#,
        3,
        "backend.balance",
        "unknown variant",
    );
}

#[test]
fn url_and_urls_together() {
    rejects(
        r#"backend:
  url: http://10.0.0.5:8080
  urls: [http://10.0.0.6:8080]
"#,
        3,
        "backend.urls",
        "not both",
    );
}

#[test]
fn trusted_proxies_must_be_addresses_or_blocks() {
    let text = r#"
listen:
  public: 0.0.0.0:8443
  trusted_proxies:
    - 10.0.0.0/8
    - 10.1.2.3/16
"#;
    rejects(
        text,
        4,
        "listen.trusted_proxies",
        "`10.1.2.3/16` has host bits set; did you mean `10.1.0.0/16`?",
    );
    let text = r#"listen:
  trusted_proxies: [my-balancer]
"#;
    rejects(
        text,
        2,
        "listen.trusted_proxies",
        "`my-balancer` is not an address or a CIDR block",
    );
}

#[test]
fn real_ip_header_is_one_of_the_two_fields() {
    rejects(
        r#"listen:
  real_ip_header: x-real-ip
"#,
        2,
        "listen.real_ip_header",
        "unknown variant `x-real-ip`, expected `x-forwarded-for` or `forwarded`",
    );
}

#[test]
fn compression_level_is_a_deflate_level() {
    rejects(
        r#"realtime:
  compression: { level: 10 }
"#,
        2,
        "realtime.compression.level",
        "must be a deflate level from 0 to 9",
    );
}
