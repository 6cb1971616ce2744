//! The browser client, served by the gateway itself under `realtime.path`:
//! `client.js` (a classic script that defines `globalThis.Pushgate`) and
//! `client.mjs` (an ES module re-exporting it). Both are embedded in the
//! binary, so the client always matches the wire protocol of the gateway
//! that serves it.
//!
//! They carry a content-derived `ETag` and a short `max-age`: browsers revalidate
//! after an upgrade and get a 304 otherwise.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::reply::{self, Body};

const CLIENT_JS: &str = include_str!("../../assets/client.js");
const CLIENT_MJS: &str = include_str!("../../assets/client.mjs");

/// One embedded file and its validator.
pub struct Asset {
    body: &'static str,
    etag: &'static str,
}

/// Look up an asset by its path under `realtime.path`.
pub fn find(rest: &str) -> Option<Asset> {
    match rest {
        "/client.js" => Some(Asset {
            body: CLIENT_JS,
            etag: ETAG_JS,
        }),
        "/client.mjs" => Some(Asset {
            body: CLIENT_MJS,
            etag: ETAG_MJS,
        }),
        _ => None,
    }
}

/// FNV-1a over the file, at compile time: stable across runs, new on every change.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// `"` + 16 hex digits + `"`, built at compile time.
const fn quoted_hex(v: u64) -> [u8; 18] {
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = digits[((v >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

const ETAG_JS_BYTES: [u8; 18] = quoted_hex(fnv1a(CLIENT_JS.as_bytes()));
const ETAG_MJS_BYTES: [u8; 18] = quoted_hex(fnv1a(CLIENT_MJS.as_bytes()));
const ETAG_JS: &str = match std::str::from_utf8(&ETAG_JS_BYTES) {
    Ok(s) => s,
    Err(_) => "\"client\"",
};
const ETAG_MJS: &str = match std::str::from_utf8(&ETAG_MJS_BYTES) {
    Ok(s) => s,
    Err(_) => "\"client-module\"",
};

impl Asset {
    /// Answer a GET or HEAD, with 304 when the browser's copy is current.
    pub fn respond(&self, method: &Method, headers: &HeaderMap) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let fresh = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == self.etag
            });
        let mut r = if fresh {
            let mut r = Response::new(reply::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else if method == Method::HEAD {
            let mut r = Response::new(reply::empty());
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
            r
        } else {
            Response::new(reply::full(self.body))
        };
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300, must-revalidate"),
        );
        h.insert(header::ETAG, HeaderValue::from_static(self.etag));
        // Public code: any page may load it, as a classic script or a module (CORS mode).
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ() {
        assert_eq!(ETAG_JS.len(), 18);
        assert!(ETAG_JS.starts_with('"') && ETAG_JS.ends_with('"'));
        assert_ne!(ETAG_JS, ETAG_MJS);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn revalidation_gets_304() {
        let asset = find("/client.js").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(ETAG_JS));
        assert_eq!(
            asset.respond(&Method::GET, &h).status(),
            StatusCode::NOT_MODIFIED
        );
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        let r = asset.respond(&Method::GET, &h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ETAG], ETAG_JS);
        assert!(find("/nope.js").is_none());
    }
}
