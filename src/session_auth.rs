//! The application's own login, asked: who a browser is (`auth.session`,
//! `check: GET /api/me`) and whether it may use a channel (`subscribe: {
//! check: "GET /api/orders/{id}" }`).
//!
//! Rules kept here:
//! - the application gets the browser's `Cookie` and `Authorization` headers
//!   and nothing else of its request (no `X-Forwarded-User` or any other
//!   header a browser could forge reaches the check);
//! - 2xx is an answer, 401/403 (404 for a resource) a refusal; anything else,
//!   a timeout, or an application that cannot be reached is
//!   [`CheckError`] (503 `auth_unavailable`), never a silent anonymous or
//!   allowed;
//! - answers are kept for `cache` per credential, keyed by a SHA-256 digest
//!   (`cache.rs`), and one question per key is in flight at a time, so a
//!   burst of connections with one cookie costs one check;
//! - checks in flight are bounded (`concurrency`) and each has its own
//!   `timeout`, so a slow application cannot pile up connections; each
//!   address has its share of them (its checks past it wait their turn in
//!   its own line) and a low rate of checks for unknown credentials
//!   (`shares.rs`), so one address's flood of made-up cookies neither
//!   reaches the application past that rate nor delays another address's
//!   check;
//! - credentials and answers are never logged, and [`Credential`]'s `Debug`
//!   says nothing of them.

mod cache;
mod shares;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use tokio::sync::Semaphore;

use crate::auth::Identity;
use crate::config;
use crate::metrics::Metrics;
use crate::model::template::{self, Context, Template, TemplateError};
use crate::upstream::Upstream;
use cache::{Answers, Key};
pub use shares::Asker;
use shares::{ShareTerms, Shares};

/// The most of an answer read (a user as JSON is far smaller).
const ANSWER_LIMIT: usize = 64 * 1024;
/// The most channel patterns taken from one answer, and their longest
/// length: what a kept answer may hold.
const MAX_CHANNELS: usize = 100;
const MAX_PATTERN: usize = 200;

/// A browser's credentials as the application reads them: its `Cookie` and
/// `Authorization` headers. Held by a connection for its rechecks; only a
/// digest of them is ever kept beyond it.
#[derive(Clone)]
pub struct Credential {
    cookie: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
    digest: Key,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Credential {
    /// The credentials a request carries, if any. Several `Cookie` fields
    /// (HTTP/2 sends one per cookie) become one, as HTTP/1 would send it.
    pub fn of(headers: &HeaderMap) -> Option<Credential> {
        let mut cookies = Vec::new();
        for v in headers.get_all(header::COOKIE) {
            if !cookies.is_empty() {
                cookies.extend_from_slice(b"; ");
            }
            cookies.extend_from_slice(v.as_bytes());
        }
        let cookie = (!cookies.is_empty())
            .then(|| HeaderValue::from_bytes(&cookies).ok())
            .flatten();
        let authorization = headers.get(header::AUTHORIZATION).cloned();
        if cookie.is_none() && authorization.is_none() {
            return None;
        }
        let digest = digest_of(&[value_bytes(&cookie), value_bytes(&authorization)]);
        Some(Credential {
            cookie,
            authorization,
            digest,
        })
    }

    /// The only headers of the browser's that a check carries.
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let sensitive = |v: &HeaderValue| {
            let mut v = v.clone();
            v.set_sensitive(true);
            v
        };
        if let Some(c) = &self.cookie {
            h.insert(header::COOKIE, sensitive(c));
        }
        if let Some(a) = &self.authorization {
            h.insert(header::AUTHORIZATION, sensitive(a));
        }
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h
    }
}

/// Why the application gave no answer to act on: 503 `auth_unavailable`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("the application did not answer the check in time")]
    Timeout,
    #[error("the application could not be asked")]
    Unreachable,
    #[error("the application answered the check with {0}")]
    Status(u16),
    #[error("the application's answer has no {0}")]
    NoSubject(String),
    /// The client's address is past its share (`per_address`: its line
    /// full, its unknown-credential rate spent, or its turn not come within
    /// `timeout`): the application was not asked (429 with `Retry-After`).
    #[error("too many checks for this address")]
    Limited(Duration),
}

