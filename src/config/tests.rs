//! Tests of the whole pipeline: the full example configuration, defaults, interpolation through
//! YAML, path resolution and the summary. One test per rejection is in `rejections`.

use super::*;
use std::path::PathBuf;
use std::time::Duration;

mod buffering;
mod pusher;
mod queue_rejections;
mod rejections;
mod route_rejections;
mod session_rejections;
mod upstream_rejections;

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "JWT" => Some("s3cr3t: with # yaml * specials \"quoted\"".into()),
        "PORT" => Some("7000".into()),
        "QUEUE" => Some("256".into()),
        "ON" => Some("true".into()),
        "KIND" => Some("redis".into()),
        "BAD_KIND" => Some("hunter2-kind".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

pub(super) fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(text, Path::new("gateway.yaml"), &env)
}

const FULL_EXAMPLE: &str = r#"listen:
  public: 0.0.0.0:8443          # browsers and proxied traffic (TLS when tls: is present)
  admin: 127.0.0.1:9090         # publish, hooks, metrics, dashboard; plain HTTP, loopback by default
tls:                            # omit the whole section to serve plain HTTP (behind another terminator)
  cert: certs/gateway.crt       # PEM chain
  key: certs/gateway.key        # PEM key
  self_signed_if_missing: true  # dev: generate both into certs/ with a loud warning
  sni:                          # optional extra certificates, chosen by server name
    - { hosts: [app.example.com], cert: certs/app.crt, key: certs/app.key }
backend:
  url: http://127.0.0.1:8080
  connect_timeout: 2s
  timeout: 60s                  # whole request; streaming responses are not cut while bytes flow
realtime:
  path: /realtime               # -> /realtime/ws, /realtime/sse, /realtime/poll, /realtime/send, /realtime/client.js
  heartbeat: 15s                # ws ping / sse comment / poll is bounded by poll_timeout
  poll_timeout: 25s
  history: { size: 1000, ttl: 10m }   # per channel, for resume
  max_message: 64KiB
  client_queue: 1024            # messages buffered per connection; overflow closes it with a resume cursor
  allowed_origins: ["https://app.example.com"]   # browser Origin check for ws/sse/poll; "*" allows all
auth:
  jwt:
    hs256_secret: ${PUSHGATE_JWT_SECRET:-dev-secret-change-me}
    # rs256_public_key: certs/jwt.pub.pem    es256_public_key: ...
    issuer: my-app              # optional checks
    audience: browsers
  static_tokens:
    - { token: "${DASHBOARD_TOKEN:-}", subject: dashboard, channels: ["metrics", "agents.*"] }
  admin_keys: ["${PUSHGATE_ADMIN_KEY:-}"]    # empty list or empty key: admin is open on loopback only
channels:                       # first matching pattern wins; a channel matching none is refused
  - { pattern: "public.*",  subscribe: anyone }             # no token needed
  - { pattern: "user.{sub}", subscribe: owner }             # only the token whose sub fills {sub}
  - { pattern: "orders.*",  subscribe: token, history: { size: 5000 } }   # token's channels claim must match
  - { pattern: "chat.*",    subscribe: token, publish: clients, presence: true }
  - { pattern: "metrics.*", subscribe: anyone, slow_client: conflate }   # disconnect (default) | drop_oldest | conflate
limits:
  per_client: { connections: 20, messages: { rate: 20/s, burst: 40 }, subscribes: { rate: 60/m, burst: 20 } }
  per_ip:
    connections: 5000           # anonymous realtime connections from one address
    connects: { rate: 500/s, burst: 2000 }    # new TCP connections
    subscribes: { rate: 1000/s, burst: 5000 } # anonymous subscribes from one address
  publish: { rate: 5000/s, burst: 10000 }    # admin publishes, per admin key
  max_connections: 100000
