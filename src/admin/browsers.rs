//! What a web browser may send the admin listener: nothing but the
//! dashboard's own requests.
//!
//! Without `admin_keys` the admin API trusts every loopback peer, and a
//! browser on the host is one: any page it opens could publish with a
//! cross-site `text/plain` POST (a "simple" request needs no CORS
//! preflight), and a page on a name that later resolves to 127.0.0.1 (DNS
//! rebinding) could read `/stats` and the dashboard feed as its own origin.
//! So, before any admin key is looked at:
//! - a keyless admin answers only a `Host` that is an IP literal or
//!   `localhost` (with any port): a rebinding page's requests carry its own
//!   name (421 `misdirected_host`). With keys configured the key already
//!   stops such a page, and hosts by name (a Prometheus target) keep working;
//! - an `Origin` other than the admin listener's own (scheme `http` and the
//!   request's `Host`), `null` included, is 403 `forbidden_origin`;
//! - `Sec-Fetch-Site` other than `same-origin` or `none` (typed, bookmarked)
//!   is 403 `forbidden_origin`. `same-site` too: on a host every port of
//!   localhost is the same site, so the application's own pages (through the
//!   public listener) and every local dev server would count as the admin's
//!   site, and one script injected into any of them would publish. Only a
//!   top-level navigation to the static dashboard page is let through from
//!   anywhere (a link in a runbook); its feed is fetched same-origin;
//! - the JSON endpoints take `application/json` (or `…+json`) bodies only
//!   (415 `unsupported_media_type`): a form or `text/plain` body is what a
//!   page can send without a preflight. Webhook paths take what the
//!   application sends, verified by HMAC when configured.

use http::{HeaderMap, Method, Request, Response, StatusCode, header};

use crate::reply::{self, Body};

/// Why a request was refused before the admin API looked at it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BrowserRefusal {
    #[error(
        "the admin API answers only a Host that is an IP address or localhost (got `{0}`); \
         configure admin_keys to reach it by name"
    )]
    Host(String),
    #[error("requests from another origin (`{0}`) are refused: the admin API is not a web page's")]
    Origin(String),
    #[error(
        "requests a page on another site or port sent (Sec-Fetch-Site: {0}) are refused: \
         the admin API is not a web page's"
    )]
    FetchSite(String),
    #[error("send the body as JSON (Content-Type: application/json)")]
    MediaType,
}

impl BrowserRefusal {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BrowserRefusal::Host(_) => StatusCode::MISDIRECTED_REQUEST,
            BrowserRefusal::Origin(_) | BrowserRefusal::FetchSite(_) => StatusCode::FORBIDDEN,
            BrowserRefusal::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            BrowserRefusal::Host(_) => "misdirected_host",
            BrowserRefusal::Origin(_) | BrowserRefusal::FetchSite(_) => "forbidden_origin",
            BrowserRefusal::MediaType => "unsupported_media_type",
        }
    }

    pub(crate) fn response(&self) -> Response<Body> {
        reply::error(self.status(), self.code(), self)
    }
}

/// Judge the request's `Host` (when `keyless`), `Origin` and
/// `Sec-Fetch-Site`.
pub(crate) fn check<B>(req: &Request<B>, keyless: bool) -> Result<(), BrowserRefusal> {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    if keyless {
        if let Some(h) = &host {
            if !local_host(h) {
                return Err(BrowserRefusal::Host(printable(h)));
            }
        }
        // No Host at all: an HTTP/1.0 tool, never a browser.
    }
    if is_dashboard_navigation(req) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = host.as_deref().and_then(split_host);
        let given = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .and_then(split_host);
        if own.is_none() || own != given {
            let text = origin.to_str().map_or_else(|_| "?".into(), printable);
            return Err(BrowserRefusal::Origin(text));
        }
    }
    match headers.get("sec-fetch-site").map(|v| v.to_str()) {
        None | Some(Ok("same-origin" | "none")) => Ok(()),
        Some(other) => Err(BrowserRefusal::FetchSite(
            other.map_or_else(|_| "?".into(), printable),
        )),
    }
}

/// A JSON endpoint's body type: `application/json` or `application/…+json`,
/// parameters (`; charset=utf-8`) aside.
pub(crate) fn check_json(headers: &HeaderMap) -> Result<(), BrowserRefusal> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence
        .as_deref()
        .and_then(|e| e.strip_prefix("application/"))
    {
        Some(sub) if sub == "json" || (sub.len() > 5 && sub.ends_with("+json")) => Ok(()),
        _ => Err(BrowserRefusal::MediaType),
    }
}

