//! permessage-deflate (RFC 7692) on pushgate's own WebSocket and on the
//! Pusher socket, over TLS and plain listeners: raw frames of our own
//! (`ws_deflate/raw.rs`), Node's `ws` and Python's `websockets`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

mod clients;
mod pusher;
mod raw;

use raw::{CONT, PING, TEXT};

/// Removes a test's temporary directory when the test ends.
pub(crate) struct DirGuard(pub PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JSON payload of about `n` bytes that compresses well, as real ones do.
pub(crate) fn rows(n: usize) -> Value {
    let row = json!({"sku": "ABC-123", "price": 12.5, "name": "widget", "stock": true});
    let count = n / row.to_string().len() + 1;
    json!({ "rows": vec![row; count] })
}

/// A TLS gateway with `realtime` lines added after the default ones.
async fn gateway(realtime: &str) -> (TestGateway, DirGuard) {
    let gw = TestGateway::builder()
        .tag("deflate")
        .realtime(&format!("  heartbeat: 15s\n{realtime}"))
        .start()
        .await;
    let guard = DirGuard(gw.dir.clone());
    (gw, guard)
}

/// A counter's value in the metrics text (0 when absent).
pub(crate) fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

async fn tls_raw(
    gw: &TestGateway,
    path: &str,
    offer: Option<&str>,
) -> raw::Raw<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    raw::connect(gw.tls_stream().await, path, offer).await
}

const OFFER: &str = "permessage-deflate; client_max_window_bits";

#[tokio::test]
async fn a_message_is_compressed_once_for_every_subscriber_and_resumes_exactly() {
    let (gw, _dir) = gateway("").await;
    let path = "/realtime/ws?channels=public.z&cursor_frames=1";
    let mut a = tls_raw(&gw, path, Some(OFFER)).await;
    let mut b = tls_raw(
        &gw,
        path,
        Some("permessage-deflate; client_no_context_takeover"),
    )
    .await;
    let mut plain = tls_raw(&gw, path, None).await;
    assert_eq!(
        a.extensions.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        )
    );
    assert_eq!(
        b.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    assert_eq!(plain.extensions, None, "no offer, no extension");

    let big = rows(2000);
    gw.publish_one("public.z", big.clone()).await;
    let (fa, fb) = (a.next_data().await, b.next_data().await);
    assert!(fa.rsv1 && fa.fin && fa.opcode == TEXT, "{fa:?}");
    assert_eq!(fa.payload, fb.payload, "one compressed payload for both");
    assert!(
        fa.payload.len() * 5 < big.to_string().len(),
        "{}",
        fa.payload.len()
    );
    let m = raw::json(&fa);
    assert_eq!((&m["type"], &m["data"]), (&json!("message"), &big));
    assert!(
        m.get("cursor").is_none(),
        "the shared payload has no cursor"
    );
    // The cursor follows in a small frame of the connection's own.
    let cursor_frame = a.next_data().await;
    assert!(!cursor_frame.rsv1);
    let c = raw::json(&cursor_frame);
    assert_eq!(c["type"], "cursor", "{c}");
    let cursor = c["cursor"].as_str().unwrap().to_owned();
    assert_eq!(raw::json(&b.next_data().await)["cursor"], cursor);
    // The connection without the extension gets it plain, cursor inside.
    let fp = plain.next_data().await;
    assert!(!fp.rsv1);
    assert_eq!(raw::json(&fp)["cursor"], cursor);

    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(&metrics, "pushgate_ws_deflate_messages_compressed_total"),
        1,
        "compressed once, not once per socket"
    );
    assert_eq!(counter(&metrics, "pushgate_ws_deflate_frames_total"), 2);
    assert_eq!(counter(&metrics, "pushgate_ws_deflate_negotiated_total"), 2);
    let (before, after) = (
        counter(&metrics, "pushgate_ws_deflate_bytes_before_total"),
        counter(&metrics, "pushgate_ws_deflate_bytes_after_total"),
    );
    assert_eq!(after, 2 * fa.payload.len() as u64);
    assert!(before > 5 * after, "{before} {after}");

    // Under the threshold: plain, RSV1 clear, the cursor inside.
    gw.publish_one("public.z", json!({"n": 1})).await;
    let small = a.next_data().await;
    assert!(!small.rsv1);
    let small = raw::json(&small);
    assert_eq!(small["data"], json!({"n": 1}));
    assert!(small["cursor"].is_string());
    gw.publish_one("public.z", json!({"n": 2})).await;

    // Resuming from the cursor frame replays exactly what came after.
    let resume = format!("/realtime/ws?cursor={cursor}");
    let mut r = tls_raw(&gw, &resume, Some(OFFER)).await;
    let got: Vec<Value> = [r.next_data().await, r.next_data().await]
        .iter()
        .map(|f| raw::json(f)["data"].clone())
        .collect();
    assert_eq!(got, [json!({"n": 1}), json!({"n": 2})]);
}

