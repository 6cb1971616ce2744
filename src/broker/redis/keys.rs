//! Redis key names: everything pushgate stores lives under the configured
//! prefix, so several deployments (or a test run) can share one Redis.

/// Redis key names under the configured prefix.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
    /// `{prefix}:c:`, stripped from every arriving message's topic.
    pub(super) topic_prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            topic_prefix: format!("{prefix}:c:"),
        }
    }

    pub(super) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    pub(super) fn seq(&self) -> String {
        format!("{}:seq", self.prefix)
    }
    pub(super) fn history(&self, channel: &str) -> String {
        format!("{}:h:{channel}", self.prefix)
    }
    pub(super) fn last(&self) -> String {
        format!("{}:last", self.prefix)
    }
    pub(super) fn floor(&self) -> String {
        format!("{}:floor", self.prefix)
    }
    pub(super) fn idempotency(&self, channel: &str, key: &str) -> String {
        format!("{}:k:{channel}:{key}", self.prefix)
    }
    /// The pub/sub topic carrying `channel`'s messages between instances.
    pub(super) fn topic(&self, channel: &str) -> String {
        format!("{}{channel}", self.topic_prefix)
    }
}
