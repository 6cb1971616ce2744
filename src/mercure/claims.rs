//! What a Mercure token allows, from its claims in either generation:
//! 1.0 `authorization_details` (type
//! `https://mercure.rocks/authorization-detail`, `actions`, `topics` of
//! `{match, match_type}`) and 0.x `mercure: {publish: […], subscribe: […]}`
//! (exact topics, URI Templates, `*`).
//!
//! A token whose Mercure claims do not parse is refused whole: acting on
//! the entries that did parse would change what it allows.

use serde_json::Value;
use url::Url;

use super::selector::{Selector, Selectors};

/// The 1.0 authorization detail type.
pub(crate) const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// Most selectors a token may carry, all actions together.
pub(crate) const MAX_TOKEN_SELECTORS: usize = 1000;

/// What a verified token may do.
#[derive(Default)]
pub(crate) struct Rights {
    pub(crate) publish: Selectors,
    pub(crate) subscribe: Selectors,
    /// The token's `sub`, when it names one.
    pub(crate) subject: Option<String>,
    /// What the subscriber's subscriptions show others (`payload` of the
    /// 0.x claim or of the first 1.0 subscribe detail that has one).
    pub(crate) payload: Option<Value>,
}

/// The claims do not describe rights this hub understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid Mercure claims: {0}")]
pub(crate) struct ClaimsError(pub(crate) String);

/// Read the rights of `claims` (a JSON object); `base` resolves relative
/// URL Patterns.
pub(crate) fn rights(claims: &Value, base: &Url) -> Result<Rights, ClaimsError> {
    let bad = |m: &str| ClaimsError(m.to_string());
    let mut rights = Rights {
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string),
        ..Rights::default()
    };
    let mut count = 0;
    let mut counted = || {
        count += 1;
        if count > MAX_TOKEN_SELECTORS {
            Err(bad("too many topic selectors"))
        } else {
            Ok(())
        }
    };
    if let Some(details) = claims.get("authorization_details") {
        let details = details
            .as_array()
            .ok_or_else(|| bad("authorization_details is not an array"))?;
        for detail in details {
            // Details of other types are another resource server's business.
            if detail.get("type").and_then(Value::as_str) != Some(DETAIL_TYPE) {
                continue;
            }
            let actions = detail
                .get("actions")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad("a detail has no actions"))?;
            let mut publish = false;
            let mut subscribe = false;
            for action in actions {
                match action.as_str() {
                    Some("publish") => publish = true,
                    Some("subscribe") => subscribe = true,
                    Some(_) => {}
                    None => return Err(bad("an action is not a string")),
                }
            }
            let topics = detail
                .get("topics")
                .and_then(Value::as_array)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("a detail has no topics"))?;
            if subscribe && rights.payload.is_none() {
                rights.payload = detail.get("payload").cloned();
            }
            for topic in topics {
                counted()?;
                let selector = matcher(topic, base)?;
                // Compiled twice when both actions share it: rare and small.
                if publish {
                    rights.publish.push(matcher(topic, base)?);
                }
                if subscribe {
                    rights.subscribe.push(selector);
                }
            }
        }
    }
    if let Some(legacy) = claims.get("mercure") {
        let legacy = legacy
            .as_object()
            .ok_or_else(|| bad("the mercure claim is not an object"))?;
        if rights.payload.is_none() {
            rights.payload = legacy.get("payload").cloned();
        }
        for (action, into) in [
            ("publish", &mut rights.publish),
            ("subscribe", &mut rights.subscribe),
        ] {
            let Some(list) = legacy.get(action) else {
                continue;
            };
            let list = list
                .as_array()
                .ok_or_else(|| bad("mercure.publish/subscribe is not an array"))?;
            for topic in list {
                counted()?;
                let text = topic
                    .as_str()
                    .ok_or_else(|| bad("a mercure selector is not a string"))?;
                into.push(Selector::legacy(text).map_err(|e| ClaimsError(e.to_string()))?);
            }
        }
    }
    Ok(rights)
}