#[tokio::test]
async fn compressed_client_frames_inflate_fragmented_and_mixed() {
    let (gw, _dir) = gateway("").await;
    let mut sub = tls_raw(&gw, "/realtime/ws?channels=chat.d", None).await;
    // No client_no_context_takeover offered: it is asked all the same, so
    // the gateway keeps no inflater between messages.
    let mut c = tls_raw(&gw, "/realtime/ws", Some("permessage-deflate")).await;
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let op = |n: u64| {
        json!({"op": "publish", "channel": "chat.d", "event": "e", "data": {"n": n, "pad": rows(600)}, "ref": n})
            .to_string()
    };
    let z = || raw::Deflater::new();
    // 1: one compressed frame.
    c.send(true, true, TEXT, &z().message(op(1).as_bytes()))
        .await;
    // 2: fragmented in three with RSV1 on the first only, a ping between.
    let two = z().message(op(2).as_bytes());
    let third = two.len() / 3;
    c.send(false, true, TEXT, &two[..third]).await;
    c.send(false, false, CONT, &two[third..2 * third]).await;
    c.send(true, false, PING, b"hi").await;
    c.send(true, false, CONT, &two[2 * third..]).await;
    // 3: uncompressed, between compressed ones.
    c.send(true, false, TEXT, op(3).as_bytes()).await;
    // 4: a plain fragmented message, then 5: compressed again.
    let four = op(4);
    c.send(false, false, TEXT, &four.as_bytes()[..10]).await;
    c.send(true, false, CONT, &four.as_bytes()[10..]).await;
    c.send(true, true, TEXT, &z().message(op(5).as_bytes()))
        .await;
    let mut acks = Vec::new();
    let mut pong = false;
    while acks.len() < 5 {
        let f = c.next().await;
        if f.opcode == 0xA {
            pong = f.payload == b"hi";
            continue;
        }
        let v = raw::json(&f);
        assert_eq!(v["type"], "ack", "{v}");
        acks.push(v["ref"].as_u64().unwrap());
    }
    assert!(pong, "a ping between fragments is answered");
    assert_eq!(acks, [1, 2, 3, 4, 5]);
    for n in 1..=5u64 {
        let m = raw::json(&sub.next_data().await);
        assert_eq!(m["data"]["n"], n, "{m}");
        assert_eq!(m["data"]["pad"], rows(600));
    }
}

