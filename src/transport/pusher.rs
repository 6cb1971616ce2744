//! The Pusher Channels WebSocket endpoint, `{pusher.path}/{key}?protocol=7`
//! on the public listener: pusher-js, Laravel Echo and the mobile libraries
//! connect here unchanged.
//!
//! A Pusher socket is one more transport over the one hub: its
//! subscriptions are hub subscriptions of the app's channel names (with the
//! app's `channel_prefix`), admitted by the same path as pushgate's own
//! sockets (per-address and per-client limits, `max_connections`, channel
//! rules, per-channel room), and it receives pushgate publishes as Pusher
//! events. What is Pusher's alone lives here: the app key, socket ids,
//! signed private and presence subscriptions, client events, Pusher's
//! activity check and close codes. The frames themselves are rendered and
//! parsed in `pusher/frames.rs`. pusher-js's HTTP fallback (`xhr.rs`) is
//! the same socket over another carrier.

mod announcement;
mod cache;
mod carrier;
mod counts;
mod deliver;
mod events;
pub(crate) mod over_capacity;
mod socket;
mod subscribe;
mod user;
pub mod xhr;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use super::{admit, query, ws};
use crate::conn_info::ConnInfo;
use crate::pusher::App;
use crate::reply::Body;
use crate::state::{AppState, Settings};

/// The app key of a WebSocket upgrade to a path under `pusher.path`
/// (`/app/{key}`), when the `pusher:` section has apps. Anything else there
/// (the application's own `GET /app/dashboard`, a form POST) is not a
/// Pusher socket and goes to the application, as the relay sends it.
pub fn endpoint<B>(settings: &Settings, req: &Request<B>) -> Option<String> {
    let pusher = settings.config.pusher.as_ref()?;
    let asks = asks_websocket(req) || crate::extended_connect::ask(req).is_some();
    if settings.pusher.is_empty() || !asks {
        return None;
    }
    let path = req.uri().path();
    let key = path.strip_prefix(pusher.path.as_str())?.strip_prefix('/')?;
    (!key.is_empty() && !key.contains('/')).then(|| key.to_owned())
}

/// Whether the request asks to become a WebSocket (`Upgrade: websocket`).
fn asks_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
}

/// What a socket starts with, once upgraded.
struct Opening {
    state: AppState,
    settings: Arc<Settings>,
    client: super::Client,
    /// None: the key is unknown (closed with 4001 after the upgrade, so
    /// pusher-js reads the code and does not retry).
    app: Option<Arc<App>>,
    key: String,
    /// The `protocol` the client asked for (pusher-js sends 7); None when
    /// it sent none.
    protocol: Option<u32>,
    socket_id: Box<str>,
    /// Which HTTP version carried the handshake.
    http: &'static str,
    /// permessage-deflate, when the handshake agreed on it.
    agreed: Option<ws::deflate::Agreed>,
}

impl Opening {
    /// What a connection to app `key` starts with, whichever carrier (a
    /// WebSocket's handshake or an HTTP session's first request `req`):
    /// its app, a new socket id, the protocol asked for; and the span its
    /// task runs in.
    fn new<B>(
        state: &AppState,
        settings: Arc<Settings>,
        req: &Request<B>,
        client: super::Client,
        key: String,
        http: &'static str,
        agreed: Option<ws::deflate::Agreed>,
    ) -> (Box<Opening>, tracing::Span) {
        let app = settings.pusher.by_key(&key).cloned();
        let conn = req.extensions().get::<ConnInfo>();
        let socket_id = state.socket_ids.next();
        let span = tracing::debug_span!(
            "pusher",
            app = app.as_ref().map(|a| &*a.id),
            socket_id = &*socket_id,
            client = conn.map(|c| c.client.to_string()),
            conn = conn.map(|c| c.id),
        );
        let opening = Opening {
            agreed,
            // Sent but no number: 0, an unsupported version.
            protocol: query(req).get("protocol").map(|p| p.parse().unwrap_or(0)),
            state: state.clone(),
            settings,
            client,
            app,
            key,
            socket_id,
            http,
        };
        (Box::new(opening), span)
    }
}

/// Accept the handshake of a Pusher socket for app `key`. A refusal the
/// admission path decides before the upgrade (rate limits, capacity) is
/// its HTTP answer; an unknown key or an app at its `max_connections` is a
/// Pusher close code after it.
pub async fn upgrade(
    state: AppState,
    settings: Arc<Settings>,
    mut req: Request<Incoming>,
    key: String,
) -> Response<Body> {
    let handshake = match ws::handshake::Handshake::of(&req) {
        Ok(handshake) => handshake,
        Err(refused) => return refused,
    };
    let q = query(&req);
    let client = match admit(&state, &settings, &req, &q, false).await {
        Ok(client) => client,
        Err(refusal) => return refusal.response(),
    };
    let agreed = ws::deflate::negotiate(req.headers(), &settings.config.realtime.compression);
    let (opening, span) = Opening::new(
        &state,
        settings,
        &req,
        client,
        key,
        handshake.http(),
        agreed,
    );
    let on_upgrade = hyper::upgrade::on(&mut req);
    state
        .lifecycle
        .tasks()
        .spawn(socket::run(opening, on_upgrade).instrument(span));
    let mut resp = handshake.accept();
    if let Some(agreed) = agreed {
        resp.headers_mut()
            .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, agreed.header());
    }
    resp
}
