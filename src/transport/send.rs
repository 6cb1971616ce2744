//! Client messages: what browsers send to the application through pushgate
//! (`POST /realtime/send`, or the WebSocket `send` op).
//!
//! Each is POSTed as JSON to `client_messages.forward_to` on the backend
//! (`client_messages.upstream`, else `default`) with
//! `X-Pushgate-Subject` (the token subject, when there is one) and
//! `X-Pushgate-Connection`; the backend's JSON answer comes back to the
//! client. A backend failure is an error reply, never a dropped connection.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{admit, query, read_json};
use crate::conn_info::ConnInfo;
use crate::reply::{self, Body};
use crate::state::{AppState, Settings};
use crate::upstream::BackendError;

/// Why a client message could not be delivered; each maps to one code.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("client_messages.forward_to is not configured")]
    NotConfigured,
    #[error("the application answered {0}")]
    Status(u16),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl SendError {
    pub fn code(&self) -> &'static str {
        match self {
            SendError::NotConfigured => "not_configured",
            SendError::Backend(BackendError::Busy(_)) => "upstream_busy",
            SendError::Status(_) | SendError::Backend(_) => "backend_error",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            SendError::NotConfigured => StatusCode::NOT_FOUND,
            SendError::Backend(BackendError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            SendError::Backend(BackendError::Busy(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What a client sends the application: JSON, or bytes (a binary
/// WebSocket frame), which go as `application/octet-stream`.
pub enum Payload {
    Json(Box<RawValue>),
    Bytes(Bytes),
}

impl Payload {
    /// Its size, as `max_message` bounds it.
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(data) => data.get().len(),
            Payload::Bytes(bytes) => bytes.len(),
        }
    }
}

/// Forward `data` to the backend; returns the backend's JSON answer (or
/// `null` for an empty 2xx body, or the body as a string when not JSON).
pub async fn forward(
    settings: &Settings,
    subject: Option<&str>,
    connection: u64,
    data: &Payload,
) -> Result<Value, SendError> {
    let target = settings
        .config
        .client_messages
        .as_ref()
        .ok_or(SendError::NotConfigured)?;
    let path = target.forward_to.as_str();
    // Validation refuses a name no upstream has; were one to slip through,
    // `default` is where client messages went before upstreams had names.
    let upstream = target
        .upstream
        .as_deref()
        .and_then(|name| settings.upstreams.get(name))
        .unwrap_or_else(|| settings.upstreams.default());
    let mut headers = HeaderMap::new();
    if let Some(v) = subject.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert("x-pushgate-subject", v);
    }
    if let Ok(v) = HeaderValue::from_str(&connection.to_string()) {
        headers.insert("x-pushgate-connection", v);
    }
    let limit = settings.config.realtime.max_message;
    let body = match data {
        Payload::Json(data) => Bytes::copy_from_slice(data.get().as_bytes()),
        Payload::Bytes(bytes) => {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            bytes.clone()
        }
    };
    let (status, answer) = upstream.post(path, headers, body, limit).await?;
    if !status.is_success() {
        return Err(SendError::Status(status.as_u16()));
    }
    if answer.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&answer)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer).into_owned())))
}

/// `POST /realtime/send` with `{"data": …}`.
pub async fn post(
    state: AppState,
    settings: std::sync::Arc<Settings>,
    req: Request<Incoming>,
) -> Response<Body> {
    let q: HashMap<String, String> = query(&req);
    // The application is told who sends (`X-Pushgate-Subject`): always asked.
    let client = match admit(&state, &settings, &req, &q, true).await {
        Ok(c) => c,
        Err(refusal) => return refusal.response(),
    };
    let connection = req.extensions().get::<ConnInfo>().map_or(0, |c| c.id);
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SendBody {
        data: Option<Box<RawValue>>,
        /// Bytes in base64, sent on as `application/octet-stream`.
        data_base64: Option<String>,
    }
    // Room for `max_message` bytes in base64, escaped as some encoders do.
    let limit = crate::model::publish::base64_body_limit(settings.config.realtime.max_message);
    let parsed: SendBody = match read_json(req.into_body(), limit, "{\"data\": …}").await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let payload = match (parsed.data, parsed.data_base64) {
        (Some(data), None) => Payload::Json(data),
        (None, Some(b64)) => match crate::model::publish::base64_bytes(&b64) {
            Some(bytes) => Payload::Bytes(bytes.into()),
            None => {
                let why = "`data_base64` is not base64";
                return reply::error(StatusCode::BAD_REQUEST, "bad_base64", why);
            }
        },
        _ => {
            let why = "give `data` or `data_base64`";
            return reply::error(StatusCode::BAD_REQUEST, "bad_request", why);
        }
    };
    if payload.len() > settings.config.realtime.max_message {
        let why = "data exceeds realtime.max_message";
        return reply::error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", why);
    }
    let subject = client.identity.as_ref().map(|i| i.subject.as_str());
    match forward(&settings, subject, connection, &payload).await {
        Ok(answer) => reply::json(StatusCode::OK, &serde_json::json!({ "data": answer })),
        Err(e) => reply::error(e.status(), e.code(), &e),
    }
}
