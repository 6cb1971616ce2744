//! Entry points shared by the fuzz targets (`fuzz/`, run with `cargo fuzz`)
//! and the corpus regression test (`tests/fuzz_corpus.rs`, run by CI on
//! stable): each feeds untrusted bytes to one parser and checks the
//! properties that must hold whatever the input.

use std::path::Path;
use std::sync::OnceLock;

use crate::config::{self, Config};
use crate::hub::Cursor;
use crate::ingest::template::{Body, Context, Input, Template};
use crate::state::Settings;

/// YAML config: a Config or errors naming the file; never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = config::parse(text, Path::new("fuzz.yaml")) {
        for e in errors.iter() {
            assert!(
                e.to_string().starts_with("fuzz.yaml"),
                "error without its file: {e}"
            );
        }
    }
}

/// First line: a template; the rest: a request body.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tpl, body) = text.split_once('\n').unwrap_or((text, ""));
    for ctx in [Context::Webhook, Context::Tap] {
        let Ok(t) = Template::parse(tpl, ctx, &["p".to_string()]) else {
            continue;
        };
        let input = Input {
            body: Some(Body::new(body.as_bytes(), false)),
            response_body: Some(Body::new(body.as_bytes(), false)),
            response_status: Some(200),
            ..Default::default()
        };
        let _ = t.render_text(&input);
        if let Ok(v) = t.render_json(&input) {
            assert!(serde_json::to_string(&v).is_ok());
        }
    }
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        match Settings::new(Config::default(), &crate::lifecycle::Lifecycle::new()) {
            Ok(s) => s,
            Err(e) => panic!("default settings: {e}"),
        }
    })
}

/// Admin publish bodies: valid ones yield messages within the limits.
pub fn publish(data: &[u8]) {
    let s = settings();
    if let Ok(batch) = crate::admin::publish::parse(data, s) {
        for p in batch {
            assert!(crate::hub::message::valid_channel(&p.channel));
            assert!(crate::hub::message::valid_event(&p.event));
            // A binary message's limit is on its bytes, not their base64.
            let size = match p.binary {
                true => {
                    use base64::Engine;
                    let text: String = serde_json::from_str(p.data.get()).expect("a JSON string");
                    let engine = base64::engine::general_purpose::STANDARD;
                    engine.decode(text).expect("canonical base64").len()
                }
                false => p.data.get().len(),
            };
            assert!(size <= s.config.realtime.max_message);
            assert!(!p.data.get().contains('\n'), "data must be compact for SSE");
        }
    }
}

/// Client WebSocket frames through the permessage-deflate reader: never a
/// panic, and never more out than the frames passed through plus, per
/// compressed message (at least 6 bytes of header each), the limit and its
/// fragments' headers.
pub fn ws_inflate(data: &[u8]) {
    use crate::transport::ws::inflate::{InflateParams, rewrite};
    let limit = 4096;
    for no_context_takeover in [true, false] {
        let params = InflateParams {
            limit,
            no_context_takeover,
            window_bits: if no_context_takeover { 15 } else { 10 },
        };
        let (out, _) = rewrite(data, params);
        let messages = data.len() / 6 + 1;
        assert!(out.len() <= data.len() + messages * (limit + 1 + 14 * 3));
    }
}

/// WebSocket op frames: parse or a coded error; echoed refs stay small.
pub fn ws_op(data: &[u8]) {
    // The same bytes as a binary frame: a head line and bytes, or a coded error.
    match crate::transport::ops::parse_binary(data) {
        Ok((_, r, bytes)) => {
            assert!(r.is_none_or(|r| r.len() <= 128));
            assert!(bytes.len() < data.len());
        }
        Err(e) => assert!(!e.code.is_empty()),
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::transport::ops::parse(text) {
        Ok((_, r)) => assert!(r.is_none_or(|r| r.len() <= 128)),
        Err(e) => {
            assert!(!e.code.is_empty());
            let frame = crate::transport::ops::error(e.reference.as_deref(), e.code, &e.message);
            assert!(serde_json::from_str::<serde_json::Value>(&frame).is_ok());
        }
    }
}

/// Cursors: whatever decodes re-encodes to something that decodes the same.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Cursor::decode(text) {
        let again = Cursor::decode(&c.encode());
        assert_eq!(again.as_ref(), Ok(&c));
    }
}

/// The relay's reading of raw HTTP/1 bytes (`relay.rs`, by the rules of
/// `h1/`), from a client or a backend: never a panic; a request it takes is
/// rewritten into one complete request it would take again; an SSE
/// subscription is taken only as one whole head with nothing after it, and
/// looking for one changes nothing about any other request; an answer head
/// it accepts is rewritten into one complete answer, states one length at
/// most, and leaves its connection out of the pool when its end is the
/// backend's guess (a bodiless answer, or both framings); a field only the
/// gateway asserts never reaches the backend; a chunked body ends at the
/// same byte however its bytes arrive, and never past them.
pub fn relay(data: &[u8]) {
    relay_request(data);
    relay_answer(data);
    relay_chunked(data);
}

