//! Each refusal the admission decides, as the transports render it.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;

use super::*;
use crate::limits::Kind;

fn refused<T: std::fmt::Debug>(r: Result<T, Refusal>) -> Refusal {
    r.expect_err("expected a refusal")
}

fn cursor_over(channels: usize) -> String {
    let mut c = Cursor::new(7);
    for i in 0..channels {
        c.set(&Arc::from(format!("news.{i}")), 3);
    }
    c.encode()
}

#[test]
fn no_cursor_or_an_empty_one_is_none() {
    assert_eq!(admit_cursor(None, 4, Wire::Http), Ok(None));
    assert_eq!(admit_cursor(Some(""), 4, Wire::WebSocket), Ok(None));
}

#[test]
fn a_cursor_within_the_bound_is_decoded() {
    let text = cursor_over(2);
    let cursor = admit_cursor(Some(&text), 2, Wire::Http)
        .expect("admitted")
        .expect("a cursor");
    assert_eq!(cursor.get("news.1"), Some(3));
}

#[test]
fn a_malformed_cursor_is_bad_cursor_worded_for_its_wire() {
    let http = refused(admit_cursor(Some("not hex~"), 4, Wire::Http));
    assert_eq!(http.status, StatusCode::BAD_REQUEST);
    assert_eq!(http.code, "bad_cursor");
    assert_eq!(
        http.message,
        "the cursor is malformed; reconnect without it"
    );
    let ws = refused(admit_cursor(Some("not hex~"), 4, Wire::WebSocket));
    assert_eq!(
        (ws.code, ws.message.as_str()),
        ("bad_cursor", "the cursor is malformed")
    );
}

#[test]
fn a_cursor_naming_too_many_channels_is_too_many_channels() {
    let text = cursor_over(3);
    for wire in [Wire::Http, Wire::WebSocket] {
        let r = refused(admit_cursor(Some(&text), 2, wire));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code, "too_many_channels");
        assert_eq!(r.message, "the cursor names more than 2 channels");
        assert_eq!(r.retry_after, None);
    }
}

#[test]
fn no_channel_at_all_is_missing_channels() {
    assert_eq!(admit_any_channel(1), Ok(()));
    let r = refused(admit_any_channel(0));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code, "missing_channels");
    assert_eq!(r.message, "name at least one channel: ?channels=a,b");
}

#[test]
fn more_channels_than_a_connection_may_follow_is_too_many_channels() {
    assert_eq!(admit_channel_count(0, 3), Ok(()));
    assert_eq!(admit_channel_count(3, 3), Ok(()));
    let r = refused(admit_channel_count(4, 3));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code, "too_many_channels");
    assert_eq!(r.message, "at most 3 channels per connection");
}

#[test]
fn the_rule_allows_a_channel_or_refuses_it_with_its_own_status() {
    let rules = crate::rules::tests::rules();
    assert!(matches!(
        admit_channel(&rules, &crate::pusher::Apps::default(), "public.news", None),
        Ok(Verdict::Allowed(_))
    ));
    let cases = [
        (
            "other.x",
            StatusCode::FORBIDDEN,
            "forbidden",
            "no channel rule allows `other.x`",
        ),
        (
            "orders.1",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "channel `orders.1` needs a token",
        ),
        (
            "bad name",
            StatusCode::BAD_REQUEST,
            "invalid_channel",
            "invalid channel name",
        ),
    ];
    for (channel, status, code, message) in cases {
        let r = refused(admit_channel(
            &rules,
            &crate::pusher::Apps::default(),
            channel,
            None,
        ));
        assert_eq!(
            (r.status, r.code, r.message.as_str()),
            (status, code, message)
        );
    }
}

