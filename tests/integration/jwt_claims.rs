//! Validly signed tokens with hostile claims: an absurd `exp`, `nbf` or `iat`,
//! a `crit` header, an empty `sub`. Each is a plain 401 on every transport
//! (never a dropped connection), while a far but plausible expiry still works.

use serde_json::{Value, json};

use crate::common::*;

const SECRET: &str = "claims-secret-31c7";

async fn gateway() -> TestGateway {
    TestGateway::builder().jwt_secret(SECRET).start().await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token over exactly these claims, with extra header fields.
fn sign(claims: Value, header: Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let mut head = json!({"alg": "HS256", "typ": "JWT"});
    if let (Some(h), Some(extra)) = (head.as_object_mut(), header.as_object()) {
        h.extend(extra.clone());
    }
    let input = format!("{}.{}", b64(&head), b64(&claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
    format!("{input}.{sig}")
}

fn token(claims: Value) -> String {
    sign(claims, json!({}))
}

#[tokio::test]
async fn hostile_claims_are_refused_with_401_on_every_transport() {
    let gw = gateway().await;
    let n = now();
    let cases = [
        (
            "exp near 2^64",
            token(json!({"sub": "a", "exp": u64::MAX - 1})),
        ),
        (
            "exp past year 9999",
            token(json!({"sub": "a", "exp": 1u64 << 40})),
        ),
        (
            "float exp overflow",
            token(json!({"sub": "a", "exp": 1.0e19})),
        ),
        (
            "absurd nbf",
            token(json!({"sub": "a", "exp": n + 60, "nbf": u64::MAX})),
        ),
        (
            "absurd iat",
            token(json!({"sub": "a", "exp": n + 60, "iat": u64::MAX})),
        ),
        (
            "iat in the future",
            token(json!({"sub": "a", "exp": n + 7200, "iat": n + 3600})),
        ),
        ("empty sub", token(json!({"sub": "", "exp": n + 60}))),
        (
            "crit header",
            sign(
                json!({"sub": "a", "exp": n + 60}),
                json!({"crit": ["exp-ext"], "exp-ext": true}),
            ),
        ),
    ];
    for (what, t) in &cases {
        for endpoint in ["sse", "poll"] {
            let url = gw.url(&format!(
                "/realtime/{endpoint}?channels=public.c&timeout=0&token={t}"
            ));
            let r = gw
                .http1
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what} over {endpoint}: no answer: {e}"));
            assert_eq!(r.status(), 401, "{what} over {endpoint}");
        }
        match gw.try_ws(&format!("/realtime/ws?token={t}")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{what} over ws")
            }
            other => panic!("{what} over ws: expected 401, got {:?}", other.map(|_| ())),
        }
        // The same token in an `auth` frame is an error frame; the socket lives on.
        let mut ws = gw.ws("/realtime/ws").await;
        send_json(&mut ws, json!({"op": "auth", "token": t, "ref": 1})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["code"], "unauthorized", "{what} in an auth frame");
        send_json(&mut ws, json!({"op": "ping", "ref": 2})).await;
        assert_eq!(
            next_json(&mut ws).await["ref"],
            2,
            "{what}: socket still up"
        );
    }
}

#[tokio::test]
async fn a_far_but_plausible_expiry_is_accepted() {
    let gw = gateway().await;
    // 9999-12-31T23:59:59Z: the last second a token may name.
    let t = token(json!({"sub": "far", "exp": 253_402_300_799u64, "iat": now()}));
    let mut ws = gw
        .ws(&format!("/realtime/ws?channels=public.far&token={t}"))
        .await;
    send_json(&mut ws, json!({"op": "auth", "token": t, "ref": 1})).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["subject"].as_str()),
        (Some("ack"), Some("far"))
    );
    gw.publish_one("public.far", json!("delivered")).await;
    assert_eq!(next_json(&mut ws).await["data"], "delivered");
}
