//! A Pusher client over the gateway's `max_connections`: told 4100 (back
//! off, then reconnect) in frames pusher-js reads, where any other request
//! is answered 503.
//!
//! A WebSocket upgrade (HTTP/1.1 or an HTTP/2 extended CONNECT) is
//! accepted only when a slot of the reserve is free
//! (`pusher/refusal_reserve.rs`; one per connection at a time); its task
//! sends `pusher:error` 4100 and closes 4100, all within
//! [`REFUSAL_TIMEOUT`], and gives the slot back.
//! An HTTP fallback receive request (`xhr_streaming`, `xhr`) is answered
//! at once with the SockJS open line (for a session it does not know) and
//! `c[4100,…]`: nothing is kept, and a session it knows is closed 4100.
//! Anything else, and an upgrade with the reserve used up, is left to the
//! caller's 503.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::carrier::Link;
use super::xhr::{self, Kind};
use crate::pusher::frames::{self, code};
use crate::pusher::sockjs;
use crate::reply::Body;
use crate::state::AppState;
use crate::transport::ws;

/// The longest a refused socket holds its slot: the upgrade, the error
/// frame and the closing handshake.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client reads.
const REASON: &str = "Over capacity";

/// The answer for `req` when it is a Pusher connection's opening, or None
/// when it is not one (or no slot is free): the caller answers 503.
pub(crate) fn answer(state: &AppState, req: &mut Request<Incoming>) -> Option<Response<Body>> {
    let settings = state.settings();
    if super::endpoint(&settings, req).is_some() {
        return refuse_socket(state, req);
    }
    let x = xhr::endpoint(&settings, req)?;
    if req.method() != Method::POST || x.kind() == Kind::Send {
        return None;
    }
    let origin = crate::transport::cors::check(&settings, req).ok()?;
    let mut lines = Vec::new();
    match state.pusher_http.get(x.id(), xhr::peer(req)) {
        // A session held here: told 4100 on its own stream too, and ended
        // (its presence, occupancy and counts with it), as the client
        // backs off and reconnects.
        Some(session) => session.close(code::OVER_CAPACITY, REASON),
        None => lines.extend_from_slice(sockjs::OPEN),
    }
    lines.extend_from_slice(&sockjs::close(code::OVER_CAPACITY, REASON));
    let mut resp = xhr::answer(Bytes::from(lines));
    crate::transport::cors::apply(&mut resp, &origin);
    Some(resp)
}

/// Accept the upgrade of `req` to tell it 4100, when a slot is free.
fn refuse_socket(state: &AppState, req: &mut Request<Incoming>) -> Option<Response<Body>> {
    let handshake = match ws::handshake::Handshake::of(req) {
        Ok(handshake) => handshake,
        Err(refused) => return Some(refused),
    };
    let conn = req.extensions().get::<crate::conn_info::ConnInfo>()?.id;
    let slot = state.pusher_refusals.take(conn)?;
    let on_upgrade = hyper::upgrade::on(req);
    let (state2, settings) = (state.clone(), state.settings());
    let refusal = async move {
        let _slot = slot;
        let told = async {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .max_message_size(Some(4096))
                .max_frame_size(Some(4096));
            let (socket, _) = ws::accept_socket(
                Box::new(hyper_util::rt::TokioIo::new(upgraded)),
                None,
                config,
                &state2,
                &settings,
            )
            .await;
            let mut link = Link::WebSocket(Box::new(socket));
            link.send_now(&frames::error(Some(code::OVER_CAPACITY), REASON))
                .await;
            link.close(code::OVER_CAPACITY, REASON).await;
            state2.metrics.disconnect(link.label(), "over_capacity");
        };
        // Past the deadline the socket is dropped, closed or not.
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, told).await;
    };
    state.lifecycle.tasks().spawn(refusal);
    Some(handshake.accept())
}
