//! The PROXY protocol header (versions 1 and 2, as HAProxy's `send-proxy`
//! and `send-proxy-v2` and nginx's `proxy_protocol on` send it) that a TCP
//! front writes before anything else on a connection, naming the client it
//! accepted. With `listen.proxy_protocol` every public connection must
//! start with one; the source it names is the client from then on.
//!
//! Pure: bytes in, a verdict out. The reader in `server/front.rs` reads
//! until [`parse`] stops answering [`Header::Incomplete`], and hands what
//! followed the header (a TLS ClientHello, a request) to whoever reads
//! next.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The most a header can take: v1's 107 bytes, or v2's 16 plus its length
/// (addresses and TLVs); more than this is refused rather than buffered.
pub const MAX_HEADER: usize = 16 + 512;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX: usize = 107;

/// Whose connection a whole header says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A client's, from this address (TCP over IPv4 or IPv6).
    Client(SocketAddr),
    /// The front's own (v2 `LOCAL`: a health check).
    Front,
    /// Someone's the header does not name (v1 `UNKNOWN`, or another
    /// address family): not the front's, so nothing on it is the front's
    /// word either.
    Unnamed,
}

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// A whole header of `len` bytes, and whose connection it is.
    Complete { len: usize, source: Source },
    /// Could still become a header: read more.
    Incomplete,
    /// Not a PROXY header, or a malformed one.
    Invalid(&'static str),
}

/// Judge the bytes at the start of a connection.
pub fn parse(buf: &[u8]) -> Header {
    if buf.len() < V2_SIGNATURE.len() {
        let v1 = b"PROXY ";
        let n = buf.len().min(v1.len());
        return if buf[..n] == v1[..n] || V2_SIGNATURE.starts_with(buf) {
            Header::Incomplete
        } else {
            Header::Invalid("no PROXY protocol header")
        };
    }
    if buf.starts_with(V2_SIGNATURE) {
        v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        v1(buf)
    } else {
        Header::Invalid("no PROXY protocol header")
    }
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`
fn v1(buf: &[u8]) -> Header {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Header::Invalid("PROXY v1 header longer than 107 bytes")
        } else {
            Header::Incomplete
        };
    };
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Header::Invalid("PROXY v1 header is not text");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header::Complete {
            len,
            source: Source::Unnamed,
        },
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (Ok(src), Ok(dst)) = (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) else {
                return Header::Invalid("PROXY v1 address is not an address");
            };
            let v4 = *family == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Header::Invalid("PROXY v1 address does not match its family");
            }
            match (port(sport), port(dport)) {
                (Some(sport), Some(_)) => Header::Complete {
                    len,
                    source: Source::Client(SocketAddr::new(src, sport)),
                },
                _ => Header::Invalid("PROXY v1 port is not a port"),
            }
        }
        _ => Header::Invalid("PROXY v1 header is malformed"),
    }
}

/// A decimal port without sign or leading zeros, as the spec writes them.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The binary form: signature, version and command, family, length, then
/// the addresses (and TLVs, which are skipped).
fn v2(buf: &[u8]) -> Header {
    if buf.len() < 16 {
        return Header::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Header::Invalid("PROXY v2 header with another version");
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if len > MAX_HEADER {
        return Header::Invalid("PROXY v2 header too long");
    }
    if buf.len() < len {
        return Header::Incomplete;
    }
    let body = &buf[16..len];
    match ver_cmd & 0x0f {
        // LOCAL: the front's own connection (a health check).
        0 => {
            return Header::Complete {
                len,
                source: Source::Front,
            };
        }
        1 => {}
        _ => return Header::Invalid("PROXY v2 header with an unknown command"),
    }
    let family = buf[13];
    let source = match family {
        // TCP over IPv4.
        0x11 => {
            if body.len() < 12 {
                return Header::Invalid("PROXY v2 IPv4 addresses cut short");
            }
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Source::Client(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // TCP over IPv6.
        0x21 => {
            if body.len() < 36 {
                return Header::Invalid("PROXY v2 IPv6 addresses cut short");
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Source::Client(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC, UDP, unix sockets: nothing we can key a client by.
        _ => Source::Unnamed,
    };
    Header::Complete { len, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v1_headers_name_their_source() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Header::Complete {
                len: 45,
                source: Source::Client("192.0.2.1:56324".parse().unwrap())
            }
        );
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 443\r\n";
        assert!(matches!(
            parse(line),
            Header::Complete { source: Source::Client(s), .. } if s.ip() == "2001:db8::1".parse::<IpAddr>().unwrap()
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Header::Complete {
                len: 15,
                source: Source::Unnamed
            }
        );
    }

    #[test]
    fn every_prefix_of_a_header_asks_for_more() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n".to_vec();
        let v2 = v2_header(
            1,
            0x11,
            &[192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 1, 187],
        );
        for whole in [v1, v2] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Header::Incomplete, "cut at {cut}");
            }
            assert!(matches!(parse(&whole), Header::Complete { len, .. } if len == whole.len()));
        }
    }

    #[test]
    fn v2_headers_name_their_source_and_skip_tlvs() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 1, 187];
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'o', b'k']);
        let h = v2_header(1, 0x11, &body);
        assert_eq!(
            parse(&h),
            Header::Complete {
                len: h.len(),
                source: Source::Client("192.0.2.1:56324".parse().unwrap())
            }
        );
        let mut six = [0u8; 36];
        six[0] = 0x20;
        six[1] = 0x01;
        six[15] = 7;
        six[32] = 0;
        six[33] = 80;
        let h = v2_header(1, 0x21, &six);
        assert!(matches!(
            parse(&h),
            Header::Complete { source: Source::Client(s), .. } if s == "[2001::7]:80".parse().unwrap()
        ));
        // LOCAL is the front's own; unix sockets name no client.
        assert!(matches!(
            parse(&v2_header(0, 0x00, &[])),
            Header::Complete {
                source: Source::Front,
                ..
            }
        ));
        assert!(matches!(
            parse(&v2_header(1, 0x31, &[0; 216])),
            Header::Complete {
                source: Source::Unnamed,
                ..
            }
        ));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 056324 443\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 443\r\n",
            b"PROXY TCP4 192.0.2.1 2001:db8::1 1 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 99999 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n",
            b"PROXY HTTP 1 2 3 4\r\n",
        ] {
            assert!(matches!(parse(bad), Header::Invalid(_)), "{bad:?}");
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(parse(&long), Header::Invalid(_)));
        assert!(matches!(
            parse(&v2_header(1, 0x11, &[1, 2, 3])),
            Header::Invalid(_)
        ));
        let mut wrong_version = v2_header(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(matches!(parse(&wrong_version), Header::Invalid(_)));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&huge), Header::Invalid(_)));
    }
}
