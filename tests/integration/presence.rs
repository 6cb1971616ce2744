//! Presence on `presence: true` channels: join/leave events, the member list
//! over the admin API, reconnects inside the grace period, no ghosts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const SECRET: &str = "presence-secret";

fn token(sub: &str) -> String {
    pushgate::auth::mint_hs256(SECRET, sub, &[], Duration::from_secs(600), None, None).unwrap()
}

async fn members(gw: &TestGateway, channel: &str) -> Value {
    let v: Value = gw.admin_get(&format!("/channels/{channel}")).await;
    v["presence"].clone()
}

#[tokio::test]
async fn join_leave_and_no_ghosts() {
    let gw = TestGateway::builder()
        .realtime("  presence_grace: 300ms")
        .section(&format!("auth: {{ jwt: {{ hs256_secret: {SECRET} }} }}"))
        .start()
        .await;
    let mut watcher = gw
        .ws(&format!(
            "/realtime/ws?channels=room.1&token={}",
            token("watcher")
        ))
        .await;
    let join = next_json(&mut watcher).await;
    assert_eq!(
        (join["event"].as_str(), join["data"]["action"].as_str()),
        (Some("presence"), Some("join"))
    );
    assert_eq!(join["data"]["subject"], "watcher");

    // Alice joins with two connections: one join event.
    let a1 = gw
        .sse(
            &format!("/realtime/sse?channels=room.1&token={}", token("alice")),
            None,
        )
        .await;
    let a2 = gw
        .ws(&format!(
            "/realtime/ws?channels=room.1&token={}",
            token("alice")
        ))
        .await;
    let j = next_json(&mut watcher).await;
    assert_eq!(
        (j["data"]["action"].as_str(), j["data"]["subject"].as_str()),
        (Some("join"), Some("alice"))
    );
    assert_eq!(members(&gw, "room.1").await, json!(["alice", "watcher"]));

    // One connection drops and she reconnects within the grace: no leave.
    drop(a1);
    let _a3 = gw
        .sse(
            &format!("/realtime/sse?channels=room.1&token={}", token("alice")),
            None,
        )
        .await;
    drop(a2);
    // Outlast the grace (300 ms): a leave, were one due, would be sent
    // before the marker. Nothing to wait for: the test is that nothing comes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    gw.publish_one("room.1", json!("marker")).await;
    let next = next_json(&mut watcher).await;
    assert_eq!(next["data"], "marker", "no leave/join flapping, got {next}");
    assert_eq!(members(&gw, "room.1").await, json!(["alice", "watcher"]));

    // Anonymous clients are not members.
    let _anon = gw.sse("/realtime/sse?channels=room.1", None).await;
    assert_eq!(members(&gw, "room.1").await, json!(["alice", "watcher"]));

    // Bob vanishes without a goodbye: gone after the grace, announced once.
    let bob = gw
        .ws(&format!(
            "/realtime/ws?channels=room.1&token={}",
            token("bob")
        ))
        .await;
    assert_eq!(next_json(&mut watcher).await["data"]["subject"], "bob");
    drop(bob.into_inner());
    let leave = next_json(&mut watcher).await;
    assert_eq!(
        (
            leave["data"]["action"].as_str(),
            leave["data"]["subject"].as_str()
        ),
        (Some("leave"), Some("bob"))
    );
    assert_eq!(members(&gw, "room.1").await, json!(["alice", "watcher"]));
}