impl CheckError {
    fn outcome(&self) -> &'static str {
        match self {
            CheckError::Timeout => "timeout",
            CheckError::Unreachable => "unreachable",
            CheckError::Status(_) | CheckError::NoSubject(_) => "bad_answer",
            CheckError::Limited(_) => "limited",
        }
    }

    /// Count and log a failed check: a refusal of ours by address is a
    /// rate limit, not something the application did (and a flood of them
    /// must not flood the log).
    fn record(&self, kind: &'static str, check: &str, metrics: &Metrics) {
        if let CheckError::Limited(_) = self {
            metrics.limited("session_checks");
            return;
        }
        metrics.app_check(kind, self.outcome());
        // The status only: never the cookie, never the answer.
        tracing::warn!(check = %check, error = %self, "{kind} check failed");
    }
}

/// What the application said of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401: not logged in.
    Unauthorized,
    /// 403 or 404.
    Forbidden,
}

/// How the application is asked, from `auth.session`: the timeout and
/// bound on checks in flight, the upstream, and how long answers are kept.
/// Resource checks use them too (defaults when there is no `auth.session`).
pub struct Terms {
    pub cache: Duration,
    pub recheck: Duration,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    /// One address's share of them (`per_address`).
    share: ShareTerms,
    /// The upstream asked (`default` unless `auth.session.upstream`).
    pub upstream: String,
}

/// `auth.session` compiled: the check and how to read its answer.
pub struct LoginCheck {
    method: http::Method,
    path: String,
    subject: Template,
    subject_text: String,
    channels: Option<Template>,
    /// A digest of the check's text: a reload that changes it asks anew.
    id: Key,
}

/// What a configuration asks of the application.
pub struct CheckPolicy {
    pub login: Option<LoginCheck>,
    pub terms: Terms,
}

impl CheckPolicy {
    pub fn new(auth: &config::Auth) -> Result<CheckPolicy, TemplateError> {
        let s = auth.session.as_ref();
        let concurrency = s.map_or(64, |s| s.concurrency.max(1));
        let terms = Terms {
            cache: s.map_or(Duration::from_secs(30), |s| s.cache),
            recheck: s.map_or(Duration::from_secs(300), |s| s.recheck),
            timeout: s.map_or(Duration::from_secs(5), |s| s.timeout),
            in_flight: Arc::new(Semaphore::new(concurrency)),
            share: {
                let per = s.map(|s| s.per_address.clone()).unwrap_or_default();
                ShareTerms {
                    in_flight: per.share_of(concurrency),
                    network: per.network_share_of(concurrency),
                    queue: per.queue,
                    unknown: per.unknown,
                }
            },
            upstream: s
                .and_then(|s| s.upstream.clone())
                .unwrap_or_else(|| config::DEFAULT_UPSTREAM.to_string()),
        };
        let login = s
            .map(|s| -> Result<LoginCheck, TemplateError> {
                // Validated at load: `METHOD /path`.
                let (method, path) = config::split_check(&s.check).unwrap_or_default();
                let channels = s
                    .channels
                    .as_deref()
                    .map(|c| Template::parse(c, Context::Answer, &[]))
                    .transpose()?;
                Ok(LoginCheck {
                    method: http::Method::from_bytes(method.as_bytes())
                        .unwrap_or(http::Method::GET),
                    path,
                    subject: Template::parse(&s.subject, Context::Answer, &[])?,
                    subject_text: s.subject.clone(),
                    channels,
                    id: digest_of(&[
                        b"login",
                        s.check.as_bytes(),
                        s.subject.as_bytes(),
                        s.channels.as_deref().unwrap_or("").as_bytes(),
                    ]),
                })
            })
            .transpose()?;
        Ok(CheckPolicy { login, terms })
    }
}

fn value_bytes(v: &Option<HeaderValue>) -> &[u8] {
    v.as_ref().map_or(&b""[..], HeaderValue::as_bytes)
}

/// SHA-256 of `parts`, each prefixed with its length (no two lists of
/// parts give the same input).
fn digest_of(parts: &[&[u8]]) -> Key {
    let mut d = digest::Context::new(&digest::SHA256);
    for p in parts {
        d.update(&(p.len() as u64).to_be_bytes());
        d.update(p);
    }
    let mut key = [0; 32];
    key.copy_from_slice(d.finish().as_ref());
    key
}

