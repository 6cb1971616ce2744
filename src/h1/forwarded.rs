//! The values a proxy owes the application about the client (RFC 7239
//! `Forwarded` and the `X-Forwarded-*` family), computed once for both ways
//! a request is forwarded: hyper's (`proxy.rs`) and the relay's (`relay.rs`),
//! and the rules both apply to what the client sends toward those values:
//! which `Host` is one ([`host`]), which field names could pass for ours
//! ([`is_underscore_alias`]), and which fields only the gateway may send
//! ([`ASSERTED`]).

use std::fmt::Write;
use std::net::IpAddr;

use crate::conn_info::ConnInfo;
use crate::real_ip::RealIpHeader;

/// The forwarding fields for one request. From a client, its own
/// `X-Forwarded-For` and `Forwarded` are replaced by the gateway's, never
/// appended to: an application that reads the left-most address would
/// otherwise believe whatever the client wrote. From a trusted front
/// (`ConnInfo::front`), the field it names clients in is kept (as
/// `Fronts::passed_on` shows it) and the front appended, as one more proxy
/// in the chain does; the other field, which the front leaves as the
/// client wrote it, is replaced by the client the front named, then the
/// front. `X-Real-IP` is the client; `X-Forwarded-Host` is the request's
/// host unchanged.
pub struct Forwarded {
    pub xff: String,
    pub forwarded: String,
    pub proto: &'static str,
    /// The client's address as text (`X-Real-IP`).
    pub real_ip: String,
}

impl Forwarded {
    /// `kept`: the front's field as it is passed on (`Fronts::passed_on`),
    /// when the peer is a trusted front that sent it; `client`: who the
    /// request is from (`ConnInfo::client`, or `Fronts::client`).
    pub fn new(
        kept: Option<&str>,
        info: &ConnInfo,
        client: IpAddr,
        host: Option<&str>,
    ) -> Forwarded {
        let proto = if info.tls { "https" } else { "http" };
        // The hop we saw: behind a front the front, else the client (who
        // is the peer).
        let (hop, configured) = match &info.front {
            Some(front) => (info.peer.ip().to_canonical(), Some(front.header)),
            None => (client, None),
        };
        // Written once and copied: this runs for every proxied request,
        // and `Display` for an address is the slow part.
        let shown = show_ip(hop);
        let real_ip = if hop == client {
            shown.clone()
        } else {
            show_ip(client)
        };
        // What goes before the hop in each field: the front's own list in
        // the field it names clients in, else the client it named.
        let before = |field: RealIpHeader| -> Option<std::borrow::Cow<'_, str>> {
            match kept {
                Some(kept) if configured == Some(field) => Some(kept.into()),
                _ if hop != client => Some(match field {
                    RealIpHeader::XForwardedFor => real_ip.as_str().into(),
                    RealIpHeader::Forwarded => {
                        let mut text = String::with_capacity(real_ip.len() + 8);
                        push_for(&mut text, client, &real_ip);
                        text.into()
                    }
                }),
                _ => None,
            }
        };
        let mut xff = String::with_capacity(shown.len() + kept.map_or(0, |p| p.len() + 2));
        if let Some(prev) = before(RealIpHeader::XForwardedFor) {
            xff.push_str(&prev);
            xff.push_str(", ");
        }
        xff.push_str(&shown);
        let mut forwarded = String::with_capacity(64);
        if let Some(prev) = before(RealIpHeader::Forwarded) {
            forwarded.push_str(&prev);
            forwarded.push_str(", ");
        }
        push_for(&mut forwarded, hop, &shown);
        forwarded.push_str(";proto=");
        forwarded.push_str(proto);
        if let Some(h) = host {
            forwarded.push_str(";host=\"");
            forwarded.extend(h.chars().filter(|&c| c != '"'));
            forwarded.push('"');
        }
        Forwarded {
            xff,
            forwarded,
            proto,
            real_ip,
        }
    }
}

/// `for=` with an address (RFC 7239 §6: IPv6 quoted and bracketed).
fn push_for(out: &mut String, ip: IpAddr, shown: &str) {
    match ip {
        IpAddr::V4(_) => {
            out.push_str("for=");
            out.push_str(shown);
        }
        IpAddr::V6(_) => {
            out.push_str("for=\"[");
            out.push_str(shown);
            out.push_str("]\"");
        }
    }
}

/// An address as text: IPv4 by hand (digits, no formatting machinery),
/// IPv6 by `Display` (its compression rules are not worth repeating).
fn show_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        IpAddr::V6(v6) => {
            let mut text = String::with_capacity(39);
            let _ = write!(text, "{v6}");
            text
        }
    }
}

pub(crate) use crate::real_ip::visible;

