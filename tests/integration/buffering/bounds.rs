//! The bounds on what buffering holds: an answer's spool never holds more
//! than `max_body` (and a read) however long the answer, the temporary
//! files of the whole gateway stay under `limits.buffers.disk`, and a
//! client that takes nothing of its answer (an HTTP/2 stream whose window
//! is never opened) has its buffer let go after `buffering.body_timeout`;
//! on both engines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::spill::buffered_bytes;
use super::worker::{BIG, one_worker};
use super::{gateway, read_head, send_get};
use crate::common::*;

/// How much one read of the upstream may add past a bound.
const ONE_READ: u64 = 64 * 1024;

/// Samples `pushgate_proxy_buffered_bytes{store="disk"}` until stopped;
/// the most it saw.
struct DiskWatch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DiskWatch {
    fn start(gw: &TestGateway) -> DiskWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicU64::new(0));
        let (http, url) = (gw.http.clone(), gw.admin_url("/metrics"));
        let task = tokio::spawn({
            let (stop, most) = (stop.clone(), most.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    let text = http.get(&url).send().await.unwrap().text().await.unwrap();
                    most.fetch_max(buffered_bytes(&text, "disk"), Ordering::SeqCst);
                }
            }
        });
        DiskWatch { stop, most, task }
    }

    async fn most(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.most.load(Ordering::SeqCst)
    }
}

/// Read `n` bytes off `io` in small pieces with a pause between them: a
/// reader steadily slower than the upstream.
async fn read_slowly<R: AsyncRead + Unpin>(io: &mut R, n: usize) {
    let mut got = 0;
    let mut piece = vec![0u8; 32 * 1024];
    while got < n {
        let k = io.read(&mut piece).await.unwrap();
        assert!(k > 0, "closed after {got} bytes");
        got += k;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_slow_steady_reader_never_makes_the_spool_outgrow_max_body() {
    // A reader that never quite catches up, of 8 times max_body: the
    // spool's file stays within max_body and a read all along.
    const MAX_BODY: u64 = 256 * 1024;
    let worker = one_worker().await;
    let gw = gateway(
        &worker,
        ", buffering: { memory: 16KiB, max_body: 256KiB }",
        "",
        "",
    )
    .await;
    let before = gw.relayed().await;
    let watch = DiskWatch::start(&gw);
    let mut io = send_get(&gw, "/big").await;
    let (status, _, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    // The whole answer: the sockets between take the first few MiB, the
    // rest goes at the reader's pace.
    read_slowly(&mut io, BIG - got.len()).await;
    let most = watch.most().await;
    assert!(most > 0, "the answer went to a file at all");
    assert!(
        most <= MAX_BODY + ONE_READ,
        "the relay's spool held {most} bytes on disk"
    );
    drop(io);
    assert_eq!(gw.engine_since(before).await, "relay");

    let watch = DiskWatch::start(&gw);
    let mut resp = gw.http.get(gw.url("/big?chunked")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut got = 0;
    while got < 8 * MAX_BODY {
        got += resp.chunk().await.unwrap().expect("more").len() as u64;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let most = watch.most().await;
    assert!(most > 0, "the answer went to a file at all");
    assert!(
        most <= MAX_BODY + ONE_READ,
        "hyper's spool held {most} bytes on disk"
    );
}

#[tokio::test]
async fn the_disk_bound_holds_for_all_spools_and_refuses_uploads_past_it() {
    // Room for 256 KiB of temporary files in all: a paused reader's answer
    // stops there (the rest waits for the client), and an upload that
    // needs the disk meanwhile is refused 503 with Retry-After, before the
    // application sees it.
    const DISK: u64 = 256 * 1024;
    let worker = one_worker().await;
    let extra = "limits:\n  buffers: { memory: 64KiB, disk: 256KiB }\n";
    let gw = gateway(&worker, ", buffering: { memory: 16KiB }", "", extra).await;
    let mut io = send_get(&gw, "/big").await;
    let (status, head, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    eventually(10, "the answer filled the disk bound", || async {
        buffered_bytes(&gw.metrics_text().await, "disk") >= DISK
    })
    .await;
    let watch = DiskWatch::start(&gw);
    let resp = gw
        .http
        .post(gw.url("/upload"))
        .body(vec![b'u'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.text().await.unwrap().contains("buffers_full"));
    assert!(!worker.has_seen("/upload"), "the application never saw it");
    let most = watch.most().await;
    assert!(most <= DISK + ONE_READ, "{most} bytes on disk");
    assert_eq!(worker.finished(), 0, "the rest waits in the worker");
    // Read on: the answer still arrives whole, at the reader's pace.
    let body = super::read_body(&mut io, got, super::length_of(&head)).await;
    super::assert_big(&body);
}

/// An HTTP/2 connection (ALPN) whose streams' windows are `window` bytes
/// and are opened only as the body is read.
async fn h2_client(
    gw: &TestGateway,
    window: u32,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = gw
        .tls_connector_alpn(vec![b"h2".to_vec()])
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .adaptive_window(false)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn nothing_buffered(metrics: &str) -> bool {
    buffered_bytes(metrics, "disk") == 0 && buffered_bytes(metrics, "memory") == 0
}

#[tokio::test]
async fn a_client_that_takes_nothing_loses_its_buffer_after_body_timeout() {
    let worker = one_worker().await;
    let gw = gateway(
        &worker,
        ", buffering: { memory: 16KiB, body_timeout: 1s }",
        "",
        "",
    )
    .await;
    // HTTP/2 with a 16 KiB window never opened: the stream holds its
    // spool until the gateway ends it; the connection stays.
    let mut h2 = h2_client(&gw, 16 * 1024).await;
    let req = hyper::Request::get(gw.url("/big"))
        .body(Empty::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    eventually(10, "the answer is held for the client", || async {
        buffered_bytes(&gw.metrics_text().await, "disk") > 0
    })
    .await;
    eventually(10, "its buffer is let go", || async {
        nothing_buffered(&gw.metrics_text().await)
    })
    .await;
    let mut body = resp.into_body();
    let mut got = 0;
    let cut = loop {
        match body.frame().await {
            Some(Ok(frame)) => got += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) => break true,
            None => break false,
        }
    };
    assert!(
        cut && got < BIG,
        "the answer is cut, never passed for whole"
    );
    // The same on the relay: a reader that stops after the head.
    let before = gw.relayed().await;
    let mut io = send_get(&gw, "/big").await;
    let (status, _, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    eventually(10, "the answer is held for the client", || async {
        buffered_bytes(&gw.metrics_text().await, "disk") > 0
    })
    .await;
    eventually(10, "its buffer is let go", || async {
        nothing_buffered(&gw.metrics_text().await)
    })
    .await;
    let mut got = got.len();
    let mut chunk = vec![0u8; 64 * 1024];
    // 30 s: on a loaded 2-core machine this read once outlasted 10 s. A
    // gateway that never cut would still fail: it either sends all of BIG
    // or keeps the connection open past the patience.
    let cut = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(n @ 1..) = io.read(&mut chunk).await {
            got += n;
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the gateway ends the answer, not the test's patience ({got} of {BIG} bytes read)"
    );
    assert!(got < BIG, "the answer is cut, never passed for whole");
    assert_eq!(gw.engine_since(before).await, "relay");
}
