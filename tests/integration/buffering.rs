//! Buffering protects an application with one worker: a client that
//! trickles its upload or reads its answer slowly holds the gateway's
//! buffers, never the worker (`buffering:`), on both engines; bodies past
//! the bounds are refused before the application sees them; streams still
//! stream; temporary files go with their request.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::common::*;

mod bounds;
mod spill;
mod worker;

use worker::{BIG, Worker, big_body, one_worker};

/// How long a request waits for the one worker before the gateway answers
/// 504: what a request stuck behind a held worker gets. Long enough that a
/// loaded test machine (the suite runs its tests side by side on two
/// cores) does not make an answer that is merely slow look held.
const UPSTREAM_TIMEOUT: &str = "2s";

/// A gateway whose every proxied request goes to `worker` with the
/// upstream keys `upstream` (`, key: value…`), after the routes `routes`
/// (YAML list items); `extra` is more top-level YAML.
async fn gateway(worker: &Worker, upstream: &str, routes: &str, extra: &str) -> TestGateway {
    let text = format!(
        r#"upstreams:
  worker: {{ url: "{}", timeout: {UPSTREAM_TIMEOUT}{upstream} }}
routes:
{routes}  - {{ path: /, upstream: worker }}
{extra}"#,
        worker.url
    );
    // The default upstream's timeout is also the longest a client may
    // leave the gateway's writes untaken: longer than the worker's, so a
    // paused reader is still reading when a request behind it times out.
    TestGateway::builder()
        .tag("buffering")
        .backend_timeouts("500ms", "6s")
        .section(&text)
        .start()
        .await
}

