//! Request heads as the HTTP/1 relay (`relay.rs`) sees them: which requests
//! it may forward itself, and the rewritten heads it sends on.
//!
//! The relay takes only the plainest requests: `GET` or `HEAD`, HTTP/1.1,
//! no body, no upgrade, no `Expect`, one `Host`, one `Cookie` at most, a
//! `Connection` that says nothing but `close` or `keep-alive`, a path that is
//! neither a realtime endpoint nor tapped. Everything else is "not ours" and
//! goes to hyper, so the rules for unusual requests live in one place. What
//! the relay forwards must match what the hyper path forwards: the same
//! hop-by-hop headers go, the same `Host` and `X-Forwarded-*`/`Forwarded`
//! values are set (`forwarded.rs`).

use std::net::IpAddr;
use std::ops::Range;

use http::Method;

use super::forwarded::{self, Forwarded};
use super::{is_hop_by_hop, write_field};
use crate::conn_info::ConnInfo;

/// A request the relay forwards.
#[derive(Debug)]
pub struct Outbound {
    /// Bytes of the client's buffer this request took.
    pub len: usize,
    /// The head to send the backend.
    pub head: Vec<u8>,
    pub method: Method,
    /// The client asked to close after this answer.
    pub close: bool,
    /// The client takes trailers (`TE: trailers`); without, a chunked
    /// answer's trailers are left out, as hyper leaves them out.
    pub trailers: bool,
    /// Where the client's path (no query) stands in `head`, for the log.
    path: std::ops::Range<usize>,
    /// Where the `Host` value stands in `head`.
    host: std::ops::Range<usize>,
    /// Who the request is from (`real_ip.rs`): `ip_hash` and logs use it.
    pub client: std::net::IpAddr,
}

impl Outbound {
    /// The path the client asked for, without its query (which may carry
    /// secrets, so it is never logged).
    pub fn path(&self) -> &str {
        std::str::from_utf8(&self.head[self.path.clone()]).unwrap_or("")
    }

    /// The request's host (`Host`, port and all), which routes match.
    pub fn host(&self) -> &str {
        std::str::from_utf8(&self.head[self.host.clone()]).unwrap_or("")
    }

    /// Send the request where its route says: the first `strip` bytes of
    /// its path go (a route's `strip_prefix`; a leading `/` stays) and
    /// `base`, the upstream URL's path, goes in front. `path()` is then
    /// what remains of the client's path after `base`.
    pub fn retarget(&mut self, base: &str, strip: usize) {
        if base.is_empty() && strip == 0 {
            return;
        }
        let start = self.path.start;
        let strip = strip.min(self.path.len());
        let mut insert = base.as_bytes().to_vec();
        if strip > 0 && self.head.get(start + strip) != Some(&b'/') {
            insert.push(b'/');
        }
        let added = insert.len();
        self.head.splice(start..start + strip, insert);
        let shift = |at: usize| at + added - strip;
        self.path = start + base.len()..shift(self.path.end);
        self.host = shift(self.host.start)..shift(self.host.end);
    }
}

/// What the relay needs to know about the gateway to classify a request.
pub struct Route<'a> {
    /// `realtime.path`: requests under it are realtime endpoints.
    pub realtime: &'a str,
    /// Whether a tap watches this method and path.
    pub tapped: &'a (dyn Fn(&Method, &str) -> bool + Sync),
}

/// The head the relay sends the backend for a parsed request head of `len`
/// bytes, if the relay takes it (`None`: hyper must handle it). Called by
/// the one classifier (`classify.rs`), which parsed the head.
pub(crate) fn outbound(
    parsed: &httparse::Request<'_, '_>,
    len: usize,
    route: &Route<'_>,
    info: &ConnInfo,
) -> Option<Outbound> {
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return None,
    };
    let (Some(1), Some(target)) = (parsed.version, parsed.path) else {
        return None;
    };
    // Origin form only, and a target hyper would accept too. A fragment
    // (which hyper's URI parsing cuts off) goes to hyper as well.
    if !target.starts_with('/')
        || target.contains('#')
        || http::uri::PathAndQuery::try_from(target).is_err()
    {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let realtime = path
        .strip_prefix(route.realtime)
        .is_some_and(|rest| rest.starts_with('/'));
    if realtime || (route.tapped)(&method, path) {
        return None;
    }

    let fields = Fields::read(parsed.headers, info)?;
    let (head, path, host, client) =
        write_head(&method, target, path.len(), len, parsed, &fields, info);
    Some(Outbound {
        len,
        head,
        method,
        close: fields.close,
        trailers: fields.trailers,
        path,
        host,
        client,
    })
}

/// What the relay reads in a request's fields, and the judgement whether it
/// may take the request at all.
struct Fields<'h> {
    /// The one `Host`, in its checked form.
    host: &'h str,
    close: bool,
    trailers: bool,
    /// The field a trusted front names clients in, every line in order;
    /// read only from a front (`forwarded.rs`).
    front_lines: Vec<&'h [u8]>,
}

