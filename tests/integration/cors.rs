//! `allowed_origins` and credentials: `"*"` lets any page connect but never
//! with the visitor's cookies (no `Access-Control-Allow-Credentials`, and the
//! cookie is not used to authenticate, WebSocket included); listed origins and
//! the gateway's own origin get credentials; `null` only when listed.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

const SECRET: &str = "cors-secret-5e21";

async fn gateway(origins: &str) -> TestGateway {
    TestGateway::builder()
        .realtime(&format!("  heartbeat: 15s\n  allowed_origins: {origins}"))
        .section(&format!(
            r#"auth:
  jwt: {{ hs256_secret: "{SECRET}" }}
  cookie: pg_token
"#
        ))
        .start()
        .await
}

fn alice() -> String {
    pushgate::auth::mint_hs256(SECRET, "alice", &[], Duration::from_secs(60), None, None).unwrap()
}

/// GET `path` with an optional Origin and the token as a cookie.
async fn get_with_cookie(gw: &TestGateway, path: &str, origin: Option<&str>) -> reqwest::Response {
    let mut req = gw
        .http
        .get(gw.url(path))
        .header("cookie", format!("pg_token={}", alice()));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

fn cors(r: &reqwest::Response) -> (Option<String>, Option<String>) {
    let h = |name| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    (
        h("access-control-allow-origin"),
        h("access-control-allow-credentials"),
    )
}

/// A WebSocket upgrade from `origin` carrying the token as a cookie.
async fn ws_with_cookie(
    gw: &TestGateway,
    origin: &str,
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = gw
        .url("/realtime/ws?channels=user.alice")
        .replace("https", "wss")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("origin", origin.parse().unwrap());
    h.insert("cookie", format!("pg_token={}", alice()).parse().unwrap());
    h.insert("sec-websocket-protocol", "pushgate.v1".parse().unwrap());
    tokio_tungstenite::client_async(req, gw.tls_stream().await).await
}

const POLL: &str = "/realtime/poll?channels=user.alice&timeout=0";

#[tokio::test]
async fn a_wildcard_never_sends_credentials_or_honours_the_cookie() {
    let gw = gateway(r#"["*"]"#).await;
    for origin in ["https://evil.example", "null"] {
        let r = get_with_cookie(&gw, POLL, Some(origin)).await;
        assert_eq!(
            r.status(),
            401,
            "{origin}: the cookie does not authenticate"
        );
        assert_eq!(cors(&r), (Some("*".into()), None), "{origin}");
        let r = get_with_cookie(&gw, "/realtime/sse?channels=user.alice", Some(origin)).await;
        assert_eq!(r.status(), 401, "{origin} over sse");
        // A token the page holds itself still works, without credentials.
        let r = gw
            .http
            .get(gw.url(POLL))
            .bearer_auth(alice())
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(cors(&r), (Some("*".into()), None));
    }
    let r = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.url("/realtime/send"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(cors(&r), (Some("*".into()), None), "preflight");

    // Not a browser page (curl) or the gateway's own pages: the cookie counts.
    let r = get_with_cookie(&gw, POLL, None).await;
    assert_eq!((r.status().as_u16(), cors(&r)), (200, (None, None)));
    let own = gw.url("");
    let r = get_with_cookie(&gw, POLL, Some(&own)).await;
    assert_eq!(r.status(), 200, "same origin");
    assert_eq!(cors(&r), (Some(own.clone()), Some("true".into())));

    // WebSocket: CORS does not protect it, so the cookie must not count either.
    match ws_with_cookie(&gw, "https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        Ok((mut ws, _)) => {
            let frame = next_json(&mut ws).await;
            assert_ne!(frame["type"], "message", "{frame}");
            gw.publish_one("user.alice", json!("private")).await;
            let frame = next_json(&mut ws).await;
            panic!("a foreign page's WebSocket authenticated by cookie: {frame}");
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn listed_origins_get_credentials_and_null_needs_listing() {
    let gw = gateway(r#"["https://app.example.com"]"#).await;
    let r = get_with_cookie(&gw, POLL, Some("https://app.example.com")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        cors(&r),
        (Some("https://app.example.com".into()), Some("true".into()))
    );
    for origin in [
        "null",
        "https://evil.example",
        "https://app.example.com.evil.example",
    ] {
        let r = get_with_cookie(&gw, POLL, Some(origin)).await;
        assert_eq!(r.status(), 403, "{origin}");
        assert_eq!(cors(&r), (None, None), "{origin}");
    }
    let gw = gateway(r#"["null"]"#).await;
    let r = get_with_cookie(&gw, POLL, Some("null")).await;
    assert_eq!(r.status(), 200, "listed literally");
    assert_eq!(cors(&r), (Some("null".into()), Some("true".into())));
}

#[tokio::test]
async fn the_gateways_own_origin_must_match_its_scheme_too() {
    let gw = gateway(r#"["https://app.example.com"]"#).await;
    let own = gw.url("");
    let own = own.trim_end_matches('/');
    // The page the gateway itself serves over TLS: same origin, credentials.
    let r = get_with_cookie(&gw, POLL, Some(own)).await;
    assert_eq!(r.status(), 200, "{own}");
    assert_eq!(cors(&r), (Some(own.to_string()), Some("true".into())));
    // The same host and port over plain HTTP is another origin, one that
    // anyone on the network path can write: not trusted with cookies.
    let plain = own.replacen("https://", "http://", 1);
    let r = get_with_cookie(&gw, POLL, Some(&plain)).await;
    assert_eq!(r.status(), 403, "{plain}");
    assert_eq!(cors(&r), (None, None), "{plain}");
}
