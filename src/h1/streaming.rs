//! Which answers pass through unbuffered whatever `buffering.response`
//! says: a stream the client must see as it is made. One judgement, read
//! from the answer's fields, for both engines (hyper's path and the relay),
//! so that they hold the same answers.
//!
//! As nginx: `X-Accel-Buffering: no` from the application turns buffering
//! off for its answer (`yes` changes nothing here); an event stream
//! (`Content-Type: text/event-stream`) is never held, since each event is
//! worth something only when it arrives. The switch is judged on the
//! fields as the application sent them (before those `Connection` names
//! are dropped) and never reaches the client: it is a word to the proxy,
//! which nginx hides too.

/// The application's switch for its answer's buffering.
pub(crate) const ACCEL_BUFFERING: &str = "x-accel-buffering";

/// Whether an answer with these `Content-Type` and `X-Accel-Buffering`
/// values streams.
pub(crate) fn streams(content_type: Option<&[u8]>, accel_buffering: Option<&[u8]>) -> bool {
    let event_stream = content_type.is_some_and(|v| {
        let media = v.split(|&b| b == b';').next().unwrap_or(v).trim_ascii();
        media.eq_ignore_ascii_case(b"text/event-stream")
    });
    event_stream || accel_buffering.is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"no"))
}

/// [`streams`] for an answer whose fields are in a `HeaderMap`.
pub(crate) fn streams_by_fields(headers: &http::HeaderMap) -> bool {
    streams(
        headers
            .get(http::header::CONTENT_TYPE)
            .map(http::HeaderValue::as_bytes),
        headers
            .get(ACCEL_BUFFERING)
            .map(http::HeaderValue::as_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::streams;

    #[test]
    fn event_streams_and_the_applications_no_stream() {
        assert!(streams(Some(b"text/event-stream"), None));
        assert!(streams(Some(b"Text/Event-Stream; charset=utf-8"), None));
        assert!(streams(Some(b"text/html"), Some(b" No ")));
        assert!(!streams(Some(b"text/html"), Some(b"yes")));
        assert!(!streams(Some(b"text/event-streams"), None));
        assert!(!streams(None, None));
    }
}
