//! Named upstreams and the routes that choose between them: the `upstreams:`
//! map (each entry takes the keys of `backend:`, which is the upstream named
//! `default`) and the `routes:` list (`{ host, path, upstream, strip_prefix }`,
//! first match wins), and the shapes a route's host and path may take. What
//! a route may say against the rest of the file (the upstream names it
//! defines) is checked in `validate/routes.rs`, so that a route can never
//! point at nothing once it is in force; how a request is matched is
//! `upstream/routes.rs`.

use serde::Deserialize;

use super::lenient;

/// The name `backend:` goes by, and what routes fall back to.
pub const DEFAULT_UPSTREAM: &str = "default";

/// One entry of `routes:`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `api.example.com` (exact, case-insensitive, port ignored) or
    /// `*.example.com` (any subdomain, not the bare domain).
    #[serde(default)]
    pub host: Option<String>,
    /// A plain prefix starting with `/` (`/v2/` matches `/v2/x`, not `/v2`).
    #[serde(default)]
    pub path: Option<String>,
    /// A name under `upstreams:`, or `default`.
    pub upstream: String,
    /// Remove the matched `path` before forwarding (a leading `/` stays).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub strip_prefix: bool,
    /// Switches over the upstream's `buffering:` for this route alone.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub buffering: super::buffering::RouteBuffering,
}

/// `api.example.com`, `localhost`, `10.0.0.5` or `*.example.com`: DNS
/// labels of letters, digits, `-` and `_`, a `*.` only at the front, no
/// port, scheme or path.
pub(crate) fn check_host_pattern(host: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{host:?} is not a host pattern ({why}); write a name like \"api.example.com\" or \"*.example.com\""
        ))
    };
    if host.contains("://") {
        return bad("no scheme");
    }
    if host.contains(':') {
        return bad("no port: any port matches");
    }
    if host.contains('/') {
        return bad("no path: use the route's `path`");
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return bad("`*.` only at the front");
    }
    if name.is_empty() {
        return bad("empty");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return bad("letters, digits, `-` and `_` between dots");
    }
    Ok(())
}

/// A plain URL path prefix: starts with `/`, no query, fragment or spaces.
pub(crate) fn check_path_prefix(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path.contains(['?', '#', ' ', '\t', '*', '{', '}']) {
        return Err(format!(
            "{path:?} must be a plain path prefix (no query, pattern or spaces)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        for good in [
            "api.example.com",
            "API.Example.com",
            "*.example.com",
            "localhost",
            "10.0.0.5",
            "a_b.internal",
        ] {
            assert!(check_host_pattern(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a.*.example.com",
            "api*.example.com",
            "https://api.example.com",
            "api.example.com:8443",
            "api.example.com/v2",
            "api example.com",
            "api..example.com",
            ".example.com",
            "example.com.",
        ] {
            assert!(check_host_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn path_prefixes() {
        assert!(check_path_prefix("/v2/").is_ok());
        assert!(check_path_prefix("/").is_ok());
        for bad in ["v2/", "", "/v2?x=1", "/a b", "/v2/*"] {
            assert!(check_path_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
