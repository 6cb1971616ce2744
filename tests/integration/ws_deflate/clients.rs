//! Real clients with their default permessage-deflate offers: Node's `ws`
//! over TLS and Python's `websockets` over TLS and plain HTTP, each
//! receiving a compressed message and sending a compressed publish op.

use super::*;

fn pusher_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pusher")
}

/// A gateway without TLS, from the test builder's config with the `tls:`
/// section taken out; its handle.
pub(crate) async fn plain_gateway(dir: &std::path::Path) -> pushgate::Handle {
    let text = TestGateway::builder().yaml(dir);
    let start = text.find("tls:\n").unwrap();
    let end = text.find("backend:").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    pushgate::Gateway::start(config, listeners).unwrap()
}

/// Publish `data` on `channel` through the admin listener at `admin`.
pub(crate) async fn publish(admin: std::net::SocketAddr, channel: &str, data: Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{admin}/publish"))
        .json(&json!({"channel": channel, "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// What every client must have seen: the extension, the published rows
/// inflated, and the ack of its own compressed publish. A client that asked
/// for cursor frames (`opted`) gets the message without its cursor and a
/// cursor frame after it; one that did not, the cursor inline and no
/// cursor frame.
fn check(lines: &[Value], channel: &str, big: &Value, opted: bool) {
    // Node's `ws` reports the extension's name, `websockets` the header.
    let ext = lines[0]["extensions"].as_str().unwrap_or_default();
    assert!(ext.starts_with("permessage-deflate"), "{}", lines[0]);
    assert_eq!(lines[1]["channel"], channel, "{}", lines[1]["channel"]);
    assert_eq!(lines[1]["data"], *big);
    assert_eq!(lines[2]["type"], "ack", "{}", lines[2]);
    assert_eq!(lines[1]["cursor"].is_string(), !opted, "{}", lines[1]);
    let frames = lines[2]["cursor_frames"].as_u64().unwrap();
    assert_eq!(frames > 0, opted, "{}", lines[2]);
}

#[tokio::test]
async fn node_ws_negotiates_and_inflates_both_ways_over_tls() {
    let (gw, _dir) = gateway("").await;
    let mut sub = tls_raw(&gw, "/realtime/ws?channels=chat.node", None).await;
    let big = rows(3000);
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(pusher_dir())
        .arg("deflate_ws.js")
        .arg(format!(
            "wss://localhost:{}/realtime/ws?channels=chat.node&cursor_frames=1",
            gw.public.port()
        ))
        .env("NODE_EXTRA_CA_CERTS", gw.dir.join("gw.crt"));
    let lines = drive_client(cmd, gw.publish_one("chat.node", big.clone())).await;
    check(&lines, "chat.node", &big, true);
    // What node sent (compressed by `ws`, over its 1 KiB threshold) reached
    // the channel whole.
    let _first = sub.next_data().await;
    let up = raw::json(&sub.next_data().await);
    assert_eq!(up["data"]["rows"][59]["note"], "from node ws", "{up}");
    let metrics = gw.metrics_text().await;
    assert!(
        counter(&metrics, "pushgate_ws_deflate_frames_total") >= 1,
        "{metrics}"
    );
}

#[tokio::test]
async fn python_websockets_negotiates_and_inflates_both_ways_plain_and_tls() {
    let python = pusher_dir().join(".venv/bin/python");
    // Plain HTTP, without cursor frames: messages come plain, cursor inline.
    let dir = DirGuard(temp_dir("deflate-plain"));
    let handle = plain_gateway(&dir.0).await;
    let big = rows(3000);
    let mut cmd = tokio::process::Command::new(&python);
    cmd.current_dir(pusher_dir())
        .arg("deflate_ws.py")
        .arg(format!(
            "ws://127.0.0.1:{}/realtime/ws?channels=chat.py",
            handle.public_addr().port()
        ));
    let lines = drive_client(cmd, publish(handle.admin_addr(), "chat.py", big.clone())).await;
    check(&lines, "chat.py", &big, false);
    // Its default offer would keep the client's context; it is told not to
    // (no inflater kept for the connection's life), and its two-way
    // exchange above went through so.
    assert_eq!(
        lines[0]["extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
    );
    handle.shutdown(Duration::from_secs(2)).await;
    // TLS.
    let (gw, _dir) = gateway("").await;
    let mut cmd = tokio::process::Command::new(&python);
    cmd.current_dir(pusher_dir())
        .arg("deflate_ws.py")
        .arg(format!(
            "wss://localhost:{}/realtime/ws?channels=chat.py&cursor_frames=1",
            gw.public.port()
        ))
        .arg(gw.dir.join("gw.crt"));
    let lines = drive_client(cmd, gw.publish_one("chat.py", big.clone())).await;
    check(&lines, "chat.py", &big, true);
    let metrics = gw.metrics_text().await;
    assert_eq!(counter(&metrics, "pushgate_ws_deflate_negotiated_total"), 1);
    assert!(counter(&metrics, "pushgate_ws_deflate_frames_total") >= 1);
}
