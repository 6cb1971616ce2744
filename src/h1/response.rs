//! Response heads as the HTTP/1 relay (`relay.rs`) reads them from a
//! backend: how the body is framed, whether the connection may carry
//! another request, and the head rewritten for the client. What hyper's
//! client would refuse is refused here too (`framing.rs` holds the length
//! rules both read by).

use std::io::Write;

use http::Method;

use super::framing::{MAX_RESPONSE_HEAD, transfer_codings};
use super::{is_hop_by_hop, write_field};

/// Header fields a backend's answer may have, as many as hyper's client
/// takes; more is refused.
const MAX_RESPONSE_HEADERS: usize = 100;

/// How the body of a backend's answer is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: an answer to `HEAD`, a 204 or a 304.
    Empty,
    Length(u64),
    /// Passed on as it comes, chunk framing included.
    Chunked,
    /// Until the backend closes; the client's connection closes too.
    UntilClose,
}

/// A backend's final answer head, rewritten for the client.
#[derive(Debug)]
pub struct Inbound {
    /// Bytes of the backend's buffer the head took.
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The backend connection may carry another request afterwards.
    pub reusable: bool,
    /// The head to send the client.
    pub head: Vec<u8>,
    /// The answer passes through unbuffered (`streaming.rs`).
    pub streams: bool,
}

#[derive(Debug)]
pub enum Response {
    Final(Inbound),
    /// A 1xx informational answer of this many bytes, skipped (as the hyper
    /// client does).
    Interim(usize),
    Partial,
    /// Not an answer the relay can pass on.
    Unusable(&'static str),
}

/// Parse the backend's answer head at the front of `buf` and write the head
/// for the client. `close`: the client's connection ends after this answer.
pub fn response(buf: &[u8], method: &Method, close: bool, date: &[u8]) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => return Response::Partial,
        Ok(httparse::Status::Partial) => return Response::Unusable("answer head too large"),
        Err(_) => return Response::Unusable("malformed answer head"),
    };
    let status = parsed.code.unwrap_or(0);
    match status {
        0..=99 => return Response::Unusable("status below 100"),
        101 => return Response::Unusable("switched protocols unasked"),
        100..=199 => return Response::Interim(len),
        _ => {}
    }
    let judged = match Judged::read(&parsed, method, status) {
        Ok(judged) => judged,
        Err(why) => return Response::Unusable(why),
    };
    let head = judged.write_head(&parsed, len, status, close, date);
    let field = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let streams = super::streaming::streams(
        field("content-type"),
        field(super::streaming::ACCEL_BUFFERING),
    );
    Response::Final(Inbound {
        len,
        status,
        framing: judged.framing,
        reusable: judged.reusable,
        head,
        streams,
    })
}

/// What an answer's fields say about its framing and its connection.
struct Judged<'h> {
    framing: Framing,
    reusable: bool,
    /// The one `Content-Length` the answer states.
    length: Option<u64>,
    /// The fields `Connection` names: hop-by-hop, not passed on.
    named: Vec<&'h [u8]>,
}

