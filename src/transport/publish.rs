//! `POST /realtime/publish`: the HTTP form of the WebSocket `publish` op, so
//! a browser on SSE or long-poll can publish where the channel rule says
//! `publish: clients`. Same checks, same answer shape as the op's ack.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::value::RawValue;

use super::admission;
use super::login;
use super::{Client, admit, login_deferred, query, read_json};
use crate::broker::{BrokerError, Publish};
use crate::hub::{Message, message};
use crate::reply::{self, Body};
use crate::rules::Refusal;
use crate::state::{AppState, Settings};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: String,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    /// Bytes in base64, in place of `data` (a binary message).
    data_base64: Option<String>,
}

/// Why a client's publish was not accepted; one status and code each.
#[derive(Debug, thiserror::Error)]
pub enum ClientPublishError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The application's answer to the channel's `publish: { check }`.
    #[error("{}", .0.message)]
    Denied(admission::Refusal),
    #[error("invalid event name (presence, pusher:* and pusher_internal:* are the gateway's own)")]
    BadEvent,
    #[error("data exceeds realtime.max_message")]
    TooLarge,
    #[error("data is not valid JSON")]
    BadData,
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl ClientPublishError {
    pub fn status(&self) -> StatusCode {
        match self {
            ClientPublishError::Refused(r) => r.status(),
            ClientPublishError::Denied(d) => d.status,
            ClientPublishError::BadEvent | ClientPublishError::BadData => StatusCode::BAD_REQUEST,
            ClientPublishError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientPublishError::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ClientPublishError::Refused(r) => r.code(),
            ClientPublishError::Denied(d) => d.code,
            ClientPublishError::BadEvent | ClientPublishError::BadData => "bad_request",
            ClientPublishError::TooLarge => "too_large",
            ClientPublishError::Broker(_) => "unavailable",
        }
    }
}

/// A refused publish as both transports render it: the same status, code
/// and message as an HTTP answer or an error op. (No `Retry-After` on a
/// 429 here: the answer has never carried one.)
impl From<ClientPublishError> for admission::Refusal {
    fn from(e: ClientPublishError) -> Self {
        admission::Refusal::new(e.status(), e.code(), e.to_string())
    }
}

/// Publish for a client (the WebSocket `publish` op and `POST <path>/publish`):
/// the channel rule must say `publish: clients` for the client (or its
/// `publish: { check }` must allow it), and the message obeys the same
/// limits as any other.
pub async fn publish_as_client(
    state: &AppState,
    settings: &Settings,
    client: &Client,
    channel: String,
    event: Option<String>,
    data: &RawValue,
    // `data` is bytes in base64 (a binary frame), their size checked by
    // the caller, which had them.
    binary: bool,
) -> Result<Arc<Message>, ClientPublishError> {
    let verdict = settings
        .rules
        .check_client_publish(&channel, client.identity.as_ref())?;
    let (rule, _) = login::allow(
        state,
        settings,
        client.credential.as_deref(),
        crate::session_auth::Asker::for_resources(client.addr, client.by_session),
        &channel,
        verdict,
    )
    .await
    .map_err(ClientPublishError::Denied)?;
    let event = event.unwrap_or_else(|| "message".into());
    if !message::valid_event(&event) {
        return Err(ClientPublishError::BadEvent);
    }
    let data = match crate::model::publish::compact(data) {
        Some(d) if binary || d.get().len() <= settings.config.realtime.max_message => d,
        Some(_) => return Err(ClientPublishError::TooLarge),
        None => return Err(ClientPublishError::BadData),
    };
    let publish = Publish {
        channel: channel.into(),
        event: event.into(),
        data,
        key: None,
        history: rule.history,
        origin: None,
        binary,
    };
    Ok(state.publish(publish).await?)
}

/// `POST /realtime/publish` with `{"channel", "event"?, "data"}`; answers `{"channel", "id"}`.
pub async fn post(
    state: AppState,
    settings: Arc<Settings>,
    req: Request<Incoming>,
) -> Response<Body> {
    let q = query(&req);
    // The cheap refusals before the body is read: a token of ours that
    // fails, the client's message rate and its connection slot (held while
    // the body arrives, so one client cannot keep many slow uploads open).
    // The application's login waits for the body: whether it is asked
    // depends on the channel.
    let mut client = match admit(&state, &settings, &req, &q, false).await {
        Ok(c) => c,
        Err(refusal) => return refusal.response(),
    };
    let (parts, body) = req.into_parts();
    // Room for `max_message` bytes in base64, escaped as some encoders do.
    let limit = crate::model::publish::base64_body_limit(settings.config.realtime.max_message);
    let shape = "{\"channel\", \"event\"?, \"data\" | \"data_base64\"}";
    let parsed: PublishBody = match read_json(body, limit, shape).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let req = Request::from_parts(parts, ());
    let (data, binary) = match (parsed.data, parsed.data_base64) {
        (Some(data), None) => (data, false),
        (None, Some(b64)) => match crate::model::publish::base64_data(&b64) {
            Some((_, size)) if size > settings.config.realtime.max_message => {
                return admission::Refusal::from(ClientPublishError::TooLarge).response();
            }
            Some((data, _)) => (data, true),
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
    if settings.rules.needs_identity_to_publish(&parsed.channel) {
        if let Err(resp) = login_deferred(&state, &settings, &req, &mut client).await {
            return resp;
        }
    }
    match publish_as_client(
        &state,
        &settings,
        &client,
        parsed.channel,
        parsed.event,
        &data,
        binary,
    )
    .await
    {
        Ok(m) => reply::json(
            StatusCode::OK,
            &serde_json::json!({"channel": &*m.channel, "id": m.id()}),
        ),
        Err(e) => admission::Refusal::from(e).response(),
    }
}
