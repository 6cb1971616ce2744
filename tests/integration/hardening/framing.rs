//! Framing gone wrong on hyper's way of proxying (the relay's own cases
//! are in `relay/framing.rs`): an answer with both `Transfer-Encoding` and
//! `Content-Length`, a `101` nobody asked for, and a client's chunked body
//! that turns malformed, before and after it reached the application.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{VIA_HYPER, exchange};
use crate::common::*;
use crate::relay::scripted::*;

#[tokio::test]
async fn both_framings_reach_the_client_whole_and_retire_the_connection() {
    let app = scripted(|head| match path_of(head) {
        "/both" => answer(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        _ => sized("next"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    // HTTP/2 from the client: hyper forwards it.
    let resp = gw.http.get(gw.url("/both")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("content-length"), "{resp:?}");
    assert_eq!(resp.text().await.unwrap(), "hello");
    let resp = gw.http.get(gw.url("/after")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "next");
    assert_eq!(
        app.connections.load(Ordering::SeqCst),
        2,
        "the connection that sent both framings was reused"
    );
}

#[tokio::test]
async fn an_unasked_switch_of_protocols_is_502_on_hyper_too() {
    let app = scripted(|head| match path_of(head) {
        "/switch" => answer(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nhijacked",
        ),
        _ => sized("fine"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let resp = gw.http.get(gw.url("/switch")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let answer = exchange(
        &gw,
        format!(
            "GET /switch HTTP/1.1\r\nHost: app.example\r\n{VIA_HYPER}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(!answer.contains("hijacked"), "{answer}");
}

#[tokio::test]
async fn a_malformed_chunk_read_ahead_is_400_and_never_forwarded() {
    let app = scripted(|_| sized("fine")).await;
    let gw = gateway_for(&app.url).await;
    for body in [
        "5\r\nhello\r\nzz\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
    ] {
        let answer = exchange(
            &gw,
            format!(
                "POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?}: {answer}");
    }
    assert!(app.heads.lock().unwrap().is_empty(), "{:?}", app.heads);
    // A good chunked body still goes through, trailers and all.
    let answer = exchange(
        &gw,
        b"POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_chunk_gone_bad_after_forwarding_is_400_while_the_backend_has_not_answered() {
    // The backend takes the head, then waits for the body (answering only
    // after 1.5 s, long after the fault).
    let app = scripted(|_| Answer {
        then: b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate",
        then_after: Duration::from_millis(1500),
        ..answer("")
    })
    .await;
    // Without request buffering (which reads a body whole first, so that a
    // fault anywhere in it is a 400 the application never sees).
    let gw = TestGateway::builder()
        .backend(&app.url)
        .backend_keys(", buffering: { request: off }")
        .start()
        .await;
    let mut tls = gw.tls_stream().await;
    tls.write_all(b"POST /slow-upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    // Past the read-ahead: the request reaches the application.
    let heads = app.heads.clone();
    eventually(5, "the request reached the backend", || {
        let heads = heads.clone();
        async move { !heads.lock().unwrap().is_empty() }
    })
    .await;
    let sent_bad = Instant::now();
    tls.write_all(b"zz\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        sent_bad.elapsed() < Duration::from_millis(1200),
        "answered at the fault, not when the backend did"
    );
    // The application's connection is cut, so its half body never ends.
    let closed = app.closed.clone();
    eventually(5, "the cut-off request's connection closed", || {
        let closed = closed.clone();
        async move { closed.load(Ordering::SeqCst) > 0 }
    })
    .await;
}
