//! Pusher users on two gateways sharing one `redis-server`, with pusher-js
//! signing in through Laravel's `/broadcasting/user-auth` road and the Node
//! server library's `sendToUser` and `terminateUserConnections` sent to
//! gateway A only (`tests/pusher/users.js`): a user's messages reach its
//! sockets on both gateways and no one else's, a watchlist sees a user on
//! the other gateway come online and go offline, a cache channel's last
//! event is the same on both, and terminating closes the user's sockets
//! everywhere while others stay.

use serde_json::json;
use tokio::process::Command;

use super::standin::{APP_ID, Script};
use super::*;
use crate::common::redis::RedisServer;

#[tokio::test]
async fn a_users_messages_watchlist_and_termination_span_gateways() {
    let redis = RedisServer::start().await;
    let mut app = StandIn::start(0).await;
    let prefix = format!("pusers{}", std::process::id());
    let a = gateway(&app, "", &redis.broker_yaml(&prefix)).await;
    let dir = temp_dir("pusher");
    for file in ["gw.crt", "gw.key"] {
        std::fs::copy(a.dir.join(file), dir.join(file)).unwrap();
    }
    let b = gateway_in(dir, &app, "", &redis.broker_yaml(&prefix)).await;
    let settings = json!({
        "host": "localhost", "a": a.public.port(), "b": b.public.port(),
        "admin": a.admin.to_string(), "appId": APP_ID, "key": APP_KEY, "secret": APP_SECRET,
    });
    let mut cmd = Command::new("node");
    cmd.arg("users.js")
        .arg(settings.to_string())
        .env("NODE_EXTRA_CA_CERTS", a.dir.join("gw.crt"));
    let done = Script::spawn(cmd).next_of("done").await;

    // Signing in went through the proxy to the application's endpoint.
    let auth = app.next_of("user_auth").await;
    assert_eq!(auth["user"], "alice", "{auth}");

    assert_eq!(done["got"]["alice1"], json!([{"n": 1}, {"n": 3}]), "{done}");
    assert_eq!(done["got"]["alice2"], json!([{"n": 1}, {"n": 3}]), "{done}");
    assert_eq!(done["got"]["carol"], json!([{"n": 2}]), "{done}");
    assert_eq!(done["got"]["anon"], json!([]), "{done}");
    assert_eq!(done["refused"], 403, "{done}");
    assert_eq!(
        done["log"],
        json!([
            ["alice", "offline", ["bob"]],
            ["alice", "online", ["bob"]],
            ["alice", "offline", ["bob"]],
        ]),
        "{done}"
    );
    assert_eq!(done["cached"], json!([["state", {"v": 7}]]), "{done}");
    assert_eq!(done["terminate_status"], 200, "{done}");
    for tab in ["alice1", "alice2"] {
        assert!(
            done["codes"][tab]
                .as_array()
                .unwrap()
                .contains(&json!(4009)),
            "{done}"
        );
    }
    assert_eq!(done["states"]["carol"], "connected", "{done}");
    assert_eq!(done["states"]["anon"], "connected", "{done}");
}
