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

/// The real `laravel-echo` package, configured as a Laravel app configures
/// it (`broadcaster: 'pusher'`, then `'reverb'`, pusher-js as its
/// `Pusher`, axios as the page's client), against the gateway: Echo's
/// authorization reaches the app with its CSRF header and the cookie,
/// a channel the app refuses is refused, presence and whispers work, the
/// page's own axios request carries Echo's `X-Socket-ID` of the gateway's
/// socket, and a trigger of the Python library arrives as Echo's event.
#[tokio::test]
async fn laravel_echo_works_as_the_pusher_and_the_reverb_broadcaster() {
    use super::standin::{Script, python_trigger};
    use tokio::process::Command;
    let mut app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    for broadcaster in ["pusher", "reverb"] {
        let user = if broadcaster == "pusher" { "7" } else { "9" };
        let settings = serde_json::json!({
            "host": "localhost", "port": gw.public.port(), "key": APP_KEY, "user": user,
            "broadcaster": broadcaster, "private": format!("user.{user}"),
            "refused": "user.8", "presence": format!("room.{broadcaster}"),
        });
        let mut cmd = Command::new("node");
        cmd.arg("echo_laravel.mjs")
            .arg(settings.to_string())
            .env("NODE_EXTRA_CA_CERTS", gw.dir.join("gw.crt"));
        let mut page = Script::spawn(cmd);
        let ready = page.next_of("ready").await;
        let socket_id = ready["socket_id"].as_str().unwrap_or_default().to_owned();
        assert!(
            socket_id.split_once('.').is_some(),
            "{broadcaster}: {ready}"
        );
        assert_eq!(ready["status"], "connected", "{broadcaster}: {ready}");
        assert_eq!(
            (
                ready["refused"]["type"].as_str(),
                ready["refused"]["error"].as_str()
            ),
            (Some("AuthError"), Some("auth answered 403")),
            "{broadcaster}: {ready}"
        );
        assert_eq!(
            ready["here"],
            serde_json::json!([{"name": format!("User {user}")}]),
            "{broadcaster}: {ready}"
        );
        assert_eq!(ready["order"], 201);

        let private = format!("private-user.{user}");
        let seen = app.next_of("auth").await;
        assert_eq!(
            (seen["channel"].as_str(), seen["socket_id"].as_str()),
            (Some(private.as_str()), Some(socket_id.as_str()))
        );
        assert_eq!(seen["user"], user, "the session cookie reached the app");
        assert_eq!(seen["status"], 200, "Echo's X-CSRF-TOKEN reached the app");
        assert_eq!(app.next_of("auth").await["status"], 403);
        assert_eq!(
            app.next_of("auth").await["channel"],
            format!("presence-room.{broadcaster}")
        );
        let order = app.next_of("order").await;
        assert_eq!(
            (order["socket_id"].as_str(), order["csrf_ok"].as_bool()),
            (Some(socket_id.as_str()), Some(true)),
            "{broadcaster}: Echo's X-Socket-ID on the page's request: {order}"
        );

        python_trigger(
            gw.admin,
            &[&private],
            r"App\Events\OrderShipped",
            serde_json::json!({"order": 42}),
        )
        .await;
        let done = page.next_of("done").await;
        assert_eq!(
            done["data"],
            serde_json::json!({"order": 42}),
            "{broadcaster}"
        );
    }
}