#[test]
fn a_full_channel_is_channel_full_worded_for_its_wire() {
    assert_eq!(room_for("c", 5, None, Wire::Http), Ok(()));
    let empty = Hub::new();
    assert_eq!(admit_subscriber(&empty, Some(1), "c", Wire::Http), Ok(()));
    assert_eq!(room_for("c", 1, Some(2), Wire::Http), Ok(()));
    let http = refused(room_for("c", 2, Some(2), Wire::Http));
    assert_eq!(http.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(http.code, "channel_full");
    assert_eq!(
        http.message,
        "channel `c` has reached limits.max_subscribers_per_channel"
    );
    let ws = refused(room_for("c", 3, Some(2), Wire::WebSocket));
    assert_eq!(ws.code, "channel_full");
    assert_eq!(
        ws.message,
        "the channel has reached limits.max_subscribers_per_channel"
    );
}

fn limited(kind: Kind) -> Limited {
    Limited {
        kind,
        retry_after: Duration::from_millis(1500),
    }
}

#[test]
fn a_rate_limit_names_the_limit_and_when_to_retry() {
    let r = rate_limited(limited(Kind::Messages));
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code, "rate_limited");
    assert_eq!(r.message, "rate limit exceeded (messages)");
    assert_eq!(r.retry_after, Some(Duration::from_millis(1500)));
    let http = subscribes_limited(limited(Kind::Subscribes), Wire::Http);
    assert_eq!(http.message, "rate limit exceeded (subscribes)");
    let ws = subscribes_limited(limited(Kind::Subscribes), Wire::WebSocket);
    assert_eq!(ws.code, "rate_limited");
    assert_eq!(ws.message, "too many subscribes; retry in 1500ms");
}

async fn rendered(r: &Refusal) -> (StatusCode, Option<String>, serde_json::Value) {
    let resp = r.response();
    let status = resp.status();
    let retry = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, retry, serde_json::from_slice(&body).expect("json"))
}

#[tokio::test]
async fn http_renders_a_refusal_as_the_json_error_answer() {
    let (status, retry, body) = rendered(&admit_channel_count(9, 1).unwrap_err()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(retry, None);
    assert_eq!(
        body,
        serde_json::json!({"error": "too_many_channels", "message": "at most 1 channels per connection"})
    );
    let (status, retry, body) = rendered(&rate_limited(limited(Kind::Connects))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("2"));
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["message"], "rate limit exceeded (connects)");
}

#[test]
fn websocket_renders_a_refusal_as_its_error_op() {
    let r = admit_any_channel(0).unwrap_err();
    let op: serde_json::Value = serde_json::from_str(&r.op(Some("\"s1\""))).expect("json");
    assert_eq!(
        op,
        serde_json::json!({
            "type": "error",
            "ref": "s1",
            "code": "missing_channels",
            "message": "name at least one channel: ?channels=a,b",
        })
    );
}

/// What a refusal says: status, code and message.
fn said(r: &Refusal) -> (u16, &'static str, &str) {
    (r.status.as_u16(), r.code, r.message.as_str())
}

#[test]
fn a_token_that_fails_is_401_with_its_own_code() {
    let expired = bad_token(&AuthError::Expired);
    assert_eq!(
        said(&expired),
        (401, "token_expired", "the token has expired")
    );
    let forged = bad_token(&AuthError::BadSignature);
    let message = "the token signature does not verify";
    assert_eq!(said(&forged), (401, "unauthorized", message));
}

#[test]
fn the_applications_no_is_401_for_a_login_and_403_otherwise() {
    let login = app_denied("doc.1", true);
    let message = "channel `doc.1` needs a login";
    assert_eq!(said(&login), (401, "unauthorized", message));
    let no = app_denied("doc.1", false);
    let message = "the application does not allow channel `doc.1`";
    assert_eq!(said(&no), (403, "forbidden", message));
}

#[test]
fn no_answer_from_the_application_is_503_or_429_over_the_share() {
    let down = app_unavailable(&CheckError::Timeout);
    let message = "the application did not answer the check in time; try again shortly";
    assert_eq!(said(&down), (503, "auth_unavailable", message));
    assert_eq!(down.retry_after, None);
    let after = Duration::from_secs(3);
    let over = app_unavailable(&CheckError::Limited(after));
    let message = "rate limit exceeded (session_checks): too many checks for this address";
    assert_eq!(said(&over), (429, "rate_limited", message));
    assert_eq!(over.retry_after, Some(after));
}

#[test]
fn what_cannot_be_had_now_is_503_unavailable() {
    let r = unavailable("the check failed");
    assert_eq!(said(&r), (503, "unavailable", "the check failed"));
    assert_eq!(r.retry_after, None);
}