/// The answers the application gave, kept across reloads (live state).
#[derive(Default)]
pub struct Checks {
    logins: Answers<Result<Option<Identity>, CheckError>>,
    resources: Answers<Result<Access, CheckError>>,
    shares: Shares,
}

impl Checks {
    /// Forget what idle addresses spent (called with the limits' eviction).
    pub fn evict_idle(&self) {
        self.shares.evict_idle();
    }

    /// Who the browser with `credential` is: `Ok(None)` when the
    /// application says nobody is logged in (401/403).
    pub async fn who(
        &self,
        login: &LoginCheck,
        terms: &Terms,
        upstream: &Upstream,
        credential: &Credential,
        asker: Asker,
        metrics: &Metrics,
    ) -> Result<Option<Identity>, CheckError> {
        let key = digest_of(&[&login.id, terms.upstream.as_bytes(), &credential.digest]);
        let ask = || async {
            let place = (&self.shares, asker);
            let answer = ask(
                terms,
                place,
                upstream,
                &login.method,
                &login.path,
                credential,
            )
            .await;
            let result = answer.and_then(|(status, headers, body)| match status {
                200..=299 => read_login(login, &headers, &body).map(Some),
                401 | 403 => Ok(None),
                other => Err(CheckError::Status(other)),
            });
            match &result {
                Ok(Some(_)) => metrics.app_check("session", "subject"),
                Ok(None) => metrics.app_check("session", "anonymous"),
                Err(e) => e.record("session", &login.path, metrics),
            }
            result
        };
        self.logins.get(key, terms.cache, Result::is_ok, ask).await
    }

    /// Whether the application lets `credential` (of `asker`'s) use a
    /// resource: `check`'s path with `captures` (from the channel name)
    /// filled in, URL-encoded.
    pub async fn may(
        &self,
        check: &config::ResourceCheck,
        captures: &[(&str, &str)],
        (terms, upstream): (&Terms, &Upstream),
        (credential, asker): (Option<&Credential>, Asker),
        metrics: &Metrics,
    ) -> Result<Access, CheckError> {
        // Validated at load: `METHOD /path` with the pattern's placeholders.
        let (method, path) = config::split_check(&check.check).unwrap_or_default();
        // A capture of `.` or `..` would name another resource once the
        // application resolves the path: never asked, never allowed.
        if captures.iter().any(|(_, v)| *v == "." || *v == "..") {
            return Ok(Access::Forbidden);
        }
        let path = fill(&path, captures);
        let method = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
        let nobody = [0; 32];
        let who = credential.map_or(&nobody, |c| &c.digest);
        let key = digest_of(&[
            b"resource",
            terms.upstream.as_bytes(),
            method.as_str().as_bytes(),
            path.as_bytes(),
            who,
        ]);
        let ask = || async {
            let place = (&self.shares, asker);
            let result = match credential {
                Some(c) => ask(terms, place, upstream, &method, &path, c)
                    .await
                    .and_then(|(status, _, _)| access_of(status)),
                // Nothing to ask with: not logged in.
                None => Ok(Access::Unauthorized),
            };
            match (&result, credential) {
                (Err(e), _) => e.record("resource", &check.check, metrics),
                (Ok(access), Some(_)) => metrics.app_check(
                    "resource",
                    match access {
                        Access::Allowed => "allowed",
                        Access::Unauthorized => "unauthorized",
                        Access::Forbidden => "forbidden",
                    },
                ),
                (Ok(_), None) => {}
            }
            result
        };
        self.resources
            .get(key, terms.cache, Result::is_ok, ask)
            .await
    }
}

fn access_of(status: u16) -> Result<Access, CheckError> {
    match status {
        200..=299 => Ok(Access::Allowed),
        401 => Ok(Access::Unauthorized),
        403 | 404 => Ok(Access::Forbidden),
        other => Err(CheckError::Status(other)),
    }
}

