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
    let text =
        "listen:\n  public: 0.0.0.0:8443\nrealtime:\n  path: /rt\n\n  histroy: { size: 5 }\n";
    rejects(
        text,
        6,
        "realtime.histroy",
        "unknown field `histroy`, expected one of `path`",
    );
}

#[test]
fn unknown_field_in_flow_mapping_inside_a_list() {
    let text = "channels:\n  - { pattern: a, subscribe: anyone }\n  - { pattern: b, subscribe: anyone, presense: true }\n";
    rejects(text, 3, "channels[1].presense", "unknown field `presense`");
}

#[test]
fn unknown_top_level_section() {
    rejects(
        "listen: {}\nlisten_extra: 1\n",
        2,
        "listen_extra",
        "unknown field `listen_extra`",
    );
}

#[test]
fn missing_required_key() {
    let text =
        "channels:\n  - { pattern: a, subscribe: anyone }\n  - pattern: b\n    presence: true\n";
    rejects(text, 3, "channels[1]", "missing field `subscribe`");
}

#[test]
fn unknown_enum_variant() {
    let text = "channels:\n  - pattern: a\n    subscribe: everyone\n";
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
        "realtime:\n  client_queue: many\n",
        2,
        "realtime.client_queue",
        "non-negative integer",
    );
}

#[test]
fn bad_socket_address() {
    rejects(
        "listen:\n  admin: localhost\n",
        2,
        "listen.admin",
        "invalid socket address",
    );
}

#[test]
fn duration_without_unit() {
    rejects(
        "realtime:\n  heartbeat: 15\n",
        2,
        "realtime.heartbeat",
        "has no unit",
    );
}

#[test]
fn duration_with_unknown_unit() {
    rejects(
        "backend:\n  timeout: 3 weeks\n",
        2,
        "backend.timeout",
        "unknown unit",
    );
}

#[test]
fn bad_size() {
    rejects(
        "realtime:\n  max_message: 64 parsecs\n",
        2,
        "realtime.max_message",
        "invalid size",
    );
}

#[test]
fn message_bound_past_reason() {
    rejects(
        "realtime:\n  max_message: 64GiB\n",
        2,
        "realtime.max_message",
        "at most 16MiB",
    );
}

#[test]
fn bad_rate() {
    let text = "limits:\n  per_ip:\n    connects: { rate: 10 per second, burst: 5 }\n";
    rejects(text, 3, "limits.per_ip.connects.rate", "invalid rate");
}

#[test]
fn zero_burst() {
    let text = "limits:\n  publish:\n    rate: 5/s\n    burst: 0\n";
    rejects(text, 4, "limits.publish.burst", "at least 1");
}

#[test]
fn per_ip_connections_zero() {
    let text = "limits:\n  per_ip:\n    connections: 0\n";
    rejects(text, 3, "limits.per_ip.connections", "at least 1");
}

#[test]
fn yaml_syntax_error() {
    let errors = parse_str("listen:\n  public: [0.0.0.0\nbackend: {}\n")
        .unwrap_err()
        .to_string();
    assert!(errors.starts_with("gateway.yaml:"), "{errors}");
    assert!(errors.contains("yaml syntax:"), "{errors}");
    assert!(!errors.contains(" at line "), "{errors}");
}

#[test]
fn backend_other_scheme() {
    rejects(
        "backend:\n  url: ftp://app.internal\n",
        2,
        "backend.url",
        "scheme `ftp`",
    );
}

#[test]
fn backend_url_unparsable() {
    rejects(
        "backend:\n  url: not a url\n",
        2,
        "backend.url",
        "invalid URL",
    );
}

#[test]
fn realtime_path_without_leading_slash() {
    rejects(
        "realtime:\n  path: realtime\n",
        2,
        "realtime.path",
        "must start with '/'",
    );
}

