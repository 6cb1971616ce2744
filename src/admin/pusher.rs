//! The Pusher HTTP API on the admin listener: what the official server
//! libraries call (`trigger`, `triggerBatch`, channel queries), at
//! `/apps/{id}/…`.
//!
//! These requests carry Pusher's request signature instead of an admin key:
//! the signature is their authentication, so they are served before the
//! admin-key check and from any peer. A browser's cross-site request is
//! still refused first (`browsers.rs`), and a POST body must be JSON; the
//! `Host` check of a keyless admin is not needed, since a page that a
//! rebound name lets in cannot sign. Then, in order: the app by id (404),
//! the signature over method, path and query (401, before a byte of the
//! body is read: an unsigned peer never makes the gateway buffer), the body
//! within a bound made from the app's `max_message` and never over
//! [`MAX_BODY`] (413), its `body_md5` (401), the request's own checks
//! (`events.rs`, `channels.rs`), the app's rate (429, on `limits.publish`
//! per app), and the work. Every answer is counted per app and status.

mod channels;
mod events;
mod info;
mod refusal;
mod users;

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::pusher::App;
use crate::reply::{self, Body};
use crate::state::AppState;
use refusal::Refused;

/// Serve one `/apps/…` request.
pub(crate) async fn serve(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let mut app_id = None;
    let resp = match super::browsers::check(&req, false) {
        Err(refused) => refused.response(),
        Ok(()) => match handle(&state, req, &mut app_id).await {
            Ok(resp) => resp,
            Err(Browser(refused)) => refused.response(),
            Err(Api(refused)) => {
                tracing::debug!(%refused, app = app_id.as_deref(), "pusher api request refused");
                refused.response()
            }
        },
    };
    state
        .metrics
        .pusher_api(app_id.as_deref(), resp.status().as_u16());
    resp
}

/// A refusal: the admin listener's own (JSON) or the Pusher API's (text).
enum Failure {
    Browser(super::browsers::BrowserRefusal),
    Api(Refused),
}
use Failure::{Api, Browser};

impl From<Refused> for Failure {
    fn from(r: Refused) -> Failure {
        Api(r)
    }
}

/// What a path under `/apps/{id}/` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    Users(String),
    /// `users/{user_id}/terminate_connections`.
    Terminate(String),
}

impl Endpoint {
    /// `rest` is the path after `/apps/{id}/`.
    fn of(method: &Method, rest: &str) -> Result<Endpoint, Refused> {
        let segments: Vec<&str> = rest.split('/').collect();
        let (endpoint, wants) = match segments.as_slice() {
            ["events"] => (Endpoint::Events, Method::POST),
            ["batch_events"] => (Endpoint::BatchEvents, Method::POST),
            ["channels"] => (Endpoint::Channels, Method::GET),
            ["channels", name] if !name.is_empty() => {
                (Endpoint::Channel(decode(name)), Method::GET)
            }
            ["channels", name, "users"] if !name.is_empty() => {
                (Endpoint::Users(decode(name)), Method::GET)
            }
            ["users", user, "terminate_connections"] if !user.is_empty() => {
                (Endpoint::Terminate(decode(user)), Method::POST)
            }
            _ => return Err(Refused::NotFound),
        };
        if *method != wants {
            return Err(Refused::Method);
        }
        Ok(endpoint)
    }
}

fn decode(segment: &str) -> String {
    crate::model::path_pattern::percent_decode(segment)
}

/// The most any API request body may be, whatever the app's `max_message`.
/// The body is read only after the signature passed, but a signed query
/// stays valid for its timestamp window and `body_md5` is checked only
/// once the body is in, so a captured URL could carry any body: this keeps
/// that buffer modest. A message bigger than fits goes through `/publish`.
const MAX_BODY: usize = 1024 * 1024;

