//! The one look at a request head of a public HTTP/1 connection: which
//! engine carries it. Each head is parsed here once, and what the parse
//! found travels on: an SSE subscription as the request the SSE transport
//! serves, a WebSocket handshake on `<realtime.path>/ws` as the request the
//! WebSocket transport answers (see [`classify`]), a plain proxied request as the head the relay sends on
//! (`request.rs`), anything else as "hyper's", with the bytes left as they
//! came so that hyper answers exactly as it would have.
//!
//! Why an SSE subscriber is picked out: it is a connection that sends one
//! small request and then only listens, for hours. Served by hyper, it keeps
//! an HTTP/1 read buffer, a header write buffer and an in-flight slot for
//! its whole life (over 30 KiB measured); served directly
//! (`transport/sse/http1.rs`) it keeps only its session. Only a
//! connection's first request is looked at for it: later ones go where a
//! realtime path always goes, to hyper. Anything unusual about an SSE
//! request (a body, pipelined bytes, an upgrade, a field hyper would
//! reject) goes to hyper as well.

use http::{HeaderName, HeaderValue, Method, Version};

use super::request::{Outbound, Route, outbound};
use crate::conn_info::ConnInfo;

/// Header fields a request head may have; more goes to hyper. The one
/// bound for every look at a request head, SSE or relayed, so that a head
/// is judged alike.
pub(crate) const MAX_HEADERS: usize = 64;

/// What the bytes at the front of a client's buffer are.
#[derive(Debug)]
pub(crate) enum Classified {
    /// `GET <realtime.path>/sse` (or the Mercure hub's `GET mercure.path`)
    /// as a connection's first request, complete, nothing after it: served
    /// without hyper.
    Sse(http::Request<()>),
    /// `GET <realtime.path>/ws` with an `Upgrade` field as a connection's
    /// first request, complete, nothing after it: the WebSocket handshake
    /// is answered without hyper (`transport/ws/http1.rs`).
    WebSocket(http::Request<()>),
    /// A request the relay takes, with the head it sends the backend.
    Relay(Outbound),
    /// Complete or not, hyper must handle it (and the connection from here on).
    Hyper,
    /// Not a whole head yet.
    NeedMore,
}

/// Classify the head at the front of `buf`. `sse`: the paths of the event
/// streams served without hyper (`<realtime.path>/sse`, the Mercure hub's
/// path) when the head is a connection's first, else empty; `ws`: the
/// WebSocket path whose handshake is answered without hyper
/// (`<realtime.path>/ws`), likewise only for a first head.
///
/// Why a WebSocket's opening is picked out too: through hyper each one
/// allocated a connection's read buffer and header write buffer (8 KiB
/// each) for the few milliseconds of its handshake; in a connect burst
/// thousands were in progress at once, and the holes they left between the
/// sockets' long-lived state stayed resident (about 1.5 KiB per idle
/// WebSocket after 10,000).
pub(crate) fn classify(
    buf: &[u8],
    route: &Route<'_>,
    sse: &[&str],
    ws: Option<&str>,
    info: &ConnInfo,
) -> Classified {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Classified::NeedMore,
        Err(_) => return Classified::Hyper,
    };
    if let (Some("GET"), Some(target)) = (parsed.method, parsed.path) {
        let ours = sse.iter().any(|sse| is_path(target, sse));
        if ours {
            // Pipelined bytes: hyper handles sequences.
            let alone = len == buf.len();
            return alone
                .then(|| direct_request(&parsed, false))
                .flatten()
                .map_or(Classified::Hyper, Classified::Sse);
        }
        let upgrade = || {
            parsed
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("upgrade"))
        };
        if ws.is_some_and(|ws| is_path(target, ws)) && upgrade() {
            // Bytes after the head (frames sent before the 101 was read)
            // or anything odd about it: hyper's, as before.
            let alone = len == buf.len();
            return alone
                .then(|| direct_request(&parsed, true))
                .flatten()
                .map_or(Classified::Hyper, Classified::WebSocket);
        }
    }
    outbound(&parsed, len, route, info).map_or(Classified::Hyper, Classified::Relay)
}

/// Whether the request target is `path`, with or without a query.
fn is_path(target: &str, path: &str) -> bool {
    target
        .strip_prefix(path)
        .is_some_and(|after| after.is_empty() || after.starts_with('?'))
}