#[test]
fn realtime_path_root() {
    rejects(
        "realtime:\n  heartbeat: 5s\n  path: /\n",
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
        "realtime:\n  client_queue: 0\n",
        2,
        "realtime.client_queue",
        "at least 1",
    );
}

#[test]
fn history_size_zero() {
    rejects(
        "realtime:\n  history: { size: 0, ttl: 1m }\n",
        2,
        "realtime.history.size",
        "at least 1",
    );
}

#[test]
fn channel_history_size_zero() {
    let text = "channels:\n  - pattern: a\n    subscribe: token\n    history:\n      size: 0\n";
    rejects(text, 5, "channels[0].history.size", "at least 1");
}

#[test]
fn channel_pattern_empty() {
    rejects(
        "channels:\n  - { pattern: \"\", subscribe: anyone }\n",
        2,
        "channels[0].pattern",
        "must not be empty",
    );
}

#[test]
fn channel_pattern_invalid_character() {
    let text = "channels:\n  - { pattern: ok, subscribe: anyone }\n  - { pattern: \"bad name/x\", subscribe: anyone }\n";
    rejects(text, 3, "channels[1].pattern", "contains ' '");
}

#[test]
fn channel_pattern_malformed_placeholder() {
    rejects(
        "channels:\n  - { pattern: \"user.{sub\", subscribe: owner }\n",
        2,
        "channels[0].pattern",
        "malformed placeholder",
    );
}

#[test]
fn owner_rule_without_sub_placeholder() {
    let text = "channels:\n  - pattern: \"user.{id}\"\n    subscribe: owner\n";
    rejects(
        text,
        3,
        "channels[0].subscribe",
        "`owner` needs a `{sub}` placeholder",
    );
}

#[test]
fn allowed_patterns_pass() {
    let text = "channels:\n  - { pattern: \"a-b_c.d:e@f=g.*\", subscribe: anyone }\n  - { pattern: \"u.{sub}.x\", subscribe: owner }\n";
    assert!(parse_str(text).is_ok());
}

#[test]
fn static_token_channel_pattern() {
    let text = "auth:\n  static_tokens:\n    - token: t\n      subject: s\n      channels: [\"ok.*\", \"no way\"]\n";
    rejects(text, 5, "auth.static_tokens[0].channels[1]", "contains ' '");
}

#[test]
fn duplicate_webhook_names() {
    let text = "webhooks:\n  - name: orders\n    match: { path: /a }\n    channel: c\n  - name: orders\n    match: { path: /b }\n    channel: c\n";
    rejects(
        text,
        5,
        "webhooks[1].name",
        "duplicate webhook name \"orders\" (also webhooks[0])",
    );
}

#[test]
fn webhook_path_without_slash() {
    let text = "webhooks:\n  - name: orders\n    match: { method: POST, path: hooks/orders }\n    channel: c\n";
    rejects(text, 3, "webhooks[0].match.path", "must start with '/'");
}

#[test]
fn webhook_bad_method() {
    let text = "webhooks:\n  - name: orders\n    match:\n      method: \"PO ST\"\n      path: /h\n    channel: c\n";
    rejects(text, 4, "webhooks[0].match.method", "not an HTTP method");
}

#[test]
fn tap_status_pattern() {
    let text = "taps:\n  - match: { path: /api, status: 2x1 }\n    channel: c\n";
    rejects(text, 2, "taps[0].match.status", "not a status like");
    for ok in ["2xx", "20x", "201", "5XX"] {
        let text = format!("taps:\n  - match: {{ path: /api, status: {ok} }}\n    channel: c\n");
        assert!(parse_str(&text).is_ok(), "{ok}");
    }
    for bad in ["2", "600", "x01", "2xxx", "ok"] {
        let text =
            format!("taps:\n  - match: {{ path: /api, status: \"{bad}\" }}\n    channel: c\n");
        assert!(parse_str(&text).is_err(), "{bad}");
    }
}

