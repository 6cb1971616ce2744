//! A proxied exchange that response taps watch: the request goes to the
//! upstream its route names (`upstream/routes.rs`) while the bodies the
//! matching taps read are captured on the way through (`ingest/tap.rs`);
//! once the answer has been passed on, the taps that fired publish in a task
//! of their own. Taps see the request as the client sent it, before a route
//! strips its path, and as HTTP/1.1 would have carried it: a WebSocket
//! opened by an extended CONNECT (RFC 8441) is the `GET` whose `101` an
//! HTTP/1.1 upgrade gets, so one tap watches both.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use http::{HeaderMap, Request, Response, StatusCode};
use tracing::Instrument;

use crate::ingest::tap::{Captured, TapRule, tee};
use crate::ingest::template::{Body, Input};
use crate::proxy::spool::Budget;
use crate::proxy::{Proxy, Tunnels};
use crate::reply::{self, Body as ReplyBody};
use crate::state::{AppState, Settings};
use crate::upstream::routes::Rewrite;

type Slot = Arc<Mutex<Option<Captured>>>;

/// Proxy `req` and fire the taps that match it. Without a candidate tap this
/// is the plain proxy path.
pub async fn proxy_with_taps(
    state: &AppState,
    settings: &Arc<Settings>,
    req: Request<ReplyBody>,
) -> Response<ReplyBody> {
    let Ok(routed) = settings.upstreams.route(host_of(&req), req.uri().path()) else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a path with dot segments or encoded slashes or dots cannot be routed",
        );
    };
    let asked = crate::extended_connect::ask(&req);
    let method = crate::extended_connect::http1_method(&req);
    let taps = settings
        .taps
        .candidates(&method, req.uri().path(), routed.name);
    if taps.is_empty() {
        let req = match rewritten(req, routed.rewrite) {
            Ok(req) => req,
            Err(resp) => return resp,
        };
        return Proxy::new(routed.upstream)
            .buffered(routed.buffering, budget(state, settings))
            .forward(req, tunnels(state))
            .instrument(upstream_span(routed.name))
            .await;
    }
    let cap = settings.config.realtime.max_message;
    let request_headers = req.headers().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = crate::model::template::query_of(req.uri());
    let request_body: Slot = Arc::default();
    let req = if taps.iter().any(|t| t.reads_request()) {
        let slot = request_body.clone();
        req.map(|b| tee(b, cap, move |c| *slot.lock() = Some(c)))
    } else {
        req
    };
    let req = match rewritten(req, routed.rewrite) {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let resp = Proxy::new(routed.upstream)
        .buffered(routed.buffering, budget(state, settings))
        .forward(req, tunnels(state))
        .instrument(upstream_span(routed.name))
        .await;
    let status = crate::extended_connect::http1_status(asked, resp.status());
    let fired: Vec<Arc<TapRule>> = taps.into_iter().filter(|t| t.fires(status)).collect();
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
    if job.rules.iter().any(|t| t.reads_response()) {
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
    /// On the drained stage: a tap fired by a request that was answered
    /// still publishes while the gateway drains.
    fn spawn(mut self, response_body: Option<Captured>) {
        let lifecycle = self.state.lifecycle.clone();
        lifecycle.spawn(async move {
            let request = self.request_body.lock().take();
            let input = Input {
                body: request.as_ref().map(|c| Body::new(&c.bytes, c.truncated)),
                headers: Some(&self.request_headers),
                path: &self.path,
                query: std::mem::take(&mut self.query),
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
                .map(|rule| {
                    rule.fill(
                        &input,
                        self.settings.config.realtime.max_message,
                        &self.settings.rules,
                    )
                })
                .collect();
            for p in publishes {
                match p {
                    Ok(p) => {
                        if let Err(error) = self.state.publish(p).await {
                            tracing::warn!(%error, path = %self.path, "tap could not publish")
                        }
                    }
                    Err(error) => tracing::warn!(%error, path = %self.path, "tap skipped"),
                }
            }
        });
    }
}

/// What the exchange's buffers share with every other.
fn budget(state: &AppState, settings: &Settings) -> Budget {
    Budget::new(&state.stats, &settings.config.limits.buffers)
}

/// Where a tunnel opened by a proxied upgrade counts and ends.
fn tunnels(state: &AppState) -> Tunnels<'_> {
    Tunnels {
        stats: &state.stats,
        tasks: state.lifecycle.tasks(),
        stop: state.lifecycle.draining(),
        metrics: &state.metrics,
        limits: &state.limits,
    }
}

/// Around the proxy's own span: which upstream the request was routed to.
fn upstream_span(name: &str) -> tracing::Span {
    tracing::debug_span!("routed", upstream = name)
}

/// The host a request is routed by: its authority (HTTP/2, or an absolute
/// target) without any `user@`, else its `Host` header; the proxy forwards
/// the same one (`proxy/fields.rs`).
fn host_of<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(authority) => authority.as_str().rsplit('@').next(),
        None => req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// `req` with its target rewritten as its route says (`strip_prefix`); the
/// proxy puts the upstream's base path in front as for any request.
fn rewritten(
    req: Request<ReplyBody>,
    rewrite: Rewrite,
) -> Result<Request<ReplyBody>, Response<ReplyBody>> {
    if rewrite.strip() == 0 {
        return Ok(req);
    }
    let bad = || {
        reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "unusable request target",
        )
    };
    let (mut parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let pq =
        http::uri::PathAndQuery::try_from(rewrite.apply(target).as_ref()).map_err(|_| bad())?;
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = Some(pq);
    parts.uri = http::Uri::from_parts(uri).map_err(|_| bad())?;
    Ok(Request::from_parts(parts, body))
}
