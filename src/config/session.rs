//! The application's own login as the gateway asks it: `auth.session` (who a
//! browser is, from `check: GET /api/me` and templates over the answer) and
//! the resource checks of channel rules (`subscribe: { check: "GET
//! /api/orders/{id}" }`, `publish: { check: … }`). Shape, defaults and the
//! syntax of a check live here; the checks that need the whole file (a
//! placeholder the pattern lacks, an upstream nobody defined) are in
//! `validate/session.rs`; what asks the application is `session_auth`.

use super::lenient;
use super::units::{self, RateLimit};
use serde::Deserialize;
use std::time::Duration;

/// `auth.session`: ask the application who a browser is, with the browser's
/// own `Cookie` and `Authorization` headers and nothing else of its request.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAuth {
    /// `METHOD /path`: an endpoint the application already has (`GET /api/me`).
    pub check: String,
    /// A template over the answer: `{body.id}`, `{body.user.id}`, `{header.X-User-Id}`.
    pub subject: String,
    /// Optional: a template yielding a JSON list of channel patterns, like a
    /// token's `channels` claim.
    #[serde(default)]
    pub channels: Option<String>,
    /// How long an answer is kept per credential (0: ask each time).
    #[serde(default = "default_cache", deserialize_with = "units::duration")]
    pub cache: Duration,
    /// How often a live connection's session is asked again.
    #[serde(default = "default_recheck", deserialize_with = "units::duration")]
    pub recheck: Duration,
    /// The upstream asked (`upstreams:`); `default` when absent.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The longest wait for one answer (queueing for `concurrency` included).
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Checks in flight at once; more wait (within `timeout`) or fail as 503.
    #[serde(default = "default_concurrency", deserialize_with = "lenient::usize")]
    pub concurrency: usize,
    /// What one address (IPv4, or IPv6 by /64) may take of the checks, so
    /// that another address's flood never holds up a user's check.
    #[serde(default)]
    pub per_address: PerAddress,
}

/// `auth.session.per_address`: one address's share of the checks.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerAddress {
    /// Checks one address may have in flight; more wait for one of them to
    /// end (within `timeout`). Unset: an eighth of `concurrency`, at least 1.
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    pub concurrency: Option<usize>,
    /// Checks one IPv6 /48 (a customer's whole prefix, 65,536 /64s) may
    /// have in flight, so that one customer cannot take every place with
    /// many /64s. Unset: a quarter of `concurrency`, at least the
    /// address's share. IPv4 addresses have no second level.
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    pub network: Option<usize>,
    /// Checks of one address that may wait for its share; more are
    /// refused (429) at once.
    #[serde(default = "default_queue", deserialize_with = "lenient::usize")]
    pub queue: usize,
    /// Checks of credentials the cache does not hold (each made-up cookie
    /// is one) an address may cause; over it, 429 without asking.
    #[serde(default = "default_unknown")]
    pub unknown: RateLimit,
}

impl Default for PerAddress {
    fn default() -> Self {
        PerAddress {
            concurrency: None,
            network: None,
            queue: default_queue(),
            unknown: default_unknown(),
        }
    }
}

impl PerAddress {
    /// The checks one address may have in flight under `concurrency` in all.
    pub fn share_of(&self, concurrency: usize) -> usize {
        self.concurrency.unwrap_or(concurrency / 8).max(1)
    }

    /// The checks one IPv6 /48 may have in flight under `concurrency`.
    pub fn network_share_of(&self, concurrency: usize) -> usize {
        self.network
            .unwrap_or(concurrency / 4)
            .max(self.share_of(concurrency))
    }
}

fn default_queue() -> usize {
    256
}

fn default_unknown() -> RateLimit {
    RateLimit::new(20, Duration::from_secs(1), 100)
}

fn default_cache() -> Duration {
    Duration::from_secs(30)
}

fn default_recheck() -> Duration {
    Duration::from_secs(300)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_concurrency() -> usize {
    64
}

/// `subscribe: { check: "GET /api/orders/{id}" }`: the application's own
/// resource URL decides, its `{placeholders}` filled from the channel name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceCheck {
    pub check: String,
}

/// A `check` split into its method (uppercased) and path, or why it is not
/// `METHOD /path`.
pub fn split_check(check: &str) -> Result<(String, String), String> {
    let mut parts = check.split_whitespace();
    let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "{check:?} is not `METHOD /path`, e.g. \"GET /api/me\""
        ));
    };
    let method = method.to_ascii_uppercase();
    if http::Method::from_bytes(method.as_bytes()).is_err()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(format!("{method:?} is not an HTTP method"));
    }
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(format!("{path:?} must be a path starting with '/'"));
    }
    if path.contains('#')
        || http::uri::PathAndQuery::try_from(path.replace(['{', '}'], "")).is_err()
    {
        return Err(format!("{path:?} is not a valid request path"));
    }
    Ok((method, path.to_string()))
}

/// The `{names}` of a check path, or why its braces are malformed.
pub fn check_placeholders(path: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("{path:?} has a `}}` without its `{{`"));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{path:?} has a `{{` without its `}}`"));
        };
        let name = &after[..close];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "{path:?} has a malformed placeholder; write `{{name}}` with letters, digits or `_`"
            ));
        }
        names.push(name.to_string());
        rest = &after[close + 1..];
    }
    Ok(names)
}
