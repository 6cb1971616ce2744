//! The scripted backend the relay's tests talk to, and the clients they use:
//! the common [`TestApp`] answering each request head with exactly the
//! bytes a test wants; it records the heads and counts its connections (and
//! what became of them), so a test can tell what reached the application
//! and over how many connections.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) use crate::common::app::{Answer, answer, path_of, sized};
use crate::common::*;

/// An application that answers each request head with `script(head)`.
pub(crate) async fn scripted(script: fn(&str) -> Answer) -> TestApp {
    TestApp::script(move |req| script(&req.head)).start().await
}

pub(crate) async fn gateway_for(backend: &str) -> TestGateway {
    TestGateway::builder().backend(backend).start().await
}

/// An HTTP/1.1 client on one TLS connection (no ALPN: no HTTP/2).
pub(crate) async fn http1(gw: &TestGateway) -> SendRequest<Empty<Bytes>> {
    let tls = gw.tls_stream().await;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Send `method path` with `Host: app.example`; the answer, body unread.
pub(crate) async fn request(
    send: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    send.ready().await.unwrap();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.example")
        .body(Empty::new())
        .unwrap();
    send.send_request(req).await.unwrap()
}

/// Send `method path`; the status, headers and whole body.
pub(crate) async fn get(
    send: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    path: &str,
) -> (u16, http::HeaderMap, String) {
    let resp = request(send, method, path).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Write `raw` on a new TLS connection and read until the gateway closes it.
pub(crate) async fn raw(gw: &TestGateway, raw: &[u8]) -> String {
    let mut tls = gw.tls_stream().await;
    // The gateway may answer and close before all of `raw` is written (a
    // head it refuses half way): the write then fails, the answer is read.
    let _ = tls.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub(crate) fn proxied_2xx(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("pushgate_proxy_requests_total{class=\"2xx\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
