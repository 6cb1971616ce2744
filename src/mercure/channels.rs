//! `mercure.channels`: which Mercure topics are also published on pushgate
//! channels, so pushgate's own WebSocket, SSE and long-poll clients can
//! follow them under the channel rules (the templates themselves are
//! `model/topic_channel.rs`).
//!
//! Rights: a private update is published only by an entry marked
//! `private: true`, and only to a channel whose `subscribe` rule restricts
//! its readers (`owner`, `token`, a `check`; presence alone does not): the
//! channel rules then decide who reads it, never `anyone`.

use crate::config::TopicChannel as Entry;
use crate::model::TopicChannel;

/// The compiled `mercure.channels`.
#[derive(Default)]
pub struct ChannelMap {
    entries: Vec<(TopicChannel, bool)>,
}

impl ChannelMap {
    /// Compile the entries; one that does not compile (validation refuses
    /// it before a configuration is used) is left out.
    pub(crate) fn new(entries: &[Entry]) -> ChannelMap {
        ChannelMap {
            entries: entries
                .iter()
                .filter_map(|e| Some((TopicChannel::parse(&e.topic, &e.channel).ok()?, e.private)))
                .collect(),
        }
    }

    /// The channels an update on `topics` is published on, each once with
    /// the topic that mapped to it: per entry, the first of its topics
    /// (canonical, then alternates) that matches. `restricts_readers` says whether a channel's
    /// `subscribe` rule restricts who reads it; a private update goes only
    /// there.
    pub(crate) fn channels<'a>(
        &self,
        topics: impl Iterator<Item = &'a str> + Clone,
        private: bool,
        restricts_readers: impl Fn(&str) -> bool,
    ) -> Vec<(String, &'a str)> {
        let mut out: Vec<(String, &'a str)> = Vec::new();
        for (template, for_private) in &self.entries {
            if private && !for_private {
                continue;
            }
            let Some((channel, topic)) = topics
                .clone()
                .find_map(|t| Some((template.channel_of(t)?, t)))
            else {
                continue;
            };
            if private && !restricts_readers(&channel) {
                tracing::debug!(%channel, "a private Mercure update is not published on a channel anyone may read");
                continue;
            }
            if !out.iter().any(|(c, _)| *c == channel) {
                out.push((channel, topic));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(topic: &str, channel: &str, private: bool) -> Entry {
        Entry {
            topic: topic.into(),
            channel: channel.into(),
            private,
        }
    }

    #[test]
    fn updates_map_to_channels_and_private_ones_need_a_private_entry() {
        let map = ChannelMap::new(&[
            entry("https://example.com/books/{id}", "books.{id}", false),
            entry("https://example.com/users/{u}/orders", "user.{u}", true),
        ]);
        let one = |t: &'static str, private| -> Vec<String> {
            map.channels([t].into_iter(), private, |c| c.starts_with("user."))
                .into_iter()
                .map(|(c, _)| c)
                .collect()
        };
        assert_eq!(one("https://example.com/books/1", false), ["books.1"]);
        assert!(
            one("https://example.com/books/1", true).is_empty(),
            "not a private entry"
        );
        assert_eq!(
            one("https://example.com/users/42/orders", true),
            ["user.42"]
        );
        // Alternates count, each entry once.
        let both = map.channels(
            [
                "urn:x",
                "https://example.com/books/2",
                "https://example.com/books/3",
            ]
            .into_iter(),
            false,
            |_| false,
        );
        // With the topic that matched, not the update's first.
        assert_eq!(
            both,
            [("books.2".to_string(), "https://example.com/books/2")]
        );
    }

    #[test]
    fn private_updates_never_reach_a_channel_anyone_reads() {
        let map = ChannelMap::new(&[entry("https://example.com/s/{id}", "public.s.{id}", true)]);
        let topics = ["https://example.com/s/1"];
        assert!(map.channels(topics.into_iter(), true, |_| false).is_empty());
        assert_eq!(
            map.channels(topics.into_iter(), false, |_| false),
            [("public.s.1".to_string(), "https://example.com/s/1")]
        );
    }
}
