//! CORS for the hub (`mercure.cors_origins`): a listed page may subscribe
//! (EventSource `withCredentials`, so with its cookie) and publish. The
//! origin is reflected only when listed, never from any request, since the
//! answers are credentialed.

use http::{HeaderMap, HeaderValue, Response, header};

use crate::config::Mercure;
use crate::reply::Body;

/// What a request's `Origin` earns it.
pub(super) struct Cors(Option<HeaderValue>);

impl Cors {
    pub(super) fn of(config: &Mercure, headers: &HeaderMap) -> Cors {
        let origin = headers.get(header::ORIGIN).filter(|o| {
            o.to_str()
                .is_ok_and(|o| config.cors_origins.iter().any(|c| c == o))
        });
        Cors(origin.cloned())
    }

    pub(super) fn apply(&self, h: &mut HeaderMap) {
        let Some(origin) = &self.0 else {
            return;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("last-event-id, mercure-last-event-id, www-authenticate"),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// The answer to a preflight; the origin headers are added by the caller.
pub(super) fn preflight() -> Response<Body> {
    crate::transport::cors::preflight_allowing(
        "authorization, content-type, last-event-id, cache-control",
    )
}
