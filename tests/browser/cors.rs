//! A foreign page cannot read a logged-in user's private channel: with the
//! user's token in a cookie on the gateway's origin, a page from another
//! origin (let in by `"*"`) tries long-poll (`fetch` with credentials),
//! `EventSource` with credentials and a WebSocket, and reads nothing; the same
//! script on an origin listed in `allowed_origins` reads all three.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestGateway;
use crate::harness::Browser;

const SECRET: &str = "browser-cors-secret";

/// Starts poll, SSE and WebSocket reads of `user.alice` on the gateway at
/// `arguments[0]`; each lands in `window.out` as the data read or why not.
const ATTEMPT: &str = r#"
const base = arguments[0];
window.out = {};
fetch(base + '/realtime/poll?channels=user.alice&timeout=10', { credentials: 'include' })
  .then((r) => r.text())
  .then((t) => { out.poll = t; }, (e) => { out.poll = 'blocked: ' + e; });
const es = new EventSource(base + '/realtime/sse?channels=user.alice', { withCredentials: true });
es.onmessage = (e) => { out.sse = e.data; es.close(); };
es.onerror = () => { if (!out.sse) out.sse = 'error'; es.close(); };
const ws = new WebSocket(base.replace('https:', 'wss:') + '/realtime/ws?channels=user.alice', 'pushgate.v1');
ws.onmessage = (e) => {
  const f = JSON.parse(e.data);
  if (f.type === 'message') { out.ws = JSON.stringify(f.data); ws.close(); }
  else if (f.type === 'error') { out.ws = 'error: ' + f.code; }
};
ws.onclose = () => { if (!out.ws) out.ws = 'closed'; };
"#;

/// Run [`ATTEMPT`] from a page of `page_host`'s origin against `gw`,
/// publishing to the private channel until all three reads have ended.
async fn attempt_from(b: &Browser, page_host: &TestGateway, gw: &TestGateway) -> Value {
    // The gateway's own script is a page like any other on that origin.
    b.client
        .goto(&page_host.url("/realtime/client.js"))
        .await
        .unwrap();
    b.client
        .execute(ATTEMPT, vec![json!(gw.url(""))])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = b
            .js("return (out.poll && out.sse && out.ws) ? out : null")
            .await;
        if !out.is_null() {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reads did not end: {}",
            b.js("return out").await
        );
        gw.publish_one("user.alice", json!({"secret": "alice's mail"}))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_the_secret(out: &Value, how: &str) -> bool {
    out[how]
        .as_str()
        .is_some_and(|s| s.contains("alice's mail"))
}

#[tokio::test]
async fn a_foreign_page_cannot_read_a_private_channel_with_the_users_cookie() {
    let allowed = TestGateway::start().await;
    let foreign = TestGateway::start().await;
    let realtime = format!(
        "  heartbeat: 15s\n  allowed_origins: [\"*\", \"{}\"]",
        allowed.url("")
    );
    let auth = format!("auth:\n  jwt: {{ hs256_secret: \"{SECRET}\" }}\n  cookie: pg_token\n");
    let gw = TestGateway::builder()
        .realtime(&realtime)
        .section(&auth)
        .start()
        .await;

    let b = Browser::start().await;
    // The user is logged in: their token is a cookie on the gateway's origin.
    let token =
        pushgate::auth::mint_hs256(SECRET, "alice", &[], Duration::from_secs(300), None, None)
            .unwrap();
    b.client.goto(&gw.url("/realtime/client.js")).await.unwrap();
    b.client
        .execute(
            "document.cookie = 'pg_token=' + arguments[0] + '; path=/; Secure; SameSite=None'",
            vec![json!(token)],
        )
        .await
        .unwrap();

    let out = attempt_from(&b, &foreign, &gw).await;
    for how in ["poll", "sse", "ws"] {
        assert!(
            !read_the_secret(&out, how),
            "a foreign page read it over {how}: {out}"
        );
    }

    let out = attempt_from(&b, &allowed, &gw).await;
    for how in ["poll", "sse", "ws"] {
        assert!(
            read_the_secret(&out, how),
            "the allowed page could not read over {how}: {out}"
        );
    }
    b.finish().await;
}
