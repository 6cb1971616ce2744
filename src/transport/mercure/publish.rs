//! `POST {mercure.path}`: a publisher's update, through the gateway's one
//! publish road (`AppState::publish`), so history, Redis, limits and
//! metrics count it as any message.
//!
//! Order of judgement: size (413, from `Content-Length` before a byte of
//! the body is read, else while reading, never past `realtime.max_message`),
//! then the token (401), the rate (429: the `limits.publish` quota per
//! token subject, else per address; a cookie-authorized publish is a
//! browser's, so it also spends that client's `per_client.messages`), the
//! form (400), the rights on every topic (403).
//! The `mercureAuthorization` cookie counts only on a request whose
//! `Origin` is in `mercure.publish_origins`: a cookie rides along with any
//! page's request, so without that check any site could publish in a
//! signed-in user's name.

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use std::sync::Arc;

use super::{Presented, Refused, hub_url, presented, text};
use crate::config::Mercure;
use crate::conn_info::ConnInfo;
use crate::limits::ClientKey;
use crate::mercure::form::{FormError, UpdateForm};
use crate::mercure::update;
use crate::model::{Publish, valid_event};
use crate::reply::Body;
use crate::state::{AppState, Settings};

pub(super) async fn post(
    state: &AppState,
    settings: &Settings,
    config: &Mercure,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refused> {
    let limit = settings.config.realtime.max_message;
    let too_large = || {
        Refused::TooLarge(format!(
            "the update is over realtime.max_message ({limit} bytes)"
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let base = hub_url(config, &req)?;
    let mut from_browser = false;
    let token = match presented(req.headers()) {
        Presented::Bearer(t) => t.to_string(),
        Presented::Cookie(t) => {
            let origin = req
                .headers()
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok());
            if !origin.is_some_and(|o| config.publish_origins.iter().any(|p| p == o)) {
                return Err(Refused::InvalidToken(
                    "the mercureAuthorization cookie publishes only from mercure.publish_origins"
                        .into(),
                ));
            }
            from_browser = true;
            t.to_string()
        }
        Presented::None => return Err(Refused::NoToken),
    };
    let keys = settings
        .mercure
        .as_ref()
        .ok_or_else(|| Refused::Unavailable("no Mercure hub".into()))?;
    let (rights, _) = keys
        .publisher
        .verify(&token, &base)
        .map_err(|e| Refused::InvalidToken(e.to_string()))?;
    charge(state, &req, rights.subject.as_deref(), from_browser)?;
    let body = match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => return Err(Refused::BadRequest("the body could not be read".into())),
    };
    let form = UpdateForm::parse(&body, &base).map_err(|e| match e {
        FormError::TooManyTopics => Refused::TooLarge(e.to_string()),
        _ => Refused::BadRequest(e.to_string()),
    })?;
    if let Some(topic) = form
        .topics
        .iter()
        .find(|t| !rights.publish.matches(t, &base))
    {
        return Err(Refused::Forbidden(format!(
            "the token may not publish to {topic:?}"
        )));
    }
    let history = settings.rules.history_for(update::HUB_CHANNEL);
    let publish = update::to_publish(&form, history)
        .ok_or_else(|| Refused::BadRequest("the update cannot be encoded".into()))?;
    if publish.data.get().len() > limit {
        return Err(too_large());
    }
    let m = state
        .publish(publish)
        .await
        .map_err(|e| Refused::Unavailable(e.to_string()))?;
    let id = match &form.id {
        Some(id) => id.clone(),
        None => update::hub_id(m.epoch, m.seq),
    };
    mirror(state, settings, &form, &id).await;
    let mut resp = text(StatusCode::OK, &id);
    // The id alone, as publishers read it (no trailing newline).
    *resp.body_mut() = crate::reply::full(id);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// Publish the update on the pushgate channels `mercure.channels` maps its
/// topics to (a private one only where the channel's `subscribe` rule
/// restricts its readers), as `{"topic","id","data"}` (the topic that
/// mapped to that channel) with the update's `type` as the event name
/// (else `mercure`). The hub already has the update: a channel
/// that cannot take it is logged, and the publisher still gets its id.
async fn mirror(state: &AppState, settings: &Settings, form: &UpdateForm, id: &str) {
    let channels = settings.mercure_channels.channels(
        form.topics.iter().map(String::as_str),
        form.private,
        |c| settings.rules.restricts_readers(c),
    );
    if channels.is_empty() {
        return;
    }
    let event = form
        .kind
        .as_deref()
        .filter(|k| valid_event(k))
        .unwrap_or(update::EVENT);
    for (channel, topic) in channels {
        // The topic that mapped to this channel, which need not be the
        // update's first.
        let body = serde_json::json!({
            "topic": topic,
            "id": id,
            "data": form.data,
        });
        let Ok(data) = serde_json::value::to_raw_value(&body) else {
            continue;
        };
        let publish = Publish {
            history: settings.rules.history_for(&channel),
            channel: Arc::from(channel.as_str()),
            event: Arc::from(event),
            data,
            key: None,
            origin: None,
            binary: false,
        };
        if let Err(error) = state.publish(publish).await {
            tracing::warn!(%channel, %error, "a Mercure update was not published on its channel");
        }
    }
}

/// Spend the publisher's rate (before its body is read).
fn charge<B>(
    state: &AppState,
    req: &Request<B>,
    subject: Option<&str>,
    from_browser: bool,
) -> Result<(), Refused> {
    let info = req.extensions().get::<ConnInfo>();
    let key = match subject {
        Some(sub) => ClientKey::Subject(Arc::from(sub)),
        None => ClientKey::Anonymous {
            addr: info.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.client),
            conn: info.map_or(0, |c| c.id),
        },
    };
    let spent = state.limits.mercure_publish(&key).and_then(|()| {
        if from_browser {
            state.limits.message(&key)
        } else {
            Ok(())
        }
    });
    spent.map_err(|l| {
        state.metrics.limited(l.kind.label());
        Refused::Limited(crate::transport::limited(l))
    })
}
