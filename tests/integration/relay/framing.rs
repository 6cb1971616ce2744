//! Wrong bytes on either side of the relay: answers the relay must refuse
//! or not trust with another request, request heads that must never reach
//! the application, and stray bytes that must never reach another client.
//! Each case checks the client's answer and what the backend saw.

use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use serde_json::Value;

use super::scripted::*;
use crate::common::*;

/// `GET path` on `client` fails honestly: a 502 before anything was sent,
/// or a body cut short once the head had gone.
async fn refused(gw: &TestGateway, path: &str) {
    let mut client = http1(gw).await;
    let resp = request(&mut client, "GET", path).await;
    if resp.status() != 502 {
        assert!(
            resp.into_body().collect().await.is_err(),
            "{path}: a malformed body passed for complete"
        );
    }
}

#[tokio::test]
async fn unusable_answers_are_502_and_the_client_connection_lives_on() {
    let app = scripted(|head| match path_of(head) {
        "/garbage" => answer("nonsense\r\n\r\n"),
        "/two-lengths" => {
            answer("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab")
        }
        "/hang-up" => Answer {
            close: true,
            ..answer("HTTP/1.1 200 OK\r\ncontent-le")
        },
        "/bad-chunks" => answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        "/bad-chunks-later" => Answer {
            then: b"zz\r\n",
            ..answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n")
        },
        _ => sized("fine"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    for path in ["/garbage", "/two-lengths", "/hang-up", "/bad-chunks"] {
        let (status, headers, body) = get(&mut client, "GET", path).await;
        assert_eq!(status, 502, "{path}");
        assert_eq!(headers["content-type"], "application/json");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "bad_gateway");
        assert_eq!(
            get(&mut client, "GET", "/ok").await.2,
            "fine",
            "after {path}"
        );
    }
    // A body gone bad after its head was sent: the only honest signal left
    // is to close the client's connection.
    let resp = request(&mut client, "GET", "/bad-chunks-later").await;
    assert!(resp.into_body().collect().await.is_err());
    let mut client = http1(&gw).await;
    assert_eq!(get(&mut client, "GET", "/ok").await.2, "fine");
}

#[tokio::test]
async fn stray_bytes_after_an_answer_never_reach_another_client() {
    // A HEAD answer followed, late, by a body that looks like an answer of
    // its own: a pooled connection in that state must not be reused.
    let app = scripted(|head| match head.split(' ').next() {
        Some("HEAD") => Answer {
            then: b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nSTOLEN",
            ..answer("HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n")
        },
        _ => sized(&format!("yours: {}", path_of(head))),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut first = http1(&gw).await;
    assert_eq!(get(&mut first, "HEAD", "/doc").await.0, 200);
    // The late body has reached the gateway's side of the idle connection.
    eventually(5, "the late body was delivered", || async {
        app.late.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut second = http1(&gw).await;
    for _ in 0..3 {
        assert_eq!(get(&mut second, "GET", "/mine").await.2, "yours: /mine");
    }
}

#[tokio::test]
async fn refusals_to_head_have_no_body_and_keep_the_connection_in_step() {
    let down = TestGateway::start().await; // nothing listens on port 9
    let mut client = http1(&down).await;
    let (status, headers, body) = get(&mut client, "HEAD", "/x").await;
    assert_eq!((status, body.as_str()), (502, ""));
    assert!(
        headers["content-length"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            > 0
    );
    // The next answer on the connection is read from its own start.
    let (status, _, body) = get(&mut client, "GET", "/x").await;
    assert_eq!(status, 502);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "bad_gateway"
    );
}

#[tokio::test]
async fn connection_cannot_strip_an_answers_framing() {
    let app = scripted(|head| match path_of(head) {
        "/te" => answer(
            "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        "/cl" => answer("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\ncontent-length: 3\r\n\r\nxyz"),
        _ => sized("next"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    assert_eq!(get(&mut client, "GET", "/te").await.2, "abc");
    assert_eq!(get(&mut client, "GET", "/cl").await.2, "xyz");
    assert_eq!(get(&mut client, "GET", "/after").await.2, "next");
}

#[tokio::test]
async fn an_answer_with_both_framings_is_passed_on_and_its_connection_not_reused() {
    let app = scripted(|head| match path_of(head) {
        "/both" => answer(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        _ => sized("next"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    let mut client = http1(&gw).await;
    let (status, headers, body) = get(&mut client, "GET", "/both").await;
    // Transfer-Encoding wins (RFC 9112 §6.3); Content-Length goes.
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(!headers.contains_key("content-length"), "{headers:?}");
    assert_eq!(get(&mut client, "GET", "/after").await.2, "next");
    assert_eq!(
        app.connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the connection that sent both framings was reused"
    );
}

#[tokio::test]
async fn chunked_framing_a_strict_parser_would_read_otherwise_is_refused() {
    let app = scripted(|head| match path_of(head) {
        "/bare-lf" => answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
        "/bare-lf-end" => answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\n"),
        "/cr-in-trailer" => answer(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n",
        ),
        "/twice" => answer(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        _ => sized("fine"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    for path in ["/bare-lf", "/bare-lf-end", "/cr-in-trailer"] {
        refused(&gw, path).await;
    }
    let mut client = http1(&gw).await;
    let (status, _, body) = get(&mut client, "GET", "/twice").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "bad_gateway"
    );
    assert_eq!(get(&mut client, "GET", "/ok").await.2, "fine");
}

#[tokio::test]
async fn malformed_request_heads_get_400_and_never_reach_the_application() {
    let app = scripted(|_| sized("fine")).await;
    let gw = gateway_for(&app.url).await;
    for head in [
        &b"GET /a HTTP/1.1\r\nHost : h\r\n\r\n"[..],
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Cr: a\rb\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Nul: a\0b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHo st: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        let answer = raw(&gw, head).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{:?}: {answer}",
            String::from_utf8_lossy(head)
        );
    }
    assert!(app.heads.lock().unwrap().is_empty(), "{:?}", app.heads);
    // Bare LF line ends are read as HTTP/1.1 allows (RFC 9112 §2.2), and
    // the application gets CRLF.
    let answer = raw(&gw, b"GET /lf HTTP/1.1\nHost: h\nConnection: close\n\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let heads = app.heads.lock().unwrap();
    assert!(heads[0].starts_with("GET /lf HTTP/1.1\r\n"), "{heads:?}");
    assert!(!heads[0].replace("\r\n", "").contains('\n'), "{heads:?}");
}

#[tokio::test]
async fn hop_by_hop_request_fields_stop_at_the_relay() {
    let app = scripted(|_| sized("fine")).await;
    let gw = gateway_for(&app.url).await;
    let answer = raw(
        &gw,
        b"GET /hop HTTP/1.1\r\nHost: h\r\nProxy-Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X\r\nUpgrade-Insecure-Requests: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = app.heads.lock().unwrap()[0].to_ascii_lowercase();
    for gone in ["proxy-connection", "keep-alive", "\r\nte:", "connection:"] {
        assert!(
            !head.contains(gone),
            "{gone} reached the application: {head}"
        );
    }
    assert!(head.contains("upgrade-insecure-requests: 1"), "{head}");
    // `Trailer` is end to end (RFC 9110 §6.6.2), on both engines.
    assert!(head.contains("trailer: x"), "{head}");
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_502_on_both_paths() {
    let app = scripted(|head| match path_of(head) {
        "/gzip" => answer("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n\x1fcoded"),
        "/chunked-gzip" => answer(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n\x1fcoded",
        ),
        _ => sized("fine"),
    })
    .await;
    let gw = gateway_for(&app.url).await;
    for path in ["/gzip", "/chunked-gzip"] {
        // The relay's way (a GET) and hyper's (a POST) alike.
        for (method, body) in [("GET", ""), ("POST", "Content-Length: 0\r\n")] {
            let answer = raw(
                &gw,
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: app.example\r\n{body}Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 502"),
                "{method} {path}: {answer}"
            );
            assert!(!answer.contains("coded"), "{method} {path}: {answer}");
        }
    }
}
