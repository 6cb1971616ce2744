//! Which road a public request takes: a realtime endpoint under
//! `realtime.path`, or the reverse proxy to the application.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::reply::Body;
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
    settings.proxy.forward(req).await
}
