//! The Mercure hub on the public listener, `mercure.path`: `GET` opens a
//! subscription (SSE, `subscribe.rs` and `stream.rs`), `POST` publishes an
//! update (`publish.rs`), `OPTIONS` answers a CORS preflight.
//!
//! The hub is a transport over the one hub of the gateway: updates are
//! messages on the Mercure hub channel (`mercure/update.rs`), published
//! through `AppState::publish`, and subscribers are sessions on that
//! channel that keep only the updates their selectors and token allow.
//! What a refusal looks like (status, `WWW-Authenticate`, a plain-text
//! reason) is decided in one place, [`Refused::response`].

mod cors;
mod publish;
mod stream;
mod subscribe;
mod subscriptions;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use url::Url;

use crate::config::Mercure;
use crate::reply::{self, Body};
use crate::state::{AppState, Settings};

/// Whether `path` is the hub's (its subscriptions API included).
pub fn is_hub(settings: &Settings, path: &str) -> bool {
    settings.config.mercure.as_ref().is_some_and(|m| {
        path.strip_prefix(m.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Whether a request to `path` is the hub's or answered with the
/// discovery header, so the relay leaves it to the router.
pub fn wants_request(settings: &Settings, path: &str) -> bool {
    is_hub(settings, path) || discovered(settings, path).is_some()
}

/// The hub's path, when `path` is under one of `mercure.discovery`.
fn discovered<'a>(settings: &'a Settings, path: &str) -> Option<&'a str> {
    let m = settings.config.mercure.as_ref()?;
    m.discovery
        .iter()
        .any(|d| path.starts_with(d.path.as_str()))
        .then_some(m.path.as_str())
}

/// Add `Link: <hub>; rel="mercure"` to a proxied answer to `path` under a
/// discovery route, so the application's API advertises the hub without
/// a change to its code.
pub fn advertise(settings: &Settings, path: &str, resp: &mut Response<Body>) {
    let Some(hub) = discovered(settings, path) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&format!("<{hub}>; rel=\"mercure\"")) {
        resp.headers_mut().append(header::LINK, v);
    }
}

/// Serve a request to the hub's path.
pub async fn handle(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let settings = state.settings();
    let Some(config) = settings.config.mercure.clone() else {
        return reply::error(StatusCode::NOT_FOUND, "not_found", "no Mercure hub");
    };
    let origin = cors::Cors::of(&config, req.headers());
    let exact = req.uri().path() == config.path;
    let api = config.subscriptions
        && req
            .uri()
            .path()
            .get(config.path.len()..)
            .and_then(|rest| rest.strip_prefix("/subscriptions"))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let mut resp = match (req.method(), exact) {
        (&Method::OPTIONS, _) if exact || api => cors::preflight(),
        (&Method::GET, true) => match subscribe::open(state, &settings, &config, &req).await {
            Ok(opened) => crate::transport::sse::stream_response(
                opened.chunks,
                opened.span,
                header_list(&opened.headers),
            ),
            Err(refused) => refused.response(),
        },
        (&Method::POST, true) => match publish::post(&state, &settings, &config, req).await {
            Ok(resp) => resp,
            Err(refused) => refused.response(),
        },
        (_, true) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            r
        }
        (&Method::GET, false) => {
            let rest = req.uri().path()[config.path.len()..].to_string();
            match rest.strip_prefix("/subscriptions") {
                Some(rest)
                    if config.subscriptions && (rest.is_empty() || rest.starts_with('/')) =>
                {
                    subscriptions::api(&state, &config, &req, rest)
                        .await
                        .unwrap_or_else(Refused::response)
                }
                _ => Refused::NotFound.response(),
            }
        }
        (_, false) => Refused::NotFound.response(),
    };
    origin.apply(resp.headers_mut());
    resp
}

/// Whether `path` is the hub's own (where subscribers open streams), not
/// one under it.
pub fn is_stream(settings: &Settings, path: &str) -> bool {
    settings
        .config
        .mercure
        .as_ref()
        .is_some_and(|m| m.path == path)
}

