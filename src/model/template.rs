//! The small template language of webhook rules and response taps.
//!
//! A template is text with `{placeholders}`: `orders.{body.customer_id}`,
//! `{header.X-Event-Type}`, `{body}`. Placeholders name where the value comes
//! from — `body`, `header.NAME`, `path.NAME`, `query.NAME` for webhooks;
//! `request.body`, `request.header.NAME`, `request.path`, `response.body`,
//! `response.status`, `response.header.NAME` for taps; `body`, `header.NAME`
//! for the application's answer to a session check — and may walk into a
//! JSON body with dotted keys and array indexes (`body.items.0.sku`). `{{`
//! and `}}` are literal braces. Templates are parsed once, at config load, so
//! an unknown placeholder is a config error rather than a surprise at 3 a.m.

use std::collections::HashMap;

use http::HeaderMap;
use serde_json::Value;

/// Where a placeholder may point; webhooks and taps see different inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Webhook,
    Tap,
    /// The application's answer to a session check: `body…`, `header.NAME`.
    Answer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Body,
    Header(String),
    PathParam(String),
    Query(String),
    RequestPath,
    ResponseBody,
    ResponseStatus,
    ResponseHeader(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field {
        source: Source,
        keys: Vec<String>,
        text: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{` in template")]
    Unclosed,
    #[error("unmatched `}}` in template (write `}}}}` for a literal brace)")]
    Unmatched,
    #[error("unknown placeholder `{{{0}}}`; expected {1}")]
    Unknown(String, &'static str),
    #[error("`{{path.{0}}}` is not a `{{{0}}}` segment of the match path")]
    NoSuchPathParam(String),
}

/// Why a template could not be filled for one request (answered with 422).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("`{{{0}}}` is missing")]
    Missing(String),
    #[error("`{{{0}}}` needs a JSON body, and the body is not JSON")]
    NotJson(String),
    #[error("`{{{0}}}` is an object or array and cannot be part of text")]
    NotText(String),
    #[error("`{{{0}}}` was not captured (body over the size limit)")]
    Truncated(String),
}

const WEBHOOK_ROOTS: &str = "body, body.KEY…, header.NAME, path.NAME or query.NAME";
const ANSWER_ROOTS: &str = "body, body.KEY… or header.NAME";
const TAP_ROOTS: &str = "request.body…, request.header.NAME, request.path, request.query.NAME, response.body…, response.status or response.header.NAME";

impl Template {
    /// Parse `text`; `path_params` are the `{names}` of the rule's match path.
    pub fn parse(
        text: &str,
        ctx: Context,
        path_params: &[String],
    ) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(TemplateError::Unmatched),
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => inner.push(c),
                            None => return Err(TemplateError::Unclosed),
                        }
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(field(inner.trim(), ctx, path_params)?);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Whether rendering reads the request body (webhook body / tap request body).
    pub fn uses_body(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Field {
                    source: Source::Body,
                    ..
                }
            )
        })
    }

    pub fn uses_response_body(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Field {
                    source: Source::ResponseBody,
                    ..
                }
            )
        })
    }

    /// Render as text (channel and event names).
    pub fn render_text(&self, input: &Input<'_>) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Field { text, .. } => match lookup(part, input)? {
                    Value::String(s) => out.push_str(&s),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                    Value::Null => return Err(RenderError::Missing(text.clone())),
                    Value::Array(_) | Value::Object(_) => {
                        return Err(RenderError::NotText(text.clone()));
                    }
                },
            }
        }
        Ok(out)
    }

    /// Render as JSON (message data): a template that is exactly one
    /// placeholder yields that value as is (`{body}` is the whole JSON body);
    /// anything else is text.
    pub fn render_json(&self, input: &Input<'_>) -> Result<Value, RenderError> {
        match self.parts.as_slice() {
            [field @ Part::Field { .. }] => lookup(field, input),
            _ => self.render_text(input).map(Value::String),
        }
    }
}

fn field(inner: &str, ctx: Context, path_params: &[String]) -> Result<Part, TemplateError> {
    let unknown = || {
        TemplateError::Unknown(
            inner.to_string(),
            match ctx {
                Context::Webhook => WEBHOOK_ROOTS,
                Context::Tap => TAP_ROOTS,
                Context::Answer => ANSWER_ROOTS,
            },
        )
    };
    let mut segs = inner.split('.');
    let mut rest =
        |n: usize| -> Vec<String> { segs.by_ref().skip(n).map(str::to_string).collect() };
    let (source, keys) = match ctx {
        Context::Webhook => {
            let first = inner.split('.').next().unwrap_or("");
            let name = inner.split_once('.').map(|(_, n)| n.to_string());
            match (first, name) {
                ("body", _) => (Source::Body, rest(1)),
                ("header", Some(n)) => (Source::Header(n), vec![]),
                ("query", Some(n)) => (Source::Query(n), vec![]),
                ("path", Some(n)) => {
                    if !path_params.contains(&n) {
                        return Err(TemplateError::NoSuchPathParam(n));
                    }
                    (Source::PathParam(n), vec![])
                }
                _ => return Err(unknown()),
            }
        }
        Context::Answer => {
            let first = inner.split('.').next().unwrap_or("");
            match (first, inner.split_once('.').map(|(_, n)| n.to_string())) {
                ("body", _) => (Source::Body, rest(1)),
                ("header", Some(n)) => (Source::Header(n), vec![]),
                _ => return Err(unknown()),
            }
        }
        Context::Tap => {
            let v: Vec<&str> = inner.splitn(3, '.').collect();
            match v.as_slice() {
                ["request", "body", ..] => (Source::Body, rest(2)),
                ["request", "header", n] => (Source::Header(n.to_string()), vec![]),
                ["request", "query", n] => (Source::Query(n.to_string()), vec![]),
                ["request", "path"] => (Source::RequestPath, vec![]),
                ["response", "body", ..] => (Source::ResponseBody, rest(2)),
                ["response", "status"] => (Source::ResponseStatus, vec![]),
                ["response", "header", n] => (Source::ResponseHeader(n.to_string()), vec![]),
                _ => return Err(unknown()),
            }
        }
    };
    if keys.iter().any(|k| k.is_empty()) {
        return Err(unknown());
    }
    Ok(Part::Field {
        source,
        keys,
        text: inner.to_string(),
    })
}

/// One request (and for taps, its response) to fill templates from.
#[derive(Default)]
pub struct Input<'a> {
    pub body: Option<Body<'a>>,
    pub headers: Option<&'a HeaderMap>,
    pub path: &'a str,
    pub path_params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub response_status: Option<u16>,
    pub response_headers: Option<&'a HeaderMap>,
    pub response_body: Option<Body<'a>>,
}

/// A captured body: its bytes, parsed as JSON once if it is JSON.
pub struct Body<'a> {
    pub bytes: &'a [u8],
    pub json: Option<Value>,
    /// The body was larger than what was captured.
    pub truncated: bool,
}

impl<'a> Body<'a> {
    pub fn new(bytes: &'a [u8], truncated: bool) -> Body<'a> {
        let json = if truncated {
            None
        } else {
            serde_json::from_slice(bytes).ok()
        };
        Body {
            bytes,
            json,
            truncated,
        }
    }
}

fn lookup(part: &Part, input: &Input<'_>) -> Result<Value, RenderError> {
    let Part::Field { source, keys, text } = part else {
        return Ok(Value::Null);
    };
    let missing = || RenderError::Missing(text.clone());
    let header = |h: Option<&HeaderMap>, n: &str| {
        h.and_then(|h| h.get(n))
            .and_then(|v| v.to_str().ok())
            .map(|v| Value::String(v.to_string()))
            .ok_or_else(missing)
    };
    match source {
        Source::Header(n) => header(input.headers, n),
        Source::ResponseHeader(n) => header(input.response_headers, n),
        Source::PathParam(n) => input
            .path_params
            .get(n)
            .map(|v| Value::String(v.clone()))
            .ok_or_else(missing),
        Source::Query(n) => input
            .query
            .get(n)
            .map(|v| Value::String(v.clone()))
            .ok_or_else(missing),
        Source::RequestPath => Ok(Value::String(input.path.to_string())),
        Source::ResponseStatus => input.response_status.map(Value::from).ok_or_else(missing),
        Source::Body | Source::ResponseBody => {
            let body = if *source == Source::Body {
                &input.body
            } else {
                &input.response_body
            };
            let body = body.as_ref().ok_or_else(missing)?;
            if body.truncated {
                return Err(RenderError::Truncated(text.clone()));
            }
            match (&body.json, keys.is_empty()) {
                (Some(v), _) => walk(v, keys).cloned().ok_or_else(missing),
                (None, true) => Ok(Value::String(
                    String::from_utf8_lossy(body.bytes).into_owned(),
                )),
                (None, false) => Err(RenderError::NotJson(text.clone())),
            }
        }
    }
}

fn walk<'v>(mut v: &'v Value, keys: &[String]) -> Option<&'v Value> {
    for k in keys {
        v = match v {
            Value::Object(m) => m.get(k)?,
            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// A URI's query as a map (the last value of a repeated name wins), as the
/// templates' `query.NAME` and the realtime endpoints read it.
pub fn query_of(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(t: &str) -> Template {
        Template::parse(t, Context::Webhook, &["user".to_string()]).unwrap()
    }

    #[test]
    fn renders_text_and_json() {
        let body = br#"{"customer_id": 42, "items": [{"sku": "a-1"}], "message": {"x": true}}"#;
        let mut headers = HeaderMap::new();
        headers.insert("x-event-type", "order.created".parse().unwrap());
        let input = Input {
            body: Some(Body::new(body, false)),
            headers: Some(&headers),
            path_params: [("user".to_string(), "alice".to_string())].into(),
            query: [("q".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            hook("orders.{body.customer_id}")
                .render_text(&input)
                .unwrap(),
            "orders.42"
        );
        assert_eq!(
            hook("{header.X-Event-Type}").render_text(&input).unwrap(),
            "order.created"
        );
        assert_eq!(
            hook("{body.items.0.sku}").render_json(&input).unwrap(),
            json!("a-1")
        );
        assert_eq!(
            hook("{body.message}").render_json(&input).unwrap(),
            json!({"x": true})
        );
        assert_eq!(
            hook("{body}").render_json(&input).unwrap()["customer_id"],
            42
        );
        assert_eq!(
            hook("user.{path.user}").render_text(&input).unwrap(),
            "user.alice"
        );
        assert_eq!(
            hook("{query.q}-{{lit}}").render_text(&input).unwrap(),
            "1-{lit}"
        );
        assert_eq!(
            hook("{body.nope}").render_text(&input),
            Err(RenderError::Missing("body.nope".into()))
        );
        assert_eq!(
            hook("{body.message}").render_text(&input),
            Err(RenderError::NotText("body.message".into()))
        );
        assert_eq!(
            hook("{body.items.9}").render_json(&input),
            Err(RenderError::Missing("body.items.9".into()))
        );
    }

    #[test]
    fn non_json_bodies() {
        let input = Input {
            body: Some(Body::new(b"plain text", false)),
            ..Default::default()
        };
        assert_eq!(
            hook("{body}").render_json(&input).unwrap(),
            json!("plain text")
        );
        assert_eq!(
            hook("{body.a}").render_json(&input),
            Err(RenderError::NotJson("body.a".into()))
        );
        let input = Input {
            body: Some(Body::new(b"{}", true)),
            ..Default::default()
        };
        assert!(matches!(
            hook("{body}").render_json(&input),
            Err(RenderError::Truncated(_))
        ));
    }

    #[test]
    fn parse_errors() {
        let p = |t: &str| Template::parse(t, Context::Webhook, &[]);
        assert!(matches!(p("{bogus}"), Err(TemplateError::Unknown(..))));
        assert!(matches!(p("{header}"), Err(TemplateError::Unknown(..))));
        assert!(matches!(p("{body..x}"), Err(TemplateError::Unknown(..))));
        assert_eq!(p("{body"), Err(TemplateError::Unclosed));
        assert_eq!(p("a}"), Err(TemplateError::Unmatched));
        assert_eq!(
            p("{path.user}"),
            Err(TemplateError::NoSuchPathParam("user".into()))
        );
        let t = |s: &str| Template::parse(s, Context::Tap, &[]);
        assert!(t("{response.body.id}").unwrap().uses_response_body());
        assert!(t("{request.body}").unwrap().uses_body());
        assert!(t("{response.status}").is_ok());
        assert!(matches!(t("{body}"), Err(TemplateError::Unknown(..))));
    }
}
