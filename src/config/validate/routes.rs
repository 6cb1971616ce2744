//! The checks of `upstreams:`, `routes:` and the keys that name an upstream
//! elsewhere, against the upstream names the same file defines: a route can
//! never point at nothing once it is in force.

use crate::config::error::Violation;
use crate::config::locate::KeyPath;
use crate::config::routes::{check_host_pattern, check_path_prefix};
use crate::config::{Config, DEFAULT_UPSTREAM};

/// The problems of `upstreams:`, `routes:` and the keys that name an
/// upstream elsewhere (`client_messages.upstream`, `taps[].match.upstream`).
pub(crate) fn check(c: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut add = |key: KeyPath, message: String| out.push(Violation { key, message });
    let root = KeyPath::root();
    for name in c.upstreams.keys() {
        let at = root.key("upstreams").key(name);
        if name == DEFAULT_UPSTREAM {
            add(
                at,
                "`default` is the name of `backend:`; configure it there".to_owned(),
            );
        } else if !is_name(name) {
            add(
                at,
                format!("{name:?} is not an upstream name (ASCII letters, digits, `-`, `_`, `.`)"),
            );
        }
    }
    let known = |name: &str| name == DEFAULT_UPSTREAM || c.upstreams.contains_key(name);
    let unknown = |name: &str| {
        let mut names: Vec<&str> = std::iter::once(DEFAULT_UPSTREAM)
            .chain(c.upstreams.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        format!(
            "names no upstream: {name:?} (defined: {})",
            names.join(", ")
        )
    };
    let mut seen: Vec<(Option<String>, Option<&str>)> = Vec::new();
    for (i, route) in c.routes.iter().enumerate() {
        let at = root.key("routes").index(i);
        if route.host.is_none() && route.path.is_none() {
            add(
                at.clone(),
                "needs a `host` or a `path`; what no route matches goes to `backend:`".to_owned(),
            );
        }
        if let Some(host) = &route.host {
            if let Err(message) = check_host_pattern(host) {
                add(at.key("host"), message);
            }
        }
        if let Some(path) = &route.path {
            if let Err(message) = check_path_prefix(path) {
                add(at.key("path"), message);
            }
        }
        if route.strip_prefix && route.path.is_none() {
            add(at.key("strip_prefix"), "needs a `path` to strip".to_owned());
        }
        if !known(&route.upstream) {
            add(at.key("upstream"), unknown(&route.upstream));
        }
        let id = (
            route.host.as_ref().map(|h| h.to_ascii_lowercase()),
            route.path.as_deref(),
        );
        if let Some(first) = seen.iter().position(|s| *s == id) {
            add(
                at,
                format!(
                    "has the same host and path as routes[{first}], which always matches first"
                ),
            );
        }
        seen.push(id);
    }
    if let Some(name) = c
        .client_messages
        .as_ref()
        .and_then(|m| m.upstream.as_deref())
    {
        if !known(name) {
            add(root.key("client_messages").key("upstream"), unknown(name));
        }
    }
    for (i, tap) in c.taps.iter().enumerate() {
        if let Some(name) = tap.matcher.upstream.as_deref() {
            if !known(name) {
                add(
                    root.key("taps").index(i).key("match").key("upstream"),
                    unknown(name),
                );
            }
        }
    }
    out
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