/// [`relay`] on a client's request head: classified, and rewritten when the
/// relay takes it.
fn relay_request(data: &[u8]) {
    use crate::conn_info::ConnInfo;
    use crate::h1::classify::{Classified, classify};
    use crate::h1::request::Route;
    use http::Method;

    let info = ConnInfo::new(
        "10.0.0.7:5000".parse().expect("literal address"),
        false,
        1,
        &Default::default(),
    );
    let never = |_: &Method, _: &str| false;
    let route = Route {
        realtime: "/realtime",
        tapped: &never,
    };
    if let Classified::Relay(out) = classify(data, &route, &[], None, &info) {
        assert!(out.len <= data.len());
        let mut headers = [httparse::EMPTY_HEADER; 80];
        let mut again = httparse::Request::new(&mut headers);
        assert_eq!(
            again.parse(&out.head),
            Ok(httparse::Status::Complete(out.head.len())),
            "the rewritten head is one whole request"
        );
        // Taken again, unless the six fields it adds pass the relay's
        // header count (such a request is still fine for the backend).
        if again.headers.len() <= crate::h1::classify::MAX_HEADERS {
            assert!(matches!(
                classify(&out.head, &route, &[], None, &info),
                Classified::Relay(_)
            ));
        }
        assert!(out.path().starts_with('/'));
        // The one asserted field in the head is the gateway's own
        // `X-Real-IP`, once, naming the client: a client's never passes.
        let asserted: Vec<_> = again
            .headers
            .iter()
            .filter(|h| crate::h1::forwarded::is_asserted(h.name))
            .collect();
        assert!(
            asserted.len() == 1
                && asserted[0].name.eq_ignore_ascii_case("x-real-ip")
                && asserted[0].value == out.client.to_string().as_bytes(),
            "a field only the gateway asserts was forwarded"
        );
    }
    match classify(
        data,
        &route,
        &["/realtime/sse"],
        Some("/realtime/ws"),
        &info,
    ) {
        Classified::Sse(req) => {
            assert_eq!(req.uri().path(), "/realtime/sse");
            let mut headers = [httparse::EMPTY_HEADER; 80];
            assert_eq!(
                httparse::Request::new(&mut headers).parse(data),
                Ok(httparse::Status::Complete(data.len())),
                "an SSE subscription is one whole head"
            );
        }
        Classified::WebSocket(req) => {
            assert_eq!(req.uri().path(), "/realtime/ws");
            assert_eq!(req.version(), http::Version::HTTP_11);
            assert!(req.headers().contains_key(http::header::UPGRADE));
            let body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
                || req
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .is_some_and(|v| v != "0");
            assert!(!body, "a direct WebSocket handshake has no body");
            let mut headers = [httparse::EMPTY_HEADER; 80];
            assert_eq!(
                httparse::Request::new(&mut headers).parse(data),
                Ok(httparse::Status::Complete(data.len())),
                "a direct WebSocket handshake is one whole head"
            );
        }
        first => assert_eq!(
            std::mem::discriminant(&first),
            std::mem::discriminant(&classify(data, &route, &[], None, &info)),
            "a first request is judged as a later one"
        ),
    }
}

/// [`relay`] on a backend's answer head, to `GET` and to `HEAD`.
fn relay_answer(data: &[u8]) {
    use crate::h1::response::{self, Framing, Response};
    use http::Method;

    for method in [Method::GET, Method::HEAD] {
        match response::response(data, &method, false, b"Mon, 23 Nov 2026 18:00:00 GMT") {
            Response::Final(answer) => {
                assert!(answer.len <= data.len());
                let mut headers = [httparse::EMPTY_HEADER; 110];
                let mut again = httparse::Response::new(&mut headers);
                assert_eq!(
                    again.parse(&answer.head),
                    Ok(httparse::Status::Complete(answer.head.len())),
                    "the rewritten head is one whole answer"
                );
                let lengths = again
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .count();
                assert!(lengths <= 1, "one length at most");
                if answer.framing == Framing::Chunked {
                    assert_eq!(lengths, 0, "no length beside chunked framing");
                }
                if answer.framing == Framing::Empty {
                    assert!(!answer.reusable, "a bodiless answer's connection is pooled");
                }
            }
            Response::Interim(len) => assert!(0 < len && len <= data.len()),
            Response::Partial | Response::Unusable(_) => {}
        }
    }
}

/// [`relay`] on a chunked body, whole and in two parts.
fn relay_chunked(data: &[u8]) {
    use crate::h1::chunked::ChunkedEnd;

    let whole = ChunkedEnd::default().feed(data);
    if let Ok(Some(n)) = whole {
        assert!(n <= data.len());
    }
    if !data.is_empty() {
        let split = usize::from(data[0]) % data.len();
        let mut scan = ChunkedEnd::default();
        let parts = scan.feed(&data[..split]).and_then(|first| match first {
            Some(n) => Ok(Some(n)),
            None => scan
                .feed(&data[split..])
                .map(|rest| rest.map(|n| n + split)),
        });
        assert_eq!(parts, whole, "the end does not depend on the split");
    }
    // Lowering trailer names finds the same end and changes nothing but
    // upper-case letters into their lower case.
    let mut lowered = data.to_vec();
    assert_eq!(ChunkedEnd::default().feed_lowering(&mut lowered), whole);
    for (a, b) in data.iter().zip(&lowered) {
        assert!(a == b || (a.is_ascii_uppercase() && *b == a.to_ascii_lowercase()));
    }
}

/// The first bytes of a connection when `listen.proxy_protocol` is on
/// (written by whoever reaches the port): never a panic; a whole header
/// lies within the bytes given and within `MAX_HEADER`; and the verdict
/// does not depend on what follows the header (the reader peeks, so more
/// bytes may have arrived behind it), while a prefix of a header only
/// ever asks for more.
pub fn proxy_header(data: &[u8]) {
    use crate::proxy_protocol::{Header, MAX_HEADER, parse};
    match parse(data) {
        Header::Complete { len, source } => {
            assert!(len <= data.len() && len <= MAX_HEADER);
            assert_eq!(parse(&data[..len]), Header::Complete { len, source });
            for cut in 0..len {
                assert!(!matches!(parse(&data[..cut]), Header::Complete { .. }));
            }
        }
        Header::Incomplete => assert!(data.len() < MAX_HEADER),
        Header::Invalid(_) => {}
    }
}
