//! How a backend's answer head frames its body, read the same way by both
//! ways of proxying (the relay and hyper) and by the gateway's own requests
//! to the application: the transfer codings, and the one `Content-Length`.

use http::header::{self, HeaderMap, HeaderValue};

/// An answer's `Transfer-Encoding` fields read as one list of codings, as
/// both ways of proxying read them: the last coding, and how many times
/// chunked was applied.
pub(crate) fn transfer_codings<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
) -> (Option<&'a [u8]>, u32) {
    let mut last = None;
    let mut chunked = 0;
    for coding in fields
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
    {
        chunked += u32::from(coding.eq_ignore_ascii_case(b"chunked"));
        last = Some(coding);
    }
    (last, chunked)
}

/// Whether an answer's last transfer coding, over all its
/// `Transfer-Encoding` fields, is something other than chunked: hyper would
/// read such a body until the close and pass on coded bytes under a framing
/// of its own, so it is refused (as the relay and nginx refuse it).
pub(crate) fn unknown_transfer_coding(headers: &HeaderMap) -> bool {
    let fields = headers.get_all(header::TRANSFER_ENCODING);
    let (last, _) = transfer_codings(fields.iter().map(HeaderValue::as_bytes));
    last.is_some_and(|c| !c.eq_ignore_ascii_case(b"chunked"))
}

/// One `Content-Length` in its plain form (`0005` becomes `5`, `5, 5`
/// becomes `5`); an unreadable or disagreeing one goes. hyper's client has
/// refused such a length already wherever it frames a body: what is left
/// is the length a bodiless answer states. (A request's length is
/// rewritten by `proxy.rs`, which refuses one that does not read.)
pub(crate) fn normalize_length(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return;
    }
    match content_length(headers) {
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// The one length all `Content-Length` values agree on (RFC 9110 §8.6:
/// `1*DIGIT`, a list of one value repeated).
/// A backend's answer head larger than this is refused as unusable (a
/// 502), by the relay and by hyper's client alike.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for v in value
            .as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
        {
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}