/// The request hyper would have made of a head, or `None` when the head is
/// one hyper should judge (a body, an odd field, or an upgrade unless
/// `upgrade`: a WebSocket handshake's).
fn direct_request(parsed: &httparse::Request<'_, '_>, upgrade: bool) -> Option<http::Request<()>> {
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        // A WebSocket opening needs HTTP/1.1: hyper refuses the others.
        Some(0) if !upgrade => Version::HTTP_10,
        _ => return None,
    };
    let mut req = http::Request::builder()
        .method(Method::GET)
        .uri(parsed.path?)
        .version(version);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        let body_or_upgrade = name == http::header::CONTENT_LENGTH && value != "0"
            || name == http::header::TRANSFER_ENCODING
            || (name == http::header::UPGRADE && !upgrade);
        if body_or_upgrade {
            return None;
        }
        req = req.header(name, value);
    }
    req.body(()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::tests::info;

    /// As a connection's first request (`first`) or a later one.
    fn judge(raw: &str, first: bool) -> Classified {
        let never = |_: &Method, _: &str| false;
        let route = Route {
            realtime: "/realtime",
            tapped: &never,
        };
        let sse: &[&str] = if first { &["/realtime/sse"] } else { &[] };
        let ws = first.then_some("/realtime/ws");
        classify(raw.as_bytes(), &route, sse, ws, &info())
    }

    #[test]
    fn a_websocket_handshake_as_the_first_request_is_answered_without_hyper() {
        let raw = "GET /realtime/ws?channels=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
        let Classified::WebSocket(req) = judge(raw, true) else {
            panic!("not a direct WebSocket");
        };
        assert_eq!(req.uri().query(), Some("channels=a"));
        assert_eq!(req.headers()["upgrade"], "websocket");
        assert_eq!(
            req.headers()["sec-websocket-key"],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        // Not the first request, bytes after the head, a body, no upgrade,
        // another path: hyper's.
        assert!(matches!(judge(raw, false), Classified::Hyper));
        let early = format!("{raw}\u{81}\u{0}");
        assert!(matches!(judge(&early, true), Classified::Hyper));
        let body = raw.replace("Host: x", "Host: x\r\nContent-Length: 2");
        assert!(matches!(judge(&body, true), Classified::Hyper));
        let plain = "GET /realtime/ws HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(!matches!(judge(plain, true), Classified::WebSocket(_)));
        let other = raw.replace("/realtime/ws?", "/realtime/wsx?");
        assert!(!matches!(judge(&other, true), Classified::WebSocket(_)));
    }

    #[test]
    fn a_plain_sse_subscription_is_served_without_hyper() {
        let raw =
            "GET /realtime/sse?channels=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1~a~2\r\n\r\n";
        let Classified::Sse(req) = judge(raw, true) else {
            panic!("not SSE");
        };
        assert_eq!(req.uri().path(), "/realtime/sse");
        assert_eq!(req.uri().query(), Some("channels=a"));
        assert_eq!(req.headers()["last-event-id"], "1~a~2");
        assert_eq!(req.version(), Version::HTTP_11);
        let raw = "GET /realtime/sse HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(judge(raw, true), Classified::Sse(_)));
        // Only as a connection's first request.
        assert!(matches!(judge(raw, false), Classified::Hyper));
    }

    #[test]
    fn every_listed_stream_path_is_served_without_hyper_and_only_it() {
        let never = |_: &http::Method, _: &str| false;
        let route = Route {
            realtime: "/realtime",
            tapped: &never,
        };
        let streams = ["/realtime/sse", "/.well-known/mercure"];
        let judged = |raw: &str| classify(raw.as_bytes(), &route, &streams, None, &info());
        let raw = "GET /.well-known/mercure?topic=urn%3Aa HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n";
        let Classified::Sse(req) = judged(raw) else {
            panic!("not a stream");
        };
        assert_eq!(req.uri().query(), Some("topic=urn%3Aa"));
        assert_eq!(req.headers()["authorization"], "Bearer t");
        assert!(matches!(
            judged("GET /realtime/sse?channels=a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Classified::Sse(_)
        ));
        // A path under the hub's (its subscriptions API), a longer name, or
        // a publish are not streams.
        for raw in [
            "GET /.well-known/mercure/subscriptions HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /.well-known/mercurex HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(
                !matches!(judged(raw), Classified::Sse(_)),
                "{raw:?} is not a stream"
            );
        }
    }

    #[test]
    fn a_plain_get_is_relayed_with_its_head_written() {
        let raw = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        for first in [true, false] {
            let Classified::Relay(out) = judge(raw, first) else {
                panic!("not relayed");
            };
            assert_eq!((out.len, out.path(), out.host()), (raw.len(), "/a", "h"));
            assert!(out.head.starts_with(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n"));
        }
    }

    #[test]
    fn a_partial_head_needs_more_bytes() {
        for raw in [
            "",
            "G",
            "GET /realtime/sse HTTP/1.1\r\nHost: x",
            "GET /x HTTP/1.1\r\nHost: h\r\n",
            "POST /x HTTP/1.1\r\n",
        ] {
            assert!(matches!(judge(raw, true), Classified::NeedMore), "{raw:?}");
        }
    }

    #[test]
    fn a_pipelined_second_request_stays_in_the_buffer() {
        // Relayed: the head is the first request's, its length too.
        let one = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        let two = format!("{one}GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
        let Classified::Relay(out) = judge(&two, true) else {
            panic!("not relayed");
        };
        assert_eq!((out.len, out.path()), (one.len(), "/a"));
        // An SSE request with anything behind it is hyper's.
        let sse = "GET /realtime/sse HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert!(matches!(judge(sse, true), Classified::Hyper));
    }

    #[test]
    fn a_head_over_max_headers_goes_to_hyper() {
        let head = |fields: usize| {
            let mut raw = String::from("GET /realtime/sse HTTP/1.1\r\nHost: h\r\n");
            for i in 1..fields {
                raw.push_str(&format!("X-F{i}: v\r\n"));
            }
            raw + "\r\n"
        };
        assert!(matches!(
            judge(&head(MAX_HEADERS), true),
            Classified::Sse(_)
        ));
        assert!(matches!(
            judge(&head(MAX_HEADERS + 1), true),
            Classified::Hyper
        ));
        let relayed = head(MAX_HEADERS).replace("/realtime/sse", "/app");
        assert!(matches!(judge(&relayed, true), Classified::Relay(_)));
        let over = head(MAX_HEADERS + 1).replace("/realtime/sse", "/app");
        assert!(matches!(judge(&over, true), Classified::Hyper));
    }

    #[test]
    fn anything_else_is_hypers() {
        for raw in [
            "POST /realtime/sse HTTP/1.1\r\n\r\n",
            "GET /realtime/ssex HTTP/1.1\r\n\r\n",
            "GET /realtime/ws HTTP/1.1\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /realtime/sse HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(matches!(judge(raw, true), Classified::Hyper), "{raw:?}");
        }
    }
}
