//! A Mercure update as its subscribers need it: the topics it is about,
//! whether it is private, its id and its whole SSE event, made once per
//! message (kept on [`crate::model::Message::topic_update`]) and shared by
//! every Mercure subscriber that receives it.

/// The parsed, rendered form of a Mercure update carried by a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicUpdate {
    /// The canonical topic first, then the alternates.
    pub topics: Vec<Box<str>>,
    /// Each topic of `topics` parsed as an absolute URL, once per update
    /// (not once per subscriber with a URL Pattern); None for a relative
    /// topic, which each subscriber resolves against its own hub URL.
    pub urls: Vec<Option<url::Url>>,
    /// Only subscribers whose token may read one of `topics` receive it.
    pub private: bool,
    /// The update's id: the publisher's, or the hub's own.
    pub id: Box<str>,
    /// `id:`, `event:`, `retry:` and `data:` lines and the blank line.
    pub frame: Box<str>,
}
