//! The Mercure hub in Chromium, as the Mercure conformance suite drives a
//! hub: a page subscribes with a plain `EventSource` (anonymous: public
//! updates only) and with `fetch` carrying `Authorization: Bearer`, reading
//! the event stream from the response body (private updates too).

use serde_json::json;

use crate::common::TestGateway;
use crate::harness::Browser;

const PUB_SECRET: &str = "browser-mercure-publisher-secret";
const SUB_SECRET: &str = "browser-mercure-subscriber-secret";
const TOPIC: &str = "https://example.com/books/1";

const SUBSCRIBE: &str = r#"
const base = arguments[0], token = arguments[1], topic = arguments[2];
window.out = { es: [], fetched: '', status: 0, open: false };
const u = new URL(base + '/.well-known/mercure');
u.searchParams.append('match', topic);
const es = new EventSource(u);
es.onopen = () => { out.open = true; };
es.onmessage = (e) => { out.es.push(e.lastEventId + '|' + e.data); };
fetch(u, { headers: { Authorization: 'Bearer ' + token } }).then(async (r) => {
  out.status = r.status;
  const reader = r.body.getReader();
  const text = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out.fetched += text.decode(value, { stream: true });
  }
});
"#;

fn sign(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn publish(gw: &TestGateway, form: &[(&str, &str)]) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = gw
        .http1
        .post(gw.url("/.well-known/mercure"))
        .bearer_auth(sign(json!({"mercure": {"publish": ["*"]}}), PUB_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn chromium_event_source_and_fetch_receive_updates() {
    let gw = TestGateway::builder()
        .section(&format!(
            "mercure:\n  publisher_jwt: {{ hs256_secret: {PUB_SECRET} }}\n  subscriber_jwt: {{ hs256_secret: {SUB_SECRET} }}\n  anonymous: true\n"
        ))
        .start()
        .await;
    let b = Browser::start().await;
    b.client.goto(&gw.url("/realtime/client.js")).await.unwrap();
    let reader = sign(json!({"mercure": {"subscribe": [TOPIC]}}), SUB_SECRET);
    b.client
        .execute(
            SUBSCRIBE,
            vec![json!(gw.url("")), json!(reader), json!(TOPIC)],
        )
        .await
        .unwrap();
    b.until(
        10,
        "both subscriptions open",
        "return out.open && out.status === 200",
    )
    .await;

    let secret = publish(
        &gw,
        &[("topic", TOPIC), ("data", "secret"), ("private", "on")],
    )
    .await;
    let public = publish(&gw, &[("topic", TOPIC), ("data", "public\nline")]).await;
    b.until(
        10,
        "the public update in EventSource and both in fetch",
        "return out.es.length >= 1 && out.fetched.includes('data: line')",
    )
    .await;
    let es = b.js("return out.es").await;
    assert_eq!(
        es,
        json!([format!("{public}|public\nline")]),
        "anonymous: public only"
    );
    let fetched = b.js("return out.fetched").await;
    let fetched = fetched.as_str().unwrap();
    let secret_at = fetched
        .find(&format!("id: {secret}\ndata: secret\n"))
        .expect("the private update");
    let public_at = fetched
        .find(&format!("id: {public}\ndata: public\ndata: line\n"))
        .expect("the public update");
    assert!(secret_at < public_at, "in order: {fetched}");
    b.finish().await;
}
