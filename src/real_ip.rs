//! Who a request is from when the gateway stands behind a front of the
//! operator's own (a load balancer, a CDN, another proxy): the peers listed
//! in `listen.trusted_proxies` are believed when they name the client in
//! `X-Forwarded-For` or `Forwarded`; nobody else is.
//!
//! The rule is nginx's `real_ip_recursive on`: walk the addresses a request
//! names from the right (the hop nearest to us) and skip every trusted one;
//! the first address that is not trusted is the client. A client can write
//! anything to the left of what the fronts append, never to the right, so
//! the right-most untrusted address is the one a trusted front vouched for.
//! Every limit, the logs and what the application is told use that address.
//!
//! Pure: no I/O, no config beyond the parsed CIDR list.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

/// The operator's fronts: CIDR blocks (`10.0.0.0/8`) or single addresses.
/// Cheap to clone: every connection from a front holds the list in force
/// when it was accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the fronts (an IPv4 client on a dual-stack
    /// socket, `::ffff:a.b.c.d`, is matched as the IPv4 address it is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// nginx's recursive walk: from the peer leftwards while trusted. An
    /// entry that is not an address ends the walk at the last one that was
    /// (no front writes garbage, so a client did, and the address to its
    /// right is the nearest one a front vouched for).
    fn walk(&self, peer: IpAddr, named: &[Option<IpAddr>]) -> IpAddr {
        let mut client = peer;
        for entry in named.iter().rev() {
            if !self.contains(client) {
                break;
            }
            match entry {
                Some(ip) => client = ip.to_canonical(),
                None => break,
            }
        }
        client
    }
}

/// Which field a front names the client in (`listen.real_ip_header`,
/// nginx's `real_ip_header`). Only that one is read: a front that writes
/// `Forwarded` passes a client's own `X-Forwarded-For` on untouched, and
/// the other way round, so reading both would let the client choose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RealIpHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

impl RealIpHeader {
    /// The field's name, lowercase.
    pub fn name(self) -> &'static str {
        match self {
            RealIpHeader::XForwardedFor => "x-forwarded-for",
            RealIpHeader::Forwarded => "forwarded",
        }
    }
}

/// The fronts in force and the field they name clients in: what a
/// connection from one of them believes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fronts {
    pub proxies: TrustedProxies,
    pub header: RealIpHeader,
}

impl Fronts {
    /// The client of a request that arrived from the trusted `peer` with
    /// these `lines` of the front's field (every line, in order: a front
    /// that adds a line of its own, as HAProxy does, is read as the last
    /// entries). Read byte by byte: an entry that is not an address (not
    /// even text) ends the walk there, and never hides the entries to its
    /// right, which the fronts wrote. No field: the peer.
    pub fn client<'a>(&self, peer: IpAddr, lines: impl IntoIterator<Item = &'a [u8]>) -> IpAddr {
        let entries = lines
            .into_iter()
            .flat_map(|line| line.split(|&b| b == b','))
            .map(|entry| std::str::from_utf8(entry.trim_ascii()).ok());
        let named: Vec<Option<IpAddr>> = match self.header {
            RealIpHeader::XForwardedFor => entries.map(|e| e.and_then(address)).collect(),
            // An element without `for=` names nobody and is passed over.
            RealIpHeader::Forwarded => entries
                .filter_map(|e| match e {
                    Some(element) => forwarded_for(element),
                    None => Some(None),
                })
                .collect(),
        };
        self.proxies.walk(peer.to_canonical(), &named)
    }

    /// The front's `lines` as the application gets them, before the
    /// gateway appends the front: every entry that is visible text kept,
    /// any other written `unknown` (`for=unknown` in `Forwarded`), so the
    /// entries the fronts appended keep their place.
    pub fn passed_on<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
        let mut text = String::new();
        for entry in lines.into_iter().flat_map(|l| l.split(|&b| b == b',')) {
            if !text.is_empty() {
                text.push_str(", ");
            }
            match visible(entry.trim_ascii()) {
                Some(shown) => text.push_str(shown),
                None if self.header == RealIpHeader::Forwarded => text.push_str("for=unknown"),
                None => text.push_str("unknown"),
            }
        }
        (!text.is_empty()).then_some(text)
    }
}

/// `bytes` as text, when they are non-empty visible ASCII (spaces and tabs
/// included): what may be passed on in a field value as it is (the rule of
/// `HeaderValue::to_str`). The proxy's one judgement of a forwarding
/// field's text (`h1/forwarded.rs` uses it too).
pub(crate) fn visible(bytes: &[u8]) -> Option<&str> {
    let ok = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    ok.then(|| std::str::from_utf8(bytes).ok()).flatten()
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.iter()
            .map(|text| parse_net(text).map_err(serde::de::Error::custom))
            .collect::<Result<Arc<[_]>, _>>()
            .map(TrustedProxies)
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`/32` or `/128`).
fn parse_net(text: &str) -> Result<IpNet, String> {
    parse_written(text).map(unmapped)
}

/// An IPv4-mapped block (`::ffff:10.0.0.0/104`) as the IPv4 block it maps:
/// addresses are matched in their IPv4 form.
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

