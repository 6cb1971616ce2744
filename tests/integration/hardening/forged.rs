//! What a client sends that must never reach the application as the
//! gateway's word: the identity fields the gateway asserts, a missing
//! `Host` (which would become the backend's own address), a length written
//! in an unusual form, and a spoofed admin peer the other way round: an
//! IPv4 loopback client on a dual-stack admin listener is loopback.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use super::{VIA_HYPER, exchange};
use crate::common::*;
use crate::relay::scripted::{scripted, sized};

async fn echo_gateway() -> TestGateway {
    let backend = backend::start().await;
    TestGateway::builder()
        .backend(&format!("http://{backend}"))
        .start()
        .await
}

/// The echo backend's JSON about the request it received.
fn echo_of(answer: &str) -> Value {
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

const FORGED: &str = "X-Pushgate-Subject: admin\r\nx-pushgate-connection: 1\r\nX_Pushgate_Subject: admin\r\nX-PUSHGATE_CONNECTION: 2\r\n";

#[tokio::test]
async fn identity_fields_the_gateway_asserts_cannot_be_forged() {
    let gw = echo_gateway().await;
    for (way, extra) in [
        ("relay", ""),
        ("hyper", VIA_HYPER),
        ("hyper POST", "Content-Length: 0\r\n"),
    ] {
        let method = if way == "hyper POST" { "POST" } else { "GET" };
        let answer = exchange(
            &gw,
            format!(
                "{method} /inbound HTTP/1.1\r\nHost: app.example\r\n{FORGED}{extra}X-Kept: yes\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let v = echo_of(&answer);
        let headers = v["headers"].as_object().unwrap();
        for name in headers.keys() {
            assert!(
                !name.replace('_', "-").starts_with("x-pushgate-"),
                "{way}: {name} reached the application: {headers:?}"
            );
        }
        assert_eq!(v["headers"]["x-kept"], "yes", "{way}");
    }
    // HTTP/2, as a browser sends it.
    let v: Value = gw
        .http
        .get(gw.url("/inbound"))
        .header("x-pushgate-subject", "admin")
        .header("x_pushgate_connection", "3")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], "HTTP/1.1", "reached the backend");
    let headers = v["headers"].as_object().unwrap();
    assert!(
        !headers
            .keys()
            .any(|n| n.replace('_', "-").starts_with("x-pushgate-")),
        "h2: {headers:?}"
    );
}

#[tokio::test]
async fn a_request_without_a_host_is_400_and_never_forwarded() {
    let app = scripted(|_| sized("fine")).await;
    let gw = TestGateway::builder().backend(&app.url).start().await;
    for head in [
        "GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        format!("GET /no-host HTTP/1.1\r\n{VIA_HYPER}Connection: close\r\n\r\n"),
        "POST /no-host HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    ] {
        let answer = exchange(&gw, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
    }
    // HTTP/2 with neither :authority nor Host.
    let mut send = h2(&gw).await;
    let req = http::Request::get("/no-host")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    let _ = resp.into_body().collect().await;
    assert!(app.heads.lock().unwrap().is_empty(), "{:?}", app.heads);
    // An HTTP/2 request with :authority needs no Host, and HTTP/1.0 none.
    let req = http::Request::get("https://app.example/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let answer = exchange(&gw, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let heads = app.heads.lock().unwrap();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("host: app.example\r\n"),
        "{heads:?}"
    );
}

/// An HTTP/2 connection (ALPN `h2`) to the gateway.
async fn h2(gw: &TestGateway) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&gw.cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn a_length_reaches_the_application_in_its_plain_form() {
    let gw = echo_gateway().await;
    let answer = exchange(
        &gw,
        b"POST /len HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0005\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    let v = echo_of(&answer);
    assert_eq!(v["headers"]["content-length"], "5", "{v}");
    assert_eq!(v["body"], "hello");
}

#[tokio::test]
async fn ipv4_loopback_counts_as_loopback_on_a_dual_stack_admin_listener() {
    let dir = temp_dir("gw-admin6");
    let text = yaml(&dir, "http://127.0.0.1:9", "  heartbeat: 15s", "");
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, text).unwrap();
    let config = pushgate::config::load(&path).unwrap();
    let listeners = pushgate::Listeners {
        public: pushgate::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: pushgate::bind("[::]:0".parse().unwrap()).unwrap(),
    };
    let handle = pushgate::Gateway::start(config, listeners).unwrap();
    let port = handle.admin_addr().port();
    for host in ["127.0.0.1", "[::1]"] {
        let resp = reqwest::get(format!("http://{host}:{port}/stats"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{host}");
    }
    drop(handle);
}

#[tokio::test]
async fn only_a_websocket_upgrade_is_passed_on() {
    // An h2c upgrade (or any protocol but WebSocket) would become a byte
    // tunnel carrying requests the gateway never reads.
    let gw = echo_gateway().await;
    for upgrade in ["h2c", "my-protocol/1"] {
        let answer = exchange(
            &gw,
            format!(
                "GET /inbound HTTP/1.1\r\nHost: app.example\r\nUpgrade: {upgrade}\r\nConnection: Upgrade, HTTP2-Settings, close\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let v = echo_of(&answer);
        let headers = v["headers"].as_object().unwrap();
        assert!(
            !headers.contains_key("http2-settings"),
            "{upgrade}: HTTP2-Settings reached the application: {headers:?}"
        );
        for name in ["upgrade", "connection"] {
            let sent = headers.get(name).and_then(Value::as_str).unwrap_or("");
            let asked = sent
                .to_ascii_lowercase()
                .contains(&upgrade.to_ascii_lowercase());
            assert!(
                !asked,
                "{upgrade}: {name}: {sent} reached the application: {headers:?}"
            );
        }
    }
}
