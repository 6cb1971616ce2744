//! A reload while a connection opens (its settings taken, the application
//! asked who the browser is) reaches it all the same: the WebSocket and
//! SSE stream hear it on their first turn, as if it had rung after.

use super::*;

/// `app` holds the login check of `sid` until it is released; once the
/// check has arrived, `sid` becomes alice's session, the rules lose
/// `user.{sub}`, the file is reloaded, and only then is the check answered.
async fn reload_while_asked(gw: &TestGateway, app: &LoginApp, sid: &str) {
    eventually(10, "the login check held at the application", || async {
        !app.check_headers.lock().unwrap().is_empty()
    })
    .await;
    app.login_with("alice", sid);
    gw.reload_with(r#"  - { pattern: "user.{sub}", subscribe: owner }"#, "");
    app.release();
}

#[tokio::test]
async fn a_websocket_hears_a_reload_made_while_it_opened() {
    let app = LoginApp::start().await;
    let gw = Arc::new(gateway(&app, DEFAULTS).await);
    app.hold_strangers.store(true, Ordering::SeqCst);
    let opening = {
        let gw = gw.clone();
        tokio::spawn(async move { ws(&gw, "user.alice", Some("sessionid=late")).await })
    };
    reload_while_asked(&gw, &app, "late").await;
    let mut socket = opening.await.unwrap().expect("opened under the old rules");
    let revoked = next_reply(&mut socket).await;
    assert_eq!(
        (&revoked["code"], &revoked["channel"]),
        (&json!("forbidden"), &json!("user.alice")),
        "{revoked}"
    );
}

#[tokio::test]
async fn an_sse_stream_hears_a_reload_made_while_it_opened() {
    let app = LoginApp::start().await;
    let gw = Arc::new(gateway(&app, DEFAULTS).await);
    app.hold_strangers.store(true, Ordering::SeqCst);
    let opening = {
        let gw = gw.clone();
        tokio::spawn(async move { sse(&gw, "user.alice", Some("sessionid=late")).await })
    };
    reload_while_asked(&gw, &app, "late").await;
    let mut stream = opening.await.unwrap().expect("opened under the old rules");
    let revoked = tokio::time::timeout(Duration::from_secs(10), stream.expect())
        .await
        .expect("the reload reaches the stream");
    assert_eq!(revoked.event, "error");
    assert_eq!(revoked.json()["channel"], "user.alice");
    // Its only channel is gone: the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.next_event()).await;
    assert!(matches!(ended, Ok(None)), "the stream ends");
}
