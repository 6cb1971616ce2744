//! The checks of `mercure:`: the hub's path, one key per kind of token,
//! who may subscribe at all, and origins that are origins.

use super::{check_mount_path, is_origin};
use crate::config::error::Violation;
use crate::config::locate::KeyPath;
use crate::config::{Config, MercureKey};

/// The problems of `mercure:`.
pub(crate) fn check(c: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(m) = &c.mercure else {
        return out;
    };
    let mut add = |key: KeyPath, message: String| out.push(Violation { key, message });
    let at = KeyPath::root().key("mercure");
    match check_mount_path(&m.path) {
        Err(message) => add(at.key("path"), message),
        Ok(()) => {
            let ours = m.path.trim_end_matches('/');
            let realtime = c.realtime.path.trim_end_matches('/');
            let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
            if under(ours, realtime) || under(realtime, ours) {
                add(
                    at.key("path"),
                    format!("{:?} overlaps realtime.path {:?}", m.path, c.realtime.path),
                );
            }
        }
    }
    for (name, key) in [
        ("publisher_jwt", &m.publisher_jwt),
        ("subscriber_jwt", &m.subscriber_jwt),
    ] {
        if let Some(key) = key {
            if let Err(message) = one_key(key) {
                add(at.key(name), message);
            }
        }
    }
    if m.publisher_jwt.is_none() {
        add(
            at.key("publisher_jwt"),
            "is required: publishers prove themselves with a token signed by this key".into(),
        );
    }
    if m.subscriber_jwt.is_none() && !m.anonymous {
        add(
            at.key("subscriber_jwt"),
            "is required unless `anonymous: true` (nobody could subscribe)".into(),
        );
    }
    for (name, list) in [
        ("cors_origins", &m.cors_origins),
        ("publish_origins", &m.publish_origins),
    ] {
        for (i, origin) in list.iter().enumerate() {
            if origin != "*" && !is_origin(origin) {
                add(
                    at.key(name).index(i),
                    format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
                );
            }
        }
    }
    if m.cors_origins.iter().any(|o| o == "*") {
        add(
            at.key("cors_origins"),
            "\"*\" would let any page read credentialed answers (the hub's are); name the origins"
                .into(),
        );
    }
    if m.publish_origins.iter().any(|o| o == "*") {
        add(
            at.key("publish_origins"),
            "\"*\" would let any page publish with a user's cookie; name the origins".into(),
        );
    }
    for (i, d) in m.discovery.iter().enumerate() {
        if !d.path.starts_with('/') {
            add(
                at.key("discovery").index(i).key("path"),
                format!("{:?} must start with '/'", d.path),
            );
        }
    }
    for (i, c) in m.channels.iter().enumerate() {
        if let Err(e) = crate::model::TopicChannel::parse(&c.topic, &c.channel) {
            add(
                at.key("channels").index(i).key("channel"),
                format!("{:?} -> {:?}: {e}", c.topic, c.channel),
            );
        }
    }
    if m.max_stream_life.is_zero() {
        add(
            at.key("max_stream_life"),
            "must be more than 0 (every stream would end at once)".into(),
        );
    }
    out
}

/// Exactly one of the three keys.
fn one_key(key: &MercureKey) -> Result<(), String> {
    let given = [
        key.hs256_secret.as_ref().is_some_and(|s| !s.is_empty()),
        key.rs256_public_key.is_some(),
        key.es256_public_key.is_some(),
    ]
    .into_iter()
    .filter(|g| *g)
    .count();
    match given {
        1 => Ok(()),
        0 => Err("needs a key: hs256_secret, rs256_public_key or es256_public_key".into()),
        _ => Err("give one key: hs256_secret, rs256_public_key or es256_public_key".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_with_env;
    use std::path::Path;

    fn errors(yaml: &str) -> String {
        let file = Path::new("/etc/pushgate/gateway.yaml");
        match parse_with_env(yaml, file, &|_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_plain_hub_loads() {
        let ok = "mercure:\n  publisher_jwt: { hs256_secret: s }\n  anonymous: true\n";
        assert_eq!(errors(ok), "");
    }

    #[test]
    fn each_rejection_names_its_key() {
        for (yaml, key) in [
            ("mercure: { anonymous: true }", "mercure.publisher_jwt"),
            (
                "mercure: { publisher_jwt: { hs256_secret: s } }",
                "mercure.subscriber_jwt",
            ),
            (
                "mercure: { path: x, anonymous: true, publisher_jwt: { hs256_secret: s } }",
                "mercure.path",
            ),
            (
                "mercure: { path: /realtime/m, anonymous: true, publisher_jwt: { hs256_secret: s } }",
                "mercure.path",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s, es256_public_key: k.pem } }",
                "mercure.publisher_jwt",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: {} }",
                "mercure.publisher_jwt",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, cors_origins: [example.com] }",
                "mercure.cors_origins[0]",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, publish_origins: ['*'] }",
                "mercure.publish_origins",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, cors_origins: ['*'] }",
                "mercure.cors_origins",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, discovery: [{ path: api }] }",
                "mercure.discovery[0].path",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, channels: [{ topic: 'https://e.com/{id}', channel: 'c.{x}' }] }",
                "mercure.channels[0].channel",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, max_stream_life: 0s }",
                "mercure.max_stream_life",
            ),
            (
                "mercure: { anonymous: true, publisher_jwt: { hs256_secret: s }, nope: 1 }",
                "nope",
            ),
        ] {
            let e = errors(yaml);
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }
}