webhooks:                       # backend webhooks / push callbacks -> channel messages (admin listener)
  - name: orders
    match: { method: POST, path: /hooks/orders }
    verify: { hmac_sha256: { header: X-Signature, secret: "${ORDERS_HOOK_SECRET:-}" } }
    channel: "orders.{body.customer_id}"
    event: "{header.X-Event-Type}"
    data: "{body}"
  - name: notify
    match: { method: POST, path: "/hooks/notify/{user}" }
    channel: "user.{path.user}"
    event: notification
    data: "{body.message}"
taps:                           # publish when a proxied request succeeds: no backend change at all
  - match: { method: POST, path: /api/orders, status: 2xx }
    channel: orders.all
    event: created
    data: "{response.body}"
client_messages:                # what browsers send (ws frames, POST /realtime/send)
  forward_to: /realtime/inbound # backend path; headers X-Pushgate-Subject, X-Pushgate-Connection
broker:
  kind: memory                  # memory (embedded default) | redis
  # redis: { url: redis://127.0.0.1:6379, prefix: pushgate }
log: { format: pretty, level: info }   # pretty | json
"#;

#[test]
fn design_example_parses() {
    let file = Path::new("/etc/pushgate/gateway.yaml");
    let c = match parse_with_env(FULL_EXAMPLE, file, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.source, PathBuf::from("/etc/pushgate/gateway.yaml"));
    assert_eq!(c.listen, Listen::default());
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.cert, PathBuf::from("/etc/pushgate/certs/gateway.crt"));
    assert_eq!(tls.key, PathBuf::from("/etc/pushgate/certs/gateway.key"));
    assert!(tls.self_signed_if_missing);
    assert_eq!(tls.sni[0].hosts, ["app.example.com"]);
    assert_eq!(
        tls.sni[0].cert,
        PathBuf::from("/etc/pushgate/certs/app.crt")
    );
    assert_eq!(c.backend, Backend::default());
    assert_eq!(c.realtime.max_message, 65536);
    assert_eq!(c.realtime.history.ttl, Duration::from_secs(600));
    assert_eq!(c.realtime.allowed_origins, ["https://app.example.com"]);
    let jwt = c.auth.jwt.as_ref().unwrap();
    assert_eq!(jwt.hs256_secret.as_deref(), Some("dev-secret-change-me"));
    assert_eq!(jwt.issuer.as_deref(), Some("my-app"));
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    // `${X:-}` tokens and keys mean "unset": dropped rather than kept as "".
    assert!(c.auth.static_tokens.is_empty());
    assert!(c.auth.admin_keys.is_empty());
    assert_eq!(c.channels.len(), 5);
    assert_eq!(c.channels[1].subscribe, Subscribe::Owner);
    assert_eq!(c.channels[2].history.as_ref().unwrap().size, Some(5000));
    assert_eq!(c.channels[2].history.as_ref().unwrap().ttl, None);
    assert_eq!(c.channels[3].publish, PublishBy::Clients);
    assert!(c.channels[3].presence);
    assert_eq!(c.channels[4].slow_client, SlowClient::Conflate);
    assert_eq!(c.channels[0].slow_client, SlowClient::Disconnect);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.webhooks[0].matcher.method, "POST");
    assert_eq!(
        c.webhooks[0].verify.as_ref().unwrap().hmac_sha256.header,
        "X-Signature"
    );
    assert_eq!(c.webhooks[1].matcher.path, "/hooks/notify/{user}");
    assert_eq!(c.taps[0].matcher.status.as_deref(), Some("2xx"));
    assert_eq!(
        c.client_messages.as_ref().unwrap().forward_to,
        "/realtime/inbound"
    );
    assert_eq!(c.broker.kind, BrokerKind::Memory);
    assert_eq!(c.log, Log::default());
}

