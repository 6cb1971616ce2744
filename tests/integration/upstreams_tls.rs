//! Upstream servers over TLS and unix sockets: real HTTPS applications on
//! port 0 with certificates from a test CA made here, and an application on
//! a unix socket in a temp directory. Plain GETs to `https://` servers go by
//! the relay, like those to `http://` ones; those to unix sockets by hyper.
//! Both arrive with the client's `Host`. A certificate that does not verify is a 502 and a
//! warning naming the server; it also counts as that server failing to
//! connect, so the next server answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use reqwest::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::common::*;
use crate::routes::app::PROBE;

/// A test certificate authority, its certificate written to `{dir}/{name}.pem`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, issuer.pem()).unwrap();
    Ca { issuer, pem }
}

/// A certificate `ca` signs for `names`, for a server or a client.
struct Leaf {
    der: CertificateDer<'static>,
    key: KeyPair,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn leaf(ca: &Ca, dir: &Path, stem: &str, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, stem);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Leaf {
        der: cert.der().clone(),
        key,
        cert_path,
        key_path,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An application server's TLS: `cert`, and when `clients` is given a
/// client certificate that CA signed is required.
fn server_tls(cert: &Leaf, clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.serialize_der()));
    let mut config = builder
        .with_single_cert(vec![cert.der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A gateway whose `backend:` section is `backend`, with `extra` sections,
/// its files in `dir`.
async fn gateway(dir: PathBuf, backend: &str, extra: &str) -> TestGateway {
    TestGateway::builder()
        .backend_yaml(backend)
        .section(extra)
        .start_in(dir)
        .await
}

/// An HTTP/1.1 client sending `PROBE` in its case: its GETs are ones the
/// relay takes to an `http://` server.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .http1_title_case_headers()
        .build()
        .unwrap()
}

/// `method path` through the gateway: the status, and the answer's JSON
/// when the application answered.
async fn ask(gw: &TestGateway, method: Method, path: &str) -> (u16, Value) {
    let mut req = client()
        .request(method.clone(), gw.url(path))
        .header(PROBE, "1");
    if method == Method::POST {
        req = req.body("posted");
    }
    let before = gw.relayed().await;
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut v = resp.json().await.unwrap_or(Value::Null);
    if v.is_object() {
        v["engine"] = gw.engine_since(before).await.into();
    }
    (status, v)
}

#[tokio::test]
async fn get_post_and_client_messages_reach_an_https_upstream() {
    let dir = temp_dir("up-tls");
    let ca = ca(&dir, "ca");
    let cert = leaf(
        &ca,
        &dir,
        "app",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let app = TestApp::named("tls")
        .tls(server_tls(&cert, None))
        .start()
        .await;
    let (url, accepted) = (&app.url, &app.connections);
    let backend = format!(
        "backend: {{ url: \"{url}/base\", tls: {{ ca: {} }}, connect_timeout: 1s, timeout: 5s }}",
        ca.pem.display()
    );
    let gw = gateway(dir, &backend, "client_messages: { forward_to: /inbound }").await;
    let (status, v) = ask(&gw, Method::GET, "/x?a=1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["app"].as_str(), v["path"].as_str(), v["engine"].as_str()),
        (Some("tls"), Some("/base/x?a=1"), Some("relay")),
        "a plain GET goes by the relay, over TLS"
    );
    // The relay keeps its TLS connections: one after another, the GETs
    // share one.
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..20 {
        let (status, v) = ask(&gw, Method::GET, &format!("/again{i}")).await;
        assert_eq!((status, v["engine"].as_str()), (200, Some("relay")));
    }
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) <= before + 1,
        "{} new TLS connections for 20 GETs",
        accepted.load(std::sync::atomic::Ordering::SeqCst) - before
    );
    let (status, v) = ask(&gw, Method::POST, "/y").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["path"].as_str(), v["body"].as_str()),
        (Some("/base/y"), Some("posted"))
    );
    // Client messages go through `Upstream::call`, over TLS too.
    let r = gw
        .http
        .post(gw.url("/realtime/send"))
        .json(&json!({"data": {"hello": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["app"], "tls");
    assert_eq!(v["data"]["path"], "/base/inbound");
    assert_eq!(v["data"]["body"], r#"{"hello":1}"#);
}

#[tokio::test]
async fn server_name_is_the_name_sent_and_verified() {
    let dir = temp_dir("up-tls-name");
    let ca = ca(&dir, "ca");
    let cert = leaf(
        &ca,
        &dir,
        "api",
        &["api.internal"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let url = TestApp::named("api")
        .tls(server_tls(&cert, None))
        .start()
        .await
        .url;
    let with = |tls: &str| {
        format!(
            "backend: {{ url: \"{url}\", tls: {{ ca: {}{tls} }}, connect_timeout: 1s, timeout: 5s }}",
            ca.pem.display()
        )
    };
    // The URL's host, 127.0.0.1, is not in the certificate.
    let gw = gateway(dir.join("a"), &with(""), "").await;
    assert_eq!(ask(&gw, Method::GET, "/x").await.0, 502);
    let gw = gateway(dir.join("b"), &with(", server_name: api.internal"), "").await;
    let (status, v) = ask(&gw, Method::GET, "/x").await;
    assert_eq!((status, v["app"].as_str()), (200, Some("api")));
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_a_502_and_the_next_server_answers() {
    let logs = warnings();
    let dir = temp_dir("up-tls-ca");
    let (trusted, other) = (ca(&dir, "trusted"), ca(&dir, "other"));
    let good = leaf(
        &trusted,
        &dir,
        "good",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let bad = leaf(
        &other,
        &dir,
        "bad",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let bad_app = TestApp::named("bad")
        .tls(server_tls(&bad, None))
        .start()
        .await;
    let (bad_url, bad_seen) = (bad_app.url.clone(), bad_app.seen.clone());
    let good_url = TestApp::named("good")
        .tls(server_tls(&good, None))
        .start()
        .await
        .url;
    let backend = |urls: &str| {
        format!(
            "backend: {{ urls: [{urls}], tls: {{ ca: {} }}, connect_timeout: 1s, timeout: 5s }}",
            trusted.pem.display()
        )
    };
    let gw = gateway(dir.join("one"), &backend(&format!("\"{bad_url}\"")), "").await;
    for method in [Method::GET, Method::POST] {
        assert_eq!(ask(&gw, method, "/x").await.0, 502);
    }
    assert!(bad_seen.lock().unwrap().is_empty(), "no request reached it");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&bad_url) && l.contains("TLS handshake"))
        .unwrap_or_else(|| panic!("a warning names the server and why:\n{text}"));
    assert!(line.contains("UnknownIssuer"), "{line}");

    // Beside a server that verifies, it is skipped like one that refuses.
    let urls = format!("\"{bad_url}\", \"{good_url}\"");
    let gw = gateway(dir.join("two"), &backend(&urls), "").await;
    for i in 0..4 {
        let (status, v) = ask(&gw, Method::GET, &format!("/r{i}")).await;
        assert_eq!(
            (status, v["app"].as_str()),
            (200, Some("good")),
            "request {i}"
        );
    }
    assert!(bad_seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn mutual_tls_shows_the_client_certificate() {
    let dir = temp_dir("up-mtls");
    let ca = ca(&dir, "ca");
    let cert = leaf(
        &ca,
        &dir,
        "app",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client_cert = leaf(
        &ca,
        &dir,
        "gateway",
        &["gateway.internal"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let app = TestApp::named("mtls")
        .tls(server_tls(&cert, Some(&ca)))
        .start()
        .await;
    let (url, seen) = (&app.url, &app.seen);
    let with = |tls: &str| {
        format!(
            "backend: {{ url: \"{url}\", tls: {{ ca: {}{tls} }}, connect_timeout: 1s, timeout: 5s }}",
            ca.pem.display()
        )
    };
    let pair = format!(
        ", client_cert: {}, client_key: {}",
        client_cert.cert_path.display(),
        client_cert.key_path.display()
    );
    let gw = gateway(dir.join("with"), &with(&pair), "").await;
    for method in [Method::GET, Method::POST] {
        let (status, v) = ask(&gw, method.clone(), "/x").await;
        assert_eq!((status, v["app"].as_str()), (200, Some("mtls")), "{method}");
    }
    let gw = gateway(dir.join("without"), &with(""), "").await;
    seen.lock().unwrap().clear();
    assert_eq!(ask(&gw, Method::GET, "/x").await.0, 502);
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request without a certificate"
    );
}

#[tokio::test]
async fn a_unix_socket_backend_answers_with_the_clients_host() {
    let dir = temp_dir("up-unix");
    let socket = dir.join("app.sock");
    let seen = TestApp::named("unix").unix(&socket).start().await.seen;
    let backend = format!(
        "backend: {{ url: \"unix:{}\", connect_timeout: 1s, timeout: 5s }}",
        socket.display()
    );
    let gw = gateway(dir, &backend, "").await;
    let (status, v) = ask(&gw, Method::GET, "/x?q=1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["app"].as_str(), v["path"].as_str(), v["engine"].as_str()),
        (Some("unix"), Some("/x?q=1"), Some("hyper")),
        "a GET the relay would take goes by hyper to the socket"
    );
    let host = format!("localhost:{}", gw.public.port());
    assert_eq!(v["host"].as_str(), Some(host.as_str()), "the client's Host");
    let (status, v) = ask(&gw, Method::POST, "/y").await;
    assert_eq!((status, v["body"].as_str()), (200, Some("posted")));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_route_to_a_unix_upstream_beside_an_http_default() {
    let dir = temp_dir("up-unix-route");
    let socket = dir.join("static.sock");
    TestApp::named("static").unix(&socket).start().await;
    let default = TestApp::named("default").start().await;
    let backend = format!(
        "backend: {{ url: \"{}\", connect_timeout: 1s, timeout: 5s }}",
        default.url
    );
    let extra = format!(
        "upstreams:\n  static: {{ url: \"unix:{}\" }}\nroutes:\n  - {{ path: /assets/, upstream: static, strip_prefix: true }}\n",
        socket.display()
    );
    let gw = gateway(dir, &backend, &extra).await;
    let (status, v) = ask(&gw, Method::GET, "/assets/app.js").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["app"].as_str(), v["path"].as_str(), v["engine"].as_str()),
        (Some("static"), Some("/app.js"), Some("hyper"))
    );
    let (status, v) = ask(&gw, Method::GET, "/page").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["app"].as_str(), v["path"].as_str(), v["engine"].as_str()),
        (Some("default"), Some("/page"), Some("relay")),
        "the http default keeps the relay"
    );
}
