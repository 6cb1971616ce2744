//! Webhook rules: the application's existing callbacks (payment provider,
//! CI, its own "notify" hooks) pointed at the admin listener and turned into
//! channel messages by YAML rules — no backend change.
//!
//! A rule matches method and path (with `{param}` segments), optionally
//! verifies an HMAC-SHA256 signature over the raw body (hex, or GitHub's
//! `sha256=` prefix; compared in constant time), then fills its templates.
//! A request whose templates cannot be filled gets 422 and publishes nothing.

use std::collections::HashMap;

use aws_lc_rs::hmac;
use http::{HeaderMap, Method, StatusCode};

use super::template::{Context, Input, Template, TemplateError};
use super::{MessageTemplates, Unfilled};
use crate::config;
pub use crate::model::PathPattern;
use crate::model::Publish;
use crate::rules::ChannelRules;

pub struct WebhookRule {
    pub name: String,
    method: Method,
    path: PathPattern,
    hmac: Option<(String, hmac::Key)>,
    templates: MessageTemplates,
}

/// A webhook rule whose template does not parse: which rule, which key, why.
#[derive(Debug, thiserror::Error)]
#[error("{section}[{index}].{key}: {error}")]
pub struct RuleError {
    pub section: &'static str,
    pub index: usize,
    pub key: &'static str,
    pub error: TemplateError,
}

#[derive(Default)]
pub struct Webhooks {
    rules: Vec<WebhookRule>,
}

impl Webhooks {
    pub fn new(cfg: &[config::Webhook]) -> Result<Webhooks, RuleError> {
        let mut rules = Vec::with_capacity(cfg.len());
        for (index, w) in cfg.iter().enumerate() {
            let path = PathPattern::new(&w.matcher.path);
            let params = path.params();
            let parse = |text: &str, key| {
                Template::parse(text, Context::Webhook, &params).map_err(|error| RuleError {
                    section: "webhooks",
                    index,
                    key,
                    error,
                })
            };
            let hmac = w
                .verify
                .as_ref()
                .filter(|v| !v.hmac_sha256.secret.is_empty())
                .map(|v| {
                    let key = hmac::Key::new(hmac::HMAC_SHA256, v.hmac_sha256.secret.as_bytes());
                    (v.hmac_sha256.header.clone(), key)
                });
            rules.push(WebhookRule {
                name: w.name.clone(),
                method: Method::from_bytes(w.matcher.method.to_ascii_uppercase().as_bytes())
                    .unwrap_or(Method::POST),
                path,
                hmac,
                templates: MessageTemplates {
                    channel: parse(&w.channel, "channel")?,
                    event: w.event.as_deref().map(|e| parse(e, "event")).transpose()?,
                    data: parse(w.data.as_deref().unwrap_or("{body}"), "data")?,
                },
            });
        }
        Ok(Webhooks { rules })
    }

    pub fn find(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(&WebhookRule, HashMap<String, String>)> {
        self.rules
            .iter()
            .filter(|r| r.method == method)
            .find_map(|r| r.path.matches(path).map(|p| (r, p)))
    }

    /// Whether any rule's path matches (to answer 405 rather than 404).
    pub fn path_known(&self, path: &str) -> bool {
        self.rules.iter().any(|r| r.path.matches(path).is_some())
    }
}

/// Check a signature header against the raw body.
fn verify_signature(key: &hmac::Key, header: Option<&str>, body: &[u8]) -> bool {
    let Some(given) = header.map(str::trim) else {
        return false;
    };
    let hex_sig = given.strip_prefix("sha256=").unwrap_or(given);
    match hex::decode(hex_sig) {
        Ok(tag) => hmac::verify(key, body, &tag).is_ok(),
        Err(_) => false,
    }
}

/// Why a webhook call publishes nothing: the status, code and message of
/// its answer.
pub type Refusal = (StatusCode, &'static str, String);

impl WebhookRule {
    /// Check the rule's signature, if it has one, against the raw body.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
        let Some((header, key)) = &self.hmac else {
            return Ok(());
        };
        let given = headers.get(header).and_then(|v| v.to_str().ok());
        if verify_signature(key, given, body) {
            return Ok(());
        }
        tracing::warn!(webhook = %self.name, "webhook signature did not verify");
        Err((
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            format!("the {header} signature does not match the body"),
        ))
    }

    /// Fill the rule's templates from one call into a message for the broker.
    pub fn render(
        &self,
        input: &Input<'_>,
        max_message: usize,
        rules: &ChannelRules,
    ) -> Result<Publish, Refusal> {
        self.templates
            .fill(input, max_message, rules)
            .map_err(|e| match e {
                Unfilled::TooLarge(_) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("webhook {}: {e}", self.name),
                ),
                Unfilled::Template { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unprocessable",
                    format!("webhook {}: {e}", self.name),
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = PathPattern::new("/hooks/notify/{user}");
        assert_eq!(p.params(), vec!["user".to_string()]);
        assert_eq!(
            p.matches("/hooks/notify/al%40ice").unwrap()["user"],
            "al@ice"
        );
        assert!(p.matches("/hooks/notify/").is_none());
        assert!(p.matches("/hooks/notify/a/b").is_none());
        assert!(
            PathPattern::new("/hooks/orders")
                .matches("/hooks/orders")
                .is_some()
        );
    }

    #[test]
    fn signatures() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let tag = hex::encode(hmac::sign(&key, b"body").as_ref());
        assert!(verify_signature(&key, Some(&tag), b"body"));
        assert!(verify_signature(
            &key,
            Some(&format!("sha256={tag}")),
            b"body"
        ));
        assert!(!verify_signature(&key, Some(&tag), b"body2"));
        assert!(!verify_signature(&key, Some("zz"), b"body"));
        assert!(!verify_signature(&key, None, b"body"));
    }
}
