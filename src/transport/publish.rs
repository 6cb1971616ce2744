//! `POST /realtime/publish`: the HTTP form of the WebSocket `publish` op, so
//! a browser on SSE or long-poll can publish where the channel rule says
//! `publish: clients`. Same checks, same answer shape as the op's ack.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::value::RawValue;

use super::{admit, query};
use crate::broker::Publish;
use crate::hub::message;
use crate::reply::{self, Body};
use crate::state::{AppState, Settings};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: String,
    event: Option<String>,
    data: Box<RawValue>,
}

/// `POST /realtime/publish` with `{"channel", "event"?, "data"}`; answers `{"channel", "id"}`.
pub async fn post(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<Incoming>,
) -> Response<Body> {
    let q = query(&req);
    let client = match admit(&state, &settings, &req, &q) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let max = settings.config.realtime.max_message;
    let body = match Limited::new(req.into_body(), max + 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "message over realtime.max_message",
            );
        }
    };
    let parsed: PublishBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("expected {{\"channel\", \"event\"?, \"data\"}}: {e}"),
            );
        }
    };
    if !message::valid_channel(&parsed.channel) {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_channel",
            "invalid channel name",
        );
    }
    let rule = match settings
        .rules
        .check_client_publish(&parsed.channel, client.identity.as_ref())
    {
        Ok(rule) => rule,
        Err(refusal) => return reply::error(refusal.status(), refusal.code(), &refusal),
    };
    let event = parsed.event.unwrap_or_else(|| "message".into());
    if !message::valid_event(&event) {
        return reply::error(StatusCode::BAD_REQUEST, "bad_request", "invalid event name");
    }
    let data = match crate::admin::publish::compact(&parsed.data) {
        Some(d) if d.get().len() <= max => d,
        Some(_) => {
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "data exceeds realtime.max_message",
            );
        }
        None => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "data is not valid JSON",
            );
        }
    };
    let publish = Publish {
        channel: parsed.channel.into(),
        event: event.into(),
        data,
        key: None,
        history: rule.history,
    };
    match state.broker.publish(publish).await {
        Ok(m) => {
            state.count_published(1);
            reply::json(
                StatusCode::OK,
                &serde_json::json!({"channel": &*m.channel, "id": m.id()}),
            )
        }
        Err(e) => reply::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}
