//! Tokens, channel rules, admin keys and Origin: every refusal path, and that
//! nothing is delivered to a refused client.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::common::*;

const SECRET: &str = "test-secret-4f9a";

fn auth_yaml(extra: &str) -> String {
    format!(
        r#"
auth:
  jwt: {{ hs256_secret: "{SECRET}", issuer: my-app, audience: browsers, leeway: 0s }}
  static_tokens:
    - {{ token: "static-dash-token", subject: dashboard, channels: ["orders.dash*"] }}
  admin_keys: ["admin-key-77"]
  cookie: pg_token
{extra}"#
    )
}

fn mint(sub: &str, channels: &[&str], ttl: u64) -> String {
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    pushgate::auth::mint_hs256(
        SECRET,
        sub,
        &channels,
        Duration::from_secs(ttl),
        Some("my-app"),
        Some("browsers"),
    )
    .unwrap()
}

async fn gateway() -> TestGateway {
    TestGateway::builder().section(&auth_yaml("")).start().await
}

async fn publish_with_key(gw: &TestGateway, body: Value) {
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .bearer_auth("admin-key-77")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn status_and_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn token_channels_need_a_valid_matching_token() {
    let gw = gateway().await;
    let get = |path: String| gw.http.get(gw.url(&path)).send();
    let ok = mint("alice", &["orders.7*"], 60);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/realtime/sse?channels=orders.71".into(),
            401,
            "unauthorized",
        ),
        (
            format!("/realtime/sse?channels=orders.71&token={}", "x.y.z"),
            401,
            "unauthorized",
        ),
        (
            format!("/realtime/sse?channels=orders.8&token={ok}"),
            403,
            "forbidden",
        ),
        (
            format!("/realtime/sse?channels=user.bob&token={ok}"),
            403,
            "forbidden",
        ),
    ];
    for (path, status, code) in cases {
        let (s, c) = status_and_error(get(path.clone()).await.unwrap()).await;
        assert_eq!((s, c.as_str()), (status, code), "{path:.60}");
    }
    // Forged signature, wrong audience, wrong issuer, expired.
    let forged = pushgate::auth::mint_hs256(
        "other-secret",
        "alice",
        &["orders.*".into()],
        Duration::from_secs(60),
        Some("my-app"),
        Some("browsers"),
    )
    .unwrap();
    let wrong_aud = pushgate::auth::mint_hs256(
        SECRET,
        "alice",
        &["orders.*".into()],
        Duration::from_secs(60),
        Some("my-app"),
        Some("servers"),
    )
    .unwrap();
    let wrong_iss = pushgate::auth::mint_hs256(
        SECRET,
        "alice",
        &["orders.*".into()],
        Duration::from_secs(60),
        Some("evil"),
        Some("browsers"),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "channels": ["orders.*"], "exp": now - 10, "iss": "my-app", "aud": "browsers"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    for (token, code) in [
        (&forged, "unauthorized"),
        (&wrong_aud, "unauthorized"),
        (&wrong_iss, "unauthorized"),
        (&expired, "token_expired"),
    ] {
        let r = gw
            .http
            .get(gw.url("/realtime/poll?channels=orders.71&timeout=1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let (s, c) = status_and_error(r).await;
        assert_eq!((s, c.as_str()), (401, code));
    }
    // Good: header, query, cookie, static token; owner channel for the subject.
    let mut sse = gw
        .sse(
            &format!("/realtime/sse?channels=orders.71,user.alice&token={ok}"),
            None,
        )
        .await;
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=orders.71&timeout=1"))
        .header("cookie", format!("other=1; pg_token={ok}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=orders.dash1&timeout=1"))
        .bearer_auth("static-dash-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    publish_with_key(&gw, json!({"channel": "orders.8", "data": "not for alice"})).await;
    publish_with_key(&gw, json!({"channel": "user.bob", "data": "not for alice"})).await;
    publish_with_key(&gw, json!({"channel": "orders.71", "data": "for alice"})).await;
    publish_with_key(
        &gw,
        json!({"channel": "user.alice", "data": "also for alice"}),
    )
    .await;
    assert_eq!(sse.expect().await.json()["data"], "for alice");
    assert_eq!(sse.expect().await.json()["data"], "also for alice");
}

#[tokio::test]
async fn websocket_auth_op_and_expiry_with_refresh() {
    let gw = gateway().await;
    let mut ws = gw.ws("/realtime/ws").await;
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "orders.1", "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "unauthorized");
    send_json(&mut ws, json!({"op": "auth", "token": "garbage", "ref": 2})).await;
    assert_eq!(next_json(&mut ws).await["code"], "unauthorized");
    send_json(
        &mut ws,
        json!({"op": "auth", "token": mint("alice", &["orders.*"], 2), "ref": 3}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["subject"].as_str()),
        (Some("ack"), Some("alice"))
    );
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "orders.1", "ref": 4}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");

    // A second connection that refreshes before expiry outlives the first.
    let mut refreshed = gw
        .ws(&format!(
            "/realtime/ws?channels=orders.2&token={}",
            mint("bob", &["orders.*"], 2)
        ))
        .await;
    send_json(
        &mut refreshed,
        json!({"op": "auth", "token": mint("bob", &["orders.*"], 60), "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut refreshed).await["type"], "ack");

    // The first one is told and closed with 1008 once its token expires.
    let err = next_json(&mut ws).await;
    assert_eq!(err["code"], "token_expired");
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        Some(Ok(Frame::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    publish_with_key(&gw, json!({"channel": "orders.2", "data": "still here"})).await;
    assert_eq!(next_json(&mut refreshed).await["data"], "still here");
}

#[tokio::test]
async fn admin_needs_the_key_when_keys_are_configured() {
    let gw = gateway().await;
    let body = json!({"channel": "public.a", "data": 1});
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_error(r).await, (401, "unauthorized".to_string()));
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .bearer_auth("admin-key-7")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw.http.get(gw.admin_url("/stats")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = gw.http.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "health probes stay open");
    publish_with_key(&gw, body).await;
}

#[tokio::test]
async fn foreign_origins_are_refused_and_allowed_ones_get_cors() {
    let gw = TestGateway::builder()
        .realtime("  allowed_origins: [\"https://app.example.com\"]")
        .start()
        .await;
    let r = gw
        .http
        .get(gw.url("/realtime/sse?channels=public.o"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_error(r).await,
        (403, "origin_not_allowed".to_string())
    );
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=public.o&timeout=1"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.url("/realtime/send"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = gw
        .url("/realtime/ws?channels=public.o")
        .replace("https", "wss")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::client_async(req, gw.tls_stream().await).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "expected a 403 handshake refusal, got {:?}",
            other.map(|_| ())
        ),
    }
}
