//! Live reload: new rules apply without dropping connections; only
//! subscriptions the new rules forbid are closed; a bad file changes nothing;
//! renewed certificates serve the next handshake. A file caught mid-write
//! (empty, or missing a section) is never applied: see `reload_safety.rs`.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn reload_revokes_only_forbidden_subscriptions_and_keeps_connections() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.keep,chat.gone").await;
    let mut sse = gw.sse("/realtime/sse?channels=chat.gone2", None).await;
    let mut both = gw
        .sse("/realtime/sse?channels=public.keep,chat.gone3", None)
        .await;
    // chat.* disappears from the rules.
    gw.edit_config(
        r#"  - { pattern: "chat.*", subscribe: anyone, publish: clients }"#,
        "",
    );
    gw.reload().unwrap();

    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["code"].as_str(), e["channel"].as_str()),
        (Some("forbidden"), Some("chat.gone"))
    );
    let ev = both.expect().await;
    assert_eq!(
        (ev.event.as_str(), ev.json()["channel"].as_str()),
        ("error", Some("chat.gone3"))
    );
    // An SSE stream left with no channel ends (the browser's retry then gets 403).
    assert_eq!(sse.expect().await.event, "error");
    assert!(sse.next_event().await.is_none());

    gw.publish_one("chat.gone", json!("revoked")).await;
    gw.publish_one("public.keep", json!("kept")).await;
    assert_eq!(
        next_json(&mut ws).await["data"],
        "kept",
        "same connection, still subscribed"
    );
    assert_eq!(both.expect().await.json()["data"], "kept");
    let r = gw
        .http
        .get(gw.url("/realtime/sse?channels=chat.new"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "new requests see the new rules");
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_old_config_stays() {
    let gw = TestGateway::start().await;
    let mut ws = gw.ws("/realtime/ws?channels=public.a").await;
    gw.edit_config(
        "  path: /realtime",
        r#"  path: /realtime
  histroy: { size: 1 }"#,
    );
    let err = gw.reload().unwrap_err();
    assert!(err.to_string().contains("gateway.yaml:"), "{err}");
    assert!(err.to_string().contains("realtime.histroy"), "{err}");
    let ready: Value = gw.admin_get("/readyz").await;
    assert_eq!(ready["last_reload_failed"], true);
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("pushgate_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    gw.publish_one("public.a", json!("still served")).await;
    assert_eq!(next_json(&mut ws).await["data"], "still served");
}

#[tokio::test]
async fn file_changes_and_sighup_trigger_reloads() {
    let gw = TestGateway::start().await;
    // `spawn` returns with the watch registered.
    pushgate::reload::spawn(gw.state().clone(), gw.config_path());
    gw.edit_config(r#"pattern: "public.*""#, r#"pattern: "news.*""#);
    eventually(10, "the file change is applied", || async {
        gw.poll_status("channels=news.a").await == 200
    })
    .await;
    let metrics = || async { gw.metrics_text().await };
    let before = metrics().await;
    let ok_count = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("pushgate_reloads_total{result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let n = ok_count(&before);
    let pid = std::process::id().to_string();
    // The shell's builtin kill: no extra package needed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(10, "SIGHUP reloads", || async {
        ok_count(&metrics().await) > n
    })
    .await;
}

#[tokio::test]
async fn renewed_certificates_serve_the_next_handshake() {
    let gw = TestGateway::start().await;
    let first = peer_cert(&gw).await;
    // Replace the files on disk, as certbot does.
    let (cert, key) = (gw.dir.join("gw.crt"), gw.dir.join("gw.key"));
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(&key).unwrap();
    pushgate::tls::generate_dev_cert(&cert, &key).unwrap();
    assert_eq!(
        peer_cert(&gw).await,
        first,
        "nothing changes before a reload"
    );
    gw.reload().unwrap();
    let second = peer_cert(&gw).await;
    assert_ne!(second, first);
    assert_eq!(
        second,
        std::fs::read(&cert).map(|pem| pem_der(&pem)).unwrap()
    );
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// The leaf certificate the server presents (verification off: the point is which one).
async fn peer_cert(gw: &TestGateway) -> Vec<u8> {
    #[derive(Debug)]
    struct AcceptAll;
    impl rustls::client::danger::ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAll))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_symlinked_config_reloads_when_its_target_changes() {
    let gw = TestGateway::start().await;
    // The file lives elsewhere and the gateway is given a link to it, as a
    // config-management tool or a mounted volume arranges it.
    let real_dir = temp_dir("reload-target");
    let real = real_dir.join("pushgate-real.yaml");
    std::fs::copy(gw.config_path(), &real).unwrap();
    let link = gw.dir.join("linked.yaml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    pushgate::reload::spawn(gw.state().clone(), link);
    let text = std::fs::read_to_string(&real).unwrap();
    std::fs::write(
        &real,
        text.replace(r#"pattern: "public.*""#, r#"pattern: "news.*""#),
    )
    .unwrap();
    eventually(10, "the change to the link's target is applied", || async {
        gw.poll_status("channels=news.a").await == 200
    })
    .await;
}
