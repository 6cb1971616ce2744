//! permessage-deflate on the Pusher socket (`/app/{key}`), raw frames over
//! TLS and plain listeners: one shared compressed event for every socket,
//! compressed client frames, and the bomb and reserved-bit closes.

use super::*;

const PATH: &str = "/app/app-key?protocol=7";

async fn subscribe<S>(s: &mut raw::Raw<S>, channel: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let established = raw::json(&s.next_data().await);
    assert_eq!(established["event"], "pusher:connection_established");
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string();
    s.send(true, false, TEXT, sub.as_bytes()).await;
    let ok = raw::json(&s.next_data().await);
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}

/// Two sockets (one deflating, one not) get `big` on `news-d` after
/// `publish` ran; the deflating one then sends compressed frames.
async fn scenario<S, F>(
    mut a: raw::Raw<S>,
    mut b: raw::Raw<S>,
    mut plain: raw::Raw<S>,
    publish: F,
    big: &Value,
) -> (raw::Raw<S>, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: std::future::Future,
{
    assert_eq!(
        a.extensions.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        )
    );
    assert_eq!(plain.extensions, None);
    for s in [&mut a, &mut b, &mut plain] {
        subscribe(s, "news-d").await;
    }
    publish.await;
    let (fa, fb, fp) = (
        a.next_data().await,
        b.next_data().await,
        plain.next_data().await,
    );
    assert!(fa.rsv1 && !fp.rsv1, "{fa:?}");
    assert_eq!(fa.payload, fb.payload, "one compressed event for both");
    for f in [&fa, &fp] {
        let e = raw::json(f);
        assert_eq!(
            (e["event"].as_str(), e["channel"].as_str()),
            (Some("message"), Some("news-d"))
        );
        let data: Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
        assert_eq!(&data, big);
    }
    // A compressed client frame is read like a plain one.
    let ping = json!({"event": "pusher:ping", "data": {}, "pad": " ".repeat(400)}).to_string();
    a.send(
        true,
        true,
        TEXT,
        &raw::Deflater::new().message(ping.as_bytes()),
    )
    .await;
    assert_eq!(raw::json(&a.next_data().await)["event"], "pusher:pong");
    (a, fa.payload)
}

#[tokio::test]
async fn pusher_sockets_share_one_compressed_event_over_tls() {
    let dir = temp_dir("deflate-pusher");
    let _guard = DirGuard(dir.clone());
    let gw = TestGateway::start_yaml(&crate::pusher_ws::config(&dir, true), dir).await;
    let big = rows(800);
    let (mut a, _) = scenario(
        tls_raw(&gw, PATH, Some(OFFER)).await,
        tls_raw(&gw, PATH, Some(OFFER)).await,
        tls_raw(&gw, PATH, None).await,
        gw.publish_one("news-d", big.clone()),
        &big,
    )
    .await;
    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(&metrics, "pushgate_ws_deflate_messages_compressed_total"),
        1
    );
    assert_eq!(counter(&metrics, "pushgate_ws_deflate_frames_total"), 2);
    // The bomb: closed 1009 (the socket's read cap is 256 KiB).
    a.send(
        true,
        true,
        TEXT,
        &raw::Deflater::new().message(&vec![b'a'; 16 << 20]),
    )
    .await;
    assert_eq!(a.close_code().await, Some(1009));
    // RSV1 on a control frame: 1002.
    let mut c = tls_raw(&gw, PATH, Some(OFFER)).await;
    c.send(true, true, PING, b"").await;
    assert_eq!(c.close_code().await, Some(1002));
}

#[tokio::test]
async fn pusher_sockets_deflate_over_plain_http() {
    let dir = DirGuard(temp_dir("deflate-pusher-plain"));
    let path = dir.0.join("gateway.yaml");
    std::fs::write(&path, crate::pusher_ws::config(&dir.0, false)).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    };
    let handle = pushgate::Gateway::start(config, listeners).unwrap();
    let tcp = || tokio::net::TcpStream::connect(handle.public_addr());
    let big = rows(800);
    let (mut a, _) = scenario(
        raw::connect(tcp().await.unwrap(), PATH, Some(OFFER)).await,
        raw::connect(tcp().await.unwrap(), PATH, Some(OFFER)).await,
        raw::connect(tcp().await.unwrap(), PATH, None).await,
        clients::publish(handle.admin_addr(), "news-d", big.clone()),
        &big,
    )
    .await;
    a.send(
        true,
        true,
        TEXT,
        &raw::Deflater::new().message(&vec![b'a'; 16 << 20]),
    )
    .await;
    assert_eq!(a.close_code().await, Some(1009));
    handle.shutdown(Duration::from_secs(2)).await;
}
