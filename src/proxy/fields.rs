//! The fields hyper's way of proxying rewrites in a request: the one host it
//! names, the hop-by-hop fields that stop here, the `Cookie` fields HTTP/2
//! may split, the aliases that could pass for ours, and the
//! `X-Forwarded-*`/`Forwarded` values the application is owed. The relay
//! (`relay.rs`, `h1/request.rs`) writes the same values from the same rules
//! (`h1/forwarded.rs`). What the two paths still pass on differently: the relay
//! keeps the case of field names and passes trailers to every client, while
//! hyper lowercases names and sends trailers only to a client that asked
//! with `TE: trailers`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::conn_info::ConnInfo;
use crate::h1::HOP_BY_HOP;
use crate::h1::forwarded::{self, Forwarded};
#[cfg(test)]
use crate::h1::framing::{content_length, normalize_length};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The host a request names: the URI's authority when it has one (HTTP/2's
/// `:authority`, an absolute-form target: RFC 9113 §8.3.1, RFC 9112
/// §3.2.2), else its one `Host` field. More than one `Host`, or one that is
/// not `host[:port]`, is refused (RFC 9112 §3.2): the backend and the
/// `X-Forwarded-Host` we add must not disagree about it. So is an HTTP/1.1
/// request without `Host`, and an HTTP/2 one with neither `:authority` nor
/// `Host` (RFC 9112 §3.2, RFC 9113 §8.3.1): forwarded, it would reach the
/// application with the backend's own address as its host. An empty `Host`
/// (allowed when the target has no authority) names no host; so does a
/// missing one on HTTP/1.0, which predates it.
pub(super) fn request_host(
    parts: &http::request::Parts,
) -> Result<Option<HeaderValue>, &'static str> {
    let mut fields = parts.headers.get_all(header::HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err("more than one Host header");
    }
    let required = match parts.version {
        http::Version::HTTP_11 => true,
        http::Version::HTTP_2 => parts.uri.authority().is_none(),
        _ => false,
    };
    if field.is_none() && required {
        return Err("no Host header");
    }
    if let Some(authority) = parts.uri.authority() {
        // Host is host and port only (RFC 9112 §3.2.2): no user:password@.
        let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        return forwarded::host(host_port.as_bytes())
            .and_then(|h| HeaderValue::from_str(h).ok())
            .map(Some)
            .ok_or("unusable authority");
    }
    match field {
        Some(h) if h.is_empty() => Ok(None),
        Some(h) if forwarded::host(h.as_bytes()).is_none() => {
            Err("the Host header is not host[:port]")
        }
        other => Ok(other.cloned()),
    }
}

/// Whether the request asks to become a WebSocket, the one upgrade passed
/// on: a tunnel to anything else (`h2c`, a protocol of the application's
/// own) would carry requests the gateway never sees, forged identity fields
/// included. Any other `Upgrade` is dropped as the hop-by-hop field it is.
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    let websocket = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|p| p.eq_ignore_ascii_case("websocket"));
    websocket && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

pub(super) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Remove hop-by-hop headers, including any named in `Connection`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Fields only the gateway may send (`forwarded::is_asserted`), and fields
/// that could pass for ours with a CGI-style application
/// (`forwarded::is_underscore_alias`).
pub(super) fn drop_forged_fields(headers: &mut HeaderMap) {
    // Empty, as it almost always is, the list allocates nothing.
    let aliases: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            forwarded::is_asserted(k.as_str()) || forwarded::is_underscore_alias(k.as_str())
        })
        .cloned()
        .collect();
    for name in aliases {
        headers.remove(name);
    }
}

/// HTTP/2 may split `Cookie` over several fields; HTTP/1.1 wants one.
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if let Ok(v) = HeaderValue::from_str(&joined.join("; ")) {
        headers.insert(header::COOKIE, v);
    }
}

