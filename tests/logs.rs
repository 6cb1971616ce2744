//! No token, secret or admin key ever reaches the logs, at any level.
//!
//! Its own test binary: it installs a global trace-level subscriber that
//! captures every line, then walks the paths where secrets travel (tokens in
//! headers, queries, cookies and `auth` frames; admin keys; webhook secrets;
//! bad signatures and refusals) and searches the capture.

#[path = "integration/session/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "integration/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const JWT_SECRET: &str = "jwt-secret-XYZZY-1";
const ADMIN_KEY: &str = "admin-key-XYZZY-2";
const HOOK_SECRET: &str = "hook-secret-XYZZY-3";
const STATIC_TOKEN: &str = "static-token-XYZZY-4";
const SESSION_ID: &str = "session-cookie-XYZZY-5";

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter(pushgate::logging::filter("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let extra = format!(
        r#"
auth:
  jwt: {{ hs256_secret: "{JWT_SECRET}" }}
  static_tokens: [{{ token: "{STATIC_TOKEN}", subject: dash, channels: ["orders.*"] }}]
  admin_keys: ["{ADMIN_KEY}"]
  cookie: pg
webhooks:
  - name: signed
    match: {{ path: /hooks/signed }}
    verify: {{ hmac_sha256: {{ header: X-Sig, secret: "{HOOK_SECRET}" }} }}
    channel: public.hooks
"#
    );
    let gw = TestGateway::builder().section(&extra).start().await;
    let jwt = pushgate::auth::mint_hs256(
        JWT_SECRET,
        "alice",
        &["orders.*".into()],
        Duration::from_secs(60),
        None,
        None,
    )
    .unwrap();
    let bad_jwt = format!("{jwt}tampered");

    for token in [&jwt, &bad_jwt, &STATIC_TOKEN.to_string()] {
        let _ = gw
            .http
            .get(gw.url(&format!(
                "/realtime/poll?channels=orders.1&timeout=0&token={token}"
            )))
            .send()
            .await;
        let _ = gw
            .http
            .get(gw.url("/realtime/poll?channels=orders.1&timeout=0"))
            .bearer_auth(token)
            .send()
            .await;
        let _ = gw
            .http
            .get(gw.url("/realtime/poll?channels=orders.1&timeout=0"))
            .header("cookie", format!("pg={token}"))
            .send()
            .await;
        // Proxied requests carry tokens in queries too.
        let _ = gw
            .http
            .get(gw.url(&format!("/app/page?token={token}")))
            .send()
            .await;
    }
    let mut ws = gw.ws(&format!("/realtime/ws?token={jwt}")).await;
    send_json(&mut ws, json!({"op": "auth", "token": bad_jwt, "ref": 1})).await;
    let _ = next_json(&mut ws).await;
    send_json(&mut ws, json!({"op": "auth", "token": jwt, "ref": 2})).await;
    let _ = next_json(&mut ws).await;
    for key in [ADMIN_KEY, "wrong-admin-key"] {
        let _ = gw
            .http
            .post(gw.admin_url("/publish"))
            .bearer_auth(key)
            .json(&json!({"channel": "public.x", "data": 1}))
            .send()
            .await;
    }
    let _ = gw
        .http
        .post(gw.admin_url("/hooks/signed"))
        .bearer_auth(ADMIN_KEY)
        .header("x-sig", "00")
        .body("{}")
        .send()
        .await;

    // The application's own login: its cookie travels to the check, its
    // answer comes back; neither is logged, whatever the check answered.
    let login_app = app::LoginApp::start().await;
    let session = r#"
auth:
  session: { check: GET /api/me, subject: "{body.id}", channels: "{body.channels}", cache: 0s }
"#;
    let sgw = TestGateway::builder()
        .backend(login_app.url())
        .section(session)
        .start()
        .await;
    let cookie = login_app.login_with("alice", SESSION_ID);
    for broken in [false, true] {
        login_app
            .broken
            .store(broken, std::sync::atomic::Ordering::SeqCst);
        for path in [
            "/realtime/poll?channels=user.alice&timeout=0",
            "/realtime/sse?channels=user.alice",
            "/app/page",
        ] {
            let _ = sgw
                .http
                .get(sgw.url(path))
                .header("cookie", &cookie)
                .timeout(Duration::from_millis(500))
                .send()
                .await;
        }
        let mut req = format!(
            "wss://localhost:{}/realtime/ws?channels=user.alice",
            sgw.public.port()
        )
        .into_client_request()
        .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let _ = tokio_tungstenite::client_async(req, sgw.tls_stream().await).await;
    }
    assert!(login_app.me_calls.load(std::sync::atomic::Ordering::SeqCst) > 0);

    // A bad config on reload must not echo secrets either.
    let _ = pushgate::config::parse(
        &format!("auth: {{ jwt: {{ hs256_secret: \"{JWT_SECRET}\" }}, admin_keys: 5 }}\n"),
        std::path::Path::new("bad.yaml"),
    )
    .map_err(|e| tracing::error!(error = %e, "config refused"));

    // Wait (with a deadline) until the last things this test did are logged.
    let read = || capture.text();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(read().contains("config refused")
        && read().contains("webhook signature did not verify")
        && read().contains("session check failed"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the refused config and the bad webhook signature were never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = read();
    assert!(logs.contains("pushgate listening"), "the capture works");
    assert!(logs.len() > 1000, "trace output was produced");
    for secret in [
        JWT_SECRET,
        ADMIN_KEY,
        HOOK_SECRET,
        STATIC_TOKEN,
        jwt.as_str(),
        "tampered",
        "wrong-admin-key",
        SESSION_ID,
        app::ANSWER_SECRET,
    ] {
        assert!(!logs.contains(secret), "{secret:.12}… appears in the logs");
    }
}
