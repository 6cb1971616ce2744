//! The checks of `pusher:`: the WebSocket path, unique app ids and keys that
//! fit a URL path segment, webhook targets and event names, and bounds.

use super::{MAX_MESSAGE, check_mount_path};
use crate::config::error::Violation;
use crate::config::locate::KeyPath;
use crate::config::{Config, DEFAULT_UPSTREAM, PusherApp, WEBHOOK_EVENTS};
use std::collections::HashMap;

/// The problems of `pusher:`.
pub(crate) fn check(c: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(p) = &c.pusher else {
        return out;
    };
    let mut add = |key: KeyPath, message: String| out.push(Violation { key, message });
    let at = KeyPath::root().key("pusher");
    match check_mount_path(&p.path) {
        Err(message) => add(at.key("path"), message),
        Ok(()) => {
            let ours = p.path.trim_end_matches('/');
            let realtime = c.realtime.path.trim_end_matches('/');
            if overlaps(ours, realtime) {
                add(
                    at.key("path"),
                    format!("{:?} overlaps realtime.path {:?}", p.path, c.realtime.path),
                );
            }
        }
    }
    if let Err(message) = check_mount_path(&p.http_path) {
        add(at.key("http_path"), message);
    } else if overlaps(
        p.http_path.trim_end_matches('/'),
        c.realtime.path.trim_end_matches('/'),
    ) {
        add(
            at.key("http_path"),
            format!(
                "{:?} overlaps realtime.path {:?}",
                p.http_path, c.realtime.path
            ),
        );
    }
    for (key, d) in [
        ("activity_timeout", p.activity_timeout),
        ("pong_timeout", p.pong_timeout),
        ("http_session_timeout", p.http_session_timeout),
    ] {
        if d.is_zero() {
            add(at.key(key), "must be greater than 0".into());
        }
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    let mut prefixes: HashMap<&str, usize> = HashMap::new();
    for (i, app) in p.apps.iter().enumerate() {
        let at = at.key("apps").index(i);
        for (name, value, seen) in [("id", &app.id, &mut ids), ("key", &app.key, &mut keys)] {
            if !is_segment(value) {
                add(
                    at.key(name),
                    format!("{value:?} must be 1-64 letters, digits, '-' or '_'"),
                );
            } else if let Some(first) = seen.get(value.as_str()) {
                add(
                    at.key(name),
                    format!("duplicate app {name} {value:?} (also pusher.apps[{first}])"),
                );
            } else {
                seen.insert(value, i);
            }
        }
        // One namespace per app: its hub channels are its prefix plus a
        // Pusher name (which has no `:`), so two apps never share one.
        if let Some(first) = prefixes.insert(&app.channel_prefix, i) {
            add(
                at.key("channel_prefix"),
                format!(
                    "{:?} is also the prefix of pusher.apps[{first}]: each app needs its own (one may have none)",
                    app.channel_prefix
                ),
            );
        }
        app_settings(c, app, &at, &mut add);
    }
    out
}

/// The keys of one app besides its id and key.
fn app_settings(c: &Config, app: &PusherApp, at: &KeyPath, add: &mut impl FnMut(KeyPath, String)) {
    if app.user_authentication_timeout.is_some_and(|t| t.is_zero()) {
        add(
            at.key("user_authentication_timeout"),
            "must be greater than 0 (leave it out to make signing in optional)".into(),
        );
    }
    if app.secret.is_empty() {
        add(at.key("secret"), "must not be empty".into());
    }
    if !app.channel_prefix.is_empty() && !is_prefix(&app.channel_prefix) {
        add(
            at.key("channel_prefix"),
            format!(
                "{:?} must be 1-{MAX_PREFIX} letters, digits, '.', '_', '-', '=' or '@' ending in one ':' (like \"app1:\")",
                app.channel_prefix
            ),
        );
    }
    if app.channel_prefix == crate::config::USER_HUB_PREFIX {
        add(
            at.key("channel_prefix"),
            format!(
                "{:?} is kept for the gateway's user channels (another app's users would share this app's channels): choose another",
                app.channel_prefix
            ),
        );
    }
    if app.max_message == 0 {
        add(at.key("max_message"), "must be at least 1 byte".into());
    } else if app.max_message > MAX_MESSAGE {
        add(at.key("max_message"), "must be at most 16MiB".into());
    }
    if app.max_connections == Some(0) {
        add(at.key("max_connections"), "must be at least 1".into());
    }
    if app.client_event_rate == 0 {
        add(at.key("client_event_rate"), "must be at least 1".into());
    }
    if let Some(hook) = &app.webhook {
        let at = at.key("webhook");
        if !hook.url.starts_with('/') || hook.url.contains(['#', ' ']) {
            add(
                at.key("url"),
                format!(
                    "{:?} must be a path on the application, like \"/pusher/webhook\"",
                    hook.url
                ),
            );
        }
        if let Some(name) = &hook.upstream {
            if name != DEFAULT_UPSTREAM && !c.upstreams.contains_key(name) {
                add(at.key("upstream"), format!("no upstream named {name:?}"));
            }
        }
        for (j, event) in hook.events.iter().enumerate() {
            if !WEBHOOK_EVENTS.contains(&event.as_str()) {
                add(
                    at.key("events").index(j),
                    format!("{event:?} is not one of {}", WEBHOOK_EVENTS.join(", ")),
                );
            }
        }
    }
}

/// The longest `channel_prefix`: room for Pusher's longest channel name
/// (164) within pushgate's (200).
const MAX_PREFIX: usize = 36;

/// `app1:`: channel characters other than `:`, then one `:`.
fn is_prefix(p: &str) -> bool {
    p.len() <= MAX_PREFIX
        && p.strip_suffix(':').is_some_and(|head| {
            !head.is_empty()
                && head.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'=' | b'@')
                })
        })
}

/// Whether one mount path is the other or lies under it.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    under(a, b) || under(b, a)
}

/// An app id or key: safe in a URL path segment and a log line.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}