/// One check sent within `timeout`: first a place in the asker's share
/// (waiting behind its address's own checks; a wait that outlasts the
/// timeout is the address's limit, 429, not the application's fault), then
/// a place among `concurrency`, then the call with the browser's
/// credentials and nothing else.
async fn ask(
    terms: &Terms,
    (shares, asker): (&Shares, Asker),
    upstream: &Upstream,
    method: &http::Method,
    path: &str,
    credential: &Credential,
) -> Result<(u16, HeaderMap, Bytes), CheckError> {
    let deadline = tokio::time::Instant::now() + terms.timeout;
    let _share = match tokio::time::timeout_at(deadline, shares.enter(asker, &terms.share)).await {
        Ok(Ok(place)) => place,
        Ok(Err(after)) => return Err(CheckError::Limited(after)),
        Err(_) => return Err(CheckError::Limited(shares::FULL_RETRY)),
    };
    let call = async {
        let _place = terms
            .in_flight
            .acquire()
            .await
            .map_err(|_| CheckError::Unreachable)?;
        upstream
            .call(
                method.clone(),
                path,
                credential.headers(),
                Bytes::new(),
                ANSWER_LIMIT,
            )
            .await
            .map(|a| (a.status.as_u16(), a.headers, a.body))
            .map_err(|e| match e {
                crate::upstream::BackendError::Timeout => CheckError::Timeout,
                _ => CheckError::Unreachable,
            })
    };
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or(Err(CheckError::Timeout))
}

/// The identity in a 2xx answer to the login check.
fn read_login(
    login: &LoginCheck,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Identity, CheckError> {
    let input = template::Input {
        body: Some(template::Body::new(body, false)),
        headers: Some(headers),
        ..Default::default()
    };
    let subject = login
        .subject
        .render_text(&input)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CheckError::NoSubject(login.subject_text.clone()))?;
    let channels = match &login.channels {
        Some(t) => match t.render_json(&input) {
            Ok(serde_json::Value::Array(list)) => list
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Ok(serde_json::Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let channels = channels
        .into_iter()
        .filter(|c: &String| c.len() <= MAX_PATTERN)
        .take(MAX_CHANNELS)
        .collect();
    Ok(Identity {
        subject,
        channels,
        expires: None,
    })
}

/// `path` with each `{name}` replaced by its capture, percent-encoded
/// (only unreserved characters stay as they are).
fn fill(path: &str, captures: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        let value = captures
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v);
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_encoded() {
        assert_eq!(fill("/api/orders/{id}", &[("id", "7")]), "/api/orders/7");
        assert_eq!(
            fill(
                "/t/{team}/c/{id}?x=1",
                &[("id", "a:b@c=d"), ("team", "x.y")]
            ),
            "/t/x.y/c/a%3Ab%40c%3Dd?x=1"
        );
        assert_eq!(fill("/a/{id}", &[("id", "../admin")]), "/a/..%2Fadmin");
    }

    #[test]
    fn credentials_are_the_cookie_and_authorization_only() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("sid=xyz"));
        h.insert("x-forwarded-user", HeaderValue::from_static("admin"));
        h.insert(header::HOST, HeaderValue::from_static("app"));
        let c = Credential::of(&h).unwrap();
        let sent = c.headers();
        assert_eq!(sent.get(header::COOKIE).unwrap(), "a=1; sid=xyz");
        assert!(sent.get("x-forwarded-user").is_none());
        assert!(sent.get(header::HOST).is_none());
        assert_eq!(sent.len(), 2);
        assert_eq!(format!("{c:?}"), "Credential(..)");
        assert!(Credential::of(&HeaderMap::new()).is_none());
    }

    #[test]
    fn different_credentials_have_different_digests() {
        let of = |k: &'static str, v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(k, HeaderValue::from_static(v));
            Credential::of(&h).unwrap().digest
        };
        assert_ne!(of("cookie", "sid=1"), of("cookie", "sid=2"));
        assert_ne!(of("cookie", "x"), of("authorization", "x"));
        assert_eq!(of("cookie", "sid=1"), of("cookie", "sid=1"));
    }

    #[test]
    fn statuses_map_to_access() {
        assert_eq!(access_of(204), Ok(Access::Allowed));
        assert_eq!(access_of(401), Ok(Access::Unauthorized));
        assert_eq!(access_of(404), Ok(Access::Forbidden));
        assert_eq!(access_of(403), Ok(Access::Forbidden));
        assert_eq!(access_of(500), Err(CheckError::Status(500)));
        assert_eq!(access_of(302), Err(CheckError::Status(302)));
    }
}
