//! RFC 8441's extended CONNECT: how a stream of an HTTP/2 connection asks
//! to become a WebSocket (`:method = CONNECT`, `:protocol = websocket`),
//! where HTTP/1.1 sends `GET` with `Upgrade: websocket`.
//!
//! Both roads that take WebSockets read the ask here: the realtime and
//! Pusher endpoints (`transport/ws/handshake.rs`) and the proxy, which
//! carries an application's own WebSocket to it as an HTTP/1.1 upgrade
//! (`proxy/h2_websocket.rs`). One reading, so that a `:protocol` the
//! gateway does not speak is refused the same way on each: 400 with the
//! documented JSON body, never a tunnel to something it cannot see into.
//! hyper only hands a `:protocol` to the gateway on connections that
//! advertised `SETTINGS_ENABLE_CONNECT_PROTOCOL` (`server.rs`).

use http::{Method, Request, Response, StatusCode};
use hyper::ext::Protocol;

use crate::reply::{self, Body};

/// What an extended CONNECT asks the stream to become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// `:protocol = websocket`.
    WebSocket,
    /// Any other protocol: refused with [`unsupported`].
    Other,
}

/// The ask of `req` when it is an extended CONNECT; `None` for every
/// other request (a plain CONNECT included).
pub(crate) fn ask<B>(req: &Request<B>) -> Option<Ask> {
    if req.method() != Method::CONNECT {
        return None;
    }
    let protocol = req.extensions().get::<Protocol>()?;
    // Upgrade tokens are case-insensitive (RFC 9110 §7.8).
    Some(match protocol.as_ref().eq_ignore_ascii_case(b"websocket") {
        true => Ask::WebSocket,
        false => Ask::Other,
    })
}

/// The method the request would have had on HTTP/1.1: `GET` for an
/// extended CONNECT for a WebSocket (the upgrade the application is sent),
/// its own for any other. What watches requests by method (response taps)
/// sees the same request whichever version carried it.
pub(crate) fn http1_method<B>(req: &Request<B>) -> Method {
    match ask(req) {
        Some(Ask::WebSocket) => Method::GET,
        _ => req.method().clone(),
    }
}

/// The status an HTTP/1.1 client would have had for the answer `status` to
/// a request whose ask was `asked`: the 200 that opens a WebSocket's h2
/// stream is the 101 of the HTTP/1.1 switch (a refusal is the same on both).
pub(crate) fn http1_status(asked: Option<Ask>, status: StatusCode) -> StatusCode {
    match (asked, status) {
        (Some(Ask::WebSocket), StatusCode::OK) => StatusCode::SWITCHING_PROTOCOLS,
        _ => status,
    }
}

/// The answer to an extended CONNECT for a protocol other than WebSocket.
pub(crate) fn unsupported() -> Response<Body> {
    reply::error(
        StatusCode::BAD_REQUEST,
        "unsupported_protocol",
        "extended CONNECT carries only :protocol websocket here",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> Request<()> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("https://example.com/realtime/ws")
            .body(())
            .unwrap();
        if let Some(p) = protocol {
            req.extensions_mut().insert(Protocol::from_static(p));
        }
        req
    }

    #[test]
    fn reads_the_protocol_of_an_extended_connect_only() {
        assert_eq!(ask(&connect(Some("websocket"))), Some(Ask::WebSocket));
        assert_eq!(ask(&connect(Some("WebSocket"))), Some(Ask::WebSocket));
        assert_eq!(ask(&connect(Some("webtransport"))), Some(Ask::Other));
        // A plain CONNECT (a proxy tunnel) is no extended CONNECT.
        assert_eq!(ask(&connect(None)), None);
        // Nor is a GET that carries the extension by accident.
        let mut get = Request::new(());
        get.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        assert_eq!(ask(&get), None);
    }

    #[test]
    fn reads_as_the_http1_upgrade_it_becomes() {
        let ws = connect(Some("websocket"));
        assert_eq!(http1_method(&ws), Method::GET);
        assert_eq!(http1_method(&connect(None)), Method::CONNECT);
        let opened = http1_status(ask(&ws), StatusCode::OK);
        assert_eq!(opened, StatusCode::SWITCHING_PROTOCOLS);
        let refused = http1_status(ask(&ws), StatusCode::FORBIDDEN);
        assert_eq!(refused, StatusCode::FORBIDDEN);
        assert_eq!(http1_status(None, StatusCode::OK), StatusCode::OK);
    }

    #[test]
    fn refuses_other_protocols_with_the_documented_body() {
        assert_eq!(unsupported().status(), StatusCode::BAD_REQUEST);
    }
}
