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

    /// The client of a request that arrived from the trusted `peer` with
    /// these `X-Forwarded-For` values (every line, in order) or, when it
    /// has none, these `Forwarded` values. Nothing usable named: the peer.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        xff: impl IntoIterator<Item = &'a str>,
        forwarded: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut named: Vec<Option<IpAddr>> = xff
            .into_iter()
            .flat_map(|line| line.split(','))
            .map(|entry| address(entry.trim()))
            .collect();
        if named.is_empty() {
            named = forwarded
                .into_iter()
                .flat_map(|line| line.split(','))
                .filter_map(forwarded_for)
                .collect();
        }
        self.walk(peer.to_canonical(), &named)
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

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|t| parse_net(t).unwrap()).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        let front = ip("10.0.0.5");
        // A forged left part is passed over: the front appended the truth.
        assert_eq!(
            t.client(front, ["6.6.6.6, 203.0.113.7"], []),
            ip("203.0.113.7")
        );
        // Several fronts in a row are all skipped.
        assert_eq!(
            t.client(front, ["6.6.6.6, 203.0.113.7, 192.168.1.1, 10.9.9.9"], []),
            ip("203.0.113.7")
        );
        // Several lines count as one list, in order (HAProxy adds a line).
        assert_eq!(
            t.client(front, ["6.6.6.6", "203.0.113.7"], []),
            ip("203.0.113.7")
        );
        // Every address trusted: the left-most.
        assert_eq!(t.client(front, ["10.1.1.1, 10.2.2.2"], []), ip("10.1.1.1"));
        // Nothing named: the front itself.
        assert_eq!(t.client(front, [], []), front);
        // An untrusted peer is the client whatever it writes.
        assert_eq!(
            t.client(ip("198.51.100.9"), ["6.6.6.6"], []),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_nearest_vouched_address() {
        let t = trusted(&["10.0.0.0/8"]);
        let front = ip("10.0.0.5");
        assert_eq!(t.client(front, ["nonsense, 10.3.3.3"], []), ip("10.3.3.3"));
        assert_eq!(t.client(front, ["1.2.3.4, nonsense"], []), front);
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let t = trusted(&["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(
            t.client(ip("::ffff:10.0.0.5"), ["203.0.113.7:4711"], []),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client(ip("2001:db8::1"), ["[2001:db8:1::9]:80, 2001:db9::7"], []),
            ip("2001:db9::7")
        );
        assert!(t.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let t = trusted(&["10.0.0.0/8"]);
        let front = ip("10.0.0.5");
        let fwd = ["for=6.6.6.6;proto=http, for=\"[2001:db8::7]:4711\";proto=https"];
        assert_eq!(t.client(front, [], fwd), ip("2001:db8::7"));
        assert_eq!(
            t.client(front, [], ["for=1.1.1.1, For=203.0.113.7;by=10.0.0.5"]),
            ip("203.0.113.7")
        );
        // `for=unknown` stops the walk; X-Forwarded-For wins when present.
        assert_eq!(t.client(front, [], ["for=1.1.1.1, for=unknown"]), front);
        assert_eq!(t.client(front, ["203.0.113.8"], fwd), ip("203.0.113.8"));
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