/// A browser opening the dashboard page itself (a link, a bookmark): the
/// page holds no figures, and its feed is fetched same-origin.
fn is_dashboard_navigation<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.method() == Method::GET
        && req.uri().path() == "/dashboard"
        && h.get("sec-fetch-mode").is_some_and(|v| v == "navigate")
        && h.get("sec-fetch-dest").is_some_and(|v| v == "document")
}

/// `host[:port]` as (lower-case host, port; 80 when absent), or `None` when
/// it is not one.
fn split_host(text: &str) -> Option<(String, u16)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            (format!("[{inner}]"), after)
        }
        None => match text.split_once(':') {
            Some((h, _)) => (h.to_string(), &text[h.len()..]),
            None => (text.to_string(), ""),
        },
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => 80,
        None => return None,
        Some("") => 80,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// An IP literal or `localhost`, with any port: a name no DNS answer can
/// move onto this host.
fn local_host(text: &str) -> bool {
    let Some((host, _)) = split_host(text) else {
        return false;
    };
    host == "localhost"
        || host.parse::<std::net::Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A header value as it may go into an answer: printable ASCII, bounded.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/stats");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_that_no_dns_answer_can_move() {
        for ok in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "[::1]",
            "10.0.0.5:1",
        ] {
            assert!(local_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:9090",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9090",
            "::1",
            "[::1",
            "[evil]:80",
            "localhost:90x",
            ":9090",
            "",
        ] {
            assert!(!local_host(bad), "{bad}");
        }
    }

    #[test]
    fn rebinding_host_is_refused_when_keyless_only() {
        let r = req(&[("host", "rebind.example:9090")]);
        assert_eq!(
            check(&r, true),
            Err(BrowserRefusal::Host("rebind.example:9090".into()))
        );
        assert_eq!(check(&r, false), Ok(()));
    }

    #[test]
    fn origin_must_be_the_listeners_own() {
        let host = ("host", "127.0.0.1:9090");
        assert_eq!(
            check(&req(&[host, ("origin", "http://127.0.0.1:9090")]), true),
            Ok(())
        );
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:3000",
            "https://127.0.0.1:9090",
            "http://localhost:9090",
            "null",
        ] {
            assert!(
                matches!(
                    check(&req(&[host, ("origin", bad)]), true),
                    Err(BrowserRefusal::Origin(_))
                ),
                "{bad}"
            );
        }
        // Port 80 is the default either way.
        assert_eq!(
            check(
                &req(&[("host", "localhost"), ("origin", "http://localhost:80")]),
                true
            ),
            Ok(())
        );
    }

    #[test]
    fn fetch_site_other_than_own_is_refused() {
        let host = ("host", "localhost:9090");
        for ok in ["same-origin", "none"] {
            assert_eq!(check(&req(&[host, ("sec-fetch-site", ok)]), true), Ok(()));
        }
        for bad in ["cross-site", "same-site", "weird"] {
            assert_eq!(
                check(&req(&[host, ("sec-fetch-site", bad)]), true),
                Err(BrowserRefusal::FetchSite(bad.into()))
            );
        }
    }

    #[test]
    fn dashboard_page_opens_from_a_link() {
        let nav = |path: &str| {
            Request::builder()
                .uri(path)
                .header("host", "localhost:9090")
                .header("sec-fetch-site", "cross-site")
                .header("sec-fetch-mode", "navigate")
                .header("sec-fetch-dest", "document")
                .body(())
                .unwrap()
        };
        assert_eq!(check(&nav("/dashboard"), true), Ok(()));
        assert!(check(&nav("/dashboard/events"), true).is_err());
        assert!(check(&nav("/stats"), true).is_err());
    }

    #[test]
    fn json_bodies_only() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            check_json(&h)
        };
        assert_eq!(with("application/json"), Ok(()));
        assert_eq!(with("Application/JSON; charset=utf-8"), Ok(()));
        assert_eq!(with("application/vnd.api+json"), Ok(()));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/+json",
            "text/json",
        ] {
            assert_eq!(with(bad), Err(BrowserRefusal::MediaType), "{bad}");
        }
        assert_eq!(
            check_json(&HeaderMap::new()),
            Err(BrowserRefusal::MediaType)
        );
    }
}
