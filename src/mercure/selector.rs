//! Topic selectors: what a subscriber asks for (`match=`,
//! `match_urlpattern=`, 0.x `topic=`) and what a token allows (its publish
//! and subscribe rights), matched against an update's topics.
//!
//! A [`Selectors`] keeps its exact selectors in a hash set, so a
//! subscription of a thousand exact topics costs one lookup per topic of an
//! update; URI Templates and URL Patterns are tried one by one, each in
//! linear time. An update's absolute topics are parsed as URLs once per
//! update (`TopicUpdate::urls`); only a relative topic is resolved against
//! each subscriber's hub URL, and only when a URL Pattern needs it.
//!
//! A URL Pattern compiles to a regular expression, and a subscriber may
//! write its own groups (`/:a(\w{200})`), so each is compiled under a
//! small size limit ([`BoundedRegex`]): a hostile pattern is refused at
//! once instead of costing megabytes and a fraction of a second of the
//! async worker that parses it.

use std::collections::HashSet;

use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput};

use super::uri_template::{MAX_TEMPLATE_LEN, UriTemplate};
use crate::model::TopicUpdate;

/// Why a selector cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SelectorError {
    #[error("{0:?} is not a URI Template: {1}")]
    Template(String, super::uri_template::TemplateError),
    #[error("{0:?} is not a URL Pattern, or compiles to too large a matcher")]
    Pattern(String),
    #[error("a selector is longer than {MAX_TEMPLATE_LEN} characters")]
    TooLong,
    #[error("a selector holds a control or format character")]
    Control,
}

/// One selector, as written.
pub(crate) enum Selector {
    /// `*`: every topic.
    Any,
    Exact(String),
    /// 0.x: a selector with `{…}` is an RFC 6570 URI Template.
    Template(UriTemplate),
    /// 1.0: `match_urlpattern=` (WHATWG URL Pattern).
    Pattern(Box<UrlPattern<BoundedRegex>>),
}

impl Selector {
    /// An exact selector (`match=`), `*` the wildcard.
    pub(crate) fn exact(text: &str) -> Result<Selector, SelectorError> {
        checked(text)?;
        Ok(if text == "*" {
            Selector::Any
        } else {
            Selector::Exact(text.to_string())
        })
    }

    /// A 0.x selector: `*`, a URI Template when it holds a `{`, else exact.
    pub(crate) fn legacy(text: &str) -> Result<Selector, SelectorError> {
        if !text.contains('{') {
            return Selector::exact(text);
        }
        checked(text)?;
        UriTemplate::parse(text)
            .map(Selector::Template)
            .map_err(|e| SelectorError::Template(text.to_string(), e))
    }

    /// A URL Pattern (`match_urlpattern=`), relative ones against `base`.
    pub(crate) fn url_pattern(text: &str, base: &Url) -> Result<Selector, SelectorError> {
        checked(text)?;
        if text == "*" {
            return Ok(Selector::Any);
        }
        let bad = || SelectorError::Pattern(text.to_string());
        let init =
            UrlPatternInit::parse_constructor_string::<BoundedRegex>(text, Some(base.clone()))
                .map_err(|_| bad())?;
        let pattern =
            UrlPattern::<BoundedRegex>::parse(init, Default::default()).map_err(|_| bad())?;
        Ok(Selector::Pattern(Box::new(pattern)))
    }
}

/// Most memory one compiled component of a URL Pattern may take. The
/// regular expressions of ordinary patterns (`/books/:id`, `/users/*`) are
/// a few KiB; a subscriber's own groups with large repetitions are not.
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// A URL Pattern's regular expression, compiled under
/// [`REGEX_SIZE_LIMIT`] (the `regex` crate's default allows 10 MB).
pub(crate) struct BoundedRegex(regex::Regex);

impl urlpattern::regexp::RegExp for BoundedRegex {
    fn syntax() -> urlpattern::RegexSyntax {
        <regex::Regex as urlpattern::regexp::RegExp>::syntax()
    }

    fn parse(pattern: &str, _flags: &str, _force_eval: bool) -> Result<Self, ()> {
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(BoundedRegex)
            .map_err(|_| ())
    }

    fn matches<'a>(&self, text: &'a str) -> Option<Vec<Option<&'a str>>> {
        urlpattern::regexp::RegExp::matches(&self.0, text)
    }

    fn pattern_string(&self) -> &str {
        self.0.as_str()
    }
}

/// Bounded length, and none of the characters the protocol forbids.
fn checked(text: &str) -> Result<(), SelectorError> {
    if text.len() > MAX_TEMPLATE_LEN {
        return Err(SelectorError::TooLong);
    }
    if text.chars().any(forbidden_char) {
        return Err(SelectorError::Control);
    }
    Ok(())
}

/// C0 and C1 controls, DEL, and the common format characters (bidi
/// controls, zero-width characters, the BOM): never in a topic, a
/// selector, an id or a type.
pub(crate) fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{feff}')
        || ('\u{200b}'..='\u{200f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2060}'..='\u{206f}').contains(&c)
        || ('\u{fff9}'..='\u{fffb}').contains(&c)
}

/// A set of selectors, matched as one.
#[derive(Default)]
pub(crate) struct Selectors {
    any: bool,
    exact: HashSet<String>,
    templates: Vec<UriTemplate>,
    patterns: Vec<UrlPattern<BoundedRegex>>,
}

