//! The proxy's own answers, when the application gives none to pass on:
//! 502 (no server reached, or an answer that cannot be passed on), 504 (no
//! answer head within `backend.timeout`) and 503 with `Retry-After` (no
//! slot on its server within its queue: `max_connections`,
//! `upstream/limit.rs`), in the documented refusal shape.
//!
//! One type for both engines: hyper's path answers [`Refusal::response`],
//! the relay writes [`Refusal::answer`] itself (`relay/refusal.rs`),
//! so status, code, message and fields are the same by construction.

use std::time::Duration;

use http::{Response, StatusCode};
use tracing::warn;

use crate::reply::{self, Body};
use crate::upstream::attempt::Unreached;
use crate::upstream::limit::Refused;

/// Why the gateway answers in the application's stead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 502: no usable answer (connect failed, garbage, cut off).
    Unreachable,
    /// 504: no answer head within `backend.timeout`.
    TimedOut,
    /// 503: no slot on the server (`max_connections`).
    Busy(Refused),
}

impl Refusal {
    /// The refusal for a request no server answered within `timeout`
    /// (`backend.timeout`), logged here for both engines.
    pub(crate) fn of<E: std::fmt::Display>(unreached: &Unreached<E>, timeout: Duration) -> Refusal {
        match unreached {
            Unreached::Exhausted | Unreached::Failed(_) => {
                warn!(error = %unreached, "backend request failed");
                Refusal::Unreachable
            }
            Unreached::TimedOut => {
                warn!(?timeout, "backend did not answer in time");
                Refusal::TimedOut
            }
            // Counted per server (`upstream_queue_refused_total`); a flood
            // of them is no news for the log.
            Unreached::Busy(refused) => Refusal::Busy(*refused),
        }
    }

    /// The whole answer, its body as bytes: what both engines send.
    pub(crate) fn answer(self) -> Response<Vec<u8>> {
        match self {
            Refusal::Unreachable => reply::error_answer(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the application is unreachable",
            ),
            Refusal::TimedOut => reply::error_answer(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "the application did not answer in time",
            ),
            Refusal::Busy(Refused::Full) => reply::unavailable_answer(
                "upstream_busy",
                "the application is at max_connections and its queue is full; retry shortly",
            ),
            Refusal::Busy(Refused::TimedOut) => reply::unavailable_answer(
                "upstream_busy",
                "the application had no free connection within queue.timeout; retry shortly",
            ),
        }
    }

    /// The answer as hyper's path sends it.
    pub(crate) fn response(self) -> Response<Body> {
        self.answer().map(reply::full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_of_reaching_no_server_has_its_refusal() {
        let timeout = Duration::from_secs(1);
        let cases: [(Unreached<&str>, u16, &str); 5] = [
            (Unreached::Exhausted, 502, "bad_gateway"),
            (Unreached::Failed("reset"), 502, "bad_gateway"),
            (Unreached::TimedOut, 504, "gateway_timeout"),
            (Unreached::Busy(Refused::Full), 503, "upstream_busy"),
            (Unreached::Busy(Refused::TimedOut), 503, "upstream_busy"),
        ];
        for (unreached, status, code) in cases {
            let answer = Refusal::of(&unreached, timeout).answer();
            assert_eq!(answer.status().as_u16(), status, "{unreached:?}");
            let body: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
            assert_eq!(body["error"], code, "{unreached:?}");
            let retry = answer.headers().get(http::header::RETRY_AFTER);
            assert_eq!(retry.is_some(), status == 503, "{unreached:?}");
        }
    }
}