#[test]
fn an_empty_file_is_an_error_not_defaults() {
    for text in ["", "  \n\n", "# only a comment\n", "---\n"] {
        let errors = parse_str(text).unwrap_err();
        assert_eq!(
            errors.0,
            [ConfigError::Empty {
                file: "gateway.yaml".into()
            }]
        );
        assert!(
            errors
                .to_string()
                .starts_with("gateway.yaml: the file is empty")
        );
    }
    // An explicit empty mapping is a choice: every section at its defaults.
    let c = parse_str("{}\n").unwrap();
    let expected = Config {
        source: PathBuf::from("gateway.yaml"),
        ..Config::default()
    };
    assert_eq!(c, expected);
}

#[test]
fn defaults() {
    let d = Config::default();
    assert_eq!(d.listen.public.to_string(), "0.0.0.0:8443");
    assert_eq!(d.listen.admin.to_string(), "127.0.0.1:9090");
    assert!(d.tls.is_none());
    assert_eq!(d.backend.url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(d.backend.connect_timeout, Duration::from_secs(2));
    assert_eq!(d.realtime.path, "/realtime");
    assert_eq!(d.realtime.heartbeat, Duration::from_secs(15));
    assert_eq!(d.realtime.poll_timeout, Duration::from_secs(25));
    assert_eq!(
        (d.realtime.history.size, d.realtime.max_message),
        (1000, 65536)
    );
    assert_eq!(d.realtime.client_queue, 1024);
    assert_eq!(d.realtime.allowed_origins, ["*"]);
    let z = &d.realtime.compression;
    assert_eq!((z.enabled, z.threshold, z.level), (true, 256, 3));
    assert_eq!(d.limits.per_client.subscribes.rate.to_string(), "60/m");
    assert_eq!(d.limits.per_client.subscribes.burst.get(), 20);
    let ip = &d.limits.per_ip;
    assert_eq!(ip.connections, 5000);
    assert_eq!(
        (ip.connects.rate.to_string(), ip.connects.burst.get()),
        ("500/s".to_owned(), 2000)
    );
    assert_eq!(
        (ip.subscribes.rate.to_string(), ip.subscribes.burst.get()),
        ("1000/s".to_owned(), 5000)
    );
    assert_eq!(d.limits.publish.burst.get(), 10_000);
    assert_eq!(d.limits.max_connections, 100_000);
    assert_eq!(d.broker.kind, BrokerKind::Memory);
    assert_eq!(d.log.level, "info");
}

#[test]
fn empty_sections_mean_defaults() {
    let c = parse_str(
        r#"listen:
realtime:
limits:
  per_client:
channels:
"#,
    )
    .unwrap();
    assert_eq!(c.realtime, Realtime::default());
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn compression_reads_every_key() {
    let c = parse_str(
        r#"realtime:
  compression: { enabled: false, threshold: 1KiB, level: 6 }
"#,
    )
    .unwrap();
    let z = &c.realtime.compression;
    assert_eq!((z.enabled, z.threshold, z.level), (false, 1024, 6));
}

#[test]
fn relative_paths_resolve_against_the_config_dir() {
    let text = r#"tls:
  cert: certs/a.crt
  key: /abs/a.key
  sni:
    - { hosts: [x.example], cert: ../b.crt, key: b.key }
auth:
  jwt: { rs256_public_key: keys/jwt.pem, es256_public_key: /k/es.pem }
"#;
    let c = parse_with_env(text, Path::new("/srv/gw/gateway.yaml"), &env).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert, PathBuf::from("/srv/gw/certs/a.crt"));
    assert_eq!(tls.key, PathBuf::from("/abs/a.key"));
    assert_eq!(tls.sni[0].cert, PathBuf::from("/srv/gw/../b.crt"));
    assert_eq!(tls.sni[0].key, PathBuf::from("/srv/gw/b.key"));
    let jwt = c.auth.jwt.unwrap();
    assert_eq!(
        jwt.rs256_public_key,
        Some(PathBuf::from("/srv/gw/keys/jwt.pem"))
    );
    assert_eq!(jwt.es256_public_key, Some(PathBuf::from("/k/es.pem")));

    // A bare file name resolves against the current directory, made absolute.
    let c = parse_with_env(text, Path::new("gateway.yaml"), &env).unwrap();
    let cert = c.tls.unwrap().cert;
    assert!(cert.is_absolute(), "{}", cert.display());
    assert!(cert.ends_with("certs/a.crt"));
}

#[test]
fn interpolation_through_yaml_keeps_types_and_specials() {
    let text = r#"listen:
  public: 127.0.0.1:${PORT}
  admin: "127.0.0.1:${MISSING:-9191}"
realtime:
  client_queue: ${QUEUE}
  path: $${literal}
auth:
  jwt: { hs256_secret: "${JWT}" }
  cookie: ${EMPTY:-session}
channels:
  - { pattern: a, subscribe: anyone, presence: "${ON}" }
broker: { kind: "${KIND}" }
"#;
    // `$${literal}` yields "${literal}", which then fails path validation: that shows
    // the escape produced the literal text.
    let errors = parse_str(text).unwrap_err().to_string();
    assert!(
        errors.contains("gateway.yaml:6: realtime.path:"),
        "{errors}"
    );
    assert!(errors.contains("\"${literal}\""), "{errors}");

    let c = parse_str(&text.replace("$${literal}", "/rt/")).unwrap();
    assert_eq!(c.listen.public.to_string(), "127.0.0.1:7000");
    assert_eq!(c.listen.admin.to_string(), "127.0.0.1:9191");
    assert_eq!(c.realtime.client_queue, 256);
    assert_eq!(c.realtime.path, "/rt");
    let secret = c.auth.jwt.unwrap().hs256_secret.unwrap();
    assert_eq!(secret, "s3cr3t: with # yaml * specials \"quoted\"");
    assert_eq!(c.auth.cookie.as_deref(), Some("session"));
    assert!(c.channels[0].presence);
    assert_eq!(c.broker.kind, BrokerKind::Redis);
    // kind: redis without a redis: section keeps the default URL.
    assert_eq!(c.broker.redis, Some(RedisConfig::default()));
}

#[test]
fn unset_variables_are_reported_with_line_and_name_only() {
    let text = r#"backend:
  url: http://127.0.0.1:8080
auth:
  admin_keys:
    - ${ADMIN_KEY}
    - "${JWT}-${OTHER}"
"#;
    let errors = parse_str(text).unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(
        "gateway.yaml:5: auth.admin_keys[0]: environment variable `ADMIN_KEY` is not set"
    ));
    assert!(lines[1].starts_with(
        "gateway.yaml:6: auth.admin_keys[1]: environment variable `OTHER` is not set"
    ));
    assert!(!errors.to_string().contains("s3cr3t"));
}

