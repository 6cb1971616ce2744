//! What clients have spent and hold outlives a reload: connection counts and
//! rate buckets carry over and only the quotas change; a long-lived
//! connection serves what the new configuration says.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::common::*;

const SECRET: &str = "live-state-secret";

fn token(sub: &str) -> String {
    pushgate::auth::mint_hs256(SECRET, sub, &[], Duration::from_secs(600), None, None).unwrap()
}

async fn gateway(limits: &str) -> TestGateway {
    TestGateway::builder()
        .jwt_secret(SECRET)
        .limits(limits)
        .start()
        .await
}

/// The HTTP status a refused WebSocket handshake got.
fn refused_status(r: Result<Ws, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed otherwise: {e}"),
        Ok(_) => panic!("handshake accepted"),
    }
}

#[tokio::test]
async fn a_client_at_its_connection_limit_stays_refused_across_a_reload() {
    let gw = gateway("  per_client: { connections: 2 }").await;
    let path = format!("/realtime/ws?channels=public.cap&token={}", token("capped"));
    let mut a = gw.ws(&path).await;
    let _b = gw.ws(&path).await;
    assert_eq!(refused_status(gw.try_ws(&path).await), 429);

    // A reload that changes nothing about this client.
    gw.reload_with("heartbeat: 15s", "heartbeat: 14s");
    assert_eq!(
        refused_status(gw.try_ws(&path).await),
        429,
        "a reload gives no new connections"
    );

    // A slot taken before the reload goes back to the same count.
    a.close(None).await.unwrap();
    while a.next().await.is_some() {}
    eventually(5, "the closed slot is free again", || async {
        gw.try_ws(&path).await.is_ok()
    })
    .await;

    // A raised quota gives exactly the difference.
    gw.reload_with("connections: 2", "connections: 3");
    let _c = gw.ws(&path).await;
    let _d = gw.ws(&path).await;
    assert_eq!(refused_status(gw.try_ws(&path).await), 429);
}

#[tokio::test]
async fn a_rate_limited_client_is_not_refreshed_by_a_reload() {
    let gw = gateway("  per_ip: { connects: { rate: 1/m, burst: 3 } }").await;
    let poll = || async {
        // A fresh client each time: a new TCP connection per request.
        gw.fresh_client()
            .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    for _ in 0..3 {
        assert_eq!(poll().await, 200);
    }
    assert_eq!(poll().await, 429);
    gw.reload_with("heartbeat: 15s", "heartbeat: 14s");
    assert_eq!(poll().await, 429, "the reload refunds nothing");
}

#[tokio::test]
async fn a_new_rate_drains_what_was_spent_at_the_new_rate() {
    let gw = gateway("  per_ip: { connects: { rate: 1/m, burst: 2 } }").await;
    // A fresh client each time: a new TCP connection per request. The
    // status, and the Retry-After in seconds of a refusal.
    let poll = || async {
        let r = gw
            .fresh_client()
            .get(gw.url("/realtime/poll?channels=public.x&timeout=0"))
            .send()
            .await
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        (r.status().as_u16(), retry)
    };
    for _ in 0..2 {
        assert_eq!(poll().await, (200, None));
    }
    assert_eq!(poll().await, (429, Some(60)));
    // Slower: both connects are still spent, one drains in an hour. (A
    // bucket that kept the old rate's time would be nearly full again.)
    gw.reload_with("rate: 1/m", "rate: 1/h");
    let (status, retry) = poll().await;
    assert_eq!(status, 429, "a slower rate refunds nothing");
    let retry = retry.unwrap();
    assert!((3590..=3600).contains(&retry), "Retry-After {retry}");
    // Faster: what is left drains at once at the new rate, not over the
    // old rate's hour.
    gw.reload_with("rate: 1/h", "rate: 1/s");
    let (status, retry) = poll().await;
    assert_eq!((status, retry), (429, Some(1)), "one token at 1/s");
    eventually(5, "a token came back at the new rate", || async {
        poll().await.0 == 200
    })
    .await;
}

/// Subscribe to `public.q{i}`: whether it was acknowledged.
async fn subscribe(ws: &mut Ws, i: usize) -> bool {
    send_json(
        ws,
        json!({"op": "subscribe", "channel": format!("public.q{i}"), "ref": i}),
    )
    .await;
    let v: Value = next_json(ws).await;
    assert_eq!(v["ref"], i, "{v}");
    v["type"] == "ack"
}

#[tokio::test]
async fn a_reload_changes_quotas_without_refunding_what_was_spent() {
    let gw = gateway("  per_client: { subscribes: { rate: 1/m, burst: 3 } }").await;
    let mut ws = gw.ws(&format!("/realtime/ws?token={}", token("sub"))).await;
    let mut acks = Vec::new();
    for i in 0..4 {
        acks.push(subscribe(&mut ws, i).await);
    }
    assert_eq!(acks, [true, true, true, false]);
    // Two more in the burst: two more subscribes, not five.
    gw.reload_with("burst: 3", "burst: 5");
    let mut acks = Vec::new();
    for i in 4..7 {
        acks.push(subscribe(&mut ws, i).await);
    }
    assert_eq!(acks, [true, true, false]);
}

#[tokio::test]
async fn a_long_lived_http2_connection_serves_a_new_rule_after_a_reload() {
    let gw = gateway("  max_connections: 1000").await;
    let client = gw.fresh_client();
    let poll = || async {
        let r = client
            .get(gw.url("/realtime/poll?channels=later.x&timeout=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        r.status().as_u16()
    };
    assert_eq!(poll().await, 403, "no rule for later.* yet");
    let state = gw.handle.as_ref().unwrap().state();
    let before = Arc::downgrade(&state.settings());

    gw.reload_with(
        "channels:\n",
        r#"channels:
  - { pattern: "later.*", subscribe: anyone }
"#,
    );
    // The open connection holds no old configuration.
    eventually(5, "the old settings are let go", || async {
        before.upgrade().is_none()
    })
    .await;
    assert_eq!(poll().await, 200, "the same connection sees the new rule");
    assert_eq!(
        gw.stats().await["connections"],
        1,
        "one connection throughout"
    );
}

#[tokio::test]
async fn backend_connections_outlive_a_reload() {
    // Answers `ok` and counts the TCP connections it has accepted.
    let backend =
        TestApp::script(|_| app::answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
            .start()
            .await;
    let accepted = &backend.connections;
    let gw = TestGateway::builder().backend(&backend.url).start().await;
    for (client, name) in [(&gw.http1, "HTTP/1 relay"), (&gw.http, "HTTP/2 proxy")] {
        let get = || async {
            let r = client.get(gw.url("/app")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        };
        assert_eq!(get().await, "ok");
        let before = accepted.load(Ordering::SeqCst);
        gw.reload_with("heartbeat: 15s", "heartbeat: 14s");
        assert_eq!(get().await, "ok");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            before,
            "{name}: the backend connection is reused after a reload"
        );
        gw.reload_with("heartbeat: 14s", "heartbeat: 15s");
    }
}
