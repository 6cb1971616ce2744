//! A topic-to-channel template of `mercure.channels`, parsed: a Mercure
//! topic is a URL and a channel name is not, so the mapping is written out
//! (`https://example.com/books/{id}` to `books.{id}`). In the topic,
//! `{name}` matches one non-empty path segment without a dot (no `/`,
//! `?`, `#`, `.`: a dot would add segments to the channel name, and a
//! channel rule's pattern would read them as such); in the channel it is
//! replaced by what it matched, and a name that comes out invalid (a
//! value with `%` or `+`) maps to no channel.

use regex::Regex;

use super::valid_channel;

/// Why an entry of `mercure.channels` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("`{{` without `}}`, or an empty or invalid {{name}}")]
    BadPlaceholder,
    #[error("{{{0}}} is not a placeholder of the topic")]
    Unknown(String),
    #[error("is not a channel name once its placeholders are filled")]
    BadChannel,
}

/// One compiled topic-to-channel template.
pub struct TopicChannel {
    topic: Regex,
    channel: Vec<Piece>,
}

enum Piece {
    Literal(String),
    Var(String),
}

/// `{name}` and literal pieces of a template.
fn pieces(template: &str) -> Result<Vec<Piece>, MappingError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (literal, tail) = rest.split_at(open);
        if !literal.is_empty() {
            out.push(Piece::Literal(literal.to_string()));
        }
        let close = tail.find('}').ok_or(MappingError::BadPlaceholder)?;
        let name = &tail[1..close];
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(MappingError::BadPlaceholder);
        }
        out.push(Piece::Var(name.to_string()));
        rest = &tail[close + 1..];
    }
    if rest.contains('}') {
        return Err(MappingError::BadPlaceholder);
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest.to_string()));
    }
    Ok(out)
}

impl TopicChannel {
    /// Compile `topic` (a URL with `{name}` segments) and `channel` (a
    /// channel name with the same `{name}`s).
    pub fn parse(topic: &str, channel: &str) -> Result<TopicChannel, MappingError> {
        let topic = pieces(topic)?;
        let mut re = String::from("^");
        let mut names = Vec::new();
        for p in &topic {
            match p {
                Piece::Literal(l) => re.push_str(&regex::escape(l)),
                Piece::Var(name) => {
                    re.push_str(&format!("(?P<{name}>[^/?#.]+)"));
                    names.push(name.as_str());
                }
            }
        }
        re.push('$');
        let channel = pieces(channel)?;
        let mut sample = String::new();
        for p in &channel {
            match p {
                Piece::Literal(l) => sample.push_str(l),
                Piece::Var(name) if names.contains(&name.as_str()) => sample.push('x'),
                Piece::Var(name) => return Err(MappingError::Unknown(name.clone())),
            }
        }
        if !valid_channel(&sample) {
            return Err(MappingError::BadChannel);
        }
        // A name used twice in the topic is refused by the regex itself.
        let topic = Regex::new(&re).map_err(|_| MappingError::BadPlaceholder)?;
        Ok(TopicChannel { topic, channel })
    }

    /// The channel `topic` maps to, when it matches and the name is valid.
    pub fn channel_of(&self, topic: &str) -> Option<String> {
        let caps = self.topic.captures(topic)?;
        let mut out = String::new();
        for p in &self.channel {
            match p {
                Piece::Literal(l) => out.push_str(l),
                Piece::Var(name) => out.push_str(caps.name(name)?.as_str()),
            }
        }
        valid_channel(&out).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_to_channel_names() {
        let t = TopicChannel::parse("https://example.com/books/{id}", "books.{id}").unwrap();
        assert_eq!(
            t.channel_of("https://example.com/books/1").as_deref(),
            Some("books.1")
        );
        assert_eq!(
            t.channel_of("https://example.com/books/1/x"),
            None,
            "one segment"
        );
        assert_eq!(
            t.channel_of("https://example.com/books/"),
            None,
            "not empty"
        );
        assert_eq!(
            t.channel_of("https://example.com/books/a%20b"),
            None,
            "invalid name"
        );
        assert_eq!(
            t.channel_of("https://example.com/books/1.secret"),
            None,
            "a dot would add a segment to the channel"
        );
        let two = TopicChannel::parse("https://e.com/{a}/{b}", "c.{b}-{a}").unwrap();
        assert_eq!(
            two.channel_of("https://e.com/x/y").as_deref(),
            Some("c.y-x")
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for (topic, channel, want) in [
            ("https://e.com/{id", "c.{id}", MappingError::BadPlaceholder),
            ("https://e.com/{}", "c", MappingError::BadPlaceholder),
            (
                "https://e.com/{id}",
                "c.{other}",
                MappingError::Unknown("other".into()),
            ),
            ("https://e.com/{id}", "c/{id}", MappingError::BadChannel),
            ("https://e.com/{id}", "", MappingError::BadChannel),
        ] {
            assert_eq!(
                TopicChannel::parse(topic, channel).err(),
                Some(want),
                "{topic} {channel}"
            );
        }
    }
}
