//! Resuming with a long cursor: the replay streams within a bounded batch
//! however slowly the client reads, the cursor is not repeated in every
//! message, and a cursor larger than a connection may follow is refused
//! before any history is read.
//!
//! The memory bound is shown through `pushgate_realtime_batch_peak_bytes`,
//! the most bytes any connection rendered before handing them to its socket.
//! It does not depend on timing: a gateway that rendered a whole replay at
//! once reports the whole replay there on its first write, whatever the
//! reader does next; one that streams never reports more than a batch.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common::*;

/// Messages in the replayed channel's history.
const HISTORY: usize = 1000;
/// Channels the long cursor names (78 of ~200 characters: about 16 KiB).
const CHANNELS: usize = 78;
/// A batch (64 KiB) plus one event with its cursor, and room to spare; a
/// whole replay of this test is ~600 KiB of messages (and 16 MiB of cursors
/// when each carries it).
const BOUND: u64 = 160 * 1024;

async fn gateway() -> TestGateway {
    TestGateway::builder()
        .realtime(
            r#"  heartbeat: 15s
  client_queue: 64
  history: { size: 2000, ttl: 10m }"#,
        )
        .limits(
            r#"  per_ip: { connects: { rate: 10000/s, burst: 10000 } }
  per_client: { messages: { rate: 10000/s, burst: 10000 } }"#,
        )
        .start()
        .await
}

/// Fill `public.hist` and return a cursor that resumes it from the start
/// and names `CHANNELS - 1` other long-named channels.
async fn long_cursor(gw: &TestGateway) -> String {
    // Messages of ~600 B: the replay alone is ~600 KiB, its cursors 16 MiB.
    let pad = "h".repeat(512);
    for chunk in 0..HISTORY / 100 {
        let batch: Vec<_> = (0..100)
            .map(|i| json!({"channel": "public.hist", "data": {"n": chunk * 100 + i, "pad": pad}}))
            .collect();
        gw.publish(json!(batch)).await;
    }
    let (status, body) = gw.poll("channels=public.x&timeout=0").await;
    assert_eq!(status, 200);
    let epoch = body["cursor"].as_str().unwrap().split('~').next().unwrap();
    let mut cursor = format!("{epoch}~public.hist~0");
    for i in 1..CHANNELS {
        cursor.push_str(&format!("~public.{i:03}{}~0", "p".repeat(190)));
    }
    assert!(cursor.len() > 15 * 1024);
    cursor
}

/// The gateway's peak batch, from `/metrics`.
async fn batch_peak(gw: &TestGateway) -> u64 {
    let text = gw.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("pushgate_realtime_batch_peak_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no batch peak in\n{text}"))
}

async fn delivered(gw: &TestGateway) -> u64 {
    gw.stats().await["messages"]["delivered"].as_u64().unwrap()
}