/// Read an answer head off `io`: its status, its head, and the body bytes
/// read with it.
async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head[9..12].parse().unwrap();
            return (status, head, buf[end + 4..].to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before an answer head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn length_of(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no length in {head}"))
}

/// The rest of a body of `len` bytes, `got` of it already read.
async fn read_body<R: AsyncRead + Unpin>(io: &mut R, mut got: Vec<u8>, len: usize) -> Vec<u8> {
    while got.len() < len {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed after {} of {len} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// A whole answer with a length: status and body.
async fn read_answer<R: AsyncRead + Unpin>(io: &mut R) -> (u16, String) {
    let (status, head, got) = read_head(io).await;
    let body = read_body(io, got, length_of(&head)).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

fn assert_big(body: &[u8]) {
    assert_eq!(body.len(), BIG, "the whole answer");
    assert!(body == &big_body()[..], "the answer arrived intact");
}

/// `GET /ping` from another client: the worker's answer, or the gateway's.
async fn ping(gw: &TestGateway) -> (u16, String) {
    let resp = gw.fresh_client().get(gw.url("/ping")).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn send_get(
    gw: &TestGateway,
    target: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut io = gw.tls_stream().await;
    let head = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    io.write_all(head.as_bytes()).await.unwrap();
    io.flush().await.unwrap();
    io
}

#[tokio::test]
async fn a_trickled_upload_does_not_hold_the_one_worker() {
    let worker = one_worker().await;
    let gw = gateway(&worker, "", "", "").await;
    let mut io = gw.tls_stream().await;
    io.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 30\r\n\r\n")
        .await
        .unwrap();
    io.flush().await.unwrap();
    // One byte every 100 ms: 3 s in all, longer than the upstream's
    // timeout (2 s) that a waiting request would get.
    let trickle = tokio::spawn(async move {
        for b in 1..=30u8 {
            io.write_all(&[b]).await.unwrap();
            io.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        io
    });
    assert_eq!(
        ping(&gw).await,
        (200, "pong".to_owned()),
        "answered meanwhile"
    );
    assert!(!trickle.is_finished(), "the upload was still coming");
    assert!(
        !worker.has_seen("/upload"),
        "the worker never waited for it"
    );
    let mut io = trickle.await.unwrap();
    let (status, body) = read_answer(&mut io).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "30:465"),
        "the body arrived whole"
    );
}

#[tokio::test]
async fn a_slow_reader_of_a_large_answer_does_not_hold_the_one_worker_on_the_relay() {
    let worker = one_worker().await;
    let gw = gateway(&worker, "", "", "").await;
    let before = gw.relayed().await;
    let mut io = send_get(&gw, "/big").await;
    // The head, then nothing read for a while.
    let (status, head, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    eventually(10, "the worker finished the answer", || async {
        worker.finished() == 1
    })
    .await;
    assert_eq!(
        ping(&gw).await,
        (200, "pong".to_owned()),
        "answered meanwhile"
    );
    assert_eq!(gw.engine_since(before).await, "relay");
    let body = read_body(&mut io, got, length_of(&head)).await;
    assert_big(&body);
}

#[tokio::test]
async fn a_slow_reader_of_a_large_answer_does_not_hold_the_one_worker_on_hyper() {
    let worker = one_worker().await;
    let gw = gateway(&worker, "", "", "").await;
    let before = gw.relayed().await;
    // HTTP/2 (ALPN): hyper's engine. A chunked answer this time.
    let resp = gw.http.get(gw.url("/big?chunked")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    eventually(10, "the worker finished the answer", || async {
        worker.finished() == 1
    })
    .await;
    assert_eq!(
        ping(&gw).await,
        (200, "pong".to_owned()),
        "answered meanwhile"
    );
    assert_eq!(gw.engine_since(before).await, "hyper");
    assert_big(&resp.bytes().await.unwrap());
}

#[tokio::test]
async fn a_body_over_max_body_is_413_and_never_reaches_the_app() {
    let worker = one_worker().await;
    let gw = gateway(&worker, ", buffering: { max_body: 1KiB }", "", "").await;
    // Its length says so: refused before a byte of it is asked for.
    let mut io = gw.tls_stream().await;
    io.write_all(b"POST /upload?declared HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_answer(&mut io).await;
    assert_eq!(status, 413, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "payload_too_large");
    // A stream without a length: refused once it passes the bound.
    let parts = (0..4).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 512]));
    let resp = gw
        .http
        .post(gw.url("/upload?streamed"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Chunked on HTTP/1, refused as it passes the bound: the client reads
    // the 413 even when it was still sending (its write fails, the answer
    // is there all the same).
    for size in [4 * 1024usize, 4 * 1024 * 1024] {
        let mut io = gw.tls_stream().await;
        let head = "POST /upload?chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut body = format!("{head}{size:x}\r\n").into_bytes();
        body.extend(std::iter::repeat_n(b'x', size));
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let _ = io.write_all(&body).await;
        let _ = io.flush().await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut raw)).await;
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.starts_with("HTTP/1.1 413"), "{size}: {raw}");
        assert!(raw.contains("payload_too_large"), "{size}: {raw}");
    }
    // Within the bound it goes through.
    let resp = gw
        .http
        .post(gw.url("/upload?within"))
        .body(vec![1u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "1024:1024");
    assert!(!worker.has_seen("/upload?declared"));
    assert!(!worker.has_seen("/upload?streamed"));
    assert!(!worker.has_seen("/upload?chunked"));
}

#[tokio::test]
async fn a_stalled_body_is_408_and_never_reaches_the_app() {
    let worker = one_worker().await;
    let gw = gateway(&worker, ", buffering: { body_timeout: 300ms }", "", "").await;
    let mut io = gw.tls_stream().await;
    io.write_all(
        b"POST /upload?stalled HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab",
    )
    .await
    .unwrap();
    io.flush().await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut io))
        .await
        .expect("answered within the body timeout");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("request_timeout"), "{body}");
    assert!(!worker.has_seen("/upload?stalled"));
}

/// The first part of `/events` or `/drip` arrives while the worker still
/// holds the rest; then the rest.
async fn streams(
    gw: &TestGateway,
    worker: &Worker,
    client: &reqwest::Client,
    path: &str,
    first: &str,
    last: &str,
) {
    let mut resp = client.get(gw.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let mut got = String::new();
    while !got.contains(first) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("{path}: the first part arrives before the end"))
            .unwrap()
            .expect("more");
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    worker.release.add_permits(1);
    let rest = resp.text().await.unwrap();
    assert!(rest.contains(last), "{path}: {rest}");
}

#[tokio::test]
async fn event_streams_and_answers_the_app_marks_still_stream() {
    let worker = one_worker().await;
    let routes =
        "  - { path: /plain/, upstream: worker, buffering: { request: off, response: off } }\n";
    let gw = gateway(&worker, "", routes, "").await;
    for client in [&gw.http1, &gw.http] {
        streams(&gw, &worker, client, "/events", "data: one", "data: two").await;
        streams(&gw, &worker, client, "/drip", "first|", "last").await;
        streams(&gw, &worker, client, "/plain/plain-drip", "first|", "last").await;
    }
}

#[tokio::test]
async fn a_route_with_buffering_off_passes_the_upload_as_it_comes_and_holds_the_worker() {
    let worker = one_worker().await;
    let routes =
        "  - { path: /raw/, upstream: worker, buffering: { request: off, response: off } }\n";
    let gw = gateway(&worker, "", routes, "").await;
    // Request buffering off: the worker has the request before its body.
    let mut io = gw.tls_stream().await;
    io.write_all(b"POST /raw/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\na")
        .await
        .unwrap();
    io.flush().await.unwrap();
    eventually(
        5,
        "the worker read the head of an unfinished upload",
        || async { worker.has_seen("/raw/upload") },
    )
    .await;
    io.write_all(b"bc").await.unwrap();
    let (status, body) = read_answer(&mut io).await;
    assert_eq!((status, body.as_str()), (200, "3:294"));
    // Answer buffering off: a reader that stops holds the one worker, as
    // without a gateway, until the reader reads on.
    let mut io = send_get(&gw, "/raw/big").await;
    let (status, head, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    assert_eq!(ping(&gw).await.0, 504, "the worker is held by the reader");
    let body = read_body(&mut io, got, length_of(&head)).await;
    assert_big(&body);
}

#[tokio::test]
async fn marked_answers_are_not_held_for_a_paused_reader() {
    // As nginx: what streams holds the worker while its reader pauses.
    let worker = one_worker().await;
    let gw = gateway(&worker, "", "", "").await;
    let mut io = send_get(&gw, "/big?sse").await;
    let (status, head, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    assert_eq!(ping(&gw).await.0, 504, "an event stream is never held");
    assert_big(&read_body(&mut io, got, length_of(&head)).await);
    let resp = gw.http.get(gw.url("/big?accel")).send().await.unwrap();
    assert_eq!(
        ping(&gw).await.0,
        504,
        "X-Accel-Buffering: no is never held"
    );
    assert_big(&resp.bytes().await.unwrap());
}

#[tokio::test]
async fn past_max_body_an_answer_is_read_at_the_clients_pace_and_still_whole() {
    // As nginx past proxy_max_temp_file_size: at most 64 KiB waits for the
    // client, so a reader that pauses holds the worker again; the answer
    // still arrives whole once it reads on, after a pause longer than the
    // upstream's timeout (the upstream was not idle: the client was).
    let worker = one_worker().await;
    let gw = gateway(&worker, ", buffering: { max_body: 64KiB }", "", "").await;
    let mut io = send_get(&gw, "/big").await;
    let (status, head, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    assert_eq!(ping(&gw).await.0, 504, "the worker is held past max_body");
    assert_big(&read_body(&mut io, got, length_of(&head)).await);
    let resp = gw.http.get(gw.url("/big?chunked")).send().await.unwrap();
    assert_eq!(ping(&gw).await.0, 504, "the worker is held past max_body");
    assert_big(&resp.bytes().await.unwrap());
}

#[tokio::test]
async fn x_accel_buffering_is_judged_alike_on_both_engines_and_hidden() {
    // As nginx: the application's switch is heeded even when its
    // `Connection` names it, and the client never sees it.
    let worker = one_worker().await;
    let gw = gateway(&worker, "", "", "").await;
    for q in ["accel", "accel-named"] {
        let before = gw.relayed().await;
        let mut io = send_get(&gw, &format!("/big?{q}")).await;
        let (status, head, got) = read_head(&mut io).await;
        assert_eq!(status, 200);
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("x-accel-buffering"), "{q}: {head}");
        assert_eq!(ping(&gw).await.0, 504, "{q}: streamed on the relay");
        assert_big(&read_body(&mut io, got, length_of(&head)).await);
        assert_eq!(gw.engine_since(before).await, "relay");
        let resp = gw
            .http
            .get(gw.url(&format!("/big?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let fields = resp.headers();
        assert!(fields.get("x-accel-buffering").is_none(), "{q}: {fields:?}");
        assert_eq!(ping(&gw).await.0, 504, "{q}: streamed on hyper");
        assert_big(&resp.bytes().await.unwrap());
    }
}
