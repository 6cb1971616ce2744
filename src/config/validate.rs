//! Rules that span fields or need more than a type: URL schemes, path shapes, channel
//! pattern syntax, duplicate names, listener clashes. Runs on the freshly parsed
//! (not yet normalised) config and reports every problem, each with the key path it
//! belongs to, so the operator fixes the whole file in one round. The checks of
//! routes and upstream names (`validate/routes.rs`) and of `auth.session` and
//! resource checks (`validate/session.rs`) are children of this file: they
//! read the whole file, so the sections they check do not depend on `Config`.

mod mercure;
mod pusher;
mod routes;
mod session;

use super::Config;
use super::error::{Report, Violation};
use super::locate::KeyPath;
use super::rules::Subscribe;
use crate::model::template::{Context, Template};
use std::collections::HashMap;
use std::time::Duration;

pub(crate) fn validate(c: &Config) -> Vec<Violation> {
    let mut r = Report::default();
    let root = KeyPath::root();
    listen(c, &mut r);
    tls(c, &mut r);
    backend(&c.backend, &root.key("backend"), &mut r);
    for (name, upstream) in &c.upstreams {
        backend(upstream, &root.key("upstreams").key(name), &mut r);
    }
    r.0.extend(routes::check(c));
    r.0.extend(session::check(c));
    realtime(c, &mut r);
    auth(c, &mut r);
    channels(c, &mut r);
    limits(c, &mut r);
    ingest(c, &mut r);
    if let Some(cm) = &c.client_messages {
        if !cm.forward_to.starts_with('/') {
            let key = root.key("client_messages").key("forward_to");
            r.add(key, "must be a backend path starting with '/'");
        }
    }
    r.0.extend(pusher::check(c));
    r.0.extend(mercure::check(c));
    broker(c, &mut r);
    r.0
}

/// The largest `realtime.max_message` accepted.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn listen(c: &Config, r: &mut Report) {
    let (public, admin) = (c.listen.public, c.listen.admin);
    // Port 0 asks the OS for a free port, so two port-0 listeners never clash.
    if public == admin && public.port() != 0 {
        r.add(
            KeyPath::root().key("listen").key("admin"),
            format!("must differ from listen.public (both are {public})"),
        );
    }
}

fn tls(c: &Config, r: &mut Report) {
    let Some(tls) = &c.tls else { return };
    let key = KeyPath::root().key("tls");
    if tls.cert.as_os_str().is_empty() {
        r.add(key.key("cert"), "must not be empty");
    }
    if tls.key.as_os_str().is_empty() {
        r.add(key.key("key"), "must not be empty");
    }
    for (i, sni) in tls.sni.iter().enumerate() {
        let at = key.key("sni").index(i);
        if sni.hosts.is_empty() {
            r.add(at.key("hosts"), "must list at least one host name");
        }
        for (j, host) in sni.hosts.iter().enumerate() {
            if host.trim().is_empty() || host.contains(['/', ':', ' ']) {
                r.add(
                    at.key("hosts").index(j),
                    format!("{host:?} is not a host name"),
                );
            }
        }
        if sni.cert.as_os_str().is_empty() {
            r.add(at.key("cert"), "must not be empty");
        }
        if sni.key.as_os_str().is_empty() {
            r.add(at.key("key"), "must not be empty");
        }
    }
}

/// The keys of `backend:`, which every entry of `upstreams:` takes too.
fn backend(b: &super::Backend, key: &KeyPath, r: &mut Report) {
    // `url` has a default, so "both given" is told by `url` differing from
    // it: writing the default address beside `urls` goes unnoticed.
    if !b.urls.is_empty() && b.url != super::Backend::default().url {
        r.add(
            key.key("urls"),
            "give `url` (one server) or `urls`, not both",
        );
    }
    let servers = b.server_keys(key);
    for (at, url) in &servers {
        server_url(url, at, r);
    }
    let base = |u: &url::Url| u.path().trim_end_matches('/').to_string();
    if let Some((_, first)) = servers.first() {
        for (at, url) in &servers[1..] {
            // A unix server's path is its socket's, not a base path.
            if url.scheme() != "unix" && base(url) != base(first) {
                r.add(
                    at.clone(),
                    "every server of an upstream must have the same base path",
                );
            }
            if servers
                .iter()
                .filter(|(_, u)| u.as_str() == url.as_str())
                .count()
                > 1
            {
                r.add(at.clone(), "this server is listed twice");
            }
        }
    }
    server_schemes(b, key, r);
    nonzero(r, &key.key("connect_timeout"), b.connect_timeout);
    nonzero(r, &key.key("timeout"), b.timeout);
    conn_limit(b, key, r);
    super::buffering::check(&b.buffering, &key.key("buffering"), r);
    if let Some(h) = &b.health {
        let at = key.key("health");
        if !h.path.starts_with('/') || h.path.contains([' ', '#']) {
            r.add(
                at.key("path"),
                format!(
                    "{:?} must be a path starting with '/', e.g. /healthz",
                    h.path
                ),
            );
        }
        nonzero(r, &at.key("interval"), h.interval);
        nonzero(r, &at.key("timeout"), h.timeout);
        for (name, n) in [("fails", h.fails), ("passes", h.passes)] {
            if n == 0 {
                r.add(at.key(name), "must be at least 1");
            }
        }
    }
}

