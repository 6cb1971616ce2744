//! Hostile traffic: slow and idle connections, oversize heads, a backend that
//! never reads, connect loops, huge publishes, garbage frames. Each is handled
//! with bounded resources while normal clients carry on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// Limits roomy enough for many connections from one address, with
/// `extra` lines.
fn roomy_limits(extra: &str) -> String {
    format!(
        r#"  per_ip: {{ connects: {{ rate: 10000/s, burst: 10000 }} }}
  per_client: {{ messages: {{ rate: 10000/s, burst: 10000 }} }}
{extra}"#
    )
}

#[tokio::test]
async fn slowloris_connections_do_not_stop_normal_clients() {
    // Both ends of every connection live in this process: size to the limit.
    let limit = rlimit::increase_nofile_limit(65_536).unwrap_or(1024) as usize;
    let slow_count = 1000.min(limit.saturating_sub(400) / 2);
    let gw = TestGateway::builder()
        .limits(&roomy_limits(
            "  handshake_timeout: 2s\n  header_timeout: 2s",
        ))
        .start()
        .await;
    // 1,000 connections that dribble a byte a second into the TLS handshake.
    let mut slow = Vec::new();
    for _ in 0..slow_count {
        match tokio::net::TcpStream::connect(gw.public).await {
            Ok(s) => slow.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    let dribble = tokio::spawn(async move {
        for i in 0..5u8 {
            for s in slow.iter_mut() {
                let _ = s.write_all(&[if i == 0 { 0x16 } else { 0x03 }]).await;
            }
            // The dribbling pace is the attack, not a wait.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        slow
    });
    // Normal clients are served promptly meanwhile.
    for i in 0..20 {
        let started = Instant::now();
        let r = gw
            .http
            .get(gw.url(&format!("/realtime/poll?channels=public.n{i}&timeout=0")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "request {i} took {:?}",
            started.elapsed()
        );
    }
    // The slow ones are cut at the handshake timeout.
    eventually(15, "slow connections dropped", || async {
        gw.stats().await["connections"].as_u64() < Some(50)
    })
    .await;
    drop(dribble.await.unwrap());
}

#[tokio::test]
async fn idle_and_oversize_requests_are_cut_off() {
    let gw = TestGateway::builder()
        .limits(&roomy_limits(
            "  header_timeout: 1s\n  max_header_size: 16KiB",
        ))
        .start()
        .await;
    // A TLS connection that never sends a request is closed.
    let mut idle = gw.tls_stream().await;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "idle connection closed");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A head over max_header_size: 431, not a buffer that grows.
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=public.h"))
        .header("x-big", "a".repeat(32 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.to_string().contains("closed"),
            "{e}"
        ),
    }
}

#[tokio::test]
async fn a_backend_that_never_reads_does_not_grow_memory() {
    let mut blackhole = TestApp::never_reads().start().await;
    // Without request buffering, which would take the body whole first
    // (to `buffering.max_body`, on disk past `buffering.memory`; the
    // buffering tests have that): here back-pressure is what bounds it.
    let gw = TestGateway::builder()
        .backend(&blackhole.url)
        .backend_keys(", buffering: { request: off }")
        .start()
        .await;
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = pulled.clone();
    let chunk = bytes::Bytes::from(vec![b'u'; 64 * 1024]);
    let body = futures_util::stream::unfold((), move |_| {
        let counter = counter.clone();
        let chunk = chunk.clone();
        async move {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Some((Ok::<_, std::io::Error>(chunk), ()))
        }
    });
    let upload = tokio::spawn({
        let req = gw
            .http
            .post(gw.url("/upload"))
            .body(reqwest::Body::wrap_stream(body));
        async move { req.send().await }
    });
    // Wait until the buffers between the client and the stalled backend
    // are full: the upload stops moving...
    eventually(20, "the upload stalls", || async {
        let before = pulled.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(250)).await;
        pulled.load(Ordering::Relaxed) - before < 1024 * 1024
    })
    .await;
    // ...and stays stalled (the pause is the measurement: back-pressure
    // shows as no progress over time).
    let a = pulled.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = pulled.load(Ordering::Relaxed);
    assert!(
        b < 64 * 1024 * 1024,
        "only socket buffers' worth was taken: {b} bytes"
    );
    assert!(
        b - a < 4 * 1024 * 1024,
        "the upload is stalled by back-pressure ({a} -> {b})"
    );
    upload.abort();
    blackhole.kill().await;
}

#[tokio::test]
async fn connect_loops_garbage_and_huge_publishes_stay_bounded() {
    let gw = TestGateway::builder()
        .limits(&roomy_limits(""))
        .start()
        .await;
    // Open and close connections in a tight loop.
    for _ in 0..300 {
        let s = gw.tls_stream().await;
        drop(s);
    }
    // WebSocket peers that send garbage.
    for _ in 0..20 {
        let ws = gw.ws("/realtime/ws").await;
        let mut raw = ws.into_inner();
        let _ = raw.write_all(&[0xff; 64]).await;
        let _ = raw.flush().await;
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await;
    }
    eventually(10, "every connection is gone", || async {
        gw.stats().await["connections"] == 0
    })
    .await;

    // 10,000 messages in one request: accepted, history stays at its size,
    // a subscriber's queue stays at client_queue.
    let _sub = gw.sse("/realtime/sse?channels=public.huge", None).await;
    let batch: Vec<Value> = (0..10_000)
        .map(|i| json!({"channel": "public.huge", "data": i}))
        .collect();
    let v = gw.publish(json!(batch)).await;
    assert_eq!(v["ids"].as_array().unwrap().len(), 10_000);
    let info: Value = gw.admin_get("/channels/public.huge").await;
    assert_eq!(info["history"]["length"], 1000);
    assert!(info["queued"].as_u64().unwrap() <= 1024);
}

#[tokio::test]
async fn channel_caps() {
    let gw = TestGateway::builder()
        .limits(&roomy_limits(
            "  max_subscribers_per_channel: 2\n  max_channels_per_connection: 3",
        ))
        .start()
        .await;
    let _a = gw.sse("/realtime/sse?channels=public.cap", None).await;
    let _b = gw.sse("/realtime/sse?channels=public.cap", None).await;
    let r = gw
        .http
        .get(gw.url("/realtime/sse?channels=public.cap"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "channel_full");
    let r = gw
        .http
        .get(gw.url("/realtime/sse?channels=public.a,public.b,public.c,public.d"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut ws = gw
        .ws("/realtime/ws?channels=public.a,public.b,public.c")
        .await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.d", "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "too_many_channels");
}

/// A refused connection is told how to come back; a refused op is not. The
/// words of each, pinned where both transports refuse the same thing.
#[tokio::test]
async fn refusals_keep_their_words_on_each_transport() {
    let gw = TestGateway::builder()
        .limits(&roomy_limits(
            "  max_subscribers_per_channel: 1\n  max_channels_per_connection: 2",
        ))
        .start()
        .await;
    let gw = &gw;
    let refused = |query: &'static str| async move {
        let r = gw.http.get(gw.url(query)).send().await.unwrap();
        let status = r.status().as_u16();
        // An admitted stream never ends: its body is not waited for.
        assert_ne!(status, 200, "{query} was admitted");
        (status, r.json::<Value>().await.unwrap())
    };
    let _holder = gw.sse("/realtime/sse?channels=public.cap", None).await;
    assert_eq!(
        refused("/realtime/sse?channels=public.cap").await,
        (
            503,
            json!({"error": "channel_full", "message": "channel `public.cap` has reached limits.max_subscribers_per_channel"})
        )
    );
    assert_eq!(
        refused("/realtime/sse?channels=public.x&cursor=zz~").await,
        (
            400,
            json!({"error": "bad_cursor", "message": "the cursor is malformed; reconnect without it"})
        )
    );
    assert_eq!(
        refused("/realtime/poll?channels=public.a,public.b,public.c").await,
        (
            400,
            json!({"error": "too_many_channels", "message": "at most 2 channels per connection"})
        )
    );
    let mut ws = gw.ws("/realtime/ws?channels=public.a").await;
    let mut refused_op = async |op: Value| {
        send_json(&mut ws, op).await;
        next_json(&mut ws).await
    };
    assert_eq!(
        refused_op(json!({"op": "subscribe", "channel": "public.cap", "ref": 1})).await,
        json!({"type": "error", "ref": 1, "code": "channel_full", "message": "the channel has reached limits.max_subscribers_per_channel"})
    );
    assert_eq!(
        refused_op(json!({"op": "subscribe", "channel": "public.x", "cursor": "zz~", "ref": 2}))
            .await,
        json!({"type": "error", "ref": 2, "code": "bad_cursor", "message": "the cursor is malformed"})
    );
    assert_eq!(
        refused_op(json!({"op": "subscribe", "channel": "public.b", "ref": 3})).await["type"],
        "ack"
    );
    assert_eq!(
        refused_op(json!({"op": "subscribe", "channel": "public.c", "ref": 4})).await,
        json!({"type": "error", "ref": 4, "code": "too_many_channels", "message": "at most 2 channels per connection"})
    );
}