#[tokio::test]
async fn a_bomb_closes_1009_and_bad_reserved_bits_close_1002() {
    let (gw, _dir) = gateway("  max_message: 64KiB\n").await;
    let path = "/realtime/ws";
    let offer = Some("permessage-deflate; client_no_context_takeover");
    // 16 MiB of one byte: about 16 KiB on the wire.
    let bomb = raw::Deflater::new().message(&vec![b'a'; 16 << 20]);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let mut c = tls_raw(&gw, path, offer).await;
    c.send(true, true, TEXT, &bomb).await;
    assert_eq!(c.close_code().await, Some(1009));
    // Just over the limit, fragmented: 1009 too; just under: accepted.
    let mut c = tls_raw(&gw, path, offer).await;
    let over = raw::Deflater::new().message(&vec![b' '; 64 * 1024 + 4097]);
    c.send(false, true, TEXT, &over[..over.len() / 2]).await;
    c.send(true, false, CONT, &over[over.len() / 2..]).await;
    assert_eq!(c.close_code().await, Some(1009));
    let mut c = tls_raw(&gw, path, offer).await;
    let under = json!({"op": "publish", "channel": "chat.b", "data": " ".repeat(60_000), "ref": 1})
        .to_string();
    c.send(
        true,
        true,
        TEXT,
        &raw::Deflater::new().message(under.as_bytes()),
    )
    .await;
    let answer = raw::json(&c.next_data().await);
    assert_eq!(answer["type"], "ack", "{answer}");

    // RSV1 on a control frame, or on a continuation: 1002.
    let mut c = tls_raw(&gw, path, offer).await;
    c.send(true, true, PING, b"").await;
    assert_eq!(c.close_code().await, Some(1002));
    let mut c = tls_raw(&gw, path, offer).await;
    let msg = raw::Deflater::new().message(under.as_bytes());
    c.send(false, true, TEXT, &msg[..10]).await;
    c.send(true, true, CONT, &msg[10..]).await;
    assert_eq!(c.close_code().await, Some(1002));
    // RSV1 where no extension was agreed: 1002.
    let mut c = tls_raw(&gw, path, None).await;
    c.send(true, true, TEXT, &msg).await;
    assert_eq!(c.close_code().await, Some(1002));
    // A client that offered to take a window limit is told 1 KiB (its
    // inflater here keeps no more) and is read within it.
    let noise: Vec<u8> = (0u32..2000)
        .map(|i| b'a' + ((i.wrapping_mul(2_654_435_761) >> 24) % 26) as u8)
        .collect();
    let far = [&b"\""[..], &noise, &noise, b"\""].concat();
    let op = |pad: &[u8]| {
        let mut v = br#"{"op":"publish","channel":"chat.w","ref":3,"data":"#.to_vec();
        v.extend_from_slice(pad);
        v.push(b'}');
        v
    };
    let mut c = tls_raw(
        &gw,
        path,
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert!(
        c.extensions
            .as_deref()
            .unwrap()
            .ends_with("client_max_window_bits=10")
    );
    let near = raw::Deflater::with_window(10).message(&op(&far));
    c.send(true, true, TEXT, &near).await;
    assert_eq!(raw::json(&c.next_data().await)["type"], "ack");
    // Not deflate data at all: 1007.
    let mut c = tls_raw(&gw, path, offer).await;
    c.send(true, true, TEXT, &[0xff; 64]).await;
    assert_eq!(c.close_code().await, Some(1007));
    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(
            &metrics,
            "pushgate_disconnects_total{transport=\"ws\",reason=\"too_big\"}"
        ),
        2,
        "{metrics}"
    );
}

#[tokio::test]
async fn disabled_negotiates_nothing_and_a_reload_applies_to_new_connections() {
    let (gw, _dir) =
        gateway("  compression: { enabled: false, threshold: 1KiB, level: 9 }\n").await;
    let path = "/realtime/ws?channels=public.r";
    let mut old = tls_raw(&gw, path, Some(OFFER)).await;
    assert_eq!(old.extensions, None);
    gw.reload_with("enabled: false", "enabled: true");
    let mut new = tls_raw(&gw, &format!("{path}&cursor_frames=1"), Some(OFFER)).await;
    assert_eq!(
        new.extensions.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        )
    );
    // Over the new threshold (1 KiB): compressed for the new connection.
    let big = rows(1500);
    gw.publish_one("public.r", big.clone()).await;
    let f = old.next_data().await;
    assert!(!f.rsv1);
    assert_eq!(raw::json(&f)["data"], big);
    let f = new.next_data().await;
    assert!(f.rsv1);
    assert_eq!(raw::json(&f)["data"], big);
    // Under it: plain.
    gw.publish_one("public.r", rows(600)).await;
    let _cursor = new.next_data().await;
    let f = new.next_data().await;
    assert!(!f.rsv1, "600 B is under the 1 KiB threshold");
    // RSV1 from a client that was not agreed with: 1002.
    old.send(
        true,
        true,
        TEXT,
        &raw::Deflater::new().message(b"{\"op\":\"ping\"}"),
    )
    .await;
    assert_eq!(old.close_code().await, Some(1002));
}

