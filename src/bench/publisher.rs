//! The publishing side of the load generator: timestamped messages at a
//! fixed rate, in the publish format of the server under test.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use std::sync::atomic::Ordering::Relaxed;

use super::Plan;
use super::progress::Progress;

/// The server under test decides the publish format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `POST /publish` with a JSON array of messages.
    Pushgate,
    /// `POST /publish/` with GRIP items (`http-stream` and `ws-message` formats).
    Pushpin,
    /// nginx + Nchan: `POST /pub?id=<channel>` with the message as the body.
    Nchan,
    /// pushgate's Mercure hub: `POST {mercure_path}` on the public listener,
    /// one form (`topic`, `data`) per message with the publisher's token,
    /// as `symfony/mercure` publishes.
    Mercure,
    /// Another Pusher server (sockudo, soketi): subscribers and publisher
    /// speak only the Pusher protocol and HTTP API.
    Pusher,
}

/// How often a batch goes out.
const TICK: Duration = Duration::from_millis(10);

/// `{"n":…,"t":…,"p":"xxx…"}` padded to about `size` bytes; `t` is µs since `epoch`.
fn payload(n: usize, epoch: Instant, size: usize) -> String {
    let t = epoch.elapsed().as_micros();
    let head = format!("{{\"n\":{n},\"t\":{t},\"p\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// Publish `plan.messages` at `plan.rate`; returns the number of failed requests.
pub async fn publish(plan: &Plan, epoch: Instant, progress: &Progress) -> u64 {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let started = Instant::now();
    let mut sent = 0usize;
    let mut errors = 0u64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < plan.messages {
        tick.tick().await;
        let due =
            ((started.elapsed().as_secs_f64() * plan.rate as f64) as usize).min(plan.messages);
        if due <= sent {
            continue;
        }
        let batch: Vec<(String, String)> = (sent..due)
            .map(|n| {
                (
                    format!("{}.{}", plan.prefix, n % plan.channels.max(1)),
                    payload(n, epoch, plan.size),
                )
            })
            .collect();
        sent = due;
        errors += send(&client, plan, batch).await;
        progress.published.store(sent, Relaxed);
    }
    errors
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    plan: &Plan,
    batch: Vec<(String, String)>,
) -> u64 {
    let base = plan.publish.as_str().trim_end_matches('/');
    let post = |uri: String, body: String| {
        let req = http::Request::post(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        async move {
            match req {
                Ok(req) => match client.request(req).await {
                    Ok(resp) if resp.status().is_success() => 0,
                    _ => 1,
                },
                Err(_) => 1,
            }
        }
    };
    if let (Some(app), super::subscriber::Transport::Pusher) = (&plan.pusher, plan.transport) {
        return pusher_batches(client, base, app, batch).await;
    }
    match plan.target {
        Target::Pushgate | Target::Pusher => {
            let items: Vec<String> = batch
                .iter()
                .map(|(c, data)| format!("{{\"channel\":\"{c}\",\"data\":{data}}}"))
                .collect();
            post(format!("{base}/publish"), format!("[{}]", items.join(","))).await
        }
        Target::Pushpin => {
            let items: Vec<String> = batch
                .iter()
                .map(|(c, data)| {
                    let sse = serde_json::to_string(&format!("data: {data}\n\n")).unwrap_or_default();
                    let ws = serde_json::to_string(data).unwrap_or_default();
                    format!(
                        "{{\"channel\":\"{c}\",\"formats\":{{\"http-stream\":{{\"content\":{sse}}},\"ws-message\":{{\"content\":{ws}}}}}}}"
                    )
                })
                .collect();
            post(
                format!("{base}/publish/"),
                format!("{{\"items\":[{}]}}", items.join(",")),
            )
            .await
        }
        Target::Nchan => {
            let sends = batch
                .into_iter()
                .map(|(c, data)| post(format!("{base}/pub?id={c}"), data));
            futures_util::future::join_all(sends)
                .await
                .into_iter()
                .sum()
        }
        Target::Mercure => {
            // One after the other: the hub numbers updates in the order
            // they arrive, and subscribers check the order.
            let uri = format!("{base}{}", plan.mercure_path);
            let token = plan.mercure_jwt.as_deref().unwrap_or_default();
            let mut errors = 0;
            for (c, data) in batch {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("topic", &c)
                    .append_pair("data", &data)
                    .finish();
                let req = http::Request::post(uri.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::from(body)));
                errors += match req {
                    Ok(req) => match client.request(req).await {
                        Ok(resp) if resp.status().is_success() => 0,
                        _ => 1,
                    },
                    Err(_) => 1,
                };
            }
            errors
        }
    }
}

/// The Pusher HTTP API: `POST /apps/{id}/batch_events`, ten events a
/// request (Pusher's batch limit), signed as the server libraries sign.
/// `data` is the payload as a JSON string, as the libraries send it.
async fn pusher_batches(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    app: &super::pusher::App,
    batch: Vec<(String, String)>,
) -> u64 {
    let path = format!("/apps/{}/batch_events", app.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // One request after the other: requests in flight together may be
    // served out of order, which the subscribers' order check would count
    // as duplicates and losses.
    let mut errors = 0;
    for chunk in batch.chunks(10) {
        let events: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(c, data)| {
                serde_json::json!({ "name": super::pusher::EVENT, "channel": c, "data": data })
            })
            .collect();
        let body = serde_json::json!({ "batch": events }).to_string();
        let query = app
            .signer
            .sign_request("POST", &path, Vec::new(), body.as_bytes(), now);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let req = http::Request::post(format!("{base}{path}?{query}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        let ok = match req {
            Ok(req) => matches!(client.request(req).await, Ok(resp) if resp.status().is_success()),
            Err(_) => false,
        };
        errors += u64::from(!ok);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_and_stamps() {
        let p = payload(7, Instant::now(), 512);
        assert_eq!(p.len(), 512);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["n"], 7);
        assert!(v["t"].is_u64());
    }
}
