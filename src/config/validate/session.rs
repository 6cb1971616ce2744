//! The checks of `auth.session` and of the channel rules' resource checks
//! that need the whole file: a placeholder the channel pattern lacks, an
//! upstream nobody defined.

use crate::config::error::Violation;
use crate::config::locate::KeyPath;
use crate::config::{Config, DEFAULT_UPSTREAM, check_placeholders, split_check};
use crate::model::template::{Context, Template};

/// The problems of `auth.session` and of the channel rules' checks.
pub(crate) fn check(c: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut add = |key: KeyPath, message: String| out.push(Violation { key, message });
    let known = |name: &str| name == DEFAULT_UPSTREAM || c.upstreams.contains_key(name);
    if let Some(s) = &c.auth.session {
        let at = KeyPath::root().key("auth").key("session");
        match split_check(&s.check) {
            Err(message) => add(at.key("check"), message),
            Ok((_, path)) => {
                if path.contains(['{', '}']) {
                    add(
                        at.key("check"),
                        "takes no placeholders: it asks about the browser, not a channel".into(),
                    );
                }
            }
        }
        if let Err(e) = Template::parse(&s.subject, Context::Answer, &[]) {
            add(at.key("subject"), e.to_string());
        } else if s.subject.trim().is_empty() {
            add(at.key("subject"), "must not be empty".into());
        }
        if let Some(channels) = &s.channels {
            if let Err(e) = Template::parse(channels, Context::Answer, &[]) {
                add(at.key("channels"), e.to_string());
            }
        }
        if s.recheck.is_zero() {
            add(at.key("recheck"), "must be greater than 0".into());
        }
        if s.timeout.is_zero() {
            add(at.key("timeout"), "must be greater than 0".into());
        }
        if s.concurrency == 0 {
            add(at.key("concurrency"), "must be at least 1".into());
        }
        match s.per_address.concurrency {
            Some(0) => add(
                at.key("per_address").key("concurrency"),
                "must be at least 1".into(),
            ),
            Some(n) if n > s.concurrency => add(
                at.key("per_address").key("concurrency"),
                format!(
                    "must be at most auth.session.concurrency ({})",
                    s.concurrency
                ),
            ),
            _ => {}
        }
        match s.per_address.network {
            Some(0) => add(
                at.key("per_address").key("network"),
                "must be at least 1".into(),
            ),
            Some(n) if n > s.concurrency => add(
                at.key("per_address").key("network"),
                format!(
                    "must be at most auth.session.concurrency ({})",
                    s.concurrency
                ),
            ),
            _ => {}
        }
        if let Some(name) = s.upstream.as_deref().filter(|n| !known(n)) {
            add(at.key("upstream"), format!("names no upstream: {name:?}"));
        }
    }
    for (i, rule) in c.channels.iter().enumerate() {
        let at = KeyPath::root().key("channels").index(i);
        let captures = super::check_pattern(&rule.pattern, true).unwrap_or_default();
        let checks = [
            ("subscribe", rule.subscribe.check()),
            ("publish", rule.publish.check()),
        ];
        for (key, check) in checks {
            let Some(check) = check else { continue };
            let at = at.key(key).key("check");
            match split_check(&check.check).and_then(|(_, path)| check_placeholders(&path)) {
                Err(message) => add(at, message),
                Ok(names) => {
                    for name in names.iter().filter(|n| !captures.contains(n)) {
                        add(
                            at.clone(),
                            format!(
                                "`{{{name}}}` is not a placeholder of the pattern {:?}",
                                rule.pattern
                            ),
                        );
                    }
                }
            }
        }
    }
    out
}
