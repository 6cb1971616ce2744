//! Where a subscriber's refusal is decided: the resume cursor, how many
//! channels a connection may follow, the channel's rule, the channel's room,
//! the rate limits, a token that fails and the application's answer to its
//! checks. Each check returns a typed [`Refusal`] (status,
//! code, message); the transports only render it — HTTP as the JSON error
//! answer ([`Refusal::response`]), WebSocket as its error op
//! ([`Refusal::op`]) — so a new transport cannot word or number a refusal
//! of its own.
//!
//! Two wirings of the same refusal are worded apart on purpose, as clients
//! have always seen them: a refused connection (HTTP) is told how to come
//! back, a refused op (WebSocket) is not; [`Wire`] says which is asking.

use std::time::Duration;

use http::{Response, StatusCode};

use crate::auth::{AuthError, Identity};
use crate::config::Subscribe;
use crate::hub::cursor::CursorError;
use crate::hub::{Cursor, Hub};
use crate::limits::Limited;
use crate::reply::{self, Body};
use crate::rules::{ChannelRules, Verdict};
use crate::session_auth::CheckError;

use super::ops;

/// Why a client is refused: status, code and message, for an HTTP answer
/// or a WebSocket error op alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// When a retry may succeed: HTTP answers 429 with `Retry-After`.
    pub(crate) retry_after: Option<Duration>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A refusal a retry after `after` may get past: 429 `rate_limited`.
    pub(crate) fn rate_limited(after: Duration, message: impl Into<String>) -> Self {
        Refusal {
            retry_after: Some(after),
            ..Refusal::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// The refusal as an HTTP answer: the JSON error body, with
    /// `Retry-After` when a retry may succeed.
    pub(crate) fn response(&self) -> Response<Body> {
        match self.retry_after {
            Some(after) => reply::rate_limited(after, &self.message),
            None => reply::error(self.status, self.code, &self.message),
        }
    }

    /// The refusal as a WebSocket error op answering the op `reference`.
    pub(crate) fn op(&self, reference: Option<&str>) -> String {
        ops::error(reference, self.code, &self.message)
    }
}

impl From<Refusal> for Response<Body> {
    fn from(r: Refusal) -> Self {
        r.response()
    }
}

/// Which transport a refusal is worded for (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// A connection refused before its answer starts (SSE, long-poll,
    /// the WebSocket upgrade).
    Http,
    /// One op refused on a live WebSocket.
    WebSocket,
}

/// A rate limit was reached: 429 naming the limit.
pub(crate) fn rate_limited(l: Limited) -> Refusal {
    Refusal::rate_limited(
        l.retry_after,
        format!("rate limit exceeded ({})", l.kind.label()),
    )
}

/// A subscribe over `per_client.subscribes` (or `per_ip.subscribes`). An op
/// is told when to retry in its message; a connection in `Retry-After`.
pub(crate) fn subscribes_limited(l: Limited, wire: Wire) -> Refusal {
    match wire {
        Wire::Http => rate_limited(l),
        Wire::WebSocket => Refusal::rate_limited(
            l.retry_after,
            format!(
                "too many subscribes; retry in {}ms",
                l.retry_after.as_millis()
            ),
        ),
    }
}

/// Decode a resume cursor (empty is none), naming at most `max` channels.
pub(crate) fn admit_cursor(
    text: Option<&str>,
    max: usize,
    wire: Wire,
) -> Result<Option<Cursor>, Refusal> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    Cursor::decode_within(text, max)
        .map(Some)
        .map_err(|e| match e {
            CursorError::TooLarge => Refusal::new(
                StatusCode::BAD_REQUEST,
                "too_many_channels",
                format!("the cursor names more than {max} channels"),
            ),
            CursorError::Malformed => Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                match wire {
                    Wire::Http => "the cursor is malformed; reconnect without it",
                    Wire::WebSocket => "the cursor is malformed",
                },
            ),
        })
}

/// A streaming request must name what it follows.
pub(crate) fn admit_any_channel(count: usize) -> Result<(), Refusal> {
    if count == 0 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "missing_channels",
            "name at least one channel: ?channels=a,b",
        ));
    }
    Ok(())
}