/// One entry of a 1.0 detail's `topics`: `{"match": …, "match_type":
/// "exact"|"urlpattern"}`, or the query spelling `{"match_urlpattern": …}`.
fn matcher(entry: &Value, base: &Url) -> Result<Selector, ClaimsError> {
    let bad = |m: &str| ClaimsError(m.to_string());
    let obj = entry
        .as_object()
        .ok_or_else(|| bad("a topic matcher is not an object"))?;
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| bad("a topic matcher is not a string"))
    };
    let selector = match (
        obj.get("match"),
        obj.get("match_type"),
        obj.get("match_exact"),
        obj.get("match_urlpattern"),
    ) {
        (Some(m), None, None, None) => Selector::exact(&text(m)?),
        (Some(m), Some(t), None, None) => match t.as_str() {
            Some("exact") => Selector::exact(&text(m)?),
            Some("urlpattern") => Selector::url_pattern(&text(m)?, base),
            _ => return Err(bad("unsupported match_type")),
        },
        (None, None, Some(m), None) => Selector::exact(&text(m)?),
        (None, None, None, Some(m)) => Selector::url_pattern(&text(m)?, base),
        _ => {
            return Err(bad(
                "a topic matcher needs one of match, match_exact, match_urlpattern",
            ));
        }
    };
    selector.map_err(|e| ClaimsError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Url {
        Url::parse("https://example.com/.well-known/mercure").unwrap()
    }

    #[test]
    fn legacy_claims() {
        let r = rights(
            &json!({"mercure": {"publish": ["*"], "subscribe": ["https://example.com/books/{id}"]}}),
            &base(),
        )
        .unwrap();
        assert!(r.publish.matches("anything", &base()));
        assert!(r.subscribe.matches("https://example.com/books/3", &base()));
        assert!(!r.subscribe.matches("https://example.com/users/3", &base()));
    }

    #[test]
    fn authorization_details() {
        let r = rights(
            &json!({"sub": "u1", "authorization_details": [
                {"type": DETAIL_TYPE, "actions": ["subscribe", "future"], "topics": [
                    {"match": "https://example.com/books/1"},
                    {"match": "https://example.com/users/42/*", "match_type": "urlpattern"}
                ]},
                {"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match_urlpattern": "/books/:id"}]},
                {"type": "https://other.example/detail", "anything": 1}
            ]}),
            &base(),
        )
        .unwrap();
        assert_eq!(r.subject.as_deref(), Some("u1"));
        assert!(r.subscribe.matches("https://example.com/books/1", &base()));
        assert!(!r.subscribe.matches("https://example.com/books/2", &base()));
        assert!(
            r.subscribe
                .matches("https://example.com/users/42/books/2", &base())
        );
        assert!(r.publish.matches("https://example.com/books/9", &base()));
        assert!(!r.publish.matches("https://example.com/books/9/x", &base()));
    }

    #[test]
    fn no_mercure_claims_allow_nothing() {
        let r = rights(&json!({"sub": "x"}), &base()).unwrap();
        assert!(r.publish.is_empty() && r.subscribe.is_empty());
    }

    #[test]
    fn a_bad_entry_refuses_the_whole_token() {
        for claims in [
            json!({"authorization_details": {"type": DETAIL_TYPE}}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": [], "topics": [{"match": "*"}]}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": [1], "topics": [{"match": "*"}]}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["publish"], "topics": []}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["publish"], "topics": ["*"]}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "a", "match_type": "regex"}]}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "https://x/(", "match_type": "urlpattern"}]}]}),
            json!({"mercure": ["publish"]}),
            json!({"mercure": {"publish": "*"}}),
            json!({"mercure": {"subscribe": ["/a/{b"]}}),
        ] {
            assert!(rights(&claims, &base()).is_err(), "{claims}");
        }
        let many: Vec<_> = (0..=MAX_TOKEN_SELECTORS)
            .map(|i| format!("/t/{i}"))
            .collect();
        assert!(rights(&json!({"mercure": {"subscribe": many}}), &base()).is_err());
    }
}
