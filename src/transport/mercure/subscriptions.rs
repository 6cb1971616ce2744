//! Active subscriptions (`mercure.subscriptions: true`): the events a
//! subscriber's arrival and departure publish (private updates on
//! `{hub}/subscriptions/{topic}/{subscriber}`, readable by tokens allowed
//! to subscribe to that topic), and the API that lists them,
//! `GET {hub}/subscriptions[/{topic}[/{subscriber}]]`, under the same rule.
//!
//! The list is this instance's; the events go through the hub channel,
//! so subscribers on every instance see them.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};

use super::{Presented, Refused, hub_url, presented};
use crate::config::Mercure;
use crate::mercure::form::UpdateForm;
use crate::mercure::subscriptions::{self as subs, Active, Registration};
use crate::mercure::update::{self, HUB_CHANNEL};
use crate::reply::{self, Body};
use crate::state::AppState;

/// Most subscription events one connection publishes when it arrives (and
/// again when it leaves): the events go into the hub channel's history
/// like any update, so a subscriber of a thousand selectors must not push
/// the real updates out of it. Every selector is still listed by the API.
pub(crate) const MAX_ANNOUNCED: usize = 64;

/// A subscriber's subscriptions, listed and announced; when dropped, taken
/// off the list and announced as ended.
pub(super) struct Announced {
    state: AppState,
    hub_path: String,
    active: Vec<Active>,
    _registration: Registration,
}

impl Drop for Announced {
    fn drop(&mut self) {
        let state = self.state.clone();
        let hub_path = std::mem::take(&mut self.hub_path);
        let active = std::mem::take(&mut self.active);
        self.state.lifecycle.spawn(async move {
            for a in active.iter().take(MAX_ANNOUNCED) {
                announce(&state, &hub_path, a, false).await;
            }
        });
    }
}

/// List `topics` of a new subscriber and announce them.
pub(super) async fn arrive(
    state: &AppState,
    config: &Mercure,
    topics: Vec<String>,
    payload: Option<serde_json::Value>,
) -> Announced {
    let subscriber: Arc<str> = subs::new_subscriber_id().into();
    let active: Vec<Active> = topics
        .into_iter()
        .map(|topic| Active {
            topic,
            subscriber: subscriber.clone(),
            payload: payload.clone(),
        })
        .collect();
    let registration = state
        .mercure_subscriptions
        .register(subscriber, active.clone());
    for a in active.iter().take(MAX_ANNOUNCED) {
        announce(state, &config.path, a, true).await;
    }
    Announced {
        state: state.clone(),
        hub_path: config.path.clone(),
        active,
        _registration: registration,
    }
}

/// Publish the event of one subscription; a broker that cannot take it
/// loses only the announcement (logged), never the subscription.
async fn announce(state: &AppState, hub_path: &str, a: &Active, active: bool) {
    let form = UpdateForm {
        topics: vec![subs::topic_of(hub_path, a)],
        data: subs::document(hub_path, a, active).to_string(),
        private: true,
        ..UpdateForm::default()
    };
    let history = state.settings().rules.history_for(HUB_CHANNEL);
    if let Some(p) = update::to_publish(&form, history) {
        if let Err(error) = state.publish(p).await {
            tracing::debug!(%error, "subscription event not published");
        }
    }
}

/// `GET {hub}/subscriptions…`: `rest` is what follows `/subscriptions`.
pub(super) async fn api<B>(
    state: &AppState,
    config: &Mercure,
    req: &Request<B>,
    rest: &str,
) -> Result<Response<Body>, Refused> {
    let base = hub_url(config, req)?;
    let settings = state.settings();
    let verifier = settings
        .mercure
        .as_ref()
        .and_then(|k| k.subscriber.as_ref());
    let rights = match (presented(req.headers()), verifier) {
        (Presented::Bearer(t) | Presented::Cookie(t), Some(v)) => {
            v.verify(t, &base)
                .map_err(|e| Refused::InvalidToken(e.to_string()))?
                .0
        }
        _ => return Err(Refused::NoToken),
    };
    let path = req.uri().path();
    if !rights.subscribe.matches(path, &base) {
        return Err(Refused::Forbidden(format!(
            "the token may not subscribe to {path:?}"
        )));
    }
    let mut parts = rest.split('/').skip(1);
    let bad = || Refused::BadRequest("a path segment is not percent-encoded UTF-8".into());
    let topic = parts
        .next()
        .map(|t| subs::decode(t).ok_or_else(bad))
        .transpose()?;
    let subscriber = parts
        .next()
        .map(|s| subs::decode(s).ok_or_else(bad))
        .transpose()?;
    if parts.next().is_some() {
        return Err(Refused::NotFound);
    }
    let list = state
        .mercure_subscriptions
        .list(topic.as_deref(), subscriber.as_deref());
    let body = if subscriber.is_some() {
        let Some(one) = list.first() else {
            return Err(Refused::NotFound);
        };
        subs::document(&config.path, one, true)
    } else {
        let channel: Arc<str> = Arc::from(HUB_CHANNEL);
        let (_following, head) = crate::broker::follow(&state.broker, &channel)
            .await
            .map_err(|e| Refused::Unavailable(e.to_string()))?;
        let last = if head == 0 {
            "earliest".to_string()
        } else {
            update::hub_id(state.broker.epoch(), head)
        };
        subs::collection(&config.path, path, &list, &last)
    };
    let mut r = reply::json(StatusCode::OK, &body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    Ok(r)
}
