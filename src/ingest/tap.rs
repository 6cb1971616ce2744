//! Response taps: publish when a proxied request succeeds, with no change to
//! the application at all (`taps:` in the YAML).
//!
//! A tap matches method, path (`{param}` segments allowed; the path the
//! client asked for, before a route strips its prefix), the upstream the
//! request was routed to (`upstream:`, any when absent) and status class.
//! Bodies are captured only for taps whose templates read them, only up to
//! `realtime.max_message`, and while they stream through: the client's
//! response is never held back. Publishing happens after the response body
//! has been passed on completely, in a task of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;

use super::template::{Context, Input, Template};
use super::webhook::RuleError;
use super::{MessageTemplates, Unfilled};
use crate::config;
use crate::model::{PathPattern, Publish};
use crate::reply::{Body as ReplyBody, BoxError};
use crate::rules::ChannelRules;

pub struct TapRule {
    method: Option<Method>,
    path: PathPattern,
    status: Option<String>,
    /// Only requests routed to this upstream.
    upstream: Option<String>,
    templates: MessageTemplates,
    reads_request: bool,
    reads_response: bool,
}

#[derive(Default)]
pub struct Taps {
    rules: Vec<Arc<TapRule>>,
}

/// Whether `status` matches a pattern like `2xx`, `20x` or `201`.
pub fn status_matches(pattern: &str, status: StatusCode) -> bool {
    let code = status.as_u16().to_string();
    pattern.len() == 3
        && pattern
            .bytes()
            .zip(code.bytes())
            .all(|(p, c)| p.eq_ignore_ascii_case(&b'x') || p == c)
}

impl Taps {
    pub fn new(cfg: &[config::Tap]) -> Result<Taps, RuleError> {
        let mut rules = Vec::with_capacity(cfg.len());
        for (index, t) in cfg.iter().enumerate() {
            let parse = |text: &str, key| {
                Template::parse(text, Context::Tap, &[]).map_err(|error| RuleError {
                    section: "taps",
                    index,
                    key,
                    error,
                })
            };
            let channel = parse(&t.channel, "channel")?;
            let event = t.event.as_deref().map(|e| parse(e, "event")).transpose()?;
            let data = parse(t.data.as_deref().unwrap_or("{response.body}"), "data")?;
            let all = [Some(&channel), event.as_ref(), Some(&data)];
            rules.push(Arc::new(TapRule {
                method: t
                    .matcher
                    .method
                    .as_deref()
                    .and_then(|m| Method::from_bytes(m.as_bytes()).ok()),
                path: PathPattern::new(&t.matcher.path),
                status: t.matcher.status.clone(),
                upstream: t.matcher.upstream.clone(),
                reads_request: all.iter().flatten().any(|t| t.uses_body()),
                reads_response: all.iter().flatten().any(|t| t.uses_response_body()),
                templates: MessageTemplates {
                    channel,
                    event,
                    data,
                },
            }));
        }
        Ok(Taps { rules })
    }

    /// Whether any tap may watch `method` and `path`, whatever upstream
    /// the request is routed to (the proxy forwards unwatched requests on
    /// its fast path, and leaves the rest, routes and all, to `candidates`).
    pub fn watches(&self, method: &Method, path: &str) -> bool {
        self.rules.iter().any(|r| r.watches(method, path))
    }

    /// Taps that may fire for this request, routed to `upstream` (status
    /// not known yet).
    pub fn candidates(&self, method: &Method, path: &str, upstream: &str) -> Vec<Arc<TapRule>> {
        self.rules
            .iter()
            .filter(|r| {
                r.watches(method, path) && r.upstream.as_deref().is_none_or(|u| u == upstream)
            })
            .cloned()
            .collect()
    }
}

impl TapRule {
    fn watches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.path.matches(path).is_some()
    }

    /// Whether the tap fires for an answer with `status`: its `status`
    /// pattern, or any 2xx when it has none.
    pub fn fires(&self, status: StatusCode) -> bool {
        self.status
            .as_deref()
            .map_or(status.is_success(), |p| status_matches(p, status))
    }

    /// Whether its templates read the request body (so it must be captured).
    pub fn reads_request(&self) -> bool {
        self.reads_request
    }

    /// Whether its templates read the response body.
    pub fn reads_response(&self) -> bool {
        self.reads_response
    }

    /// Fill the tap's templates from one exchange.
    pub fn fill(
        &self,
        input: &Input<'_>,
        max_message: usize,
        rules: &ChannelRules,
    ) -> Result<Publish, Unfilled> {
        self.templates.fill(input, max_message, rules)
    }
}

/// What a tee captured of a body: its first bytes, and whether there was more.
#[derive(Default)]
pub struct Captured {
    pub bytes: BytesMut,
    pub truncated: bool,
}

/// Passes a body through untouched while keeping a copy of its first `cap`
/// bytes; calls `done` once, when the body has ended.
struct TeeBody<F: FnOnce(Captured) + Send + Sync + 'static> {
    inner: ReplyBody,
    cap: usize,
    captured: Captured,
    done: Option<F>,
}

impl<F: FnOnce(Captured) + Send + Sync + Unpin + 'static> HttpBody for TeeBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let room = this.cap.saturating_sub(this.captured.bytes.len());
                    if data.len() > room {
                        this.captured.truncated = true;
                    }
                    if !this.captured.truncated {
                        this.captured.bytes.extend_from_slice(data);
                    }
                }
                // hyper stops polling a body that says it has ended, so the
                // last data frame may be the last call we get.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(Captured) + Send + Sync + 'static> TeeBody<F> {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done(std::mem::take(&mut self.captured));
        }
    }
}

pub fn tee<F: FnOnce(Captured) + Send + Sync + Unpin + 'static>(
    inner: ReplyBody,
    cap: usize,
    done: F,
) -> ReplyBody {
    if inner.is_end_stream() {
        // An empty body is never polled: there is nothing to wait for.
        done(Captured::default());
        return inner;
    }
    TeeBody {
        inner,
        cap,
        captured: Captured::default(),
        done: Some(done),
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns() {
        assert!(status_matches("2xx", StatusCode::CREATED));
        assert!(status_matches("20x", StatusCode::OK));
        assert!(!status_matches("20x", StatusCode::IM_USED));
        assert!(status_matches("201", StatusCode::CREATED));
        assert!(!status_matches("201", StatusCode::OK));
        assert!(!status_matches("5xx", StatusCode::OK));
    }
}