/// `max_connections` and `queue:`: a limit of at least one, and a queue
/// only where there is a limit to wait for.
fn conn_limit(b: &super::Backend, key: &KeyPath, r: &mut Report) {
    if b.max_connections == Some(0) {
        r.add(
            key.key("max_connections"),
            "must be at least 1 (leave it out for no limit)",
        );
    }
    let Some(queue) = &b.queue else { return };
    if b.max_connections.is_none() {
        r.add(
            key.key("queue"),
            "needs max_connections: the queue holds the requests beyond it",
        );
    }
    if queue.timeout.is_zero() {
        r.add(
            key.key("queue").key("timeout"),
            "must be greater than 0 (size: 0 refuses at once instead of queueing)",
        );
    }
}

fn server_url(url: &url::Url, at: &KeyPath, r: &mut Report) {
    match url.scheme() {
        "http" | "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                r.add(at.clone(), "must name a host, e.g. http://127.0.0.1:8080");
            }
        }
        "unix" => {
            // `unix:/run/app.sock`: a socket path, no host, no base path
            // (the whole path is the socket's).
            if url.host_str().is_some_and(|h| !h.is_empty()) || !url.path().starts_with('/') {
                r.add(
                    at.clone(),
                    "a unix socket is written unix:/absolute/path.sock",
                );
            } else if url.query().is_some() || url.fragment().is_some() {
                r.add(at.clone(), "a unix socket path takes no query or fragment");
            }
        }
        other => r.add(
            at.clone(),
            format!("scheme `{other}` is not supported; use http://, https:// or unix:/path"),
        ),
    }
}

/// `tls:` applies to `https://` servers; all servers of one upstream are
/// reached the same way, so they share one scheme.
fn server_schemes(b: &super::Backend, key: &KeyPath, r: &mut Report) {
    let servers = b.server_keys(key);
    let first = servers.first().map(|(_, u)| u.scheme());
    for (at, url) in &servers[1..] {
        if Some(url.scheme()) != first {
            r.add(
                at.clone(),
                "every server of an upstream must use the same scheme (http, https or unix)",
            );
        }
    }
    if b.tls.is_some() && !servers.iter().any(|(_, u)| u.scheme() == "https") {
        r.add(
            key.key("tls"),
            "applies to https:// servers, and this upstream has none",
        );
    }
}

fn realtime(c: &Config, r: &mut Report) {
    let rt = &c.realtime;
    let key = KeyPath::root().key("realtime");
    if let Err(message) = check_mount_path(&rt.path) {
        r.add(key.key("path"), message);
    }
    nonzero(r, &key.key("heartbeat"), rt.heartbeat);
    nonzero(r, &key.key("poll_timeout"), rt.poll_timeout);
    if rt.history.size == 0 {
        r.add(key.key("history").key("size"), "must be at least 1");
    }
    nonzero(r, &key.key("history").key("ttl"), rt.history.ttl);
    if rt.max_message == 0 {
        r.add(key.key("max_message"), "must be at least 1 byte");
    } else if rt.max_message > MAX_MESSAGE {
        // Every channel keeps `history.size` of them and every slow
        // connection may hold `client_queue`: a bound well past any real
        // message keeps a typo (`64GiB`) from becoming an allocation.
        r.add(key.key("max_message"), "must be at most 16MiB");
    }
    if rt.client_queue == 0 {
        r.add(key.key("client_queue"), "must be at least 1");
    }
    if rt.compression.level > 9 {
        r.add(
            key.key("compression").key("level"),
            "must be a deflate level from 0 to 9",
        );
    }
    for (i, origin) in rt.allowed_origins.iter().enumerate() {
        // "null" (sandboxed frames, file: pages) only when written literally.
        if origin != "*" && origin != "null" && !is_origin(origin) {
            r.add(
                key.key("allowed_origins").index(i),
                format!("{origin:?} is not an origin like \"https://app.example.com\", \"null\" or \"*\""),
            );
        }
    }
}

