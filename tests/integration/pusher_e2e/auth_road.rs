//! Laravel Echo's authorization road: pusher-js (through Echo) POSTs
//! `socket_id` and `channel_name`, form-encoded, with the session cookie and
//! the CSRF header, to `/broadcasting/auth` on the application. Through the
//! gateway that is an ordinary proxied request: it reaches the unchanged
//! application with its cookie and header, and the application's answer
//! (signed by the official library) comes back as it was written.

use super::*;

/// A logged-in browser: its `Cookie` header and CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// Logs `user` in through the gateway, as a browser does.
pub async fn login(gw: &TestGateway, user: &str) -> Session {
    let resp = gw
        .http1
        .get(gw.url(&format!("/login?user={user}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(cookie.contains("laravel_session="), "{cookie}");
    let csrf = resp.text().await.unwrap();
    Session { cookie, csrf }
}

/// POSTs Echo's form to `/broadcasting/auth` through the gateway.
async fn authorize(
    gw: &TestGateway,
    session: Option<&Session>,
    csrf: Option<&str>,
    socket_id: &str,
    channel: &str,
) -> (u16, serde_json::Value) {
    let mut req = gw
        .http1
        .post(gw.url("/broadcasting/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-requested-with", "XMLHttpRequest")
        .header("x-socket-id", socket_id)
        .body(format!("socket_id={socket_id}&channel_name={channel}"));
    if let Some(s) = session {
        req = req.header("cookie", &s.cookie);
    }
    if let Some(csrf) = csrf {
        req = req.header("x-csrf-token", csrf);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Pusher's channel signature, computed here from the secret.
fn signature(text: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, APP_SECRET.as_bytes());
    format!(
        "{APP_KEY}:{}",
        hex::encode(hmac::sign(&key, text.as_bytes()))
    )
}

#[tokio::test]
async fn echos_auth_request_reaches_the_app_unchanged_and_is_answered_signed() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let session = login(&gw, "7").await;

    let (status, body) = authorize(
        &gw,
        Some(&session),
        Some(&session.csrf),
        "123.456",
        "private-user.7",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"], signature("123.456:private-user.7"));
    let seen = app.next_of("auth").await;
    assert_eq!(
        seen["cookie"],
        session.cookie.as_str(),
        "the cookie, as sent"
    );
    assert_eq!(seen["csrf"], session.csrf.as_str());
    assert_eq!(seen["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(
        (seen["user"].as_str(), seen["socket_id"].as_str()),
        (Some("7"), Some("123.456"))
    );

    // Presence: the signature covers the exact channel_data the app wrote.
    let (status, body) = authorize(
        &gw,
        Some(&session),
        Some(&session.csrf),
        "123.456",
        "presence-room.1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = body["channel_data"]
        .as_str()
        .expect("channel_data is a string");
    let member: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(member["user_id"], "7");
    assert_eq!(
        body["auth"],
        signature(&format!("123.456:presence-room.1:{data}"))
    );
    assert_eq!(app.next_of("auth").await["channel"], "presence-room.1");
}

#[tokio::test]
async fn the_apps_refusals_come_back_as_it_wrote_them() {
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let session = login(&gw, "7").await;

    // No session cookie: the application does not know the browser.
    let (status, _) = authorize(&gw, None, Some(&session.csrf), "1.2", "private-user.7").await;
    assert_eq!(status, 401);
    let seen = app.next_of("auth").await;
    assert_eq!(
        (seen["cookie"].is_null(), seen["status"].as_u64()),
        (true, Some(401))
    );
    // The session without its CSRF header, or with another one.
    for csrf in [None, Some("forged")] {
        let (status, _) = authorize(&gw, Some(&session), csrf, "1.2", "private-user.7").await;
        assert_eq!(status, 419, "csrf {csrf:?}");
        assert_eq!(app.next_of("auth").await["status"], 419);
    }
    // Another user's channel.
    let (status, body) = authorize(
        &gw,
        Some(&session),
        Some(&session.csrf),
        "1.2",
        "private-user.8",
    )
    .await;
    assert_eq!((status, body["message"].as_str()), (403, Some("Forbidden")));
    assert!(body.get("auth").is_none());
    assert_eq!(app.next_of("auth").await["status"], 403);
}
