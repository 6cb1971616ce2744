//! Matching a topic against an RFC 6570 URI Template (levels 1 to 4), the
//! topic selectors of the 0.x Mercure protocol (`topic=` and the `mercure`
//! claim): `https://example.com/books/{id}` selects
//! `https://example.com/books/1` but not `https://example.com/books/1/x`.
//!
//! A template is compiled once into an anchored regular expression. Each
//! expression matches what its operator can expand to: a simple `{x}` one
//! path segment (no `/`, `?`, `#`), `{+x}` anything, `{/x}` path segments,
//! `{?x}` and `{&x}` a query, `{#x}` a fragment. The `regex` crate matches
//! in linear time, so a subscriber's template cannot make matching slow.

use regex::Regex;

/// Longest template accepted (a bound on the compiled expression).
pub(crate) const MAX_TEMPLATE_LEN: usize = 2048;

/// Why a text is not a usable URI Template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TemplateError {
    #[error("an expression is not closed with '}}'")]
    Unclosed,
    #[error("a '}}' closes no expression")]
    Stray,
    #[error("an expression names no valid variable")]
    BadVariable,
    #[error("the template is longer than {MAX_TEMPLATE_LEN} characters")]
    TooLong,
}

/// A compiled URI Template, matched against whole topics.
#[derive(Debug, Clone)]
pub(crate) struct UriTemplate(Regex);

impl UriTemplate {
    pub(crate) fn parse(template: &str) -> Result<UriTemplate, TemplateError> {
        if template.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        let mut re = String::with_capacity(template.len() * 2 + 8);
        re.push('^');
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            let (literal, tail) = rest.split_at(open);
            re.push_str(&regex::escape(literal));
            if tail.starts_with('}') {
                return Err(TemplateError::Stray);
            }
            let close = tail.find('}').ok_or(TemplateError::Unclosed)?;
            re.push_str(expression(&tail[1..close])?);
            rest = &tail[close + 1..];
        }
        re.push_str(&regex::escape(rest));
        re.push('$');
        Regex::new(&re)
            .map(UriTemplate)
            .map_err(|_| TemplateError::TooLong)
    }

    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.0.is_match(topic)
    }
}

/// The expression for one `{…}`: what its operator may expand to.
fn expression(inner: &str) -> Result<&'static str, TemplateError> {
    let (op, vars) = match inner.chars().next() {
        Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (c, &inner[1..]),
        _ => (' ', inner),
    };
    let valid = !vars.is_empty()
        && vars.split(',').all(|v| {
            let name = v
                .strip_suffix('*')
                .or_else(|| v.split_once(':').and_then(valid_prefix))
                .unwrap_or(v);
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'%'))
        });
    if !valid {
        return Err(TemplateError::BadVariable);
    }
    Ok(match op {
        '+' => ".*",
        '#' => "(?:#.*)?",
        '.' => r"(?:\.[^/?#]*)*",
        '/' => "(?:/[^?#]*)*",
        ';' => "(?:;[^/?#]*)*",
        '?' => r"(?:\?[^#]*)?",
        '&' => "(?:&[^#]*)*",
        _ => "[^/?#]*",
    })
}

/// `name:N` with N a length of 1 to 9999: the name.
fn valid_prefix<'a>((name, len): (&'a str, &str)) -> Option<&'a str> {
    let ok = !len.is_empty() && len.len() <= 4 && len.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(template: &str, topic: &str) -> bool {
        UriTemplate::parse(template).unwrap().matches(topic)
    }

    #[test]
    fn simple_expressions_take_one_segment() {
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/1"
        ));
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/"
        ));
        assert!(!m(
            "https://example.com/books/{id}",
            "https://example.com/books/1/x"
        ));
        assert!(!m(
            "https://example.com/books/{id}",
            "https://example.com/book/1"
        ));
        assert!(m("/u/{a}-{b}", "/u/x-y"));
    }

    #[test]
    fn operators_expand_as_rfc_6570_says() {
        assert!(m("{+base}/books", "https://example.com/a/books"));
        assert!(m("/search{?q,lang}", "/search?q=x&lang=fr"));
        assert!(m("/search{?q}", "/search"));
        assert!(m("/x{/path*}", "/x/a/b/c"));
        assert!(m("/x{#frag}", "/x#top"));
        assert!(m("/f{.fmt}", "/f.json"));
        assert!(m("/m{;k}", "/m;k=1"));
        assert!(m("/q?a=1{&b}", "/q?a=1&b=2"));
        assert!(m("/v/{var:3}", "/v/abc"));
    }

    #[test]
    fn literals_are_literal() {
        assert!(!m("https://example.com/a.b", "https://example.com/aXb"));
        assert!(m("https://example.com/(x)", "https://example.com/(x)"));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["/a/{id", "/a/}", "/a/{}", "/a/{=x}", "/a/{x y}", "/a/{x:y}"] {
            assert!(UriTemplate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            UriTemplate::parse(&"a".repeat(MAX_TEMPLATE_LEN + 1)).err(),
            Some(TemplateError::TooLong)
        );
    }
}
