//! The values a proxy owes the application about the client (RFC 7239
//! `Forwarded` and the `X-Forwarded-*` family), computed once for both ways
//! a request is forwarded: hyper's (`proxy.rs`) and the relay's (`relay.rs`).

use std::fmt::Write;
use std::net::IpAddr;

use crate::conn_info::ConnInfo;

/// `X-Forwarded-For` (the previous value with the client appended),
/// `Forwarded` (likewise) and `X-Forwarded-Proto`; `X-Forwarded-Host` is the
/// request's host unchanged.
pub struct Forwarded {
    pub xff: String,
    pub forwarded: String,
    pub proto: &'static str,
}

impl Forwarded {
    /// `prev_*`: what the request brought, if anything usable.
    pub fn new(
        prev_xff: Option<&str>,
        prev_forwarded: Option<&str>,
        info: &ConnInfo,
        host: Option<&str>,
    ) -> Forwarded {
        // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = info.peer.ip().to_canonical();
        let proto = if info.tls { "https" } else { "http" };
        // Writes to a String cannot fail.
        let mut xff = String::with_capacity(48);
        if let Some(prev) = prev_xff {
            let _ = write!(xff, "{prev}, ");
        }
        let _ = write!(xff, "{ip}");
        let mut forwarded = String::with_capacity(64);
        if let Some(prev) = prev_forwarded {
            let _ = write!(forwarded, "{prev}, ");
        }
        let _ = match ip {
            IpAddr::V4(v4) => write!(forwarded, "for={v4};proto={proto}"),
            IpAddr::V6(v6) => write!(forwarded, "for=\"[{v6}]\";proto={proto}"),
        };
        if let Some(h) = host {
            forwarded.push_str(";host=\"");
            forwarded.extend(h.chars().filter(|&c| c != '"'));
            forwarded.push('"');
        }
        Forwarded {
            xff,
            forwarded,
            proto,
        }
    }
}

/// A header value's text, unless it is empty or not visible ASCII (the
/// rule of `HeaderValue::to_str`).
pub fn visible(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty()
        && value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    // All ASCII, so always UTF-8.
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}
