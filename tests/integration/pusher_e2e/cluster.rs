//! Presence across two gateways on one `redis-server`, seen by pusher-js
//! under Node (`tests/pusher/presence_cluster.js`): a user with a tab on
//! each gateway is one member, added once and removed only when the last
//! tab is gone, whichever gateway the watcher is on.

use serde_json::{Value, json};
use tokio::process::Command;

use super::standin::Script;
use super::*;
use crate::common::redis::RedisServer;

/// Where in `log` the first entry equal to `entry` is.
fn at(log: &[Value], entry: Value) -> usize {
    log.iter()
        .position(|e| *e == entry)
        .unwrap_or_else(|| panic!("{entry} not in {log:?}"))
}

#[tokio::test]
async fn a_user_on_two_gateways_is_one_member() {
    let redis = RedisServer::start().await;
    let app = StandIn::start(0).await;
    let prefix = format!("pusher{}", std::process::id());
    let a = gateway(&app, "", &redis.broker_yaml(&prefix)).await;
    // One certificate for both, as a cluster behind one name has.
    let dir = temp_dir("pusher");
    for file in ["gw.crt", "gw.key"] {
        std::fs::copy(a.dir.join(file), dir.join(file)).unwrap();
    }
    let b = gateway_in(dir, &app, "", &redis.broker_yaml(&prefix)).await;
    let settings = json!({
        "host": "localhost", "a": a.public.port(), "b": b.public.port(),
        "key": APP_KEY, "channel": "presence-room.cluster",
    });
    let mut cmd = Command::new("node");
    cmd.arg("presence_cluster.js")
        .arg(settings.to_string())
        .env("NODE_EXTRA_CA_CERTS", a.dir.join("gw.crt"));
    let done = Script::spawn(cmd).next_of("done").await;

    let log = done["log"].as_array().expect("a log").clone();
    let count = |entry: Value| log.iter().filter(|e| **e == entry).count();
    for user in ["1", "2"] {
        assert_eq!(count(json!(["added", user])), 1, "{log:?}");
        assert_eq!(count(json!(["removed", user])), 1, "{log:?}");
        assert!(
            at(&log, json!(["added", user])) < at(&log, json!(["1 left A"])),
            "{log:?}"
        );
    }
    // 1's tab on A leaving removes nobody: its tab on B is still there.
    assert!(
        at(&log, json!(["removed", "2"])) > at(&log, json!(["2 left B"])),
        "{log:?}"
    );
    assert!(
        at(&log, json!(["removed", "1"])) > at(&log, json!(["1 left B"])),
        "{log:?}"
    );
    // One set of members everywhere: w, 1 (and 2 once it joined).
    assert_eq!(
        done["counts"],
        json!({"b_tab_of_1": 2, "two": 3, "watcher": 3, "after_2_left": 2, "end": 1}),
        "{log:?}"
    );
}
