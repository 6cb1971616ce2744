//! An application's own WebSocket opened over HTTP/2 (RFC 8441): the
//! browser's extended CONNECT becomes the HTTP/1.1 Upgrade the application
//! already answers, and its 101 becomes the 200 that opens the h2 stream.
//!
//! The application sees what it would see from a browser on HTTP/1.1: a
//! `GET` with `Upgrade: websocket`, version 13 and a key of the gateway's
//! own (the browser sent none); subprotocol and extension offers pass
//! unchanged, and the 101's fields come back on the 200 (`Set-Cookie` and
//! the application's own included) less those of the HTTP/1.1 switch. Its 101 is checked against that key
//! before the stream opens: an answer that does not prove the application
//! speaks WebSocket is a 502, never a tunnel. A 2xx that is not a switch
//! would open the stream (a 2xx to CONNECT does) to a peer that switched
//! nothing, so it is a 502 too; a refusal (3xx, 4xx, 5xx) passes back as it
//! came.

use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::fields::strip_hop_by_hop;
use crate::extended_connect::{self, Ask};
use crate::reply::{self, Body};

/// The key the gateway sent the application for one tunnelled WebSocket.
pub(super) struct Key(HeaderValue);

/// Rewrite an extended CONNECT for a WebSocket into the HTTP/1.1 Upgrade
/// the application is sent; its key, to check the answer by. `None`, and
/// `req` untouched, for any other request.
pub(super) fn as_upgrade<B>(req: &mut Request<B>) -> Option<Key> {
    if extended_connect::ask(req) != Some(Ask::WebSocket) {
        return None;
    }
    let nonce: [u8; 16] = rand::random();
    let key =
        HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(nonce)).ok()?;
    *req.method_mut() = Method::GET;
    let h = req.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert("sec-websocket-key", key.clone());
    h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    Some(Key(key))
}

/// The answer to the client's extended CONNECT, from the application's
/// answer head `resp` to the upgrade sent with `key`: `Ok` with the 200
/// that opens the stream when the application switched, `Err` with what the
/// client gets instead (the application's own refusal is not judged here:
/// it is only called on 101 and 2xx).
pub(super) fn opened<B>(key: &Key, resp: &Response<B>) -> Result<Response<Body>, Response<Body>> {
    let not_websocket = || {
        reply::error(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "the application did not accept the WebSocket",
        )
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(not_websocket());
    }
    let expected = derive_accept_key(key.0.as_bytes());
    let accepted = resp
        .headers()
        .get("sec-websocket-accept")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !accepted {
        return Err(not_websocket());
    }
    // The application's answer as it sent it (`Set-Cookie`, its own
    // fields, the subprotocol and extensions), as an HTTP/1.1 client would
    // see it, less what belongs to the HTTP/1.1 switch: hop-by-hop fields,
    // `Upgrade`, the accept of a key the client never sent, and a length
    // a 2xx to CONNECT must not carry (RFC 9110 §9.3.6).
    let mut open = Response::new(reply::empty());
    let mut fields = resp.headers().clone();
    strip_hop_by_hop(&mut fields);
    fields.remove("sec-websocket-accept");
    fields.remove(header::CONTENT_LENGTH);
    *open.headers_mut() = fields;
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::ext::Protocol;

    fn connect() -> Request<()> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(http::Version::HTTP_2)
            .uri("https://localhost/app/socket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        req
    }

    fn switched(accept: &str) -> Response<()> {
        Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", accept)
            .header("sec-websocket-protocol", "chat")
            .header("set-cookie", "a=1; Secure")
            .header("set-cookie", "b=2")
            .header("x-app", "yes")
            .body(())
            .unwrap()
    }

    #[test]
    fn becomes_an_http1_upgrade_with_a_fresh_key() {
        let mut req = connect();
        let key = as_upgrade(&mut req).expect("an extended CONNECT for websocket");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.headers()["upgrade"], "websocket");
        assert_eq!(req.headers()["sec-websocket-key"], key.0);
        assert_eq!(req.headers()["sec-websocket-protocol"], "chat");
        let other = as_upgrade(&mut connect()).unwrap();
        assert_ne!(key.0, other.0, "each tunnel has a key of its own");
        // Anything else is left alone.
        let mut get = Request::new(());
        assert!(as_upgrade(&mut get).is_none());
        assert!(get.headers().is_empty());
    }

    #[test]
    fn a_proven_switch_opens_the_stream_with_the_apps_answers() {
        let mut req = connect();
        let key = as_upgrade(&mut req).unwrap();
        let good = derive_accept_key(key.0.as_bytes());
        let open = opened(&key, &switched(&good)).unwrap();
        assert_eq!(open.status(), StatusCode::OK);
        assert_eq!(open.headers()["sec-websocket-protocol"], "chat");
        let cookies: Vec<_> = open.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Secure", "b=2"]);
        assert_eq!(open.headers()["x-app"], "yes");
        assert!(open.headers().get("sec-websocket-accept").is_none());
        assert!(open.headers().get("upgrade").is_none());
        assert!(open.headers().get("connection").is_none());
    }

    #[test]
    fn an_unproven_switch_or_a_plain_success_is_a_bad_gateway() {
        let key = as_upgrade(&mut connect()).unwrap();
        let wrong = opened(&key, &switched("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")).unwrap_err();
        assert_eq!(wrong.status(), StatusCode::BAD_GATEWAY);
        let ok = Response::builder().status(200).body(()).unwrap();
        assert_eq!(
            opened(&key, &ok).unwrap_err().status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