#[test]
fn malformed_interpolation_is_an_error() {
    let errors = parse_str(
        r#"log:
  level: "${LEVEL"
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.starts_with("gateway.yaml:2: log.level: unterminated `${`"),
        "{errors}"
    );
}

#[test]
fn environment_values_never_reach_messages() {
    let errors = parse_str(
        r#"broker:
  kind: ${BAD_KIND}
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.starts_with("gateway.yaml:2: broker.kind: unknown variant"),
        "{errors}"
    );
    assert!(!errors.contains("hunter2"), "{errors}");
    assert!(errors.contains("${BAD_KIND}"), "{errors}");

    let errors = parse_str(
        r#"auth:
  static_tokens:
    - { token: 12345678, subject: x }
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.starts_with("gateway.yaml:3: auth.static_tokens[0].token:"),
        "{errors}"
    );
    assert!(!errors.contains("12345678"), "{errors}");
}

#[test]
fn empty_tokens_are_unset_not_errors() {
    let text = r#"auth:
  static_tokens:
    - { token: "${EMPTY:-}", subject: "" }
    - { token: t1, subject: s }
  admin_keys: ["${NOPE:-}", k1]
"#;
    let c = parse_str(text).unwrap();
    assert_eq!(c.auth.static_tokens.len(), 1);
    assert_eq!(c.auth.static_tokens[0].token, "t1");
    assert_eq!(c.auth.admin_keys, ["k1"]);
}