/// `X-Forwarded-For`, `Forwarded` (replaced, or appended to behind a
/// trusted front: `h1/forwarded.rs`), `X-Forwarded-Proto`, `X-Forwarded-Host`
/// and `X-Real-IP`.
pub(super) fn forwarded_headers(
    headers: &mut HeaderMap,
    info: &ConnInfo,
    host: Option<&HeaderValue>,
) {
    fn text(v: Option<&HeaderValue>) -> Option<&str> {
        v.and_then(|v| forwarded::visible(v.as_bytes()))
    }
    // The front's field, every line in order, as it is passed on; read
    // only from a trusted front (a client's own lines are replaced).
    let kept = info.front.as_ref().and_then(|front| {
        let lines = headers.get_all(front.header.name()).into_iter();
        front.passed_on(lines.map(|v| v.as_bytes()))
    });
    let values = Forwarded::new(kept.as_deref(), info, info.client, text(host));
    // Each value was written once into its own string, which becomes the
    // header value without another copy.
    let mut set = |name: HeaderName, value: String| {
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    };
    set(X_FORWARDED_FOR, values.xff);
    set(header::FORWARDED, values.forwarded);
    set(X_REAL_IP, values.real_ip);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(values.proto));
    // The client's own `X-Forwarded-Host` never passes, host or not: the
    // relay drops it too.
    headers.remove(&X_FORWARDED_HOST);
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn cookies_are_joined_and_mapped_ipv4_is_plain() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
        let mut h = HeaderMap::new();
        let info = ConnInfo::new(
            "[::ffff:10.1.2.3]:5000".parse().unwrap(),
            false,
            1,
            &Default::default(),
        );
        forwarded_headers(&mut h, &info, None);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    }

    #[test]
    fn forwarded_for_ipv6_and_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        let info = ConnInfo::new("[::1]:5000".parse().unwrap(), true, 1, &Default::default());
        h.insert("forwarded", "for=1.2.3.4".parse().unwrap());
        let host = HeaderValue::from_static("app.example.com");
        forwarded_headers(&mut h, &info, Some(&host));
        // From a client, its own lists are replaced.
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(h["x-real-ip"], "::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.com");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=https;host=\"app.example.com\""
        );
        // From a trusted front, its field is kept and the front appended;
        // every line counts, in order. The other field, which the front
        // left as the client wrote it, names the client the front named.
        let fronts = crate::real_ip::Fronts {
            proxies: serde_json::from_str(r#"["::1"]"#).unwrap(),
            header: Default::default(),
        };
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("forwarded", "for=7.7.7.7".parse().unwrap());
        let info = ConnInfo::new("[::1]:5000".parse().unwrap(), true, 1, &fronts).for_request(&h);
        forwarded_headers(&mut h, &info, Some(&host));
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 1.2.3.4, ::1");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(
            h["forwarded"],
            "for=1.2.3.4, for=\"[::1]\";proto=https;host=\"app.example.com\""
        );
        // A quote in the host cannot break out of the quoted string.
        let mut h = HeaderMap::new();
        let host = HeaderValue::from_static("evil\";x=\"y");
        let info = ConnInfo::new("[::1]:5000".parse().unwrap(), true, 1, &Default::default());
        forwarded_headers(&mut h, &info, Some(&host));
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=https;host=\"evil;x=y\""
        );
    }

    fn lengths(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn lengths_are_read_as_one_number() {
        assert_eq!(content_length(&lengths(&["0005"])), Some(5));
        assert_eq!(content_length(&lengths(&["5, 005", "5"])), Some(5));
        assert_eq!(content_length(&lengths(&["0"])), Some(0));
        for bad in [&["5", "6"][..], &["+5"], &["-1"], &[""], &["5,"], &["0x5"]] {
            assert_eq!(content_length(&lengths(bad)), None, "{bad:?}");
        }
        assert_eq!(content_length(&lengths(&["99999999999999999999999"])), None);
    }

    #[test]
    fn a_written_length_is_normalized_or_dropped() {
        let mut h = lengths(&["0005", "5"]);
        normalize_length(&mut h);
        assert_eq!(h.get_all(header::CONTENT_LENGTH).iter().count(), 1);
        assert_eq!(h[header::CONTENT_LENGTH], "5");
        let mut h = lengths(&["5", "6"]);
        normalize_length(&mut h);
        assert!(!h.contains_key(header::CONTENT_LENGTH));
    }
}
