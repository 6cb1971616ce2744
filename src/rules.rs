//! Channel rules: which channels exist for clients, who may subscribe or
//! publish, and how much history each keeps. First matching pattern wins; a
//! channel no pattern matches is refused.
//!
//! Patterns are channel names with two kinds of holes: `*` matches any
//! non-empty run of characters, `{name}` does too and captures it (an `owner`
//! rule compares its `{sub}` capture with the token's subject).

use std::sync::Arc;

use crate::auth::Identity;
use crate::config::{self, PublishBy, SlowClient, Subscribe};
use crate::model::HistoryPolicy;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Any,
    Capture(String),
}

/// A compiled channel pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pieces: Vec<Piece>,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    flush(&mut lit, &mut pieces);
                    pieces.push(Piece::Any);
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    flush(&mut lit, &mut pieces);
                    pieces.push(Piece::Capture(name));
                }
                c => lit.push(c),
            }
        }
        flush(&mut lit, &mut pieces);
        Pattern { pieces }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.captures(name).is_some()
    }

    /// Match `name`, returning captured `{placeholders}`.
    pub fn captures<'n>(&self, name: &'n str) -> Option<Vec<(&str, &'n str)>> {
        let mut caps = Vec::new();
        match_from(&self.pieces, name, &mut caps).then_some(caps)
    }
}

fn flush(lit: &mut String, pieces: &mut Vec<Piece>) {
    if !lit.is_empty() {
        pieces.push(Piece::Lit(std::mem::take(lit)));
    }
}

/// Backtracking match; patterns are short, so this stays cheap.
fn match_from<'p, 'n>(
    pieces: &'p [Piece],
    name: &'n str,
    caps: &mut Vec<(&'p str, &'n str)>,
) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return name.is_empty();
    };
    match first {
        Piece::Lit(l) => name
            .strip_prefix(l.as_str())
            .is_some_and(|n| match_from(rest, n, caps)),
        Piece::Any | Piece::Capture(_) => {
            for i in name
                .char_indices()
                .map(|(i, _)| i)
                .skip(1)
                .chain([name.len()])
                .filter(|&i| i > 0)
            {
                let before = caps.len();
                if let Piece::Capture(c) = first {
                    caps.push((c.as_str(), &name[..i]));
                }
                if match_from(rest, &name[i..], caps) {
                    return true;
                }
                caps.truncate(before);
            }
            false
        }
    }
}

/// One rule from `channels:`, compiled.
#[derive(Clone, Debug)]
pub struct ChannelRule {
    pub pattern: Pattern,
    pub source: String,
    pub subscribe: Subscribe,
    pub publish: PublishBy,
    pub presence: bool,
    pub history: HistoryPolicy,
    pub slow_client: SlowClient,
}

/// Why a client may not use a channel. Each maps to one status / error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("invalid channel name")]
    InvalidName,
    #[error("no channel rule allows `{0}`")]
    NoRule(String),
    #[error("channel `{0}` needs a token")]
    TokenRequired(String),
    #[error("this token may not use channel `{0}`")]
    Forbidden(String),
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::InvalidName => http::StatusCode::BAD_REQUEST,
            Refusal::TokenRequired(_) => http::StatusCode::UNAUTHORIZED,
            Refusal::NoRule(_) | Refusal::Forbidden(_) => http::StatusCode::FORBIDDEN,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidName => "invalid_channel",
            Refusal::TokenRequired(_) => "unauthorized",
            Refusal::NoRule(_) | Refusal::Forbidden(_) => "forbidden",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChannelRules {
    rules: Arc<[ChannelRule]>,
    default_history: HistoryPolicy,
}

impl ChannelRules {
    pub fn new(rules: &[config::ChannelRule], history: &config::History) -> ChannelRules {
        let default_history = HistoryPolicy {
            size: history.size,
            ttl: history.ttl,
        };
        let rules = rules
            .iter()
            .map(|r| ChannelRule {
                pattern: Pattern::new(&r.pattern),
                source: r.pattern.clone(),
                subscribe: r.subscribe.clone(),
                publish: r.publish.clone(),
                presence: r.presence,
                history: HistoryPolicy {
                    size: r
                        .history
                        .as_ref()
                        .and_then(|h| h.size)
                        .unwrap_or(history.size),
                    ttl: r
                        .history
                        .as_ref()
                        .and_then(|h| h.ttl)
                        .unwrap_or(history.ttl),
                },
                slow_client: r.slow_client,
            })
            .collect();
        ChannelRules {
            rules,
            default_history,
        }
    }

    pub fn find(&self, channel: &str) -> Option<&ChannelRule> {
        self.rules.iter().find(|r| r.pattern.matches(channel))
    }