impl<'h> Fields<'h> {
    /// `None`: a field the relay does not forward as hyper's path would.
    fn read(headers: &[httparse::Header<'h>], info: &ConnInfo) -> Option<Fields<'h>> {
        let mut host = None;
        let mut cookies = 0;
        let mut close = false;
        let mut trailers = false;
        let front_field = info.front.as_ref().map(|f| f.header.name());
        let mut front_lines: Vec<&[u8]> = Vec::new();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                if host.is_some() {
                    return None;
                }
                // hyper's path refuses a Host that is not host[:port].
                host = Some(forwarded::host(h.value)?);
            } else if name.eq_ignore_ascii_case("cookie") {
                cookies += 1;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        // It names hop-by-hop headers of its own.
                        return None;
                    }
                }
            } else if ["content-length", "transfer-encoding", "upgrade", "expect"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                return None;
            } else if name.eq_ignore_ascii_case("te") {
                trailers |= h.value.split(|&b| b == b',').any(|t| {
                    t.split(|&b| b == b';')
                        .next()
                        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
                });
            } else if front_field.is_some_and(|f| name.eq_ignore_ascii_case(f)) {
                front_lines.push(h.value);
            }
        }
        if cookies > 1 {
            return None;
        }
        Some(Fields {
            host: host?,
            close,
            trailers,
            front_lines,
        })
    }
}

