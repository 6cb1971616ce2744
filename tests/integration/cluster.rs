//! Scale-out over Redis: several real gateways sharing one real `redis-server`.
//! Publish anywhere, receive everywhere, resume anywhere, survive outages.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::redis::RedisServer;
use crate::common::*;

async fn instance(redis: &RedisServer, prefix: &str) -> TestGateway {
    TestGateway::builder()
        .section(&redis.broker_yaml(prefix))
        .start()
        .await
}

async fn ready(gw: &TestGateway) -> bool {
    match gw.http.get(gw.admin_url("/readyz")).send().await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

async fn cluster(redis: &RedisServer, n: usize) -> Vec<TestGateway> {
    let prefix = format!("t{}", rand_suffix());
    let mut out = Vec::new();
    for _ in 0..n {
        let gw = instance(redis, &prefix).await;
        eventually(10, "instance ready", || ready(&gw)).await;
        out.push(gw);
    }
    out
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::process::id() as u64 * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// Publish without asserting: (status, body).
async fn try_publish(gw: &TestGateway, channel: &str, data: Value) -> (u16, Value) {
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .json(&json!({"channel": channel, "data": data}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn poll(gw: &TestGateway, query: &str) -> Value {
    let (status, body) = gw.poll(query).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn numsub(redis: &RedisServer, topic: &str) -> i64 {
    let mut c = redis.client().await;
    let v: Vec<(String, i64)> = ::redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(topic)
        .query_async(&mut c)
        .await
        .unwrap();
    v[0].1
}

async fn topic_count(gw_prefix_probe: &RedisServer, pattern: &str) -> usize {
    let mut c = gw_prefix_probe.client().await;
    let v: Vec<String> = ::redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap();
    v.len()
}

#[tokio::test]
async fn publish_on_one_instance_reaches_every_transport_on_the_others() {
    let redis = RedisServer::start().await;
    let gws = cluster(&redis, 3).await;
    let (a, b, c) = (&gws[0], &gws[1], &gws[2]);

    let mut ws_b = b.ws("/realtime/ws?channels=public.fan").await;
    let mut sse_c = c.sse("/realtime/sse?channels=public.fan", None).await;
    // A long-poll on C, held while A publishes.
    let first_poll = poll(c, "channels=public.fan");

    // Only instances with local subscribers follow the channel in Redis.
    let topic = format!("{}:c:public.fan", prefix_of(a).await);
    eventually(5, "B and C subscribed to the topic", || async {
        numsub(&redis, &topic).await == 2
    })
    .await;

    let publishing = async {
        // Once the poll waits (it counts once subscribed): a message
        // published before it came would not be its to answer with.
        eventually(5, "the poll on C to wait", || async {
            c.stats().await["transports"]["poll"] == 1
        })
        .await;
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(a.publish_one("public.fan", json!({"n": i})).await);
        }
        ids
    };
    let (ids, polled) = tokio::join!(publishing, first_poll);
    assert!(
        ids.windows(2)
            .all(|w| w[0].parse::<u64>().unwrap() < w[1].parse::<u64>().unwrap())
    );

    for (i, id) in ids.iter().enumerate() {
        let m = next_json(&mut ws_b).await;
        assert_eq!(
            (m["id"].as_str(), &m["data"]["n"]),
            (Some(id.as_str()), &json!(i))
        );
        let e = sse_c.expect().await.json();
        assert_eq!(
            (e["id"].as_str(), &e["data"]["n"]),
            (Some(id.as_str()), &json!(i))
        );
    }
    // The poll answered with the first message(s); its cursor fetches the rest from history.
    let got: Vec<&str> = polled["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(!got.is_empty() && got[0] == ids[0], "{polled}");
    let rest = poll(c, &format!("cursor={}", polled["cursor"].as_str().unwrap())).await;
    let mut all: Vec<String> = got.iter().map(|s| s.to_string()).collect();
    all.extend(
        rest["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string()),
    );
    assert_eq!(all, ids);

    // The last local subscriber leaving unsubscribes the instance.
    drop(ws_b);
    drop(sse_c);
    eventually(5, "topic released", || async {
        numsub(&redis, &topic).await == 0
    })
    .await;
}

/// The prefix an instance uses, read back from the channel admin API's view of Redis keys.
async fn prefix_of(gw: &TestGateway) -> String {
    let text = std::fs::read_to_string(gw.dir.join("gateway.yaml")).unwrap();
    let start = text.find("prefix: \"").unwrap() + "prefix: \"".len();
    text[start..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn a_client_of_a_dead_instance_resumes_on_another_without_loss() {
    let redis = RedisServer::start().await;
    let mut gws = cluster(&redis, 3).await;
    let mut sse = gws[1].sse("/realtime/sse?channels=public.move", None).await;

    let total = 60;
    let a = &gws[0];
    let mut ids = Vec::new();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for i in 0..30 {
        ids.push(a.publish_one("public.move", json!(i)).await);
    }
    for _ in 0..15 {
        let e = sse.expect().await;
        seen.push(e.json()["id"].as_str().unwrap().to_string());
        cursor = e.id.unwrap();
    }
    // B dies with 15 messages unread by the client; publishing goes on.
    drop(sse);
    gws[1].stop().await;
    for i in 30..total {
        ids.push(gws[0].publish_one("public.move", json!(i)).await);
    }
    let mut sse = gws[2]
        .sse("/realtime/sse?channels=public.move", Some(&cursor))
        .await;
    while seen.len() < total {
        let e = sse.expect().await;
        assert_eq!(e.event, "message", "no reset expected: {}", e.data);
        seen.push(e.json()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ids, "every message exactly once, in order");
    gws.clear();
}

#[tokio::test]
async fn a_restarted_instance_resumes_cursors_and_a_websocket_follows_across() {
    let redis = RedisServer::start().await;
    let prefix = format!("r{}", rand_suffix());
    let mut a = instance(&redis, &prefix).await;
    let b = instance(&redis, &prefix).await;
    eventually(10, "ready", || ready(&a)).await;
    eventually(10, "ready", || ready(&b)).await;

    let mut ws = a.ws("/realtime/ws?channels=public.r,public.s").await;
    let first = b.publish_one("public.r", json!("r1")).await;
    let m = next_json(&mut ws).await;
    assert_eq!(m["id"], first);
    let cursor = m["cursor"].as_str().unwrap().to_string();
    drop(ws);
    a.stop().await;

    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(b.publish_one("public.s", json!(i)).await);
        missed.push(b.publish_one("public.r", json!(i)).await);
    }
    // A comes back (a new process: same Redis, same prefix) and resumes the cursor.
    let a2 = instance(&redis, &prefix).await;
    eventually(10, "restarted instance ready", || ready(&a2)).await;
    let mut ws = a2
        .ws(&format!(
            "/realtime/ws?channels=public.r,public.s&cursor={cursor}"
        ))
        .await;
    let mut got = Vec::new();
    for _ in 0..missed.len() {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "message", "{m}");
        got.push(m["id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, missed, "both channels merged in publication order");
    let live = b.publish_one("public.r", json!("live")).await;
    assert_eq!(next_json(&mut ws).await["id"], live);
}

#[tokio::test]
async fn starts_without_redis_reports_not_ready_then_recovers() {
    let mut redis = RedisServer::reserve();
    let gw = instance(&redis, &format!("s{}", rand_suffix())).await;
    let r = gw.http.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["broker"], false);
    let (status, body) = try_publish(&gw, "public.x", json!(1)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    // Subscribing while Redis is away is refused clearly, not hung.
    let r = gw
        .http
        .get(gw.url("/realtime/sse?channels=public.x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    redis.launch().await;
    eventually(15, "ready once Redis is up", || ready(&gw)).await;
    let mut sse = gw.sse("/realtime/sse?channels=public.x", None).await;
    let id = gw.publish_one("public.x", json!("up")).await;
    assert_eq!(sse.expect().await.json()["id"], id);
}

#[tokio::test]
async fn redis_outage_refuses_publishes_keeps_connections_and_loses_nothing_acknowledged() {
    let mut redis = RedisServer::start().await;
    let gws = cluster(&redis, 2).await;
    let (a, b) = (&gws[0], &gws[1]);
    let mut ws = b.ws("/realtime/ws?channels=public.out").await;
    let mut sse = b.sse("/realtime/sse?channels=public.out", None).await;

    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        acked.push(a.publish_one("public.out", json!(i)).await);
    }
    redis.kill();
    // Publishing through the outage: every answer is either an id or a 503.
    for i in 10..20 {
        let (status, body) = try_publish(a, "public.out", json!(i)).await;
        match status {
            200 => acked.push(body["ids"][0].as_str().unwrap().to_string()),
            503 => {
                assert_eq!(body["error"], "unavailable", "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(refused > 0, "publishes during the outage must be refused");
    eventually(10, "readyz reports the outage", || async {
        !ready(b).await
    })
    .await;

    redis.launch().await;
    eventually(20, "both instances ready again", || async {
        ready(a).await && ready(b).await
    })
    .await;
    for i in 20..30 {
        acked.push(a.publish_one("public.out", json!(i)).await);
    }
    // The same connections, still open, get every acknowledged message once, in order.
    let mut via_ws = Vec::new();
    while via_ws.len() < acked.len() {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "message", "{m}");
        via_ws.push(m["id"].as_str().unwrap().to_string());
    }
    assert_eq!(via_ws, acked);
    let mut via_sse = Vec::new();
    while via_sse.len() < acked.len() {
        let e = sse.expect().await;
        assert_eq!(e.event, "message", "{}", e.data);
        via_sse.push(e.json()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(via_sse, acked);
}

#[tokio::test]
async fn history_and_gaps_are_shared() {
    let redis = RedisServer::start().await;
    let gws = cluster(&redis, 2).await;
    let (a, b) = (&gws[0], &gws[1]);
    // small.* keeps 2 messages: a cursor from before 5 publishes resets on B.
    let mut sse = a.sse("/realtime/sse?channels=small.h", None).await;
    let first = b.publish_one("small.h", json!(0)).await;
    let e = sse.expect().await;
    assert_eq!(e.json()["id"], first);
    let cursor = e.id.unwrap();
    drop(sse);
    let mut last = String::new();
    for i in 1..6 {
        last = a.publish_one("small.h", json!(i)).await;
    }
    let mut sse = b.sse("/realtime/sse?channels=small.h", Some(&cursor)).await;
    let e = sse.expect().await;
    assert_eq!(e.event, "reset", "{}", e.data);
    assert_eq!(e.json()["channels"], json!(["small.h"]));
    let info = b.admin_get("/channels/small.h").await;
    assert_eq!(info["history"]["length"], 2, "{info}");
    let oldest: u64 = info["history"]["oldest_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(oldest + 1, last.parse::<u64>().unwrap(), "{info}");
    let next = a.publish_one("small.h", json!("after")).await;
    assert!(next.parse::<u64>().unwrap() > last.parse::<u64>().unwrap());
    assert_eq!(sse.expect().await.json()["id"], next);

    // Idempotency keys hold across instances.
    let body = json!({"channel": "public.k", "data": 1, "id": "once"});
    let x = a.publish(body.clone()).await;
    let y = b.publish(body).await;
    assert_eq!(x["ids"], y["ids"]);
    // No instance follows a channel nobody subscribes to.
    assert_eq!(topic_count(&redis, "*public.k").await, 0);
}

#[tokio::test]
async fn a_lost_link_catches_up_from_history_before_going_live() {
    let redis = RedisServer::start().await;
    let gws = cluster(&redis, 2).await;
    let (a, b) = (&gws[0], &gws[1]);
    let mut ws = b.ws("/realtime/ws?channels=public.cu").await;
    let mut ids = vec![a.publish_one("public.cu", json!(0)).await];
    assert_eq!(next_json(&mut ws).await["id"], ids[0]);

    // Cut every pub/sub link (Redis itself stays up, as in a network blip):
    // what A publishes now reaches history but no instance's subscription.
    let mut c = redis.client().await;
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(killed >= 1);
    for i in 1..20 {
        ids.push(a.publish_one("public.cu", json!(i)).await);
    }
    let mut got = vec![ids[0].clone()];
    while got.len() < ids.len() {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "message", "{m}");
        got.push(m["id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ids, "caught up in order, nothing twice");
    let live = a.publish_one("public.cu", json!("live")).await;
    assert_eq!(next_json(&mut ws).await["id"], live);
}

#[tokio::test]
async fn presence_is_shared_and_a_dead_instance_members_leave_once() {
    const SECRET: &str = "cluster-presence";
    let token = |sub: &str| {
        pushgate::auth::mint_hs256(SECRET, sub, &[], Duration::from_secs(600), None, None).unwrap()
    };
    let redis = RedisServer::start().await;
    let prefix = format!("p{}", rand_suffix());
    let extra = format!(
        r#"auth: {{ jwt: {{ hs256_secret: {SECRET} }} }}
{}"#,
        redis.broker_yaml(&prefix)
    );
    let mut gws = Vec::new();
    for _ in 0..3 {
        let gw = TestGateway::builder()
            .realtime("  presence_grace: 600ms")
            .section(&extra)
            .start()
            .await;
        eventually(10, "ready", || ready(&gw)).await;
        gws.push(gw);
    }
    let members = |gw: &TestGateway| {
        let gw_admin = gw.admin_url("/channels/room.c");
        let http = gw.http.clone();
        async move {
            let v: Value = http
                .get(gw_admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["presence"].clone()
        }
    };

    let mut watcher = gws[0]
        .ws(&format!(
            "/realtime/ws?channels=room.c&token={}",
            token("watcher")
        ))
        .await;
    assert_eq!(next_json(&mut watcher).await["data"]["subject"], "watcher");
    let alice = gws[1]
        .ws(&format!(
            "/realtime/ws?channels=room.c&token={}",
            token("alice")
        ))
        .await;
    let j = next_json(&mut watcher).await;
    assert_eq!(
        (j["data"]["action"].as_str(), j["data"]["subject"].as_str()),
        (Some("join"), Some("alice"))
    );
    // A second connection of alice on another instance is not a second join.
    let alice2 = gws[2]
        .sse(
            &format!("/realtime/sse?channels=room.c&token={}", token("alice")),
            None,
        )
        .await;
    for gw in &gws {
        eventually(5, "every instance lists both", || async {
            members(gw).await == json!(["alice", "watcher"])
        })
        .await;
    }
    drop(alice2);
    gws[2].stop().await;
    // B goes away with alice's last connection: her entry expires, one leave.
    drop(alice);
    gws[1].stop().await;
    let leave = next_json(&mut watcher).await;
    assert_eq!(
        (
            leave["data"]["action"].as_str(),
            leave["data"]["subject"].as_str()
        ),
        (Some("leave"), Some("alice")),
        "{leave}"
    );
    // Outlast the grace (600 ms) twice over: a second leave, from the other
    // instance's expiry, would come before the marker. Nothing to wait for:
    // the test is that nothing comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let marker = gws[0].publish_one("room.c", json!("marker")).await;
    assert_eq!(
        next_json(&mut watcher).await["id"],
        marker,
        "exactly one leave"
    );
    assert_eq!(members(&gws[0]).await, json!(["watcher"]));
}

#[tokio::test]
async fn redis_losing_its_data_resets_clients_instead_of_skipping_messages() {
    let redis = RedisServer::start().await;
    let gws = cluster(&redis, 2).await;
    let (a, b) = (&gws[0], &gws[1]);
    let mut ws = b.ws("/realtime/ws?channels=public.e").await;
    for i in 0..5 {
        let id = a.publish_one("public.e", json!(i)).await;
        assert_eq!(next_json(&mut ws).await["id"], id);
    }
    let mut sse = a.sse("/realtime/sse?channels=public.e", None).await;
    let old_cursor = {
        let id = a.publish_one("public.e", json!(5)).await;
        assert_eq!(next_json(&mut ws).await["id"], id);
        sse.expect().await.id.unwrap()
    };
    // Redis comes back empty (no persistence, or a failover to an empty replica).
    let mut c = redis.client().await;
    let _: () = ::redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();

    // Ids restart from 1 under a new epoch: the clients are told, then follow on.
    let fresh = a.publish_one("public.e", json!("after")).await;
    assert_eq!(fresh, "1");
    let reset = next_json(&mut ws).await;
    assert_eq!(
        (reset["type"].as_str(), &reset["channels"]),
        (Some("reset"), &json!(["public.e"])),
        "{reset}"
    );
    assert_eq!(next_json(&mut ws).await["id"], fresh);
    let e = sse.expect().await;
    assert_eq!(e.event, "reset", "{}", e.data);
    assert_eq!(sse.expect().await.json()["id"], fresh);

    // A cursor from before the loss resumes with a reset, never a silent hole.
    let mut again = b
        .sse("/realtime/sse?channels=public.e", Some(&old_cursor))
        .await;
    assert_eq!(again.expect().await.event, "reset");
    let next = a.publish_one("public.e", json!("next")).await;
    assert_eq!(again.expect().await.json()["id"], next);
}

/// Calls of `cmd` Redis has served so far (its own and its scripts').
async fn calls(redis: &RedisServer, cmd: &str) -> u64 {
    let mut c = redis.client().await;
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_storm_of_resumes_shares_its_reads_of_the_id_counter_and_loses_nothing() {
    let redis = RedisServer::start().await;
    let a = &cluster(&redis, 1).await[0];
    // The storm arrives over many connections of one test client.
    let b = &TestGateway::builder()
        .section(&redis.broker_yaml(&prefix_of(a).await))
        .limits("  per_client: { messages: { rate: 1000/s, burst: 1000 } }")
        .start()
        .await;
    eventually(10, "instance ready", || ready(b)).await;
    let start = poll(a, "channels=public.storm&timeout=0").await;
    let cursor = start["cursor"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(a.publish_one("public.storm", json!(i)).await);
    }
    let before = calls(&redis, "get").await;
    // Redis holds every command for a moment, so the storm's follows all
    // wait on the channel's subscription together, as they do behind a
    // lost node's reconnects.
    let mut c = redis.client().await;
    let () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(800)
        .arg("ALL")
        .query_async(&mut c)
        .await
        .unwrap();
    let n = 100;
    let query = format!("channels=public.storm&cursor={cursor}");
    let answers = futures_util::future::join_all((0..n).map(|_| b.poll(&query))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let got: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, ids, "each resume gets every message once, in order");
    }
    // Each replay script reads two keys with GET; each follow read the id
    // counter once more before it was shared.
    let gets = calls(&redis, "get").await - before;
    assert!(
        gets < 2 * n + n / 2,
        "{gets} GETs for {n} resumes: the follows' reads of the counter were not shared"
    );
}
