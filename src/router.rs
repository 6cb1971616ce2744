//! Which road a public request takes: a realtime endpoint under
//! `realtime.path`, or the reverse proxy to the application.

use http::{Request, Response};
use hyper::body::Incoming;

use http::StatusCode;

use crate::metrics::{ClassLabel, KindLabel};
use http_body_util::BodyExt;

use crate::reply::{Body, BoxError};
use crate::state::AppState;
use crate::transport;

pub async fn route(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let settings = state.settings();
    let prefix = settings.config.realtime.path.as_str();
    if let Some(rest) = req.uri().path().strip_prefix(prefix) {
        if rest.starts_with('/') {
            let rest = rest.to_string();
            return transport::handle(state, req, &rest).await;
        }
    }
    let started = std::time::Instant::now();
    let req = req.map(|b| b.map_err(BoxError::from).boxed());
    let resp = crate::ingest::tap::proxy_with_taps(&state, &settings, req).await;
    let m = &state.metrics;
    m.proxy_latency.observe(started.elapsed().as_secs_f64());
    let class = match resp.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    m.proxied.get_or_create(&ClassLabel { class }).inc();
    match resp.status() {
        StatusCode::BAD_GATEWAY => m
            .backend_errors
            .get_or_create(&KindLabel {
                kind: "unavailable",
            })
            .inc(),
        StatusCode::GATEWAY_TIMEOUT => m
            .backend_errors
            .get_or_create(&KindLabel { kind: "timeout" })
            .inc(),
        _ => 0,
    };
    resp
}
