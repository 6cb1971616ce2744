//! One hub for both protocols, with the real clients on each side: a
//! trigger of the official Python library reaches a pushgate SSE client,
//! and a pushgate `/publish` reaches pusher-js (an Echo page under Node) as
//! the event it was published with.

use serde_json::json;
use tokio::process::Command;

use super::standin::{Script, python_trigger};
use super::*;

#[tokio::test]
async fn a_pusher_trigger_reaches_sse_and_a_publish_reaches_pusher_js() {
    let app = StandIn::start(0).await;
    let gw = gateway(&app, "", "").await;
    let event = r"App\Events\OrderShipped";

    // Pusher -> pushgate: the library's data string is JSON again on SSE.
    let mut sse = gw.sse("/realtime/sse?channels=news-cross", None).await;
    eventually(5, "the hub counts the SSE subscriber", || async {
        gw.admin_get("/channels/news-cross").await["subscribers"] == 1
    })
    .await;
    python_trigger(gw.admin, &["news-cross"], event, json!({"order": 1})).await;
    let ev = sse.expect().await;
    assert_eq!(ev.event, event);
    assert_eq!(ev.json()["channel"], "news-cross");
    assert_eq!(ev.json()["data"], json!({"order": 1}));

    // pushgate -> Pusher: a publish to the page's private channel.
    let settings = json!({
        "host": "localhost", "port": gw.public.port(), "key": APP_KEY, "user": "9",
        "private": "private-user.9", "refused": "private-user.10",
        "presence": "presence-room.cross", "event": event,
    });
    let mut cmd = Command::new("node");
    cmd.arg("echo.js")
        .arg(settings.to_string())
        .env("NODE_EXTRA_CA_CERTS", gw.dir.join("gw.crt"));
    let mut page = Script::spawn(cmd);
    page.next_of("ready").await;
    gw.publish(json!({"channel": "private-user.9", "event": event, "data": {"order": 2}}))
        .await;
    assert_eq!(page.next_of("done").await["data"], json!({"order": 2}));
}