impl<'h> Judged<'h> {
    /// Read the framing fields of a final answer (`status` 200 and up) to
    /// `method`; `Err`: why the relay cannot pass the answer on.
    fn read(
        parsed: &httparse::Response<'_, 'h>,
        method: &Method,
        status: u16,
    ) -> Result<Judged<'h>, &'static str> {
        let mut reusable = parsed.version == Some(1);
        let mut length: Option<u64> = None;
        let mut named: Vec<&[u8]> = Vec::new();
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        reusable = false;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        named.push(token);
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                for v in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    let n = std::str::from_utf8(v)
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok());
                    match (n, length) {
                        (Some(n), None) => length = Some(n),
                        (Some(n), Some(l)) if n == l => {}
                        _ => return Err("invalid Content-Length"),
                    }
                }
            }
        }
        let (coding_last, chunked_codings) = transfer_codings(
            parsed
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
                .map(|h| h.value),
        );
        if coding_last.is_some() && parsed.version != Some(1) {
            // RFC 9112 §6.1: faulty framing, as hyper's client also judges it.
            return Err("Transfer-Encoding in an HTTP/1.0 answer");
        }
        if chunked_codings > 1 {
            // RFC 9112 §6.1: chunked is applied at most once; which of two
            // chunked layers ends the body is a guess no answer should need.
            return Err("chunked applied more than once");
        }
        if coding_last.is_some() && length.is_some() {
            // RFC 9112 §6.3: Transfer-Encoding wins and Content-Length goes, but
            // such an answer may be an attempt at response splitting: this one
            // is passed on, and the connection is not trusted with another.
            reusable = false;
        }
        let chunked = coding_last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        if coding_last.is_some() && !chunked {
            // A body coded with something else last (gzip, say) could only be
            // read until the close and passed on as coded bytes the client was
            // never told of: refused, as nginx refuses it.
            return Err("a transfer coding other than chunked");
        }
        let framing = if *method == Method::HEAD || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else {
            match length {
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }
        };
        if framing == Framing::UntilClose {
            reusable = false;
        }
        if framing == Framing::Empty {
            // Where a bodiless answer ends is a rule the backend may not keep:
            // one that sends a body after a HEAD answer, a 204 or a 304 sends
            // it at a time of its choosing, perhaps after the connection's
            // last check, where it would be read as the next client's answer.
            // Not trusted with another request.
            reusable = false;
        }
        Ok(Judged {
            framing,
            reusable,
            length,
            named,
        })
    }

    /// The head for the client: the status line, the backend's fields but
    /// the framing ones and those that stop here, then the relay's own
    /// framing field, a `Date` if the backend sent none, and `Connection:
    /// close` when this answer ends the connection.
    fn write_head(
        &self,
        parsed: &httparse::Response<'_, 'h>,
        len: usize,
        status: u16,
        close: bool,
        date: &[u8],
    ) -> Vec<u8> {
        let (framing, named) = (self.framing, &self.named);
        let mut head = Vec::with_capacity(len + 64);
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .or(parsed.reason)
            .unwrap_or("");
        let _ = write!(head, "HTTP/1.1 {status} {reason}\r\n");
        // The framing fields are the relay's to write, whatever `Connection`
        // names: a single `Content-Length`, or the `Transfer-Encoding` of a
        // chunked body passed on as it is.
        let mut has_date = false;
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if framing == Framing::Chunked {
                    write_field(&mut head, h.name, h.value);
                }
                continue;
            }
            let named_hop = named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()));
            // The application's word to the proxy, judged below: not passed on.
            let accel = h
                .name
                .eq_ignore_ascii_case(super::streaming::ACCEL_BUFFERING);
            if !is_hop_by_hop(h.name) && !named_hop && !accel {
                write_field(&mut head, h.name, h.value);
                // A `Date` that `Connection` named is gone: one is added below.
                has_date |= h.name.eq_ignore_ascii_case("date");
            }
        }
        let length = match framing {
            Framing::Length(n) => Some(n),
            // What a GET would have had: meaningful for HEAD and 304, not 204.
            Framing::Empty if status != 204 => self.length,
            _ => None,
        };
        if let Some(n) = length {
            let _ = write!(head, "content-length: {n}\r\n");
        }
        if !has_date {
            head.extend_from_slice(b"date: ");
            head.extend_from_slice(date);
            head.extend_from_slice(b"\r\n");
        }
        if close || framing == Framing::UntilClose {
            head.extend_from_slice(b"connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(raw: &str, method: Method, close: bool) -> (Inbound, String) {
        match response(
            raw.as_bytes(),
            &method,
            close,
            b"Mon, 23 Nov 2026 18:00:00 GMT",
        ) {
            Response::Final(i) => {
                let head = String::from_utf8(i.head.clone()).unwrap();
                (i, head)
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn answers_keep_their_framing() {
        let (i, head) = answer(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nX-App: y\r\n\r\nhello",
            Method::GET,
            false,
        );
        assert_eq!(
            (i.status, i.framing, i.reusable),
            (200, Framing::Length(5), true)
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nX-App: y\r\ncontent-length: 5\r\ndate: Mon, 23 Nov 2026 18:00:00 GMT\r\n\r\n"
        );
        let (i, head) = answer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nDate: x\r\n\r\n",
            Method::GET,
            true,
        );
        assert_eq!(i.framing, Framing::Chunked);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: x\r\nconnection: close\r\n\r\n"
        );
        let (i, head) = answer("HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\n", Method::GET, false);
        assert_eq!((i.framing, i.reusable), (Framing::UntilClose, false));
        assert!(head.ends_with("connection: close\r\n\r\n"), "{head}");
        let (i, _) = answer(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!((i.framing, i.reusable), (Framing::Length(1), false));
        for (raw, method) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                Method::HEAD,
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", Method::GET),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                Method::GET,
            ),
        ] {
            let (i, head) = answer(raw, method, false);
            assert_eq!(i.framing, Framing::Empty, "{raw}");
            assert!(
                !i.reusable,
                "{raw}: a bodiless answer's connection is reused"
            );
            assert_eq!(
                head.contains("content-length: 10"),
                raw.contains("Content-Length")
            );
        }
    }

    #[test]
    fn framing_fields_are_the_relays_own() {
        // `Connection` may not take the framing away from the client.
        let (i, head) = answer(
            "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!(i.framing, Framing::Chunked);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        let (i, head) = answer(
            "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!(i.framing, Framing::Length(5));
        assert_eq!(head.matches("content-length").count(), 1, "{head}");
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        let (_, head) = answer(
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
            false,
        );
        assert!(!head.contains("content-length"), "{head}");
        // A Date that Connection names is replaced, not lost.
        let (_, head) = answer(
            "HTTP/1.1 200 OK\r\nConnection: date\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!(
            head.to_ascii_lowercase().matches("date: ").count(),
            1,
            "{head}"
        );
        assert!(!head.contains("1970"), "{head}");
        // Both framings: Transfer-Encoding is followed, Content-Length goes,
        // and the connection is not reused.
        let (i, head) = answer(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!((i.framing, i.reusable), (Framing::Chunked, false));
        assert!(!head.contains("content-length"), "{head}");
        // Codings over several fields read as one list: chunked is last.
        let (i, _) = answer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!((i.framing, i.reusable), (Framing::Chunked, true));
        // Leading zeros are digits (RFC 9110 §8.6: 1*DIGIT).
        let (i, _) = answer(
            "HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!(i.framing, Framing::Length(7));
    }

    #[test]
    fn interim_and_unusable_answers() {
        let m = Method::GET;
        assert!(matches!(
            response(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200",
                &m,
                false,
                b""
            ),
            Response::Interim(40)
        ));
        assert!(matches!(
            response(b"HTTP/1.1 200 OK\r\n", &m, false, b""),
            Response::Partial
        ));
        for bad in [
            &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            b"HTTP/1.1 042 Odd\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                matches!(response(bad, &m, false, b""), Response::Unusable(_)),
                "{bad:?}"
            );
        }
        let huge = vec![b'a'; MAX_RESPONSE_HEAD];
        assert!(matches!(
            response(&huge, &m, false, b""),
            Response::Unusable(_)
        ));
    }
}
