//! The relay's own answers, when the backend gives none it can pass on:
//! the proxy's refusal (`proxy/refusal.rs`: 502, 504, 503 with
//! `Retry-After`), written here as HTTP/1.1 bytes with the fields hyper
//! adds to the same answer (length, date, `Connection: close` on a last
//! one), and counted as the hyper path's refusals are.

use std::io::Write;
use std::time::Instant;

use http::Response;
use tokio::io::AsyncWrite;

use super::answer::write;
use super::{Next, http_date};
use crate::h1::request::Outbound;
use crate::proxy::refusal::Refusal;
use crate::state::AppState;

/// Answer the client with `refusal`, as the hyper path would, and count it.
pub(super) async fn refuse<I>(
    state: &AppState,
    io: &mut I,
    refusal: Refusal,
    started: Instant,
    out: &Outbound,
    close: bool,
) -> Next
where
    I: AsyncWrite + Unpin,
{
    let answer = refusal.answer();
    state.metrics.proxied(answer.status(), started.elapsed());
    // An answer to HEAD has no body (RFC 9110 §9.3.2), only its length.
    let head_only = out.method == http::Method::HEAD;
    let bytes = render(&answer, &http_date(), close, head_only);
    match write(io, &bytes).await {
        Ok(()) if close => Next::Close,
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Abort,
    }
}

/// `answer` as HTTP/1.1: its status and fields, then the ones hyper adds.
fn render(answer: &Response<Vec<u8>>, date: &[u8], close: bool, head_only: bool) -> Vec<u8> {
    let status = answer.status();
    let body = answer.body();
    let mut bytes = Vec::with_capacity(256 + body.len());
    // Writes to a Vec do not fail.
    let _ = write!(
        bytes,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in answer.headers() {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    let _ = write!(bytes, "content-length: {}\r\ndate: ", body.len());
    bytes.extend_from_slice(date);
    bytes.extend_from_slice(b"\r\n");
    if close {
        bytes.extend_from_slice(b"connection: close\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::upstream::limit::Refused;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    /// The relay's bytes, read back: status, fields, body.
    fn parse(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(len) = resp.parse(bytes).unwrap() else {
            panic!("a whole head");
        };
        let fields = resp
            .headers
            .iter()
            .map(|f| {
                (
                    f.name.to_owned(),
                    String::from_utf8_lossy(f.value).into_owned(),
                )
            })
            .collect();
        (resp.code.unwrap(), fields, bytes[len..].to_vec())
    }

    #[tokio::test]
    async fn the_relay_writes_what_hyper_answers() {
        let all = [
            Refusal::Unreachable,
            Refusal::TimedOut,
            Refusal::Busy(Refused::Full),
            Refusal::Busy(Refused::TimedOut),
        ];
        for refusal in all {
            let hyper = refusal.response();
            let (status, fields, body) = parse(&render(&refusal.answer(), DATE, false, false));
            assert_eq!(status, hyper.status().as_u16(), "{refusal:?}");
            // Every field of hyper's answer, then those hyper adds itself.
            let mut expected: Vec<(String, String)> = hyper
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let hyper_body = hyper.into_body().collect().await.unwrap().to_bytes();
            expected.push(("content-length".into(), hyper_body.len().to_string()));
            expected.push(("date".into(), String::from_utf8_lossy(DATE).into_owned()));
            assert_eq!(fields, expected, "{refusal:?}");
            assert_eq!(body, hyper_body, "{refusal:?}");
        }
    }

    #[test]
    fn a_busy_refusal_says_when_to_retry_and_the_others_do_not() {
        for (refusal, status, retry) in [
            (Refusal::Unreachable, 502, None),
            (Refusal::TimedOut, 504, None),
            (Refusal::Busy(Refused::Full), 503, Some("1")),
            (Refusal::Busy(Refused::TimedOut), 503, Some("1")),
        ] {
            let (code, fields, body) = parse(&render(&refusal.answer(), DATE, false, false));
            assert_eq!(code, status);
            let retry_after = fields.iter().find(|(n, _)| n == "retry-after");
            assert_eq!(retry_after.map(|(_, v)| v.as_str()), retry, "{refusal:?}");
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(json["error"].is_string() && json["message"].is_string());
        }
    }

    #[test]
    fn a_head_answer_has_the_length_and_no_body_and_a_last_one_closes() {
        let answer = Refusal::Unreachable.answer();
        let (_, fields, body) = parse(&render(&answer, DATE, true, true));
        assert!(body.is_empty());
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            field("content-length"),
            Some(answer.body().len().to_string())
        );
        assert_eq!(field("connection").as_deref(), Some("close"));
        let (_, fields, _) = parse(&render(&answer, DATE, false, false));
        assert!(!fields.iter().any(|(n, _)| n == "connection"));
    }
}