#[tokio::test]
async fn a_small_server_window_gets_only_messages_that_fit_it_compressed() {
    let (gw, _dir) = gateway("").await;
    let path = "/realtime/ws?channels=public.w&cursor_frames=1";
    let mut c = tls_raw(
        &gw,
        path,
        Some("permessage-deflate; server_max_window_bits=10"),
    )
    .await;
    assert_eq!(
        c.extensions.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        )
    );
    // Malformed first offer: declined, the second taken.
    let c2 = tls_raw(
        &gw,
        path,
        Some("permessage-deflate; server_max_window_bits=20, permessage-deflate; client_no_context_takeover"),
    )
    .await;
    assert_eq!(
        c2.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let bad = tls_raw(&gw, path, Some("permessage-deflate; nonsense=1")).await;
    assert_eq!(bad.extensions, None, "the handshake succeeds without it");
    let within = rows(700);
    gw.publish_one("public.w", within.clone()).await;
    let f = c.next_data().await;
    assert!(f.rsv1, "under 1 KiB fits a 2^10 window");
    // Inflated with the window the client asked for: what a client that
    // keeps only 1 KiB can read.
    let m: Value = serde_json::from_slice(&raw::inflate_with(&f.payload, 10)).unwrap();
    assert_eq!(m["data"], within);
    let _cursor = c.next_data().await;
    let beyond = rows(3000);
    gw.publish_one("public.w", beyond.clone()).await;
    let f = c.next_data().await;
    assert!(!f.rsv1, "longer than the client's window: plain");
    assert_eq!(raw::json(&f)["data"], beyond);
}

#[tokio::test]
async fn a_client_that_did_not_ask_for_cursor_frames_gets_its_cursor_inline() {
    let (gw, _dir) = gateway("").await;
    let path = "/realtime/ws?channels=public.i";
    // Negotiates deflate (as Node's `ws` and Python's `websockets` do by
    // default) but knows nothing of cursor frames.
    let mut c = tls_raw(&gw, path, Some(OFFER)).await;
    assert!(c.extensions.is_some());
    let big = rows(2000);
    gw.publish_one("public.i", big.clone()).await;
    gw.publish_one("public.i", json!({"n": 1})).await;
    let f = c.next_data().await;
    assert!(!f.rsv1, "sent plain: its cursor is its own");
    let m = raw::json(&f);
    assert_eq!(m["data"], big);
    let cursor = m["cursor"].as_str().expect("the cursor inline").to_owned();
    let next = raw::json(&c.next_data().await);
    assert_eq!(next["type"], "message", "no cursor frame between: {next}");
    assert_eq!(next["data"], json!({"n": 1}));
    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(&metrics, "pushgate_ws_deflate_messages_compressed_total"),
        0,
        "nothing compressed per connection"
    );
    // Its cursor resumes after the big message.
    let mut r = tls_raw(&gw, &format!("/realtime/ws?cursor={cursor}"), Some(OFFER)).await;
    assert_eq!(raw::json(&r.next_data().await)["data"], json!({"n": 1}));
}

#[tokio::test]
async fn a_long_cursor_goes_plain_and_the_message_is_compressed_once() {
    let (gw, _dir) = gateway("").await;
    // Twenty channels with long names: a cursor far over the threshold.
    let channels: Vec<String> = (0..20)
        .map(|i| format!("public.a-rather-long-channel-name-{i:02}"))
        .collect();
    let path = format!(
        "/realtime/ws?channels={}&cursor_frames=1",
        channels.join(",")
    );
    let mut socks = Vec::new();
    for _ in 0..3 {
        socks.push(tls_raw(&gw, &path, Some(OFFER)).await);
    }
    let big = rows(2000);
    for channel in &channels[..2] {
        gw.publish_one(channel, big.clone()).await;
        for s in &mut socks {
            let f = s.next_data().await;
            assert!(f.rsv1);
            assert_eq!(raw::json(&f)["channel"], *channel);
            let c = s.next_data().await;
            assert!(!c.rsv1, "the cursor frame goes plain");
            let c = raw::json(&c);
            assert_eq!(c["type"], "cursor");
            assert!(c["cursor"].as_str().unwrap().len() > 256, "{c}");
        }
    }
    let metrics = gw.metrics_text().await;
    assert_eq!(
        counter(&metrics, "pushgate_ws_deflate_messages_compressed_total"),
        2,
        "once per message, not once per socket and batch"
    );
    assert_eq!(counter(&metrics, "pushgate_ws_deflate_frames_total"), 6);
}

/// Run `cmd` (a client script), run `publish` once it reports the socket
/// open; its three lines.
pub(crate) async fn drive_client<T>(
    mut cmd: tokio::process::Command,
    publish: impl std::future::Future<Output = T>,
) -> Vec<Value> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .expect("the client script starts (scripts/test installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .unwrap_or_default();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    let opened = next().await;
    publish.await;
    let message = next().await;
    let ack = next().await;
    vec![opened, message, ack]
}