    /// Whether any rule leaves a decision to the application (`check`).
    pub fn has_checks(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.subscribe.check().is_some() || r.publish.check().is_some())
    }

    /// Whether following `channel` depends on who the client is, so that
    /// the application's login must be asked first: its rule is `owner`,
    /// `token` or a resource `check`, or it keeps presence (which lists
    /// subjects). `anyone` channels, and names no rule allows (refused
    /// anyway), need nobody: a browser's cookie is not sent to the
    /// application for them.
    pub fn needs_identity(&self, channel: &str) -> bool {
        self.find(channel)
            .is_some_and(|r| r.presence || !matches!(r.subscribe, Subscribe::Anyone))
    }

    /// Whether reading `channel` is restricted by its rule's `subscribe`
    /// (`owner`, `token` or a `check`): what decides if an update not
    /// everyone may read can be published there. Presence does not count:
    /// a presence channel open to `anyone` is read by anyone.
    pub fn restricts_readers(&self, channel: &str) -> bool {
        self.find(channel)
            .is_some_and(|r| !matches!(r.subscribe, Subscribe::Anyone))
    }

    /// Whether a client's publish into `channel` depends on who it is: as
    /// for following it, or its rule's `publish` is a `check`.
    pub fn needs_identity_to_publish(&self, channel: &str) -> bool {
        self.needs_identity(channel)
            || self
                .find(channel)
                .is_some_and(|r| r.publish.check().is_some())
    }

    pub fn rules(&self) -> &[ChannelRule] {
        &self.rules
    }

    /// History retention for `channel` (its rule's override, else the default).
    pub fn history_for(&self, channel: &str) -> HistoryPolicy {
        self.find(channel)
            .map(|r| r.history)
            .unwrap_or(self.default_history)
    }

    /// May this client subscribe to `channel`? A rule whose `subscribe`
    /// is a `check` leaves the answer to the application: the caller asks
    /// ([`Verdict::Ask`]) before it subscribes.
    pub fn check_subscribe(
        &self,
        channel: &str,
        who: Option<&Identity>,
    ) -> Result<Verdict<'_>, Refusal> {
        if !crate::model::valid_channel(channel) {
            return Err(Refusal::InvalidName);
        }
        let rule = self
            .find(channel)
            .ok_or_else(|| Refusal::NoRule(channel.to_string()))?;
        match &rule.subscribe {
            Subscribe::Anyone => Ok(Verdict::Allowed(rule)),
            Subscribe::Check(check) => Ok(Verdict::Ask(rule, vec![check])),
            Subscribe::Owner | Subscribe::Token => {
                let who = who.ok_or_else(|| Refusal::TokenRequired(channel.to_string()))?;
                if self.token_allows(rule, channel, who) {
                    Ok(Verdict::Allowed(rule))
                } else {
                    Err(Refusal::Forbidden(channel.to_string()))
                }
            }
        }
    }

    /// May this client publish into `channel` itself (chat, typing
    /// indicators)? It must be allowed to subscribe as well.
    pub fn check_client_publish(
        &self,
        channel: &str,
        who: Option<&Identity>,
    ) -> Result<Verdict<'_>, Refusal> {
        let verdict = self.check_subscribe(channel, who)?;
        let rule = verdict.rule();
        match (&rule.publish, verdict) {
            (PublishBy::Server, _) => Err(Refusal::Forbidden(channel.to_string())),
            (PublishBy::Clients, verdict) => Ok(verdict),
            (PublishBy::Check(check), Verdict::Allowed(rule)) => {
                Ok(Verdict::Ask(rule, vec![check]))
            }
            (PublishBy::Check(check), Verdict::Ask(rule, mut checks)) => {
                checks.push(check);
                Ok(Verdict::Ask(rule, checks))
            }
        }
    }

    fn token_allows(&self, rule: &ChannelRule, channel: &str, who: &Identity) -> bool {
        match rule.subscribe {
            // Never asked here: `check_subscribe` leaves those to the caller.
            Subscribe::Anyone | Subscribe::Check(_) => true,
            Subscribe::Owner => rule
                .pattern
                .captures(channel)
                .is_some_and(|caps| caps.iter().any(|(k, v)| *k == "sub" && *v == who.subject)),
            Subscribe::Token => who
                .channels
                .iter()
                .any(|p| Pattern::new(p).matches(channel)),
        }
    }
}

/// A rule's answer for one channel: allowed, or allowed once the
/// application's answers to these resource checks allow it.
#[derive(Clone, Debug)]
pub enum Verdict<'r> {
    Allowed(&'r ChannelRule),
    Ask(&'r ChannelRule, Vec<&'r config::ResourceCheck>),
}

