//! SSE streams on one HTTP/2 connection are apart: a stream whose client
//! stopped reading it is evicted and ends alone, while the other streams on
//! the connection go on. A stream whose window never comes back is never
//! polled, so it cannot end by itself: `backend.timeout` after its
//! eviction, its connection is cut.

use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;
use serde_json::json;

use crate::common::h2_client;
use crate::common::*;

/// Open an SSE stream on `h2`: its body.
async fn subscribe(h2: &mut SendRequest<Bytes>, gw: &TestGateway, channel: &str) -> RecvStream {
    let url = gw.url(&format!("/realtime/sse?channels={channel}"));
    let req = http::Request::get(url).body(()).unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    let resp = resp.await.expect("an answer");
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

/// Read `body` (giving its window back) until `needle` arrives; the text
/// read. Panics when the stream ends or errs first, or after 10 s.
async fn read_until(body: &mut RecvStream, needle: &str) -> String {
    let mut text = String::new();
    let reading = async {
        while !text.contains(needle) {
            let chunk = body.data().await.expect("the stream goes on").unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("in time");
    text
}

#[tokio::test]
async fn an_evicted_sse_stream_ends_alone_on_its_h2_connection() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 8\n  max_message: 64KiB")
        .start()
        .await;
    let mut h2 = h2_client::connect_small_stream_windows(&gw).await;
    let mut stuck = subscribe(&mut h2, &gw, "public.stuck").await;
    let mut live = subscribe(&mut h2, &gw, "public.live").await;
    eventually(5, "both streams subscribed", || async {
        gw.stats().await["transports"]["sse"] == 2
    })
    .await;
    read_until(&mut live, ": pushgate").await;
    // The stuck stream's window fills, then what the gateway holds for it
    // (a batch, its queue): far more than both, so it is evicted. A publish
    // is answered before the subscriber's loop has pushed it, let alone
    // written it: the flood's start is read before the rest is sent, or a
    // fast publisher can fill the queue before the stream's first turn.
    let pad = "x".repeat(4 * 1024);
    gw.publish(json!({"channel": "public.stuck", "data": {"n": 0, "pad": pad}}))
        .await;
    let start = read_until(&mut stuck, r#""n":0"#).await;
    for n in 1..100 {
        gw.publish(json!({"channel": "public.stuck", "data": {"n": n, "pad": pad}}))
            .await;
    }
    // Its neighbour on the same connection goes on.
    for n in 0..3 {
        let marker = format!("still-live-{n}");
        gw.publish_one("public.live", json!(marker)).await;
        read_until(&mut live, &marker).await;
    }
    // Read at last, the evicted stream ends by itself (its connection
    // open), short of the flood's end.
    let ended = async {
        let mut text = start;
        loop {
            match stuck.data().await {
                Some(Ok(chunk)) => {
                    let _ = stuck.flow_control().release_capacity(chunk.len());
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
                Some(Err(_)) | None => return text,
            }
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the evicted stream ends");
    assert!(text.contains(r#""n":0"#), "it had the flood's start");
    assert!(
        !text.contains(r#""n":99"#),
        "evicted before the flood's end"
    );
    eventually(5, "the eviction counted", || async {
        gw.stats().await["evicted"].as_u64() >= Some(1)
    })
    .await;
    gw.publish_one("public.live", json!("after")).await;
    read_until(&mut live, "after").await;
}

#[tokio::test]
async fn an_evicted_h2_stream_never_read_cuts_its_connection() {
    let gw = TestGateway::builder()
        .realtime("  client_queue: 8\n  max_message: 64KiB")
        .backend_timeouts("500ms", "1s")
        .start()
        .await;
    // No stream window at all: the gateway can send the stream nothing,
    // and hyper never polls its body.
    let mut settings = h2::client::Builder::new();
    settings
        .initial_window_size(0)
        .initial_connection_window_size(16 * 1024 * 1024);
    let mut h2 = h2_client::connect_with(&gw, true, &settings).await;
    let mut stuck = subscribe(&mut h2, &gw, "public.stuck").await;
    eventually(5, "subscribed", || async {
        gw.stats().await["transports"]["sse"] == 1
    })
    .await;
    let pad = "x".repeat(4 * 1024);
    for n in 0..100 {
        gw.publish(json!({"channel": "public.stuck", "data": {"n": n, "pad": pad}}))
            .await;
    }
    // Never read, it is cut with its connection: its slot, registration
    // and subscription go.
    eventually(10, "the stuck stream's connection cut", || async {
        gw.stats().await["transports"]["sse"] == 0
    })
    .await;
    eventually(5, "the eviction counted", || async {
        gw.stats().await["evicted"].as_u64() >= Some(1)
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), stuck.data())
        .await
        .expect("the stream ends");
    assert!(!matches!(ended, Some(Ok(_))), "{ended:?}");
}

/// A connection's bytes as the client reads them, counting the TLS records
/// that start in them (a record's 5-byte header gives its length).
struct RecordCounter {
    tcp: tokio::net::TcpStream,
    records: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Header bytes of the record being read so far, then its body left.
    header: Vec<u8>,
    body_left: usize,
}

impl RecordCounter {
    fn count(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 5 {
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header.clear();
                self.records
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

impl tokio::io::AsyncRead for RecordCounter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf);
        let fresh = buf.filled()[before..].to_vec();
        self.count(&fresh);
        polled
    }
}

impl tokio::io::AsyncWrite for RecordCounter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn one_message_to_many_streams_of_a_connection_shares_tls_records() {
    // A message to 20 SSE streams of one h2 connection: 20 DATA frames of
    // over 256 bytes each, which went out as 20 records in 20 writes.
    const STREAMS: usize = 20;
    let gw = TestGateway::builder().start().await;
    let records = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tcp = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    let counter = RecordCounter {
        tcp,
        records: records.clone(),
        header: Vec::new(),
        body_left: 0,
    };
    let mut h2 = h2_client::connect_over(&gw, counter, true, &h2::client::Builder::new()).await;
    let mut bodies = Vec::new();
    for _ in 0..STREAMS {
        let mut body = subscribe(&mut h2, &gw, "public.many").await;
        read_until(&mut body, ": pushgate").await;
        bodies.push(body);
    }
    eventually(5, "every stream subscribed", || async {
        gw.stats().await["transports"]["sse"] == STREAMS
    })
    .await;
    let before = records.load(std::sync::atomic::Ordering::Relaxed);
    let pad = "x".repeat(400);
    gw.publish_one("public.many", json!({"shared": pad})).await;
    for body in &mut bodies {
        read_until(body, "shared").await;
    }
    let used = records.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        used < STREAMS / 2,
        "{used} TLS records carried one message to {STREAMS} streams"
    );
    // A payload over 1 KiB goes out frame by frame, each frame whole in
    // one record (h2 writes its head and the rest in two pieces).
    let before = records.load(std::sync::atomic::Ordering::Relaxed);
    let pad = "y".repeat(3000);
    gw.publish_one("public.many", json!({"large": pad})).await;
    for body in &mut bodies {
        read_until(body, "large").await;
    }
    let used = records.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        used <= STREAMS + STREAMS / 4,
        "{used} TLS records carried a 3 KiB message to {STREAMS} streams"
    );
}