impl Selectors {
    pub(crate) fn push(&mut self, selector: Selector) {
        match selector {
            Selector::Any => self.any = true,
            Selector::Exact(t) => {
                self.exact.insert(t);
            }
            Selector::Template(t) => self.templates.push(t),
            Selector::Pattern(p) => self.patterns.push(*p),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.templates.is_empty() && self.patterns.is_empty()
    }

    /// Whether one of `topics` matches one of the selectors; relative
    /// topics are resolved against `base` for URL Patterns.
    #[cfg(test)]
    pub(crate) fn matches_any<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a str>,
        base: &Url,
    ) -> bool {
        if self.any {
            return true;
        }
        topics.into_iter().any(|topic| self.matches(topic, base))
    }

    /// Whether one of the update's topics matches one of the selectors,
    /// with the URLs parsed once for the update.
    pub(crate) fn matches_update(&self, u: &TopicUpdate, base: &Url) -> bool {
        if self.any {
            return true;
        }
        u.topics.iter().enumerate().any(|(i, topic)| {
            self.matches_parsed(topic, u.urls.get(i).and_then(Option::as_ref), base)
        })
    }

    /// Whether `topic` matches one of the selectors.
    pub(crate) fn matches(&self, topic: &str, base: &Url) -> bool {
        self.matches_parsed(topic, None, base)
    }

    /// Whether `topic` matches, `parsed` its absolute URL when already known.
    fn matches_parsed(&self, topic: &str, parsed: Option<&Url>, base: &Url) -> bool {
        if self.any || self.exact.contains(topic) {
            return true;
        }
        if self.templates.iter().any(|t| t.matches(topic)) {
            return true;
        }
        if self.patterns.is_empty() {
            return false;
        }
        // A topic that is no URL reference matches no pattern.
        let url = match parsed {
            Some(url) => url.clone(),
            None => match Url::options().base_url(Some(base)).parse(topic) {
                Ok(url) => url,
                Err(_) => return false,
            },
        };
        self.patterns.iter().any(|p| {
            p.test(UrlPatternMatchInput::Url(url.clone()))
                .unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://example.com/.well-known/mercure").unwrap()
    }

    fn set(selectors: Vec<Selector>) -> Selectors {
        let mut s = Selectors::default();
        for sel in selectors {
            s.push(sel);
        }
        s
    }

    #[test]
    fn exact_is_byte_for_byte() {
        let s = set(vec![Selector::exact("https://example.com/foo").unwrap()]);
        assert!(s.matches("https://example.com/foo", &base()));
        assert!(!s.matches("https://example.com/Foo", &base()));
        assert!(!s.matches("https://example.com/foo/", &base()));
        assert!(set(vec![Selector::exact("*").unwrap()]).matches("anything", &base()));
    }

    #[test]
    fn url_patterns_match_absolute_and_relative_topics() {
        let s = set(vec![
            Selector::url_pattern("https://example.com/books/:id", &base()).unwrap(),
        ]);
        assert!(s.matches("https://example.com/books/1", &base()));
        assert!(s.matches("/books/7", &base()), "relative to the hub");
        assert!(!s.matches("https://example.com/books/1/reviews", &base()));
        assert!(!s.matches("https://other.example/books/1", &base()));
        assert!(!s.matches("not a url at all:::", &base()));
    }

    #[test]
    fn a_pattern_that_never_matches_matches_nothing() {
        let s = set(vec![
            Selector::url_pattern("https://nowhere.invalid/never/:x", &base()).unwrap(),
        ]);
        for topic in ["https://example.com/books/1", "/never/1", "urn:x", "*"] {
            assert!(!s.matches(topic, &base()), "{topic}");
        }
    }

    #[test]
    fn legacy_selectors_are_templates_when_braced() {
        let s = set(vec![
            Selector::legacy("https://example.com/books/{id}").unwrap(),
        ]);
        assert!(s.matches("https://example.com/books/1", &base()));
        assert!(!s.matches("https://example.com/authors/1", &base()));
        let plain = set(vec![Selector::legacy("https://example.com/a").unwrap()]);
        assert!(plain.matches("https://example.com/a", &base()));
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert!(Selector::url_pattern("https://example.com/(", &base()).is_err());
        assert!(Selector::exact("a\nb").is_err());
        assert!(Selector::exact("a\u{202e}b").is_err());
        assert!(Selector::legacy("/a/{b").is_err());
        assert!(Selector::exact(&"a".repeat(MAX_TEMPLATE_LEN + 1)).is_err());
    }

    /// The URL parsed once for the update is the one matched: were each
    /// subscriber to parse the topic again, this update (whose cached URL
    /// says `b.example`) would not match a pattern for `b.example`.
    #[test]
    fn an_updates_urls_are_parsed_once_and_reused() {
        let s = set(vec![
            Selector::url_pattern("https://b.example/books/:id", &base()).unwrap(),
        ]);
        let update = |urls| TopicUpdate {
            topics: vec!["https://a.example/books/1".into(), "/books/2".into()],
            urls,
            private: false,
            id: "x".into(),
            frame: "".into(),
        };
        let cached = update(vec![Url::parse("https://b.example/books/1").ok(), None]);
        assert!(s.matches_update(&cached, &base()));
        let plain = update(vec![Url::parse("https://a.example/books/1").ok(), None]);
        assert!(!s.matches_update(&plain, &base()));
        // A relative topic is resolved against the subscriber's hub URL.
        let b = Url::parse("https://b.example/.well-known/mercure").unwrap();
        assert!(s.matches_update(&plain, &b));
    }

    #[test]
    fn a_thousand_exact_selectors_are_one_lookup() {
        let mut s = Selectors::default();
        for i in 0..1000 {
            s.push(Selector::exact(&format!("https://example.com/t/{i}")).unwrap());
        }
        assert!(s.matches_any(["x", "https://example.com/t/999"], &base()));
        assert!(!s.matches_any(["https://example.com/t/1000"], &base()));
        assert!(!s.is_empty());
    }
}
