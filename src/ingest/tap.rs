//! Response taps: publish when a proxied request succeeds, with no change to
//! the application at all (`taps:` in the YAML).
//!
//! A tap matches method, path (`{param}` segments allowed) and status class.
//! Bodies are captured only for taps whose templates read them, only up to
//! `realtime.max_message`, and while they stream through: the client's
//! response is never held back. Publishing happens after the response body
//! has been passed on completely, in a task of its own.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;

use super::MessageTemplates;
use super::template::{Body, Context, Input, Template};
use super::webhook::{PathPattern, RuleError};
use crate::config;
use crate::reply::{Body as ReplyBody, BoxError};
use crate::state::{AppState, Settings};

pub struct TapRule {
    method: Option<Method>,
    path: PathPattern,
    status: Option<String>,
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

    /// Taps that may fire for this request (status not known yet).
    /// Whether any tap watches `method` and `path` (the proxy forwards
    /// unwatched requests on its fast path).
    pub fn watches(&self, method: &Method, path: &str) -> bool {
        self.rules.iter().any(|r| {
            r.method.as_ref().is_none_or(|m| m == method) && r.path.matches(path).is_some()
        })
    }

    fn candidates(&self, method: &Method, path: &str) -> Vec<Arc<TapRule>> {
        self.rules
            .iter()
            .filter(|r| {
                r.method.as_ref().is_none_or(|m| m == method) && r.path.matches(path).is_some()
            })
            .cloned()
            .collect()
    }
}

/// What a tee captured of a body.
#[derive(Default)]
struct Captured {
    bytes: BytesMut,
    truncated: bool,
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

fn tee<F: FnOnce(Captured) + Send + Sync + Unpin + 'static>(
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

type Slot = Arc<Mutex<Option<Captured>>>;

/// Proxy `req` and fire the taps that match it. Without a candidate tap this
/// is the plain proxy path.
pub async fn proxy_with_taps(
    state: &AppState,
    settings: &Arc<Settings>,
    req: Request<ReplyBody>,
) -> Response<ReplyBody> {
    let taps = settings.taps.candidates(req.method(), req.uri().path());
    if taps.is_empty() {
        return settings.proxy.forward(req, &state.stats).await;
    }
    let cap = settings.config.realtime.max_message;
    let request_headers = req.headers().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let request_body: Slot = Arc::default();
    let req = if taps.iter().any(|t| t.reads_request) {
        let slot = request_body.clone();
        req.map(|b| {
            tee(b, cap, move |c| {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(c)
            })
        })
    } else {
        req
    };
    let resp = settings.proxy.forward(req, &state.stats).await;
    let status = resp.status();
    let fired: Vec<Arc<TapRule>> = taps
        .into_iter()
        .filter(|t| {
            t.status
                .as_deref()
                .map_or(status.is_success(), |p| status_matches(p, status))
        })
        .collect();
    if fired.is_empty() {
        return resp;
    }
    let job = TapJob {
        state: state.clone(),
        settings: settings.clone(),
        rules: fired,
        request_headers,
        path,
        query,
        request_body,
        status,
        response_headers: resp.headers().clone(),
    };
    if job.rules.iter().any(|t| t.reads_response) {
        resp.map(|b| tee(b, cap, move |c| job.spawn(Some(c))))
    } else {
        job.spawn(None);
        resp
    }
}

/// Everything needed to fire taps after the exchange, owned.
struct TapJob {
    state: AppState,
    settings: Arc<Settings>,
    rules: Vec<Arc<TapRule>>,
    request_headers: HeaderMap,
    path: String,
    query: HashMap<String, String>,
    request_body: Slot,
    status: StatusCode,
    response_headers: HeaderMap,
}

impl TapJob {
    fn spawn(self, response_body: Option<Captured>) {
        tokio::spawn(async move {
            let request = self
                .request_body
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let input = Input {
                body: request.as_ref().map(|c| Body::new(&c.bytes, c.truncated)),
                headers: Some(&self.request_headers),
                path: &self.path,
                query: self.query.clone(),
                response_status: Some(self.status.as_u16()),
                response_headers: Some(&self.response_headers),
                response_body: response_body
                    .as_ref()
                    .map(|c| Body::new(&c.bytes, c.truncated)),
                ..Default::default()
            };
            let publishes: Vec<_> = self
                .rules
                .iter()
                .map(|rule| rule.templates.fill(&input, &self.settings))
                .collect();
            for p in publishes {
                match p {
                    Ok(p) => match self.state.broker.publish(p).await {
                        Ok(_) => {
                            self.state.count_published(1);
                        }
                        Err(error) => {
                            tracing::warn!(%error, path = %self.path, "tap could not publish")
                        }
                    },
                    Err(error) => tracing::warn!(%error, path = %self.path, "tap skipped"),
                }
            }
        });
    }
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