/// `/realtime` or `/realtime/`: starts with '/', not the root, no query or spaces.
fn check_mount_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path.trim_end_matches('/').is_empty() {
        return Err("must not be the root path \"/\"; the root belongs to the backend".into());
    }
    if path.contains(['?', '#', ' ', '\t', '{', '}', '*']) || path.contains("//") {
        return Err(format!("{path:?} is not a plain URL path"));
    }
    Ok(())
}

fn is_origin(origin: &str) -> bool {
    match url::Url::parse(origin) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && !origin.ends_with('/')
                && u.query().is_none()
        }
        Err(_) => false,
    }
}

/// The largest `auth.jwt.leeway` accepted.
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(3600);

fn auth(c: &Config, r: &mut Report) {
    let key = KeyPath::root().key("auth");
    if let Some(jwt) = &c.auth.jwt {
        let has_secret = jwt.hs256_secret.as_deref().is_some_and(|s| !s.is_empty());
        if !has_secret && jwt.rs256_public_key.is_none() && jwt.es256_public_key.is_none() {
            r.add(
                key.key("jwt"),
                "needs a key: hs256_secret, rs256_public_key or es256_public_key",
            );
        }
        // A clock-skew allowance, not a way to switch expiry off; the bound also
        // keeps `now ± leeway` far from overflow.
        if jwt.leeway > MAX_JWT_LEEWAY {
            r.add(key.key("jwt").key("leeway"), "must be at most 1h");
        }
    }
    for (i, token) in c.auth.static_tokens.iter().enumerate() {
        let at = key.key("static_tokens").index(i);
        // An empty token (from `${X:-}`) means "unset": the entry is dropped on load.
        if !token.token.is_empty() && token.subject.trim().is_empty() {
            r.add(at.key("subject"), "must not be empty");
        }
        for (j, pattern) in token.channels.iter().enumerate() {
            if let Err(message) = check_pattern(pattern, false) {
                r.add(at.key("channels").index(j), message);
            }
        }
    }
    if c.auth
        .cookie
        .as_deref()
        .is_some_and(|name| !is_token(name) && !name.is_empty())
    {
        r.add(
            key.key("cookie"),
            "must be a cookie name (letters, digits, `-`, `_`)",
        );
    }
}

fn channels(c: &Config, r: &mut Report) {
    for (i, rule) in c.channels.iter().enumerate() {
        let at = KeyPath::root().key("channels").index(i);
        match check_pattern(&rule.pattern, true) {
            Err(message) => r.add(at.key("pattern"), message),
            Ok(placeholders) => {
                if rule.subscribe == Subscribe::Owner && !placeholders.iter().any(|p| p == "sub") {
                    r.add(
                        at.key("subscribe"),
                        "`owner` needs a `{sub}` placeholder in the pattern, e.g. \"user.{sub}\"",
                    );
                }
            }
        }
        if let Some(history) = &rule.history {
            if history.size == Some(0) {
                r.add(at.key("history").key("size"), "must be at least 1");
            }
            if history.ttl == Some(Duration::ZERO) {
                r.add(at.key("history").key("ttl"), "must be greater than 0");
            }
        }
    }
}