/// `value` as a request's host, when it is `uri-host [":" port]` (RFC 9112
/// §3.2, RFC 3986 §3.2.2): a registered name or IPv4 address of unreserved,
/// percent-encoded and sub-delimiter characters, or a bracketed IP literal,
/// then an optional port of digits. Anything else (a space, a `\`, a `/`, a
/// `"`, a `user@`) is refused with 400 on both ways a request is forwarded:
/// it would reach the application's `Host` and our `Forwarded` as-is.
pub fn host(value: &[u8]) -> Option<&str> {
    let (name, port) = match value.first() {
        Some(b'[') => {
            let end = value.iter().position(|&b| b == b']')?;
            let literal = &value[1..end];
            let ok = !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b":.".contains(&b) || is_reg_name(b));
            (ok.then_some(&value[..=end])?, &value[end + 1..])
        }
        _ => match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let name_ok = name.first() == Some(&b'[') || name.iter().all(|&b| is_reg_name(b));
    (!name.is_empty() && port_ok && name_ok)
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// unreserved / pct-encoded / sub-delims (RFC 3986 §3.2.2).
fn is_reg_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

/// Request fields the gateway itself asserts to the application: the
/// sender of a client message (`X-Pushgate-Subject`, `X-Pushgate-Connection`,
/// set by `transport/send.rs`), and any identity a later check vouches for.
/// A client's own copy would let anyone speak as anyone wherever the
/// application trusts them, so every one of them, in any case and with `_`
/// for `-`, is dropped from client requests on both ways a request is
/// forwarded. The one list: a field the gateway starts to assert goes here.
/// The client's address is one of them: `X-Real-IP` is written by the
/// gateway ([`Forwarded`]); the other names applications and frameworks
/// read it under (`True-Client-IP` and `CF-Connecting-IP` of CDNs, Rails'
/// and PHP's `Client-IP`, …) are dropped, never passed on from a client.
pub const ASSERTED: [&str; 9] = [
    "x-pushgate-subject",
    "x-pushgate-connection",
    "x-real-ip",
    "true-client-ip",
    "client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
];

/// Whether a client's request field is one the gateway asserts
/// ([`ASSERTED`]), or an underscore alias of one.
pub fn is_asserted(name: &str) -> bool {
    ASSERTED.iter().any(|ours| same_field(ours, name))
}

/// A request field name with `_` that CGI-style servers (PHP, WSGI, Rack)
/// would read as a field the proxy owns: they turn both `-` and `_` into
/// `_`, so `X_Forwarded_For: 1.2.3.4` would land where the application looks
/// for our `X-Forwarded-For`, and `Transfer_Encoding` where it looks for the
/// framing. Such fields are dropped on both ways a request is forwarded
/// (nginx drops every name with `_` by default; this drops only the ones
/// that can impersonate ours). Only names with a `-` have such an alias.
pub fn is_underscore_alias(name: &str) -> bool {
    const OURS: [&str; 5] = [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "content-length",
        "transfer-encoding",
    ];
    name.contains('_') && OURS.iter().any(|ours| same_field(ours, name))
}

/// `name` is `ours` (lower case) in any case, with `_` for any `-`.
fn same_field(ours: &str, name: &str) -> bool {
    ours.len() == name.len()
        && ours
            .bytes()
            .zip(name.bytes())
            .all(|(o, n)| o == n.to_ascii_lowercase() || (o == b'-' && n == b'_'))
}

#[cfg(test)]
mod tests {
    use super::{host, is_asserted, is_underscore_alias, show_ip};

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut ips: Vec<std::net::IpAddr> = [0u8, 7, 9, 10, 42, 99, 100, 199, 200, 255]
            .iter()
            .map(|&o| std::net::IpAddr::from([o, 255 - o, o / 2, 1]))
            .collect();
        ips.push("2001:db8::1".parse().unwrap());
        ips.push("::".parse().unwrap());
        for ip in ips {
            assert_eq!(show_ip(ip), ip.to_string());
        }
    }

    #[test]
    fn a_host_is_a_name_or_address_and_a_port() {
        for ok in [
            "app.example.com",
            "app.example.com:8443",
            "localhost:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8443",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a_b",
        ] {
            assert_eq!(host(ok.as_bytes()), Some(ok), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a b",
            "a\\",
            "a\\b",
            "a/b",
            "a?b",
            "a#b",
            "a\"b",
            "user@host",
            "h:8x",
            "h:80:90",
            "[::1",
            "[::1]x",
            "[]",
            "[::1]:8x",
            "h\t",
            "h\r\nx: y",
            "\u{e9}t\u{e9}",
        ] {
            assert_eq!(host(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn underscore_aliases_of_our_fields_are_caught() {
        for alias in [
            "X_Forwarded_For",
            "x_forwarded-host",
            "X-Forwarded_Proto",
            "Content_Length",
            "TRANSFER_ENCODING",
        ] {
            assert!(is_underscore_alias(alias), "{alias}");
        }
        for other in [
            "X-Forwarded-For",
            "content-length",
            "X_Request_Id",
            "x_forwarded_forr",
            "my_header",
        ] {
            assert!(!is_underscore_alias(other), "{other}");
        }
    }

    #[test]
    fn asserted_fields_are_caught_in_any_spelling() {
        for forged in [
            "x-pushgate-subject",
            "X-Pushgate-Subject",
            "X-PUSHGATE-CONNECTION",
            "X_Pushgate_Subject",
            "x-pushgate_connection",
        ] {
            assert!(is_asserted(forged), "{forged}");
        }
        for other in [
            "x-pushgate-subjects",
            "x-pushgate",
            "x-subject",
            "X_Pushgate",
        ] {
            assert!(!is_asserted(other), "{other}");
        }
    }
}
