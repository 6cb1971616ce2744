//! A short run of `pushgate bench` against a gateway started here: the
//! command works end to end and reports zero loss and zero duplicates.
//! (Numbers are for `bench/`; nothing here is timed.)

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