#[test]
fn listen_public_equals_admin() {
    let text = "listen:\n  public: 127.0.0.1:9000\n  admin: 127.0.0.1:9000\n";
    rejects(text, 3, "listen.admin", "must differ from listen.public");
    // Port 0 (tests) never clashes.
    assert!(parse_str("listen: { public: 127.0.0.1:0, admin: 127.0.0.1:0 }\n").is_ok());
}

#[test]
fn sni_with_empty_hosts() {
    let text =
        "tls:\n  cert: a.pem\n  key: a.key\n  sni:\n    - { hosts: [], cert: b.pem, key: b.key }\n";
    rejects(text, 5, "tls.sni[0].hosts", "at least one host");
}

#[test]
fn jwt_without_key() {
    let text = "auth:\n  jwt:\n    hs256_secret: \"${EMPTY:-}\"\n    issuer: me\n";
    rejects(text, 2, "auth.jwt", "needs a key");
}

#[test]
fn bad_origin() {
    let text = "realtime:\n  allowed_origins:\n    - \"*\"\n    - app.example.com\n";
    rejects(text, 4, "realtime.allowed_origins[1]", "is not an origin");
}

#[test]
fn bad_redis_url() {
    let text = "broker:\n  kind: redis\n  redis:\n    url: http://x\n";
    rejects(text, 4, "broker.redis.url", "redis://");
}

#[test]
fn forward_to_must_be_a_path() {
    rejects(
        "client_messages:\n  forward_to: inbound\n",
        2,
        "client_messages.forward_to",
        "starting with '/'",
    );
}

#[test]
fn all_validation_errors_are_reported_in_file_order() {
    let text = "realtime:\n  client_queue: 0\n  path: nope\nbackend:\n  url: ftp://x\nchannels:\n  - { pattern: \"\", subscribe: anyone }\n";
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
    let text = "log: { level: debug }\nlisten:\n  public: 127.0.0.1:9090\n";
    rejects(text, 2, "listen.admin", "must differ");
}

#[test]
fn unknown_template_placeholder_in_a_webhook() {
    let text = "webhooks:\n  - name: orders\n    match: { path: /hooks/orders }\n    channel: \"orders.{bdy.id}\"\n";
    rejects(
        text,
        4,
        "webhooks[0].channel",
        "unknown placeholder `{bdy.id}`",
    );
}

#[test]
fn webhook_path_placeholder_not_in_match_path() {
    let text = "webhooks:\n  - name: n\n    match: { path: \"/hooks/{user}\" }\n    channel: \"user.{path.usr}\"\n";
    rejects(text, 4, "webhooks[0].channel", "`{path.usr}`");
}

#[test]
fn unknown_template_placeholder_in_a_tap() {
    let text =
        "taps:\n  - match: { path: /api/orders }\n    channel: orders.all\n    data: \"{body}\"\n";
    rejects(text, 4, "taps[0].data", "unknown placeholder `{body}`");
}

#[test]
fn a_duration_past_what_a_clock_can_take() {
    // Accepted before, this overflowed the clock at the first connection.
    let text = "limits:\n  header_timeout: 18446744073709551615s\n";
    rejects(text, 2, "limits.header_timeout", "at most 3650d");
}

#[test]
fn unknown_balance() {
    rejects(
        "backend:\n  urls: [http://10.0.0.5:8080, http://10.0.0.6:8080]\n  balance: random\n",
        3,
        "backend.balance",
        "unknown variant",
    );
}

#[test]
fn url_and_urls_together() {
    rejects(
        "backend:\n  url: http://10.0.0.5:8080\n  urls: [http://10.0.0.6:8080]\n",
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
    let text = "listen:\n  trusted_proxies: [my-balancer]\n";
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
        "listen:\n  real_ip_header: x-real-ip\n",
        2,
        "listen.real_ip_header",
        "unknown variant `x-real-ip`, expected `x-forwarded-for` or `forwarded`",
    );
}