#[test]
fn units_and_lenient_scalars_in_context() {
    let text = r#"realtime:
  max_message: 1MiB
  heartbeat: 250ms
  history: { size: "20", ttl: 1d }
limits:
  per_client:
    messages: { rate: 5/10s }
  publish: { rate: 100/h, burst: "7" }
taps:
  - match: { method: put, path: /x, status: 201 }
    channel: c
webhooks:
  - { name: a, match: { method: patch, path: /a }, channel: c }
"#;
    let c = parse_str(text).unwrap();
    assert_eq!(c.realtime.max_message, 1 << 20);
    assert_eq!(c.realtime.heartbeat, Duration::from_millis(250));
    assert_eq!(c.realtime.history.size, 20);
    let messages = c.limits.per_client.messages;
    assert_eq!((messages.rate.count.get(), messages.burst.get()), (5, 5));
    assert_eq!(messages.rate.per, Duration::from_secs(10));
    assert_eq!(c.limits.publish.burst.get(), 7);
    assert_eq!(c.taps[0].matcher.method.as_deref(), Some("PUT"));
    assert_eq!(c.taps[0].matcher.status.as_deref(), Some("201"));
    assert_eq!(c.webhooks[0].matcher.method, "PATCH");
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = std::env::temp_dir().join(format!("pushgate-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, "tls: { cert: c.pem, key: k.pem }\n").unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.tls.unwrap().cert, dir.join("c.pem"));
    assert_eq!(c.source, path);
    let missing = dir.join("nope.yaml");
    let e = load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read:", missing.display())),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn summary_names_the_essentials_without_secrets() {
    let c = parse_with_env(FULL_EXAMPLE, Path::new("/etc/pushgate/gateway.yaml"), &env).unwrap();
    let s = c.summary();
    assert!(s.contains("public 0.0.0.0:8443 (TLS)"), "{s}");
    assert!(s.contains("/etc/pushgate/certs/gateway.crt"), "{s}");
    assert!(s.contains("backend: http://127.0.0.1:8080/"), "{s}");
    assert!(
        s.contains("backend buffering request on, response on, 1MiB in memory per body, bodies up to 100MiB"),
        "{s}"
    );
    assert!(
        s.contains("/realtime/ws /realtime/sse /realtime/poll"),
        "{s}"
    );
    assert!(s.contains("user.{sub}"), "{s}");
    assert!(s.contains("webhooks: 2, taps: 1"), "{s}");
    assert!(
        s.contains("per client (subject) 20 connections, messages 20/s burst 40"),
        "{s}"
    );
    assert!(
        s.contains("per ip (anonymous) 5000 connections, connects 500/s burst 2000, subscribes 1000/s burst 5000"),
        "{s}"
    );
    assert!(s.contains("broker: memory"), "{s}");
    assert!(!s.contains("dev-secret"), "{s}");

    let c = parse_str("broker: { kind: redis, redis: { url: \"redis://:pw@10.0.0.1:6379\" } }\n")
        .unwrap();
    let s = c.summary();
    assert!(s.contains("tls: off") && s.contains("broker: redis"), "{s}");
    assert!(!s.contains("pw@"), "{s}");
}
#[test]
fn flow_context_interpolation_gets_a_quoting_hint() {
    let errors = parse_str(
        r#"auth:
  admin_keys: [${K}]
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.starts_with("gateway.yaml:2: yaml syntax:"),
        "{errors}"
    );
    assert!(errors.contains("quote"), "{errors}");
}

#[test]
fn jwt_leeway_is_bounded() {
    let errors = parse_str(
        r#"auth:
  jwt: { hs256_secret: s, leeway: 2h }
"#,
    )
    .unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("gateway.yaml:2: auth.jwt.leeway: must be at most 1h"),
        "{errors}"
    );
    assert!(
        parse_str(
            r#"auth:
  jwt: { hs256_secret: s, leeway: 1h }
"#
        )
        .is_ok()
    );
}
