//! Realtime endpoints under `realtime.path`: `/ws`, `/sse`, `/poll`, `/send`,
//! `/publish`, and the browser client (`/client.js`, `/client.mjs`).
//!
//! This file parses what the three transports share (channels, cursor; the
//! Origin in `cors.rs`) and dispatches; each transport then drives a [`session::Session`].
//! Everything a subscriber may be refused is checked here, before a response
//! or an upgrade is started, so refusals are plain HTTP answers; what each
//! refusal is (status, code, message) is decided in `admission.rs`.

pub(crate) mod admission;
pub mod assets;
pub mod cors;
pub mod login;
pub mod mercure;
pub mod ops;
pub mod poll;
pub mod publish;
pub mod pusher;
pub(crate) mod resume;
pub mod send;
pub mod session;
pub mod sse;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::auth::Identity;
use crate::conn_info::ConnInfo;
use crate::hub::Cursor;
use crate::limits::{ClientKey, ConnectionSlot, Limited};
use crate::reply::{self, Body};
use crate::session_auth::Asker;
use crate::state::{AppState, Settings};
use admission::{Refusal, Wire};

/// Route a request whose path is under `realtime.path`; `rest` is what follows it.
pub async fn handle(state: AppState, mut req: Request<Incoming>, rest: &str) -> Response<Body> {
    // The client script is public code: served to any page, before the Origin check.
    if let Some(asset) = assets::find(rest).filter(|_| req.method() != http::Method::CONNECT) {
        return asset.respond(req.method(), req.headers());
    }
    let settings = state.settings();
    let origin = match cors::check(&settings, &req) {
        Ok(origin) => origin,
        Err(resp) => return resp,
    };
    cors::strip_credentials(&origin, &mut req);
    let mut resp = match (req.method(), rest) {
        (&http::Method::OPTIONS, "/poll" | "/send" | "/sse" | "/publish") => cors::preflight(),
        (&http::Method::GET, "/ws") => ws::upgrade(state, settings, req).await,
        // RFC 8441: a WebSocket on a stream of an HTTP/2 connection.
        (&http::Method::CONNECT, "/ws") => ws::upgrade(state, settings, req).await,
        (&http::Method::CONNECT, _) => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no WebSocket endpoint here",
        ),
        (&http::Method::GET, "/sse") => {
            return match sse::answer(state, settings, req, origin).await {
                Ok(opening) => opening.into_response(),
                Err(refusal) => refusal,
            };
        }
        (&http::Method::GET, "/poll") => poll::poll(state, settings, req).await,
        (&http::Method::POST, "/send") => send::post(state, settings, req).await,
        (&http::Method::POST, "/publish") => publish::post(state, settings, req).await,
        (_, "/ws" | "/sse" | "/poll" | "/send" | "/publish") => {
            let allow = if rest == "/send" || rest == "/publish" {
                "POST, OPTIONS"
            } else {
                "GET, OPTIONS"
            };
            let mut r = reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("use {allow}"),
            );
            r.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static(allow));
            r
        }
        _ => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such realtime endpoint",
        ),
    };
    cors::apply(&mut resp, &origin);
    resp
}

/// A client connection's byte stream, plain or TLS, as the transports that
/// write on it without hyper take it (`sse/http1.rs`, `ws/http1.rs`).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Query parameters as a map (last value wins).
pub fn query<B>(req: &Request<B>) -> HashMap<String, String> {
    crate::model::template::query_of(req.uri())
}

/// Who is asking, after token verification and the per-client limits.
pub struct Client {
    pub identity: Option<Identity>,
    /// Whom the limits charge: the token subject, else the peer address
    /// (and, for its messages, the connection).
    pub key: ClientKey,
    /// Held for the life of a realtime connection (`per_client.connections`,
    /// or `per_ip.connections` when anonymous).
    pub slot: Option<ConnectionSlot>,
    /// The identity is the application's answer (`auth.session`), asked
    /// again at `recheck`.
    pub by_session: bool,
    /// The browser's `Cookie` and `Authorization`, when the application is
    /// asked about it (session and resource checks); never logged. Boxed:
    /// most clients have none, and every open connection keeps its
    /// `Client` (inline, the `None` took ~110 B of each).
    pub credential: Option<Box<crate::session_auth::Credential>>,
    /// Served anonymously so far, the application's login not asked: what
    /// it asked for needed nobody. Asked when something first does.
    pub login_deferred: bool,
    /// The peer's address: whose share of the application's checks its
    /// own use (`session_auth::Asker`).
    pub addr: std::net::IpAddr,
}

/// The documented refusal for a rate limit: 429 with `Retry-After`.
pub fn limited(l: Limited) -> Response<Body> {
    admission::rate_limited(l).response()
}

