//! The rule lists of the configuration: channel rules (who may subscribe and publish
//! where, first match wins), webhook rules and response taps that turn HTTP traffic
//! into channel messages, and where browser-sent messages are forwarded. Only shape
//! and defaults live here; the checks that span fields are in `validate.rs`.

use super::{lenient, units};
use serde::Deserialize;
use std::time::Duration;

/// One entry of `channels:`; the first rule whose pattern matches a channel applies.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// `public.*`, `user.{sub}`: channel characters plus `*` and `{placeholder}`.
    pub pattern: String,
    pub subscribe: Subscribe,
    #[serde(default)]
    pub publish: PublishBy,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub presence: bool,
    #[serde(default)]
    pub history: Option<HistoryOverride>,
    #[serde(default)]
    pub slow_client: SlowClient,
}

/// Who may subscribe to a channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subscribe {
    /// No token needed.
    Anyone,
    /// Only the token whose `sub` fills the pattern's `{sub}`.
    Owner,
    /// A token whose channels claim matches.
    Token,
    /// The application's answer to its own resource URL decides.
    Check(ResourceCheck),
}

/// Who may publish to a channel besides the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum PublishBy {
    #[default]
    Server,
    Clients,
    /// Clients, when the application's answer to its resource URL allows.
    Check(ResourceCheck),
}

impl Subscribe {
    /// The resource check, when the application decides.
    pub fn check(&self) -> Option<&ResourceCheck> {
        match self {
            Subscribe::Check(c) => Some(c),
            _ => None,
        }
    }
}

impl PublishBy {
    pub fn check(&self) -> Option<&ResourceCheck> {
        match self {
            PublishBy::Check(c) => Some(c),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Subscribe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let words = ["anyone", "owner", "token"];
        d.deserialize_any(WordOrCheck::new(&words))
            .map(|w| match w {
                Word::Named("anyone") => Subscribe::Anyone,
                Word::Named("owner") => Subscribe::Owner,
                Word::Named(_) => Subscribe::Token,
                Word::Check(c) => Subscribe::Check(c),
            })
    }
}

impl<'de> Deserialize<'de> for PublishBy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let words = ["server", "clients"];
        d.deserialize_any(WordOrCheck::new(&words))
            .map(|w| match w {
                Word::Named("server") => PublishBy::Server,
                Word::Named(_) => PublishBy::Clients,
                Word::Check(c) => PublishBy::Check(c),
            })
    }
}

/// `anyone` (one of a few words) or `{ check: "GET /path/{id}" }`.
enum Word {
    Named(&'static str),
    Check(ResourceCheck),
}

struct WordOrCheck<'w> {
    words: &'w [&'static str],
}

impl<'w> WordOrCheck<'w> {
    fn new(words: &'w [&'static str]) -> Self {
        WordOrCheck { words }
    }

    fn expected(&self) -> String {
        let words: Vec<String> = self.words.iter().map(|w| format!("`{w}`")).collect();
        format!(
            "one of {}, or {{ check: \"GET /path/{{placeholder}}\" }}",
            words.join(", ")
        )
    }
}

impl<'de> serde::de::Visitor<'de> for WordOrCheck<'_> {
    type Value = Word;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.expected())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Word, E> {
        self.words
            .iter()
            .find(|w| **w == v)
            .map(|w| Word::Named(w))
            .ok_or_else(|| {
                E::custom(format!(
                    "unknown variant `{v}`, expected {}",
                    self.expected()
                ))
            })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Word, A::Error> {
        ResourceCheck::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(Word::Check)
    }
}

pub use super::session::ResourceCheck;
pub use crate::model::SlowClient;

/// Per-rule history settings; absent fields fall back to `realtime.history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryOverride {
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub size: Option<usize>,
    #[serde(deserialize_with = "units::opt_duration")]
    pub ttl: Option<Duration>,
}

/// A webhook endpoint on the admin listener whose requests become channel messages.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: WebhookMatch,
    #[serde(default)]
    pub verify: Option<Verify>,
    /// A template: `orders.{body.customer_id}`.
    pub channel: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub data: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookMatch {
    /// Uppercased on load.
    #[serde(default = "default_method")]
    pub method: String,
    /// Starts with `/`; may hold `{name}` segments.
    pub path: String,
}

fn default_method() -> String {
    "POST".to_owned()
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub hmac_sha256: HmacVerify,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacVerify {
    pub header: String,
    pub secret: String,
}

/// Publish when a proxied request matching `match` succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tap {
    #[serde(rename = "match")]
    pub matcher: TapMatch,
    pub channel: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub data: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapMatch {
    /// Uppercased on load; any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    /// `2xx`, `201`, `20x`; any 2xx when absent is the tap module's choice.
    #[serde(default, deserialize_with = "lenient::opt_string_or_int")]
    pub status: Option<String>,
    /// Only requests routed to this upstream (`routes:`); any when absent.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// Where messages sent by browsers (ws frames, `POST {realtime.path}/send`) go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessages {
    /// A backend path.
    pub forward_to: String,
    /// The upstream it is sent to (`upstreams:`); `default` when absent.
    #[serde(default)]
    pub upstream: Option<String>,
}
