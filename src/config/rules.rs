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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscribe {
    /// No token needed.
    Anyone,
    /// Only the token whose `sub` fills the pattern's `{sub}`.
    Owner,
    /// A token whose channels claim matches.
    Token,
}

/// Who may publish to a channel besides the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishBy {
    #[default]
    Server,
    Clients,
}

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