/// Identify the client (its token, else — when `wants_login`, because what
/// it asks for depends on who it is — the application's login) and charge
/// it to its limits.
pub async fn admit<B>(
    state: &AppState,
    settings: &Settings,
    req: &Request<B>,
    q: &HashMap<String, String>,
    wants_login: bool,
) -> Result<Client, Refusal> {
    let limited = |l: Limited| {
        state.metrics.limited(l.kind.label());
        admission::rate_limited(l)
    };
    let info = req.extensions().get::<ConnInfo>();
    let addr = info.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.client);
    let anonymous = ClientKey::Anonymous {
        addr,
        conn: message_bucket(state, req),
    };
    // Asking the application is charged to the address first, as an
    // anonymous subscribe (`per_ip.subscribes`), then to its share of the
    // checks (`auth.session.per_address`): past the share's low rate of
    // unknown credentials a flood of made-up cookies is refused (429)
    // without reaching the application, and it never holds the places
    // another address's users are checked in.
    let before_asking = || state.limits.subscribe(&anonymous, 1).map_err(limited);
    let login::Identified {
        identity,
        by_session,
        credential,
        login_deferred,
    } = login::identify(
        state,
        settings,
        req.headers(),
        q,
        wants_login,
        Asker::new(addr),
        before_asking,
    )
    .await?;
    let key = match &identity {
        Some(id) => ClientKey::Subject(Arc::from(id.subject.as_str())),
        None => anonymous,
    };
    state.limits.message(&key).map_err(limited)?;
    let slot = Some(state.limits.open_connection(&key).map_err(limited)?);
    Ok(Client {
        identity,
        key,
        slot,
        by_session,
        credential: credential.map(Box::new),
        login_deferred,
        addr,
    })
}

/// Whose message bucket an anonymous request is charged to: its
/// connection's, except for a WebSocket opened on an HTTP/2 stream, which
/// is a connection of its own (a fresh id): every tab's socket on a
/// browser's one h2 connection would otherwise share one budget, and each
/// handshake spend the others' tokens.
fn message_bucket<B>(state: &AppState, req: &Request<B>) -> u64 {
    match crate::extended_connect::ask(req) {
        Some(_) => state.stats.conn_id(),
        None => req.extensions().get::<ConnInfo>().map_or(0, |c| c.id),
    }
}

/// Ask the login `admit` deferred (the request's body named what needs it):
/// charged to the address as in `admit`, and a subject the application
/// names is then charged and counted under `per_client` like one of a
/// token.
pub async fn login_deferred<B>(
    state: &AppState,
    settings: &Settings,
    req: &Request<B>,
    client: &mut Client,
) -> Result<(), Response<Body>> {
    if !client.login_deferred {
        return Ok(());
    }
    client.login_deferred = false;
    let Some(credential) = client.credential.clone() else {
        return Ok(());
    };
    let limited = |l: Limited| {
        state.metrics.limited(l.kind.label());
        limited(l)
    };
    let anonymous = ClientKey::Anonymous {
        addr: client.addr,
        conn: message_bucket(state, req),
    };
    state.limits.subscribe(&anonymous, 1).map_err(limited)?;
    let found = login::login(state, settings, &credential, Asker::new(client.addr))
        .await
        .map_err(|d| d.response())?;
    if let Some(identity) = &found {
        let key = ClientKey::Subject(Arc::from(identity.subject.as_str()));
        state.limits.message(&key).map_err(limited)?;
        client.slot = Some(state.limits.open_connection(&key).map_err(limited)?);
        client.key = key;
    }
    client.by_session = found.is_some();
    client.identity = found;
    Ok(())
}

/// A streaming request admitted and subscribed: what SSE and long-poll start from.
pub struct Opened {
    pub client: Client,
    pub session: session::Session,
    /// Replayed messages and resets, to send first.
    pub out: Vec<session::Delivery>,
    /// A resume's stopwatch, for its first write.
    pub(crate) clock: Option<resume::ResumeClock>,
}

/// Admit the client, authorize its channels, and open a session subscribed
/// to them (resuming from its cursor).
pub async fn open_session<B: Sync>(
    state: &AppState,
    settings: &Settings,
    req: &Request<B>,
    q: &HashMap<String, String>,
) -> Result<Opened, Refusal> {
    let clock = resume::ResumeClock::start(state, req, q);
    let asked = requested(settings, req, q, true)?;
    let client = admit(state, settings, req, q, asked.needs_identity(settings)).await?;
    let sub = subscription(state, settings, asked, &client).await?;
    resume::mark(clock.as_ref(), resume::stage::ADMITTED);
    let mut session = session::Session::new(state, settings.config.realtime.client_queue);
    session.set_subject(client.identity.as_ref().map(|i| i.subject.clone()));
    let mut out = Vec::new();
    session
        .subscribe_all(&sub.channels, sub.cursor.as_ref(), &mut out, clock.as_ref())
        .await
        .map_err(admission::unavailable)?;
    Ok(Opened {
        client,
        session,
        out,
        clock,
    })
}

