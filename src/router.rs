//! Which road a public request takes: a realtime endpoint under
//! `realtime.path`, or the reverse proxy to the application.

mod tapped;

use http::{Request, Response};
use hyper::body::Incoming;

use http_body_util::BodyExt;

use crate::reply::{Body, BoxError};
use crate::state::AppState;
use crate::transport;

pub async fn route(state: AppState, mut req: Request<Incoming>) -> Response<Body> {
    let settings = state.settings();
    match crate::extended_connect::ask(&req) {
        Some(crate::extended_connect::Ask::Other) => {
            return crate::extended_connect::unsupported();
        }
        // A WebSocket on an HTTP/2 stream counts as a connection of its
        // own, as one upgraded from HTTP/1.1 does, while its h2 connection
        // goes on counting beside it: without this one TLS connection could
        // hold as many sockets and backend tunnels as it has streams, for
        // one connection's worth of the cap. Reserved here, in one step
        // with the check, and carried on the request for the socket or
        // tunnel to keep (it is given back if the stream never opens).
        Some(crate::extended_connect::Ask::WebSocket) => match state.reserve_connection() {
            Some(seat) => {
                req.extensions_mut().insert(seat);
            }
            None => {
                state.metrics.limited("max_connections");
                // A Pusher client reads 4100 where others read 503.
                if let Some(resp) = transport::pusher::over_capacity::answer(&state, &mut req) {
                    return resp;
                }
                return crate::reply::unavailable(
                    "at_capacity",
                    "the gateway is at max_connections; retry shortly",
                );
            }
        },
        None => {}
    }
    if let Some(key) = transport::pusher::endpoint(&settings, &req) {
        return transport::pusher::upgrade(state.clone(), settings, req, key).await;
    }
    if let Some(x) = transport::pusher::xhr::endpoint(&settings, &req) {
        return transport::pusher::xhr::handle(state.clone(), settings, req, x).await;
    }
    if transport::mercure::is_hub(&settings, req.uri().path()) {
        return transport::mercure::handle(state, req).await;
    }
    let prefix = settings.config.realtime.path.as_str();
    if let Some(rest) = req.uri().path().strip_prefix(prefix) {
        if rest.starts_with('/') {
            let rest = rest.to_string();
            return transport::handle(state, req, &rest).await;
        }
    }
    let started = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let req = req.map(|b| b.map_err(BoxError::from).boxed());
    let resp = tapped::proxy_with_taps(&state, &settings, req).await;
    let mut resp = resp;
    transport::mercure::advertise(&settings, &path, &mut resp);
    state.metrics.proxied(resp.status(), started.elapsed());
    resp
}