/// One connection follows at most `max` channels
/// (`limits.max_channels_per_connection`): `count` is how many it would
/// follow, or wait on the application for, once admitted.
pub(crate) fn admit_channel_count(count: usize, max: usize) -> Result<(), Refusal> {
    if count > max {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "too_many_channels",
            format!("at most {max} channels per connection"),
        ));
    }
    Ok(())
}

/// The channel's rule for `who`: its verdict (allowed, or ask the
/// application), or the rule's refusal. A Pusher app's private-,
/// private-encrypted- or presence- channel is opened by the app's signature
/// over a Pusher socket; through pushgate's own endpoints only a rule that
/// asks who the client is (`owner`, `token`, a check) opens it, never one
/// that lets anyone in, so a `*: anyone` rule written for Pusher's public
/// channels does not hand out a user's private events.
pub(crate) fn admit_channel<'r>(
    rules: &'r ChannelRules,
    pusher: &crate::pusher::Apps,
    channel: &str,
    who: Option<&Identity>,
) -> Result<Verdict<'r>, Refusal> {
    let verdict = rules
        .check_subscribe(channel, who)
        .map_err(|r| Refusal::new(r.status(), r.code(), r.to_string()))?;
    if verdict.rule().subscribe == Subscribe::Anyone && pusher.needs_signature(channel) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{channel}` is a Pusher app's private or presence channel: it opens with the app's signature on a Pusher socket, or by a rule that is not `subscribe: anyone`"
            ),
        ));
    }
    Ok(verdict)
}

/// `channel` takes one more subscriber on this instance while under
/// `limits.max_subscribers_per_channel` (`max`; none: no bound, and the
/// hub, whose count takes a lock, is not asked).
pub(crate) fn admit_subscriber(
    hub: &Hub,
    max: Option<usize>,
    channel: &str,
    wire: Wire,
) -> Result<(), Refusal> {
    let subscribers = max.map_or(0, |_| hub.subscriber_count(channel));
    room_for(channel, subscribers, max, wire)
}

/// A channel with `subscribers` has room for one more under `max`.
fn room_for(
    channel: &str,
    subscribers: usize,
    max: Option<usize>,
    wire: Wire,
) -> Result<(), Refusal> {
    if max.is_some_and(|max| subscribers >= max) {
        let message = match wire {
            Wire::Http => {
                format!("channel `{channel}` has reached limits.max_subscribers_per_channel")
            }
            Wire::WebSocket => {
                "the channel has reached limits.max_subscribers_per_channel".to_string()
            }
        };
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "channel_full",
            message,
        ));
    }
    Ok(())
}

/// What a subscription needs could not be had now (the broker, a check
/// that failed): 503 `unavailable`, worth a retry.
pub(crate) fn unavailable(why: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        why.to_string(),
    )
}

/// A token of ours that does not verify (expired, bad signature, …): 401
/// with the token's own code.
pub(crate) fn bad_token(e: &AuthError) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
}

/// The application's resource check did not allow `channel`: 401 when it
/// wants a login (`wants_login`), 403 when it refuses the one it has.
pub(crate) fn app_denied(channel: &str, wants_login: bool) -> Refusal {
    if wants_login {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("channel `{channel}` needs a login"),
        )
    } else {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the application does not allow channel `{channel}`"),
        )
    }
}

/// The application gave no answer to act on: 503 `auth_unavailable`; or it
/// was not asked, the address being over its share of the checks: 429.
pub(crate) fn app_unavailable(e: &CheckError) -> Refusal {
    match e {
        CheckError::Limited(after) => {
            Refusal::rate_limited(*after, format!("rate limit exceeded (session_checks): {e}"))
        }
        _ => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            format!("{e}; try again shortly"),
        ),
    }
}

#[cfg(test)]
mod tests;

/// Charge one inbound frame of a socket to its client's message limit
/// (`limits.per_client.messages`, or the address's); `refused` counts the
/// refusals in a row, which a socket closes on past its bound.
pub(crate) fn allow_frame(
    state: &crate::state::AppState,
    client: &crate::limits::ClientKey,
    refused: &mut u32,
) -> bool {
    match state.limits.message(client) {
        Ok(()) => {
            *refused = 0;
            true
        }
        Err(l) => {
            state.metrics.limited(l.kind.label());
            *refused += 1;
            false
        }
    }
}