/// The head for the backend: the client's fields in order but for those
/// that stop here or are the gateway's to write, then the forwarding
/// fields (`len`: the client's head's length, which sizes it). Also where
/// the path (`path_len` bytes of `target`) and the `Host` value stand in
/// it, and who the request is from.
fn write_head(
    method: &Method,
    target: &str,
    path_len: usize,
    len: usize,
    parsed: &httparse::Request<'_, '_>,
    fields: &Fields<'_>,
    info: &ConnInfo,
) -> (Vec<u8>, Range<usize>, Range<usize>, IpAddr) {
    let host = fields.host;
    let mut head = Vec::with_capacity(len + 160);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    let path_start = head.len();
    head.extend_from_slice(target.as_bytes());
    let path_range = path_start..path_start + path_len;
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host_range = 0..0;
    // The forwarding fields the relay writes, as the client spelled them
    // when it sent them too (hyper's path replaces the value and keeps the
    // spelling), else in lowercase.
    let mut spelled = FORWARDING;
    for h in parsed.headers.iter() {
        if let Some(i) = FORWARDING
            .iter()
            .position(|n| h.name.eq_ignore_ascii_case(n))
        {
            if spelled[i] == FORWARDING[i] {
                spelled[i] = h.name;
            }
        }
        if h.name.eq_ignore_ascii_case("host") {
            // In its place and as the client spelled it, as hyper's path
            // keeps it; the value in its checked form.
            let at = head.len() + h.name.len() + ": ".len();
            write_field(&mut head, h.name, host.as_bytes());
            host_range = at..at + host.len();
        } else if !is_hop_by_hop(h.name)
            && !replaced_on_the_way(h.name)
            && !forwarded::is_underscore_alias(h.name)
            && !forwarded::is_asserted(h.name)
        {
            write_field(&mut head, h.name, h.value);
        }
    }
    let front_lines = || fields.front_lines.iter().copied();
    let (kept, client) = match &info.front {
        Some(front) => (
            front.passed_on(front_lines()),
            front.client(info.peer.ip(), front_lines()),
        ),
        None => (None, info.client),
    };
    let values = Forwarded::new(kept.as_deref(), info, client, Some(host));
    let values = [
        values.xff.as_str(),
        &values.forwarded,
        values.proto,
        host,
        &values.real_ip,
    ];
    for (name, value) in spelled.iter().zip(values) {
        write_field(&mut head, name, value.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    (head, path_range, host_range, client)
}

/// The forwarding fields the relay writes after the client's, in this order.
const FORWARDING: [&str; 5] = [
    "x-forwarded-for",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Request headers the relay writes itself.
fn replaced_on_the_way(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || FORWARDING.iter().any(|n| name.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::classify::{Classified, classify};
    use crate::h1::tests::info;

    fn judge(raw: &str) -> Classified {
        let never = |_: &Method, _: &str| false;
        let route = Route {
            realtime: "/realtime",
            tapped: &never,
        };
        classify(raw.as_bytes(), &route, &[], None, &info())
    }

    fn relayed(raw: &str) -> (Outbound, String) {
        match judge(raw) {
            Classified::Relay(out) => {
                let head = String::from_utf8(out.head.clone()).unwrap();
                (out, head)
            }
            other => panic!("{raw:?} not relayed: {other:?}"),
        }
    }

    #[test]
    fn a_plain_get_is_rewritten_like_the_hyper_path() {
        let raw = "GET /a/b?x=1 HTTP/1.1\r\nHost: app.example\r\nAccept: */*\r\nConnection: keep-alive\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: evil\r\n\r\nGET /next";
        let (out, head) = relayed(raw);
        assert_eq!(out.len, raw.len() - "GET /next".len());
        assert_eq!(out.path(), "/a/b", "logged without the query");
        assert!(!out.close);
        assert!(
            head.starts_with("GET /a/b?x=1 HTTP/1.1\r\nHost: app.example\r\n"),
            "Host in its place, as spelled: {head}"
        );
        for expected in [
            "Accept: */*\r\n",
            // As the client spelled those it sent; the rest lowercase.
            // The client's own list is replaced, never appended to.
            "X-Forwarded-For: 10.0.0.7\r\n",
            "x-real-ip: 10.0.0.7\r\n",
            "forwarded: for=10.0.0.7;proto=http;host=\"app.example\"\r\n",
            "x-forwarded-proto: http\r\n",
            "X-Forwarded-Host: app.example\r\n",
        ] {
            assert!(head.contains(expected), "{expected:?} missing in {head}");
        }
        for gone in ["Connection", "TE:", "evil", "\nhost: app", "1.2.3.4"] {
            assert!(!head.contains(gone), "{gone:?} kept in {head}");
        }
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_trusted_front_is_believed_and_appended_to() {
        let never = |_: &Method, _: &str| false;
        let route = Route {
            realtime: "/realtime",
            tapped: &never,
        };
        let fronts = crate::real_ip::Fronts {
            proxies: serde_json::from_str(r#"["10.0.0.0/8"]"#).unwrap(),
            header: Default::default(),
        };
        let info = ConnInfo::new("10.0.0.7:5000".parse().unwrap(), false, 1, &fronts);
        // A forged line, then the one the front added (HAProxy adds a line).
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
        let Classified::Relay(out) = classify(raw, &route, &[], None, &info) else {
            panic!("not relayed");
        };
        let head = String::from_utf8(out.head.clone()).unwrap();
        assert_eq!(
            out.client,
            "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
        );
        assert!(
            head.contains("X-Forwarded-For: 6.6.6.6, 203.0.113.9, 10.0.0.7\r\n"),
            "{head}"
        );
        assert!(head.contains("X-Real-IP: 203.0.113.9\r\n"), "{head}");
        assert!(!head.contains("True-Client-IP"), "{head}");
        assert_eq!(head.matches("6.6.6.6").count(), 1, "{head}");
    }

    #[test]
    fn base_path_and_close_are_honoured() {
        let never = |_: &Method, _: &str| false;
        let route = Route {
            realtime: "/realtime",
            tapped: &never,
        };
        let raw = b"HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        let Classified::Relay(mut out) = classify(raw, &route, &[], None, &info()) else {
            panic!("not relayed");
        };
        out.retarget("/app", 0);
        assert!(out.close);
        assert_eq!(out.method, Method::HEAD);
        assert!(out.head.starts_with(b"HEAD /app/x HTTP/1.1\r\n"));
        assert_eq!(out.path(), "/x", "the client's path, not the backend's");
    }

    #[test]
    fn retarget_strips_and_prefixes_the_path() {
        let raw = "GET /assets/app.js?v=1 HTTP/1.1\r\nHost: cdn.example:8443\r\n\r\n";
        let (mut out, _) = relayed(raw);
        assert_eq!(out.host(), "cdn.example:8443");
        out.retarget("/static", "/assets/".len());
        let head = String::from_utf8(out.head.clone()).unwrap();
        assert!(
            head.starts_with("GET /static/app.js?v=1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(out.path(), "/app.js");
        assert_eq!(out.host(), "cdn.example:8443", "the host range follows");
        let (mut out, _) = relayed("GET /assets HTTP/1.1\r\nHost: h\r\n\r\n");
        out.retarget("", "/assets".len());
        assert!(out.head.starts_with(b"GET / HTTP/1.1\r\n"));
        assert_eq!((out.path(), out.host()), ("/", "h"));
        let (mut out, head) = relayed("GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        out.retarget("", 0);
        assert_eq!(out.head, head.as_bytes(), "nothing to do");
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        for raw in [
            "POST /x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /x HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET /x HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
            "GET /realtime/sse HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /orders#frag HTTP/1.1\r\nHost: h\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /x HTTP/1.1\r\nBad Header: 1\r\n\r\n",
        ] {
            assert!(matches!(judge(raw), Classified::Hyper), "{raw:?}");
        }
        // A path that only starts like the realtime path is the application's.
        relayed("GET /realtimex HTTP/1.1\r\nHost: h\r\n\r\n");
        relayed("GET /realtime HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(
            judge("GET /x HTTP/1.1\r\nHost: h\r\n"),
            Classified::NeedMore
        ));
    }

    #[test]
    fn tapped_paths_go_to_hyper() {
        let tapped = |m: &Method, p: &str| *m == Method::GET && p == "/orders";
        let route = Route {
            realtime: "/realtime",
            tapped: &tapped,
        };
        let raw = b"GET /orders?page=2 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert!(matches!(
            classify(raw, &route, &[], None, &info()),
            Classified::Hyper
        ));
    }
}