/// The bound on a request body: a batch of the most events, each with data
/// at the app's limit written with JSON's longest escapes (`\u0000`, six
/// bytes a byte), plus room for names, channels and socket ids; at most
/// [`MAX_BODY`].
fn body_limit(max_message: usize) -> usize {
    max_message
        .saturating_mul(6)
        .saturating_add(20 * 1024)
        .saturating_mul(events::MAX_BATCH)
        .min(MAX_BODY)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    app_id: &mut Option<std::sync::Arc<str>>,
) -> Result<Response<Body>, Failure> {
    let settings = state.settings();
    let path = req.uri().path();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let (app, rest) = match path.strip_prefix("/apps/") {
        Some(p) => {
            let (id, rest) = p.split_once('/').ok_or(Refused::UnknownApp)?;
            (settings.pusher.by_id(&decode(id)), rest)
        }
        // `/users/{id}/terminate_connections` as the Python library sends
        // it: the app is the one whose key signed it.
        None => {
            let key = query.iter().find(|(k, _)| k == "auth_key");
            let app = key.and_then(|(_, key)| settings.pusher.by_key(key));
            (app, path.strip_prefix('/').unwrap_or(path))
        }
    };
    let app: std::sync::Arc<App> = app.ok_or(Refused::UnknownApp)?.clone();
    *app_id = Some(app.id.clone());
    let endpoint = Endpoint::of(req.method(), rest)?;
    if *req.method() == Method::POST {
        super::browsers::check_json(req.headers()).map_err(Browser)?;
    }
    let digest = app
        .signer
        .verify_query(req.method().as_str(), req.uri().path(), &query, unix_now())
        .map_err(Refused::from)?;
    let limit = body_limit(app.config.max_message);
    let body = match super::body::read(req, limit).await {
        Ok((_, body)) => body,
        Err(resp) if resp.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Api(Refused::TooLarge(format!(
                "Request body too large: over {limit} bytes"
            ))));
        }
        Err(_) => return Err(Api(refusal::bad("Could not read the request body"))),
    };
    digest.check(&body).map_err(Refused::from)?;
    let answer = match endpoint {
        Endpoint::Events | Endpoint::BatchEvents => {
            let batch = endpoint == Endpoint::BatchEvents;
            let triggers = if batch {
                events::parse_batch(&body, &app)?
            } else {
                vec![events::parse_event(&body, &app)?]
            };
            let n = triggers.iter().map(events::Trigger::len).sum();
            state
                .limits
                .pusher_api(&app.id, app.config.api_rate.as_ref(), n)
                .map_err(Refused::Limited)?;
            events::publish(state, &settings.rules, &triggers, batch).await?
        }
        Endpoint::Terminate(user) => {
            state
                .limits
                .pusher_api(&app.id, app.config.api_rate.as_ref(), 1)
                .map_err(Refused::Limited)?;
            users::terminate(state, &app, &user).await?
        }
        Endpoint::Channels | Endpoint::Channel(_) | Endpoint::Users(_) => {
            state
                .limits
                .pusher_api(&app.id, app.config.api_rate.as_ref(), 1)
                .map_err(Refused::Limited)?;
            match &endpoint {
                Endpoint::Channel(name) => channels::one(state, &app, name, &query).await?,
                Endpoint::Users(name) => channels::users(state, &app, name).await?,
                _ => channels::list(state, &settings.pusher, &app, &query).await?,
            }
        }
    };
    Ok(reply::json(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path_and_method() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(Endpoint::of(&post, "events"), Ok(Endpoint::Events));
        assert_eq!(
            Endpoint::of(&post, "batch_events"),
            Ok(Endpoint::BatchEvents)
        );
        assert_eq!(Endpoint::of(&get, "channels"), Ok(Endpoint::Channels));
        assert_eq!(
            Endpoint::of(&get, "channels/presence-a%40b"),
            Ok(Endpoint::Channel("presence-a@b".into()))
        );
        assert_eq!(
            Endpoint::of(&get, "channels/presence-a/users"),
            Ok(Endpoint::Users("presence-a".into()))
        );
        assert!(matches!(Endpoint::of(&get, "events"), Err(Refused::Method)));
        assert!(matches!(
            Endpoint::of(&get, "channels//users"),
            Err(Refused::NotFound)
        ));
        assert!(matches!(
            Endpoint::of(&post, "users/1/x"),
            Err(Refused::NotFound)
        ));
        assert_eq!(
            Endpoint::of(&post, "users/u%201/terminate_connections"),
            Ok(Endpoint::Terminate("u 1".into()))
        );
        assert!(matches!(
            Endpoint::of(&get, "users/1/terminate_connections"),
            Err(Refused::Method)
        ));
    }

    #[test]
    fn the_body_bound_holds_a_full_batch_of_escaped_data_up_to_a_fixed_cap() {
        let max = 10 * 1024;
        assert!(body_limit(max) >= events::MAX_BATCH * max * 6);
        assert!(body_limit(max) < MAX_BODY);
        assert_eq!(body_limit(16 * 1024 * 1024), MAX_BODY);
        assert_eq!(body_limit(usize::MAX), MAX_BODY);
    }
}