/// A subscriber's request: channels with their policy, and where to resume.
pub struct Subscription {
    pub channels: Vec<(Arc<str>, session::SubscriptionPolicy)>,
    pub cursor: Option<Cursor>,
}

/// What a subscriber's request names, parsed but not yet judged.
pub struct Requested {
    names: Vec<Arc<str>>,
    cursor: Option<Cursor>,
}

impl Requested {
    /// Whether any channel asked for depends on who the client is, so the
    /// application's login is worth asking (`ChannelRules::needs_identity`).
    pub fn needs_identity(&self, settings: &Settings) -> bool {
        self.names.iter().any(|n| settings.rules.needs_identity(n))
    }
}

/// Parse `channels` and the resume cursor (`cursor`, or for SSE the
/// `Last-Event-ID` header / `last_event_id` query). With no `channels`
/// parameter, the channels named in the cursor are used.
pub fn requested<B>(
    settings: &Settings,
    req: &Request<B>,
    q: &HashMap<String, String>,
    require_channels: bool,
) -> Result<Requested, Refusal> {
    let text = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("last_event_id").cloned())
        .or_else(|| q.get("cursor").cloned())
        .filter(|t| !t.is_empty());
    // Bounded by what one connection may follow before anything is kept.
    let max = settings.config.limits.max_channels_per_connection;
    let cursor = admission::admit_cursor(text.as_deref(), max, Wire::Http)?;
    let names: Vec<Arc<str>> = match q.get("channels") {
        Some(list) => list
            .split(',')
            .filter(|c| !c.is_empty())
            .map(Arc::from)
            .collect(),
        None => cursor.iter().flat_map(|c| c.channels().cloned()).collect(),
    };
    if require_channels {
        admission::admit_any_channel(names.len())?;
    }
    admission::admit_channel_count(names.len(), max)?;
    Ok(Requested { names, cursor })
}

/// Authorize what was `requested` for `client`: its limits, the rules, and
/// the application's checks.
pub async fn subscription(
    state: &AppState,
    settings: &Settings,
    requested: Requested,
    client: &Client,
) -> Result<Subscription, Refusal> {
    let who = client.identity.as_ref();
    let Requested { names, cursor } = requested;
    // Channels the cursor already covers are a resume (every long-poll, every
    // reconnect), not new subscriptions: only the others count against
    // `per_client.subscribes`, or a busy long-poll client would exhaust it.
    let fresh = names
        .iter()
        .filter(|n| cursor.as_ref().is_none_or(|c| c.get(n).is_none()))
        .count();
    if fresh > 0 {
        state.limits.subscribe(&client.key, fresh).map_err(|l| {
            state.metrics.limited(l.kind.label());
            admission::subscribes_limited(l, Wire::Http)
        })?;
    }
    // The rules first, for every channel; then the application's checks,
    // all at once (each bounded by `auth.session.timeout`), so that many
    // checked channels cost one wait, not one each.
    let mut verdicts = Vec::with_capacity(names.len());
    for name in names {
        if verdicts.iter().any(|(c, _)| *c == name) {
            continue;
        }
        let verdict = admission::admit_channel(&settings.rules, &settings.pusher, &name, who)
            .inspect_err(|r| {
                // The rules answer 401 only for a channel that needs a token.
                if r.status == StatusCode::UNAUTHORIZED {
                    state.metrics.auth_failed("missing");
                }
            })?;
        let max = settings.config.limits.max_subscribers_per_channel;
        admission::admit_subscriber(&state.hub, max, &name, Wire::Http)?;
        verdicts.push((name, verdict));
    }
    let credential = client.credential.as_deref();
    let asker = Asker::for_resources(client.addr, client.by_session);
    let allowed = futures_util::future::join_all(verdicts.iter().map(|(name, verdict)| {
        login::allow(state, settings, credential, asker, name, verdict.clone())
    }))
    .await;
    let mut channels = Vec::with_capacity(verdicts.len());
    for ((name, _), allowed) in verdicts.into_iter().zip(allowed) {
        let (rule, checked) = allowed?;
        let mut policy = session::SubscriptionPolicy::from(rule);
        policy.checked = checked;
        channels.push((name, policy));
    }
    Ok(Subscription { channels, cursor })
}

/// Read a client's JSON request body of at most `limit` bytes into `T`;
/// `shape` names the expected object in the 400 answer.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: Incoming,
    limit: usize,
    shape: &str,
) -> Result<T, Response<Body>> {
    use http_body_util::BodyExt;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "message over realtime.max_message",
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        reply::error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("expected {shape}: {e}"),
        )
    })
}
