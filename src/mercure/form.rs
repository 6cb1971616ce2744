//! The publish request body (`application/x-www-form-urlencoded`):
//! `topic` (one or more), `data`, `id`, `type`, `retry`, `private`, each
//! checked as the Mercure specification asks. Unknown fields are ignored,
//! so later protocol versions' fields do not break publishers.

use url::Url;

use super::selector::forbidden_char;

/// Most topics one update may name.
pub(crate) const MAX_TOPICS: usize = 100;

/// An update as a publisher sent it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UpdateForm {
    pub(crate) topics: Vec<String>,
    pub(crate) data: String,
    pub(crate) id: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) retry: Option<u64>,
    /// The `private` field was present, whatever its value.
    pub(crate) private: bool,
}

/// Why a publish body is refused: 400, or 413 for too many topics.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FormError {
    #[error("missing \"topic\" field")]
    NoTopic,
    #[error("more than {MAX_TOPICS} topics")]
    TooManyTopics,
    #[error("invalid {0:?} field: {1}")]
    Field(&'static str, &'static str),
}

impl UpdateForm {
    /// Parse and check a body; `hub` is the hub's URL, whose path (and
    /// everything under it) is reserved for the hub's own events.
    pub(crate) fn parse(body: &[u8], hub: &Url) -> Result<UpdateForm, FormError> {
        let mut form = UpdateForm::default();
        for (name, value) in url::form_urlencoded::parse(body) {
            match &*name {
                "topic" => {
                    if form.topics.len() == MAX_TOPICS {
                        return Err(FormError::TooManyTopics);
                    }
                    form.topics.push(value.into_owned());
                }
                "data" => form.data = value.into_owned(),
                "id" => form.id = Some(value.into_owned()),
                "type" => form.kind = Some(value.into_owned()),
                "retry" => {
                    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                    let retry = value.parse().ok().filter(|_| ok);
                    form.retry = Some(retry.ok_or(FormError::Field("retry", "digits only"))?);
                }
                "private" => form.private = true,
                _ => {}
            }
        }
        if form.topics.is_empty() {
            return Err(FormError::NoTopic);
        }
        for topic in &form.topics {
            if topic.is_empty() || topic.chars().any(forbidden_char) {
                return Err(FormError::Field(
                    "topic",
                    "empty or holds a control character",
                ));
            }
            if topic == "*" {
                return Err(FormError::Field(
                    "topic",
                    "\"*\" is the wildcard, not a topic",
                ));
            }
            if reserved(topic, hub) {
                return Err(FormError::Field("topic", "the hub's own path is reserved"));
            }
        }
        if let Some(id) = &form.id {
            if id.is_empty() || id.starts_with('#') || id == "earliest" {
                return Err(FormError::Field(
                    "id",
                    "must not be empty, start with '#' or be \"earliest\"",
                ));
            }
            if id.chars().any(forbidden_char) {
                return Err(FormError::Field("id", "holds a control character"));
            }
        }
        if let Some(kind) = &form.kind {
            if kind.chars().any(forbidden_char) || kind.is_empty() {
                return Err(FormError::Field(
                    "type",
                    "empty or holds a control character",
                ));
            }
            if kind == "mercure" {
                return Err(FormError::Field("type", "\"mercure\" is the hub's own"));
            }
        }
        Ok(form)
    }
}

/// Whether `topic`, resolved against the hub's URL (dot segments removed
/// and unreserved escapes decoded, so `%6D` or `..` cannot dodge it),
/// names the hub's path or something under it.
fn reserved(topic: &str, hub: &Url) -> bool {
    let Ok(url) = Url::options().base_url(Some(hub)).parse(topic) else {
        return false;
    };
    let path = decode_unreserved(url.path());
    let ours = hub.path().trim_end_matches('/');
    path == ours || path.starts_with(&format!("{ours}/"))
}

/// `%41` → `A` for unreserved characters only.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(b));
                    i += 3;
                    continue;
                }
            }
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Url {
        Url::parse("https://example.com/.well-known/mercure").unwrap()
    }

    fn parse(body: &str) -> Result<UpdateForm, FormError> {
        UpdateForm::parse(body.as_bytes(), &hub())
    }

    #[test]
    fn every_field() {
        let f = parse("topic=https%3A%2F%2Fexample.com%2Fa&topic=b&data=x%0Ay&id=urn%3A1&type=t&retry=10&private=on&future=1").unwrap();
        assert_eq!(f.topics, ["https://example.com/a", "b"]);
        assert_eq!(f.data, "x\ny");
        assert_eq!(f.id.as_deref(), Some("urn:1"));
        assert_eq!(f.kind.as_deref(), Some("t"));
        assert_eq!(f.retry, Some(10));
        assert!(f.private);
        assert!(parse("topic=a&private").unwrap().private);
        assert!(parse("topic=a&private=").unwrap().private);
        assert!(!parse("topic=a").unwrap().private);
    }

    #[test]
    fn refusals() {
        assert_eq!(parse("data=x"), Err(FormError::NoTopic));
        for bad in [
            "topic=*",
            "topic=a%0Ab",
            "topic=",
            "topic=a&id=%23x",
            "topic=a&id=earliest",
            "topic=a&id=a%0D",
            "topic=a&type=mercure",
            "topic=a&type=a%0Ab",
            "topic=a&retry=1e3",
            "topic=a&retry=-1",
            "topic=/.well-known/mercure/subscriptions/x",
            "topic=https://other.example/.well-known/%6Dercure",
            "topic=/a/../.well-known/mercure",
            "topic=/.well-known/mercure",
        ] {
            assert!(matches!(parse(bad), Err(FormError::Field(..))), "{bad}");
        }
        assert!(parse("topic=/.well-known/mercurex").is_ok());
        let many = "topic=a&".repeat(MAX_TOPICS + 1);
        assert_eq!(parse(&many), Err(FormError::TooManyTopics));
    }
}