/// `GET {mercure.path}` read by the server's own HTTP/1 reader
/// (`h1/classify.rs`): the same answer as through hyper, written straight
/// onto the connection like pushgate's own SSE streams, which spares each
/// delivery hyper's chunked framing and connection machinery.
pub async fn direct(
    state: AppState,
    req: Request<()>,
) -> Result<crate::transport::sse::SseOpening, Response<Body>> {
    let settings = state.settings();
    let Some(config) = settings.config.mercure.clone() else {
        return Err(reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no Mercure hub",
        ));
    };
    let origin = cors::Cors::of(&config, req.headers());
    match subscribe::open(state, &settings, &config, &req).await {
        Ok(mut opened) => {
            origin.apply(&mut opened.headers);
            Ok(crate::transport::sse::SseOpening::of_chunks(
                header_list(&opened.headers),
                opened.chunks,
                opened.span,
            ))
        }
        Err(refused) => {
            let mut resp = refused.response();
            origin.apply(resp.headers_mut());
            Err(resp)
        }
    }
}

/// `headers` as the list a stream's head is written from.
fn header_list(headers: &HeaderMap) -> Vec<(http::HeaderName, HeaderValue)> {
    headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Why the hub refuses a request; each maps to one status.
#[derive(Debug)]
pub(crate) enum Refused {
    /// 400: the request itself is malformed.
    BadRequest(String),
    /// 401 without an error code: a token is needed and none came.
    NoToken,
    /// 401 `invalid_token`; the reason is logged, never sent.
    InvalidToken(String),
    /// 403 `insufficient_scope`.
    Forbidden(String),
    /// 413.
    TooLarge(String),
    /// 404: nothing at this path (the subscriptions API is off, or no
    /// such subscription).
    NotFound,
    /// 429, from the gateway's limits.
    Limited(Response<Body>),
    /// 503: the broker is unavailable.
    Unavailable(String),
}

impl Refused {
    fn response(self) -> Response<Body> {
        let (status, challenge, message) = match self {
            Refused::BadRequest(m) => (StatusCode::BAD_REQUEST, None, m),
            Refused::NoToken => (
                StatusCode::UNAUTHORIZED,
                Some("Bearer"),
                "a token is required".into(),
            ),
            Refused::InvalidToken(reason) => {
                // The reason is for the operator: told to the client it
                // would say which check a forged token still has to pass.
                tracing::debug!(%reason, "Mercure token refused");
                (
                    StatusCode::UNAUTHORIZED,
                    Some("Bearer error=\"invalid_token\""),
                    "invalid token".into(),
                )
            }
            Refused::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                Some("Bearer error=\"insufficient_scope\""),
                m,
            ),
            Refused::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, None, m),
            Refused::NotFound => (StatusCode::NOT_FOUND, None, "not found".into()),
            Refused::Limited(resp) => return resp,
            Refused::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, None, m),
        };
        let mut r = text(status, &message);
        if let Some(c) = challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

/// A plain-text answer, as Mercure hubs give.
fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(reply::full(format!("{body}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The cookie a browser carries its Mercure token in.
const COOKIE: &str = "mercureAuthorization";

/// Where a request's token came from.
pub(crate) enum Presented<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// The token of a request: the `Authorization: Bearer` header wins over
/// the cookie (a cookie rides along by itself; the header is a choice).
pub(crate) fn presented(headers: &HeaderMap) -> Presented<'_> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or_default();
        let token = v
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("bearer "))
            .map(|_| v[7..].trim());
        return token.map_or(Presented::None, Presented::Bearer);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map_or(Presented::None, |(_, value)| {
            Presented::Cookie(value.trim())
        })
}

/// The hub's URL, against which relative topics and URL Patterns resolve:
/// the request's own host (the HTTP/2 authority, or `Host`) and the hub's
/// path; `localhost` when the host is unusable.
pub(crate) fn hub_url<B>(config: &Mercure, req: &Request<B>) -> Result<Url, Refused> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    Url::parse(&format!("https://{host}{}", config.path))
        .or_else(|_| Url::parse(&format!("https://localhost{}", config.path)))
        .map_err(|_| Refused::BadRequest("the hub's URL cannot be formed".into()))
}