/// A TLS connection whose receive window is a few KiB, as a client on a
/// slow link that stops reading.
async fn small_window(gw: &TestGateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(gw.public).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    gw.tls_connector().connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn an_sse_replay_to_a_reader_that_never_reads_stays_within_a_batch() {
    let gw = gateway().await;
    let cursor = long_cursor(&gw).await;
    let mut stuck = small_window(&gw).await;
    let head =
        format!("GET /realtime/sse HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {cursor}\r\n\r\n");
    stuck.write_all(head.as_bytes()).await.unwrap();
    stuck.flush().await.unwrap();
    eventually(10, "the replay started", || async {
        delivered(&gw).await > 0
    })
    .await;
    let peak = batch_peak(&gw).await;
    assert!(peak > 0 && peak <= BOUND, "peak batch {peak} B");

    // A client that reads gets the whole replay, in order, once; every
    // event's id is the cursor, and the JSON leaves the long cursor out.
    let mut sse = gw.sse("/realtime/sse", Some(&cursor)).await;
    for n in 0..HISTORY {
        let ev = sse.expect().await;
        let m = ev.json();
        assert_eq!(m["data"]["n"], n, "in order, without loss or duplicates");
        assert!(m.get("cursor").is_none(), "a long cursor is not repeated");
        let id = ev.id.expect("every event carries the cursor");
        assert!(id.contains(&format!("~public.hist~{}~", m["id"].as_str().unwrap())));
    }
    assert!(batch_peak(&gw).await <= BOUND);
    drop(stuck);
}

#[tokio::test]
async fn a_websocket_replay_to_a_reader_that_never_reads_stays_within_a_batch() {
    let gw = gateway().await;
    let cursor = long_cursor(&gw).await;
    let stream = small_window(&gw).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "wss://localhost:{}/realtime/ws?cursor={cursor}",
        gw.public.port()
    );
    let (_stuck, _) = tokio_tungstenite::client_async(url.into_client_request().unwrap(), stream)
        .await
        .unwrap();
    eventually(10, "the replay started", || async {
        delivered(&gw).await > 0
    })
    .await;
    let peak = batch_peak(&gw).await;
    assert!(peak > 0 && peak <= BOUND, "peak batch {peak} B");

    // A reading client gets all of it; the cursor comes with the last frame
    // of a batch, and resuming from the last one replays nothing again.
    let mut ws = gw.ws(&format!("/realtime/ws?cursor={cursor}")).await;
    let mut last_cursor = None;
    for n in 0..HISTORY {
        let m = next_json(&mut ws).await;
        assert_eq!(m["data"]["n"], n, "in order, without loss or duplicates");
        last_cursor = m["cursor"].as_str().map(str::to_string).or(last_cursor);
    }
    let last_cursor = last_cursor.expect("a batch's last frame carries the cursor");
    let mut again = gw.ws(&format!("/realtime/ws?cursor={last_cursor}")).await;
    gw.publish_one("public.hist", json!({"n": "live"})).await;
    assert_eq!(next_json(&mut again).await["data"]["n"], "live");
    assert!(batch_peak(&gw).await <= BOUND);
}

#[tokio::test]
async fn a_long_poll_replay_comes_in_capped_answers() {
    let gw = gateway().await;
    let mut cursor = long_cursor(&gw).await;
    let mut seen: Vec<u64> = Vec::new();
    let mut answers = 0;
    while seen.len() < HISTORY {
        let resp = gw
            .http
            .get(gw.url(&format!("/realtime/poll?cursor={cursor}&timeout=0")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.unwrap();
        assert!(
            bytes.len() as u64 <= 4 * BOUND,
            "answer of {} B",
            bytes.len()
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let messages = body["messages"].as_array().unwrap();
        assert!(!messages.is_empty(), "a replay answers at once");
        for m in messages {
            assert!(m.get("cursor").is_none(), "a long cursor is not repeated");
            seen.push(m["data"]["n"].as_u64().unwrap());
        }
        cursor = body["cursor"].as_str().unwrap().to_string();
        answers += 1;
    }
    assert!(answers > 1, "the replay was cut into several answers");
    assert_eq!(seen, (0..HISTORY as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_cursor_larger_than_a_connection_may_follow_is_refused() {
    let gw = TestGateway::builder()
        .limits("  max_channels_per_connection: 5")
        .start()
        .await;
    let six: String = (0..6).map(|i| format!("~public.c{i}~0")).collect();
    let five: String = (0..5).map(|i| format!("~public.c{i}~0")).collect();
    let epoch = "1";
    let (status, body) = gw.poll(&format!("cursor={epoch}{six}&timeout=0")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("too_many_channels"))
    );
    let (status, _) = gw.poll(&format!("cursor={epoch}{five}&timeout=0")).await;
    assert_eq!(status, 200);
    // As long as five channels of the longest names may be: one byte over.
    let long: String = (0..5)
        .map(|i| format!("~public.{i}{}~18446744073709551615", "n".repeat(192)))
        .collect();
    let over = format!("ffffffffffffffff{long}0");
    let r = gw
        .http1
        .get(gw.url("/realtime/sse"))
        .header("last-event-id", over)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_channels");
    // The same bound on a WebSocket subscribe op's cursor.
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.c0", "cursor": format!("{epoch}{six}"), "ref": 1}),
    )
    .await;
    let err = next_json(&mut ws).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("too_many_channels"))
    );
}