fn parse_written(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = IpNet::from_str(text) {
        // `10.1.2.3/8` is almost certainly a typo for a block: say so.
        if net.network() != net.addr() {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}`?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    IpAddr::from_str(text)
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not an address or a CIDR block (e.g. 10.0.0.0/8)"))
}

/// One `X-Forwarded-For` entry: an address, with a port or IPv6 brackets
/// as some fronts write it.
fn address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches('"');
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(ip);
    }
    if let Ok(sock) = SocketAddr::from_str(entry) {
        return Some(sock.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| IpAddr::from_str(inner).ok())
}

/// The `for=` of one `Forwarded` element (RFC 7239 §4), when it names an
/// address (`for=unknown` and obfuscated `_names` do not: `Some(None)`, an
/// entry that stops the walk). An element without `for=` names nobody.
fn forwarded_for(element: &str) -> Option<Option<IpAddr>> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| address(value.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> Fronts {
        Fronts {
            proxies: TrustedProxies(list.iter().map(|t| parse_net(t).unwrap()).collect()),
            header: RealIpHeader::XForwardedFor,
        }
    }

    fn reading_forwarded(mut fronts: Fronts) -> Fronts {
        fronts.header = RealIpHeader::Forwarded;
        fronts
    }

    fn lines<'a>(list: &[&'a str]) -> Vec<&'a [u8]> {
        list.iter().map(|l| l.as_bytes()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        let front = ip("10.0.0.5");
        let client = |l: &[&str]| t.client(front, lines(l));
        // A forged left part is passed over: the front appended the truth.
        assert_eq!(client(&["6.6.6.6, 203.0.113.7"]), ip("203.0.113.7"));
        // Several fronts in a row are all skipped.
        assert_eq!(
            client(&["6.6.6.6, 203.0.113.7, 192.168.1.1, 10.9.9.9"]),
            ip("203.0.113.7")
        );
        // Several lines count as one list, in order (HAProxy adds a line).
        assert_eq!(client(&["6.6.6.6", "203.0.113.7"]), ip("203.0.113.7"));
        // Every address trusted: the left-most.
        assert_eq!(client(&["10.1.1.1, 10.2.2.2"]), ip("10.1.1.1"));
        // Nothing named: the front itself.
        assert_eq!(client(&[]), front);
        // An untrusted peer is the client whatever it writes.
        assert_eq!(
            t.client(ip("198.51.100.9"), lines(&["6.6.6.6"])),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_nearest_vouched_address() {
        let t = trusted(&["10.0.0.0/8"]);
        let front = ip("10.0.0.5");
        assert_eq!(
            t.client(front, lines(&["nonsense, 10.3.3.3"])),
            ip("10.3.3.3")
        );
        assert_eq!(t.client(front, lines(&["1.2.3.4, nonsense"])), front);
        // Bytes that are not even text hide nothing to their right: the
        // front wrote `<what the client sent>, <the client>` on one line.
        let line: &[u8] = b"\x80, 203.0.113.7";
        assert_eq!(t.client(front, [line]), ip("203.0.113.7"));
        assert_eq!(t.passed_on([line]).as_deref(), Some("unknown, 203.0.113.7"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let t = trusted(&["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(
            t.client(ip("::ffff:10.0.0.5"), lines(&["203.0.113.7:4711"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client(
                ip("2001:db8::1"),
                lines(&["[2001:db8:1::9]:80, 2001:db9::7"])
            ),
            ip("2001:db9::7")
        );
        assert!(t.proxies.contains(ip("::ffff:10.1.2.3")));
        // A mapped block in the list matches the IPv4 addresses it maps.
        let mapped = trusted(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.proxies.contains(ip("10.9.9.9")));
        assert!(mapped.proxies.contains(ip("::ffff:10.9.9.9")));
        assert!(!mapped.proxies.contains(ip("11.0.0.1")));
    }

    #[test]
    fn only_the_configured_field_is_read() {
        let front = ip("10.0.0.5");
        let t = reading_forwarded(trusted(&["10.0.0.0/8"]));
        let fwd = ["for=6.6.6.6;proto=http, for=\"[2001:db8::7]:4711\";proto=https"];
        assert_eq!(t.client(front, lines(&fwd)), ip("2001:db8::7"));
        assert_eq!(
            t.client(front, lines(&["for=1.1.1.1, For=203.0.113.7;by=10.0.0.5"])),
            ip("203.0.113.7")
        );
        // `for=unknown` stops the walk; an element without `for=` is no entry.
        assert_eq!(t.client(front, lines(&["for=1.1.1.1, for=unknown"])), front);
        assert_eq!(
            t.client(front, lines(&["for=1.1.1.1, proto=https"])),
            ip("1.1.1.1")
        );
        // Reading X-Forwarded-For, a Forwarded line is an address-less
        // entry: the walk stops at the front.
        let x = trusted(&["10.0.0.0/8"]);
        assert_eq!(x.client(front, lines(&["for=203.0.113.8"])), front);
    }

    #[test]
    fn blocks_and_addresses_parse_and_typos_are_named() {
        assert!(parse_net("10.0.0.0/8").is_ok());
        assert!(parse_net("192.168.1.1").is_ok());
        assert!(parse_net("::1").is_ok());
        assert!(parse_net("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_net("ten").unwrap_err().contains("not an address"));
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}
