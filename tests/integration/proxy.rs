//! The reverse proxy seen through the whole gateway (TLS in front).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;

async fn gateway() -> TestGateway {
    let backend = backend::start().await;
    TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .start()
        .await
}

#[tokio::test]
async fn proxies_requests_intact_with_forwarding_headers() {
    let gw = gateway().await;
    let r = gw
        .http
        .post(gw.url("/api/orders?x=1&y=two"))
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .body("hello backend")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-backend"], "yes");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/api/orders?x=1&y=two");
    assert_eq!(v["body"], "hello backend");
    assert_eq!(v["version"], "HTTP/1.1");
    let h = &v["headers"];
    assert_eq!(h["x-custom"], "kept");
    assert!(
        h.get("x-hop").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert!(
        h["x-forwarded-host"]
            .as_str()
            .unwrap()
            .starts_with("localhost")
    );
    assert!(h["forwarded"].as_str().unwrap().contains("for=127.0.0.1"));
    assert!(
        h["host"].as_str().unwrap().starts_with("localhost"),
        "original Host kept"
    );
}

#[tokio::test]
async fn http2_clients_reach_an_http1_backend() {
    let gw = gateway().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&gw.cert_pem).unwrap())
        .resolve("localhost", gw.public)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client.get(gw.url("/h2?q=1")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["uri"], "/h2?q=1");
    let host = v["headers"]["host"].as_str().unwrap();
    assert_eq!(
        host,
        format!("localhost:{}", gw.public.port()),
        ":authority becomes Host"
    );
    assert_eq!(v["headers"]["x-forwarded-host"], host);
}

/// Send `head` as-is over TLS and return the whole answer as text.
async fn raw(gw: &TestGateway, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = gw.tls_stream().await;
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Send `head` as-is; the test backend's echo of the request it received
/// (the answer must be a 200), as raw text and as JSON.
async fn echoed(gw: &TestGateway, head: &str) -> (String, Value) {
    let answer = raw(gw, head).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer[answer.find("\r\n\r\n").unwrap() + 4..]
        .trim()
        .to_string();
    let v = serde_json::from_str(&body).unwrap();
    (body, v)
}

#[tokio::test]
async fn the_backend_sees_one_host() {
    let gw = gateway().await;
    // Two Host fields: refused (RFC 9112 §3.2), never passed on.
    let answer = raw(
        &gw,
        "GET /twice HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("bad_request"), "{answer}");
    // A Host that is not visible ASCII: refused too.
    let answer = raw(
        &gw,
        "GET /odd HTTP/1.1\r\nHost: caf\u{e9}.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not host[:port]"), "{answer}");
    // Nor one that is not a host and port: it would reach the backend's
    // Host and our Forwarded as-is (a `\` there would leave a quoted
    // string open). Both the relay (GET) and hyper's path (POST) refuse.
    for host in [
        "a b.example",
        "a.example\\",
        "a.example/x",
        "a\"b",
        "u@a.example",
        "a:8x",
    ] {
        for (method, body) in [("GET", ""), ("POST", "Content-Length: 0\r\n")] {
            let answer = raw(
                &gw,
                &format!(
                    "{method} /bad-host HTTP/1.1\r\nHost: {host}\r\n{body}Connection: close\r\n\r\n"
                ),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{method} {host}: {answer}"
            );
        }
    }
    // No Host at all: refused on HTTP/1.1 (RFC 9112 §3.2; more in
    // `hardening/forged.rs`). On HTTP/1.0, which may omit it, a client's
    // X-Forwarded-Host still does not pass for ours.
    let answer = raw(
        &gw,
        "GET /no-host HTTP/1.1\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(
        &gw,
        "GET /no-host HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(!answer.contains("evil"), "{answer}");
    // An absolute-form target names the host: Host and X-Forwarded-Host follow it.
    let (_, v) = echoed(
        &gw,
        "GET http://app.example/abs?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(v["uri"], "/abs?q=1");
    assert_eq!(v["headers"]["host"], "app.example");
    assert_eq!(v["headers"]["x-forwarded-host"], "app.example");
    // Credentials in the target's authority never reach the backend.
    let (body, v) = echoed(
        &gw,
        "GET http://user:secret@app.example:8080/abs HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(v["headers"]["host"], "app.example:8080");
    assert!(!body.contains("secret"), "{body}");
}

#[tokio::test]
async fn backend_down_is_502_and_slow_is_504() {
    let down = TestGateway::start().await; // backend 127.0.0.1:9: nothing listens
    let r = down.http.get(down.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_gateway");

    let gw = gateway().await; // timeout: 2s
    let r = gw.http.get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "gateway_timeout");
}

#[tokio::test]
async fn backend_sse_streams_through_unbuffered() {
    let gw = gateway().await;
    let r = gw.http.get(gw.url("/events")).send().await.unwrap();
    let mut stream = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_millis(250), stream.next())
        .await
        .expect("first event arrives before the backend finishes")
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("tick 0"));
}

#[tokio::test]
async fn websocket_to_a_backend_path_is_tunnelled() {
    let gw = gateway().await;
    let mut ws = gw
        .try_ws_with("/ws", None)
        .await
        .expect("tunnelled handshake");
    ws.send(Frame::Text("echo me".into())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Frame::Text("echo me".into()));
}

#[tokio::test]
async fn tunnelled_websockets_count_against_max_connections() {
    let backend = backend::start().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .limits("  max_connections: 2")
        .start()
        .await;
    let mut a = gw.try_ws_with("/ws", None).await.expect("first tunnel");
    let _b = gw.try_ws_with("/ws", None).await.expect("second tunnel");
    eventually(5, "two tunnels counted", || async {
        gw.stats().await["connections"] == 2
    })
    .await;
    let r = gw.fresh_client().get(gw.url("/page")).send().await.unwrap();
    assert_eq!(r.status(), 503, "tunnels fill the gateway too");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "at_capacity");
    // A tunnel that ends gives its place back.
    a.close(None).await.unwrap();
    while a.next().await.is_some() {}
    drop(a);
    eventually(5, "the closed tunnel no longer counted", || async {
        gw.stats().await["connections"] == 1
    })
    .await;
    let r = gw.fresh_client().get(gw.url("/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_stalled_backend_stream_is_cut_after_the_timeout() {
    let backend = backend::start().await;
    let gw = TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .start()
        .await;
    // The test config's backend.timeout is 2s; /events keeps sending and survives it.
    let r = gw.http.get(gw.url("/stall")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first\n");
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("cut, not hung");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn underscore_aliases_of_proxy_fields_never_reach_the_backend() {
    let gw = gateway().await;
    // The relay's way (a GET) and hyper's (a POST) alike.
    for (method, body) in [("GET", ""), ("POST", "Content-Length: 0\r\n")] {
        let (text, v) = echoed(
            &gw,
            &format!(
                "{method} /alias HTTP/1.1\r\nHost: app.example\r\nX_Forwarded_For: 6.6.6.6\r\nx_forwarded_host: evil.example\r\nTransfer_Encoding: chunked\r\nX_Request_Id: r-1\r\n{body}Connection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(!text.contains("6.6.6.6"), "{method}: {text}");
        assert!(!text.contains("evil"), "{method}: {text}");
        assert!(
            !text.to_ascii_lowercase().contains("transfer_encoding"),
            "{method}: {text}"
        );
        let h = &v["headers"];
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{method}");
        assert_eq!(
            h["x_request_id"], "r-1",
            "{method}: other names with _ pass"
        );
    }
}