impl<'r> Verdict<'r> {
    /// The rule that matched. Its checks still decide when this is an `Ask`.
    pub fn rule(&self) -> &'r ChannelRule {
        match self {
            Verdict::Allowed(r) | Verdict::Ask(r, _) => r,
        }
    }
}

/// What a set of checks asks, as a number: a subscription the application
/// allowed under other checks (a reload changed them) must be asked again.
pub fn checks_id(checks: &[&config::ResourceCheck]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    checks.hash(&mut h);
    // Never 0: that is "not checked".
    h.finish() | 1
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(Pattern::new("public.*").matches("public.news"));
        assert!(Pattern::new("public.*").matches("public.a.b"));
        assert!(!Pattern::new("public.*").matches("public."));
        assert!(!Pattern::new("public.*").matches("publicx"));
        assert!(Pattern::new("exact").matches("exact"));
        assert!(!Pattern::new("exact").matches("exact2"));
        let p = Pattern::new("user.{sub}");
        assert_eq!(p.captures("user.alice"), Some(vec![("sub", "alice")]));
        assert_eq!(p.captures("user.a.b@c"), Some(vec![("sub", "a.b@c")]));
        assert_eq!(
            Pattern::new("a.{x}.b.*").captures("a.1.b.2"),
            Some(vec![("x", "1")])
        );
        assert!(Pattern::new("*").matches("anything"));
    }

    /// Anyone on `public.*`, the owner on `user.{sub}`, a token on
    /// `orders.*` (also what the transports' admission is tested with).
    pub(crate) fn rules() -> ChannelRules {
        let rule = |pattern: &str, subscribe| config::ChannelRule {
            pattern: pattern.into(),
            subscribe,
            publish: PublishBy::Server,
            presence: false,
            history: None,
            slow_client: SlowClient::Disconnect,
        };
        let history = config::History {
            size: 10,
            ttl: std::time::Duration::from_secs(5),
        };
        ChannelRules::new(
            &[
                rule("public.*", Subscribe::Anyone),
                rule("user.{sub}", Subscribe::Owner),
                rule("orders.*", Subscribe::Token),
            ],
            &history,
        )
    }

    #[test]
    fn only_channels_that_depend_on_the_client_need_its_identity() {
        let r = rules();
        assert!(!r.needs_identity("public.x"));
        assert!(!r.needs_identity("no-rule"));
        assert!(r.needs_identity("user.alice"));
        assert!(r.needs_identity("orders.1"));
        let check = config::ResourceCheck {
            check: "GET /api/orders/{id}".into(),
        };
        let history = config::History {
            size: 10,
            ttl: std::time::Duration::from_secs(5),
        };
        let rule = |pattern: &str, subscribe, publish, presence| config::ChannelRule {
            pattern: pattern.into(),
            subscribe,
            publish,
            presence,
            history: None,
            slow_client: SlowClient::Disconnect,
        };
        let r = ChannelRules::new(
            &[
                rule(
                    "doc.{id}",
                    Subscribe::Check(check.clone()),
                    PublishBy::Server,
                    false,
                ),
                rule("room.*", Subscribe::Anyone, PublishBy::Clients, true),
                rule(
                    "bids.{id}",
                    Subscribe::Anyone,
                    PublishBy::Check(check),
                    false,
                ),
                rule("chat.*", Subscribe::Anyone, PublishBy::Clients, false),
            ],
            &history,
        );
        assert!(r.needs_identity("doc.1"));
        assert!(r.needs_identity("room.1"), "presence lists subjects");
        assert!(!r.needs_identity("bids.1"));
        assert!(r.needs_identity_to_publish("bids.1"));
        assert!(!r.needs_identity_to_publish("chat.1"));
    }

    #[test]
    fn first_match_and_refusals() {
        let r = rules();
        let alice = Identity {
            subject: "alice".into(),
            channels: vec!["orders.7*".into()],
            expires: None,
        };
        assert!(r.check_subscribe("public.x", None).is_ok());
        assert_eq!(
            r.check_subscribe("secret", None).unwrap_err(),
            Refusal::NoRule("secret".into())
        );
        assert_eq!(
            r.check_subscribe("bad name", None).unwrap_err(),
            Refusal::InvalidName
        );
        assert!(matches!(
            r.check_subscribe("user.alice", None),
            Err(Refusal::TokenRequired(_))
        ));
        assert!(r.check_subscribe("user.alice", Some(&alice)).is_ok());
        assert!(matches!(
            r.check_subscribe("user.bob", Some(&alice)),
            Err(Refusal::Forbidden(_))
        ));
        assert!(r.check_subscribe("orders.77", Some(&alice)).is_ok());
        assert!(matches!(
            r.check_subscribe("orders.8", Some(&alice)),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            r.check_client_publish("public.x", None),
            Err(Refusal::Forbidden(_))
        ));
    }
}