/// Checks a channel pattern; returns its `{placeholder}` names.
/// Channel characters: ASCII letters, digits and `. _ - : @ =`; patterns add `*`
/// and (when `placeholders`) `{name}`.
pub(crate) fn check_pattern(pattern: &str, placeholders: bool) -> Result<Vec<String>, String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    let mut names = Vec::new();
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        match ch {
            c if c.is_ascii_alphanumeric() || ".-_:@=*".contains(c) => {}
            '{' if placeholders => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !closed || name.is_empty() || !valid {
                    return Err(format!(
                        "{pattern:?} has a malformed placeholder; write `{{name}}` with letters, digits or `_`"
                    ));
                }
                names.push(name);
            }
            other => {
                return Err(format!(
                    "{pattern:?} contains {other:?}; allowed are ASCII letters, digits, `. _ - : @ =`, \
                     `*`{}",
                    if placeholders {
                        " and `{placeholder}`"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    Ok(names)
}

fn limits(c: &Config, r: &mut Report) {
    let key = KeyPath::root().key("limits");
    if c.limits.max_connections == 0 {
        r.add(key.key("max_connections"), "must be at least 1");
    }
    if c.limits.max_channels_per_connection == 0 {
        r.add(key.key("max_channels_per_connection"), "must be at least 1");
    }
    if c.limits.max_subscribers_per_channel == Some(0) {
        r.add(
            key.key("max_subscribers_per_channel"),
            "must be at least 1 (omit it for no cap)",
        );
    }
    nonzero(r, &key.key("handshake_timeout"), c.limits.handshake_timeout);
    nonzero(r, &key.key("header_timeout"), c.limits.header_timeout);
    if c.limits.max_header_size < 1024 {
        r.add(key.key("max_header_size"), "must be at least 1KiB");
    }
    if c.limits.per_client.connections == 0 {
        r.add(
            key.key("per_client").key("connections"),
            "must be at least 1",
        );
    }
    if c.limits.per_ip.connections == 0 {
        r.add(key.key("per_ip").key("connections"), "must be at least 1");
    }
}

fn ingest(c: &Config, r: &mut Report) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, hook) in c.webhooks.iter().enumerate() {
        let at = KeyPath::root().key("webhooks").index(i);
        if hook.name.trim().is_empty() {
            r.add(at.key("name"), "must not be empty");
        } else if let Some(first) = seen.insert(hook.name.as_str(), i) {
            seen.insert(hook.name.as_str(), first);
            r.add(
                at.key("name"),
                format!(
                    "duplicate webhook name {:?} (also webhooks[{first}])",
                    hook.name
                ),
            );
        }
        check_method(r, &at.key("match").key("method"), &hook.matcher.method);
        check_route(r, &at.key("match").key("path"), &hook.matcher.path);
        if hook.channel.trim().is_empty() {
            r.add(at.key("channel"), "must not be empty");
        }
        let params = crate::model::PathPattern::new(&hook.matcher.path).params();
        let templates = [
            ("channel", Some(&hook.channel)),
            ("event", hook.event.as_ref()),
            ("data", hook.data.as_ref()),
        ];
        for (key, text) in templates {
            if let Some(text) = text {
                if let Err(e) = Template::parse(text, Context::Webhook, &params) {
                    r.add(at.key(key), e.to_string());
                }
            }
        }
        if let Some(verify) = &hook.verify {
            if !is_token(&verify.hmac_sha256.header) {
                r.add(
                    at.key("verify").key("hmac_sha256").key("header"),
                    "must be an HTTP header name",
                );
            }
        }
    }
    for (i, tap) in c.taps.iter().enumerate() {
        let at = KeyPath::root().key("taps").index(i);
        if let Some(method) = &tap.matcher.method {
            check_method(r, &at.key("match").key("method"), method);
        }
        check_route(r, &at.key("match").key("path"), &tap.matcher.path);
        if let Some(status) = &tap.matcher.status {
            if !is_status_pattern(status) {
                r.add(
                    at.key("match").key("status"),
                    format!("{status:?} is not a status like \"2xx\", \"20x\" or \"201\""),
                );
            }
        }
        if tap.channel.trim().is_empty() {
            r.add(at.key("channel"), "must not be empty");
        }
        let templates = [
            ("channel", Some(&tap.channel)),
            ("event", tap.event.as_ref()),
            ("data", tap.data.as_ref()),
        ];
        for (key, text) in templates {
            if let Some(text) = text {
                if let Err(e) = Template::parse(text, Context::Tap, &[]) {
                    r.add(at.key(key), e.to_string());
                }
            }
        }
    }
}

fn check_method(r: &mut Report, key: &KeyPath, method: &str) {
    if method.is_empty()
        || http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err()
    {
        r.add(key.clone(), format!("{method:?} is not an HTTP method"));
    }
}

fn check_route(r: &mut Report, key: &KeyPath, path: &str) {
    if !path.starts_with('/') {
        r.add(key.clone(), format!("{path:?} must start with '/'"));
    } else if path.contains(['?', '#', ' ']) {
        r.add(
            key.clone(),
            format!("{path:?} must be a plain path without query or spaces"),
        );
    }
}

/// `2xx`, `20x`, `201` (first digit 1-5; an `x` may only be followed by `x`).
pub(crate) fn is_status_pattern(status: &str) -> bool {
    let b = status.to_ascii_lowercase().into_bytes();
    let class = |c: u8| (b'1'..=b'5').contains(&c);
    match b.as_slice() {
        [first, b'x', b'x'] => class(*first),
        [first, second, b'x'] => class(*first) && second.is_ascii_digit(),
        [first, second, third] => {
            class(*first) && second.is_ascii_digit() && third.is_ascii_digit()
        }
        _ => false,
    }
}

fn broker(c: &Config, r: &mut Report) {
    if let Some(redis) = &c.broker.redis {
        let ok = url::Url::parse(&redis.url)
            .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss" | "redis+unix" | "unix"));
        if !ok {
            r.add(
                KeyPath::root().key("broker").key("redis").key("url"),
                "must be a redis:// or rediss:// URL",
            );
        }
    }
}

fn nonzero(r: &mut Report, key: &KeyPath, d: Duration) {
    if d.is_zero() {
        r.add(key.clone(), "must be greater than 0");
    }
}

/// An HTTP token (header or cookie name).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
