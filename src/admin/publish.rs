//! `POST /publish`: the admin API's way in for messages.
//!
//! Accepts one message or an array: `{"channel"|"channels", "event", "data"
//! | "data_base64", "id"?}`. The whole request is validated before anything
//! is published, so a bad entry in a batch publishes nothing; the answer
//! lists the id each message got, in order. `POST /publish/{channel}` with
//! an `application/octet-stream` body is one binary message ([`raw`]),
//! validated by the same code as a JSON entry with `data_base64`.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::broker::Publish;
use crate::hub::message::{valid_channel, valid_event};
use crate::model::publish::{base64_data, compact};
use crate::state::{AppState, Settings};

/// Most messages one request may carry.
pub const MAX_BATCH: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    channel: Option<String>,
    channels: Option<Vec<String>>,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    /// Bytes, in base64 (RFC 4648 with padding), in place of `data`.
    data_base64: Option<String>,
    /// Idempotency key: a retried publish with the same id is not repeated.
    id: Option<String>,
}

/// A publish request that failed validation: HTTP status, error code, message.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected(pub StatusCode, pub &'static str, pub String);

/// Parse and validate a request body into messages ready for the broker.
pub fn parse(body: &[u8], settings: &Settings) -> Result<Vec<Publish>, Rejected> {
    let bad = |code, msg: String| Rejected(StatusCode::BAD_REQUEST, code, msg);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let entries: Vec<Entry> = match first {
        None => {
            return Err(bad(
                "bad_json",
                "empty body; expected a JSON object or array".into(),
            ));
        }
        Some(b'[') => serde_json::from_slice(body),
        Some(_) => serde_json::from_slice(body).map(|e| vec![e]),
    }
    .map_err(|e| bad("bad_json", format!("invalid publish request: {e}")))?;
    if entries.is_empty() {
        return Err(bad("bad_request", "empty array: nothing to publish".into()));
    }
    if entries.len() > MAX_BATCH {
        return Err(bad(
            "bad_request",
            format!("at most {MAX_BATCH} messages per request"),
        ));
    }
    validate(entries, settings)
}

/// One binary message for `POST /publish/{channel}`: `bytes` as the data,
/// the event and idempotency key from the query (`?event=…&id=…`) or the
/// `X-Pushgate-Event` / `X-Pushgate-Id` headers.
pub fn raw(
    channel: &str,
    event: Option<String>,
    id: Option<String>,
    bytes: &[u8],
    settings: &Settings,
) -> Result<Vec<Publish>, Rejected> {
    use base64::Engine;
    let entry = Entry {
        channel: Some(channel.to_owned()),
        channels: None,
        event,
        data: None,
        data_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        id,
    };
    validate(vec![entry], settings)
}

/// The checks every entry passes, however it came.
fn validate(entries: Vec<Entry>, settings: &Settings) -> Result<Vec<Publish>, Rejected> {
    let bad = |code, msg: String| Rejected(StatusCode::BAD_REQUEST, code, msg);
    let max = settings.config.realtime.max_message;
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let n = i + 1;
        let channels = match (e.channel, e.channels) {
            (Some(c), None) => vec![c],
            (None, Some(cs)) if !cs.is_empty() => cs,
            (Some(_), Some(_)) => {
                return Err(bad(
                    "bad_request",
                    format!("message {n}: give `channel` or `channels`, not both"),
                ));
            }
            _ => {
                return Err(bad(
                    "missing_channel",
                    format!("message {n}: missing `channel` (or `channels`)"),
                ));
            }
        };
        if let Some(c) = channels.iter().find(|c| !valid_channel(c)) {
            return Err(bad(
                "invalid_channel",
                format!(
                    "message {n}: invalid channel name {c:?} (1-200 of A-Z a-z 0-9 . _ - : @ =)"
                ),
            ));
        }
        let event = e.event.unwrap_or_else(|| "message".into());
        if !valid_event(&event) {
            return Err(bad(
                "bad_request",
                format!(
                    "message {n}: invalid event name (1-200 printable characters, no '\"'; \
                     presence, pusher:* and pusher_internal:* are the gateway's own)"
                ),
            ));
        }
        let binary = e.data_base64.is_some();
        let (data, size) = match (e.data, e.data_base64) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "bad_request",
                    format!("message {n}: give `data` or `data_base64`, not both"),
                ));
            }
            (Some(raw), None) => {
                let data = compact(&raw)
                    .ok_or_else(|| bad("bad_json", format!("message {n}: invalid `data`")))?;
                let size = data.get().len();
                (data, size)
            }
            (None, Some(b64)) => base64_data(&b64)
                .ok_or_else(|| bad("bad_base64", format!("message {n}: invalid `data_base64`")))?,
            (None, None) => (
                serde_json::value::to_raw_value(&serde_json::Value::Null)
                    .map_err(|e| bad("bad_json", e.to_string()))?,
                4,
            ),
        };
        if size > max {
            return Err(Rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("message {n}: data is {size} bytes, over realtime.max_message ({max})"),
            ));
        }
        if e.id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 200)
        {
            return Err(bad(
                "bad_request",
                format!("message {n}: `id` must be 1-200 characters"),
            ));
        }
        let event: Arc<str> = event.into();
        for channel in channels {
            out.push(Publish {
                history: settings.rules.history_for(&channel),
                channel: channel.into(),
                event: event.clone(),
                data: data.clone(),
                key: e.id.as_deref().map(Box::from),
                origin: None,
                binary,
            });
        }
    }
    Ok(out)
}

/// Publish validated messages; returns `[{channel, id}]` in request order.
pub async fn publish_all(
    state: &AppState,
    batch: Vec<Publish>,
) -> Result<serde_json::Value, Rejected> {
    let mut published = Vec::with_capacity(batch.len());
    for p in batch {
        match state.publish(p).await {
            Ok(m) => published.push(serde_json::json!({"channel": &*m.channel, "id": m.id()})),
            Err(e) => {
                return Err(Rejected(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{e}; {} of the messages were published", published.len()),
                ));
            }
        }
    }
    let ids: Vec<_> = published.iter().map(|p| p["id"].clone()).collect();
    Ok(serde_json::json!({ "published": published, "ids": ids }))
}
