//! A short run of `pushgate bench` against a gateway started here: the
//! command works end to end and reports zero loss and zero duplicates.
//! (Numbers are for `bench/`; nothing here is timed.) The TLS and HTTP/2
//! cases run against the gateway's self-signed development certificate.

#[path = "integration/common/mod.rs"]
mod common;

use std::process::Command;

#[tokio::test]
async fn bench_smoke_run() {
    let dir = common::temp_dir("bench");
    let text = r#"
listen: { public: "127.0.0.1:0", admin: "127.0.0.1:0" }
channels: [{ pattern: "public.*", subscribe: anyone }]
limits:
  per_ip: { connects: { rate: 10000/s, burst: 10000 } }
  per_client: { connections: 10000, messages: { rate: 10000/s, burst: 10000 }, subscribes: { rate: 10000/s, burst: 10000 } }
"#;
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    let handle = pushgate::Gateway::start(config, listeners).unwrap();
    let (public, admin) = (handle.public_addr(), handle.admin_addr());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .args([
                "bench",
                "--compare-transports",
                "--json",
                "-n",
                "20",
                "-m",
                "50",
                "-r",
                "200",
            ])
            .args([
                "--url",
                &format!("http://{public}"),
                "--publish",
                &format!("http://{admin}"),
            ])
            .args(["--pid", &std::process::id().to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert_eq!(r["connected"], 20, "{r}");
        assert_eq!(r["delivered"], 1000, "{r}");
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["duplicates"], 0, "{r}");
        assert_eq!(r["publish_errors"], 0, "{r}");
        assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
        // pushgate's own histogram saw this run's deliveries.
        assert_eq!(r["server_latency_ms"]["deliveries"], 1000, "{r}");
        assert!(r["server_latency_ms"]["p50_at_most"].as_f64().unwrap() > 0.0);
    }
    handle.shutdown(std::time::Duration::from_secs(2)).await;
}

/// A gateway serving TLS with a self-signed certificate generated in `dir`,
/// on benchmark limits.
fn tls_gateway(dir: &std::path::Path) -> (pushgate::Handle, std::path::PathBuf) {
    let text = format!(
        r#"
listen: {{ public: "127.0.0.1:0", admin: "127.0.0.1:0" }}
tls: {{ cert: {d}/gw.crt, key: {d}/gw.key, self_signed_if_missing: true }}
channels: [{{ pattern: "public.*", subscribe: anyone }}]
limits:
  per_ip: {{ connects: {{ rate: 10000/s, burst: 10000 }} }}
"#,
        d = dir.display()
    );
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    (
        pushgate::Gateway::start(config, listeners).unwrap(),
        dir.join("gw.crt"),
    )
}

