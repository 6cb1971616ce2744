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
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::template::{Body, Context, Input, Template, TemplateError};
use super::{MessageTemplates, Unfilled};
use crate::broker::Publish;
use crate::config;
use crate::reply;
use crate::state::{AppState, Settings};

/// A path pattern like `/hooks/notify/{user}`: `{name}` matches one segment.
#[derive(Clone, Debug)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug)]
enum Segment {
    Lit(String),
    Param(String),
}

impl PathPattern {
    pub fn new(path: &str) -> PathPattern {
        let segments = path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Lit(s.to_string()),
                },
            )
            .collect();
        PathPattern { segments }
    }

    pub fn params(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(p) => Some(p.clone()),
                Segment::Lit(_) => None,
            })
            .collect()
    }

    pub fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = HashMap::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Lit(l) if l == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    let value = percent_decode(part);
                    params.insert(name.clone(), value);
                }
                _ => return None,
            }
        }
        Some(params)
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

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

/// Serve one webhook call matched to `rule`.
pub async fn handle(
    state: &AppState,
    settings: &Settings,
    rule: &WebhookRule,
    params: HashMap<String, String>,
    req: Request<Incoming>,
) -> Response<reply::Body> {
    let (parts, body) = req.into_parts();
    let limit = crate::admin::body_limit(settings.config.realtime.max_message);
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body over {limit} bytes"),
            );
        }
    };
    if let Some((header, key)) = &rule.hmac {
        let given = parts.headers.get(header).and_then(|v| v.to_str().ok());
        if !verify_signature(key, given, &bytes) {
            tracing::warn!(webhook = %rule.name, "webhook signature did not verify");
            return reply::error(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                format!("the {header} signature does not match the body"),
            );
        }
    }
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let input = Input {
        body: Some(Body::new(&bytes, false)),
        headers: Some(&parts.headers),
        path: parts.uri.path(),
        path_params: params,
        query,
        ..Default::default()
    };
    let publish = match render(rule, &input, settings) {
        Ok(p) => p,
        Err((status, code, msg)) => return reply::error(status, code, msg),
    };
    match state.broker.publish(publish).await {
        Ok(m) => {
            state.count_published(1);
            reply::json(
                StatusCode::OK,
                &serde_json::json!({"published": [{"channel": &*m.channel, "id": m.id()}], "ids": [m.id()]}),
            )
        }
        Err(e) => reply::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}

type Refusal = (StatusCode, &'static str, String);

fn render(rule: &WebhookRule, input: &Input<'_>, settings: &Settings) -> Result<Publish, Refusal> {
    rule.templates.fill(input, settings).map_err(|e| match e {
        Unfilled::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("webhook {}: {e}", rule.name),
        ),
        Unfilled::Template { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            format!("webhook {}: {e}", rule.name),
        ),
    })
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
