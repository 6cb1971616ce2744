//! Serving one webhook call: read the body within the admin body limit, let
//! the matched rule verify and render it (`ingest/webhook.rs`), and publish
//! the message it makes.

use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::ingest::template::{Body, Input};
use crate::ingest::webhook::WebhookRule;
use crate::reply;
use crate::state::{AppState, Settings};

/// Serve one webhook call matched to `rule`.
pub async fn handle(
    state: &AppState,
    settings: &Settings,
    rule: &WebhookRule,
    params: HashMap<String, String>,
    req: Request<Incoming>,
) -> Response<reply::Body> {
    let limit = crate::ingest::body_limit(settings.config.realtime.max_message);
    let (parts, bytes) = match super::body::read(req, limit).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    if let Err((status, code, msg)) = rule.verify(&parts.headers, &bytes) {
        return reply::error(status, code, msg);
    }
    let query = crate::model::template::query_of(&parts.uri);
    let input = Input {
        body: Some(Body::new(&bytes, false)),
        headers: Some(&parts.headers),
        path: parts.uri.path(),
        path_params: params,
        query,
        ..Default::default()
    };
    let max_message = settings.config.realtime.max_message;
    let publish = match rule.render(&input, max_message, &settings.rules) {
        Ok(p) => p,
        Err((status, code, msg)) => return reply::error(status, code, msg),
    };
    match state.publish(publish).await {
        Ok(m) => reply::json(
            StatusCode::OK,
            &serde_json::json!({"published": [{"channel": &*m.channel, "id": m.id()}], "ids": [m.id()]}),
        ),
        Err(e) => reply::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}
