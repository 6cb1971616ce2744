//! The browser `Origin` check and the CORS answer for the realtime endpoints.
//!
//! The rule kept here: a page may use the visitor's cookies with pushgate only
//! when the operator trusts that page's origin. An origin is trusted when
//! `realtime.allowed_origins` lists it literally (`null` included, only if
//! written as `"null"`) or when it is the gateway's own origin. An origin let
//! in only by `"*"` is served *anonymously*: the answer says
//! `Access-Control-Allow-Origin: *` and never allows credentials, and the
//! request's `Cookie` header is dropped before authentication, because
//! browsers send cookies on cross-site WebSocket upgrades (and on same-site
//! fetches) where CORS protects nothing. A token it presents itself (Bearer,
//! `?token=`, the `auth` frame) still works. Any other origin is refused (403).

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::conn_info::ConnInfo;
use crate::reply::{self, Body};
use crate::state::Settings;

/// How a request's `Origin` is treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// No `Origin`: not a browser page's cross-origin request (curl, a server).
    Absent,
    /// A listed or same origin: reflected, with credentials.
    Trusted(HeaderValue),
    /// Let in by `"*"` only: answered for any page, without credentials.
    Anonymous,
}

/// Judge the request's `Origin` against `realtime.allowed_origins`; a refusal
/// is the 403 to send.
pub fn check<B>(settings: &Settings, req: &Request<B>) -> Result<Origin, Response<Body>> {
    let Some(value) = req.headers().get(header::ORIGIN) else {
        return Ok(Origin::Absent);
    };
    let origin = value.to_str().unwrap_or("");
    let allowed = &settings.config.realtime.allowed_origins;
    let listed = allowed
        .iter()
        .any(|a| a != "*" && a.eq_ignore_ascii_case(origin));
    if listed || is_same_origin(origin, req) {
        return Ok(Origin::Trusted(value.clone()));
    }
    if allowed.iter().any(|a| a == "*") {
        return Ok(Origin::Anonymous);
    }
    Err(reply::error(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "this Origin is not in realtime.allowed_origins",
    ))
}

/// Drop what would let an anonymous request act as the visitor: cookies.
pub fn strip_credentials<B>(origin: &Origin, req: &mut Request<B>) {
    if *origin == Origin::Anonymous {
        req.headers_mut().remove(header::COOKIE);
    }
}

/// Whether `origin` names the scheme, host and port the request was sent
/// to (a page of the gateway's own origin, e.g. the demo or an app it
/// fronts). The scheme is the connection's own: a page served over plain
/// HTTP (which anyone on the path can write) is not the TLS origin of the
/// same name. Behind another TLS terminator, list the origin instead.
fn is_same_origin<B>(origin: &str, req: &Request<B>) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let Some(info) = req.extensions().get::<ConnInfo>() else {
        return false;
    };
    let scheme = if info.tls { "https" } else { "http" };
    let default_port = if info.tls { 443 } else { 80 };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    if url.scheme() != scheme {
        return false;
    }
    let target = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(target) = target else {
        return false;
    };
    // `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to the scheme's.
    let (target_host, target_port) = match target.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => return false,
        },
        _ => (target, default_port),
    };
    target_host.eq_ignore_ascii_case(host) && target_port == port
}

/// The CORS headers of an answer to a request with this `Origin`, for a
/// response or for an SSE stream's hand-written head alike.
pub fn headers(origin: &Origin) -> Vec<(header::HeaderName, HeaderValue)> {
    let allow = match origin {
        Origin::Absent => return Vec::new(),
        // The page may read the answer (EventSource withCredentials, fetch
        // with credentials for poll/send).
        Origin::Trusted(value) => vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone()),
            (
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ),
        ],
        Origin::Anonymous => vec![(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )],
    };
    let mut all = allow;
    all.push((header::VARY, HeaderValue::from_static("Origin")));
    all
}

/// Put the CORS headers for `origin` on `resp`.
pub fn apply(resp: &mut Response<Body>, origin: &Origin) {
    let h = resp.headers_mut();
    if *origin == Origin::Anonymous {
        h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    for (name, value) in headers(origin) {
        if name == header::VARY {
            h.append(name, value);
        } else {
            h.insert(name, value);
        }
    }
}

/// CORS preflight for the endpoints a page calls with fetch.
pub fn preflight() -> Response<Body> {
    preflight_allowing("authorization, content-type, last-event-id")
}

/// A CORS preflight answer allowing `headers` (with GET, POST, OPTIONS,
/// cached 10 minutes); the origin headers are added by the caller.
pub fn preflight_allowing(headers: &'static str) -> Response<Body> {
    let mut r = Response::new(reply::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(headers),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}