/// Runs `pushgate bench` with `args`; its JSON runs.
async fn bench_json(args: Vec<String>) -> Vec<serde_json::Value> {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runs"].as_array().unwrap().clone()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn bench_over_tls_verifies_the_certificate_and_delivers_everything() {
    let dir = common::temp_dir("bench-tls");
    let (handle, cert) = tls_gateway(&dir);
    let (public, admin) = (handle.public_addr(), handle.admin_addr());
    let (url, publish) = (
        format!("https://127.0.0.1:{}", public.port()),
        format!("http://{admin}"),
    );
    let cert = cert.display().to_string();
    let plot = dir.join("latency.svg");
    let plot_arg = plot.display().to_string();
    // SSE over HTTPS/1.1 and WebSocket over wss://, the dev certificate as the CA.
    let mut base = args(&["--json", "-n", "10", "-m", "20", "-r", "200", "--ca", &cert]);
    base.extend(args(&["--publish", &publish, "--plot", &plot_arg]));
    for (transport, scheme_url) in [("sse", url.clone()), ("ws", url.replace("https", "wss"))] {
        let mut a = base.clone();
        a.extend(args(&["--transport", transport, "--url", &scheme_url]));
        let runs = bench_json(a).await;
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(r["transport"], transport, "{r}");
        assert_eq!(r["connected"], 10, "{r}");
        assert_eq!(r["sockets"], 10, "{r}");
        assert_eq!(r["delivered"], 200, "{r}");
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["duplicates"], 0, "{r}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
    }
    // A certificate the bench does not trust: nobody connects.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    pushgate::tls::generate_dev_cert(&other.join("o.crt"), &other.join("o.key")).unwrap();
    let mut a = args(&["--json", "-n", "3", "-m", "1", "-r", "100", "--url", &url]);
    a.extend(args(&[
        "--publish",
        &publish,
        "--ca",
        &other.join("o.crt").display().to_string(),
    ]));
    let runs = bench_json(a).await;
    assert_eq!(runs[0]["connected"], 0, "{}", runs[0]);
    handle.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn bench_sse_over_h2_shares_connections_and_delivers_everything() {
    let dir = common::temp_dir("bench-h2");
    let (handle, _) = tls_gateway(&dir);
    let (public, admin) = (handle.public_addr(), handle.admin_addr());
    let url = format!("https://127.0.0.1:{}", public.port());
    let publish = format!("http://{admin}");
    let mut a = args(&[
        "--json",
        "-n",
        "12",
        "-m",
        "20",
        "-r",
        "200",
        "--channels",
        "2",
    ]);
    a.extend(args(&[
        "--insecure",
        "--h2",
        "--streams",
        "5",
        "--transport",
        "sse",
    ]));
    a.extend(args(&["--url", &url, "--publish", &publish]));
    let runs = bench_json(a).await;
    let r = &runs[0];
    assert_eq!(r["transport"], "sse-h2", "{r}");
    assert_eq!(r["connected"], 12, "{r}");
    // 2 channels, 10 messages each, 12 subscribers.
    assert_eq!(r["delivered"], 120, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    // 12 streams, 5 per connection: 3 connections.
    assert_eq!(r["sockets"], 3, "{r}");
    handle.shutdown(std::time::Duration::from_secs(2)).await;
}

/// `--target mercure`: SSE subscribers on the hub's `?topic=` and form
/// publishes with the publisher's token, everything delivered once.
#[tokio::test]
async fn bench_mercure_subscribes_and_publishes_through_the_hub() {
    let dir = common::temp_dir("bench-mercure");
    let secret = "bench-mercure-secret-0123456789";
    let text = format!(
        r#"
listen: {{ public: "127.0.0.1:0", admin: "127.0.0.1:0" }}
channels: [{{ pattern: "public.*", subscribe: anyone }}]
limits:
  per_ip: {{ connects: {{ rate: 10000/s, burst: 10000 }} }}
mercure: {{ publisher_jwt: {{ hs256_secret: "{secret}" }}, anonymous: true }}
"#
    );
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    let handle = pushgate::Gateway::start(config, listeners).unwrap();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"mercure": {"publish": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let public = format!("http://{}", handle.public_addr());
    let runs = bench_json(args(&[
        "--target",
        "mercure",
        "--transport",
        "sse",
        "--json",
        "-n",
        "10",
        "-m",
        "20",
        "-r",
        "200",
        "--url",
        &public,
        "--publish",
        &public,
        "--mercure-jwt",
        &token,
    ]))
    .await;
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["transport"], "mercure", "{r}");
    assert_eq!(r["connected"], 10, "{r}");
    assert_eq!(r["publish_errors"], 0, "{r}");
    assert_eq!(r["delivered"], 200, "{r}");
    assert_eq!(
        (r["lost"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    handle.shutdown(std::time::Duration::from_secs(2)).await;
}

/// A gateway with a Pusher app (`bench-key`, secret `bench-secret`), public
/// and presence channels, and no presence grace (a leave is told at once).
fn pusher_gateway(dir: &std::path::Path) -> pushgate::Handle {
    let text = r#"
listen: { public: "127.0.0.1:0", admin: "127.0.0.1:0" }
realtime: { presence_grace: 0s }
channels:
  - { pattern: "public.*", subscribe: anyone }
  - { pattern: "presence-*", subscribe: anyone }
pusher:
  apps:
    - { id: "1001", key: bench-key, secret: bench-secret }
limits:
  per_ip: { connects: { rate: 10000/s, burst: 10000 }, subscribes: { rate: 10000/s, burst: 10000 } }
"#;
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    pushgate::Gateway::start(config, listeners).unwrap()
}

/// Runs `pushgate bench` with `args`; its exit status and JSON output.
async fn bench_output(args: Vec<String>) -> (bool, serde_json::Value, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bench_pusher_subscribers_get_every_trigger_and_presence_members_join_and_leave() {
    let dir = common::temp_dir("bench-pusher");
    let handle = pusher_gateway(&dir);
    let (public, admin) = (handle.public_addr(), handle.admin_addr());
    let app = |secret: &str| {
        args(&[
            "--json",
            "--app-id",
            "1001",
            "--app-key",
            "bench-key",
            "--app-secret",
            secret,
            "--url",
            &format!("http://{public}"),
            "--publish",
            &format!("http://{admin}"),
        ])
    };
    // Fan-out over the Pusher road: subscribed over protocol 7, triggered
    // through the signed HTTP API, 2 channels × 10 messages × 5 subscribers each.
    let mut a = app("bench-secret");
    a.extend(args(&[
        "--transport",
        "pusher",
        "-n",
        "10",
        "-m",
        "20",
        "-r",
        "200",
        "--channels",
        "2",
    ]));
    let runs = bench_json(a).await;
    let r = &runs[0];
    assert_eq!(r["transport"], "pusher", "{r}");
    assert_eq!(r["connected"], 10, "{r}");
    assert_eq!(r["delivered"], 100, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(r["publish_errors"], 0, "{r}");
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
    // The triggers went through pushgate's hub: its histogram saw them.
    assert_eq!(r["server_latency_ms"]["deliveries"], 100, "{r}");

    // A wrong secret: the public subscriptions need none, but every
    // trigger is refused (401), and nothing is delivered.
    let mut a = app("not-the-secret");
    a.extend(args(&[
        "--transport",
        "pusher",
        "-n",
        "3",
        "-m",
        "5",
        "-r",
        "200",
    ]));
    let runs = bench_json(a).await;
    let r = &runs[0];
    assert_eq!(r["connected"], 3, "{r}");
    assert_eq!(r["delivered"], 0, "{r}");
    assert!(r["publish_errors"].as_u64().unwrap() > 0, "{r}");
    // ... and presence subscriptions signed with it are refused.
    let mut a = app("not-the-secret");
    a.extend(args(&["--transport", "pusher", "-n", "3", "-m", "1"]));
    a.extend(args(&["--prefix", "presence-bench"]));
    let runs = bench_json(a).await;
    assert_eq!(runs[0]["connected"], 0, "{}", runs[0]);
    assert_ne!(runs[0]["refused"], serde_json::json!([]), "{}", runs[0]);

    // Presence: 30 members over 3 channels join, then leave; the observers
    // (one member per channel) are told of each.
    let mut a = app("bench-secret");
    a.extend(args(&["--presence", "-n", "30", "--channels", "3"]));
    let (ok, v, stderr) = bench_output(a).await;
    assert!(ok, "{stderr}");
    let p = &v["presence"];
    assert_eq!(p["connected"], 30, "{p}");
    assert_eq!(p["joined"], 30, "{p}");
    assert_eq!(p["added_seen"], 30, "{p}");
    assert_eq!(p["removed_seen"], 30, "{p}");
    assert!(p["joins_per_sec"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["leaves_per_sec"].as_f64().unwrap() > 0.0, "{p}");

    // A Pusher run without the app's secret is a usage error.
    let (ok, _, stderr) = bench_output(args(&["--transport", "pusher", "--app-key", "k"])).await;
    assert!(!ok);
    assert!(stderr.contains("--app-secret"), "{stderr}");
    handle.shutdown(std::time::Duration::from_secs(2)).await;
}
